"""Backtest in dollars: a history through the production driver, costed after the fact.

``precovery backtest --history DIR`` runs the history's records (telemetry, positions,
market; :func:`pipelines.files.ports.history_records`) through
:class:`~pipelines.embedded.stream.StreamWorker` — the driver of the demo and of every Kafka
partition — with the production engine configuration, collects the failovers it
recommends, and prices what would have happened with the history's own incidents.
Baselines, in the same run:

``never``
    Never fail over: every incident is an outage of its full recorded length.
``reactive``
    The classic health-check failover: ``detect_s`` after an incident of a critical
    component (criticality ≥ 0.5) starts, fail over.
``risk_threshold``
    The same driver and model, failing over as soon as a component's risk reaches the
    policy's ``act_risk`` (and on the heartbeat rule), blind to positions, market and
    criticality: the engine run with every switch cost zero and no topology.
``market_aware``
    Production: expected loss of staying vs switching now or at the next safer window,
    per component with its criticality (docs/decisions.md).

The cost model (docs/decisions.md, "Backtest") is the *realised* one, independent of
the policy's estimates: an outage costs its recorded duration (or until a failover cut it
short, plus the planned switch time) at the positions and market recorded when it
started, scaled by the failing component's criticality; a switch costs the planned
switch at the positions and market recorded at the moment it was made. A failover
protects its system for ``protect_s`` (default: the model's horizon): an incident that
starts within that time after it is avoided; a failover with no incident of its system
starting in ``[t - protect_s, t + protect_s]`` and none in progress is unnecessary.
Recommendations are assumed acted on when issued (``failover_now``) or at ``not_before``
(``failover_at_window``), approvals included.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines.driver import Topics
from pipelines.files.ports import history_records
from pipelines.offline.replay import run_records
from predictor.engine import Engine, EngineConfig
from predictor.errors import ValidationError
from predictor.events import SESSIONS, parse_ts
from predictor.market import CostConfig, Exposure, MarketArrays, outage_loss, switch_cost
from predictor.ports import OutRecord
from predictor.risk import RiskModel
from predictor.topology import CRITICAL_AT, Topology

logger = logging.getLogger(__name__)

POLICIES = ("market_aware", "never", "reactive", "risk_threshold")
FAILOVER = ("failover_now", "failover_at_window")
KEYS = (
    "policy",
    "total_cost_usd",
    "outage_cost_usd",
    "switch_cost_usd",
    "failovers",
    "outages_avoided",
    "unnecessary_failovers",
)


@dataclass(frozen=True, slots=True)
class BacktestConfig:
    """Settings of a backtest; durations in seconds.

    Attributes
    ----------
    detect_s
        Reactive baseline: time from an incident's start to the health check's failover
        (3 missed heartbeats of 10 s).
    protect_s
        How long a failover protects its system; None: the model's horizon.
    warmup_s
        Incidents starting this soon after the history's first record are left out of
        every policy alike (the detectors are still learning the fleet).
    """

    detect_s: float = 30.0
    protect_s: float | None = None
    warmup_s: float = 3600.0


@dataclass(slots=True)
class PolicyResult:
    """One policy's outcome; ``events`` is (time ms, cost USD, what) for the plot."""

    policy: str
    outage_cost_usd: float = 0.0
    switch_cost_usd: float = 0.0
    failovers: int = 0
    outages_avoided: int = 0
    outages_shortened: int = 0
    unnecessary_failovers: int = 0
    incidents: int = 0
    events: list[tuple[int, float, str]] = field(default_factory=list)

    @property
    def total_cost_usd(self) -> float:
        return self.outage_cost_usd + self.switch_cost_usd

    def as_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "total_cost_usd": round(self.total_cost_usd, 2),
            "outage_cost_usd": round(self.outage_cost_usd, 2),
            "switch_cost_usd": round(self.switch_cost_usd, 2),
            "failovers": self.failovers,
            "outages_avoided": self.outages_avoided,
            "unnecessary_failovers": self.unnecessary_failovers,
            "outages_shortened": self.outages_shortened,
            "incidents": self.incidents,
        }


@dataclass(frozen=True, slots=True)
class IncidentRow:
    system: str
    component: str
    start_ms: int
    end_ms: int


