"""SREs' verdicts exported as labels, and how the next training run uses them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.records.feedback import LABEL_COLUMNS, FeedbackStore
from pipelines.training.train import FALSE_ALARM_WEIGHT, Dataset, TrainConfig, apply_feedback
from predictor.errors import ValidationError
from predictor.events import parse_ts
from predictor.labels import Incident

H_MS = 1_800_000  # the default horizon
T0 = parse_ts("2026-01-05T00:00:00Z")


def dataset() -> Dataset:
    ts = T0 + np.arange(0, 4 * 3600_000, 60_000, dtype=np.int64)
    keys = [("pay", "gw", "h1")] * len(ts) + [("pay", "db", "h2")] * len(ts)
    return Dataset(
        x=np.zeros((2 * len(ts), 1), dtype=np.float32),
        y=np.zeros(0, dtype=np.int8),
        ts_ms=np.concatenate([ts, ts]),
        keys=keys,
        feature_names=["f"],
    )


def test_export_keeps_the_latest_verdict_per_recommendation_and_every_miss(
    tmp_path: Path,
) -> None:
    store = FeedbackStore(tmp_path / "fb.sqlite")
    store.add("r1", "pay", "gw", "confirmed", at="2026-01-05T01:00:00Z")
    store.add("r1", "pay", "gw", "false_alarm", at="2026-01-05T01:05:00Z", ts="2026-01-05T00:50Z")
    store.add("", "pay", "db", "missed", ts="2026-01-05T02:00:00Z")
    store.add("", "pay", "db", "missed", ts="2026-01-05T03:00:00Z")
    n = store.export_labels(tmp_path / "labels.csv")
    store.close()
    df = pd.read_csv(tmp_path / "labels.csv")
    assert n == 3 and tuple(df.columns) == LABEL_COLUMNS
    assert df["verdict"].tolist() == ["false_alarm", "missed", "missed"]
    assert df["ts"].tolist()[0] == "2026-01-05T00:50Z"  # its event time, not when stored


def test_feedback_adds_incidents_and_weighs_false_alarms(tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "system,component,verdict,ts\n"
        "pay,db,missed,2026-01-05T02:00:00Z\n"  # no incident there: added
        "pay,gw,confirmed,2026-01-05T01:10:00Z\n"  # the history has one at 01:00: overruled
        "pay,gw,false_alarm,2026-01-05T03:00:00Z\n"  # nothing follows: rows before weigh more
        "pay,gw,acknowledged,2026-01-05T03:30:00Z\n"
    )
    data = dataset()
    history = [Incident("pay", "gw", None, T0 + 3600_000, T0 + 3900_000)]
    found = apply_feedback(data, history, labels, TrainConfig())
    assert [(i.component, i.started_ms, i.kind) for i in found[1:]] == [
        ("db", T0 + 7200_000, "feedback_missed")
    ]
    assert data.weights is not None
    heavy = (data.weights == FALSE_ALARM_WEIGHT).nonzero()[0]
    assert all(data.keys[i][1] == "gw" for i in heavy)
    three = T0 + 3 * 3600_000
    assert data.ts_ms[heavy].min() == three - H_MS and data.ts_ms[heavy].max() == three
    assert data.weights_note is not None
    assert data.weights_note["missed_added"] == 1 and data.weights_note["overruled"] == 1


def test_feedback_names_a_bad_verdict_and_missing_columns(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("system,component,verdict,ts\npay,gw,maybe,2026-01-05T01:00:00Z\n")
    with pytest.raises(ValidationError, match="row 1 column verdict 'maybe'"):
        apply_feedback(dataset(), [], bad, TrainConfig())
    short = tmp_path / "short.csv"
    short.write_text("system,verdict\npay,missed\n")
    with pytest.raises(ValidationError, match="missing columns component, ts"):
        apply_feedback(dataset(), [], short, TrainConfig())
