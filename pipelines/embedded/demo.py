"""The main job on the embedded default: simulator → in-process stream → API + terminal.

Three threads and the main one:

- the *feeder* plays the simulator into a :class:`~pipelines.embedded.memory.MemorySource` as
  telemetry.v1 / positions.v1 / market.v1 JSON, first a warm-up of history as fast as
  it can, then paced at ``speed`` × wall time, with a trickle of malformed messages to
  show the dead-letter path;
- the *worker* runs :class:`~pipelines.embedded.stream.StreamWorker` on it;
- *uvicorn* serves the API on 127.0.0.1;
- the main thread draws the live view (or, off a terminal, prints each
  recommendation as a line).

Failures are injected on a schedule so that a one-minute run shows some: the demo
knows the ground truth and shows each recommendation's lead time against it.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import orjson
import uvicorn
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from pipelines.driver import in_time_order
from pipelines.embedded.live import LiveState
from pipelines.embedded.memory import MemorySink, MemorySource
from pipelines.embedded.stream import StreamWorker, Topics
from pipelines.outbound.alertmanager import AlertNotifier
from pipelines.outbound.orchestrator import DeliveryConfig, Outbox, Pusher
from pipelines.records.approvals import Approvals
from pipelines.records.audit import AuditLog, model_changed
from predictor.engine import Engine, EngineConfig
from predictor.events import ms_to_iso, parse_ts
from predictor.risk import RiskModel
from predictor.sim import ScheduledFailure, SimConfig, Simulator, telemetry_events
from predictor.sim.faults import DEMO_KINDS, bad_message
from serve.app import create_app

logger = logging.getLogger(__name__)

DEMO_START = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)  # a Monday; live from 14:00, the NYSE open


@dataclass(frozen=True, slots=True)
class DemoConfig:
    """Settings of ``precovery demo``.

    Attributes
    ----------
    duration_s
        Wall-clock seconds of the live part; 0 runs until interrupted (Ctrl-C).
    speed
        Simulated seconds per wall second in the live part.
    seed
        Simulator seed.
    warmup_s
        Simulated history replayed first, as fast as possible (baselines need it).
    host, port
        Where the API listens (port 0: pick a free one).
    bad_every
        Every ``bad_every``-th message is replaced by a malformed one (0: never).
    engine
        The loop's settings (heartbeat, ticks, cadence; ``Settings`` in the CLI).
    failover_on_feed_loss
        See :class:`pipelines.embedded.stream.StreamWorker`.
    alert_interval_s
        With a notifier: how often (wall s) alerts are synced with Alertmanager.
    json
        Print each recommendation as a recommendations.v1 JSON line on stdout instead of
        the live view.
    """

    duration_s: float = 60.0
    speed: float = 60.0
    seed: int = 7
    warmup_s: float = 7200.0
    host: str = "127.0.0.1"
    port: int = 8000
    bad_every: int = 997
    json: bool = False
    engine: EngineConfig = field(default_factory=EngineConfig)
    failover_on_feed_loss: bool = False
    alert_interval_s: float = 5.0
    #: API guard and feedback store (serve.gates.Security, pipelines.records.feedback); mode line
    security: Any = None
    feedback: Any = None
    api_mode: str = "open on loopback"


def demo_schedule(warmup_s: float, live_sim_s: float) -> tuple[ScheduledFailure, ...]:
    """Failures placed inside the live window: (mode, where, when as a share, precursor s).

    A mix of slow precursors the model foresees well (disk filling, a memory leak, DB
    lock contention) and fast ones it often sees late or not at all (CPU runaway, feed
    lag): the demo shows both, with their lead times against the ground truth.
    """
    plan = [
        ("cpu_runaway", "eq-oms", "matching-engine", 0.2, 480.0),
        ("disk_filling", "eq-oms", "database", 0.35, 4200.0),
        ("db_lock_contention", "fx-pricing", "database", 0.5, 1200.0),
        ("feed_lag", "md-feed", "feed-handler", 0.65, 600.0),
        ("memory_leak", "eq-oms", "order-gateway", 0.85, 2700.0),
    ]
    return tuple(
        ScheduledFailure(
            mode, system, component, None, failure_at_s=warmup_s + at * live_sim_s, lead_s=lead
        )
        for mode, system, component, at, lead in plan
    )


@dataclass
class DemoRun:
    """What a demo run saw; ``summary()`` compares it with the ground truth."""

    sim: Simulator
    live: LiveState
    source: MemorySource
    sink: MemorySink
    started_wall: float = field(default_factory=time.monotonic)
    #: The newest recommendations, for the live view (bounded: the demo can run for days).
    recommendations: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=200))
    #: Recommendations not yet printed (off a terminal); bounded like the rest.
    to_print: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=10_000))
    #: Failover recommendations, for the summary against the ground truth.
    failovers: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=10_000))
    n_recommendations: int = 0
    fed: int = 0
    bad_fed: int = 0
    done_feeding: threading.Event = field(default_factory=threading.Event)

    def lead_time_s(self, rec: dict[str, Any]) -> float | None:
        """Seconds from the recommendation to the failure it foresaw (ground truth)."""
        issued = parse_ts(rec["issued_at"])
        for ep in self.failures:
            if (
                ep.failure
                and ep.failure_at_ms is not None
                and ep.system == rec["system"]
                and ep.component == rec["component"]
                and ep.onset_at_ms - 600_000 <= issued <= (ep.resolved_at_ms or ep.failure_at_ms)
            ):
                return (ep.failure_at_ms - issued) / 1000.0
        return None

    hours: float = 1.0

    def note(self, recs: list[dict[str, Any]]) -> None:
        """Keep what the views and the summary need of a batch's recommendations."""
        self.n_recommendations += len(recs)
        self.recommendations.extend(recs)
        for rec in recs:
            if rec["action"] in ("prepare_standby", "failover_at_window", "failover_now"):
                self.to_print.append(rec)
            if rec["action"] in ("failover_at_window", "failover_now"):
                self.failovers.append(rec)

    @cached_property
    def failures(self) -> list[Any]:
        """Ground-truth failure episodes of the whole run (computed once)."""
        return [ep for ep in self.sim.episodes(self.hours) if ep.failure]


