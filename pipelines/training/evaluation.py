"""The failure-risk model judged on history, next to two baselines from the same run.

Every scorer is judged the same way on the same rows of an evaluation window:

- *incidents caught*: incidents preceded, within the horizon, by an alert episode at
  least ``min_lead_s`` before they start (episodes: rising edges of ``risk >= alarm_risk``
  per component, merged within one horizon);
- *median / p10 lead*, seconds, over the incidents that had any alert episode before
  them (a p10 below the minimum lead says how often the warning came too late);
- *false alarms per entity-day*: episodes that precede no incident on their component;
- *PR-AUC* (average precision) and *Brier* on the row labels.

The baselines are what an operator would have without the model:

- ``anomaly_score``: the detector's anomaly score alone;
- ``raw_threshold``: a threshold on the raw metrics: a row scores the highest percentile
  rank, among the fitting rows, of any of its metric values.

Both are turned into probabilities by isotonic regression on the *fitting* rows (the
model's training window, or the earlier part of a history), so one ``alarm_risk`` is the
same operating point for all three; a baseline that never reaches it catches nothing,
which is the honest answer at that operating point.

>>> import numpy as np
>>> row = judge("m", [("s", "c", "h")] * 3, np.array([0, 60_000, 120_000]),
...             np.array([0, 1, 0]), np.array([0.1, 0.9, 0.2]),
...             [Incident("s", "c", None, 600_000)], horizon_s=1800, min_lead_s=120,
...             alarm_risk=0.5)
>>> row["incidents_caught"], row["median_lead_s"], row["pr_auc"]
(1, 540.0, 1.0)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import average_precision_score, brier_score_loss

from predictor.labels import Alarm, Incident, lead_time_report

#: The JSON keys of one row of ``precovery evaluate --json`` (one object per scorer).
KEYS = (
    "name",
    "incidents",
    "incidents_caught",
    "median_lead_s",
    "p10_lead_s",
    "false_alarms_per_entity_day",
    "pr_auc",
    "brier",
)
BASELINES = ("anomaly_score", "raw_threshold")


def alarms_from_scores(
    keys: Sequence[tuple[str, str, str]],
    ts_ms: np.ndarray,
    risk: np.ndarray,
    threshold: float,
    refractory_s: float,
) -> list[Alarm]:
    """Rising edges of ``risk >= threshold`` per component, merged within ``refractory_s``."""
    if len(keys) == 0:
        return []
    comp = np.array([f"{k[0]}\x00{k[1]}" for k in keys], dtype=object)
    order = np.lexsort((ts_ms, comp))
    alarms: list[Alarm] = []
    last: dict[tuple[str, str], int] = {}
    ref = int(refractory_s * 1000)
    hot = risk >= threshold
    for i in order[hot[order]].tolist():
        c = (keys[i][0], keys[i][1])
        t = int(ts_ms[i])
        prev = last.get(c)
        if prev is None or t - prev > ref:
            alarms.append(Alarm(c[0], c[1], t))
        last[c] = t
    return alarms


def judge(
    name: str,
    keys: Sequence[tuple[str, str, str]],
    ts_ms: np.ndarray,
    y: np.ndarray,
    risk: np.ndarray,
    incidents: Sequence[Incident],
    horizon_s: float,
    min_lead_s: float,
    alarm_risk: float,
) -> dict[str, Any]:
    """One scorer's row of the table (``KEYS``), plus ``leads_s`` for the histogram."""
    alarms = alarms_from_scores(keys, ts_ms, risk, alarm_risk, horizon_s)
    t0, t1 = (int(ts_ms.min()), int(ts_ms.max())) if len(ts_ms) else (0, 0)
    entity_days = len(set(keys)) * (t1 - t0) / 86_400_000
    rep = lead_time_report(alarms, list(incidents), horizon_s, min_lead_s, entity_days)
    leads = [p["lead_time_s"] for p in rep["per_incident"] if p["lead_time_s"] is not None]
    both = len(np.unique(y)) == 2
    return {
        "name": name,
        "incidents": rep["incidents"],
        "incidents_caught": rep["caught"],
        "median_lead_s": float(np.median(leads)) if leads else None,
        "p10_lead_s": float(np.percentile(leads, 10)) if leads else None,
        "false_alarms_per_entity_day": _finite(rep["false_alarms_per_entity_day"]),
        "pr_auc": float(average_precision_score(y, risk)) if both else None,
        "brier": float(brier_score_loss(y, risk, labels=[0, 1])) if len(y) else None,
        "leads_s": leads,
    }


