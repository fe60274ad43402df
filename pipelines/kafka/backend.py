"""The API's backend on a Kafka deployment (``precovery serve``): the topics, not an engine.

A :class:`KafkaBackend` reads two topics with one group-less consumer of its own:

- **health.v1** (compacted, key = system) from the beginning: the latest record per system
  is the fleet view (``/v1/systems``); each system's points over time feed ``/history``;
- **recommendations.v1**: the last ``max_recent`` records of every partition, then
  everything new.

No state is shared between replicas besides Kafka, so any number may run behind a load
balancer, and they agree on cursors because cursors are made of Kafka offsets.

Cursors. A cursor reads ``kafka-<topic>:<o0>.<o1>...<oN-1>``: for every partition of the
recommendations topic, the next offset not yet delivered. The feed is ordered by (record
timestamp, partition, offset) — the same on every replica — and each row's cursor is the
position just after it. Resuming delivers every kept record at or beyond those offsets, so
nothing is skipped, whichever replica answers (a replica that has not consumed that far
yet answers nothing new until it has). A cursor of another topic or partition count is
``stream_changed``; one older than what the replica keeps is ``cursor_expired`` (both
409: start over with after=0 and drop duplicates by ``recommendation_id``).

What it cannot serve: the what-if ``POST /v1/score`` needs the engine, which lives in the
stream workers (501). ``/v1/systems/{system}`` is reduced: health.v1 carries system
summaries, so components come from the latest recommendation of each (plus the worst
component of the summary) and carry no hosts; ``critical`` is unknown (false).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson

from pipelines.embedded.feed import FeedMonitor
from pipelines.embedded.live import CursorReset, Listeners, StageLatency
from predictor.errors import UnknownEntityError, ValidationError
from predictor.events import ms_to_iso

logger = logging.getLogger(__name__)

_SUMMARY = (
    "system",
    "health",
    "worst_component",
    "worst_component_health",
    "max_risk",
    "action",
    "components",
    "epoch",
)


class KafkaBackend:
    """``serve.app.Backend`` over health.v1 and recommendations.v1.

    Parameters
    ----------
    consumer_factory
        ``() -> consumer``: a kafka-python ``KafkaConsumer`` (group-less) or alike.
    health_topic, recommendations_topic
        Topic names.
    max_recent
        Recommendations kept per partition.
    stale_after_s
        No record at all for this long (wall s) is not ready (``stale``).
    history_step_s, history_points
        One history point per system per this much event time, this many kept.
    """

    def __init__(
        self,
        consumer_factory: Callable[[], Any],
        health_topic: str = "health.v1",
        recommendations_topic: str = "recommendations.v1",
        max_recent: int = 5000,
        stale_after_s: float = 120.0,
        max_lag: int = 100_000,
        history_step_s: float = 60.0,
        history_points: int = 720,
    ) -> None:
        self._factory = consumer_factory
        self.health_topic = health_topic
        self.recommendations_topic = recommendations_topic
        self.max_recent = max_recent
        self.stream_id = f"kafka-{recommendations_topic}"
        self.feed = FeedMonitor(lost_after_s=stale_after_s, max_lag=max_lag)
        self.latency = StageLatency()
        self.history_step_ms = int(history_step_s * 1000)
        self.history_points = history_points
        self._lock = threading.Lock()
        self._health: dict[str, dict[str, Any]] = {}
        self._history: dict[str, deque[tuple[int, float, float | None, str]]] = {}
        self._recs: dict[int, deque[tuple[int, int, dict[str, Any]]]] = {}
        self._partitions = 0
        self._version = 0
        self._sorted: tuple[int, list[tuple[str, int, int, dict[str, Any]]]] = (-1, [])
        self._views: dict[str, tuple[int, bytes]] = {}
        self._listeners = Listeners()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.loaded = False
        self.counts = {"health": 0, "recommendations": 0, "undecodable": 0}

    # -- the consumer thread ----------------------------------------------------------
    def start(self) -> KafkaBackend:
        self._thread = threading.Thread(target=self._run, name="kafka-backend", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        from kafka import TopicPartition

        error: BaseException | None = None
        consumer = None
        try:
            consumer = self._factory()
            hparts = sorted(consumer.partitions_for_topic(self.health_topic) or ())
            rparts = sorted(consumer.partitions_for_topic(self.recommendations_topic) or ())
            if not hparts or not rparts:
                raise RuntimeError(
                    f"topics {self.health_topic} / {self.recommendations_topic} not found"
                )
            htps = [TopicPartition(self.health_topic, p) for p in hparts]
            rtps = [TopicPartition(self.recommendations_topic, p) for p in rparts]
            consumer.assign(htps + rtps)
            begins = consumer.beginning_offsets(htps + rtps)
            ends = consumer.end_offsets(htps + rtps)
            for tp in htps:
                consumer.seek(tp, begins[tp])
            for tp in rtps:
                consumer.seek(tp, max(begins[tp], ends[tp] - self.max_recent))
            with self._lock:
                self._partitions = len(rparts)
                for p in rparts:
                    self._recs[p] = deque(maxlen=self.max_recent)
            self.feed.worker_started()
            loading = {tp: ends[tp] for tp in htps + rtps if ends[tp] > begins[tp]}
            last_lag = 0.0
            while not self._stop.is_set():
                polled = consumer.poll(timeout_ms=200, max_records=5000)
                t0 = time.perf_counter()
                n = sum(len(v) for v in polled.values())
                fresh = 0
                for tp, records in polled.items():
                    if tp.topic == self.health_topic:
                        self._add_health(records)
                    else:
                        fresh += self._add_recs(tp.partition, records)
                if n:
                    self.latency.observe(_Took(time.perf_counter() - t0))
                if not self.loaded:
                    loading = {tp: e for tp, e in loading.items() if consumer.position(tp) < e}
                    self.loaded = not loading
                lag = None
                if time.monotonic() - last_lag > 5.0:
                    last_lag = time.monotonic()
                    latest = consumer.end_offsets(htps + rtps)
                    lag = sum(max(0, latest[tp] - consumer.position(tp)) for tp in latest)
                self.feed.note(n, lag)
                if fresh:
                    self._notify()
        except Exception as exc:  # reported by readiness and logged at ERROR
            error = exc
        finally:
            self.feed.worker_stopped(error)
            if consumer is not None:
                consumer.close()

    def _add_health(self, records: list[Any]) -> None:
        with self._lock:
            for r in records:
                try:
                    view = orjson.loads(r.value)
                    system = view["system"]
                except (ValueError, TypeError, KeyError):
                    self.counts["undecodable"] += 1
                    continue
                self._health[system] = view
                self.counts["health"] += 1
                at = view.get("as_of_ms")
                points = self._history.setdefault(system, deque(maxlen=self.history_points))
                if isinstance(at, int) and (
                    not points or at - points[-1][0] >= self.history_step_ms
                ):
                    points.append((at, view["health"], view.get("max_risk"), view["action"]))
            self._version += 1

    def _add_recs(self, partition: int, records: list[Any]) -> int:
        added = 0
        with self._lock:
            kept = self._recs.setdefault(partition, deque(maxlen=self.max_recent))
            for r in records:
                try:
                    rec = orjson.loads(r.value)
                    rec["system"]  # noqa: B018 - must be there
                except (ValueError, TypeError, KeyError):
                    self.counts["undecodable"] += 1
                    continue
                if rec.get("kind") in ("situation_report", "decision"):  # for the orchestrator
                    continue
                kept.append((r.timestamp, r.offset, rec))
                added += 1
            self.counts["recommendations"] += added
            self._version += 1
        return added

    def _notify(self) -> None:
        self._listeners.notify()

    def add_listener(self, fn: Callable[[], None]) -> None:
        self._listeners.add(fn)

    def remove_listener(self, fn: Callable[[], None]) -> None:
        self._listeners.remove(fn)

    # -- views ------------------------------------------------------------------------
    def _summaries(self) -> list[dict[str, Any]]:
        with self._lock:
            views = [self._health[s] for s in sorted(self._health)]
        return [{k: v.get(k) for k in _SUMMARY} for v in views]

    def view_json(self, system: str | None = None, wait: bool = True) -> bytes | None:
        key = "" if system is None else system
        version = self._version
        hit = self._views.get(key)
        if hit is not None and hit[0] == version:
            return hit[1]
        value: Any = self._summaries() if system is None else self._detail(system)
        data = orjson.dumps(value)
        self._views[key] = (version, data)
        return data

    def _detail(self, system: str) -> dict[str, Any]:
        with self._lock:
            view = self._health.get(system)
            latest: dict[str, dict[str, Any]] = {}
            for kept in self._recs.values():
                for ts, off, rec in kept:
                    if rec["system"] == system:
                        prev = latest.get(rec["component"])
                        if prev is None or (ts, off) >= prev["_at"]:
                            latest[rec["component"]] = {"_at": (ts, off), "rec": rec}
        if view is None:
            raise UnknownEntityError(f"unknown system {system!r}")
        comps = []
        for name, item in sorted(latest.items()):
            rec = item["rec"]
            comps.append(
                {
                    "component": name,
                    "critical": False,
                    "health": rec.get("health", view["health"]),
                    "risk": rec.get("risk"),
                    "action": rec.get("action", "none"),
                    "hosts": [],
                    "latest_recommendation": rec,
                }
            )
        worst = view.get("worst_component")
        if worst and worst not in latest:
            comps.append(
                {
                    "component": worst,
                    "critical": False,
                    "health": view.get("worst_component_health", view["health"]),
                    "risk": view.get("max_risk"),
                    "action": view.get("action", "none"),
                    "hosts": [],
                    "latest_recommendation": None,
                }
            )
        newest = max(
            (item["rec"] for item in latest.values()),
            key=lambda r: r.get("issued_at", ""),
            default=None,
        )
        as_of = view.get("as_of_ms")
        return {
            "system": system,
            "health": view["health"],
            "as_of": ms_to_iso(as_of) if isinstance(as_of, int) else None,
            "epoch": view.get("epoch", 0),
            "exposure_usd": (newest or {}).get(
                "exposure_usd", {"net": None, "gross": None, "open_orders": 0}
            ),
            "market": (newest or {}).get("market"),
            "components": comps,
            "model_version": (newest or {}).get("model_version"),
            "horizon_s": (newest or {}).get("horizon_s", 0.0),
        }

    def history(self, system: str) -> list[dict[str, Any]]:
        with self._lock:
            points = self._history.get(system)
            if points is None:
                raise UnknownEntityError(f"unknown system {system!r}")
            rows = list(points)
        return [{"t": ms_to_iso(t), "health": h, "max_risk": r, "action": a} for t, h, r, a in rows]

    # -- recommendations and cursors --------------------------------------------------
    def _feed(self) -> list[tuple[str, int, int, dict[str, Any]]]:
        """(cursor, partition, offset, rec) of every kept recommendation, in the replicas'
        common order."""
        version = self._version
        if self._sorted[0] == version:
            return self._sorted[1]
        with self._lock:
            n = self._partitions
            items = [(ts, p, off, rec) for p, kept in self._recs.items() for ts, off, rec in kept]
            tops = [(self._recs[p][-1][1] + 1) if self._recs.get(p) else None for p in range(n)]
        items.sort(key=lambda x: (x[0], x[1], x[2]))
        # Walking back: the next undelivered offset per partition after each row.
        nxt: list[int | None] = list(tops)
        cursors: list[str] = [""] * len(items)
        for i in range(len(items) - 1, -1, -1):
            cursors[i] = self._cursor(nxt)
            _ts, p, off, _rec = items[i]
            nxt[p] = off if nxt[p] is None else min(off, nxt[p])  # type: ignore[type-var]
        out = [(cursors[i], it[1], it[2], it[3]) for i, it in enumerate(items)]
        self._sorted = (version, out)
        return out

    def _cursor(self, offsets: list[int | None]) -> str:
        return f"{self.stream_id}:" + ".".join("0" if o is None else str(o) for o in offsets)

    def _oldest(self) -> list[int | None]:
        with self._lock:
            return [
                self._recs[p][0][1] if self._recs.get(p) else None for p in range(self._partitions)
            ]

    def parse_cursor(self, after: str | int | None) -> tuple[int, ...] | None:
        """The per-partition next offsets of a cursor; None for the start (see module)."""
        if after is None or after in ("", "0", 0):
            return None
        text = str(after)
        stream, sep, rest = text.rpartition(":")
        parts = rest.split(".")
        if not sep or not stream or not all(x.isdigit() and len(x) <= 18 for x in parts):
            raise ValidationError(
                "bad_cursor",
                f"after={text[:60]!r}: use the cursor of a recommendation, "
                f"'{self.stream_id}:<offset>.<offset>...', or 0 to start over",
            )
        if stream != self.stream_id or len(parts) != self._partitions:
            raise CursorReset(
                "stream_changed",
                f"cursor of {stream[:60]!r} with {len(parts)} partitions; this is "
                f"{self.stream_id!r} with {self._partitions}: start over with after=0",
                self.stream_id,
            )
        position = tuple(int(x) for x in parts)
        for p, oldest in enumerate(self._oldest()):
            if oldest is not None and position[p] < oldest:
                raise CursorReset(
                    "cursor_expired",
                    f"partition {p}: offsets {position[p]}..{oldest - 1} are no longer kept "
                    "here: start over with after=0",
                    self.stream_id,
                )
        return position

    def recommendations(
        self, system: str | None = None, after: Any = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Oldest first: the latest ``limit`` (``after`` None) or the first ``limit`` not
        delivered before ``after`` (a record at or past its partition's offset)."""
        rows = self._feed()
        if after is not None:
            rows = [x for x in rows if x[1] >= len(after) or x[2] >= after[x[1]]]
        if system is not None:
            rows = [x for x in rows if x[3]["system"] == system]
        rows = rows[-limit:] if after is None else rows[:limit]
        return [{**r, "seq": None, "stream_id": self.stream_id, "cursor": c} for c, _, _, r in rows]

    def newer_than(self, position: Any) -> bool:
        with self._lock:
            tops = {p: kept[-1][1] for p, kept in self._recs.items() if kept}
        if position is None:
            return bool(tops)
        return any(p >= len(position) or top >= position[p] for p, top in tops.items())

    def position_of(self, row: dict[str, Any]) -> tuple[int, ...]:
        return tuple(int(x) for x in row["cursor"].rpartition(":")[2].split("."))

    def gap(self, position: Any, rows: list[dict[str, Any]]) -> str | None:
        if position is None:
            return None
        for p, oldest in enumerate(self._oldest()):
            if oldest is not None and p < len(position) and position[p] < oldest:
                return f"partition {p}: offsets {position[p]}..{oldest - 1} are gone"
        return None

    # -- ops --------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        rows = self._feed()
        return {
            "model_version": rows[-1][3].get("model_version") if rows else None,
            "entities": len(self._health),
            "watermark": max(
                (v.get("as_of_ms") or 0 for v in list(self._health.values())), default=None
            )
            or None,
        }

    def conditions(self) -> list[str]:
        """Upstream conditions the workers published on health.v1 (telemetry_lost...)."""
        with self._lock:
            found = {c for v in self._health.values() for c in v.get("conditions") or ()}
        return sorted(found)

    def readiness(self) -> list[str]:
        feed = self.feed
        reasons = []
        if feed.idle_s() is None:
            reasons.append("topic reader not started")
        elif not feed.worker_alive:
            reasons.append(f"topic reader dead: {feed.worker_error or 'stopped'}")
        elif not self.loaded:
            reasons.append("loading: not yet caught up with the topics")
        idle = feed.idle_s()
        if idle is not None and idle > feed.lost_after_s:
            reasons.append(
                f"stale: no record on {self.health_topic} or {self.recommendations_topic} "
                f"for {idle:.1f} s (limit {feed.lost_after_s:g} s)"
            )
        if feed.lag is not None and feed.lag > feed.max_lag:
            reasons.append(f"consumer lag {feed.lag} records > {feed.max_lag}")
        return reasons

    def status(self) -> dict[str, Any]:
        summaries = self._summaries()
        reasons = self.readiness()
        idle = self.feed.idle_s()
        return {
            "source": "kafka",
            "topics": [self.health_topic, self.recommendations_topic],
            "systems": len(summaries),
            "health": {v["system"]: v["health"] for v in summaries},
            "max_risk": {v["system"]: v["max_risk"] for v in summaries},
            "watermark": self.health()["watermark"],
            "counters": {"records": dict(self.counts)},
            "stream_id": self.stream_id,
            "ready": not reasons,
            "not_ready": reasons,
            "conditions": self.feed.conditions(),
            "upstream_conditions": self.conditions(),
            "input_idle_s": None if idle is None else round(idle, 3),
            "input_records": self.feed.records,
            "consumer_lag": self.feed.lag,
            "worker_alive": self.feed.worker_alive,
            "worker_error": self.feed.worker_error,
        }

    def score(self, events: list[Any], max_events: int) -> dict[str, Any]:
        raise NotImplementedError(
            "what-if scoring needs the engine, which runs in the stream workers, not in "
            "`precovery serve`: score against `precovery demo` or replay the events"
        )


class _Took:
    """A ``BatchReport``-shaped value: time spent decoding one poll."""

    def __init__(self, decode_s: float) -> None:
        self.decode_s = decode_s