def run_demo(
    cfg: DemoConfig,
    model: RiskModel | None,
    console: Console | None = None,
    observe: Callable[[DemoRun], None] | None = None,
    notifier: AlertNotifier | None = None,
    delivery: DeliveryConfig | None = None,
    outbox_path: Path | None = None,
    audit: AuditLog | None = None,
) -> dict[str, Any]:
    """Run the embedded default; returns the summary printed at the end.

    ``observe(run)`` is called once everything is started, in its own thread (the memory
    benchmark samples the run's RSS and event time from there). With ``notifier``, every
    recommendation also becomes SRE alerts in Alertmanager (one per system and cause).
    With ``delivery``, every recommendation goes into the durable outbox at
    ``outbox_path`` before it is published, and a pusher delivers it to the orchestrator.
    With ``audit``, every recommendation, delivery attempt, approval and the model loaded
    are recorded there (closed, everything written, before this returns). Failovers with
    authority ``approve`` are approved or rejected through the API either way.
    """
    console = console or Console()
    forever = cfg.duration_s <= 0
    # Scripted failures fall in the first simulated hour of an endless run, which plays
    # up to a simulated week (about 2.8 h of wall time at 60×).
    live_sim_s = 3600.0 if forever else cfg.duration_s * cfg.speed
    hours = (
        (cfg.warmup_s / 3600.0 + 24.0 * 7)
        if forever
        else ((cfg.warmup_s + live_sim_s) / 3600.0 + 0.01)
    )
    sim = Simulator(
        SimConfig(
            seed=cfg.seed,
            start=DEMO_START,
            failures_per_day=12.0,
            scheduled=demo_schedule(cfg.warmup_s, live_sim_s),
        )
    )
    critical = {(s.name, c.name): c.critical for s in sim.fleet.systems for c in s.components}
    engine = Engine(cfg.engine, model=model, critical=critical, system_venue=sim.fleet.system_venue)
    live = LiveState(engine)
    # Nothing here may grow with the run: the source drops what is committed, the sink
    # keeps the newest records per topic, the views keep bounded tails.
    source, sink = MemorySource(retain=False), MemorySink(max_per_topic=1_000)
    run = DemoRun(sim=sim, live=live, source=source, sink=sink, hours=hours)
    topics = Topics()

    outbox = Outbox(outbox_path or Path(".precovery/outbox.sqlite")) if delivery else None
    if outbox is not None:  # a restart goes on above the epochs it already sent (fencing)
        engine.resume_epochs(outbox.max_epochs())
    pusher = (
        Pusher(outbox, delivery, on_attempt=_audit_attempt(audit))
        if outbox is not None and delivery is not None
        else None
    )
    approvals = Approvals(live, audit, forward=outbox.add if outbox is not None else None)
    model_changed(audit, "demo", model.version if model else None, reason="loaded at start")

    def on_batch(report: Any, result: Any) -> None:
        live.on_batch(report, result)
        if result is not None:
            run.note(result.recommendations)
            if notifier is not None:
                notifier.observe(result.recommendations)
            if audit is not None:
                audit.recommendations(result.recommendations)
        if outbox is not None:  # situation reports go to the orchestrator too, in order
            outbox.add(in_time_order(report.recommendations, report.reports))

    worker = StreamWorker(
        engine,
        source,
        sink,
        topics,
        lock=live.lock,
        on_batch=on_batch,
        feed=live.feed,
        failover_on_feed_loss=cfg.failover_on_feed_loss,
    )
    feeder = threading.Thread(target=_feed, args=(run, cfg, hours, topics), daemon=True)
    work = threading.Thread(target=_run_worker, args=(worker,), name="stream-worker", daemon=True)

    app = create_app(
        live,
        security=cfg.security,
        feedback=cfg.feedback,
        alerts=notifier,
        audit=audit.store if audit is not None else None,
        approvals=approvals,
    )
    server = uvicorn.Server(
        uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level="warning", lifespan="off")
    )
    api = threading.Thread(target=server.run, daemon=True)
    api.start()
    feeder.start()
    work.start()
    deadline = time.monotonic() + 10.0
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    port = _bound_port(server) or cfg.port
    console.print(
        f"[bold]Precovery demo[/] — API on http://{cfg.host}:{port} (docs: /docs, "
        f"console: /console; {cfg.api_mode}) · "
        f"{len(sim.fleet.entities)} hosts · speed {cfg.speed:g}× · seed {cfg.seed}"
    )
    logger.info("demo API listening on %s:%d", cfg.host, port)
    if observe is not None:
        threading.Thread(target=observe, args=(run,), name="demo-observer", daemon=True).start()
    alerts_stop = threading.Event()
    pushing = None
    if pusher is not None:
        pushing = threading.Thread(
            target=pusher.run, args=(alerts_stop,), name="delivery", daemon=True
        )
        pushing.start()
        console.print(f"recommendations pushed to {pusher.config.url} (outbox {outbox_path})")
    alerting = None
    if notifier is not None:
        alerting = threading.Thread(
            target=notifier.run,
            args=(alerts_stop, cfg.alert_interval_s, live.feed.conditions),
            name="alerts",
            daemon=True,
        )
        alerting.start()
        console.print(f"SRE alerts to Alertmanager at {notifier.client.url}")
    try:
        _show(run, cfg, console, port)
    except KeyboardInterrupt:
        console.print("interrupted: stopping")
    finally:
        source.close()
        worker.stop()
        work.join(timeout=10)
        server.should_exit = True
        api.join(timeout=10)
        alerts_stop.set()
        if alerting is not None:
            alerting.join(timeout=30)
        if pushing is not None:
            pushing.join(timeout=30)
    summary = _summary(run)
    if notifier is not None:
        summary["alerts"] = dict(notifier.counts)
    if pusher is not None and outbox is not None:
        summary["delivery"] = {**dict(pusher.counts), "outbox": outbox.counts()}
        pusher.close()
        outbox.close()
    if audit is not None:
        audit.close()  # everything queued is written first
        summary["audit_records"] = audit.written
    console.print(_summary_table(summary))
    return summary


