"""Full-loop throughput against river's per-event HalfSpaceTrees, from one run.

    .venv/bin/python benchmarks/bench_loop.py [--entities 5000] [--warm-steps 260]
                                              [--steps 64] [--repeats 3]

Both sides get the same simulated events (a fleet scaled to ~5,000 hosts, one event per
host per 10 s) and are measured in the **steady state** a stream spends its life in:
first ``--warm-steps`` intervals go through untimed (ours: every host registered, the
detector past its 20-row warm-up and its calibration on its regular cadence; river:
every model has scored and learnt those rows, past HalfSpaceTrees' first 250-row window:
until that window is full its ``score_one`` returns 0 without walking a tree, so a
bench timed inside it flatters river by ~2×), then the next ``--steps`` intervals
are timed, from a copy of the warmed state in every repeat. 64 timed intervals hold one
PCA refit, four covariance folds and two calibration rebuilds per host, so their cost is
in the figure. The cold start (the first ``--steps`` intervals from an empty engine,
registering every host, detector in warm-up) is printed too.

Ours runs the whole loop from bytes: decode → features → detectors → drift → risk
(LightGBM on its cadence) → health → decision, in micro-batches of 5,000, on one
thread. River runs ``MinMaxScaler | HalfSpaceTrees`` per entity, score then learn, one
event at a time, on already-decoded dicts (its most favourable setting). River's state
is ~0.7 MiB per entity, so it runs on a subset of the entities (``--river-entities``);
the output also times a quarter of that subset, to show whether its per-event cost moves
with the number of models.

Prints medians over ``--repeats`` runs (each side back to back in every repeat, the
ratio taken per repeat: a busy shared machine slows both alike); memory per tracked
entity is measured with tracemalloc (Python heap, numpy included). Two stages are also
timed alone in the same run, so the ratio can be read: JSON decoding (the loop's
ceiling: no detector makes the loop faster than its decoder) and the detector on
decoded rows from the warmed state (``--detector``, and for comparison ``--also``,
default ``ewmaz``).
"""

from __future__ import annotations

import argparse
import copy
import gc
import os
import pickle
import statistics
import sys
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.training.models import BASELINE_DIR, load_model  # noqa: E402
from predictor.detectors import make_detector  # noqa: E402
from predictor.engine import Engine, EngineConfig  # noqa: E402
from predictor.events import decode_telemetry  # noqa: E402
from predictor.risk import RiskModel  # noqa: E402
from predictor.sim import SimConfig, Simulator, telemetry_events  # noqa: E402

BATCH = 5000
INTERVAL_S = 10.0

Key = tuple[str, str, str]


def key_of(e: dict[str, Any]) -> Key:
    return (e["system"], e["component"], e["host"])


def iter_steps(entities: int, steps: int, seed: int) -> Iterator[list[dict[str, Any]]]:
    """``steps`` intervals of telemetry for a fleet of about ``entities`` hosts, in chunks
    of whole intervals (time order)."""
    copies = max(1, round(entities / 51))  # 17 components × 3 hosts per copy
    sim = Simulator(SimConfig(seed=seed, copies=copies, hosts_per_component=3))
    hours = steps * sim.config.interval_s / 3600.0
    for chunk in sim.iter_chunks(hours, chunk_s=600.0):
        yield telemetry_events(chunk.telemetry)


def new_engine(model: RiskModel | None, detector: str) -> Engine:
    return Engine(EngineConfig(detector=detector), model=model)


def feed(engine: Engine, raw: list[bytes]) -> None:
    names = engine.config.metric_names
    for i in range(0, len(raw), BATCH):
        engine.process(decode_telemetry(raw[i : i + BATCH], names))


def run_ours(engine: Engine, raw: list[bytes]) -> float:
    """Events/s of the whole loop on ``raw`` from ``engine``'s state (which it changes)."""
    names = engine.config.metric_names
    t0 = time.perf_counter()
    for i in range(0, len(raw), BATCH):
        engine.process(decode_telemetry(raw[i : i + BATCH], names))
    return len(raw) / (time.perf_counter() - t0)


def run_decode(raw: list[bytes], names: tuple[str, ...]) -> float:
    """JSON decoding and validation alone, the loop's first stage: its ceiling."""
    t0 = time.perf_counter()
    for i in range(0, len(raw), BATCH):
        decode_telemetry(raw[i : i + BATCH], names)
    return len(raw) / (time.perf_counter() - t0)


def run_detector(det: Any, keys: np.ndarray, x: np.ndarray) -> float:
    """The detector stage alone, on decoded rows, in the loop's micro-batches."""
    t0 = time.perf_counter()
    for i in range(0, len(keys), BATCH):
        det.score_learn_many(keys[i : i + BATCH], x[i : i + BATCH])
    return len(keys) / (time.perf_counter() - t0)


