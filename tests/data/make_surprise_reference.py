"""Record the Surprise detector's outputs as the numpy implementation computed them.

Run once (``.venv/bin/python tests/data/make_surprise_reference.py``) with the numpy
code the compiled kernel replaced (commit 6ffb1c2); ``tests/unit/test_surprise_kernel.py``
pins the kernel to the file it wrote, ``surprise_reference.npz``. The inputs are
regenerated from the seeds here, so the file holds outputs and final state only.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from predictor.detectors.surprise import Surprise  # noqa: E402

OUT = Path(__file__).with_name("surprise_reference.npz")
STATE = ("count_", "mean_", "var_", "slow_var_", "cov_", "proj_", "resid_", "nbuf_")


def synthetic(seed: int = 5, entities: int = 7, rows: int = 6000, f: int = 6):
    """Interleaved entities (repeats within a call), NaNs, a stuck metric that moves,
    a sparse counter, heavy tails, spikes and a correlation break; call sizes vary."""
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, entities, rows)
    base = rng.normal(size=(rows, f))
    base[:, 1] = base[:, 0] * 0.9 + 0.1 * base[:, 1]  # correlated pair
    base[:, 2] = 5.0  # stuck ...
    base[rows // 2 :, 2] = 5.0 + rng.normal(0, 0.01, rows - rows // 2)  # ... then moves
    base[:, 3] = (rng.random(rows) < 0.02) * rng.integers(1, 4, rows)  # sparse counter
    base[:, 4] = rng.standard_t(2, rows) * 1e6  # heavy tail, big scale
    base[:, 5] = rng.normal(1e-3, 1e-5, rows)  # tiny scale
    nan = rng.random((rows, f)) < 0.03
    base[nan] = np.nan
    base[rng.random(rows) < 0.002, 0] = np.inf
    spikes = rng.random(rows) < 0.003
    base[spikes, 0] += 30.0
    brk = slice(4 * rows // 5, 4 * rows // 5 + 200)
    base[brk, 1] = -base[brk, 0]  # correlation break
    sizes = rng.integers(1, 400, rows)
    cuts = np.cumsum(sizes)
    cuts = cuts[cuts < rows]
    return keys, base, cuts


def fleet(hours: float = 2.0):
    from predictor.sim import SimConfig, Simulator, telemetry_events

    sim = Simulator(SimConfig(seed=11, copies=1))
    events = []
    for chunk in sim.iter_chunks(hours, chunk_s=600.0):
        events.extend(telemetry_events(chunk.telemetry))
    names = sorted({k for e in events for k in e.get("metrics", {})})
    index: dict[tuple[str, str, str], int] = {}
    keys = np.array(
        [index.setdefault((e["system"], e["component"], e["host"]), len(index)) for e in events]
    )
    x = np.array([[e["metrics"].get(n, np.nan) for n in names] for e in events], dtype=float)
    cuts = np.arange(120, len(keys), 120)
    return keys, x, cuts


#: Per case, the detector's settings: short cadences on the synthetic rows (many refits,
#: folds and refreshes), the engine's defaults on the fleet.
PARAMS = {"syn": {"refit_every": 32, "calib_every": 16}, "fleet": {}}


def run(
    keys: np.ndarray, x: np.ndarray, cuts: np.ndarray, **params: int
) -> tuple[np.ndarray, Surprise]:
    det = Surprise(n_features=x.shape[1], **params)
    parts = zip(np.split(keys, cuts), np.split(x, cuts), strict=True)
    out = [det.bits_learn_many(k, v) for k, v in parts]
    return np.concatenate(out), det


def main() -> None:
    arrays: dict[str, np.ndarray] = {}
    for name, (keys, x, cuts) in (("syn", synthetic()), ("fleet", fleet())):
        bits, det = run(keys, x, cuts, **PARAMS[name])
        arrays[f"{name}_bits"] = bits
        for k in STATE:
            arrays[f"{name}_{k}"] = getattr(det, k)
        arrays[f"{name}_gbuf_"] = det.gbuf_
        for prefix, tab in (("mcal_", det._mtab), ("rcal_", det._rtab)):
            for k, v in tab.snapshot().items():
                arrays[f"{name}_{prefix}{k}"] = v
    np.savez_compressed(OUT, **arrays)
    print(OUT, OUT.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
