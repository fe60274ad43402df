"""Silence is a signal: a dark system fails now; a lost feed blames nobody.

The rule (predictor/engine.py, "Silence"): an entity silent for ``heartbeat_misses ×
heartbeat_interval_s`` while the feed is alive gets ``failover_now`` (reason heartbeat)
at the first tick past that; when *every* input stops and comes back, silence counts
from the resumption; a driver that knows the fleet reports while an engine's share is
quiet moves that engine's time on with ``advance_to``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from predictor.engine import Engine, EngineConfig
from predictor.events import parse_ts
from tests.factories import T0_MS, decode, steady_stream

DARK = [("dark-sys", "gateway", "d1"), ("dark-sys", "matching", "d2")]
LIVE = [("live-sys", "gateway", "l1"), ("live-sys", "risk", "l2")]


def run(engine: Engine, events: list[dict[str, Any]], size: int = 50) -> list[dict[str, Any]]:
    batch = decode(events, engine.config.metric_names)
    out = []
    for lo in range(0, len(batch), size):
        sub = replace(
            batch,
            keys=batch.keys[lo : lo + size],
            ts_ms=batch.ts_ms[lo : lo + size],
            x=batch.x[lo : lo + size],
            index=batch.index[lo : lo + size] - lo,
            rejects=[],
        )
        out.extend(engine.process(sub).recommendations)
    return out


def by_time(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(events, key=lambda e: e["ts"])


@pytest.mark.parametrize(
    ("interval_s", "misses", "tick_s"), [(10.0, 3, 10.0), (1.0, 3, 1.0), (0.1, 3, 0.1)]
)
def test_a_whole_system_going_dark_gets_failover_now_in_time(
    interval_s: float, misses: int, tick_s: float
) -> None:
    cfg = EngineConfig(heartbeat_interval_s=interval_s, heartbeat_misses=misses, tick_s=tick_s)
    step = int(interval_s * 1000)
    engine = Engine(cfg)
    before = steady_stream(DARK + LIVE, 40, interval_ms=step)
    dark_from = T0_MS + 40 * step
    after = steady_stream(LIVE, 40, start_ms=dark_from, interval_ms=step, seed=1)
    recs = run(engine, by_time(before + after))
    now = [r for r in recs if r["action"] == "failover_now"]
    assert {r["component"] for r in now} == {"gateway", "matching"}
    assert {r["system"] for r in now} == {"dark-sys"}
    last_seen = dark_from - step
    limit_ms = misses * step
    for r in now:
        assert r["reasons"][0]["feature"] == "heartbeat_missed_s"
        issued = parse_ts(r["issued_at"])
        assert last_seen + limit_ms < issued <= last_seen + limit_ms + int(tick_s * 1000)
    assert engine.system_view("dark-sys")["health"] == 0.0
    assert engine.system_view("live-sys")["health"] > 0.0


def test_a_lost_feed_that_comes_back_blames_nobody() -> None:
    engine = Engine(EngineConfig())
    before = steady_stream(DARK + LIVE, 30)
    gap_ms = 10 * 60_000  # ten minutes with no input at all
    after = steady_stream(DARK + LIVE, 30, start_ms=T0_MS + 30 * 10_000 + gap_ms, seed=3)
    recs = run(engine, by_time(before + after), size=7)
    assert [r for r in recs if r["action"] == "failover_now"] == []
    # ... but silence after the resumption still counts
    later = T0_MS + 60 * 10_000 + gap_ms
    tail = steady_stream(LIVE, 10, start_ms=later, seed=4)
    recs = run(engine, tail)
    assert {r["system"] for r in recs if r["action"] == "failover_now"} == {"dark-sys"}


def test_advance_to_lets_a_quiet_engine_see_time_pass() -> None:
    # A Kafka partition holding only the dark system: nothing arrives, but the fleet reports.
    engine = Engine(EngineConfig())
    run(engine, steady_stream(DARK, 20))
    last = T0_MS + 19 * 10_000
    assert engine.advance_to(last + 25_000) == []  # within 3 × 10 s
    recs = engine.advance_to(last + 45_000)
    assert {(r["component"], r["action"]) for r in recs} == {
        ("gateway", "failover_now"),
        ("matching", "failover_now"),
    }
    assert engine.watermark_ms == last + 45_000
    assert engine.advance_to(last) == []  # never back
    assert engine.watermark_ms == last + 45_000


def test_advance_to_is_deterministic_and_tick_aligned() -> None:
    a, b = Engine(EngineConfig()), Engine(EngineConfig())
    for e in (a, b):
        run(e, steady_stream(DARK, 20))
    last = T0_MS + 19 * 10_000
    one = a.advance_to(last + 60_000)
    two = [r for t in range(1_000, 60_001, 1_000) for r in b.advance_to(last + t)]
    assert [r["recommendation_id"] for r in one] == [r["recommendation_id"] for r in two]
    assert all(parse_ts(r["issued_at"]) % 10_000 == 0 for r in one)
