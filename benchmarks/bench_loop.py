"""Full-loop throughput against river's per-event HalfSpaceTrees, from one run.

    .venv/bin/python benchmarks/bench_loop.py [--entities 10000] [--steps 24] [--repeats 3]

Both sides get the same simulated events (a fleet scaled to ~10,000 hosts, one event per
host per 10 s). Ours runs the whole loop from bytes: decode → features → detectors →
risk (LightGBM on its cadence) → health → decision, in micro-batches of 5,000, on one
thread. River runs ``MinMaxScaler | HalfSpaceTrees`` per entity, score then learn, one
event at a time, on already-decoded dicts (its most favourable setting). River's state
is ~1 MiB per entity, so it runs on a subset of the entities (``--river-entities``);
its per-event cost does not depend on how many entities there are, which the output
checks by timing two subset sizes.

Prints medians over ``--repeats`` runs (each side back to back in every repeat, the
ratio taken per repeat: a busy shared machine slows both alike); memory per tracked entity is
measured with tracemalloc (Python heap, numpy included). Two stages are also timed alone
in the same run, so the ratio can be read: JSON decoding (the loop's ceiling: no
detector makes the loop faster than its decoder) and the detector on decoded rows
(``--detector``, and for comparison ``--also``, default ``ewmaz``).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.models import BASELINE_DIR, load_model  # noqa: E402
from predictor.detectors import make_detector  # noqa: E402
from predictor.engine import Engine, EngineConfig  # noqa: E402
from predictor.events import decode_telemetry  # noqa: E402
from predictor.risk import RiskModel  # noqa: E402
from predictor.sim import SimConfig, Simulator, telemetry_events  # noqa: E402

BATCH = 5000


def make_events(entities: int, steps: int, seed: int) -> tuple[list[bytes], list[dict[str, Any]]]:
    """``steps`` intervals of telemetry for a fleet of about ``entities`` hosts."""
    copies = max(1, round(entities / 51))  # 17 components × 3 hosts per copy
    sim = Simulator(SimConfig(seed=seed, copies=copies, hosts_per_component=3))
    events: list[dict[str, Any]] = []
    hours = steps * sim.config.interval_s / 3600.0
    for chunk in sim.iter_chunks(hours, chunk_s=600.0):
        events.extend(telemetry_events(chunk.telemetry))
    return [orjson.dumps(e) for e in events], events


def run_ours(
    raw: list[bytes], model: RiskModel | None, detector: str = "surprise"
) -> tuple[float, Engine]:
    engine = Engine(EngineConfig(detector=detector), model=model)
    names = engine.config.metric_names
    t0 = time.perf_counter()
    for i in range(0, len(raw), BATCH):
        engine.process(decode_telemetry(raw[i : i + BATCH], names))
    return len(raw) / (time.perf_counter() - t0), engine


def run_decode(raw: list[bytes], names: tuple[str, ...]) -> float:
    """JSON decoding and validation alone, the loop's first stage: its ceiling."""
    t0 = time.perf_counter()
    for i in range(0, len(raw), BATCH):
        decode_telemetry(raw[i : i + BATCH], names)
    return len(raw) / (time.perf_counter() - t0)


def run_detector(events: list[dict[str, Any]], names: tuple[str, ...], detector: str) -> float:
    """The detector stage alone, on decoded rows, in the loop's micro-batches."""
    slots: dict[tuple[str, str, str], int] = {}
    keys = np.array(
        [slots.setdefault((e["system"], e["component"], e["host"]), len(slots)) for e in events]
    )
    x = np.array([[e["metrics"].get(m, np.nan) for m in names] for e in events])
    det = make_detector(detector, len(names), comparison=True)
    t0 = time.perf_counter()
    for i in range(0, len(keys), BATCH):
        det.score_learn_many(keys[i : i + BATCH], x[i : i + BATCH])
    return len(keys) / (time.perf_counter() - t0)


def river_model() -> Any:
    """river's own ``MinMaxScaler | HalfSpaceTrees`` at its defaults (the reference)."""
    from river import anomaly, preprocessing

    return preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=0)


def run_river(events: list[dict[str, Any]], names: tuple[str, ...]) -> float:
    keys: dict[tuple[str, str, str], int] = {}
    rows = []
    for e in events:
        k = (e["system"], e["component"], e["host"])
        slot = keys.setdefault(k, len(keys))
        rows.append((slot, [e["metrics"].get(m, np.nan) for m in names]))
    # HalfSpaceTrees builds its trees (10 × 2^8 nodes) on its first learn_one: set-up,
    # not per-event work, so every model learns one row before the clock starts.
    models = {}
    first: dict[int, list[float]] = {}
    for slot, row in rows:
        first.setdefault(slot, row)
    for slot, row in first.items():
        models[slot] = river_model()
        models[slot].learn_one(dict(enumerate(row)))
    t0 = time.perf_counter()
    for slot, row in rows:
        model = models[slot]
        x = dict(enumerate(row))
        model.score_one(x)
        model.learn_one(x)
    return len(rows) / (time.perf_counter() - t0)


