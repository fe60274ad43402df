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
    fmt: Annotated[str, typer.Option("--format", envvar="PRECOVERY_FORMAT",
                                     help="parquet or csv")] = "parquet",
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
            sim, hours, out, fmt,  # type: ignore[arg-type]
            progress=lambda frac: bar.update(task, completed=frac * hours),
        )
    for name, path in paths.items():
        console.print(f"{name}: {path} ({path.stat().st_size / 1e6:.1f} MB)")


@app.command()
def train(
    telemetry: Annotated[Path, typer.Option(envvar="PRECOVERY_TELEMETRY",
                                            help="Telemetry history, CSV or Parquet")],
    incidents: Annotated[Path, typer.Option(envvar="PRECOVERY_INCIDENTS",
                                            help="Incident history, CSV")],
    out: Annotated[Path, typer.Option(envvar="PRECOVERY_MODEL_OUT",
                                      help="Model directory to write")],
    horizon_s: Annotated[float, typer.Option(envvar="PRECOVERY_HORIZON_S",
                                             help="Label horizon, seconds")] = 1800.0,
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
                telemetry, incidents, TrainConfig(horizon_s=horizon_s),
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
    hours: Annotated[float, typer.Option(envvar="PRECOVERY_HOURS")] = 96.0,
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
        "median_lead_time_s": "s", "fit_s": "s", "false_alarms_per_entity_day": "per entity-day",
    }
    for k, v in metrics.items():
        shown = f"{v:.4g}" if isinstance(v, float) else str(v)
        console.print(f"  {k}: {shown} {units.get(k, '')}")


@app.command()
def detect(
    telemetry: Annotated[Path, typer.Argument(help="Telemetry to score, CSV or Parquet")],
    out: Annotated[Path, typer.Option(envvar="PRECOVERY_OUT", help="Scores file, .csv/.parquet")],
    history: Annotated[Path | None, typer.Option(envvar="PRECOVERY_HISTORY",
                                                 help="Warm-up history, not written")] = None,
    model_dir: Annotated[Path | None, typer.Option("--model", envvar="PRECOVERY_MODEL_DIR",
                                                   help="Risk model directory")] = None,
    detector: Annotated[str, typer.Option(envvar="PRECOVERY_DETECTOR",
                                          help="ewmaz (fast) or hst (river)")] = "ewmaz",
    metrics: Annotated[str | None, typer.Option(envvar="PRECOVERY_METRICS",
                                                help="Comma-separated metric columns")] = None,
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
                telemetry, out, history, model, detector,
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
def demo(
    duration: Annotated[float, typer.Option(envvar="PRECOVERY_DURATION",
                                            help="Wall-clock seconds")] = 120.0,
    speed: Annotated[float, typer.Option(envvar="PRECOVERY_SPEED",
                                         help="Simulated seconds per wall second")] = 60.0,
    seed: Annotated[int, typer.Option(envvar="PRECOVERY_SEED")] = 7,
    port: Annotated[int, typer.Option(envvar="PRECOVERY_API__PORT")] = 8000,
    model_dir: Annotated[Path | None, typer.Option("--model", envvar="PRECOVERY_MODEL_DIR")] = None,
    summary_json: Annotated[Path | None, typer.Option(envvar="PRECOVERY_SUMMARY_JSON",
                                                      help="Also write the summary here")] = None,
    verbose: Verbose = False,
) -> None:
    """The main job: a simulated fleet through the in-process stream, with the API served."""
    _setup_logging(verbose)
    from pipelines.demo import DemoConfig, run_demo
    from pipelines.models import BASELINE_DIR, load_or_train

    try:
        with _progress() as bar:
            task = bar.add_task("loading the risk model", total=None)
            model, trained = load_or_train(model_dir or BASELINE_DIR,
                                           progress=lambda n: bar.advance(task, n))
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
