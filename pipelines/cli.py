"""``precovery``: the one console script. Subcommands parse arguments and call in.

Every option has an environment-variable fallback (``PRECOVERY_<OPTION>``).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from predictor.errors import PrecoveryError

app = typer.Typer(
    name="precovery",
    help="Predictive failover for trading infrastructure.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
logger = logging.getLogger("precovery")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("kafka", "uvicorn.error"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _progress() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def _fail(exc: Exception) -> typer.Exit:
    console.print(f"[red]error:[/] {exc}")
    return typer.Exit(2)


Verbose = Annotated[bool, typer.Option("--verbose", "-v", envvar="PRECOVERY_VERBOSE")]


@app.command()
def simulate(
    out: Annotated[Path, typer.Option(envvar="PRECOVERY_OUT", help="Output directory")],
    hours: Annotated[float, typer.Option(envvar="PRECOVERY_HOURS", help="Simulated hours")] = 24.0,
    seed: Annotated[int, typer.Option(envvar="PRECOVERY_SEED")] = 7,
    fmt: Annotated[
        str, typer.Option("--format", envvar="PRECOVERY_FORMAT", help="parquet or csv")
    ] = "parquet",
    failures_per_day: Annotated[float, typer.Option(envvar="PRECOVERY_FAILURES_PER_DAY")] = 12.0,
    verbose: Verbose = False,
) -> None:
    """Write a simulated trading fleet's telemetry, incidents, positions and market data."""
    _setup_logging(verbose)
    from predictor.sim import SimConfig, Simulator, write_dataset

    if fmt not in ("parquet", "csv"):
        raise _fail(ValueError("--format must be parquet or csv"))
    sim = Simulator(SimConfig(seed=seed, failures_per_day=failures_per_day))
    with _progress() as bar:
        task = bar.add_task("simulating (hours)", total=hours)
        paths = write_dataset(
            sim,
            hours,
            out,
            fmt,
            progress=lambda frac: bar.update(task, completed=frac * hours),
        )
    for name, path in paths.items():
        console.print(f"{name}: {path} ({path.stat().st_size / 1e6:.1f} MB)")


@app.command()
def train(
    telemetry: Annotated[
        Path, typer.Option(envvar="PRECOVERY_TELEMETRY", help="Telemetry history, CSV or Parquet")
    ],
    incidents: Annotated[
        Path, typer.Option(envvar="PRECOVERY_INCIDENTS", help="Incident history, CSV")
    ],
    out: Annotated[
        Path, typer.Option(envvar="PRECOVERY_MODEL_OUT", help="Model directory to write")
    ],
    horizon_s: Annotated[
        float, typer.Option(envvar="PRECOVERY_HORIZON_S", help="Label horizon, seconds")
    ] = 1800.0,
    verbose: Verbose = False,
) -> None:
    """Train the failure-risk model from telemetry and incident history (local files)."""
    _setup_logging(verbose)
    from pipelines.frames import count_rows
    from pipelines.train import TrainConfig, train_files

    try:
        with _progress() as bar:
            task = bar.add_task("features", total=count_rows(telemetry))
            model, report = train_files(
                telemetry,
                incidents,
                TrainConfig(horizon_s=horizon_s),
                progress=lambda n: bar.advance(task, n),
            )
        model.save(out)
    except (PrecoveryError, OSError) as exc:
        raise _fail(exc) from exc
    (out / "report.json").write_text(json.dumps(report, indent=2))
    _print_metrics(report["metrics"])
    console.print(f"model {model.version} saved to {out}")


@app.command("train-sim")
def train_sim(
    out: Annotated[Path, typer.Option(envvar="PRECOVERY_MODEL_OUT")] = Path("models/baseline"),
    hours: Annotated[float, typer.Option(envvar="PRECOVERY_HOURS")] = 168.0,
    seed: Annotated[int, typer.Option(envvar="PRECOVERY_SEED")] = 11,
    verbose: Verbose = False,
) -> None:
    """Train the baseline model on simulated history (what ships in models/baseline)."""
    _setup_logging(verbose)
    from pipelines.models import train_on_simulation

    with _progress() as bar:
        task = bar.add_task("features", total=None)
        model, report = train_on_simulation(hours, seed, progress=lambda n: bar.advance(task, n))
    model.save(out)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    _print_metrics(report["metrics"])
    console.print(f"model {model.version} saved to {out}")


