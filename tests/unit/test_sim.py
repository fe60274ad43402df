"""The simulated fleet: determinism, ground truth, precursors, sessions, outputs."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.files.ports import write_dataset
from predictor.errors import ConfigError, ValidationError
from predictor.sim import (
    FAILURE_MODES,
    METRICS,
    SESSIONS,
    Episode,
    ScheduledFailure,
    SimConfig,
    Simulator,
    build_fleet,
    next_session_change,
    session_at,
    telemetry_events,
)

H = 3_600_000
MONDAY = int(datetime(2026, 1, 5, tzinfo=UTC).timestamp() * 1000)


def _ms(day: int, hh: int, mm: int = 0) -> int:
    return MONDAY + day * 24 * H + hh * H + mm * 60_000


def _telemetry(sim: Simulator, hours: float, chunk_s: float = 3600.0) -> pd.DataFrame:
    frames = [c.telemetry for c in sim.iter_chunks(hours, chunk_s=chunk_s)]
    return pd.concat(frames, ignore_index=True)


def _rfc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# One failure per mode, isolated from random episodes, each on its own component.
INJECTED = (
    ScheduledFailure("memory_leak", "fx-pricing", "pricing-engine", None, 4 * 3600, 3600),
    ScheduledFailure("db_lock_contention", "eq-oms", "database", None, 3 * 3600, 1200),
    ScheduledFailure("network_degradation", "eq-oms", "order-gateway", None, 3 * 3600, 900),
    ScheduledFailure("feed_lag", "md-feed", "feed-handler", None, 3 * 3600, 600),
    ScheduledFailure("disk_filling", "md-feed", "database", None, 5 * 3600, 7200),
    ScheduledFailure("cpu_runaway", "fx-pricing", "risk-engine", None, 2 * 3600, 600),
)


@pytest.fixture(scope="module")
def injected() -> tuple[Simulator, pd.DataFrame]:
    cfg = SimConfig(seed=11, failures_per_day=0.0, benign_per_day=0.0, scheduled=INJECTED)
    sim = Simulator(cfg)
    return sim, _telemetry(sim, 6.0)


@pytest.fixture(scope="module")
def day() -> tuple[Simulator, pd.DataFrame]:
    sim = Simulator(SimConfig(seed=5))
    return sim, _telemetry(sim, 24.0)


# -- fleet ---------------------------------------------------------------------------


def test_default_fleet_topology() -> None:
    fleet = build_fleet()
    assert [s.name for s in fleet.systems] == ["eq-oms", "fx-pricing", "md-feed"]
    assert 30 <= len(fleet.entities) <= 50
    assert fleet.system_venue == {"eq-oms": "XNYS", "fx-pricing": "FX-EBS", "md-feed": "XNAS"}
    assert set(fleet.venues) == {"XNYS", "FX-EBS", "XNAS"}
    assert "eq-oms-order-gateway-01" in {e.host for e in fleet.entities}
    assert len({e.host for e in fleet.entities}) == len(fleet.entities)
    for s in fleet.systems:
        assert any(c.critical for c in fleet.components_of(s.name))
        assert all(1 <= c.hosts <= 3 for c in s.components)


def test_fleet_scales_to_ten_thousand_entities() -> None:
    big = build_fleet(copies=700, hosts_per_component=3)
    assert len(big.entities) == 700 * 17 * 3
    assert len(big.systems) == 2100 and "eq-oms-002" in big.system_venue
    assert len({e.host for e in big.entities}) == len(big.entities)
    ten_k = build_fleet(copies=196, hosts_per_component=3)
    assert 9_900 <= len(ten_k.entities) <= 10_100
    sim = Simulator(SimConfig(copies=196, hosts_per_component=3, benign_per_day=0.0))
    chunk = next(sim.iter_chunks(hours=1 / 60))
    assert len(chunk.telemetry) == 6 * len(ten_k.entities)


# -- determinism ---------------------------------------------------------------------


def test_same_seed_same_output_and_different_seed_differs() -> None:
    a = Simulator(SimConfig(seed=3))
    b = Simulator(SimConfig(seed=3))
    ca, cb = list(a.iter_chunks(1.0, 600)), list(b.iter_chunks(1.0, 600))
    for x, y in zip(ca, cb, strict=True):
        pd.testing.assert_frame_equal(x.telemetry, y.telemetry)
        assert x.positions == y.positions and x.market == y.market
    assert a.episodes(48) == b.episodes(48) and a.incidents(48) == b.incidents(48)
    c = Simulator(SimConfig(seed=4))
    other = next(c.iter_chunks(1.0, 600)).telemetry
    assert not np.allclose(other["cpu_pct"], ca[0].telemetry["cpu_pct"])


def test_chunking_never_changes_the_output(injected: tuple[Simulator, pd.DataFrame]) -> None:
    _, ref = injected  # 6 h in 1 h chunks, with silent outages inside
    for chunk_s in (60.0, 1300.0):
        got = _telemetry(Simulator(injected[0].config), 6.0, chunk_s)
        pd.testing.assert_frame_equal(got, ref)
    # Chunks shorter than the interval (some empty) across the cpu_runaway outage at 2 h.
    odd = Simulator(injected[0].config).iter_chunks(1.0, 7.0, start_s=1.5 * 3600)
    got = pd.concat([c.telemetry for c in odd], ignore_index=True)
    want = ref[(ref["ts"] >= MONDAY + 1.5 * H) & (ref["ts"] < MONDAY + 2.5 * H)]
    pd.testing.assert_frame_equal(got, want.reset_index(drop=True))
    # Starting later, and asking for ground truth first, changes nothing either.
    late = Simulator(injected[0].config)
    late.episodes(100)
    part = pd.concat([c.telemetry for c in late.iter_chunks(2.0, 900, start_s=3 * 3600)])
    want = ref[(ref["ts"] >= MONDAY + 3 * H) & (ref["ts"] < MONDAY + 5 * H)]
    pd.testing.assert_frame_equal(part.reset_index(drop=True), want.reset_index(drop=True))
    one = Simulator(injected[0].config)
    many = Simulator(injected[0].config)
    c1, c2 = list(one.iter_chunks(3.0, 3600)), list(many.iter_chunks(3.0, 45))
    assert [p for c in c1 for p in c.positions] == [p for c in c2 for p in c.positions]
    assert [m for c in c1 for m in c.market] == [m for c in c2 for m in c.market]


# -- ground truth --------------------------------------------------------------------


def test_every_failure_is_an_incident_at_its_failure_time() -> None:
    sim = Simulator(SimConfig(seed=9))
    hours = 72.0
    end = MONDAY + int(hours * H)
    eps = sim.episodes(hours)
    assert eps == sorted(eps, key=lambda e: e.onset_at_ms)
    failures = [e for e in eps if e.failure and e.failure_at_ms is not None]
    failures = [e for e in failures if e.failure_at_ms is not None and e.failure_at_ms < end]
    incidents = sim.incidents(hours)
    assert len(failures) == len(incidents) >= 20
    by_key = {(i["system"], i["component"], i["host"], i["started_at"]): i for i in incidents}
    for ep in failures:
        assert ep.failure_at_ms is not None and ep.resolved_at_ms is not None
        inc = by_key[(ep.system, ep.component, ep.host, _rfc(ep.failure_at_ms))]
        assert inc["kind"] == ep.kind and inc["resolved_at"] == _rfc(ep.resolved_at_ms)
        critical = sim.fleet.is_critical(ep.system, ep.component)
        assert (inc["severity"] == "P1") == critical
        assert inc["severity"] in {"P1", "P2", "P3", "P4"}
        assert 18 * 60 <= (ep.resolved_at_ms - ep.failure_at_ms) / 1000 <= 32 * 60
        lo, hi = FAILURE_MODES[ep.kind].lead_s
        assert ep.lead_s is not None and lo - 10 <= ep.lead_s <= hi + 10
    assert len({i["incident_id"] for i in incidents}) == len(incidents)
    assert [i["incident_id"] for i in Simulator(SimConfig(seed=9)).incidents(hours)] == [
        i["incident_id"] for i in incidents
    ]
    # Failures are spread over modes and systems, and never overlap on one component.
    assert len({e.kind for e in failures}) == len(FAILURE_MODES)
    assert len({e.system for e in failures}) == 3
    seen: dict[tuple[str, str], list[Episode]] = {}
    for e in eps:
        if e.kind != "market_open_burst":
            seen.setdefault((e.system, e.component), []).append(e)
    for group in seen.values():
        for x, y in zip(group, group[1:], strict=False):
            assert x.end_at_ms <= y.onset_at_ms


def test_benign_episodes_never_become_incidents(day: tuple[Simulator, pd.DataFrame]) -> None:
    sim, df = day
    eps = sim.episodes(24)
    benign = [e for e in eps if not e.failure]
    assert {"deploy", "spike", "market_open_burst"} <= {e.kind for e in benign}
    assert all(e.failure_at_ms is None for e in benign)
    incident_hosts = {(i["host"], i["kind"]) for i in sim.incidents(24)}
    failures = [e for e in eps if e.failure]
    assert all((e.host, e.kind) in incident_hosts for e in failures if e.failure_at_ms)
    assert not {(e.host, e.kind) for e in benign} & incident_hosts
    # A benign episode skips at most one sample on its host.
    for e in benign:
        if e.host is None or any(
            f.host == e.host and f.onset_at_ms < e.end_at_ms + H for f in failures
        ):
            continue
        ts = df.loc[df["host"] == e.host, "ts"].to_numpy()
        window = ts[(ts >= e.onset_at_ms - 60_000) & (ts <= e.end_at_ms + 60_000)]
        assert np.diff(window).max(initial=10_000) <= 20_000


# -- precursors and outages ----------------------------------------------------------

RISING = {
    "memory_leak": [("mem_pct", 1.4), ("gc_pause_ms", 3.0)],
    "db_lock_contention": [("db_lock_wait_ms", 5.0), ("db_latency_ms", 3.0)],
    "network_degradation": [("packet_loss_pct", 50.0), ("net_rtt_us", 2.0)],
    "feed_lag": [("md_feed_lag_ms", 10.0), ("md_seq_gaps", 5.0)],
    "disk_filling": [("disk_used_pct", 1.3), ("disk_io_wait_pct", 2.0)],
    "cpu_runaway": [("cpu_pct", 2.0), ("order_latency_p99_us", 2.0)],
}


def _host_series(df: pd.DataFrame, host: str) -> pd.DataFrame:
    return df[df["host"] == host].set_index("ts")


@pytest.mark.parametrize("mode", sorted(RISING))
def test_precursor_metrics_rise_before_failure(
    injected: tuple[Simulator, pd.DataFrame], mode: str
) -> None:
    sim, df = injected
    ep = next(e for e in sim.episodes(6) if e.kind == mode)
    assert ep.host is not None and ep.failure_at_ms is not None
    h = _host_series(df, ep.host)
    before = h.loc[ep.onset_at_ms - H : ep.onset_at_ms - 1]
    late = h.loc[ep.failure_at_ms - 5 * 60_000 : ep.failure_at_ms - 1]
    early = h.loc[ep.onset_at_ms : ep.onset_at_ms + 5 * 60_000]
    assert len(before) >= 300 and len(late) == 30
    for metric, factor in RISING[mode]:
        base = max(float(before[metric].median()), 1e-3)
        assert late[metric].mean() >= factor * base, (metric, late[metric].mean(), base)
        # A precursor is a trend: its end is well above its start.
        assert late[metric].mean() > early[metric].mean()


def test_db_contention_spills_onto_order_flow(injected: tuple[Simulator, pd.DataFrame]) -> None:
    sim, df = injected
    ep = next(e for e in sim.episodes(6) if e.kind == "db_lock_contention")
    assert ep.failure_at_ms is not None and ep.resolved_at_ms is not None
    og = df[(df["system"] == "eq-oms") & (df["component"] == "matching-engine")]
    og = og.groupby("ts")[["queue_depth", "order_latency_p99_us"]].mean()
    before = og.loc[ep.onset_at_ms - H : ep.onset_at_ms - 1].median()
    late = og.loc[ep.failure_at_ms - 5 * 60_000 : ep.failure_at_ms - 1].mean()
    stall = og.loc[ep.failure_at_ms : ep.resolved_at_ms - 1].mean()
    assert (late > 1.5 * before).all()
    assert stall["queue_depth"] > 100 * before["queue_depth"]


def test_outages_silence_or_degrade_the_host(injected: tuple[Simulator, pd.DataFrame]) -> None:
    sim, df = injected
    for ep in sim.episodes(6):
        assert ep.host is not None and ep.failure_at_ms is not None
        assert ep.resolved_at_ms is not None
        ts = df.loc[df["host"] == ep.host, "ts"]
        during = df[(df["host"] == ep.host) & ts.between(ep.failure_at_ms, ep.resolved_at_ms - 1)]
        if FAILURE_MODES[ep.kind].silent:
            assert during.empty, ep.kind
            assert ts[ts < ep.failure_at_ms].max() == ep.failure_at_ms - 10_000
            if ep.resolved_at_ms < MONDAY + 6 * H:
                after = df[(df["host"] == ep.host) & (df["ts"] >= ep.resolved_at_ms)]
                assert after["ts"].min() == ep.resolved_at_ms
                assert after["mem_pct"].head(6).mean() < 80 and after["cpu_pct"].mean() < 80
        else:
            assert len(during) == (ep.resolved_at_ms - ep.failure_at_ms) // 10_000
            assert during["error_rate"].median() > 0.1
    feed = next(e for e in sim.episodes(6) if e.kind == "feed_lag")
    lag = df[(df["host"] == feed.host) & (df["ts"] >= (feed.failure_at_ms or 0))]
    assert lag["md_feed_lag_ms"].head(30).median() > 10_000


# -- physical values and contract ----------------------------------------------------


def test_values_are_physical(day: tuple[Simulator, pd.DataFrame]) -> None:
    sim, df = day
    assert list(df.columns) == ["ts", "system", "component", "host", *METRICS]
    assert df["ts"].dtype == np.int64
    assert all(df[m].dtype == np.float64 for m in METRICS)
    assert df["ts"].is_monotonic_increasing
    assert np.isfinite(df[list(METRICS)].to_numpy()).all()
    for m in METRICS:
        assert (df[m] >= 0).all(), m
        if m.endswith("_pct"):
            assert (df[m] <= 100).all(), m
    assert (df["error_rate"] <= 1).all()
    for m in ("queue_depth", "md_seq_gaps"):
        assert (df[m] == df[m].round()).all()
    # Entity order within a timestamp follows the fleet.
    first = df[df["ts"] == MONDAY]
    assert (
        first["host"].tolist()[: len(sim.fleet.entities)]
        == [e.host for e in sim.fleet.entities][: len(first)]
    )
    # Load follows the session: order gateways work harder at the equities open.
    og = df[df["host"] == "eq-oms-order-gateway-01"].set_index("ts")
    assert og.loc[_ms(0, 14, 30) : _ms(0, 14, 50), "queue_depth"].mean() > (
        3 * og.loc[_ms(0, 3) : _ms(0, 4), "queue_depth"].mean()
    )


def test_telemetry_events_match_contract(day: tuple[Simulator, pd.DataFrame]) -> None:
    _, df = day
    head = df.head(50)
    events = telemetry_events(head)
    assert len(events) == 50
    ev = events[7]
    assert set(ev) == {"ts", "system", "component", "host", "metrics"}
    assert isinstance(ev["ts"], int) and ev["ts"] == int(head["ts"].iloc[7])
    assert list(ev["metrics"]) == list(METRICS)
    assert ev["metrics"]["cpu_pct"] == head["cpu_pct"].iloc[7]


# -- sessions, market, positions -----------------------------------------------------


@pytest.mark.parametrize(
    ("venue", "ts", "session"),
    [
        ("XNYS", _ms(0, 11, 59), "closed"),
        ("XNYS", _ms(0, 12), "pre_open"),
        ("XNYS", _ms(0, 14, 25), "opening_auction"),
        ("XNAS", _ms(0, 14, 30), "continuous"),
        ("XNAS", _ms(0, 20, 55), "closing_auction"),
        ("XNYS", _ms(0, 21), "closed"),
        ("XNYS", _ms(5, 15), "closed"),  # Saturday
        ("FX-EBS", _ms(4, 21, 59), "continuous"),  # Friday
        ("FX-EBS", _ms(4, 22), "closed"),
        ("FX-EBS", _ms(6, 21, 59), "closed"),  # Sunday
        ("FX-EBS", _ms(6, 22), "continuous"),
    ],
)
def test_session_schedule(venue: str, ts: int, session: str) -> None:
    assert session_at(venue, ts) == session


def test_next_session_change_walks_the_week() -> None:
    seq = []
    t = _ms(0, 0)
    while t < _ms(7, 0):
        t, s = next_session_change("XNYS", t)
        seq.append((t, s))
    assert seq[:5] == [
        (_ms(0, 12), "pre_open"),
        (_ms(0, 14, 25), "opening_auction"),
        (_ms(0, 14, 30), "continuous"),
        (_ms(0, 20, 55), "closing_auction"),
        (_ms(0, 21), "closed"),
    ]
    assert seq[24] == (_ms(4, 21), "closed")  # Friday close, then Monday pre-open
    assert seq[25] == (_ms(7, 12), "pre_open")
    assert next_session_change("FX-EBS", _ms(2, 9)) == (_ms(4, 22), "closed")
    assert next_session_change("FX-EBS", _ms(4, 22)) == (_ms(6, 22), "continuous")
    assert all(session_at("XNYS", at) == s for at, s in seq)
    with pytest.raises(ValidationError):
        session_at("XLON", _ms(0, 9))


def test_market_and_positions_records() -> None:
    sim = Simulator(SimConfig(seed=2, failures_per_day=0.0, benign_per_day=0.0))
    chunks = list(sim.iter_chunks(24.0, chunk_s=3600))
    market = pd.DataFrame([m for c in chunks for m in c.market])
    pos = pd.DataFrame([p for c in chunks for p in c.positions])
    assert len(market) == 1440 * 3 and len(pos) == 1440 * 3
    assert set(market["session"]) <= set(SESSIONS)
    assert (market["ts"] % 60_000 == 0).all() and (market["depth_usd"] > 0).all()
    nyse = market[market["venue"] == "XNYS"].set_index("ts")
    cont = nyse[nyse["session"] == "continuous"]["spread_bps"].median()
    auction = nyse[nyse["session"].str.endswith("auction")]["spread_bps"].median()
    assert auction > 1.5 * cont
    assert nyse.loc[_ms(0, 13, 30), "event_risk"] and not nyse.loc[_ms(0, 3), "event_risk"]
    assert (pos["gross_notional_usd"] >= pos["net_notional_usd"].abs()).all()
    assert (pos["open_orders"] >= 0).all()
    eq = pos[pos["system"] == "eq-oms"].set_index("ts")
    closed = eq.loc[_ms(0, 2) : _ms(0, 10), "gross_notional_usd"].mean()
    open_ = eq.loc[_ms(0, 15) : _ms(0, 20), "gross_notional_usd"].mean()
    assert closed < 0.1 * open_


# -- files ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_write_dataset(tmp_path: Path, fmt: str) -> None:
    sched = (ScheduledFailure("cpu_runaway", "eq-oms", "risk-engine", None, 1500, 300),)
    sim = Simulator(SimConfig(seed=1, failures_per_day=0.0, scheduled=sched))
    seen: list[float] = []
    paths = write_dataset(sim, 0.75, tmp_path / fmt, fmt, progress=seen.append)
    assert set(paths) == {"telemetry", "positions", "market", "incidents"}
    assert seen and seen[-1] == 1.0 and seen == sorted(seen)
    read = pd.read_csv if fmt == "csv" else pd.read_parquet
    tel = read(paths["telemetry"])
    ref = _telemetry(Simulator(sim.config), 0.75)
    assert len(tel) == len(ref) and list(tel.columns) == list(ref.columns)
    if fmt == "csv":
        assert tel["ts"].str.endswith("Z").all()
    ts = pd.to_datetime(tel["ts"], utc=True)
    ms = (ts - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)
    assert ms.tolist() == ref["ts"].tolist()
    np.testing.assert_allclose(tel["cpu_pct"], ref["cpu_pct"])
    assert len(read(paths["market"])) == 45 * 3
    incidents = pd.read_csv(paths["incidents"])
    assert incidents["kind"].tolist() == ["cpu_runaway"]


def test_scheduled_failure_validation() -> None:
    with pytest.raises(ConfigError):
        Simulator(SimConfig(scheduled=(ScheduledFailure("meltdown", "eq-oms", "database"),)))
    with pytest.raises(ConfigError):
        Simulator(SimConfig(scheduled=(ScheduledFailure("feed_lag", "eq-oms", "nope"),)))
