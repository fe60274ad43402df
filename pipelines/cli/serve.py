"""``precovery serve``: the HTTP API for a Kafka deployment (docs/api.md).

Reads health.v1 and recommendations.v1 (:mod:`pipelines.kafka.backend`); any number of
replicas may run behind a load balancer. Light at import, like every command module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli import options
from pipelines.cli.console import console, fail, setup_logging
from pipelines.cli.options import STATE_DIR, Bootstrap, TopicPrefix, Verbose
from predictor.errors import PrecoveryError, ValidationError


def serve(
    bootstrap: Bootstrap,
    host: Annotated[str, options.api_host("Listen address")] = "127.0.0.1",
    port: Annotated[int, options.api_port("Listen port")] = 8000,
    topic_prefix: TopicPrefix = "",
    state_dir: Annotated[Path, options.state_dir("API keys and feedback live here")] = STATE_DIR,
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
    # Approvals: decisions audited (committed before the answer), an approved failover
    # sent to the workers as a command (docs/kafka.md, "Approvals on Kafka").
    from pipelines.kafka.clients import kafka_client
    from pipelines.kafka.commands import CommandPublisher
    from pipelines.records.approvals import Approvals
    from pipelines.records.audit import AuditLog, AuditStore, audit_url

    audit = AuditLog(AuditStore(audit_url(state_dir, settings.audit_url)))
    publisher = CommandPublisher(
        kafka_client().sink(bootstrap, client_id="precovery-serve-commands"),
        topic_prefix + k.commands_topic,
        topic_prefix + k.recommendations_topic,
    )
    app = create_app(
        backend,
        max_body_bytes=settings.api.max_body_bytes,
        security=security,
        feedback=feedback_store(settings),
        audit=audit.store,
        approvals=Approvals(backend, audit, publisher.forward, fail_over=publisher.fail_over),
    )
    scheme = "https" if tls else "http"
    console.print(f"precovery serve on {scheme}://{host}:{port} — {mode}")
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", **tls)
    finally:
        backend.stop()
        publisher.close()
        audit.close()
