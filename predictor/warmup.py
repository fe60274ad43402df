"""Load the engine's compiled kernels before the first event (:mod:`predictor.jit`).

A process's first call of each numba kernel loads its machine code from the cache (or
compiles it after an install or a change): about a second in all, which would otherwise
land inside the first tick a worker scores, as a latency spike on its first records.
:func:`warm_up` pays it up front, at start-up, on a throwaway engine: one synthetic
entity, past the detector's warm-up, across several ticks, so every kernel the stream
calls (features, detector with its fold, PCA refit and calibration refresh, drift, the
risk model's trees, health) runs once with the argument types it will see in production.
"""

from __future__ import annotations

import numpy as np

from predictor.engine import Engine
from predictor.events import TelemetryBatch

#: Synthetic rows, one every ``STEP_MS``: past the detector's warm-up (20 rows), its
#: first refit and calibration refreshes, and a few risk cadences.
ROWS, STEP_MS = 48, 10_000
START_MS = 1_767_571_200_000  # 2026-01-05T00:00:00Z


def warm_up(engine: Engine) -> Engine:
    """Run synthetic rows through ``engine`` (a fresh one, discarded afterwards: its
    state is changed) so every compiled kernel is loaded now; returns it."""
    f = len(engine.config.metric_names)
    i = np.arange(ROWS, dtype=np.float64)[:, None]
    j = np.arange(1, f + 1, dtype=np.float64)[None, :]
    x = 10.0 * j + np.sin(i * j)  # varied, deterministic readings
    x[ROWS // 2, :] *= 50.0  # one outlier: the detectors' tail branches run too
    key = ("precovery-warm-up", "warm-up", "warm-up")
    batch = TelemetryBatch(
        keys=[key] * ROWS,
        ts_ms=START_MS + STEP_MS * np.arange(ROWS, dtype=np.int64),
        x=x,
        index=np.arange(ROWS, dtype=np.int64),
    )
    engine.process(batch)
    engine.flush()
    return engine
