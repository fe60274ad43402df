"""``precovery``: the one console script. Subcommands parse arguments and call in.

Every option has an environment-variable fallback (``PRECOVERY_<OPTION>``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress

from pipelines.cli_kafka import simulate_kafka, stream
from pipelines.console import Verbose, console, fail, progress, setup_logging
from predictor.errors import PrecoveryError

app = typer.Typer(
    name="precovery",
    help="Predictive failover for trading infrastructure.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command()
def simulate(
    out: Annotated[
        Path | None, typer.Option(envvar="PRECOVERY_OUT", help="Output directory")
    ] = None,
    hours: Annotated[float, typer.Option(envvar="PRECOVERY_HOURS", help="Simulated hours")] = 24.0,
    seed: Annotated[int, typer.Option(envvar="PRECOVERY_SEED")] = 7,
    fmt: Annotated[
        str, typer.Option("--format", envvar="PRECOVERY_FORMAT", help="parquet or csv")
    ] = "parquet",
    failures_per_day: Annotated[float, typer.Option(envvar="PRECOVERY_FAILURES_PER_DAY")] = 12.0,
    to_kafka: Annotated[
        str | None,
        typer.Option(
            envvar="PRECOVERY_TO_KAFKA",
            help="Produce to this Kafka cluster instead of files (see simulate-kafka)",
        ),
    ] = None,
    rate: Annotated[
        float, typer.Option(envvar="PRECOVERY_RATE", help="With --to-kafka: events/s, 0 = max")
    ] = 0.0,
    verbose: Verbose = False,
) -> None:
    """Write a simulated trading fleet's telemetry, incidents, positions and market data.

    With ``--to-kafka BOOTSTRAP`` the same goes to Kafka topics instead of files.
    """
    if to_kafka:
        simulate_kafka(
            to_kafka,
            hours=hours,
            seed=seed,
            failures_per_day=failures_per_day,
            rate=rate,
            verbose=verbose,
        )
        return
    if out is None:
        raise fail(ValueError("give --out DIR (files) or --to-kafka BOOTSTRAP"))
    setup_logging(verbose)
    from predictor.sim import SimConfig, Simulator, write_dataset

    if fmt not in ("parquet", "csv"):
        raise fail(ValueError("--format must be parquet or csv"))
    sim = Simulator(SimConfig(seed=seed, failures_per_day=failures_per_day))
    with progress() as bar:
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
    setup_logging(verbose)
    from pipelines.frames import count_rows
    from pipelines.train import TrainConfig, train_files

    try:
        with progress() as bar:
            task = bar.add_task("features", total=count_rows(telemetry))
            model, report = train_files(
                telemetry,
                incidents,
                TrainConfig(horizon_s=horizon_s),
                progress=lambda n: bar.advance(task, n),
            )
        model.save(out)
    except (PrecoveryError, OSError) as exc:
        raise fail(exc) from exc
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
    setup_logging(verbose)
    from pipelines.models import train_on_simulation

    with progress() as bar:
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
    setup_logging(verbose)
    from pipelines.detect import check_paths, detect_file
    from pipelines.frames import count_rows
    from predictor.risk import RiskModel

    try:
        check_paths(telemetry, history)
        model = RiskModel.load(model_dir) if model_dir else None
        with progress() as bar:
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
        raise fail(exc) from exc
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
    setup_logging(verbose)
    from pipelines.models import BASELINE_DIR
    from pipelines.replay import ReplayConfig, replay
    from predictor.risk import RiskModel

    try:
        model = RiskModel.load(model_dir or BASELINE_DIR)
    except PrecoveryError as exc:
        raise fail(exc) from exc
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
    setup_logging(verbose)
    from pipelines.demo import DemoConfig, run_demo
    from pipelines.models import BASELINE_DIR, load_or_train

    try:
        with progress() as bar:
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
        raise fail(exc) from exc
    if summary_json:
        summary_json.write_text(json.dumps(summary, indent=2))


def main() -> None:  # pragma: no cover - console entry
    app()


app.command()(stream)
app.command("simulate-kafka")(simulate_kafka)
