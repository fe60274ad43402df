"""``precovery backtest``: the decision policy and its baselines, in dollars.

Kept out of pipelines/cli/main.py so that the command tree stays readable; registered there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli import inputs, options
from pipelines.cli.console import console, fail, progress, setup_logging
from pipelines.cli.options import Mkdir, TopologyFile, Verbose
from predictor.errors import PrecoveryError, ValidationError


def backtest(
    history: Annotated[
        Path,
        options.history(
            "History folder: telemetry.*, positions.*, market.*, incidents.csv "
            "(what precovery simulate writes)"
        ),
    ],
    json_out: Annotated[
        Path | None,
        options.json_file("Write the table here (JSON list)", envvar="PRECOVERY_BACKTEST_JSON"),
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option(
            envvar="PRECOVERY_BACKTEST_PLOT", help="Cumulative cost over time per policy (SVG)"
        ),
    ] = None,
    model_dir: Annotated[
        Path | None, options.model_dir("Risk model directory (default: baseline)")
    ] = None,
    topology: TopologyFile = None,
    detect_s: Annotated[
        float,
        typer.Option(
            envvar="PRECOVERY_BACKTEST_DETECT_S",
            help="Reactive baseline: seconds from an incident's start to its failover",
        ),
    ] = 30.0,
    warmup_s: Annotated[
        float,
        typer.Option(
            envvar="PRECOVERY_BACKTEST_WARMUP_S",
            help="Incidents this many seconds into the history are left out of every policy",
        ),
    ] = 3600.0,
    mkdir: Mkdir = False,
    verbose: Verbose = False,
) -> None:
    """Replay a history through the production driver; cost each policy in USD.

    Policies: market_aware (production), never, reactive (fail over detect-s after a
    critical failure starts), risk_threshold (fail over at the act risk, blind to
    positions and market). The cost model is in docs/decisions.md.
    """
    try:
        if not history.is_dir():
            raise ValidationError("not_found", f"--history {history} is not a folder")
        if not (history / "incidents.csv").is_file():
            raise ValidationError("not_found", f"--history {history}: no incidents.csv")
        if model_dir is not None:
            inputs.model_dir(model_dir)
        if detect_s < 0 or warmup_s < 0:
            raise ValidationError("bad_option", "--detect-s and --warmup-s must be >= 0")
        for path, name in ((json_out, "--json"), (plot, "--plot")):
            if path is not None:
                inputs.output_path(path, name, mkdir)
    except PrecoveryError as exc:
        raise fail(exc) from exc
    setup_logging(verbose)
    from pipelines.offline.backtest import BacktestConfig, markdown_table, svg_plot, table
    from pipelines.offline.backtest import backtest as run_backtest
    from pipelines.settings import engine_config, get_settings
    from pipelines.training.models import BASELINE_DIR, load_model

    try:
        model = load_model(model_dir or BASELINE_DIR)
        config = engine_config(get_settings(), topology=topology)
        with progress("records") as bar:
            task = bar.add_task("replaying (two engine runs)", total=None)
            results = run_backtest(
                history,
                config,
                model,
                BacktestConfig(detect_s=detect_s, warmup_s=warmup_s),
                progress=lambda n: bar.advance(task, n),
            )
        rows = table(results)
        if json_out is not None:
            json_out.write_text(json.dumps(rows, indent=2) + "\n")
        if plot is not None:
            plot.write_text(svg_plot(results))
    except (PrecoveryError, OSError) as exc:
        raise fail(exc) from exc
    console.print(markdown_table(rows), markup=False)
