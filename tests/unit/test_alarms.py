"""Alarm episodes, and one threshold giving about the same false alarms on any entity."""

from __future__ import annotations

import numpy as np

from predictor.detectors import make_detector
from predictor.detectors.alarms import episodes
from predictor.detectors.calibration import bits_for_rate, bits_from_score

ROWS_PER_DAY = 8640.0  # one event per 10 s
N = 9000


def test_one_incident_is_one_alarm() -> None:
    flapping = np.zeros(100, dtype=bool)
    flapping[[40, 41, 43, 46, 47, 48, 50]] = True  # crossing and recrossing the threshold
    assert episodes(flapping).tolist() == [[40, 51]]
    assert episodes(np.zeros(5, dtype=bool)).shape == (0, 2)


def _entities(rng: np.random.Generator) -> dict[str, np.ndarray]:
    t = np.arange(N)
    g = rng.standard_normal((N, 3))
    day = np.sin(2 * np.pi * t / ROWS_PER_DAY)[:, None]
    return {
        "constant": np.full((N, 3), 42.0),
        "heavy_tailed": 100.0 + rng.standard_t(2, size=(N, 3)),
        "seasonal": 50.0 + 20.0 * day + g,
        "trending": 10.0 + 1e-3 * t[:, None] + g,
        "tiny": 1e-3 * (3.0 + 0.1 * g),
        "huge": 1e9 * (3.0 + 0.1 * g),
        "stuck_then_noisy": np.where(t[:, None] < N // 2, 7.0, 7.0 + g),
        "with_gaps": np.where(rng.random((N, 3)) < 0.1, np.nan, 5.0 + g),
    }


def test_one_setting_few_false_alarms_everywhere() -> None:
    """No anomalies injected: every alarm is false. One threshold (1 per entity-day)."""
    rng = np.random.default_rng(0)
    ents = _entities(rng)
    keys = np.tile(np.arange(len(ents)), N)
    x = np.stack(list(ents.values()), axis=1).reshape(-1, 3)  # interleaved, row by row
    s = make_detector("surprise", 3).score_learn_many(keys, x)
    thr = bits_for_rate(ROWS_PER_DAY, 1.0)
    days = N / ROWS_PER_DAY
    rates = {}
    for j, name in enumerate(ents):
        mine = bits_from_score(s[keys == j])[500:]  # after a short warm-up
        rates[name] = len(episodes(mine >= thr)) / days
    seasonal = rates.pop("seasonal")
    assert all(r <= 5.0 for r in rates.values()), rates
    # Known limit: no time-of-day profile yet, so a strong daily cycle (20 sd peak to
    # trough) reads as drift a few times a day; bounded, not flooding.
    assert seasonal <= 10.0, seasonal
    # Not silent by construction either: noisy entities do raise the odd false alarm.
    assert sum(rates.values()) > 0, rates