class RecordedContext:
    """Positions per system and market per venue as recorded: the state at any time."""

    def __init__(self, positions: pd.DataFrame | None, market: pd.DataFrame | None) -> None:
        self.pos: dict[str, tuple[list[int], list[dict[str, Any]]]] = {}
        self.mkt: dict[str, tuple[list[int], list[dict[str, Any]]]] = {}
        for df, key, out in ((positions, "system", self.pos), (market, "venue", self.mkt)):
            if df is None or df.empty:
                continue
            for name, g in df.sort_values("ts", kind="stable").groupby(key, sort=False):
                rows: list[dict[str, Any]] = [
                    {str(k): v for k, v in r.items()} for r in g.to_dict(orient="records")
                ]
                out[str(name)] = (g["ts"].astype("int64").tolist(), rows)

    @staticmethod
    def _at(table: tuple[list[int], list[dict[str, Any]]] | None, t_ms: int) -> Any:
        if table is None:
            return None
        i = bisect.bisect_right(table[0], t_ms) - 1
        return table[1][max(i, 0)]

    def arrays(self, system: str, venue: str | None, t_ms: int) -> tuple[Exposure, MarketArrays]:
        """Exposure and market recorded at ``t_ms`` (before the first record: the first;
        none at all: zero exposure and the engine's default market)."""
        p = self._at(self.pos.get(system), t_ms)
        v = venue or (p["venue"] if p is not None else None)
        m = self._at(self.mkt.get(str(v)), t_ms) if v is not None else None
        exposure = (
            Exposure.single(0.0, 0.0, 0)
            if p is None
            else Exposure.single(
                float(p["net_notional_usd"]),
                float(p["gross_notional_usd"]),
                float(p["open_orders"]),
            )
        )
        market = (
            MarketArrays.single(2.0, 2.0, 5e6, "continuous", False)
            if m is None
            else MarketArrays.single(
                float(m["volatility_bps_per_min"]),
                float(m["spread_bps"]),
                float(m["depth_usd"]),
                str(m["session"]) if m["session"] in SESSIONS else "continuous",
                bool(m.get("event_risk", False)),
            )
        )
        return exposure, market


def realised_outage_usd(
    ctx: RecordedContext,
    costs: CostConfig,
    venue: str | None,
    inc: IncidentRow,
    minutes: float,
    criticality: float,
) -> float:
    """An outage of ``minutes`` from ``inc``'s start, at the context recorded then."""
    e, m = ctx.arrays(inc.system, venue, inc.start_ms)
    c = dataclasses.replace(costs, unplanned_recovery_min=max(minutes, 0.0))
    return float(outage_loss(e, m, c)[0]) * criticality


def realised_switch_usd(
    ctx: RecordedContext, costs: CostConfig, system: str, venue: str | None, t_ms: int
) -> float:
    """A planned failover of ``system`` at ``t_ms``, at the context recorded then."""
    e, m = ctx.arrays(system, venue, t_ms)
    return float(switch_cost(e, m, costs)[0])


def switch_times(recs: Iterable[dict[str, Any]]) -> dict[str, list[int]]:
    """When each system would be failed over, per the recommendations (ms, sorted)."""
    out: dict[str, list[int]] = {}
    for r in recs:
        if r["action"] not in FAILOVER:
            continue
        when = r["not_before"] if r["action"] == "failover_at_window" else r["issued_at"]
        out.setdefault(r["system"], []).append(parse_ts(when))
    return {s: sorted(ts) for s, ts in out.items()}


