"""Shared pieces of the command line: logging set-up, progress bars, errors and exit codes.

Exit codes: 0 only when the job did what was asked; 2 for a usage error (a bad option,
a missing or malformed input: :class:`~predictor.errors.ValidationError`,
:class:`~predictor.errors.ConfigError`); 1 for a failure while working (an edge, the
disk, a model that cannot be used). Kept light: the CLI imports it to answer ``--help``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from predictor.errors import ConfigError, ValidationError

#: Human output (progress, results) goes to stderr; data goes to files or stdout. Soft
#: wrap: off a terminal one message is one line, whatever its length (greppable).
console = Console(stderr=True, soft_wrap=True)

Verbose = Annotated[
    bool,
    typer.Option("--verbose", "-v", envvar="PRECOVERY_VERBOSE", help="Log at DEBUG level"),
]

Mkdir = Annotated[
    bool,
    typer.Option(
        "--mkdir", envvar="PRECOVERY_MKDIR", help="Create the output's folder if it is missing"
    ),
]

USAGE_ERROR = 2
FAILURE = 1


def setup_logging(verbose: bool) -> None:
    """Configure logging once, in the CLI entry (INFO, or DEBUG with ``-v``)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("kafka", "uvicorn.error"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def progress(unit: str = "rows") -> Progress:
    """A progress bar whose counts are in ``unit`` (``hours`` counts fractions of hours)."""
    count = (
        TextColumn("{task.completed:.1f}/{task.total:g} h")
        if unit == "hours"
        else MofNCompleteColumn()
    )
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        count,
        *([] if unit == "hours" else [TextColumn(unit)]),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def exit_code(exc: BaseException) -> int:
    """2 for what the user can fix in the command or its inputs, 1 for the rest."""
    return USAGE_ERROR if isinstance(exc, ValidationError | ConfigError) else FAILURE


def fail(exc: Exception, code: int | None = None) -> typer.Exit:
    """Print the error as one line on stderr and return the exit to raise."""
    console.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True, highlight=False)
    return typer.Exit(exit_code(exc) if code is None else code)


TopologyFile = Annotated[
    Path | None,
    typer.Option(
        "--topology",
        envvar="PRECOVERY_TOPOLOGY_FILE",
        help="Systems, criticality, venues, sites, authority and cost parameters, YAML or "
        "JSON (docs/decisions.md); default: every component critical, authority approve",
    ),
]

Detector = Annotated[
    str,
    typer.Option(
        envvar="PRECOVERY_DETECTOR",
        help="surprise (calibrated, default) or surprise_hst (with river's HalfSpaceTrees, "
        "~1 MiB per host: small fleets); the model must have been trained on the same detector",
    ),
]
