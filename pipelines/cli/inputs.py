"""Checks of paths and option values that run before any work (and any heavy import).

Each check raises :class:`~predictor.errors.ValidationError` with one line that names
the option, the path or value, and what was expected; the CLI turns it into exit code 2.
Only the standard library here: a wrong path is reported in a fraction of a second.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from predictor.errors import ValidationError

TABLE_SUFFIXES = {".csv": "csv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet"}
FORMATS = ("csv", "parquet")
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def input_file(path: Path, option: str) -> Path:
    """An existing, readable table file (.csv or .parquet)."""
    if not path.exists():
        raise ValidationError("not_found", f"{option} {path} does not exist")
    if path.is_dir():
        raise ValidationError("not_a_file", f"{option} {path} is a directory; expected a file")
    if table_format(path) is None:
        raise ValidationError(
            "unsupported_format", f"{option} {path}: expected a .csv or .parquet file"
        )
    return path


def csv_file(path: Path, option: str) -> Path:
    """An existing CSV file."""
    if not path.exists():
        raise ValidationError("not_found", f"{option} {path} does not exist")
    if path.is_dir():
        raise ValidationError("not_a_file", f"{option} {path} is a directory; expected a CSV file")
    return path


def model_dir(path: Path, option: str = "--model") -> Path:
    """An existing model directory (one written by ``precovery train``)."""
    if not path.is_dir():
        what = "is not a directory" if path.exists() else "does not exist"
        raise ValidationError("not_found", f"{option} {path} {what}; expected a model directory")
    if not (path / "meta.json").is_file():
        raise ValidationError(
            "not_a_model", f"{option} {path} has no meta.json; expected a model directory"
        )
    return path


def output_path(path: Path, option: str, mkdir: bool = False) -> Path:
    """An output path whose folder exists (created only with ``--mkdir``)."""
    folder = path.parent
    if folder.exists() and not folder.is_dir():
        raise ValidationError("not_a_directory", f"{option} {path}: {folder} is not a directory")
    if not folder.exists():
        if not mkdir:
            raise ValidationError(
                "no_such_directory",
                f"{option} {path}: folder {folder} does not exist (create it, or pass --mkdir)",
            )
        folder.mkdir(parents=True, exist_ok=True)
    return path


def output_dir(path: Path, option: str, mkdir: bool = False) -> Path:
    """An output directory: it may be new, but its parent must exist (or ``--mkdir``)."""
    if path.exists() and not path.is_dir():
        raise ValidationError("not_a_directory", f"{option} {path} is a file; expected a directory")
    output_path(path, option, mkdir)
    return path


def table_format(path: Path) -> str | None:
    """``csv`` or ``parquet`` from a file name, None when the suffix says neither."""
    if path.name.lower().endswith(".csv.gz"):
        return "csv"
    return TABLE_SUFFIXES.get(path.suffix.lower())


def output_format(path: Path, fmt: str | None, option: str = "--out") -> str:
    """The format to write: the name's suffix, else ``--format``, else CSV.

    A name without ``.csv``/``.parquet`` is written as given, in ``--format``.
    """
    if fmt is not None and fmt not in FORMATS:
        raise ValidationError("bad_option", f"--format {fmt!r}: expected csv or parquet")
    by_name = table_format(path)
    if by_name is not None and fmt is not None and fmt != by_name:
        raise ValidationError(
            "bad_option", f"{option} {path} is a .{by_name} name but --format is {fmt}"
        )
    return by_name or fmt or "csv"


def positive(value: float, option: str, unit: str = "") -> float:
    """A finite number above zero."""
    if not math.isfinite(value) or value <= 0:
        raise ValidationError(
            "bad_option", f"{option} must be a number above 0{unit and ' ' + unit}, got {value:g}"
        )
    return value


def at_least(value: float, low: float, option: str, why: str = "") -> float:
    """A finite number of at least ``low``."""
    if not math.isfinite(value) or value < low:
        raise ValidationError(
            "bad_option", f"{option} must be at least {low:g}{why and ' ' + why}, got {value:g}"
        )
    return value


def one_of(value: str, choices: tuple[str, ...], option: str) -> str:
    if value not in choices:
        raise ValidationError(
            "bad_option", f"{option} {value!r}: expected one of {', '.join(choices)}"
        )
    return value


def distinct(out: Path, inputs: list[Path | None], option: str = "--out") -> None:
    """Refuse to overwrite an input with the output."""
    for p in inputs:
        if p is not None and out.exists() and p.exists() and out.resolve() == p.resolve():
            raise ValidationError(
                "bad_option", f"{option} {out} is also an input; give another name"
            )


def duration_s(text: str, option: str) -> float:
    """Seconds from ``30m``, ``2h``, ``90s`` or a plain number of seconds.

    >>> duration_s("30m", "--horizon"), duration_s("1800", "--horizon"), duration_s("2h", "-")
    (1800.0, 1800.0, 7200.0)
    """
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-z]*)\s*", text.lower())
    if not m or m.group(2) not in _UNITS or float(m.group(1)) <= 0:
        raise ValidationError(
            "bad_option",
            f"{option} {text!r}: expected a positive duration like 30m, 2h, 90s or 1800",
        )
    return float(m.group(1)) * _UNITS[m.group(2)]
