"""``precovery simulate``: a simulated trading fleet's history, to files (or to Kafka).

Registered on the one ``precovery`` app by :mod:`pipelines.cli.main`; the simulator and
the writers are imported inside the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli import inputs, options
from pipelines.cli.console import console, fail, progress, setup_logging
from pipelines.cli.kafka import simulate_kafka
from pipelines.cli.options import FailuresPerDay, Mkdir, Seed, Verbose
from predictor.errors import PrecoveryError, ValidationError


def simulate(
    out: Annotated[Path | None, options.out("Output directory")] = None,
    hours: Annotated[float, options.hours()] = 24.0,
    seed: Seed = 7,
    fmt: Annotated[str, options.table_format("parquet or csv")] = "parquet",
    failures_per_day: FailuresPerDay = 12.0,
    to_kafka: Annotated[
        str | None,
        typer.Option(
            envvar="PRECOVERY_TO_KAFKA",
            help="Produce to this Kafka cluster instead of files (see simulate-kafka)",
        ),
    ] = None,
    rate: Annotated[float, options.rate("With --to-kafka: events/s, 0 = max")] = 0.0,
    mkdir: Mkdir = False,
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
    try:
        if out is None:
            raise ValidationError("bad_option", "give --out DIR (files) or --to-kafka BOOTSTRAP")
        inputs.positive(hours, "--hours", "hours")
        inputs.at_least(failures_per_day, 0, "--failures-per-day")
        inputs.one_of(fmt, inputs.FORMATS, "--format")
        inputs.output_dir(out, "--out", mkdir)
    except PrecoveryError as exc:
        raise fail(exc) from exc
    setup_logging(verbose)
    from pipelines.files.ports import write_dataset
    from predictor.sim import SimConfig, Simulator

    sim = Simulator(SimConfig(seed=seed, failures_per_day=failures_per_day))
    with progress("hours") as bar:
        task = bar.add_task("simulating", total=hours)
        paths = write_dataset(
            sim,
            hours,
            out,
            fmt,
            progress=lambda frac: bar.update(task, completed=frac * hours),
        )
    for name, path in paths.items():
        console.print(f"{name}: {path} ({path.stat().st_size / 1e6:.1f} MB)")
