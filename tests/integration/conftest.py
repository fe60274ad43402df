"""Fixtures for integration tests against a real Apache Kafka broker.

The broker is started by ``scripts/kafka start`` (the test command ``./scripts/test`` does
that and exports ``KAFKA_BOOTSTRAP_SERVERS``). Tests here never start a broker themselves and
never skip when there is none: a missing broker is a failure. See docs/kafka.md.
"""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# kafka-python 3.0.12 loads its protocol schemas with importlib.resources.read_text, which is
# deprecated on Python 3.11/3.12 (DeprecationWarning at import time; pytest runs with
# filterwarnings=error). Import it once here with that one warning silenced; the proper fix is a
# matching "ignore:read_text is deprecated:DeprecationWarning" entry in pyproject's filterwarnings.
with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore", message="(read|open)_text is deprecated", category=DeprecationWarning
    )
    import kafka  # noqa: F401
    import kafka.coordinator.assignors.sticky.sticky_assignor  # noqa: F401
    from kafka.admin import KafkaAdminClient

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
KAFKA_SCRIPT = REPO_ROOT / "scripts" / "kafka"

NOT_RUNNING = (
    "Kafka is not running: the test command ./scripts/test starts it; "
    "or set KAFKA_BOOTSTRAP_SERVERS=host:port"
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under tests/integration/ as ``integration``."""
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.integration)


def _first_address(bootstrap: str) -> tuple[str, int]:
    first = bootstrap.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    if not port.isdigit():
        pytest.fail(f"KAFKA_BOOTSTRAP_SERVERS={bootstrap!r} is not host:port[,host:port...]")
    return host.strip("[]") or "127.0.0.1", int(port)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """``host:port[,host:port...]`` of the broker under test (from KAFKA_BOOTSTRAP_SERVERS)."""
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if not bootstrap:
        pytest.fail(NOT_RUNNING, pytrace=False)
    host, port = _first_address(bootstrap)
    try:
        with socket.create_connection((host, port), timeout=5):
            pass
    except OSError as exc:
        pytest.fail(
            f"KAFKA_BOOTSTRAP_SERVERS={bootstrap} does not accept connections ({exc}). "
            f"{NOT_RUNNING}",
            pytrace=False,
        )
    return bootstrap


@contextmanager
def admin_client(bootstrap: str) -> Iterator[KafkaAdminClient]:
    """A short-lived KafkaAdminClient, closed on exit."""
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="precovery-tests-admin",
        request_timeout_ms=30_000,
    )
    try:
        yield admin
    finally:
        admin.close()


@pytest.fixture
def kafka_admin(kafka_bootstrap: str) -> Iterator[KafkaAdminClient]:
    """A KafkaAdminClient for one test.

    Function-scoped on purpose: no Kafka client may stay open across a broker restart
    (kafka-python 3.0.12 leaks one socket per refused reconnect, a ResourceWarning = error here).
    """
    with admin_client(kafka_bootstrap) as admin:
        yield admin


TopicFactory = Callable[..., str]


@pytest.fixture
def tmp_topic(kafka_bootstrap: str, request: pytest.FixtureRequest) -> Iterator[TopicFactory]:
    """Factory for fresh, uniquely named topics, deleted after the test.

    ``tmp_topic(partitions=3, configs={"cleanup.policy": "compact"}, prefix="orders")``
    returns the topic name once the topic has a leader for every partition. Each call and the
    cleanup use their own short-lived admin client, so nothing stays connected in between.
    """
    created: list[str] = []
    test_name = "".join(c if c.isalnum() else "-" for c in request.node.name)[:40]

    def make(
        partitions: int = 3,
        configs: Mapping[str, str] | None = None,
        prefix: str | None = None,
    ) -> str:
        name = f"test-{prefix or test_name}-{uuid.uuid4().hex[:10]}"
        spec: dict[str, object] = {"num_partitions": partitions, "replication_factor": 1}
        if configs:
            spec["configs"] = {k: str(v) for k, v in configs.items()}
        with admin_client(kafka_bootstrap) as admin:
            admin.create_topics({name: spec}, timeout_ms=30_000, wait_for_metadata=True)
        created.append(name)
        return name

    yield make

    if created:
        try:
            with admin_client(kafka_bootstrap) as admin:
                admin.delete_topics(created, timeout_ms=30_000, raise_errors=False)
        except Exception as exc:  # cleanup must not hide the test's own result
            print(f"warning: could not delete test topics {created}: {exc}")


def _state_file() -> Path:
    override = os.environ.get("PRECOVERY_KAFKA_STATE")
    return Path(override) if override else REPO_ROOT / ".precovery" / "kafka.env"


def _read_state(path: Path) -> dict[str, str]:
    state: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            state[key.strip()] = value.strip()
    return state


@dataclass
class KafkaBrokerControl:
    """Stops and restarts the broker that ``scripts/kafka`` started (same port, same data)."""

    bootstrap: str
    state_file: Path
    stopped: bool = False

    def _run(self, *args: str) -> str:
        proc = subprocess.run(
            [str(KAFKA_SCRIPT), *args],
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        if proc.returncode != 0:
            pytest.fail(
                f"scripts/kafka {' '.join(args)} failed (rc={proc.returncode}):\n"
                f"{proc.stderr}\n{proc.stdout}",
                pytrace=False,
            )
        return proc.stdout

    def stop_keep_data(self) -> None:
        self._run("stop", "--keep-data")
        self.stopped = True

    def start(self) -> str:
        out = self._run("start").strip().splitlines()
        last = out[-1] if out else ""
        self.stopped = False
        expected = f"KAFKA_BOOTSTRAP_SERVERS={self.bootstrap}"
        if last != expected:
            pytest.fail(f"scripts/kafka start printed {last!r}, expected {expected!r}")
        return self.bootstrap


@pytest.fixture
def kafka_broker_control(kafka_bootstrap: str) -> Iterator[KafkaBrokerControl]:
    """Control of the local broker; only when scripts/kafka started the one under test.

    Close every Kafka client before ``stop_keep_data()`` and open new ones after ``start()``:
    kafka-python 3.0.12 leaks a socket per refused reconnect while the broker is down.
    """
    state_file = _state_file()
    if not state_file.is_file():
        pytest.fail(
            f"this test stops and restarts the broker, which needs one started by "
            f"scripts/kafka (no state file at {state_file}); KAFKA_BOOTSTRAP_SERVERS="
            f"{kafka_bootstrap} looks like an external cluster",
            pytrace=False,
        )
    state = _read_state(state_file)
    ours = state.get("KAFKA_BOOTSTRAP_SERVERS", "")
    if ours != kafka_bootstrap:
        pytest.fail(
            f"this test stops and restarts the broker, but KAFKA_BOOTSTRAP_SERVERS="
            f"{kafka_bootstrap} is not the broker scripts/kafka started ({ours or 'none'}, "
            f"state file {state_file})",
            pytrace=False,
        )
    control = KafkaBrokerControl(bootstrap=kafka_bootstrap, state_file=state_file)
    try:
        yield control
    finally:
        if control.stopped:  # leave a running broker for the tests that follow
            control.start()


@pytest.fixture
def topics(tmp_topic: TopicFactory) -> Any:
    """Fresh contract topics for one test: three partitions (market one), health compacted."""
    from pipelines.driver import Topics

    return Topics(
        telemetry=tmp_topic(partitions=3, prefix="tele"),
        positions=tmp_topic(partitions=3, prefix="pos"),
        market=tmp_topic(partitions=1, prefix="mkt"),
        recommendations=tmp_topic(partitions=3, prefix="rec"),
        health=tmp_topic(partitions=3, configs={"cleanup.policy": "compact"}, prefix="health"),
        dlq=tmp_topic(partitions=3, prefix="dlq"),
    )