def _finite(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def raw_rank_scorer(x_fit: np.ndarray, value_cols: list[int]) -> Any:
    """A function of feature rows: the highest percentile rank (among ``x_fit``) of any
    raw metric value; NaN (metric absent) ranks 0."""
    sorted_cols = []
    for j in value_cols:
        v = x_fit[:, j]
        sorted_cols.append(np.sort(v[np.isfinite(v)]))

    def score(x: np.ndarray) -> np.ndarray:
        out = np.zeros(len(x))
        for j, ref in zip(value_cols, sorted_cols, strict=True):
            if len(ref) == 0:
                continue
            v = x[:, j]
            rank = np.searchsorted(ref, np.nan_to_num(v, nan=-np.inf), side="right") / len(ref)
            out = np.maximum(out, rank)
        return out

    return score


def baseline_scores(
    x_fit: np.ndarray,
    y_fit: np.ndarray,
    x_eval: np.ndarray,
    feature_names: Sequence[str],
    sample_weight: np.ndarray | None = None,
    rank_ref: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Calibrated probabilities of the two baselines on ``x_eval`` (fitted on ``x_fit``;
    ``sample_weight`` weighs the calibration, e.g. back from a sample of the negatives;
    ``rank_ref``, rows of the history as it is, default ``x_fit``, are what the raw
    threshold ranks metric values among: a sample rich in positives would skew them)."""
    names = list(feature_names)
    out: dict[str, np.ndarray] = {}
    raw: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if "anomaly_score" in names:
        j = names.index("anomaly_score")
        raw["anomaly_score"] = (
            np.nan_to_num(x_fit[:, j], nan=0.0),
            np.nan_to_num(x_eval[:, j], nan=0.0),
        )
    value_cols = [i for i, n in enumerate(names) if n.endswith("__value")]
    if value_cols:
        rank = raw_rank_scorer(x_fit if rank_ref is None else rank_ref, value_cols)
        raw["raw_threshold"] = (rank(x_fit), rank(x_eval))
    for name, (s_fit, s_eval) in raw.items():
        if len(np.unique(y_fit)) < 2:
            out[name] = s_eval
            continue
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        iso.fit(s_fit, y_fit, sample_weight=sample_weight)
        out[name] = np.asarray(iso.predict(s_eval), dtype=np.float64)
    return out


def format_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The table as text lines, with units."""

    def f(v: Any, spec: str) -> str:
        return "—" if v is None else format(v, spec)

    head = (
        f"{'scorer':<16} {'caught':>9} {'median lead':>12} {'p10 lead':>10} "
        f"{'false alarms':>14} {'PR-AUC':>7} {'Brier':>7}"
    )
    lines = [head, f"{'':<16} {'':>9} {'(s)':>12} {'(s)':>10} {'(/entity-day)':>14}"]
    for r in rows:
        lines.append(
            f"{r['name']:<16} {str(r['incidents_caught']) + '/' + str(r['incidents']):>9} "
            f"{f(r['median_lead_s'], '.0f'):>12} {f(r['p10_lead_s'], '.0f'):>10} "
            f"{f(r['false_alarms_per_entity_day'], '.3f'):>14} {f(r['pr_auc'], '.3f'):>7} "
            f"{f(r['brier'], '.4f'):>7}"
        )
    return lines


def public(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with the documented keys only (what ``--json`` writes)."""
    return [{k: r[k] for k in KEYS} for r in rows]
