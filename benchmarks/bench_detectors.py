"""Our detectors measured on real labelled server telemetry (JumpStarter dataset2).

Each service is one entity: its unlabelled history streams through a detector first
(warm-up, not scored), then its labelled test rows, each scored before it is learnt, so
a score only sees past rows. Two baselines are scored in the same run, so a number is
never read alone:

- ``static_z``: per-metric mean and sd of the history only, score = max |z| over metrics;
- ``random``: seeded uniform noise, whose PR-AUC sits at the base rate.

Used by ``notebooks/detectors_jumpstarter.ipynb`` and its test, not by the product (so
it lives in ``benchmarks/``, imported as ``benchmarks.bench_detectors`` from the
repository root); the product's evaluation command is ``precovery evaluate-detectors``
(``pipelines/offline/evaluate_detectors.py``).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from predictor.detectors import make_detector

logger = logging.getLogger(__name__)

ENV_DIR = "PRECOVERY_JUMPSTARTER_DIR"
METRICS = tuple(f"m{i:02d}" for i in range(19))
BASELINES = ("static_z", "random")
COLUMNS = (
    "service",
    "detector",
    "roc_auc",
    "pr_auc",
    "best_f1",
    "segment_recall",
    "alert_rate",
    "rows",
    "positives",
)
SCORE_COLUMNS = ("roc_auc", "pr_auc", "best_f1", "segment_recall", "alert_rate")


def default_data_dir() -> Path:
    """Where dataset2 lives: ``$PRECOVERY_JUMPSTARTER_DIR``, else the slice in the repository.

    The repository carries services 0–2 (``tests/data/jumpstarter/dataset2``, MIT, with
    its licence); point the variable at the full 30 services to score them all.
    """
    env = os.environ.get(ENV_DIR)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1] / "tests" / "data" / "jumpstarter" / "dataset2"


def available_services(data_dir: Path) -> list[int]:
    """Service numbers with both files present in ``data_dir``, ascending."""
    return sorted(
        int(p.name.removeprefix("service").split(".")[0])
        for p in data_dir.glob("service*.test.parquet")
        if (data_dir / p.name.replace(".test.", ".history.")).is_file()
    )


def load_service(data_dir: Path, service: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read one service's history and test matrices and the test labels.

    Parameters
    ----------
    data_dir
        Folder holding ``serviceN.history.parquet`` and ``serviceN.test.parquet``.
    service
        Service number N.

    Returns
    -------
    tuple of numpy.ndarray
        ``(history, test, label)``: float64 matrices of shape (rows, 19) in metric
        order, and an int8 vector of test labels (1 = anomalous).
    """
    cols = list(METRICS)
    history = pd.read_parquet(data_dir / f"service{service}.history.parquet", columns=cols)
    test = pd.read_parquet(data_dir / f"service{service}.test.parquet", columns=[*cols, "label"])
    return (
        history.to_numpy(dtype=np.float64),
        test[cols].to_numpy(dtype=np.float64),
        test["label"].to_numpy(dtype=np.int8),
    )


def stream_scores(name: str, history: np.ndarray, test: np.ndarray, seed: int = 0) -> np.ndarray:
    """Scores of the test rows from an online detector warmed up on the history.

    Parameters
    ----------
    name
        Detector short name for :func:`predictor.detectors.make_detector`.
    history, test
        Matrices of shape (rows, n_features), in time order.
    seed
        Detector seed.

    Returns
    -------
    numpy.ndarray
        One score per test row, computed prequentially (past rows only).
    """
    det = make_detector(name, n_features=test.shape[1], seed=seed, comparison=True)
    det.score_learn_many(np.zeros(len(history), dtype=np.int64), history)
    return det.score_learn_many(np.zeros(len(test), dtype=np.int64), test)


