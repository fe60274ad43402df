"""A real server on a free port and a stream worker that keeps feeding it.

Used by the chaos tests and by ``benchmarks/bench_api.py``: uvicorn serves the app on
127.0.0.1 from its own event loop in a background thread (so the tests can count that
loop's tasks), and a :class:`FedWorker` runs a :class:`~pipelines.embedded.stream.StreamWorker`
over an in-memory source that it tops up with steady telemetry, reporting to the live
state's :class:`~pipelines.embedded.feed.FeedMonitor` as the production worker does.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import numpy as np
import orjson
import psutil
import uvicorn

from pipelines.embedded.live import LiveState
from pipelines.embedded.memory import MemorySink, MemorySource
from pipelines.embedded.stream import StreamWorker, Topics


class ServerThread:
    """uvicorn on 127.0.0.1:<free port>, in a thread with its own event loop."""

    def __init__(self, app: Any, **config: Any) -> None:
        self.loop = asyncio.new_event_loop()
        cfg = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="warning", lifespan="off", **config
        )
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(target=self._run, name="uvicorn", daemon=True)
        self.port = 0

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.serve())

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 20.0
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        self.port = int(self.server.servers[0].sockets[0].getsockname()[1])
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def tasks(self) -> int:
        """asyncio tasks alive on the server's loop (one per open request, and a few)."""

        async def count() -> int:
            return len(asyncio.all_tasks())

        return asyncio.run_coroutine_threadsafe(count(), self.loop).result(timeout=10)

    def connections(self) -> int:
        """Established TCP connections on the server's port, server side."""
        return sum(
            1
            for c in psutil.Process().net_connections(kind="tcp")
            if c.laddr and c.laddr.port == self.port and c.status == psutil.CONN_ESTABLISHED
        )


class FedWorker:
    """A stream worker thread fed with steady telemetry for ``live``'s known hosts.

    Every ``period_s`` it appends ``steps`` event-time steps (one event per host each,
    ``interval_ms`` apart) and runs the worker on them, holding ``live.lock`` as the
    production worker does; ``live.feed`` hears of every poll.
    """

    def __init__(
        self, live: LiveState, period_s: float = 0.05, steps: int = 1, interval_ms: int = 10_000
    ) -> None:
        self.live = live
        self.period_s = period_s
        self.steps = steps
        self.interval_ms = interval_ms
        self.source = MemorySource(retain=False)
        self.sink = MemorySink(max_per_topic=100)
        self.topics = Topics()
        self.keys = list(live.engine.registry.keys)
        self.metric_names = live.engine.config.metric_names
        wm = live.engine.watermark_ms or 1_767_571_200_000
        self.next_ms = (wm // interval_ms + 1) * interval_ms
        self.rng = np.random.default_rng(0)
        self.batches = 0
        self.events = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="stream-worker", daemon=True)
        self.worker = StreamWorker(
            live.engine, self.source, self.sink, self.topics, lock=live.lock, on_batch=self._done
        )

    def _done(self, report: Any, result: Any) -> None:
        self.live.feed.note(report.records)
        self.live.on_batch(report, result)

    def _step(self) -> list[bytes]:
        out = []
        base = self.rng.normal(40.0, 2.0, size=(len(self.keys), len(self.metric_names)))
        for (system, component, host), row in zip(self.keys, base.tolist(), strict=True):
            metrics = dict(zip(self.metric_names, row, strict=True))
            out.append(
                orjson.dumps(
                    {
                        "ts": self.next_ms,
                        "system": system,
                        "component": component,
                        "host": host,
                        "metrics": metrics,
                    }
                )
            )
        self.next_ms += self.interval_ms
        return out

    def _run(self) -> None:
        self.live.feed.worker_started()
        error: BaseException | None = None
        try:
            while not self._stop.is_set():
                t0 = time.monotonic()
                for _ in range(self.steps):
                    records = self._step()
                    self.source.extend(self.topics.telemetry, records)
                    self.events += len(records)
                while self.source.pending():
                    self.worker.run_once(0.0)
                    self.batches += 1
                self._stop.wait(max(0.0, self.period_s - (time.monotonic() - t0)))
        except BaseException as exc:  # noqa: BLE001 - reported to the feed, as in production
            error = exc
            raise
        finally:
            self.live.feed.worker_stopped(error)

    def __enter__(self) -> FedWorker:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.thread.join(timeout=15)