def _print_metrics(metrics: dict[str, object]) -> None:
    units = {
        "median_lead_time_s": "s",
        "fit_s": "s",
        "false_alarms_per_entity_day": "per entity-day",
    }
    for k, v in metrics.items():
        shown = f"{v:.4g}" if isinstance(v, float) else str(v)
        console.print(f"  {k}: {shown} {units.get(k, '')}")


@app.command()
def detect(
    telemetry: Annotated[Path, typer.Argument(help="Telemetry to score, CSV or Parquet")],
    out: Annotated[Path, typer.Option(envvar="PRECOVERY_OUT", help="Scores file, .csv/.parquet")],
    history: Annotated[
        Path | None, typer.Option(envvar="PRECOVERY_HISTORY", help="Warm-up history, not written")
    ] = None,
    model_dir: Annotated[
        Path | None,
        typer.Option("--model", envvar="PRECOVERY_MODEL_DIR", help="Risk model directory"),
    ] = None,
    detector: Annotated[
        str, typer.Option(envvar="PRECOVERY_DETECTOR", help="ewmaz (fast) or hst (river)")
    ] = "ewmaz",
    metrics: Annotated[
        str | None, typer.Option(envvar="PRECOVERY_METRICS", help="Comma-separated metric columns")
    ] = None,
    verbose: Verbose = False,
) -> None:
    """Score a telemetry file row by row: anomaly_score, and risk/health with a model."""
    _setup_logging(verbose)
    from pipelines.detect import check_paths, detect_file
    from pipelines.frames import count_rows
    from predictor.risk import RiskModel

    try:
        check_paths(telemetry, history)
        model = RiskModel.load(model_dir) if model_dir else None
        with _progress() as bar:
            task = bar.add_task("scoring", total=count_rows(telemetry))
            summary = detect_file(
                telemetry,
                out,
                history,
                model,
                detector,
                tuple(m.strip() for m in metrics.split(",")) if metrics else None,
                progress=lambda n: bar.advance(task, n),
            )
    except (PrecoveryError, OSError, ValueError) as exc:
        raise _fail(exc) from exc
    console.print(
        f"scored {summary.rows:,} rows ({summary.rejected:,} rejected) of "
        f"{summary.entities:,} entities on {len(summary.metrics)} metrics"
        f"{' with risk' if summary.with_risk else ''} → {summary.out}"
    )


@app.command()
def evaluate(
    hours: Annotated[
        float, typer.Option(envvar="PRECOVERY_HOURS", help="Simulated hours to replay")
    ] = 24.0,
    seed: Annotated[
        int, typer.Option(envvar="PRECOVERY_SEED", help="Simulator seed (unlike the training one)")
    ] = 2027,
    model_dir: Annotated[Path | None, typer.Option("--model", envvar="PRECOVERY_MODEL_DIR")] = None,
    out: Annotated[
        Path | None, typer.Option(envvar="PRECOVERY_OUT", help="Write the full report (JSON) here")
    ] = None,
    verbose: Verbose = False,
) -> None:
    """Replay a simulated day through the full loop: lead times and false alarms."""
    _setup_logging(verbose)
    from pipelines.models import BASELINE_DIR
    from pipelines.replay import ReplayConfig, replay
    from predictor.risk import RiskModel

    try:
        model = RiskModel.load(model_dir or BASELINE_DIR)
    except PrecoveryError as exc:
        raise _fail(exc) from exc
    with Progress(console=console) as bar:
        task = bar.add_task("replaying (share of the simulated time)", total=1.0)
        report = replay(
            model,
            ReplayConfig(hours=hours, seed=seed),
            progress=lambda f: bar.update(task, completed=f),
        )
    for name in ("failover", "prepare_or_failover"):
        r = report[name]
        lead = r["median_lead_time_s"]
        console.print(
            f"{name}: {r['caught']}/{r['incidents']} incidents foreseen with ≥ "
            f"{r['min_warning_s']:.0f} s warning ({r['caught_any_warning']} with any), "
            f"median lead time {'—' if lead is None else f'{lead:.0f} s'}, "
            f"{r['false_alarms']} false alarms "
            f"({r['false_alarms_per_entity_day']:.3f} per entity-day)"
        )
    console.print(
        f"{report['events']:,} events, {report['entities']} hosts, "
        f"{report['recommendations']} recommendations, model {report['model_version']}"
    )
    if out:
        out.write_text(json.dumps(report, indent=2))