def static_z_scores(history: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Max |z| over metrics, against the history's per-metric mean and sd.

    The sd has the same floor as :class:`~predictor.detectors.ewmaz.EwmaZ` (1e-3, and
    2 % of the level), so a metric that was flat in the history cannot dominate on its
    first wiggle any more than it would for EwmaZ.

    Parameters
    ----------
    history, test
        Matrices of shape (rows, n_features).

    Returns
    -------
    numpy.ndarray
        One non-negative score per test row.
    """
    mean = np.nanmean(history, axis=0)
    sd = np.maximum(np.nanstd(history, axis=0), np.maximum(1e-3, 0.02 * np.abs(mean)))
    z = np.abs(test - mean) / sd
    return np.asarray(np.nan_to_num(z, nan=0.0).max(axis=1))


def segments(label: np.ndarray) -> list[tuple[int, int]]:
    """Contiguous runs of ``label == 1`` as half-open ``(start, stop)`` index pairs.

    >>> segments(np.array([0, 1, 1, 0, 1]))
    [(1, 3), (4, 5)]
    """
    padded = np.concatenate(([0], (np.asarray(label) == 1).astype(np.int8), [0]))
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def score_metrics(label: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """Ranking and alert metrics of one score vector against the labels.

    Parameters
    ----------
    label
        0/1 vector.
    score
        Same length, higher = more anomalous.

    Returns
    -------
    dict
        ``roc_auc``, ``pr_auc`` (average precision), ``best_f1`` (over all thresholds)
        ``segment_recall`` (share of labelled segments with a score at or above the
        best-F1 threshold) and ``alert_rate`` (share of rows at or above it: a segment
        recall near 1 means little when the best F1 comes from alerting on most rows).
        All NaN when the labels hold a single class.
    """
    nan = float("nan")
    if label.min() == label.max():
        return dict.fromkeys(SCORE_COLUMNS, nan)
    precision, recall, thresholds = precision_recall_curve(label, score)
    # The curve's last point (precision 1, recall 0) has no threshold.
    p, r = precision[:-1], recall[:-1]
    f1 = np.divide(2 * p * r, p + r, out=np.zeros_like(p), where=(p + r) > 0)
    best = int(np.argmax(f1))
    alarm = score >= thresholds[best]
    segs = segments(label)
    hit = sum(bool(alarm[a:b].any()) for a, b in segs)
    return {
        "roc_auc": float(roc_auc_score(label, score)),
        "pr_auc": float(average_precision_score(label, score)),
        "best_f1": float(f1[best]),
        "segment_recall": hit / len(segs),
        "alert_rate": float(alarm.mean()),
    }


def evaluate_jumpstarter(
    data_dir: Path | None = None,
    services: list[int] | None = None,
    detectors: tuple[str, ...] = ("ewmaz", "hst"),
    seed: int = 0,
) -> pd.DataFrame:
    """Score every service with each detector and both baselines.

    Parameters
    ----------
    data_dir
        The dataset2 folder; :func:`default_data_dir` when None.
    services
        Service numbers; all 30 when None.
    detectors
        Online detector short names; ``static_z`` and ``random`` are always added.
    seed
        Seed of the detectors and of the random baseline (mixed with the service number).

    Returns
    -------
    pandas.DataFrame
        One row per (service, detector) with the columns of :data:`COLUMNS`; the
        detector's scoring time in seconds is kept in ``attrs["seconds"]``, keyed by
        detector.

    Raises
    ------
    FileNotFoundError
        If the folder or a service's files are missing.
    """
    data_dir = default_data_dir() if data_dir is None else Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"JumpStarter dataset2 not found at {data_dir} (set ${ENV_DIR})")
    chosen = available_services(data_dir) if services is None else list(services)
    rows: list[dict[str, object]] = []
    seconds: dict[str, float] = dict.fromkeys((*detectors, *BASELINES), 0.0)
    for service in chosen:
        history, test, label = load_service(data_dir, service)
        for name in (*detectors, *BASELINES):
            t0 = time.perf_counter()
            if name == "static_z":
                score = static_z_scores(history, test)
            elif name == "random":
                score = np.random.default_rng([seed, service]).random(len(test))
            else:
                score = stream_scores(name, history, test, seed=seed)
            seconds[name] += time.perf_counter() - t0
            rows.append(
                {
                    "service": service,
                    "detector": name,
                    **score_metrics(label, score),
                    "rows": len(test),
                    "positives": int(label.sum()),
                }
            )
        logger.debug("service %d scored", service)
    out = pd.DataFrame(rows, columns=list(COLUMNS))
    out.attrs["seconds"] = seconds
    return out


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """Mean of each metric per detector, with the number of services.

    Parameters
    ----------
    df
        A frame from :func:`evaluate_jumpstarter`.

    Returns
    -------
    pandas.DataFrame
        Indexed by detector (in the frame's order), columns ``services`` and the means
        of ``roc_auc``, ``pr_auc``, ``best_f1``, ``segment_recall``, ``alert_rate``.
    """
    order = list(dict.fromkeys(df["detector"]))
    grouped = df.groupby("detector", sort=False)
    means = grouped[list(SCORE_COLUMNS)].mean()
    means.insert(0, "services", grouped["service"].nunique())
    return means.reindex(order)
