"""The msgspec fast path of ``decode_telemetry`` changes nothing but speed.

Every batch is decoded twice, once with the fast path and once with every message sent
down the slow path (``fast=False``: orjson, then :func:`validate_telemetry`), and the
two results must be identical: the same rows, keys, timestamps, indices and the same
``Reject(index, reason, detail)`` for every bad message. The messages are generated
valid and then broken in every way the contract cares about (wrong types, missing and
extra fields, bad timestamps including RFC 3339 strings, NaN/Infinity, numbers out of
double range, deep nesting, invalid UTF-8, escaped surrogates, duplicate keys, long
names, too many metrics, oversize messages).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from predictor.events import (
    MAX_METRICS,
    MAX_NAME,
    MAX_TS_MS,
    MIN_TS_MS,
    TelemetryBatch,
    decode_telemetry,
)

NAMES = ("cpu_pct", "mem_pct", "gc_pause_ms", "queue_depth")

_name = st.one_of(
    st.sampled_from(["eq-oms", "order-gateway", "h-01", "é", "x" * MAX_NAME, "𝄞" * MAX_NAME]),
    st.text(min_size=0, max_size=MAX_NAME + 2),
)
_number = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.none(),
)
_odd_value = st.one_of(
    st.booleans(),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)
_ts = st.one_of(
    st.integers(min_value=MIN_TS_MS - 5, max_value=MIN_TS_MS + 5),
    st.integers(min_value=MAX_TS_MS - 5, max_value=MAX_TS_MS + 5),
    st.integers(min_value=MIN_TS_MS, max_value=MAX_TS_MS),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(
        [
            "2026-01-05T00:00:00Z",
            "2026-01-05T00:00:00.123+01:00",
            "2026-01-05T00:00:00",
            "1999-12-31T23:59:59Z",
            "2100-01-01T00:00:00Z",
            "nope",
            "",
        ]
    ),
    st.booleans(),
    st.none(),
)
_metrics = st.dictionaries(
    st.one_of(st.sampled_from(NAMES + ("untracked", "other")), st.text(max_size=4)),
    st.one_of(_number, _number, _odd_value),
    max_size=8,
)


_good_name = st.sampled_from(["eq-oms", "order-gateway", "h-01", "é", "x" * MAX_NAME, "𝄞" * 9])
_good_metrics = st.dictionaries(st.sampled_from(NAMES + ("untracked",)), _number, max_size=6)


@st.composite
def _event(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.booleans()):  # valid as drawn: the fast path's case, broken only by _corrupt
        return {
            "ts": draw(st.integers(MIN_TS_MS, MAX_TS_MS - 1)),
            "system": draw(_good_name),
            "component": draw(_good_name),
            "host": draw(_good_name),
            "metrics": draw(_good_metrics),
        }
    event: dict[str, Any] = {
        "ts": draw(st.one_of(st.integers(MIN_TS_MS, MAX_TS_MS - 1), _ts)),
        "system": draw(_name),
        "component": draw(_name),
        "host": draw(_name),
        "metrics": draw(_metrics),
    }
    for key in draw(st.sets(st.sampled_from(sorted(event)), max_size=2)):
        match draw(st.integers(0, 2)):
            case 0:
                del event[key]
            case 1:
                event[key] = draw(st.one_of(_odd_value, _number))
            case _:
                pass
    if draw(st.integers(0, 9)) == 0:
        extra = draw(st.sampled_from(["extra", "site", "ts2"]))
        event[extra] = draw(st.one_of(_number, _odd_value))
    return event


def _encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event, ensure_ascii=False).encode("utf-8", "surrogatepass")


def _corrupt(raw: bytes, how: int, where: int) -> bytes:
    """Break the encoded message at a byte-level the dict strategies cannot reach."""
    at = where % (len(raw) + 1)
    patches = [
        raw[:at] + b"\xff" + raw[at:],  # invalid UTF-8
        raw[:at] + b"\xed\xa0\x80" + raw[at:],  # an encoded surrogate
        raw.replace(b'"metrics": {', b'"metrics": {"cpu_pct": 1e400, ', 1),
        raw.replace(b'"metrics": {', b'"metrics": {"untracked": 1e400, ', 1),
        raw.replace(b'"metrics": {', b'"metrics": {"mem_pct": NaN, ', 1),
        raw.replace(b'"metrics": {', b'"metrics": {"cpu_pct": -Infinity, ', 1),
        raw.replace(b'"metrics": {', b'"metrics": {"x": "\\ud800", ', 1),
        raw.replace(b'"host": ', b'"host": "\\udc00", "host": ', 1),
        raw.replace(b'"metrics": {', b'"metrics": {"cpu_pct": 1, "cpu_pct": 2, ', 1),
        raw.replace(b'"ts": ', b'"ts": "bad", "ts": ', 1),
        raw[:-1] + b', "deep": ' + b"[" * 1030 + b"]" * 1030 + b"}",
        raw[:-1] + b', "deep": ' + b"[" * 900 + b"]" * 900 + b"}",
        raw[:-1] + b', "extra": 1e400}',  # unchecked if an extra field were skipped
        raw[:-1] + b', "extra": "\xff"}',
        raw[:-1] + b', "extra": "\\ud800"}',
        raw[:at],  # truncated
        raw + b" x",  # trailing junk
        b"\xef\xbb\xbf" + raw,  # a byte order mark
        b" \n" + raw + b"\t",
    ]
    return patches[how % len(patches)]


@st.composite
def _message(draw: st.DrawFn) -> bytes | str:
    raw = _encode(draw(_event()))
    if draw(st.integers(0, 3)) == 0:
        raw = _corrupt(raw, draw(st.integers(0, 99)), draw(st.integers(0, 10_000)))
    if draw(st.integers(0, 19)) == 0:
        return raw.decode("utf-8", "replace")  # str input takes the slow path
    return raw


@st.composite
def _tracked_message(draw: st.DrawFn) -> bytes:
    """Mostly valid messages with tracked metrics only: the whole-batch path's case."""
    raw = _encode(
        {
            "ts": draw(
                st.one_of(
                    st.integers(MIN_TS_MS, MAX_TS_MS - 1),
                    st.sampled_from([MIN_TS_MS - 1, MIN_TS_MS, MAX_TS_MS - 1, MAX_TS_MS]),
                )
            ),
            "system": draw(_good_name),
            "component": draw(_good_name),
            "host": draw(st.one_of(_good_name, _good_name, _name)),
            "metrics": draw(st.dictionaries(st.sampled_from(NAMES), _number, max_size=4)),
        }
    )
    if draw(st.integers(0, 9)) == 0:
        raw = _corrupt(raw, draw(st.integers(0, 99)), draw(st.integers(0, 10_000)))
    return raw


