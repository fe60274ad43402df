"""Files as a :class:`~predictor.ports.Source` and a :class:`~predictor.ports.Sink`.

A *history* is a folder in the contracts of docs/contracts.md, as ``precovery simulate``
writes it (:func:`write_dataset`) or a recording of production topics:
``telemetry.(parquet|csv)``, and optionally ``positions.*`` and ``market.*``.
:func:`history_records` turns it into the records the topics would carry — the same
JSON, the same keys — merged in event-time order (context before telemetry of the same
millisecond), and :class:`IterSource` serves any such iterator through the ``Source``
port, so a replay runs the very driver the stream runs. :class:`JsonLinesSink` writes
recommendations.v1 one JSON object per line, byte for byte as they would be published.

>>> src = IterSource(iter([]))
>>> src.poll(10, 0.0), src.exhausted
([], True)
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson
import pandas as pd

from pipelines.driver import Topics
from predictor.contracts import INCIDENT_COLUMNS
from predictor.errors import ValidationError
from predictor.ports import OutRecord, RawRecord
from predictor.sim import Simulator

logger = logging.getLogger(__name__)

_ID = ("ts", "system", "component", "host")
_LABELS = frozenset(("label", "labels", "is_anomaly", "anomaly"))


def _find(folder: Path, name: str) -> Path | None:
    for ext in ("parquet", "csv"):
        p = folder / f"{name}.{ext}"
        if p.is_file():
            return p
    return None


def _read(path: Path) -> Any:
    """A table of the contracts with ``ts`` as epoch milliseconds (int64)."""
    df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    if "ts" not in df.columns:
        raise ValidationError("missing_field", f"{path}: no column ts (has {list(df.columns)})")
    col = df["ts"]
    if pd.api.types.is_numeric_dtype(col):  # epoch numbers: below 1e11 seconds, else ms
        v = col.to_numpy(dtype=np.float64)
        df["ts"] = np.where(v < 1e11, v * 1000.0, v).astype(np.int64)
    else:
        ts = pd.to_datetime(col, utc=True, format="ISO8601")
        df["ts"] = (ts - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)
    return df.sort_values("ts", kind="stable")


def _telemetry(path: Path, topic: str) -> Iterator[tuple[int, int, RawRecord]]:
    df = _read(path)
    missing = [c for c in _ID if c not in df.columns]
    if missing:
        raise ValidationError("missing_field", f"{path}: missing columns {', '.join(missing)}")
    names = [c for c in df.columns if c not in _ID and c not in _LABELS]
    values = df[names].to_numpy(dtype=np.float64).tolist()
    for i, (t, s, c, h, row) in enumerate(
        zip(
            df["ts"].tolist(),
            df["system"].tolist(),
            df["component"].tolist(),
            df["host"].tolist(),
            values,
            strict=True,
        )
    ):
        ev = {
            "ts": t,
            "system": s,
            "component": c,
            "host": h,
            "metrics": {k: v for k, v in zip(names, row, strict=True) if v == v},
        }
        yield t, 1, RawRecord(topic, orjson.dumps(ev), s.encode(), 0, i)


def _context(path: Path, topic: str, key: str) -> Iterator[tuple[int, int, RawRecord]]:
    df = _read(path)
    for i, rec in enumerate(df.to_dict(orient="records")):
        rec = {k: (v.item() if hasattr(v, "item") else v) for k, v in rec.items()}
        yield int(rec["ts"]), 0, RawRecord(topic, orjson.dumps(rec), str(rec[key]).encode(), 0, i)


def history_records(folder: Path, topics: Topics | None = None) -> Iterator[RawRecord]:
    """The records of a history folder, merged in event-time order (context first)."""
    topics = topics or Topics()
    tele = _find(folder, "telemetry")
    if tele is None:
        raise ValidationError(
            "not_found", f"{folder}: no telemetry.parquet or telemetry.csv (a history folder)"
        )
    streams: list[Iterator[tuple[int, int, RawRecord]]] = [_telemetry(tele, topics.telemetry)]
    for name, topic, key in (
        ("positions", topics.positions, "system"),
        ("market", topics.market, "venue"),
    ):
        path = _find(folder, name)
        if path is not None:
            streams.append(_context(path, topic, key))
    # Each file sorted by time (stable), merged by (time, context first).
    for _t, _rank, rec in heapq.merge(*streams, key=lambda x: (x[0], x[1])):
        yield rec


class IterSource:
    """The ``Source`` port over an iterator of records: ``poll`` takes the next ones."""

    def __init__(self, records: Iterable[RawRecord]) -> None:
        self._it = iter(records)
        self.exhausted = False
        self.committed: dict[tuple[str, int], int] = {}
        self.polled = 0

    def poll(self, max_records: int, timeout_s: float) -> list[RawRecord]:
        out = list(itertools.islice(self._it, max_records))
        self.polled += len(out)
        if len(out) < max_records:
            self.exhausted = True
        return out

    def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        self.committed.update(offsets)


class JsonLinesSink:
    """The ``Sink`` port writing one topic's values as JSON lines; counts the others."""

    def __init__(self, out: IO[bytes], topic: str) -> None:
        self.out = out
        self.topic = topic
        self.counts: Counter[str] = Counter()

    def publish(self, records: Sequence[OutRecord]) -> None:
        for r in records:
            self.counts[r.topic] += 1
            if r.topic == self.topic:
                self.out.write(r.value + b"\n")


