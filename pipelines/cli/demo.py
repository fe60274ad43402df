"""``precovery demo``: the main job, a simulated fleet through the in-process stream with
the API served (:mod:`pipelines.embedded.demo`).

Registered on the one ``precovery`` app by :mod:`pipelines.cli.main`; the engine, the
API and the model are imported inside the command.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from pipelines.cli import inputs, options
from pipelines.cli.console import console, fail, progress, setup_logging
from pipelines.cli.options import STATE_DIR, Detector, Mkdir, Seed, TopologyFile, Verbose
from predictor.errors import PrecoveryError, ValidationError


def demo(
    duration: Annotated[
        float,
        typer.Option(envvar="PRECOVERY_DURATION", help="Wall-clock seconds; 0 = until Ctrl-C"),
    ] = 0.0,
    speed: Annotated[
        float, typer.Option(envvar="PRECOVERY_SPEED", help="Simulated seconds per wall second")
    ] = 60.0,
    seed: Seed = 7,
    detector: Detector = "surprise",
    topology: TopologyFile = None,
    port: Annotated[int, options.api_port("API port; 0 = any free one")] = 8000,
    host: Annotated[
        str, options.api_host("API address; anything but loopback needs API keys (precovery keys)")
    ] = "127.0.0.1",
    model_dir: Annotated[
        Path | None,
        options.model_dir("Risk model directory (default: models/baseline, trained if missing)"),
    ] = None,
    summary_json: Annotated[
        Path | None,
        typer.Option(envvar="PRECOVERY_SUMMARY_JSON", help="Also write the summary here"),
    ] = None,
    json_lines: Annotated[
        bool, options.json_lines("Off a terminal: each recommendation as a JSON line on stdout")
    ] = False,
    alertmanager_url: Annotated[
        str | None,
        typer.Option(
            envvar="PRECOVERY_ALERTS__URL",
            help="Send SRE alerts to this Alertmanager (scripts/alertmanager start)",
        ),
    ] = None,
    orchestrator_url: Annotated[
        str | None,
        typer.Option(
            envvar="PRECOVERY_DELIVERY__URL",
            help="Push recommendations to this orchestrator (precovery orchestrator), "
            "through a durable outbox under --state-dir",
        ),
    ] = None,
    state_dir: Annotated[
        Path,
        options.state_dir(
            "Local state: the delivery outbox, the audit trail (unless PRECOVERY_AUDIT_URL)"
        ),
    ] = STATE_DIR,
    mkdir: Mkdir = False,
    verbose: Verbose = False,
) -> None:
    """The main job: a simulated fleet through the in-process stream, with the API served.

    On a terminal, a live view; off one, one line per recommendation on stdout
    (``--json``: recommendations.v1 as JSON lines, the rest on stderr).
    """
    try:
        inputs.at_least(duration, 0, "--duration", "seconds")
        inputs.positive(speed, "--speed", "simulated seconds per second")
        inputs.one_of(detector, ("surprise", "surprise_hst"), "--detector")
        if not 0 <= port <= 65535:
            raise ValidationError("bad_option", f"--port must be 0-65535, got {port}")
        if model_dir is not None:
            inputs.model_dir(model_dir)
        if summary_json is not None:
            inputs.output_path(summary_json, "--summary-json", mkdir)
    except PrecoveryError as exc:
        raise fail(exc) from exc
    setup_logging(verbose)
    from rich.console import Console

    from pipelines.cli.models import champion_source
    from pipelines.embedded.demo import DemoConfig, run_demo
    from pipelines.records.audit import AuditLog, AuditStore, audit_url
    from pipelines.records.keys import feedback_store, security_for
    from pipelines.settings import alert_notifier, delivery_config, engine_config, get_settings
    from pipelines.training.champion import follow_champion
    from pipelines.training.models import BASELINE_DIR, load_or_train

    settings = get_settings()
    try:
        security, api_mode = security_for(settings, host)
    except PrecoveryError as exc:
        raise fail(exc) from exc
    notifier = alert_notifier(settings.alerts, alertmanager_url)
    delivery = delivery_config(settings.delivery, orchestrator_url)

    watcher = None
    try:
        follow = champion_source(settings)
        if follow is not None:
            model, trained = follow[1], False
        else:
            with progress() as bar:
                task = bar.add_task("loading the risk model", total=None)
                model, trained = load_or_train(
                    model_dir or BASELINE_DIR, progress=lambda n: bar.advance(task, n)
                )
        if trained:
            console.print(f"trained a baseline model {model.version}")
        audit = AuditLog(AuditStore(audit_url(state_dir, settings.audit_url)))

        def observe(run: Any) -> None:
            nonlocal watcher
            if follow is not None:
                watcher = follow_champion(
                    follow[0],
                    run.live.set_model,
                    model,
                    follow[2],
                    audit,
                    "demo",
                    settings.mlflow.poll_s,
                )

        summary = run_demo(
            DemoConfig(
                duration_s=duration,
                speed=speed,
                seed=seed,
                host=host,
                port=port,
                json=json_lines,
                engine=engine_config(settings, detector=detector, topology=topology),
                failover_on_feed_loss=settings.failover_on_feed_loss,
                security=security,
                feedback=feedback_store(settings),
                api_mode=api_mode,
            ),
            model,
            # Off a terminal one recommendation is one line (soft wrap); with --json
            # stdout carries only the JSON lines.
            Console(stderr=json_lines, soft_wrap=True),
            notifier=notifier,
            delivery=delivery,
            outbox_path=state_dir / "outbox.sqlite",
            audit=audit,
            observe=observe if follow is not None else None,
        )
        if summary_json:
            summary_json.write_text(json.dumps(summary, indent=2))
    except (PrecoveryError, OSError) as exc:
        raise fail(exc) from exc
    finally:
        if watcher is not None:
            watcher.stop()