def _audit_attempt(audit: AuditLog | None) -> Callable[[Any, str, str], None] | None:
    """The pusher's listener that audits each delivery attempt (None without an audit)."""
    if audit is None:
        return None

    def on_attempt(item: Any, outcome: str, detail: str) -> None:
        audit.delivery(item.rec_id, item.system, item.epoch, item.attempts + 1, outcome, detail)

    return on_attempt


def _run_worker(worker: StreamWorker) -> None:
    """The worker thread: an exception ends it, and readiness says so (never silently)."""
    try:
        worker.run(poll_timeout_s=0.1)
    except Exception:  # already reported to the feed monitor and logged at ERROR
        return


def _bound_port(server: uvicorn.Server) -> int | None:
    for srv in getattr(server, "servers", []) or []:
        for sock in getattr(srv, "sockets", []) or []:
            return int(sock.getsockname()[1])
    return None


def _feed(run: DemoRun, cfg: DemoConfig, hours: float, topics: Topics) -> None:
    """Play the simulator into the source: warm-up at full speed, then paced."""
    src = run.source
    live_from_ms = run.sim.start_ms + int(cfg.warmup_s * 1000)
    wall0: float | None = None
    n = 0
    try:
        for chunk in run.sim.iter_chunks(hours, chunk_s=10.0):
            if chunk.t0_ms >= live_from_ms:
                if wall0 is None:
                    wall0 = time.monotonic()
                due = wall0 + (chunk.t0_ms - live_from_ms) / 1000.0 / cfg.speed
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                if 0 < cfg.duration_s < time.monotonic() - wall0:
                    break
            for m in chunk.market:
                src.append(topics.market, orjson.dumps(m), m["venue"].encode())
            for p in chunk.positions:
                src.append(topics.positions, orjson.dumps(p), p["system"].encode())
            values, keys = [], []
            for ev in telemetry_events(chunk.telemetry):
                n += 1
                if cfg.bad_every and n % cfg.bad_every == 0:
                    values.append(bad_message(n // cfg.bad_every, ev, DEMO_KINDS)[1])
                    run.bad_fed += 1
                else:
                    values.append(orjson.dumps(ev))
                keys.append(ev["system"].encode())
            src.extend(topics.telemetry, values, keys)
            run.fed += len(values)
    finally:
        run.done_feeding.set()


def _show(run: DemoRun, cfg: DemoConfig, console: Console, port: int) -> None:
    end = time.monotonic() + cfg.duration_s + 2.0 if cfg.duration_s > 0 else float("inf")
    if console.is_terminal and not cfg.json:
        with Live(_view(run, port), console=console, refresh_per_second=4) as view:
            while time.monotonic() < end:
                time.sleep(0.25)
                view.update(_view(run, port))
        return
    while time.monotonic() < end:
        time.sleep(0.25)
        while run.to_print:
            rec = run.to_print.popleft()
            if cfg.json:
                sys.stdout.write(orjson.dumps(rec).decode() + "\n")
                sys.stdout.flush()
            else:
                # One line per recommendation whatever the width: greppable off a terminal.
                console.print(_rec_line(run, rec), soft_wrap=True, highlight=False)


def _fmt_lead(lead: float | None) -> str:
    if lead is None:
        return "no failure coming (false alarm)"
    if lead < 0:
        return f"{-lead / 60:.1f} min after the failure began"
    return f"lead time {lead / 60:.1f} min"


def _rec_line(run: DemoRun, rec: dict[str, Any]) -> str:
    reasons = ", ".join(f"{r['feature']}={r['value']}" for r in rec["reasons"][:3])
    window = f" not before {rec['not_before'][11:19]}Z" if rec.get("not_before") else ""
    return (
        f"{rec['issued_at'][11:19]}Z {rec['system']}/{rec['component']}: "
        f"[bold]{rec['action']}[/]{window} · risk {_pct(rec['risk'])} · "
        f"{_fmt_lead(run.lead_time_s(rec))} · stay ${_k(rec['expected_loss_stay_usd'])} vs "
        f"switch ${_k(rec['expected_cost_switch_usd'])} · {reasons}"
    )


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.0f}%"


def _k(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v / 1000:,.1f}k" if abs(v) >= 1000 else f"{v:,.0f}"


def _view(run: DemoRun, port: int) -> Group:
    status = run.live.status()
    wm = status["watermark"]
    systems = Table(title=f"Fleet health at {ms_to_iso(wm) if wm else '—'}", expand=True)
    for col in ("system", "health", "worst component", "max risk", "action"):
        systems.add_column(col)
    for s in run.live.systems():
        h = s["health"]
        color = "green" if h >= 80 else "yellow" if h >= 50 else "red"
        systems.add_row(
            s["system"],
            f"[{color}]{h:5.1f}[/] {'█' * int(h // 10)}",
            f"{s['worst_component']} ({s['worst_component_health']:.0f})",
            _pct(s["max_risk"]),
            s["action"],
        )
    recs = Table(title="Recommendations (newest first)", expand=True)
    for col in (
        "issued",
        "system/component",
        "action",
        "risk",
        "lead time",
        "stay vs switch",
        "reasons",
    ):
        recs.add_column(col)
    shown = [r for r in run.recommendations if r["action"] != "none"][-8:]
    for rec in reversed(shown):
        recs.add_row(
            rec["issued_at"][11:19] + "Z",
            f"{rec['system']}/{rec['component']}",
            rec["action"] + (f" ≥{rec['not_before'][11:19]}Z" if rec.get("not_before") else ""),
            _pct(rec["risk"]),
            _fmt_lead(run.lead_time_s(rec)),
            f"${_k(rec['expected_loss_stay_usd'])} / ${_k(rec['expected_cost_switch_usd'])}",
            ", ".join(f"{r['feature']}" for r in rec["reasons"][:2]),
        )
    c = status["counters"]
    rejects = ", ".join(f"{k} {v}" for k, v in sorted(status["reject_reasons"].items())) or "none"
    footer = (
        f"events {c['events']:,} · rejected {c['rejected']:,} ({rejects}) · "
        f"risk scored {c['risk_scored']:,} · recommendations {c['recommendations']:,} · "
        f"model {status['model_version']} · API http://127.0.0.1:{port}/docs"
    )
    return Group(systems, recs, Panel(footer))


def _summary(run: DemoRun) -> dict[str, Any]:
    status = run.live.status()
    acts = list(run.failovers)
    now_ms = status["watermark"] or run.sim.start_ms
    failures = [
        ep
        for ep in run.failures
        if ep.failure_at_ms is not None
        and ep.failure_at_ms <= now_ms
        and ep.failure_at_ms >= run.sim.start_ms + 1_800_000
    ]
    leads: list[float] = []
    for ep in failures:
        before = [
            parse_ts(r["issued_at"])
            for r in acts
            if r["system"] == ep.system
            and r["component"] == ep.component
            and ep.onset_at_ms - 600_000 <= parse_ts(r["issued_at"]) < ep.failure_at_ms
        ]
        if before:
            leads.append((ep.failure_at_ms - min(before)) / 1000.0)
    false = sum(1 for r in acts if run.lead_time_s(r) is None)
    return {
        "events": status["counters"]["events"],
        "rejected": status["counters"]["rejected"],
        "reject_reasons": status["reject_reasons"],
        "recommendations": run.n_recommendations,
        "failovers_recommended": len(acts),
        "failures_in_run": len(failures),
        "failures_foreseen": len(leads),
        "lead_times_s": sorted(leads),
        "false_failovers": false,
        "sim_until": ms_to_iso(now_ms),
    }


def _summary_table(s: dict[str, Any]) -> Table:
    t = Table(title="Demo summary (against the simulator's ground truth)")
    t.add_column("what")
    t.add_column("value", justify="right")
    leads = ", ".join(f"{x / 60:.1f}" for x in s["lead_times_s"]) or "—"
    for k, v in (
        ("events processed", f"{s['events']:,}"),
        ("rejected (dead-lettered)", f"{s['rejected']:,}"),
        ("recommendations", f"{s['recommendations']:,}"),
        ("failover recommendations", f"{s['failovers_recommended']}"),
        ("failures in the run", f"{s['failures_in_run']}"),
        ("failures foreseen", f"{s['failures_foreseen']}"),
        ("lead times, min", leads),
        ("false failover recommendations", f"{s['false_failovers']}"),
        ("simulated until", s["sim_until"]),
    ):
        t.add_row(k, v)
    return t