def river_model() -> Any:
    """river's own ``MinMaxScaler | HalfSpaceTrees`` at its defaults (the reference)."""
    from river import anomaly, preprocessing

    return preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=0)


def river_rows(events: list[dict[str, Any]], names: tuple[str, ...], slots: dict[Key, int]):
    return [
        (slots.setdefault(key_of(e), len(slots)), [e["metrics"].get(m, np.nan) for m in names])
        for e in events
    ]


def warm_river(rows: list[tuple[int, list[float]]]) -> dict[int, Any]:
    """One model per entity that has scored and learnt ``rows`` (untimed)."""
    models: dict[int, Any] = {}
    for slot, row in rows:
        model = models.get(slot)
        if model is None:
            model = models[slot] = river_model()
        x = dict(enumerate(row))
        model.score_one(x)
        model.learn_one(x)
    return models


def run_river(models: dict[int, Any], rows: list[tuple[int, list[float]]]) -> float:
    """Events/s of river per event on ``rows`` from ``models``' state (which it changes)."""
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
    ap.add_argument("--entities", type=int, default=5_000)
    ap.add_argument(
        "--warm-steps", type=int, default=260, help="10-s intervals per host seen untimed first"
    )
    ap.add_argument("--steps", type=int, default=64, help="10-s intervals per host timed")
    ap.add_argument("--river-entities", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--detector", default="surprise", help="the loop's detector")
    ap.add_argument(
        "--also", default="ewmaz", help="comma-separated detectors timed alone for comparison"
    )
    args = ap.parse_args()
    if args.steps < 1 or args.warm_steps < 0:
        ap.error("--steps must be at least 1 and --warm-steps at least 0")

    model = load_model(BASELINE_DIR) if (BASELINE_DIR / "model.lgb").exists() else None
    names = tuple(EngineConfig().metric_names)
    also = [d for d in args.also.split(",") if d and d != args.detector]
    total = args.warm_steps + args.steps
    print(
        f"~{args.entities:,} hosts × {total} intervals of 10 s ({args.warm_steps} warm-up, "
        f"{args.steps} timed); model {'loaded' if model else 'absent'}; pid {os.getpid()}",
        flush=True,
    )
    # The warm-up streams through one engine and one detector per compared kind (its
    # bytes are not kept); river's subset keeps its rows. Then the timed intervals.
    engine = new_engine(model, args.detector)
    dets = {
        name: make_detector(name, len(names), comparison=True) for name in [args.detector, *also]
    }
    t_end_warm: int | None = None
    cold: list[bytes] = []
    raw: list[bytes] = []
    timed: list[dict[str, Any]] = []
    river_hosts: set[Key] | None = None
    river_slots: dict[Key, int] = {}
    river_warm: list[dict[str, Any]] = []
    river_timed: list[dict[str, Any]] = []
    seen = 0
    t_gen = time.perf_counter()
    for events in iter_steps(args.entities, total, args.seed):
        if t_end_warm is None:
            t_end_warm = events[0]["ts"] + int(args.warm_steps * INTERVAL_S * 1000)
        if river_hosts is None:
            river_hosts = set(sorted({key_of(e) for e in events})[: args.river_entities])
        warm_part = [e for e in events if e["ts"] < t_end_warm]
        timed_part = [e for e in events if e["ts"] >= t_end_warm]
        warm_raw = [orjson.dumps(e) for e in warm_part]
        if len(cold) < args.entities * args.steps:
            cold.extend(warm_raw[: args.entities * args.steps - len(cold)])
        feed(engine, warm_raw)
        if warm_part:
            slots, _ = engine._slots_for([key_of(e) for e in warm_part])
            x = np.array([[e["metrics"].get(m, np.nan) for m in names] for e in warm_part])
            for i in range(0, len(slots), BATCH):
                for det in dets.values():
                    det.score_learn_many(slots[i : i + BATCH], x[i : i + BATCH])
        river_warm += [e for e in warm_part if key_of(e) in river_hosts]
        river_timed += [e for e in timed_part if key_of(e) in river_hosts]
        raw += [orjson.dumps(e) for e in timed_part]
        timed += timed_part
        seen += len(events)
        print(
            f"  … {seen:,} events generated and warmed ({time.perf_counter() - t_gen:.0f} s)",
            flush=True,
        )
    n_hosts = engine.n_entities
    print(
        f"{len(raw):,} events timed after {seen - len(raw):,} warm-up events, {n_hosts:,} "
        f"hosts, {np.mean([len(r) for r in raw]):.0f} B/event",
        flush=True,
    )
    keys = np.array([engine.registry.slot[key_of(e)] for e in timed], dtype=np.int64)
    x_timed = np.array([[e["metrics"].get(m, np.nan) for m in names] for e in timed])
    rows_warm = river_rows(river_warm, names, river_slots)
    rows_timed = river_rows(river_timed, names, river_slots)
    models_warm = warm_river(rows_warm)
    quarter = set(range(max(1, len(river_slots) // 4)))
    rows_quarter = [(s, r) for s, r in rows_timed if s in quarter]
    # Copies of the warmed state, one per repeat, made before the clocks start. The
    # bench's own objects (events, copies) are frozen, so the cyclic collector does not
    # walk them again and again during either side's timed run (a bench artefact).
    # (river's models travel through one pickle: far cheaper than a deep copy of trees.)
    river_pickle = pickle.dumps(models_warm, protocol=pickle.HIGHEST_PROTOCOL)
    del models_warm
    states = [
        (copy.deepcopy(engine, {id(model): model}), pickle.loads(river_pickle))
        for _ in range(args.repeats)
    ]
    det_states = [{n: copy.deepcopy(d) for n, d in dets.items()} for _ in range(args.repeats)]
    small_models = {s: m for s, m in pickle.loads(river_pickle).items() if s in quarter}
    del river_pickle
    gc.collect()
    gc.freeze()
    # Each repeat times every side back to back, so a busy shared machine slows both
    # alike; the ratio is taken within each repeat, then the median over repeats.
    ours, river, decode, ratios = [], [], [], []
    stage: dict[str, list[float]] = {name: [] for name in dets}
    for r in range(args.repeats):
        eng, models = states[r]
        before = eng.counters["risk_scored"], eng.counters["recommendations"]
        eps = run_ours(eng, raw)
        r_eps = run_river(models, rows_timed)
        ours.append(eps)
        river.append(r_eps)
        ratios.append(eps / r_eps)
        decode.append(run_decode(raw, names))
        for name in stage:
            stage[name].append(run_detector(det_states[r][name], keys, x_timed))
        print(
            f"  run {r + 1}: ours {eps:>10,.0f} events/s (risk rows scored "
            f"{eng.counters['risk_scored'] - before[0]:,}, recommendations "
            f"{eng.counters['recommendations'] - before[1]:,}); river {r_eps:>8,.0f} events/s "
            f"on {len(river_slots)} hosts: {eps / r_eps:.1f} ×",
            flush=True,
        )
        states[r] = None  # type: ignore[call-overload]
    cold_eps = run_ours(new_engine(model, args.detector), cold)
    river_small = run_river(small_models, rows_quarter)
    gc.unfreeze()

    def fresh_state() -> Engine:
        fresh = new_engine(model, args.detector)
        feed(fresh, cold[: n_hosts * 2])
        return fresh

    ours_mem = heap_per_entity(fresh_state, n_hosts)
    det_bytes = make_detector(args.detector, len(names))
    det_bytes.score_learn_many(np.zeros(30, dtype=np.int64), np.ones((30, len(names))))
    river_mem = heap_per_entity(lambda: warm_river(rows_warm[:5000]), len(river_slots))
    med_ours, med_river = statistics.median(ours), statistics.median(river)
    decode_eps = statistics.median(decode)
    print(
        f"  river on {len(quarter)} hosts: {river_small:,.0f} events/s (its per-event cost "
        f"with a quarter of the models, for comparison with {len(river_slots)})"
    )
    print()
    print(f"full loop (ours), steady state, median of {args.repeats}: {med_ours:>10,.0f} events/s")
    print(f"  with the detector:                         {args.detector:>12}")
    print(
        f"  cold start (first {args.steps} intervals, every host new): {cold_eps:>8,.0f} events/s"
    )
    print(f"river HalfSpaceTrees per event, median:      {med_river:>12,.0f} events/s")
    print(f"ratio ours / river, median of the repeats' ratios: {statistics.median(ratios):>6.1f} ×")
    print(
        f"  decode alone (JSON → arrays):              {decode_eps:>12,.0f} events/s "
        f"({decode_eps / med_river:.1f} × river: the loop's ceiling)"
    )
    for name, runs in stage.items():
        eps = statistics.median(runs)
        print(
            f"  detector {name!r} alone:{'':<{max(0, 21 - len(name))}}{eps:>12,.0f} events/s "
            f"({eps / med_river:.1f} × river)"
        )
    print(
        f"detector state per entity ({args.detector}):     "
        f"{det_bytes.nbytes_per_entity():>12,.0f} B (arrays, {len(names)} metrics)"
    )
    print(f"memory per tracked entity, ours:             {ours_mem / 1024:>12.1f} KiB")
    print(f"memory per tracked entity, river HST:        {river_mem / 1024:>12.1f} KiB")
    print(f"memory ratio river / ours:                   {river_mem / ours_mem:>12.0f} ×")


if __name__ == "__main__":
    main()
