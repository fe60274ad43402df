"""Labels from incident history and the operators' lead-time report."""

from __future__ import annotations

import math

import numpy as np
import pytest

from predictor.errors import ValidationError
from predictor.labels import Alarm, Incident, lead_time_report, make_labels
from tests.factories import T0_MS, incident, incident_record

MIN = 60_000
H_S = 600.0  # a 10-minute horizon
START = T0_MS + 60 * MIN
END = START + 20 * MIN


def grid(
    key: tuple[str, str, str], minutes: range
) -> tuple[list[tuple[str, str, str]], np.ndarray]:
    ts = np.array([T0_MS + m * MIN for m in minutes], dtype=np.int64)
    return [key] * len(ts), ts


def test_positive_within_horizon_before_start_and_inside_left_out() -> None:
    keys, ts = grid(("sys-a", "comp-a", "h1"), range(0, 120))
    y, keep = make_labels(keys, ts, [incident(started_ms=START, resolved_ms=END)], H_S)
    t = ts
    expected_y = (t < START) & (t >= START - H_S * 1000)
    expected_out = (t >= START) & (t <= END)
    np.testing.assert_array_equal(y.astype(bool), expected_y)
    np.testing.assert_array_equal(~keep, expected_out)
    assert y.sum() == 10 and (~keep).sum() == 21
    assert not (y.astype(bool) & ~keep).any()


def test_other_component_or_system_is_not_labelled() -> None:
    keys_b, ts = grid(("sys-a", "comp-b", "h1"), range(0, 120))
    keys_c, _ = grid(("sys-b", "comp-a", "h1"), range(0, 120))
    y, keep = make_labels(keys_b + keys_c, np.concatenate([ts, ts]), [incident()], H_S)
    assert y.sum() == 0 and keep.all()


def test_host_specific_incident_labels_only_its_host() -> None:
    k1, ts = grid(("sys-a", "comp-a", "h1"), range(0, 120))
    k2, _ = grid(("sys-a", "comp-a", "h2"), range(0, 120))
    inc = incident(host="h2", started_ms=START, resolved_ms=END)
    y, keep = make_labels(k1 + k2, np.concatenate([ts, ts]), [inc], H_S)
    n = len(ts)
    assert y[:n].sum() == 0 and keep[:n].all()
    assert y[n:].sum() == 10 and (~keep[n:]).sum() == 21


def test_component_wide_incident_labels_every_host() -> None:
    k1, ts = grid(("sys-a", "comp-a", "h1"), range(0, 120))
    k2, _ = grid(("sys-a", "comp-a", "h2"), range(0, 120))
    y, _ = make_labels(k1 + k2, np.concatenate([ts, ts]), [incident(started_ms=START)], H_S)
    assert y[: len(ts)].sum() == y[len(ts) :].sum() == 10


def test_open_incident_excludes_everything_after_its_start() -> None:
    keys, ts = grid(("sys-a", "comp-a", "h1"), range(0, 120))
    y, keep = make_labels(keys, ts, [incident(started_ms=START, resolved_ms=None)], H_S)
    np.testing.assert_array_equal(keep, ts < START)


def test_rows_in_any_order_get_the_same_labels() -> None:
    keys, ts = grid(("sys-a", "comp-a", "h1"), range(0, 120))
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(ts))
    y, keep = make_labels(keys, ts, [incident(started_ms=START)], H_S)
    y2, keep2 = make_labels([keys[i] for i in perm], ts[perm], [incident(started_ms=START)], H_S)
    np.testing.assert_array_equal(y[perm], y2)
    np.testing.assert_array_equal(keep[perm], keep2)


def test_incident_from_record() -> None:
    inc = Incident.from_record(incident_record(host="h9", started_ms=START, resolved_ms=END))
    assert (inc.host, inc.started_ms, inc.resolved_ms, inc.kind) == ("h9", START, END, "crash")
    open_ = Incident.from_record(incident_record(host=None, resolved_ms=None))
    assert open_.host is None and open_.resolved_ms is None
    with pytest.raises(ValidationError):
        Incident.from_record({**incident_record(), "started_at": "not a time"})


def test_lead_time_report_counts() -> None:
    incs = [
        incident("s", "c1", started_ms=START, resolved_ms=END, incident_id="A"),
        incident("s", "c2", started_ms=START, resolved_ms=END, incident_id="B"),
        incident("s", "c3", started_ms=START, resolved_ms=END, incident_id="C"),
    ]
    alarms = [
        Alarm("s", "c1", START - 8 * MIN),  # caught, 8 min of warning
        Alarm("s", "c1", START - 2 * MIN),  # same incident, later: not the lead
        Alarm("s", "c2", START - 1 * MIN),  # warned, but under the 5-minute minimum
        Alarm("s", "c4", START),  # no incident on c4: false
        Alarm("s", "c3", START - 3 * 3_600_000),  # far too early: false
        Alarm("s", "c3", START + 5 * MIN),  # during the incident: not false
    ]
    rep = lead_time_report(alarms, incs, horizon_s=1800, min_warning_s=300, entity_days=2.0)
    assert rep["incidents"] == 3
    assert rep["caught"] == 1
    assert rep["caught_any_warning"] == 2
    assert rep["recall"] == pytest.approx(1 / 3)
    assert rep["median_lead_time_s"] == pytest.approx((8 * 60 + 1 * 60) / 2)
    assert rep["alarms"] == len(alarms)
    assert rep["false_alarms"] == 2
    assert rep["false_alarms_per_entity_day"] == pytest.approx(1.0)
    leads = {p["incident_id"]: p["lead_time_s"] for p in rep["per_incident"]}
    assert leads == {"A": 480.0, "B": 60.0, "C": None}


def test_lead_time_report_without_incidents_or_alarms() -> None:
    rep = lead_time_report([], [], horizon_s=1800, min_warning_s=300, entity_days=0.0)
    assert rep["caught"] == 0 and rep["false_alarms"] == 0
    assert math.isnan(rep["recall"]) and rep["median_lead_time_s"] is None
    assert math.isnan(rep["false_alarms_per_entity_day"])