# -- a simulated history to files (what `precovery simulate` writes) ---------------------
def _ts_for(fmt: str, ts: np.ndarray) -> Any:
    if fmt == "csv":
        return np.datetime_as_string(ts.astype("datetime64[ms]"), unit="ms", timezone="UTC")
    return pd.to_datetime(ts, unit="ms", utc=True)


class _TableSink:
    """Append DataFrames to one Parquet or CSV file."""

    def __init__(self, path: Path, fmt: str) -> None:
        self.path = path
        self.fmt = fmt
        self._writer: Any = None
        self._header = True

    def write(self, df: pd.DataFrame) -> None:
        if len(df) == 0:
            return
        df = df.assign(ts=_ts_for(self.fmt, df["ts"].to_numpy(np.int64)))
        if self.fmt == "csv":
            df.to_csv(
                self.path, mode="w" if self._header else "a", header=self._header, index=False
            )
            self._header = False
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(df, preserve_index=False)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, table.schema)
        self._writer.write_table(table.cast(self._writer.schema))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        elif self._header:  # nothing written: still leave an (empty) file behind
            self.path.write_text("")


def write_dataset(
    sim: Simulator,
    hours: float,
    out_dir: Path,
    fmt: str = "parquet",
    progress: Callable[[float], None] | None = None,
) -> dict[str, Path]:
    """Write ``hours`` of simulated history to ``out_dir``, streaming chunk by chunk.

    Files: ``telemetry.<fmt>``, ``positions.<fmt>``, ``market.<fmt>`` and
    ``incidents.csv``. ``ts`` is an RFC 3339 UTC string (``...T00:00:10.000Z``) in CSV
    and ``timestamp[ms, tz=UTC]`` in Parquet. Incidents keep their RFC 3339 strings.

    Parameters
    ----------
    sim : Simulator
        The simulator.
    hours : float
        Length of history from the simulation start.
    out_dir : Path
        Target directory, created if missing.
    fmt : {'parquet', 'csv'}
        File format of the three time series.
    progress : callable, optional
        Called with the fraction done (0..1] after every chunk.

    Returns
    -------
    dict of str to Path
        ``telemetry``, ``positions``, ``market`` and ``incidents`` file paths.
    """
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"fmt must be 'parquet' or 'csv', got {fmt!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / f"{name}.{fmt}" for name in ("telemetry", "positions", "market")}
    paths["incidents"] = out_dir / "incidents.csv"
    # About half a million rows per chunk bounds memory whatever the fleet size.
    steps = max(6, 500_000 // max(1, len(sim.fleet.entities)))
    chunk_s = min(3600.0, max(60.0, (steps * sim.config.interval_s) // 60 * 60))
    sinks = {name: _TableSink(paths[name], fmt) for name in ("telemetry", "positions", "market")}
    total_ms = max(1, int(round(hours * 3_600_000)))
    try:
        for chunk in sim.iter_chunks(hours, chunk_s=chunk_s):
            sinks["telemetry"].write(chunk.telemetry)
            sinks["positions"].write(pd.DataFrame(chunk.positions))
            sinks["market"].write(pd.DataFrame(chunk.market))
            if progress is not None:
                progress(min(1.0, (chunk.t1_ms - sim.start_ms) / total_ms))
    finally:
        for sink in sinks.values():
            sink.close()
    pd.DataFrame(sim.incidents(hours), columns=list(INCIDENT_COLUMNS)).to_csv(
        paths["incidents"], index=False
    )
    logger.info("wrote %.1f h of simulated history to %s", hours, out_dir)
    return paths
