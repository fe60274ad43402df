"""The live state shared by a stream worker and the API: one engine behind one lock.

The worker mutates the engine between batches while holding :attr:`LiveState.lock`; API
handlers must never make the stream wait for long, so:

- views are rendered under the lock at most once per engine state and cached as orjson
  bytes; while a batch is in progress a reader gets the render of the state before it
  (at most one batch old) instead of waiting for the lock;
- the what-if scoring copies only the state of the entities in its request
  (:func:`~predictor.whatif.scratch_engine`), not the whole engine;
- recommendations live in their own bounded log under their own small lock.

Cursors. Recommendations get a sequence number local to this process and a
``stream_id`` made fresh at every process start; a cursor is ``"<stream_id>:<seq>"``.
A cursor of another stream (the process restarted) or one older than the log keeps
raises :class:`CursorReset`: the client is told to start over, never silently skips.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

import orjson

from pipelines.embedded.feed import FeedMonitor
from predictor.engine import Engine, StepResult
from predictor.errors import PayloadTooLarge, UnknownEntityError, ValidationError
from predictor.events import Reject, decode_telemetry, ms_to_iso
from predictor.risk import RiskModel
from predictor.views import input_drifts
from predictor.whatif import scratch_engine

logger = logging.getLogger(__name__)

#: Conditions :class:`pipelines.embedded.feed.FeedMonitor` can report, all shown (0 or 1)
#: in metrics.
CONDITIONS = ("telemetry_lost", "worker_dead", "lagging")


#: Upper bounds (s) of the stage-latency histogram buckets.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
STAGES = ("decode", "engine", "publish")


class StageLatency:
    """Cumulative histograms of the worker's stages (a ``BatchReport``'s ``*_s`` fields).

    ``engine`` is features, detectors, the risk model and decisions together.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.buckets = {s: [0] * (len(LATENCY_BUCKETS) + 1) for s in STAGES}
        self.sums = dict.fromkeys(STAGES, 0.0)

    def observe(self, report: object) -> None:
        if report is None:
            return
        with self._lock:
            for stage in STAGES:
                value = getattr(report, f"{stage}_s", None)
                if value is None:
                    continue
                i = next(
                    (j for j, b in enumerate(LATENCY_BUCKETS) if value <= b), len(LATENCY_BUCKETS)
                )
                self.buckets[stage][i] += 1
                self.sums[stage] += float(value)

    def snapshot(self) -> dict[str, tuple[list[int], float]]:
        with self._lock:
            return {s: (list(self.buckets[s]), self.sums[s]) for s in STAGES}


class CursorReset(Exception):
    """A resume cursor this stream cannot honour: the client must start over.

    ``why`` is ``stream_changed`` (another process's cursor) or ``cursor_expired`` (older
    than the retained log: recommendations in between are gone).
    """

    def __init__(self, why: str, detail: str, stream_id: str) -> None:
        super().__init__(f"{why}: {detail}")
        self.why = why
        self.detail = detail
        self.stream_id = stream_id


class Listeners:
    """Callbacks woken after new recommendations (the SSE streams' event loops).

    A listener that raises (its event loop closed) is forgotten.
    """

    def __init__(self) -> None:
        self._fns: list[Callable[[], None]] = []

    def add(self, fn: Callable[[], None]) -> None:
        self._fns.append(fn)

    def remove(self, fn: Callable[[], None]) -> None:
        try:
            self._fns.remove(fn)
        except ValueError:
            pass

    def notify(self) -> None:
        for fn in list(self._fns):
            try:
                fn()
            except Exception:
                self.remove(fn)


