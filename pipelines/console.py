"""Shared pieces of the command line: logging set-up, progress bars, errors."""

from __future__ import annotations

import logging
import sys
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

#: Human output (progress, results) goes to stderr; data goes to files or stdout.
console = Console(stderr=True)

Verbose = Annotated[bool, typer.Option("--verbose", "-v", envvar="PRECOVERY_VERBOSE")]


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
    """A progress bar whose counts are in ``unit``."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def fail(exc: Exception) -> typer.Exit:
    """Print an error and return the exit (code 2) to raise."""
    console.print(f"[red]error:[/] {exc}")
    return typer.Exit(2)
