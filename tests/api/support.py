"""A live state fed by a short simulated stream, for the API and chaos tests.

A helper module, not a conftest: a second ``conftest.py`` basename under ``tests/`` clashes
with the others when ``--doctest-modules`` collects them together.
"""

from __future__ import annotations

from typing import Any

import orjson

from pipelines.embedded.live import LiveState
from pipelines.embedded.memory import MemorySink, MemorySource
from pipelines.embedded.stream import StreamWorker, Topics
from predictor.engine import Engine, EngineConfig
from predictor.risk import RiskModel
from tests.factories import SimStream


def build_live(
    stream: SimStream, model: RiskModel | None, max_batch: int = 5000, **live: Any
) -> LiveState:
    """Run ``stream`` (plus one broken message) through a worker into a new live state
    (``live``: LiveState options)."""
    engine = Engine(
        EngineConfig(),
        model=model,
        critical=stream.critical,
        system_venue=stream.sim.fleet.system_venue,
    )
    state = LiveState(engine, **live)
    source, sink = MemorySource(), MemorySink()
    topics = Topics()
    for m in stream.market:
        source.append(topics.market, orjson.dumps(m), m["venue"].encode())
    for p in stream.positions:
        source.append(topics.positions, orjson.dumps(p), p["system"].encode())
    source.extend(topics.telemetry, [orjson.dumps(e) for e in stream.events])
    source.append(topics.telemetry, b"{broken")
    worker = StreamWorker(
        engine, source, sink, max_batch=max_batch, lock=state.lock, on_batch=state.on_batch
    )
    worker.run(poll_timeout_s=0.0, idle_exit=True)
    assert state.recommendations(limit=1000), "the stream should have recommended something"
    return state