def cost_policy(
    name: str,
    wanted: dict[str, list[int]],
    incidents: Sequence[IncidentRow],
    ctx: RecordedContext,
    costs: CostConfig,
    topology: Topology,
    protect_ms: int,
    planned_ms: int,
) -> PolicyResult:
    """Price one policy: its failover times against the incidents (docs/decisions.md)."""
    res = PolicyResult(name, incidents=len(incidents))
    by_system: dict[str, list[IncidentRow]] = {}
    for inc in incidents:
        by_system.setdefault(inc.system, []).append(inc)
    systems = sorted(set(wanted) | set(by_system))
    for system in systems:
        venue = topology.system(system).venue
        # A system already failed over is protected: later requests inside it are moot.
        switches: list[int] = []
        for t in wanted.get(system, []):
            if not switches or t >= switches[-1] + protect_ms:
                switches.append(t)
        incs = sorted(by_system.get(system, []), key=lambda i: i.start_ms)
        for t in switches:
            c = realised_switch_usd(ctx, costs, system, venue, t)
            res.switch_cost_usd += c
            res.failovers += 1
            res.events.append((t, c, f"switch {system}"))
            useful = any(
                (t - protect_ms <= i.start_ms <= t + protect_ms) or (i.start_ms <= t <= i.end_ms)
                for i in incs
            )
            res.unnecessary_failovers += not useful
        for inc in incs:
            crit = topology.criticality(inc.system, inc.component)
            venue_c = topology.component_venue(inc.system, inc.component) or venue
            before = [t for t in switches if inc.start_ms - protect_ms <= t <= inc.start_ms]
            if before:
                res.outages_avoided += 1
                continue
            during = [t for t in switches if inc.start_ms < t < inc.end_ms]
            end = inc.end_ms
            if during:
                end = min(end, during[0] + planned_ms)
                res.outages_shortened += 1
            loss = realised_outage_usd(
                ctx, costs, venue_c, inc, (end - inc.start_ms) / 60_000.0, crit
            )
            res.outage_cost_usd += loss
            res.events.append((inc.start_ms, loss, f"outage {inc.system}/{inc.component}"))
    res.events.sort()
    return res


def risk_only_config(config: EngineConfig) -> EngineConfig:
    """The risk-threshold baseline's engine: switching costs nothing and every component
    is critical, so a failover follows as soon as the risk reaches ``act_risk``."""
    free = dataclasses.replace(config.costs, planned_switch_min=0.0, cancel_replace_fraction=0.0)
    # one threshold: no early failovers on dollars (at zero cost they would always pay)
    policy = dataclasses.replace(config.policy, early_act_risk=config.policy.act_risk)
    return dataclasses.replace(config, costs=free, policy=policy, topology=Topology())


class _Discard:
    def publish(self, records: Sequence[OutRecord]) -> None:
        pass


def read_incidents(history: Path) -> list[IncidentRow]:
    path = history / "incidents.csv"
    if not path.is_file():
        raise ValidationError("not_found", f"{history}: no incidents.csv (the backtest needs it)")
    df = pd.read_csv(path)
    missing = [c for c in ("system", "component", "started_at", "resolved_at") if c not in df]
    if missing:
        raise ValidationError("missing_field", f"{path}: missing columns {', '.join(missing)}")
    rows = []
    for i, r in enumerate(df.to_dict(orient="records")):
        try:
            start = parse_ts(r["started_at"])
            end = parse_ts(r["resolved_at"]) if isinstance(r["resolved_at"], str) else start
        except Exception as exc:
            raise ValidationError("bad_timestamp", f"{path} row {i + 2}: {exc}") from exc
        rows.append(IncidentRow(str(r["system"]), str(r["component"]), start, max(end, start)))
    return rows


def _table(history: Path, name: str) -> pd.DataFrame | None:
    from pipelines.files.ports import _find, _read

    path = _find(history, name)
    return None if path is None else _read(path)


