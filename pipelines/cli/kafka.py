"""``precovery stream`` and ``precovery simulate-kafka``: the Kafka commands.

Registered on the one ``precovery`` app by :mod:`pipelines.cli.main`.

Light at import (``precovery --help`` loads it): Kafka clients, the engine and the
settings are imported inside the commands that use them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pipelines.cli import inputs, options
from pipelines.cli.console import console, fail, progress, setup_logging
from pipelines.cli.options import (
    STATE_DIR,
    Bootstrap,
    BootstrapArgument,
    Detector,
    FailuresPerDay,
    IdleExit,
    Partitions,
    Seed,
    TopicPrefix,
    TopologyFile,
    Verbose,
)
from predictor.errors import PrecoveryError

if TYPE_CHECKING:
    from pipelines.embedded.stream import Topics
    from pipelines.settings import KafkaSettings


def prefixed_topics(k: KafkaSettings, prefix: str) -> Topics:
    """The stream's topics from the settings, each name with ``prefix`` in front."""
    from pipelines.embedded.stream import Topics

    return Topics(
        telemetry=prefix + k.telemetry_topic,
        positions=prefix + k.positions_topic,
        market=prefix + k.market_topic,
        recommendations=prefix + k.recommendations_topic,
        health=prefix + k.health_topic,
        dlq=prefix + k.dlq_topic,
        commands=prefix + k.commands_topic,
    )


def stream(
    bootstrap: Bootstrap,
    group: Annotated[
        str, typer.Option(envvar="PRECOVERY_KAFKA__GROUP_ID", help="Consumer group")
    ] = "precovery-stream",
    detector: Detector = "surprise",
    topology: TopologyFile = None,
    state_dir: Annotated[
        Path, options.state_dir("Checkpoints go to <state-dir>/checkpoints")
    ] = STATE_DIR,
    model_dir: Annotated[Path | None, options.model_dir()] = None,
    no_model: Annotated[
        bool, typer.Option(envvar="PRECOVERY_NO_MODEL", help="Heartbeat rule only, no risk model")
    ] = False,
    topic_prefix: TopicPrefix = "",
    create_topics: Annotated[
        bool, typer.Option(envvar="PRECOVERY_CREATE_TOPICS", help="Create missing topics first")
    ] = True,
    partitions: Partitions = 3,
    max_batch: Annotated[
        int,
        typer.Option(envvar="PRECOVERY_KAFKA__MAX_POLL_RECORDS", help="Records per micro-batch"),
    ] = 5000,
    checkpoint_interval_s: Annotated[
        float,
        typer.Option(
            envvar="PRECOVERY_CHECKPOINT_INTERVAL_S", help="Wall seconds between checkpoints"
        ),
    ] = 5.0,
    session_timeout_ms: Annotated[
        int,
        typer.Option(envvar="PRECOVERY_SESSION_TIMEOUT_MS", help="Consumer group session timeout"),
    ] = 10_000,
    client_id: Annotated[
        str | None, typer.Option(envvar="PRECOVERY_CLIENT_ID", help="Kafka client id")
    ] = None,
    idle_exit_s: IdleExit = None,
    ops_port: Annotated[
        int | None,
        typer.Option(
            envvar="PRECOVERY_STREAM__OPS_PORT", help="Serve /metrics /healthz /readyz here"
        ),
    ] = None,
    verbose: Verbose = False,
) -> None:
    """Run a stream worker on Kafka (one member of the consumer group); SIGTERM stops it."""
    try:
        if model_dir is not None and not no_model:
            inputs.model_dir(model_dir)
        inputs.at_least(max_batch, 1, "--max-batch")
        inputs.at_least(partitions, 1, "--partitions")
        inputs.positive(checkpoint_interval_s, "--checkpoint-interval-s", "seconds")
        if idle_exit_s is not None:
            inputs.positive(idle_exit_s, "--idle-exit-s", "seconds")
    except PrecoveryError as exc:
        raise fail(exc) from exc
    setup_logging(verbose)
    import signal

    from pipelines.cli.models import champion_source
    from pipelines.kafka.client_python import ensure_topics
    from pipelines.kafka.partition import engine_factory
    from pipelines.kafka.stream import KafkaStreamWorker, StreamConfig
    from pipelines.records.audit import AuditLog, AuditStore, audit_url
    from pipelines.settings import alert_notifier, engine_config, get_settings
    from pipelines.training.champion import follow_champion
    from pipelines.training.models import BASELINE_DIR, load_model
    from predictor.risk import RiskModel

    settings = get_settings()
    k = settings.kafka
    topics = prefixed_topics(k, topic_prefix)
    audit: AuditLog | None = None
    watcher = None
    try:
        if create_topics:
            ensure_topics(
                bootstrap,
                {
                    "telemetry": topics.telemetry,
                    "positions": topics.positions,
                    "market": topics.market,
                    "recommendations": topics.recommendations,
                    "health": topics.health,
                    "dlq": topics.dlq,
                    "commands": topics.commands or "",
                },
                partitions=partitions,
            )
        follow = None if no_model else champion_source(settings)
        if follow is not None:
            model: RiskModel | None = follow[1]
        else:
            model = None if no_model else load_model(model_dir or BASELINE_DIR)
        config = engine_config(settings, detector=detector, topology=topology)
        current = [model]  # partitions assigned after a swap start on the new champion
        worker = KafkaStreamWorker(
            StreamConfig(
                bootstrap=bootstrap,
                group_id=group,
                topics=topics,
                checkpoint_dir=state_dir / "checkpoints",
                max_batch=max_batch,
                max_message_bytes=k.max_message_bytes,
                checkpoint_interval_s=checkpoint_interval_s,
                session_timeout_ms=session_timeout_ms,
                client_id=client_id,
                feed_lost_after_s=settings.feed_lost_after_s,
                failover_on_feed_loss=settings.failover_on_feed_loss,
            ),
            lambda snapshot: engine_factory(config, current[0])(snapshot),
            notifier=alert_notifier(settings.alerts),
            audit=(audit := AuditLog(AuditStore(audit_url(state_dir, settings.audit_url)))),
        )
        signal.signal(signal.SIGTERM, lambda *_: worker.stop())
        signal.signal(signal.SIGINT, lambda *_: worker.stop())
        if follow is not None:  # a new @champion is swapped in between two polls

            def swap(new: RiskModel) -> None:
                current[0] = new
                worker.set_model(new)

            watcher = follow_champion(
                follow[0], swap, follow[1], follow[2], audit, worker.name, settings.mlflow.poll_s
            )
        if ops_port is not None:  # pipelines/embedded/ops.py: the worker's own small HTTP app
            from pipelines.embedded.ops import start_ops

            ops = start_ops(worker, settings.stream.ops_host, ops_port)
        worker.run(idle_exit_s=idle_exit_s)
        if ops_port is not None:
            ops.stop()
    except PrecoveryError as exc:
        raise fail(exc) from exc
    finally:
        if watcher is not None:
            watcher.stop()
        if audit is not None:
            audit.close()  # everything queued is written before the process ends
    console.print(f"stream worker stopped: {worker.counters}")


