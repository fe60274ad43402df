"""Health reads as people expect on the simulated fleet: 100 = nothing unusual.

With no failures and no look-alikes injected (deploys and batch jobs are real, if benign,
evidence: they may cost a few points), every system's health stays at or above 90
after every 5 simulated minutes, with the shipped model and the default detector.
"""

from __future__ import annotations

import numpy as np

from pipelines.training.models import BASELINE_DIR, load_model
from predictor.engine import Engine, EngineConfig
from predictor.events import decode_telemetry
from predictor.sim import SimConfig, Simulator, telemetry_events


def test_calm_fleet_reads_healthy() -> None:
    model = load_model(BASELINE_DIR)
    sim = Simulator(SimConfig(seed=31, failures_per_day=0.0, benign_per_day=0.0))
    engine = Engine(EngineConfig(), model=model)
    names = engine.config.metric_names
    lows: list[float] = []
    for i, chunk in enumerate(sim.iter_chunks(4.0, chunk_s=300.0)):
        events = telemetry_events(chunk.telemetry)
        engine.process(decode_telemetry(events, names))
        if i >= 12:  # after the first hour of warm-up
            lows.append(float(np.min(engine.sys_health[: len(engine.systems)])))
    assert lows and min(lows) >= 90.0, lows
