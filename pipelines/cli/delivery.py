"""``precovery orchestrator`` (the reference orchestrator) and the delivery settings.

Kept out of pipelines/cli/main.py so that the command tree stays readable; registered there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli import inputs
from pipelines.cli.console import console, fail, setup_logging
from pipelines.cli.options import Bootstrap, IdleExit, Mkdir, Verbose
from predictor.errors import PrecoveryError, ValidationError


def orchestrator(
    port: Annotated[
        int, typer.Option(envvar="PRECOVERY_ORCHESTRATOR_PORT", help="Listen port (127.0.0.1)")
    ] = 8100,
    log: Annotated[
        Path,
        typer.Option(
            envvar="PRECOVERY_ORCHESTRATOR_LOG",
            help="Accepted recommendations, one JSON line each (state is rebuilt from it)",
        ),
    ] = Path(".precovery/orchestrator.jsonl"),
    secret: Annotated[
        str | None,
        typer.Option(
            envvar="PRECOVERY_DELIVERY__SECRET",
            help="Require X-Precovery-Signature (HMAC-SHA256 of the body) with this secret",
        ),
    ] = None,
    mkdir: Mkdir = False,
    verbose: Verbose = False,
) -> None:
    """The reference orchestrator: receives recommendations, fences stale epochs, dedupes.

    POST /v1/recommendations (see docs/delivery.md); each accepted one is written to
    --log and what it would do is logged. Ctrl-C stops it.
    """
    try:
        if not 0 < port <= 65535:
            raise ValidationError("bad_option", f"--port must be 1-65535, got {port}")
        inputs.output_path(log, "--log", mkdir)
    except PrecoveryError as exc:
        raise fail(exc) from exc
    setup_logging(verbose)
    import uvicorn

    from serve.orchestrator import create_orchestrator

    console.print(
        f"reference orchestrator on http://127.0.0.1:{port}/v1/recommendations, log {log}"
    )
    uvicorn.run(create_orchestrator(log, secret), host="127.0.0.1", port=port, log_level="warning")


def deliver(
    bootstrap: Bootstrap,
    url: Annotated[
        str | None,
        typer.Option(
            envvar="PRECOVERY_DELIVERY__URL",
            help="The orchestrator's endpoint (POST /v1/recommendations)",
        ),
    ] = None,
    group: Annotated[
        str, typer.Option(envvar="PRECOVERY_DELIVERY_GROUP", help="Consumer group of deliverers")
    ] = "precovery-delivery",
    idle_exit_s: IdleExit = None,
    verbose: Verbose = False,
) -> None:
    """Push recommendations.v1 from Kafka to the orchestrator (the topic is the outbox).

    One member of a consumer group: in order per system, a partition's offset committed
    once its record is settled; SIGTERM stops it (docs/delivery.md). Every attempt is
    audited (PRECOVERY_AUDIT_URL, default <state dir>/audit.sqlite; docs/audit.md).
    """
    setup_logging(verbose)
    import signal

    from pipelines.kafka.delivery import KafkaDeliverer
    from pipelines.records.audit import AuditLog, AuditStore, audit_url
    from pipelines.settings import delivery_config, get_settings

    settings = get_settings()
    cfg = delivery_config(settings.delivery, url)
    if cfg is None:
        raise fail(ValidationError("bad_option", "give --url or PRECOVERY_DELIVERY__URL"))
    try:
        audit = AuditLog(AuditStore(audit_url(settings.state_dir, settings.audit_url)))
    except PrecoveryError as exc:
        raise fail(exc) from exc
    worker = KafkaDeliverer(
        bootstrap, settings.kafka.recommendations_topic, cfg, group, audit=audit
    )
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    signal.signal(signal.SIGINT, lambda *_: worker.stop())
    try:
        worker.run(idle_exit_s=idle_exit_s)
    except PrecoveryError as exc:
        raise fail(exc) from exc
    finally:
        audit.close()  # every attempt recorded so far is written
    console.print(f"deliverer stopped: {dict(worker.counts)}")
