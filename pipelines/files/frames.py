"""Tabular telemetry (CSV or Parquet) in and out, in bounded-memory chunks.

Historical files use the contract's fields as columns: a time column (``ts`` or
``timestamp``), optional entity columns (``system``, ``component``, ``host``) and numeric
metric columns under any name. Times may be RFC 3339 strings (naive ones are read as
UTC), datetimes, or epoch numbers (below 1e11 read as seconds, otherwise milliseconds).
Without entity columns the whole file is one entity.
"""

from __future__ import annotations

import gzip
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from predictor.errors import ValidationError
from predictor.events import Reject, TelemetryBatch

logger = logging.getLogger(__name__)

TIME_COLUMNS = ("ts", "timestamp")
ENTITY_COLUMNS = ("system", "component", "host")
#: Columns that hold ground truth, never read as metrics unless asked for.
LABEL_COLUMNS = ("label", "is_anomaly", "anomaly", "labels")
DEFAULT_ENTITY = "default"


@dataclass(frozen=True, slots=True)
class Layout:
    """Which columns of a file play which role."""

    time: str
    entities: tuple[str, ...]
    metrics: tuple[str, ...]


def file_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".csv", ".txt") or path.name.endswith(".csv.gz"):
        return "csv"
    raise ValidationError("unsupported_format", f"{path.name}: expected .csv or .parquet")


#: Delimiters recognised in a header that is not comma-separated, by name.
OTHER_DELIMITERS = {";": "semicolon", "\t": "tab", "|": "pipe"}


def read_head(path: Path, n: int = 200) -> pd.DataFrame:
    if file_format(path) == "parquet":
        pf = pq.ParquetFile(path)
        first = next(pf.iter_batches(batch_size=n), None)
        return first.to_pandas() if first is not None else pf.schema_arrow.empty_table().to_pandas()
    check_delimiter(path)
    try:
        return pd.read_csv(path, nrows=n)
    except pd.errors.EmptyDataError:
        raise ValidationError(
            "empty", f"{path}: the file is empty; expected a header row"
        ) from None
    except pd.errors.ParserError as exc:
        raise ValidationError("malformed_csv", f"{path}: {exc}") from None