def backtest(
    history: Path,
    config: EngineConfig,
    model: RiskModel,
    bt: BacktestConfig | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[PolicyResult]:
    """Every policy over ``history``; ``progress`` gets records done (both engine runs)."""
    bt = bt or BacktestConfig()
    incidents = read_incidents(history)
    ctx = RecordedContext(_table(history, "positions"), _table(history, "market"))
    recs: dict[str, list[dict[str, Any]]] = {}
    for name, cfg in (("market_aware", config), ("risk_threshold", risk_only_config(config))):
        engine = Engine(cfg, model=model)
        recs[name] = run_records(engine, history_records(history, Topics()), _Discard(), progress)
        logger.info("%s: %d recommendations", name, len(recs[name]))
    horizon_s = model.horizon_s
    protect_ms = int((bt.protect_s if bt.protect_s is not None else horizon_s) * 1000)
    planned_ms = int(config.costs.planned_switch_min * 60_000)
    start = _history_start(history, ctx)
    incidents = [i for i in incidents if i.start_ms >= start + bt.warmup_s * 1000]
    topo = config.topology
    reactive: dict[str, list[int]] = {}
    for inc in incidents:
        if topo.criticality(inc.system, inc.component) >= CRITICAL_AT:
            reactive.setdefault(inc.system, []).append(inc.start_ms + int(bt.detect_s * 1000))
    wanted = {
        "market_aware": switch_times(recs["market_aware"]),
        "never": {},
        "reactive": {s: sorted(v) for s, v in reactive.items()},
        "risk_threshold": switch_times(recs["risk_threshold"]),
    }
    return [
        cost_policy(p, wanted[p], incidents, ctx, config.costs, topo, protect_ms, planned_ms)
        for p in POLICIES
    ]


def _history_start(history: Path, ctx: RecordedContext) -> int:
    """The first recorded time: of the context tables, else of the telemetry."""
    firsts = [ts[0] for table in (ctx.pos, ctx.mkt) for ts, _ in table.values() if ts]
    if firsts:
        return min(firsts)
    from pipelines.files.ports import _find, _read

    path = _find(history, "telemetry")
    if path is None:
        raise ValidationError("not_found", f"{history}: no telemetry.parquet or telemetry.csv")
    return int(_read(path)["ts"].min())


# -- output ---------------------------------------------------------------------------
def table(results: Sequence[PolicyResult]) -> list[dict[str, Any]]:
    return [r.as_dict() for r in results]


def svg_plot(results: Sequence[PolicyResult], width: int = 800, height: int = 400) -> str:
    """Cumulative cost (USD) over event time per policy, as a small standalone SVG."""
    colours = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a")
    series = []
    t0 = min((e[0] for r in results for e in r.events), default=0)
    t1 = max((e[0] for r in results for e in r.events), default=t0 + 1)
    top = max((r.total_cost_usd for r in results), default=1.0) or 1.0
    pad_l, pad_b, pad_t, pad_r = 80, 40, 30, 160
    w, h = width - pad_l - pad_r, height - pad_b - pad_t

    def xy(t: int, v: float) -> str:
        x = pad_l + w * (t - t0) / max(1, t1 - t0)
        y = pad_t + h * (1 - v / top)
        return f"{x:.1f},{y:.1f}"

    for k, r in enumerate(results):
        total = 0.0
        pts = [xy(t0, 0.0)]
        for t, c, _ in r.events:
            pts.append(xy(t, total))
            total += c
            pts.append(xy(t, total))
        pts.append(xy(t1, total))
        colour = colours[k % len(colours)]
        series.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{" ".join(pts)}"/>'
            f'<text x="{width - pad_r + 8}" y="{pad_t + 18 * k + 12}" fill="{colour}" '
            f'font-size="12">{r.policy}: {r.total_cost_usd:,.0f} USD</text>'
        )
    days = (t1 - t0) / 86_400_000
    axes = (
        f'<line x1="{pad_l}" y1="{pad_t + h}" x2="{pad_l + w}" y2="{pad_t + h}" stroke="#444"/>'
        f'<line x1="{pad_l}" y1="{pad_t}" x2="{pad_l}" y2="{pad_t + h}" stroke="#444"/>'
        f'<text x="{pad_l}" y="{height - 10}" font-size="12">event time, {days:.1f} days</text>'
        f'<text x="4" y="{pad_t + 4}" font-size="12">{top:,.0f} USD</text>'
        f'<text x="4" y="{pad_t + h}" font-size="12">0 USD</text>'
        f'<text x="{pad_l}" y="18" font-size="14">Cumulative cost (outages + switches), USD'
        "</text>"
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif">{axes}{"".join(series)}</svg>\n'
    )


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    head = "| policy | total USD | outages USD | switches USD | failovers | avoided | unnecessary |"
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['policy']} | {r['total_cost_usd']:,.0f} | {r['outage_cost_usd']:,.0f} | "
            f"{r['switch_cost_usd']:,.0f} | {r['failovers']} | {r['outages_avoided']} | "
            f"{r['unnecessary_failovers']} |"
        )
    return "\n".join(lines)
