"""Tabular telemetry (CSV or Parquet) in and out, in bounded-memory chunks.

Historical files use the contract's fields as columns: a time column (``ts`` or
``timestamp``), optional entity columns (``system``, ``component``, ``host``) and numeric
metric columns under any name. Times may be RFC 3339 strings (naive ones are read as
UTC), datetimes, or epoch numbers (below 1e11 read as seconds, otherwise milliseconds).
Without entity columns the whole file is one entity.
"""

from __future__ import annotations

import logging
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


def read_head(path: Path, n: int = 200) -> pd.DataFrame:
    if file_format(path) == "parquet":
        pf = pq.ParquetFile(path)
        first = next(pf.iter_batches(batch_size=n), None)
        return first.to_pandas() if first is not None else pf.schema_arrow.empty_table().to_pandas()
    return pd.read_csv(path, nrows=n)


def detect_layout(head: pd.DataFrame, metrics: Sequence[str] | None = None) -> Layout:
    """Find the time, entity and metric columns of a frame."""
    time = next((c for c in TIME_COLUMNS if c in head.columns), None)
    if time is None:
        raise ValidationError(
            "missing_field", f"no time column: expected one of {', '.join(TIME_COLUMNS)}"
        )
    entities = tuple(c for c in ENTITY_COLUMNS if c in head.columns)
    if metrics:
        missing = [m for m in metrics if m not in head.columns]
        if missing:
            raise ValidationError("missing_field", f"metric columns not in file: {missing}")
        chosen = tuple(metrics)
    else:
        skip = {time, *entities, *LABEL_COLUMNS}
        chosen = tuple(
            c
            for c in head.columns
            if c not in skip
            and pd.api.types.is_numeric_dtype(head[c])
            and not pd.api.types.is_bool_dtype(head[c])
        )
    if not chosen:
        raise ValidationError("missing_field", "no numeric metric columns")
    return Layout(time=time, entities=entities, metrics=chosen)


def iter_frames(path: Path, chunk_rows: int = 100_000) -> Iterator[pd.DataFrame]:
    """Yield a file in chunks of at most ``chunk_rows`` rows, in file order."""
    if file_format(path) == "parquet":
        pf = pq.ParquetFile(path)
        for rb in pf.iter_batches(batch_size=chunk_rows):
            yield rb.to_pandas()
    else:
        yield from pd.read_csv(path, chunksize=chunk_rows)


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
    """Append DataFrames to a CSV or Parquet file, chunk by chunk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.format = file_format(path)
        self._pq: pq.ParquetWriter | None = None
        self._started = False
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, df: pd.DataFrame) -> None:
        if self.format == "parquet":
            table = pa.Table.from_pandas(df, preserve_index=False)
            if self._pq is None:
                self._pq = pq.ParquetWriter(self.path, table.schema)
            self._pq.write_table(table.cast(self._pq.schema))
        else:
            df.to_csv(
                self.path, mode="a" if self._started else "w", header=not self._started, index=False
            )
        self._started = True

    def close(self) -> None:
        if self._pq is not None:
            self._pq.close()
        elif not self._started:
            self.path.write_text("")

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