@app.command()
def demo(
    duration: Annotated[
        float,
        typer.Option(envvar="PRECOVERY_DURATION", help="Wall-clock seconds; 0 = until Ctrl-C"),
    ] = 0.0,
    speed: Annotated[
        float, typer.Option(envvar="PRECOVERY_SPEED", help="Simulated seconds per wall second")
    ] = 60.0,
    seed: Annotated[int, typer.Option(envvar="PRECOVERY_SEED")] = 7,
    port: Annotated[int, typer.Option(envvar="PRECOVERY_API__PORT")] = 8000,
    model_dir: Annotated[Path | None, typer.Option("--model", envvar="PRECOVERY_MODEL_DIR")] = None,
    summary_json: Annotated[
        Path | None,
        typer.Option(envvar="PRECOVERY_SUMMARY_JSON", help="Also write the summary here"),
    ] = None,
    verbose: Verbose = False,
) -> None:
    """The main job: a simulated fleet through the in-process stream, with the API served."""
    _setup_logging(verbose)
    from pipelines.demo import DemoConfig, run_demo
    from pipelines.models import BASELINE_DIR, load_or_train

    try:
        with _progress() as bar:
            task = bar.add_task("loading the risk model", total=None)
            model, trained = load_or_train(
                model_dir or BASELINE_DIR, progress=lambda n: bar.advance(task, n)
            )
        if trained:
            console.print(f"trained a baseline model {model.version}")
        summary = run_demo(
            DemoConfig(duration_s=duration, speed=speed, seed=seed, port=port),
            model,
            Console(),
        )
    except PrecoveryError as exc:
        raise _fail(exc) from exc
    if summary_json:
        summary_json.write_text(json.dumps(summary, indent=2))


def main() -> None:  # pragma: no cover - console entry
    app()


@app.command()
def stream(
    bootstrap: Annotated[
        str,
        typer.Option(
            envvar="PRECOVERY_KAFKA__BOOTSTRAP_SERVERS", help="Kafka host:port[,host:port]"
        ),
    ],
    group: Annotated[str, typer.Option(envvar="PRECOVERY_KAFKA__GROUP_ID")] = "precovery-stream",
    state_dir: Annotated[
        Path,
        typer.Option(
            envvar="PRECOVERY_STATE_DIR", help="Checkpoints go to <state-dir>/checkpoints"
        ),
    ] = Path(".precovery"),
    model_dir: Annotated[
        Path | None,
        typer.Option("--model", envvar="PRECOVERY_MODEL_DIR", help="Risk model directory"),
    ] = None,
    no_model: Annotated[
        bool, typer.Option(envvar="PRECOVERY_NO_MODEL", help="Heartbeat rule only, no risk model")
    ] = False,
    topic_prefix: Annotated[
        str, typer.Option(envvar="PRECOVERY_TOPIC_PREFIX", help="Prefix of every topic name")
    ] = "",
    create_topics: Annotated[bool, typer.Option(envvar="PRECOVERY_CREATE_TOPICS")] = True,
    partitions: Annotated[
        int, typer.Option(envvar="PRECOVERY_PARTITIONS", help="Partitions of topics this creates")
    ] = 3,
    max_batch: Annotated[int, typer.Option(envvar="PRECOVERY_KAFKA__MAX_POLL_RECORDS")] = 5000,
    checkpoint_interval_s: Annotated[
        float, typer.Option(envvar="PRECOVERY_CHECKPOINT_INTERVAL_S")
    ] = 5.0,
    session_timeout_ms: Annotated[
        int, typer.Option(envvar="PRECOVERY_SESSION_TIMEOUT_MS")
    ] = 10_000,
    client_id: Annotated[str | None, typer.Option(envvar="PRECOVERY_CLIENT_ID")] = None,
    idle_exit_s: Annotated[
        float | None, typer.Option(envvar="PRECOVERY_IDLE_EXIT_S", help="Stop after this long idle")
    ] = None,
    verbose: Verbose = False,
) -> None:
    """Run a stream worker on Kafka (one member of the consumer group); SIGTERM stops it."""
    _setup_logging(verbose)
    import signal

    from pipelines.kafka_io import ensure_topics
    from pipelines.kafka_stream import KafkaStreamWorker, StreamConfig, engine_factory
    from pipelines.models import BASELINE_DIR
    from pipelines.settings import get_settings
    from pipelines.stream import Topics
    from predictor.engine import EngineConfig
    from predictor.risk import RiskModel

    settings = get_settings()
    k = settings.kafka
    topics = Topics(
        *(
            topic_prefix + t
            for t in (
                k.telemetry_topic,
                k.positions_topic,
                k.market_topic,
                k.recommendations_topic,
                k.health_topic,
                k.dlq_topic,
            )
        )
    )
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
                },
                partitions=partitions,
            )
        model = None if no_model else RiskModel.load(model_dir or BASELINE_DIR)
        config = EngineConfig(
            tick_s=settings.tick_s, risk_cadence_s=settings.risk_cadence_s, hold_s=settings.hold_s
        )
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
            ),
            engine_factory(config, model),
        )
        signal.signal(signal.SIGTERM, lambda *_: worker.stop())
        signal.signal(signal.SIGINT, lambda *_: worker.stop())
        worker.run(idle_exit_s=idle_exit_s)
    except PrecoveryError as exc:
        raise _fail(exc) from exc
    console.print(f"stream worker stopped: {worker.counters}")


