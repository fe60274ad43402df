"""``precovery serve``: the HTTP API for a Kafka deployment (docs/api.md).

Reads health.v1 and recommendations.v1 (:mod:`pipelines.kafka.backend`); any number of
replicas may run behind a load balancer. Light at import, like every command module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli.console import Verbose, console, fail, setup_logging
from predictor.errors import PrecoveryError, ValidationError


def serve(
    bootstrap: Annotated[
        str,
        typer.Option(
            envvar="PRECOVERY_KAFKA__BOOTSTRAP_SERVERS", help="Kafka host:port[,host:port]"
        ),
    ],
    host: Annotated[str, typer.Option(envvar="PRECOVERY_API__HOST", help="Listen address")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(envvar="PRECOVERY_API__PORT", help="Listen port")] = 8000,
    topic_prefix: Annotated[
        str, typer.Option(envvar="PRECOVERY_TOPIC_PREFIX", help="Prefix of every topic name")
    ] = "",
    state_dir: Annotated[
        Path,
        typer.Option(envvar="PRECOVERY_STATE_DIR", help="API keys and feedback live here"),
    ] = Path(".precovery"),
    max_recent: Annotated[
        int,
        typer.Option(
            envvar="PRECOVERY_SERVE_MAX_RECENT", help="Recommendations kept per partition"
        ),
    ] = 5000,
    verbose: Verbose = False,
) -> None:
    """Serve the API from the Kafka topics (health.v1, recommendations.v1); SIGTERM stops it.

    Same endpoints as the demo, except the what-if POST /v1/score (501: it needs the
    engine). API keys are required unless it listens on loopback with none configured.
    """
    try:
        if not 0 <= port <= 65535:
            raise ValidationError("bad_option", f"--port must be 0-65535, got {port}")
        if max_recent < 1:
            raise ValidationError("bad_option", f"--max-recent must be ≥ 1, got {max_recent}")
    except PrecoveryError as exc:
        raise fail(exc) from exc
    setup_logging(verbose)
    import uvicorn

    from pipelines.kafka.backend import KafkaBackend
    from pipelines.records.keys import feedback_store, security_for, tls_options
    from pipelines.settings import get_settings
    from serve.app import create_app

    settings = get_settings().model_copy(update={"state_dir": state_dir})
    k = settings.kafka
    try:
        security, mode = security_for(settings, host)
        tls = tls_options(settings)
    except PrecoveryError as exc:
        raise fail(exc) from exc

    def consumer() -> object:
        from kafka import KafkaConsumer

        return KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            client_id="precovery-serve",
        )

    backend = KafkaBackend(
        consumer,
        health_topic=topic_prefix + k.health_topic,
        recommendations_topic=topic_prefix + k.recommendations_topic,
        max_recent=max_recent,
    ).start()
    app = create_app(
        backend,
        max_body_bytes=settings.api.max_body_bytes,
        security=security,
        feedback=feedback_store(settings),
        audit=_audit_reader(settings.audit_url, state_dir),
    )
    scheme = "https" if tls else "http"
    console.print(f"precovery serve on {scheme}://{host}:{port} — {mode}")
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", **tls)
    finally:
        backend.stop()


def _audit_reader(url: str | None, state_dir: Path) -> object:
    """The audit store ``GET /v1/audit`` reads: ``PRECOVERY_AUDIT_URL``, or an
    ``audit.sqlite`` already in the state dir; None (501) when there is neither."""
    if url is None and not (state_dir / "audit.sqlite").is_file():
        return None
    from pipelines.records.audit import AuditStore, audit_url

    return AuditStore(audit_url(state_dir, url))
