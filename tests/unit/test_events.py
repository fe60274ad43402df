"""Data contracts: decoding and validation of telemetry, market and positions messages."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from predictor.errors import ValidationError
from predictor.events import (
    DEFAULT_MAX_BYTES,
    MAX_METRICS,
    MAX_NAME,
    MAX_TS_MS,
    MIN_TS_MS,
    SESSIONS,
    decode_record,
    decode_telemetry,
    loads,
    ms_to_iso,
    parse_market,
    parse_position,
    parse_ts,
)
from tests.factories import POISON, T0_MS, market_state, position, telemetry_bytes, telemetry_event

METRICS = ("cpu_pct", "mem_pct")


def _reason(raw: bytes | str | dict[str, Any], metrics: tuple[str, ...] = METRICS) -> str:
    batch = decode_telemetry([raw], metrics)
    assert len(batch) == 0, "expected a reject"
    assert [r.index for r in batch.rejects] == [0]
    return batch.rejects[0].reason


# -- telemetry ---------------------------------------------------------------------------
def test_valid_event_decodes_into_columns() -> None:
    batch = decode_telemetry(
        [telemetry_bytes(metrics={"cpu_pct": 12.5, "mem_pct": 40, "other": 1.0})], METRICS
    )
    assert batch.keys == [("sys-a", "comp-a", "host-a")]
    assert batch.ts_ms.tolist() == [T0_MS]
    assert batch.x.tolist() == [[12.5, 40.0]]
    assert batch.x.dtype == np.float64
    assert batch.rejects == []


def test_absent_tracked_metric_is_nan_and_untracked_ones_are_ignored() -> None:
    batch = decode_telemetry([telemetry_event(metrics={"disk": 3.0, "mem_pct": 1.0})], METRICS)
    assert math.isnan(batch.x[0, 0]) and batch.x[0, 1] == 1.0


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"ts": 1767571200000, "system": "s"', "malformed_json"),
        (b"not json at all", "malformed_json"),
        (b"", "malformed_json"),
        (
            b'{"ts": 1767571200000, "system": "s", "component": "c", "host": "h",'
            b' "metrics": {"cpu_pct": NaN}}',
            "non_finite",
        ),
        (
            b'{"ts": 1767571200000, "system": "s", "component": "c", "host": "h",'
            b' "metrics": {"cpu_pct": Infinity}}',
            "non_finite",
        ),
        (
            b'{"ts": 1767571200000, "system": "s", "component": "c", "host": "h",'
            b' "metrics": {"cpu_pct": -Infinity}}',
            "non_finite",
        ),
        (b"[1, 2, 3]", "not_an_object"),
        (b'"a string"', "not_an_object"),
    ],
)
def test_bytes_rejected_with_reason(raw: bytes, reason: str) -> None:
    assert _reason(raw) == reason


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (telemetry_event(metrics={"cpu_pct": True}), "wrong_type"),
        (telemetry_event(metrics={"cpu_pct": "12"}), "wrong_type"),
        (telemetry_event(metrics={"cpu_pct": [1.0]}), "wrong_type"),
        (telemetry_event(metrics={"cpu_pct": {"v": 1}}), "wrong_type"),
        (telemetry_event(metrics={"cpu_pct": float("nan")}), "non_finite"),
        (telemetry_event(metrics={"mem_pct": float("inf")}), "non_finite"),
        ({**telemetry_event(), "metrics": [1, 2]}, "wrong_type"),
        ({**telemetry_event(), "metrics": None}, "missing_field"),
        ({**telemetry_event(), "system": 7}, "wrong_type"),
        ({**telemetry_event(), "host": ""}, "wrong_type"),
        ({**telemetry_event(), "component": "c" * (MAX_NAME + 1)}, "too_long"),
        ({**telemetry_event(), "ts": True}, "wrong_type"),
        ({**telemetry_event(), "ts": None}, "wrong_type"),
        ({**telemetry_event(), "ts": "yesterday"}, "bad_timestamp"),
        ({**telemetry_event(), "ts": "2026-01-05T00:00:00"}, "bad_timestamp"),  # no offset
        ({**telemetry_event(), "ts": MIN_TS_MS - 1}, "bad_timestamp"),
        ({**telemetry_event(), "ts": MAX_TS_MS}, "bad_timestamp"),
        ({**telemetry_event(), "ts": 1_767_571_200}, "bad_timestamp"),  # epoch seconds
        (
            {**telemetry_event(), "metrics": {f"m{i}": 1.0 for i in range(MAX_METRICS + 1)}},
            "too_many_metrics",
        ),
    ],
)
def test_objects_rejected_with_reason(event: dict[str, Any], reason: str) -> None:
    assert _reason(event) == reason
    if isinstance(event.get("ts"), float | int | str) and reason != "non_finite":
        # the same message as JSON bytes is rejected for the same reason
        assert _reason(orjson.dumps(event)) == reason


@pytest.mark.parametrize("missing", ["ts", "system", "component", "host", "metrics"])
def test_missing_field_names_the_field(missing: str) -> None:
    event = telemetry_event()
    del event[missing]
    batch = decode_telemetry([orjson.dumps(event)], METRICS)
    assert batch.rejects[0].reason == "missing_field"
    assert batch.rejects[0].detail == missing


def test_too_large_message_is_rejected_before_parsing() -> None:
    big = telemetry_bytes(metrics={"cpu_pct": 1.0, "pad": "x" * DEFAULT_MAX_BYTES})
    assert _reason(big) == "too_large"
    small_limit = decode_telemetry([telemetry_bytes()], METRICS, max_bytes=20)
    assert small_limit.rejects[0].reason == "too_large"


def test_rfc3339_and_epoch_ms_give_the_same_time() -> None:
    iso = ms_to_iso(T0_MS + 1234)
    offset = "2026-01-05T01:00:01.234+01:00"
    batch = decode_telemetry(
        [
            telemetry_event(ts=T0_MS + 1234),
            telemetry_event(ts=iso),
            telemetry_event(ts=offset),
            telemetry_event(ts=float(T0_MS + 1234)),
        ],
        METRICS,
    )
    assert batch.ts_ms.tolist() == [T0_MS + 1234] * 4


def test_rejects_keep_their_index_and_good_rows_continue() -> None:
    raws: list[bytes | dict[str, Any]] = [
        telemetry_bytes(host="h0"),
        b"{bad",
        telemetry_event(host="h2", metrics={"cpu_pct": True}),
        telemetry_bytes(host="h3"),
    ]
    batch = decode_telemetry(raws, METRICS)
    assert batch.index.tolist() == [0, 3]
    assert [k[2] for k in batch.keys] == ["h0", "h3"]
    assert [(r.index, r.reason) for r in batch.rejects] == [
        (1, "malformed_json"),
        (2, "wrong_type"),
    ]
    assert batch.x.shape == (2, len(METRICS))


def test_empty_batch_has_consistent_shapes() -> None:
    batch = decode_telemetry([], METRICS)
    assert len(batch) == 0 and batch.x.shape == (0, 2) and batch.ts_ms.shape == (0,)


def test_loads_distinguishes_non_finite_from_malformed() -> None:
    with pytest.raises(ValidationError) as nan:
        loads(b'{"a": NaN}')
    with pytest.raises(ValidationError) as bad:
        loads(b'{"a": nan}')
    assert (nan.value.reason, bad.value.reason) == ("non_finite", "malformed_json")


@given(st.integers(min_value=MIN_TS_MS, max_value=MAX_TS_MS - 1))
@example(1_096_949_223_972)  # float timestamp() * 1000 gave ...971 here
def test_ms_to_iso_round_trips_through_parse_ts(ms: int) -> None:
    iso = ms_to_iso(ms)
    assert iso.endswith("Z")
    assert parse_ts(iso) == ms


@given(st.integers() | st.floats(allow_nan=True, allow_infinity=True))
def test_parse_ts_accepts_only_the_documented_range(value: int | float) -> None:
    ok = math.isfinite(value) and MIN_TS_MS <= int(value) < MAX_TS_MS
    if ok:
        assert parse_ts(value) == int(value)
    else:
        with pytest.raises(ValidationError):
            parse_ts(value)


# -- market.v1 ---------------------------------------------------------------------------
@pytest.mark.parametrize("session", SESSIONS)
def test_parse_market_accepts_every_session(session: str) -> None:
    m = parse_market(market_state(session=session, event_risk=True, ts=ms_to_iso(T0_MS)))
    assert (m.session, m.event_risk, m.ts_ms, m.venue) == (session, True, T0_MS, "XNYS")
    assert m.depth_usd == 5e6


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"session": "lunch"}, "bad_session"),
        ({"session": None}, "bad_session"),
        ({"event_risk": "yes"}, "wrong_type"),
        ({"event_risk": 1}, "wrong_type"),
        ({"spread_bps": -1.0}, "out_of_range"),
        ({"volatility_bps_per_min": True}, "wrong_type"),
        ({"depth_usd": "deep"}, "wrong_type"),
        ({"depth_usd": float("nan")}, "non_finite"),
        ({"ts": "soon"}, "bad_timestamp"),
        ({"venue": ""}, "wrong_type"),
    ],
)
def test_parse_market_rejects(change: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValidationError) as exc:
        parse_market({**market_state(), **change})
    assert exc.value.reason == reason


@pytest.mark.parametrize("field", ["ts", "venue", "spread_bps", "depth_usd"])
def test_parse_market_missing_field(field: str) -> None:
    obj = market_state()
    del obj[field]
    with pytest.raises(ValidationError) as exc:
        parse_market(obj)
    assert exc.value.reason == "missing_field"


def test_parse_market_not_an_object() -> None:
    with pytest.raises(ValidationError) as exc:
        parse_market([market_state()])
    assert exc.value.reason == "not_an_object"


# -- positions.v1 ------------------------------------------------------------------------
def test_parse_position_valid_short_book() -> None:
    p = parse_position(position(net_notional_usd=-5e6, open_orders=12))
    assert (p.system, p.venue, p.net_notional_usd, p.open_orders) == ("sys-a", "XNYS", -5e6, 12)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"gross_notional_usd": -1.0}, "out_of_range"),
        ({"open_orders": -3}, "out_of_range"),
        ({"open_orders": "many"}, "wrong_type"),
        ({"net_notional_usd": False}, "wrong_type"),
        ({"net_notional_usd": float("inf")}, "non_finite"),
        ({"system": None}, "wrong_type"),
        ({"ts": 12}, "bad_timestamp"),
    ],
)
def test_parse_position_rejects(change: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValidationError) as exc:
        parse_position({**position(), **change})
    assert exc.value.reason == reason


@pytest.mark.parametrize("field", ["ts", "system", "venue", "net_notional_usd", "open_orders"])
def test_parse_position_missing_field(field: str) -> None:
    obj = position()
    del obj[field]
    with pytest.raises(ValidationError) as exc:
        parse_position(obj)
    assert exc.value.reason == "missing_field"


# -- poison: any bytes give a reject with a reason, never an exception ---------------------
@pytest.mark.parametrize("name", sorted(POISON))
def test_poison_telemetry_is_rejected_with_a_reason(name: str) -> None:
    assert _reason(POISON[name]) in {"malformed_json", "not_an_object"}


@pytest.mark.parametrize("name", sorted(POISON))
@pytest.mark.parametrize("parse", [parse_market, parse_position])
def test_poison_context_raises_only_validation_errors(name: str, parse: Any) -> None:
    with pytest.raises(ValidationError) as info:
        decode_record(POISON[name], parse)
    assert info.value.reason in {"malformed_json", "not_an_object"}


def test_a_parser_surprise_becomes_a_reason_not_a_crash() -> None:
    def explode(_obj: Any) -> None:
        raise RecursionError("deep")

    with pytest.raises(ValidationError) as info:
        decode_record(b"{}", explode)
    assert info.value.reason == "invalid" and "RecursionError" in info.value.detail


@given(st.binary(max_size=300))
def test_any_bytes_decode_or_reject(raw: bytes) -> None:
    batch = decode_telemetry([raw], METRICS)
    assert len(batch) + len(batch.rejects) == 1
    for parse in (parse_market, parse_position):
        try:
            decode_record(raw, parse)
        except ValidationError:
            pass
