"""Shared pieces of the command line: logging set-up, progress bars, errors and exit codes.

Exit codes: 0 only when the job did what was asked; 2 for a usage error (a bad option,
a missing or malformed input: :class:`~predictor.errors.ValidationError`,
:class:`~predictor.errors.ConfigError`); 1 for a failure while working (an edge, the
disk, a model that cannot be used). Kept light: the CLI imports it to answer ``--help``.
"""

from __future__ import annotations

import logging
import sys

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

# Re-exported for command modules written before pipelines.cli.options (defined there).
from pipelines.cli.options import Detector as Detector
from pipelines.cli.options import Mkdir as Mkdir
from pipelines.cli.options import TopologyFile as TopologyFile
from pipelines.cli.options import Verbose as Verbose
from predictor.errors import ConfigError, ValidationError

#: Human output (progress, results) goes to stderr; data goes to files or stdout. Soft
#: wrap: off a terminal one message is one line, whatever its length (greppable).
console = Console(stderr=True, soft_wrap=True)

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