def heap_per_entity(fn: Any, n_entities: int) -> float:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    keep = fn()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del keep
    return (after - before) / n_entities


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--entities", type=int, default=10_000)
    ap.add_argument("--steps", type=int, default=24, help="10-s intervals per host")
    ap.add_argument("--river-entities", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--detector", default="surprise", help="the loop's detector")
    ap.add_argument(
        "--also", default="ewmaz", help="comma-separated detectors timed alone for comparison"
    )
    args = ap.parse_args()

    model = load_model(BASELINE_DIR) if (BASELINE_DIR / "model.lgb").exists() else None
    print(f"generating events for ~{args.entities:,} hosts × {args.steps} intervals …", flush=True)
    raw, events = make_events(args.entities, args.steps, args.seed)
    n_hosts = len({(e["system"], e["component"], e["host"]) for e in events[: args.entities * 2]})
    print(
        f"{len(raw):,} events, {n_hosts:,} hosts, {np.mean([len(r) for r in raw]):.0f} B/event,"
        f" model {'loaded' if model else 'absent'}; pid {os.getpid()}"
    )

    names = EngineConfig().metric_names
    names_t = tuple(names)
    sub_hosts = sorted({(e["system"], e["component"], e["host"]) for e in events})[
        : args.river_entities
    ]
    wanted = set(sub_hosts)
    sub = [e for e in events if (e["system"], e["component"], e["host"]) in wanted]
    half = set(sub_hosts[: max(1, len(sub_hosts) // 4)])
    sub_small = [e for e in events if (e["system"], e["component"], e["host"]) in half]
    # Each repeat times every side back to back, so a busy shared machine slows both
    # alike; the ratio is taken within each repeat, then the median over repeats.
    also = [d for d in args.also.split(",") if d and d != args.detector]
    ours, river, decode, ratios = [], [], [], []
    stage: dict[str, list[float]] = {name: [] for name in [args.detector, *also]}
    for r in range(args.repeats):
        eps, engine = run_ours(raw, model, args.detector)
        r_eps = run_river(sub, names)
        ours.append(eps)
        river.append(r_eps)
        ratios.append(eps / r_eps)
        decode.append(run_decode(raw, names_t))
        for name in stage:
            stage[name].append(run_detector(events, names_t, name))
        print(
            f"  run {r + 1}: ours {eps:>10,.0f} events/s (risk rows scored "
            f"{engine.counters['risk_scored']:,}, recommendations "
            f"{engine.counters['recommendations']:,}); river {r_eps:>8,.0f} events/s on "
            f"{len(sub_hosts)} hosts: {eps / r_eps:.1f} ×",
            flush=True,
        )
    river_small = run_river(sub_small, names)
    print(
        f"  river  on {len(half)} hosts: {river_small:,.0f} events/s "
        "(per-event cost independent of host count)"
    )

    ours_mem = heap_per_entity(
        lambda: run_ours(raw[: n_hosts * 2], model, args.detector)[1], n_hosts
    )
    det_bytes = make_detector(args.detector, len(names_t))
    det_bytes.score_learn_many(np.zeros(30, dtype=np.int64), np.ones((30, len(names_t))))

    def river_state() -> Any:
        models: dict[int, Any] = {}
        for e in sub_small[:5000]:
            m = models.setdefault(hash(e["host"]) % 50, river_model())
            m.learn_one({j: e["metrics"].get(k, np.nan) for j, k in enumerate(names)})
        return models

    river_mem = heap_per_entity(river_state, 50)
    med_ours, med_river = statistics.median(ours), statistics.median(river)
    decode_eps = statistics.median(decode)
    print()
    print(f"full loop (ours), median of {args.repeats}: {med_ours:>12,.0f} events/s")
    print(f"  with the detector:                       {args.detector:>12}")
    print(f"river HalfSpaceTrees per-event, median:    {med_river:>12,.0f} events/s")
    print(f"ratio ours / river, median of the repeats' ratios: {statistics.median(ratios):>6.1f} ×")
    print(
        f"  decode alone (JSON → arrays):            {decode_eps:>12,.0f} events/s "
        f"({decode_eps / med_river:.1f} × river: the loop's ceiling)"
    )
    for name, runs in stage.items():
        eps = statistics.median(runs)
        print(
            f"  detector {name!r} alone:{'':<{max(0, 19 - len(name))}}{eps:>12,.0f} events/s "
            f"({eps / med_river:.1f} × river)"
        )
    print(
        f"detector state per entity ({args.detector}):   "
        f"{det_bytes.nbytes_per_entity():>12,.0f} B (arrays, 15 metrics)"
    )
    print(f"memory per tracked entity, ours:           {ours_mem / 1024:>12.1f} KiB")
    print(f"memory per tracked entity, river HST:      {river_mem / 1024:>12.1f} KiB")
    print(f"memory ratio river / ours:                 {river_mem / ours_mem:>12.0f} ×")


if __name__ == "__main__":
    main()