class LiveState:
    """Engine + lock + cached views + a bounded log of recommendations, for the API.

    Parameters
    ----------
    engine
        The engine the worker feeds.
    max_recent
        Recommendations kept for ``?after=`` and the event stream.
    feed
        The worker's :class:`~pipelines.embedded.feed.FeedMonitor` (one is made when None); the
        worker writes it, readiness and metrics read it.
    stream_id
        Identity of this process's recommendation sequence (random when None).
    """

    def __init__(
        self,
        engine: Engine,
        max_recent: int = 10_000,
        feed: FeedMonitor | None = None,
        stream_id: str | None = None,
        history_step_s: float = 60.0,
        history_points: int = 720,
    ) -> None:
        self.engine = engine
        self.lock = threading.Lock()
        self.feed = feed if feed is not None else FeedMonitor()
        self.stream_id = stream_id or uuid.uuid4().hex[:12]
        self._rec_lock = threading.Lock()
        self._cond = threading.Condition(self._rec_lock)
        self._recent: deque[tuple[int, dict[str, Any]]] = deque(maxlen=max_recent)
        self._seq = 0
        self.batches = 0
        self._listeners = Listeners()
        # view key ("" = all systems) -> (state version, orjson bytes, the value)
        self._views: dict[str, tuple[tuple[Any, ...], bytes, Any]] = {}
        # system -> (event time ms, health, max risk, action), one point per step
        self.history_step_ms = int(history_step_s * 1000)
        self.history_points = history_points
        self._history: dict[str, deque[tuple[int, float, float | None, str]]] = {}
        self._history_at: int | None = None
        #: worker stage seconds, per stage: [count per bucket..., +Inf count], sum
        self.latency = StageLatency()

    # -- called by the worker, with ``lock`` held by nobody -----------------------------
    def on_batch(self, report: object, result: StepResult | None) -> None:
        self.batches += 1
        self.latency.observe(report)
        self._sample_history()
        if result is None or not result.recommendations:
            return
        with self._cond:
            for rec in result.recommendations:
                self._seq += 1
                self._recent.append((self._seq, rec))
            self._cond.notify_all()
        self._listeners.notify()

    def _sample_history(self) -> None:
        """One point per system every ``history_step_s`` of event time (bounded)."""
        tick = self.engine.last_tick_ms
        if tick is None:
            return
        if self._history_at is not None and tick - self._history_at < self.history_step_ms:
            return
        self._history_at = tick
        for row in self._view(None)[1] or ():
            points = self._history.get(row["system"])
            if points is None:
                points = self._history[row["system"]] = deque(maxlen=self.history_points)
            points.append((tick, row["health"], row["max_risk"], row["action"]))

    def history(self, system: str) -> list[dict[str, Any]]:
        """A system's health, highest risk and action over time, oldest first."""
        points = self._history.get(system)
        if points is None:
            if system in self.engine.systems:
                return []
            raise UnknownEntityError(f"unknown system {system!r}")
        return [
            {"t": ms_to_iso(t), "health": h, "max_risk": r, "action": a}
            for t, h, r, a in list(points)
        ]

    def set_model(self, model: RiskModel | None) -> None:
        with self.lock:
            self.engine.set_model(model)
            self.batches += 1

    def add_listener(self, fn: Callable[[], None]) -> None:
        """Call ``fn()`` (from the worker's thread) after recommendations are logged."""
        self._listeners.add(fn)

    def remove_listener(self, fn: Callable[[], None]) -> None:
        self._listeners.remove(fn)

    # -- views --------------------------------------------------------------------------
    def _version(self) -> tuple[Any, ...]:
        """Changes whenever the engine's state may have (read without the lock)."""
        eng = self.engine
        c = eng.counters
        return (
            self.batches,
            c["events"],
            c["ticks"],
            eng.last_tick_ms,
            eng.watermark_ms,
            eng.n_entities,
            id(eng.model),
        )

    def view_json(self, system: str | None = None, wait: bool = True) -> bytes | None:
        """One system's view (all systems' with None) as JSON bytes, cached per state.

        A render at the current state is returned at once. While the worker holds the
        lock, the previous render is returned instead (it is at most one batch old);
        only when there is none does a reader wait, unless ``wait`` is False, which
        returns None rather than render or wait (for callers on an event loop).
        """
        return self._view(system, wait)[0]

    def _view(self, system: str | None, wait: bool = True) -> tuple[bytes | None, Any]:
        key = "" if system is None else system
        hit = self._views.get(key)
        if hit is not None and hit[0] == self._version():
            return hit[1], hit[2]
        if not self.lock.acquire(blocking=False):
            if hit is not None:
                return hit[1], hit[2]
            if not wait:
                return None, None
            self.lock.acquire()
        elif not wait:
            self.lock.release()
            return None, None
        try:
            version = self._version()
            hit = self._views.get(key)
            if hit is None or hit[0] != version:
                eng = self.engine
                value = eng.systems_view() if system is None else eng.system_view(system)
                hit = (version, orjson.dumps(value), value)
                self._views[key] = hit
        finally:
            self.lock.release()
        return hit[1], hit[2]

    # -- read side (the API) -----------------------------------------------------------
    def systems(self) -> list[dict[str, Any]]:
        return list(self._view(None)[1])

    def system(self, name: str) -> dict[str, Any]:
        return dict(self._view(name)[1])

    def parse_cursor(self, after: str | int | None) -> int:
        """The sequence number to resume after, from a cursor ``"<stream_id>:<seq>"``.

        ``None``, ``""`` and ``0`` mean "from the start". A bare number other than 0 is
        refused (:class:`~predictor.errors.ValidationError`): it cannot say which process
        it came from. Raises :class:`CursorReset` for another stream's cursor or one
        older than the retained log.
        """
        if after is None or after in ("", "0", 0):
            return 0
        text = str(after)
        stream, sep, seq_text = text.rpartition(":")
        if not sep or not seq_text.isdigit() or len(seq_text) > 18 or not stream:
            raise ValidationError(
                "bad_cursor",
                f"after={text[:60]!r}: use the cursor of a recommendation, "
                "'<stream_id>:<seq>', or 0 to start over",
            )
        seq = int(seq_text)
        if stream != self.stream_id:
            raise CursorReset(
                "stream_changed",
                f"cursor of stream {stream[:40]!r}; this is stream {self.stream_id!r} "
                "(the service restarted): start over with after=0",
                self.stream_id,
            )
        with self._rec_lock:
            oldest = self._recent[0][0] if self._recent else self._seq + 1
            newest = self._seq
        if seq > newest:
            raise CursorReset(
                "stream_changed",
                f"seq {seq} is beyond this stream's latest ({newest}): start over with after=0",
                self.stream_id,
            )
        if seq < oldest - 1:
            raise CursorReset(
                "cursor_expired",
                f"recommendations {seq + 1}..{oldest - 1} are no longer kept: "
                "start over with after=0",
                self.stream_id,
            )
        return seq

    def _row(self, seq: int, rec: dict[str, Any]) -> dict[str, Any]:
        return {"seq": seq, "stream_id": self.stream_id, "cursor": f"{self.stream_id}:{seq}", **rec}

    def recommendations(
        self, system: str | None = None, after: int = 0, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Oldest first: the latest ``limit`` (``after`` 0) or the first ``limit`` after."""
        with self._rec_lock:
            picked = [
                (seq, rec)
                for seq, rec in self._recent
                if seq > after and (system is None or rec["system"] == system)
            ]
        picked = picked[-limit:] if after == 0 else picked[:limit]
        return [self._row(seq, rec) for seq, rec in picked]

    @property
    def last_seq(self) -> int:
        return self._seq

    # the event stream's view of positions (opaque to the API): here, sequence numbers
    def newer_than(self, position: int) -> bool:
        return self._seq > position

    @staticmethod
    def position_of(row: dict[str, Any]) -> int:
        return int(row["seq"])

    def gap(self, position: int, rows: list[dict[str, Any]]) -> str | None:
        """Why ``rows`` do not follow ``position`` directly (the log moved on), or None."""
        if rows and position > 0 and int(rows[0]["seq"]) > position + 1:
            return f"recommendations {position + 1}..{int(rows[0]['seq']) - 1} are gone"
        return None

    def wait_recommendations(self, after: int, timeout_s: float) -> list[dict[str, Any]]:
        """Block up to ``timeout_s`` for recommendations newer than ``after``."""
        with self._cond:
            if self._seq <= after:
                self._cond.wait(timeout_s)
        return self.recommendations(after=after, limit=len(self._recent) or 1)

    def health(self) -> dict[str, Any]:
        """What liveness shows: read without the engine lock (a wedged worker holds it)."""
        eng = self.engine
        model = eng.model
        return {
            "model_version": model.version if model is not None else None,
            "entities": eng.n_entities,
            "watermark": eng.watermark_ms,
        }

    def readiness(self) -> list[str]:
        """Why this process should not take traffic, one line each; empty when ready.

        Ready means: the stream worker runs, a risk model is loaded, input arrived within
        the feed's ``lost_after_s`` (``telemetry_lost`` otherwise) and the consumer lag
        is under the feed's ``max_lag``. Never takes the engine lock.
        """
        reasons = list(self.feed.not_ready())
        if self.engine.model is None:
            reasons.append("model_not_loaded: no risk model (only the heartbeat rule decides)")
        return reasons

    def status(self) -> dict[str, Any]:
        systems = self.systems()
        feed = self.feed
        idle = feed.idle_s()
        reasons = self.readiness()
        with self.lock:
            eng = self.engine
            out: dict[str, Any] = {
                "entities": eng.n_entities,
                "systems": len(eng.systems),
                "watermark": eng.watermark_ms,
                "model_version": eng.model_version,
                "horizon_s": eng.horizon_s,
                "counters": dict(eng.counters),
                "reject_reasons": dict(eng.reject_reasons),
                "state_bytes_per_entity": eng.nbytes_per_entity(),
                "input_drifts": input_drifts(eng),
            }
        out.update(
            {
                "batches": self.batches,
                "health": {v["system"]: v["health"] for v in systems},
                "max_risk": {v["system"]: v["max_risk"] for v in systems},
                "stream_id": self.stream_id,
                "last_seq": self._seq,
                "ready": not reasons,
                "not_ready": reasons,
                "conditions": feed.conditions(),
                "input_idle_s": None if idle is None else round(idle, 3),
                "input_records": feed.records,
                "consumer_lag": feed.lag,
                "worker_alive": feed.worker_alive,
                "worker_error": feed.worker_error,
            }
        )
        return out

    def score(self, events: list[Any], max_events: int) -> dict[str, Any]:
        """Score a batch as a what-if on a copy of the live state; the live state is kept.

        Each event is scored against its entity's live history plus the events before it
        in the request, so scores of known entities are warm; unknown entities start
        fresh (and say so). Only the request's entities are copied, under the lock.
        """
        if len(events) > max_events:
            raise PayloadTooLarge("too_many_events", f"{len(events)} > {max_events} events")
        not_objects = [
            Reject(i, "not_an_object", type(ev).__name__)
            for i, ev in enumerate(events)
            if not isinstance(ev, dict)
        ]
        if not_objects:
            raise _batch_error(not_objects)
        config = replace(self.engine.config, risk_cadence_s=0.0)  # a fresh risk per event
        batch = decode_telemetry(events, config.metric_names)
        if batch.rejects:
            raise _batch_error(batch.rejects)
        wanted = list(dict.fromkeys(batch.keys))
        with self.lock:
            slot = self.engine.registry.slot
            known = {k for k in wanted if k in slot}
            scratch = scratch_engine(self.engine, wanted, config)
        res = scratch.process(batch, decide=False)
        if res.rejects:
            raise _batch_error(res.rejects)
        rows = []
        for j, (a, r, h) in enumerate(
            zip(res.anomaly.tolist(), res.risk.tolist(), res.health.tolist(), strict=True)
        ):
            key = batch.keys[j]
            rows.append(
                {
                    "system": key[0],
                    "component": key[1],
                    "host": key[2],
                    "anomaly_score": round(a, 6),
                    "risk": None if r != r else round(r, 6),
                    "health": round(h, 2),
                    "known_entity": key in known,
                }
            )
        return {
            "model_version": scratch.model_version,
            "horizon_s": scratch.horizon_s,
            "scored": len(res.index),
            "rejected": 0,
            "results": rows,
        }


def _batch_error(found: Iterable[Reject]) -> ValidationError:
    rejects = sorted(found, key=lambda r: r.index)
    first = rejects[0]
    return ValidationError(
        first.reason,
        f"event {first.index}: {first.detail}" if first.detail else f"event {first.index}",
        [{"index": r.index, "reason": r.reason, "detail": r.detail} for r in rejects],
    )
