"""Detectors measured on labelled telemetry, next to baselines, through one code path.

``precovery evaluate-detectors --data DIR [--incidents FILE] --json FILE``.

**Data.** ``DIR`` holds, per entity, ``NAME.test.parquet`` (or ``.csv``): a ``ts`` column,
numeric metric columns, and a 0/1 ``label`` column (or an ``--incidents`` file of
``host, started_at, resolved_at`` whose intervals label the rows of the entity whose
``host`` column matches), optionally preceded by ``NAME.history.parquet`` (unlabelled,
earlier). The default is the JumpStarter dataset2 the repository carries
(``tests/data/jumpstarter/dataset2``, 30 services, MIT).

**Methods.** Online detectors (the shipped ``surprise`` and ``surprise_hst``, and the
comparison-only ``ewmaz`` and ``hst``) stream the history (warm-up, not scored) and then
the test rows, each scored before it is learnt. Three
baselines take the same metrics: ``river_hst`` (river's ``MinMaxScaler |
HalfSpaceTrees`` at its defaults, online), ``iforest`` (scikit-learn's IsolationForest fit
on the history) and ``pca`` (reconstruction error of a PCA fit on the standardised
history, components explaining 90 % of the variance).

**Metrics per entity, then averaged** (entities with at least one event):

- ``pr_auc`` (average precision), ``roc_auc``, ``best_f1`` (best over thresholds, no point
  adjustment);
- ``vus_pr``: the volume under the PR surface of Paparrizos et al. (VLDB 2022), computed
  here (not the ``tsb-ad`` package, whose dependencies are heavy): each labelled
  segment's label is widened by a buffer of ``l`` rows whose weight falls as
  ``sqrt(1 - d / (l + 1))`` with the distance ``d``; the precision–recall AUC with these
  soft labels is averaged over ``l = 0, L/4, ..., L`` with ``L`` = :data:`VUS_MAX_BUFFER`.
- alarms are *episodes*: rows at or above a threshold, runs closer than
  :data:`MERGE_GAP` rows merged. An event (labelled segment) is **caught** when an
  episode opens no later than its ``K_ROWS``-th row (:data:`K_ROWS` = 3) and is still
  open within :data:`LEAD_WINDOW` rows before its start or later; its lead is its start
  minus that opening (negative: opened after the onset). An episode touching no event
  (with its lead window) is a **false alarm**.
- ``recall_at_1fa``: the largest share of events caught by a threshold whose false-alarm
  episodes are at most one per entity-day, chosen per entity (the same search for every
  method), with ``fa_per_day`` and ``median_lead_s`` at that threshold;
- for calibrated detectors (``surprise``, ``surprise_hst``),
  ``fixed_recall``/``fixed_fa_per_day``: the same at the *one* threshold
  :data:`FIXED_FA_PER_DAY` false alarms per entity-day turned into bits by the row rate,
  identical on every entity (no search).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from predictor.detectors import make_detector
from predictor.detectors.alarms import MERGE_GAP, episodes, runs
from predictor.detectors.calibration import bits_for_rate, bits_from_score

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
#: The JumpStarter dataset2 services the repository carries (MIT, with its licence).
DEFAULT_DATA_DIR = REPO / "tests" / "data" / "jumpstarter" / "dataset2"
DETECTORS = ("surprise", "surprise_hst")
COMPARISON = ("ewmaz", "hst")
BASELINES = ("river_hst", "iforest", "pca")
CALIBRATED = ("surprise", "surprise_hst")
K_ROWS = 3
LEAD_WINDOW = 12
VUS_MAX_BUFFER = 16
FIXED_FA_PER_DAY = 1.0
FA_BUDGET = 1.0
METRIC_KEYS = (
    "pr_auc",
    "roc_auc",
    "vus_pr",
    "best_f1",
    "recall_at_1fa",
    "fa_per_day",
    "median_lead_s",
    "fixed_recall",
    "fixed_fa_per_day",
)
#: Tuning services of the committed table: even-numbered; odd-numbered are held out.
TUNE = "even"


@dataclass(frozen=True, slots=True)
class Entity:
    """One entity's telemetry: history (may be empty), test rows, labels and row times."""

    name: str
    history: np.ndarray
    test: np.ndarray
    label: np.ndarray
    ts_s: np.ndarray

    @property
    def step_s(self) -> float:
        d = np.diff(self.ts_s)
        return float(np.median(d)) if len(d) else 60.0

    @property
    def days(self) -> float:
        return len(self.test) * self.step_s / 86400.0


