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

One module per concept; this one wires the run together and re-exports the names
callers import from it: :mod:`~pipelines.embedded.scenario` (the settings, the
scripted failures, what a run saw and its summary) and
:mod:`~pipelines.embedded.terminal` (the live view, the lines, the summary table).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import uvicorn
from rich.console import Console

from pipelines.driver import in_time_order
from pipelines.embedded.live import LiveState
from pipelines.embedded.memory import MemorySink, MemorySource
from pipelines.embedded.scenario import (
    DEMO_START,
    DemoConfig,
    DemoRun,
    demo_schedule,
    summarize,
)
from pipelines.embedded.stream import StreamWorker, Topics
from pipelines.embedded.terminal import show, summary_table
from pipelines.outbound.alertmanager import AlertNotifier
from pipelines.outbound.orchestrator import DeliveryConfig, Outbox, Pusher
from pipelines.records.approvals import Approvals
from pipelines.records.audit import AuditLog, model_changed
from predictor.engine import Engine
from predictor.risk import RiskModel
from predictor.sim import SimConfig, Simulator, telemetry_events
from predictor.sim.faults import DEMO_KINDS, bad_message
from serve.app import create_app

__all__ = ["DEMO_START", "DemoConfig", "DemoRun", "demo_schedule", "run_demo", "summarize"]

logger = logging.getLogger(__name__)


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
        show(run, cfg, console, port)
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
    summary = summarize(run)
    if notifier is not None:
        summary["alerts"] = dict(notifier.counts)
    if pusher is not None and outbox is not None:
        summary["delivery"] = {**dict(pusher.counts), "outbox": outbox.counts()}
        pusher.close()
        outbox.close()
    if audit is not None:
        audit.close()  # everything queued is written first
        summary["audit_records"] = audit.written
    console.print(summary_table(summary))
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
