"""The live state shared by a stream worker and the API: one engine behind one lock.

The worker mutates the engine between batches; API handlers read views under the same
lock, so a reader never sees half a batch. Recommendations get a process-local
sequence number so ``GET /v1/recommendations?after=N`` and the server-sent event stream
can resume where a client left off.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import replace
from typing import Any

from predictor.engine import Engine, StepResult
from predictor.errors import PayloadTooLarge, ValidationError
from predictor.events import Reject, decode_telemetry
from predictor.risk import RiskModel


class LiveState:
    """Engine + lock + a bounded log of recommendations, for the API."""

    def __init__(self, engine: Engine, max_recent: int = 10_000) -> None:
        self.engine = engine
        self.lock = threading.Lock()
        self._cond = threading.Condition(self.lock)
        self._recent: deque[tuple[int, dict[str, Any]]] = deque(maxlen=max_recent)
        self._seq = 0
        self.batches = 0

    # -- called by the worker, with ``lock`` held by nobody -----------------------------
    def on_batch(self, _report: object, result: StepResult | None) -> None:
        if result is None:
            return
        with self._cond:
            self.batches += 1
            for rec in result.recommendations:
                self._seq += 1
                self._recent.append((self._seq, rec))
            if result.recommendations:
                self._cond.notify_all()

    def set_model(self, model: RiskModel | None) -> None:
        with self.lock:
            self.engine.set_model(model)

    # -- read side (the API) -----------------------------------------------------------
    def systems(self) -> list[dict[str, Any]]:
        with self.lock:
            return self.engine.systems_view()

    def system(self, name: str) -> dict[str, Any]:
        with self.lock:
            return self.engine.system_view(name)

    def recommendations(
        self, system: str | None = None, after: int = 0, limit: int = 100
    ) -> list[dict[str, Any]]:
        with self.lock:
            rows = [
                {"seq": seq, **rec}
                for seq, rec in self._recent
                if seq > after and (system is None or rec["system"] == system)
            ]
        return rows[-limit:] if after == 0 else rows[:limit]

    def wait_recommendations(self, after: int, timeout_s: float) -> list[dict[str, Any]]:
        """Block up to ``timeout_s`` for recommendations newer than ``after``."""
        with self._cond:
            if self._seq <= after:
                self._cond.wait(timeout_s)
            return [{"seq": s, **r} for s, r in self._recent if s > after]

    def status(self) -> dict[str, Any]:
        with self.lock:
            eng = self.engine
            return {
                "entities": eng.n_entities,
                "systems": len(eng.systems),
                "watermark": eng.watermark_ms,
                "model_version": eng.model_version,
                "horizon_s": eng.horizon_s,
                "counters": dict(eng.counters),
                "reject_reasons": dict(eng.reject_reasons),
                "batches": self.batches,
                "health": {v["system"]: v["health"] for v in eng.systems_view()},
                "state_bytes_per_entity": eng.nbytes_per_entity(),
            }

    def score(self, events: list[Any], max_events: int) -> dict[str, Any]:
        """Score a batch as a what-if on a copy of the live state; the live state is kept.

        Each event is scored against its entity's live history plus the events before it
        in the request, so scores of known entities are warm; unknown entities start
        fresh (and say so).
        """
        if len(events) > max_events:
            raise PayloadTooLarge("too_many_events", f"{len(events)} > {max_events} events")
        config = replace(self.engine.config, risk_cadence_s=0.0)  # a fresh risk per event
        batch = decode_telemetry(events, config.metric_names)
        if batch.rejects:
            raise _batch_error(batch.rejects)
        with self.lock:
            known = set(self.engine._slot)
            scratch = Engine.from_snapshot(self.engine.snapshot(), config, self.engine.model)
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


def _batch_error(rejects: list[Reject]) -> ValidationError:
    first = rejects[0]
    return ValidationError(
        first.reason,
        f"event {first.index}: {first.detail}" if first.detail else f"event {first.index}",
        [{"index": r.index, "reason": r.reason, "detail": r.detail} for r in rejects],
    )