@app.command("simulate-kafka")
def simulate_kafka(
    bootstrap: Annotated[
        str,
        typer.Argument(
            envvar="PRECOVERY_KAFKA__BOOTSTRAP_SERVERS", help="Kafka host:port[,host:port]"
        ),
    ],
    hours: Annotated[float, typer.Option(envvar="PRECOVERY_HOURS", help="Simulated hours")] = 1.0,
    seed: Annotated[int, typer.Option(envvar="PRECOVERY_SEED")] = 7,
    failures_per_day: Annotated[float, typer.Option(envvar="PRECOVERY_FAILURES_PER_DAY")] = 12.0,
    copies: Annotated[
        int, typer.Option(envvar="PRECOVERY_COPIES", help="Copies of the base fleet")
    ] = 1,
    rate: Annotated[
        float,
        typer.Option(envvar="PRECOVERY_RATE", help="Telemetry events/s; 0 = as fast as possible"),
    ] = 0.0,
    bad_every: Annotated[
        int,
        typer.Option(
            envvar="PRECOVERY_BAD_EVERY", help="Every Nth telemetry record broken; 0 = none"
        ),
    ] = 0,
    topic_prefix: Annotated[str, typer.Option(envvar="PRECOVERY_TOPIC_PREFIX")] = "",
    partitions: Annotated[
        int, typer.Option(envvar="PRECOVERY_PARTITIONS", help="Partitions of topics this creates")
    ] = 3,
    verbose: Verbose = False,
) -> None:
    """`precovery simulate` into Kafka: telemetry, positions, market and incidents topics."""
    _setup_logging(verbose)
    from pipelines.kafka_io import ensure_topics
    from pipelines.kafka_sim import simulate_to_kafka
    from pipelines.settings import get_settings
    from pipelines.stream import Topics
    from predictor.sim import SimConfig

    k = get_settings().kafka
    topics = Topics(
        *(
            topic_prefix + t
            for t in (
                k.telemetry_topic,
                k.positions_topic,
                k.market_topic,
                k.recommendations_topic,
                k.health_topic,
                k.dlq_topic,
            )
        )
    )
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
        with _progress() as bar:
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
        raise _fail(exc) from exc
    console.print(
        f"telemetry {sent.telemetry:,} ({sent.bad:,} broken) · positions {sent.positions:,} · "
        f"market {sent.market:,} · incidents {sent.incidents:,} · {sent.seconds:.1f} s "
        f"({sent.telemetry / max(sent.seconds, 1e-9):,.0f} events/s)"
    )
