"""The Kafka client setting: PRECOVERY_KAFKA_CLIENT picks the adapter, a typo is named."""

from __future__ import annotations

import pytest

from pipelines.kafka.adapter import TP
from pipelines.kafka.clients import CLIENTS, DEFAULT_CLIENT, client_name
from predictor.errors import ConfigError


def test_the_setting_picks_the_client_and_a_wrong_name_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PRECOVERY_KAFKA_CLIENT", raising=False)
    assert client_name() == DEFAULT_CLIENT in CLIENTS
    monkeypatch.setenv("PRECOVERY_KAFKA_CLIENT", "confluent")
    assert client_name() == "confluent"
    assert client_name("kafka-python") == "kafka-python"  # an explicit choice wins
    monkeypatch.setenv("PRECOVERY_KAFKA_CLIENT", "librdkafka")
    with pytest.raises(ConfigError, match="PRECOVERY_KAFKA_CLIENT='librdkafka'.*confluent"):
        client_name()


def test_a_partition_equals_the_vendor_pair() -> None:
    assert TP("t", 1) == ("t", 1) and hash(TP("t", 1)) == hash(("t", 1))