def check_delimiter(path: Path) -> None:
    """Refuse a CSV whose header is split by another delimiter than ``,`` (say which)."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", newline="", errors="replace") as f:
        header = f.readline().rstrip("\r\n")
    if "," in header:
        return
    counts = {d: header.count(d) for d in OTHER_DELIMITERS}
    found = max(counts, key=lambda d: counts[d])
    if counts[found]:
        shown = "\\t" if found == "\t" else found
        raise ValidationError(
            "wrong_delimiter",
            f"{path}: the header is split by '{shown}' ({OTHER_DELIMITERS[found]}, "
            f"{counts[found] + 1} columns), not ','; expected comma-separated values",
        )


def detect_layout(
    head: pd.DataFrame, metrics: Sequence[str] | None = None, source: object = None
) -> Layout:
    """Find the time, entity and metric columns of a frame.

    A column is a metric when it is numeric, or when most of its non-empty cells are
    numbers: then its text cells are errors (:func:`check_numeric`), not a reason to
    drop the column. ``source`` names the file in messages.
    """
    where = f"{source}: " if source is not None else ""
    time = next((c for c in TIME_COLUMNS if c in head.columns), None)
    if time is None:
        raise ValidationError(
            "missing_field",
            f"{where}no time column among {', '.join(map(str, head.columns[:8]))}; "
            f"expected one of {', '.join(TIME_COLUMNS)}",
        )
    entities = tuple(c for c in ENTITY_COLUMNS if c in head.columns)
    if metrics:
        missing = [m for m in metrics if m not in head.columns]
        if missing:
            raise ValidationError(
                "missing_field", f"{where}metric columns not in the file: {', '.join(missing)}"
            )
        chosen = tuple(metrics)
    else:
        skip = {time, *entities, *LABEL_COLUMNS}
        chosen = tuple(c for c in head.columns if c not in skip and _mostly_numeric(head[c]))
    if not chosen:
        others = [str(c) for c in head.columns if c not in {time, *entities}]
        raise ValidationError(
            "missing_field",
            f"{where}no numeric metric columns (other columns: {', '.join(others) or 'none'}); "
            "expected at least one column of numbers",
        )
    layout = Layout(time=time, entities=entities, metrics=chosen)
    check_numeric(head, layout, source)
    return layout


def _mostly_numeric(col: pd.Series) -> bool:
    if pd.api.types.is_bool_dtype(col):
        return False
    if pd.api.types.is_numeric_dtype(col):
        return True
    if not (pd.api.types.is_object_dtype(col) or pd.api.types.is_string_dtype(col)):
        return False
    cells = col.dropna()
    cells = cells[cells.astype(str).str.strip() != ""]
    if cells.empty:
        return False
    return bool(pd.to_numeric(cells, errors="coerce").notna().mean() >= 0.5)


def check_numeric(
    df: pd.DataFrame, layout: Layout, source: object = None, offset: int = 0, show: int = 3
) -> None:
    """Refuse text in a metric column, naming the first bad cells by row and column.

    Rows are counted from 1 after the header (``offset`` rows before this frame); empty
    cells and ``NaN`` are missing readings, not errors.
    """
    bad: list[str] = []
    total = 0
    columns = []
    for c in layout.metrics:
        col = df[c]
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            continue
        if pd.api.types.is_bool_dtype(col):
            wrong = col.notna().to_numpy()
        else:
            text = col.astype(str).str.strip()
            wrong = col.notna().to_numpy() & (text != "").to_numpy()
            wrong &= pd.to_numeric(col.where(wrong), errors="coerce").isna().to_numpy()
        idx = np.flatnonzero(wrong)
        if idx.size:
            total += int(idx.size)
            columns.append(str(c))
            bad.extend(f"row {offset + i + 1} column {c} {col.iloc[i]!r}" for i in idx[:show])
    if total:
        where = f"{source}: " if source is not None else ""
        raise ValidationError(
            "not_a_number",
            f"{where}{total} text cell{'s' if total > 1 else ''} in numeric metric "
            f"column{'s' if len(columns) > 1 else ''} {', '.join(columns)}: "
            f"{'; '.join(bad[:show])}{' …' if total > show else ''} "
            "(rows counted from 1 after the header); expected numbers, or an empty cell "
            "for a missing reading",
        )


def iter_frames(
    path: Path, chunk_rows: int = 100_000, columns: Sequence[str] | None = None
) -> Iterator[pd.DataFrame]:
    """Yield a file in chunks of at most ``chunk_rows`` rows, in file order."""
    if file_format(path) == "parquet":
        pf = pq.ParquetFile(path)
        cols = list(columns) if columns is not None else None
        for rb in pf.iter_batches(batch_size=chunk_rows, columns=cols):
            yield rb.to_pandas()
    else:
        check_delimiter(path)
        yield from pd.read_csv(
            path, chunksize=chunk_rows, usecols=list(columns) if columns is not None else None
        )


def count_rows(path: Path) -> int | None:
    """Row count where it is cheap to know (Parquet metadata); else None."""
    if file_format(path) == "parquet":
        return int(pq.ParquetFile(path).metadata.num_rows)
    return None


def to_epoch_ms(col: pd.Series) -> np.ndarray:
    """Epoch milliseconds from strings, datetimes or epoch numbers (see module doc)."""
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        v = col.to_numpy(dtype=np.float64)
        finite = v[np.isfinite(v)]
        scale = 1000.0 if finite.size and np.nanmedian(np.abs(finite)) < 1e11 else 1.0
        out = v * scale
        return np.where(np.isfinite(out), out, np.nan)
    dt = pd.to_datetime(col, utc=True, errors="coerce", format="mixed")
    ms = dt.astype("datetime64[ms, UTC]").astype("int64").to_numpy().astype(np.float64)
    ms[dt.isna().to_numpy()] = np.nan
    return ms


def frame_to_batch(df: pd.DataFrame, layout: Layout, offset: int = 0) -> TelemetryBatch:
    """Columns of a frame as a telemetry batch; bad times become rejects.

    Non-finite metric cells (NaN, inf) are read as "absent", as a missing cell is.
    """
    ms = to_epoch_ms(df[layout.time])
    good = np.isfinite(ms)
    rejects = [Reject(offset + int(i), "bad_timestamp") for i in np.flatnonzero(~good)]
    parts = []
    for c in ENTITY_COLUMNS:
        if c in layout.entities:
            parts.append(df[c].astype(str).to_numpy())
        else:
            parts.append(np.full(len(df), DEFAULT_ENTITY, dtype=object))
    keys_all = list(zip(*(p.tolist() for p in parts), strict=True))
    x = np.array(
        df.loc[:, list(layout.metrics)]
        .apply(pd.to_numeric, errors="coerce")
        .to_numpy(dtype=np.float64, na_value=np.nan)
    )
    x[~np.isfinite(x)] = np.nan
    idx = np.flatnonzero(good)
    return TelemetryBatch(
        keys=[keys_all[i] for i in idx.tolist()],
        ts_ms=ms[idx].astype(np.int64),
        x=x[idx],
        index=idx + offset,
        rejects=rejects,
    )


class TableWriter:
    """Append DataFrames to a CSV or Parquet file, chunk by chunk.

    The rows go to a temporary file beside ``path``, renamed onto it only when the
    writer closes without an error: a failed job leaves no half-written output. The
    folder must exist (the CLI checks it, and creates it only with ``--mkdir``).
    ``fmt`` overrides the format the name's suffix implies.
    """

    def __init__(self, path: Path, fmt: str | None = None) -> None:
        self.path = path
        self.format = fmt or file_format(path)
        self._tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
        self._pq: pq.ParquetWriter | None = None
        self._started = False

    def write(self, df: pd.DataFrame) -> None:
        if self.format == "parquet":
            table = pa.Table.from_pandas(df, preserve_index=False)
            if self._pq is None:
                self._pq = pq.ParquetWriter(self._tmp, table.schema)
            self._pq.write_table(table.cast(self._pq.schema))
        else:
            df.to_csv(
                self._tmp, mode="a" if self._started else "w", header=not self._started, index=False
            )
        self._started = True

    def close(self, ok: bool = True) -> None:
        if self._pq is not None:
            self._pq.close()
        elif not self._started:
            self._tmp.write_text("")
        if ok:
            os.replace(self._tmp, self.path)
        else:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(ok=exc_type is None)
