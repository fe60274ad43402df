"""Per-partition checkpoints: engine state and the input offsets it reflects, on disk.

One file per checkpoint, named by the telemetry offset it covers, in a directory every
worker of the group can read (a shared volume in production)::

    <root>/<group>/<telemetry topic>/p<partition>/<offset:020d>.ckpt

A file is written to a temporary name, fsynced and renamed, so a reader sees a whole
checkpoint or none. :meth:`CheckpointStore.load` takes the highest offset that unpickles;
a torn or unreadable file falls back to the one before. Because the stream is
deterministic (the same input gives the same state), two writers of one partition (a
zombie and its successor) write the same state for the same offset, and "highest offset
wins" is safe. The newest ``keep`` files per partition are kept.

Checkpoints are pickles: trust the directory as you trust the code.

>>> import tempfile
>>> store = CheckpointStore(Path(tempfile.mkdtemp()), group="g", topic="t")
>>> _ = store.save(Checkpoint(partition=0, telemetry_offset=42, positions_offset=7, engine={}))
>>> store.load(0).telemetry_offset, store.load(1)
(42, None)
"""

from __future__ import annotations

import logging
import os
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: 2: positions and market not yet due travel inside the engine's snapshot.
FORMAT_VERSION = 2


@dataclass(slots=True)
class Checkpoint:
    """The state of one telemetry partition after ``telemetry_offset`` records.

    Attributes
    ----------
    partition
        Telemetry partition number (positions.v1 is co-partitioned: same number).
    telemetry_offset
        Next telemetry offset to process: everything before it is in ``engine``.
    positions_offset
        Next positions.v1 offset to read: everything before it is in ``engine`` (applied,
        or buffered until its event time).
    engine
        ``Engine.snapshot()``: registry, context (with the records not yet due),
        features, detectors, escalation, fencing epochs.
    stats
        Counters that travel with the state (inputs accepted, dead-lettered, ...).
    model_version
        Model the state was built with.
    """

    partition: int
    telemetry_offset: int
    positions_offset: int | None
    engine: dict[str, Any]
    stats: dict[str, int] = field(default_factory=dict)
    model_version: str | None = None
    writer: str = ""
    written_at: float = 0.0
    format_version: int = FORMAT_VERSION


class CheckpointStore:
    """Atomic checkpoint files in a directory shared by the workers of one group."""

    def __init__(self, root: Path, group: str, topic: str, keep: int = 3) -> None:
        self.dir = Path(root) / _safe(group) / _safe(topic)
        self.keep = keep

    def _pdir(self, partition: int) -> Path:
        return self.dir / f"p{partition}"

    def save(self, ck: Checkpoint) -> Path:
        """Write ``ck`` atomically; returns its path. Raises ``OSError``."""
        pdir = self._pdir(ck.partition)
        pdir.mkdir(parents=True, exist_ok=True)
        ck.written_at = time.time()
        final = pdir / f"{ck.telemetry_offset:020d}.ckpt"
        tmp = pdir / f".{final.name}.{os.getpid()}.tmp"
        with open(tmp, "wb") as fh:
            pickle.dump(ck, fh, protocol=pickle.HIGHEST_PROTOCOL)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        _fsync_dir(pdir)
        self._prune(pdir)
        return final

    def load(self, partition: int) -> Checkpoint | None:
        """The newest readable checkpoint of ``partition``, or None."""
        for path in self._files(self._pdir(partition)):
            try:
                with open(path, "rb") as fh:
                    ck = pickle.load(fh)
            except (OSError, EOFError, pickle.UnpicklingError, AttributeError) as exc:
                logger.warning("unreadable checkpoint %s (%r): trying an older one", path, exc)
                continue
            if isinstance(ck, Checkpoint) and ck.format_version == FORMAT_VERSION:
                return ck
            logger.warning("checkpoint %s has an unknown format: ignored", path)
        return None

    def partitions(self) -> list[int]:
        """Partitions that have at least one checkpoint file."""
        if not self.dir.is_dir():
            return []
        out = []
        for p in self.dir.iterdir():
            if p.is_dir() and p.name[1:].isdigit() and self._files(p):
                out.append(int(p.name[1:]))
        return sorted(out)

    @staticmethod
    def _files(pdir: Path) -> list[Path]:
        if not pdir.is_dir():
            return []
        return sorted(pdir.glob("*.ckpt"), reverse=True)

    def _prune(self, pdir: Path) -> None:
        for old in self._files(pdir)[self.keep :]:
            try:
                old.unlink()
            except FileNotFoundError:  # another writer pruned it first
                pass


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