def _assert_same(fast: TelemetryBatch, slow: TelemetryBatch) -> None:
    assert fast.rejects == slow.rejects
    assert fast.keys == slow.keys
    np.testing.assert_array_equal(fast.index, slow.index)
    np.testing.assert_array_equal(fast.ts_ms, slow.ts_ms)
    assert fast.ts_ms.dtype == slow.ts_ms.dtype == np.int64
    assert fast.x.dtype == slow.x.dtype == np.float64
    assert fast.x.shape == slow.x.shape
    # Same bits: NaN where NaN, and -0.0 kept as -0.0.
    assert fast.x.tobytes() == slow.x.tobytes()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_message(), min_size=0, max_size=12))
def test_fast_and_slow_paths_agree(raws: list[bytes | str]) -> None:
    fast = decode_telemetry(raws, NAMES)
    slow = decode_telemetry(raws, NAMES, fast=False)
    _assert_same(fast, slow)
    assert len(fast) + len(fast.rejects) == len(raws)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_tracked_message(), min_size=1, max_size=8))
def test_whole_batch_path_agrees(raws: list[bytes]) -> None:
    fast = decode_telemetry(raws, NAMES)
    _assert_same(fast, decode_telemetry(raws, NAMES, fast=False))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=6))
def test_junk_bytes_agree(raws: list[bytes]) -> None:
    _assert_same(decode_telemetry(raws, NAMES), decode_telemetry(raws, NAMES, fast=False))


def _valid(i: int, **metrics: Any) -> bytes:
    return orjson.dumps(
        {"ts": MIN_TS_MS + i, "system": "s", "component": "c", "host": f"h{i}", "metrics": metrics}
    )


def test_edge_cases_agree_and_are_judged() -> None:
    many = {f"m{i}": 1.0 for i in range(MAX_METRICS + 1)}
    raws: list[bytes | str] = [
        _valid(0, cpu_pct=1.5, mem_pct=None),  # accepted: fast path
        _valid(1, **dict.fromkeys(list(many)[:MAX_METRICS], 1.0)),  # exactly at the limit
        _valid(2, **many),  # one over: too_many_metrics
        _valid(3, cpu_pct=True),  # wrong_type
        _valid(4, untracked="text"),  # accepted by the slow path (untracked ignored)
        _valid(5, cpu_pct=1.0)[:-1] + b', "extra": 1}',  # extra field: accepted (slow)
        _valid(6, cpu_pct=1.0).replace(b'"ts":946684800006', b'"ts":"2026-01-05T00:00:00Z"'),
        _valid(7, cpu_pct=0.5).replace(b"0.5", b"1e400"),  # malformed_json (orjson)
        _valid(8, cpu_pct=1.0).replace(b'"h8"', b'"' + b"h" * (MAX_NAME + 1) + b'"'),
        _valid(9, cpu_pct=1.0) + b" " * 70_000,  # too_large
    ]
    fast = decode_telemetry(raws, NAMES)
    _assert_same(fast, decode_telemetry(raws, NAMES, fast=False))
    assert fast.index.tolist() == [0, 1, 4, 5, 6]
    assert fast.ts_ms[-1] == 1767571200000
    assert [(r.index, r.reason) for r in fast.rejects] == [
        (2, "too_many_metrics"),
        (3, "wrong_type"),
        (7, "malformed_json"),
        (8, "too_long"),
        (9, "too_large"),
    ]
    assert fast.x[0, 0] == 1.5 and np.isnan(fast.x[0, 1:]).all()