def simulate_kafka(
    bootstrap: BootstrapArgument,
    hours: Annotated[float, options.hours()] = 1.0,
    seed: Seed = 7,
    failures_per_day: FailuresPerDay = 12.0,
    copies: Annotated[
        int, typer.Option(envvar="PRECOVERY_COPIES", help="Copies of the base fleet")
    ] = 1,
    rate: Annotated[float, options.rate("Telemetry events/s; 0 = as fast as possible")] = 0.0,
    bad_every: Annotated[
        int,
        typer.Option(
            envvar="PRECOVERY_BAD_EVERY", help="Every Nth telemetry record broken; 0 = none"
        ),
    ] = 0,
    topic_prefix: TopicPrefix = "",
    partitions: Partitions = 3,
    verbose: Verbose = False,
) -> None:
    """`precovery simulate` into Kafka: telemetry, positions, market and incidents topics."""
    try:
        inputs.positive(hours, "--hours", "hours")
        inputs.at_least(rate, 0, "--rate")
        inputs.at_least(copies, 1, "--copies")
        inputs.at_least(bad_every, 0, "--bad-every")
        inputs.at_least(partitions, 1, "--partitions")
    except PrecoveryError as exc:
        raise fail(exc) from exc
    setup_logging(verbose)
    from pipelines.kafka.client_python import ensure_topics
    from pipelines.kafka.sim import simulate_to_kafka
    from pipelines.settings import get_settings
    from predictor.sim import SimConfig

    k = get_settings().kafka
    topics = prefixed_topics(k, topic_prefix)
    incidents = topic_prefix + k.incidents_topic
    try:
        ensure_topics(
            bootstrap,
            {
                "telemetry": topics.telemetry,
                "positions": topics.positions,
                "market": topics.market,
                "incidents": incidents,
            },
            partitions=partitions,
        )
        with progress("hours") as bar:
            task = bar.add_task("producing (hours)", total=hours)
            sent = simulate_to_kafka(
                bootstrap,
                SimConfig(seed=seed, failures_per_day=failures_per_day, copies=copies),
                hours,
                topics,
                incidents,
                rate=rate,
                bad_every=bad_every,
                progress=lambda frac: bar.update(task, completed=frac * hours),
            )
    except PrecoveryError as exc:
        raise fail(exc) from exc
    console.print(
        f"telemetry {sent.telemetry:,} ({sent.bad:,} broken) · positions {sent.positions:,} · "
        f"market {sent.market:,} · incidents {sent.incidents:,} · {sent.seconds:.1f} s "
        f"({sent.telemetry / max(sent.seconds, 1e-9):,.0f} events/s)"
    )