def _read(path: Path) -> pd.DataFrame:
    if path.suffix == ".csv":
        return pd.read_csv(path)
    return pd.read_parquet(path)


def _service_order(name: str) -> tuple[int, str]:
    digits = "".join(c for c in name if c.isdigit())
    return (int(digits) if digits else -1, name)


def list_entities(data_dir: Path) -> list[str]:
    """Entity names with a ``NAME.test.parquet``/``.csv`` in ``data_dir``, in natural order."""
    names = {
        p.name.split(".test.")[0]
        for p in data_dir.iterdir()
        if p.is_file() and (p.name.endswith(".test.parquet") or p.name.endswith(".test.csv"))
    }
    return sorted(names, key=_service_order)


def _find(data_dir: Path, name: str, part: str) -> Path | None:
    for ext in ("parquet", "csv"):
        p = data_dir / f"{name}.{part}.{ext}"
        if p.is_file():
            return p
    return None


def load_entity(data_dir: Path, name: str, incidents: pd.DataFrame | None = None) -> Entity:
    """Read one entity; labels from its ``label`` column or from ``incidents``."""
    test_path = _find(data_dir, name, "test")
    if test_path is None:
        raise FileNotFoundError(f"no {name}.test.parquet or .csv in {data_dir}")
    test = _read(test_path)
    metrics = [
        c
        for c in test.columns
        if c not in ("ts", "host", "label", "timestamp") and pd.api.types.is_numeric_dtype(test[c])
    ]
    if not metrics:
        raise ValueError(f"{test_path}: no numeric metric columns")
    tcol = "ts" if "ts" in test.columns else "timestamp" if "timestamp" in test.columns else None
    if tcol is None:
        ts_s: np.ndarray = np.arange(len(test), dtype=np.float64) * 60.0
    else:
        ts = pd.to_datetime(test[tcol], utc=True)
        # Seconds whatever the column's resolution (pandas 3 keeps ms/us/ns units).
        ts_s = ((ts - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy(float)
    if incidents is not None:
        host = str(test["host"].iloc[0]) if "host" in test.columns else name
        label = np.zeros(len(test), dtype=np.int8)
        for inc in incidents[incidents["host"] == host].itertuples():
            a = pd.Timestamp(str(inc.started_at)).timestamp()
            b = pd.Timestamp(str(inc.resolved_at)).timestamp()
            label[(ts_s >= a) & (ts_s < b)] = 1
    elif "label" in test.columns:
        label = test["label"].to_numpy(dtype=np.int8)
    else:
        raise ValueError(f"{test_path}: no 'label' column and no --incidents file")
    hist_path = _find(data_dir, name, "history")
    history = (
        _read(hist_path)[metrics].to_numpy(dtype=np.float64)
        if hist_path is not None
        else np.zeros((0, len(metrics)))
    )
    return Entity(name, history, test[metrics].to_numpy(dtype=np.float64), label, ts_s)


# --- scores ---------------------------------------------------------------------------


def stream_scores(name: str, ent: Entity, seed: int = 0) -> np.ndarray:
    """Prequential scores of the test rows from an online detector warmed on the history."""
    det = make_detector(name, n_features=ent.test.shape[1], seed=seed, comparison=True)
    if len(ent.history):
        det.score_learn_many(np.zeros(len(ent.history), dtype=np.int64), ent.history)
    return det.score_learn_many(np.zeros(len(ent.test), dtype=np.int64), ent.test)


def river_hst_scores(ent: Entity, seed: int = 0) -> np.ndarray:
    """river's ``MinMaxScaler | HalfSpaceTrees`` at its defaults, warmed on the history."""
    from river import anomaly, preprocessing

    model = preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=seed)
    for row in ent.history.tolist():
        model.learn_one({j: v for j, v in enumerate(row) if not math.isnan(v)})
    out = np.empty(len(ent.test))
    for i, row in enumerate(ent.test.tolist()):
        xd = {j: v for j, v in enumerate(row) if not math.isnan(v)}
        out[i] = model.score_one(xd)
        model.learn_one(xd)
    return out


def _standardise(history: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ref = history if len(history) >= 10 else test[: max(10, len(test) // 10)]
    mean = np.nanmean(ref, axis=0)
    sd = np.nanstd(ref, axis=0)
    sd = np.where(sd > 1e-12 * np.maximum(np.abs(mean), 1.0), sd, 1.0)
    return np.nan_to_num((ref - mean) / sd), np.nan_to_num((test - mean) / sd)


def iforest_scores(ent: Entity, seed: int = 0) -> np.ndarray:
    """scikit-learn's IsolationForest fit on the (standardised) history."""
    from sklearn.ensemble import IsolationForest

    h, t = _standardise(ent.history, ent.test)
    model = IsolationForest(n_estimators=100, random_state=seed).fit(h)
    return np.asarray(-model.score_samples(t))


def pca_scores(ent: Entity, seed: int = 0) -> np.ndarray:
    """Reconstruction error of a PCA fit on the standardised history (90 % variance)."""
    from sklearn.decomposition import PCA

    h, t = _standardise(ent.history, ent.test)
    pca = PCA(n_components=0.9, svd_solver="full", random_state=seed).fit(h)
    rec = pca.inverse_transform(pca.transform(t))
    return np.asarray(((t - rec) ** 2).sum(axis=1))


SCORERS: dict[str, Callable[[Entity, int], np.ndarray]] = {
    "river_hst": river_hst_scores,
    "iforest": iforest_scores,
    "pca": pca_scores,
}


def method_scores(method: str, ent: Entity, seed: int = 0) -> np.ndarray:
    """Scores of ``method`` (a detector short name or a baseline) on ``ent``'s test rows."""
    if method in SCORERS:
        return SCORERS[method](ent, seed)
    return stream_scores(method, ent, seed)


# --- metrics --------------------------------------------------------------------------


def segments(label: np.ndarray) -> np.ndarray:
    """Contiguous runs of ``label == 1`` as an ``(n, 2)`` array of half-open bounds."""
    return runs(np.asarray(label) == 1)


def alarm_outcome(
    eps: np.ndarray, events: np.ndarray, k_rows: int = K_ROWS, lead_window: int = LEAD_WINDOW
) -> tuple[int, int, list[int]]:
    """``(caught events, false-alarm episodes, leads in rows)`` of episodes against events.

    >>> ev = np.array([[10, 20]])
    >>> alarm_outcome(np.array([[5, 12], [40, 41]]), ev)
    (1, 1, [5])
    """
    if len(eps) == 0:
        return 0, 0, []
    opens, closes = eps[:, 0], eps[:, 1]
    caught, leads = 0, []
    touched = np.zeros(len(eps), dtype=bool)
    for s, e in events.tolist():
        lo = s - lead_window
        overlap = (closes > lo) & (opens < e)
        touched |= overlap
        hit = overlap & (opens < s + k_rows)
        if hit.any():
            caught += 1
            leads.append(int(s - opens[hit].min()))
    return caught, int((~touched).sum()), leads


def vus_pr(label: np.ndarray, score: np.ndarray, max_buffer: int = VUS_MAX_BUFFER) -> float:
    """Volume under the PR surface over buffer lengths (see the module docstring)."""
    segs = segments(label)
    if len(segs) == 0:
        return float("nan")
    n = len(label)
    idx = np.arange(n)
    order = np.argsort(-score, kind="stable")
    s_sorted = score[order]
    last_of_tie = np.concatenate((s_sorted[1:] != s_sorted[:-1], [True]))
    aps = []
    for buf in np.unique(np.linspace(0, max_buffer, 5).astype(int)).tolist():
        soft = label.astype(np.float64)
        if buf > 0:
            for a, b in segs.tolist():
                d = np.where(idx < a, a - idx, np.where(idx >= b, idx - b + 1, 0))
                ramp = np.sqrt(np.clip(1.0 - d / (buf + 1.0), 0.0, 1.0)) * ((d > 0) & (d <= buf))
                soft = np.maximum(soft, ramp)
        w = soft[order]
        tp = np.cumsum(w)[last_of_tie]
        k = (np.arange(1, n + 1))[last_of_tie]
        prec = tp / k
        rec = tp / tp[-1]
        aps.append(float(np.sum(np.diff(np.concatenate(([0.0], rec))) * prec)))
    return float(np.mean(aps))


def budget_metrics(
    score: np.ndarray, label: np.ndarray, days: float, step_s: float, budget: float = FA_BUDGET
) -> dict[str, float]:
    """Best event recall with at most ``budget`` false-alarm episodes per entity-day."""
    events = segments(label)
    nan = float("nan")
    if len(events) == 0:
        return {"recall_at_1fa": nan, "fa_per_day": nan, "median_lead_s": nan}
    qs = np.unique(
        np.quantile(
            score, np.concatenate((np.linspace(0.5, 0.99, 50), 1 - np.geomspace(1e-2, 1e-5, 50)))
        )
    )
    top = np.unique(score)[-40:]
    best = (-1.0, nan, nan)
    for thr in np.unique(np.concatenate((qs, top)))[::-1]:
        caught, fa, leads = alarm_outcome(episodes(score >= thr), events)
        if fa > budget * days:
            break  # lower thresholds only add alarms (episodes may merge, rarely fewer)
        rec = caught / len(events)
        if rec > best[0]:
            lead = float(np.median(leads)) * step_s if leads else nan
            best = (rec, fa / days, lead)
    if best[0] < 0:
        return {"recall_at_1fa": 0.0, "fa_per_day": nan, "median_lead_s": nan}
    return {"recall_at_1fa": best[0], "fa_per_day": best[1], "median_lead_s": best[2]}


def fixed_metrics(
    score: np.ndarray, label: np.ndarray, days: float, step_s: float
) -> dict[str, float]:
    """Recall and false alarms at the one calibrated threshold (no search)."""
    bits = bits_for_rate(86400.0 / step_s, FIXED_FA_PER_DAY)
    eps = episodes(bits_from_score(score) >= bits)
    events = segments(label)
    caught, fa, _ = alarm_outcome(eps, events)
    # False-alarm rate over every episode when the entity has no event.
    fa = fa if len(events) else len(eps)
    rec = caught / len(events) if len(events) else float("nan")
    return {"fixed_recall": rec, "fixed_fa_per_day": fa / days}


def score_metrics(
    score: np.ndarray, label: np.ndarray, days: float, step_s: float, calibrated: bool
) -> dict[str, float]:
    """Every metric of :data:`METRIC_KEYS` for one score vector."""
    nan = float("nan")
    out: dict[str, float] = dict.fromkeys(METRIC_KEYS, nan)
    score = np.nan_to_num(np.asarray(score, dtype=np.float64), nan=0.0)
    if calibrated:
        out.update(fixed_metrics(score, label, days, step_s))
    if label.min() == label.max():
        return out
    precision, recall, _ = precision_recall_curve(label, score)
    p, r = precision[:-1], recall[:-1]
    f1 = np.divide(2 * p * r, p + r, out=np.zeros_like(p), where=(p + r) > 0)
    out.update(
        pr_auc=float(average_precision_score(label, score)),
        roc_auc=float(roc_auc_score(label, score)),
        vus_pr=vus_pr(label, score),
        best_f1=float(f1.max()),
    )
    out.update(budget_metrics(score, label, days, step_s))
    return out


# --- the run --------------------------------------------------------------------------


def split_of(name: str) -> str:
    """``tune`` for even-numbered entities, ``held_out`` for odd ones (by the name's digits)."""
    n = _service_order(name)[0]
    return "tune" if n >= 0 and n % 2 == 0 else "held_out"


def evaluate(
    data_dir: Path | None = None,
    incidents: Path | None = None,
    methods: Sequence[str] = (*DETECTORS, *BASELINES),
    entities: Sequence[str] | None = None,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """Score every entity with every method; one row per (entity, method).

    Columns: ``entity``, ``split`` (:func:`split_of`), ``method``, ``rows``, ``events``,
    ``days``, ``seconds`` and :data:`METRIC_KEYS`.
    """
    data_dir = DEFAULT_DATA_DIR if data_dir is None else Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data folder {data_dir} not found")
    inc = pd.read_csv(incidents) if incidents is not None else None
    if inc is not None:
        missing = {"host", "started_at", "resolved_at"} - set(inc.columns)
        if missing:
            raise ValueError(f"{incidents}: missing columns {', '.join(sorted(missing))}")
    names = list(entities) if entities is not None else list_entities(data_dir)
    if not names:
        raise FileNotFoundError(f"no NAME.test.parquet or NAME.test.csv in {data_dir}")
    rows: list[dict[str, Any]] = []
    for name in names:
        ent = load_entity(data_dir, name, inc)
        for method in methods:
            t0 = time.perf_counter()
            score = method_scores(method, ent, seed)
            sec = time.perf_counter() - t0
            m = score_metrics(score, ent.label, ent.days, ent.step_s, method in CALIBRATED)
            rows.append(
                {
                    "entity": name,
                    "split": split_of(name),
                    "method": method,
                    "rows": len(ent.test),
                    "events": len(segments(ent.label)),
                    "days": ent.days,
                    "seconds": sec,
                    **m,
                }
            )
        logger.debug("%s scored", name)
        if progress is not None:
            progress(1)
    return pd.DataFrame(rows)


def summarise(df: pd.DataFrame, split: str | None = None) -> pd.DataFrame:
    """Mean of each metric per method (entities with events), optionally one split only."""
    sub = df if split is None else df[df["split"] == split]
    order = list(dict.fromkeys(sub["method"]))
    with_events = sub[sub["events"] > 0]
    g = with_events.groupby("method", sort=False)
    out = g[list(METRIC_KEYS)].mean()
    out["median_lead_s"] = g["median_lead_s"].median()
    out.insert(0, "entities", g["entity"].nunique())
    return out.reindex(order)


def to_json(df: pd.DataFrame) -> dict[str, Any]:
    """The JSON report: settings, per-entity rows and summaries (all, tune, held out)."""

    def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
        clean = frame.astype(object).where(frame.notna(), None)
        return [{str(k): v for k, v in r.items()} for r in clean.to_dict(orient="records")]

    return {
        "settings": {
            "merge_gap_rows": MERGE_GAP,
            "k_rows": K_ROWS,
            "lead_window_rows": LEAD_WINDOW,
            "fa_budget_per_entity_day": FA_BUDGET,
            "fixed_fa_per_entity_day": FIXED_FA_PER_DAY,
            "vus_max_buffer_rows": VUS_MAX_BUFFER,
            "tune": "even-numbered entities",
            "held_out": "odd-numbered entities",
        },
        "summary": {
            name: records(summarise(df, split).reset_index())
            for name, split in (("all", None), ("tune", "tune"), ("held_out", "held_out"))
        },
        "entities": records(df),
    }


SPLIT_HELP = {
    "tune": "even-numbered entities: parameters were chosen on these",
    "held_out": "odd-numbered entities: not looked at while tuning",
}
