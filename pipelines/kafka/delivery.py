"""``precovery deliver``: recommendations.v1 pushed to the orchestrator from Kafka.

On Kafka the topic itself is the outbox. A consumer group (``precovery-delivery``) reads
recommendations.v1 — keyed by system, so each partition holds whole systems in order —
and POSTs each record to the orchestrator exactly like the embedded pusher
(:func:`pipelines.outbound.orchestrator.push_one`: idempotency key, fencing epoch, signature). A
partition's offset is committed only once its record is settled (delivered, a duplicate,
or refused for good), and its next record waits until then: delivery is in order per
system, and nothing is lost while the orchestrator is down, the deliverer restarts, or a
partition moves to another member (it resumes from the committed offset; a record
delivered but not yet committed is sent again and the orchestrator answers
``duplicate``).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter, deque
from typing import Any

import httpx

from pipelines.kafka.client_python import GuardedListener, TopicPartition, group_consumer
from pipelines.outbound.orchestrator import DeliveryConfig, backoff_s, push_one
from pipelines.records.audit import AuditLog

logger = logging.getLogger(__name__)


class KafkaDeliverer:
    """One member of the delivery group."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        config: DeliveryConfig,
        group_id: str = "precovery-delivery",
        session_timeout_ms: int = 10_000,
        transport: httpx.BaseTransport | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        #: Where every attempt and its outcome is recorded (docs/audit.md); None: nowhere.
        self.audit = audit
        self.topic = topic
        self.config = config
        self.group_id = group_id
        self.session_timeout_ms = session_timeout_ms
        self._http = httpx.Client(timeout=config.timeout_s, transport=transport)
        self._rng = random.Random()
        self._stop = threading.Event()
        self.pending: dict[int, deque[Any]] = {}
        self._next_at: dict[int, float] = {}
        self._attempts: dict[int, int] = {}
        self.counts: Counter[str] = Counter()
        self.consumer: Any = None
        self.listener_error: Exception | None = None
        self._to_seek: set[int] = set()

    def stop(self) -> None:
        self._stop.set()

    # rebalance callbacks (GuardedListener calls these)
    def on_assigned(self, assigned: list[Any]) -> None:
        for tp in assigned:
            self.pending[tp.partition] = deque()
            self._to_seek.add(tp.partition)

    def on_revoked(self, revoked: list[Any]) -> None:
        for tp in revoked:  # the next owner reads them again from the committed offset
            self.pending.pop(tp.partition, None)
            self._to_seek.discard(tp.partition)
            self._next_at.pop(tp.partition, None)
            self._attempts.pop(tp.partition, None)

    on_lost = on_revoked

    def run(self, idle_exit_s: float | None = None) -> None:
        """Deliver until :meth:`stop` (or, with ``idle_exit_s``, once idle that long)."""
        self.consumer = group_consumer(
            self.bootstrap,
            self.group_id,
            [self.topic],
            GuardedListener(self),
            session_timeout_ms=self.session_timeout_ms,
            client_id="precovery-deliver",
        )
        idle_since = time.monotonic()
        try:
            while not self._stop.is_set():
                polled = self.consumer.poll(timeout_ms=100, max_records=500)
                fresh = self._seek_assigned()
                for tp, recs in polled.items():
                    if tp.partition in fresh or tp.partition not in self.pending:
                        continue  # fetched before the seek: read again from the commit
                    self.pending[tp.partition].extend(recs)
                worked = self._deliver_heads()
                busy = bool(polled) or any(self.pending.values())
                if busy or worked:
                    idle_since = time.monotonic()
                elif idle_exit_s is not None and time.monotonic() - idle_since >= idle_exit_s:
                    break
                self._flow_control()
        finally:
            self.consumer.close()
            self._http.close()

    def _seek_assigned(self) -> set[int]:
        """Seek newly assigned partitions to their committed offset (else the start).

        Done after ``poll`` returns, not in the rebalance callback (blocking calls there
        stall the client); what that poll returned for them is dropped and read again.
        """
        todo, self._to_seek = self._to_seek, set()
        for p in sorted(todo):
            tp = TopicPartition(self.topic, p)
            off = self.consumer.committed(tp)
            if off is None:
                off = self.consumer.beginning_offsets([tp])[tp]
            self.consumer.seek(tp, off)
            self.pending[p] = deque()
        return todo

    def _deliver_heads(self) -> int:
        done = 0
        now = time.monotonic()
        for p, queue in list(self.pending.items()):
            while queue and now >= self._next_at.get(p, 0.0):
                rec = queue[0]
                key = dict(rec.headers or []).get("idempotency-key", b"").decode()
                epoch = _epoch_of(rec.value)
                self.counts["attempts"] += 1
                outcome, detail = push_one(self._http, self.config, key, epoch, rec.value)
                if self.audit is not None:
                    system = rec.key.decode(errors="replace") if rec.key else ""
                    n = self._attempts.get(p, 0) + 1
                    self.audit.delivery(key, system, epoch, n, outcome, detail)
                if outcome == "retry":
                    n = self._attempts.get(p, 0)
                    self._attempts[p] = n + 1
                    self._next_at[p] = now + backoff_s(self.config, n, self._rng)
                    self.counts["failures"] += 1
                    logger.info("delivery of %s failed (%s): partition %d waits", key, detail, p)
                    break
                if self._attempts.pop(p, 0):
                    self.counts["retried_then_settled"] += 1
                self.counts[outcome] += 1
                queue.popleft()
                self._commit(p, rec.offset + 1)
                done += 1
        return done

    def _commit(self, partition: int, offset: int) -> None:
        from kafka.structs import OffsetAndMetadata

        tp = TopicPartition(self.topic, partition)
        try:
            self.consumer.commit({tp: OffsetAndMetadata(offset, "", -1)})
        except Exception as exc:  # a rebalance in flight: the next owner re-sends (dedup)
            logger.warning("commit of %s@%d failed: %r", tp, offset, exc)

    def _flow_control(self) -> None:
        for p, queue in self.pending.items():
            tp = TopicPartition(self.topic, p)
            if len(queue) > 5_000:
                self.consumer.pause(tp)
            elif len(queue) < 1_000:
                self.consumer.resume(tp)


def _epoch_of(value: bytes) -> int:
    import orjson

    try:
        return int(orjson.loads(value)["epoch"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return 0
