"""The failure-risk model: P(an incident starts within the horizon | features).

A LightGBM binary classifier on the stream's feature rows, calibrated with isotonic
regression on the *latest* slice of the training rows (time order kept, so calibration
sees the future the model did not). Reasons come from LightGBM's own per-feature
contributions (``pred_contrib``), which are 100-300x dearer than a prediction, so they
are computed only for rows that lead to an alert or a recommendation.

Scoring does not call LightGBM: at the first :meth:`RiskModel.predict_risk` the booster
is compiled once into arrays scored by a numba kernel (:mod:`predictor.risk_trees`:
QuickScorer's leaf bitmasks, or a node walk for trees over 64 leaves), which gives
LightGBM's own probabilities (bit for bit on the shipped model). The engine scores 10-60
rows a call, where ``Booster.predict`` pays ~30 µs a call plus its per-row walk; the
kernel is ~2.8x faster at 30-120 rows and ~4.5x for a lone row
(``benchmarks/bench_risk_trees.py``). Compiling costs ~50 ms once per model (its text,
parsed); a model the kernel does not evaluate (categorical splits, linear trees) keeps
``Booster.predict``, and :meth:`RiskModel.explain` stays on LightGBM. The compiled arrays
are a cache: never pickled, rebuilt for another booster.

The core does no file I/O: :meth:`RiskModel.to_state` gives LightGBM's text and the
metadata (feature names, horizon, calibration points, training metrics, version, and the
detector whose anomaly scores it learnt from: a stream running another detector refuses
it), :meth:`RiskModel.from_state` takes them back. :mod:`pipelines.training.models` keeps a model
as a directory (``model.lgb`` + ``meta.json``), :mod:`pipelines.training.tracking` in MLflow.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Self

import lightgbm as lgb
import numpy as np
from sklearn.isotonic import IsotonicRegression

from predictor.errors import ModelError
from predictor.risk_trees import CompiledTrees, compile_booster

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Reason:
    """One feature's push on a prediction, in log-odds."""

    feature: str
    value: float
    contribution: float

    def as_dict(self) -> dict[str, Any]:
        v = self.value
        return {
            "feature": self.feature,
            "value": None if np.isnan(v) else round(float(v), 4),
            "contribution": round(float(self.contribution), 4),
        }


class RiskModel:
    """Calibrated LightGBM failure-risk classifier.

    Parameters
    ----------
    horizon_s
        The horizon H the labels were made for, seconds.
    n_estimators, learning_rate, num_leaves, min_child_samples
        LightGBM parameters.
    calibration_fraction
        Share of the (time-ordered) training rows held out, at the end, to calibrate.
    seed
        LightGBM's seed; training is deterministic with ``num_threads`` fixed.
    """

    def __init__(
        self,
        horizon_s: float = 1800.0,
        n_estimators: int = 200,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        min_child_samples: int = 50,
        calibration_fraction: float = 0.2,
        seed: int = 7,
        num_threads: int = 2,
    ) -> None:
        self.horizon_s = horizon_s
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.calibration_fraction = calibration_fraction
        self.seed = seed
        self.num_threads = num_threads
        #: Detector whose anomaly scores the model learnt from (None: not recorded).
        self.detector_: str | None = None
        #: Telemetry metrics the features were computed from, in order (the model's inputs).
        self.metric_names_: tuple[str, ...] = ()
        #: What it was trained on: ``sha256`` of the data, ``from``/``to`` times, ``rows``.
        self.training_data_: dict[str, Any] | None = None
        #: The registry version it was loaded as (``failure-risk/3``); None from a folder.
        self.registered_as_: str | None = None

    # -- sklearn-style API -------------------------------------------------------------
    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        feature_names: list[str] | None = None,
        sample_weight: np.ndarray | None = None,
    ) -> Self:
        """Fit on time-ordered rows; the last ``calibration_fraction`` calibrates.

        ``sample_weight`` weighs rows in the fit (feedback labels); calibration is not
        weighted, so probabilities keep meaning frequencies."""
        x = np.asarray(x, dtype=np.float32)
        y = np.asarray(y, dtype=np.int8)
        if len(np.unique(y)) < 2:
            raise ModelError("training labels hold one class only: no incidents in the data?")
        n_cal = int(len(y) * self.calibration_fraction)
        if len(np.unique(y[: len(y) - n_cal])) < 2 or len(np.unique(y[len(y) - n_cal :])) < 2:
            n_cal = 0  # too few positives to split: skip calibration rather than fail
        fit_x, fit_y = x[: len(y) - n_cal], y[: len(y) - n_cal]
        names = feature_names or [f"f{i}" for i in range(x.shape[1])]
        params = {
            "objective": "binary",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples,
            "feature_fraction": 0.8,
            # Fine bins: the signal sits in rare tails (memory at 88 %, GC at 160 ms); with
            # the default 255 quantile bins those rows share a bin with ordinary ones.
            "max_bin": 1023,
            "bagging_fraction": 0.8,
            "bagging_freq": 1,
            "seed": self.seed,
            "deterministic": True,
            "num_threads": self.num_threads,
            "verbose": -1,
        }
        weight = None if sample_weight is None else np.asarray(sample_weight)[: len(y) - n_cal]
        data = lgb.Dataset(
            fit_x, label=fit_y, weight=weight, feature_name=names, free_raw_data=True
        )
        self.booster_ = lgb.train(params, data, num_boost_round=self.n_estimators)
        self.feature_names_ = names
        self.calibration_: tuple[list[float], list[float]] | None = None
        if n_cal:
            raw = self.booster_.predict(x[len(y) - n_cal :])
            iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
            iso.fit(raw, y[len(y) - n_cal :])
            self.calibration_ = (
                [float(v) for v in iso.X_thresholds_],
                [float(v) for v in iso.y_thresholds_],
            )
        self.metrics_: dict[str, float] = {}
        self._version = (self.booster_, _content_hash(self.booster_))
        return self

    def _check(self) -> None:
        if not hasattr(self, "booster_"):
            raise ModelError("the risk model is not fitted")

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Columns ``[P(no incident), P(incident within horizon)]``."""
        p = self.predict_risk(x)
        return np.column_stack([1.0 - p, p])

    def predict_risk(self, x: np.ndarray) -> np.ndarray:
        """P(incident within horizon) per row, calibrated."""
        self._check()
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != len(self.feature_names_):
            raise ModelError(
                f"model expects {len(self.feature_names_)} features, got shape {x.shape}"
            )
        if len(x) == 0:
            return np.zeros(0)
        trees = self.compiled_trees()
        if trees is None:
            raw = self.booster_.predict(x, num_threads=1)
        else:
            raw = trees.proba(x)
        if self.calibration_ is None:
            return np.asarray(raw, dtype=np.float64)
        xs, ys = self.calibration_
        return np.asarray(np.interp(raw, xs, ys), dtype=np.float64)

    def compiled_trees(self) -> CompiledTrees | None:
        """The booster compiled for :meth:`predict_risk`, built at its first call per
        booster (~50 ms; call this off the hot path, after a load, to pay it there);
        None when the kernel cannot evaluate it (LightGBM scores instead)."""
        cached = self.__dict__.get("_compiled")
        if cached is None or cached[0] is not self.booster_:
            try:
                trees: CompiledTrees | None = compile_booster(self.booster_)
            except ModelError as exc:
                logger.debug("risk model scored by LightGBM, not compiled: %s", exc)
                trees = None
            if trees is not None and trees.n_features != len(self.feature_names_):
                trees = None  # LightGBM's own shape check then speaks
            cached = (self.booster_, trees)
            self._compiled = cached
        return cached[1]

    def __getstate__(self) -> dict[str, Any]:
        # The compiled trees are a cache of the booster: rebuilt after unpickling.
        state = self.__dict__.copy()
        state.pop("_compiled", None)
        return state

    def explain(self, x: np.ndarray, top_k: int = 3) -> list[list[Reason]]:
        """The ``top_k`` features that pushed each row's risk up the most."""
        self._check()
        x = np.asarray(x, dtype=np.float32)
        if len(x) == 0:
            return []
        contrib = np.asarray(self.booster_.predict(x, pred_contrib=True, num_threads=1))[:, :-1]
        out = []
        for row, c in zip(x, contrib, strict=True):
            top = np.argsort(-c, kind="stable")[:top_k]
            out.append([Reason(self.feature_names_[j], float(row[j]), float(c[j])) for j in top])
        return out

    # -- persistence ------------------------------------------------------------------
    @property
    def version(self) -> str:
        """A content hash: the same model text gives the same version. A model loaded
        from the registry is prefixed with its registered version (``failure-risk/3:sha-…``)
        so that every score and recommendation names the registry version behind it.

        Computed once per booster (at fit or load): serialising and hashing the model is
        far too dear for the hot path, which reads the version with every decision.
        """
        self._check()
        cached = self.__dict__.get("_version")
        if cached is None or cached[0] is not self.booster_:
            cached = (self.booster_, _content_hash(self.booster_))
            self._version = cached
        if self.registered_as_:
            full = self.__dict__.get("_full_version")
            if full is None or full[0] is not cached or full[1] != self.registered_as_:
                full = (cached, self.registered_as_, f"{self.registered_as_}:{cached[1]}")
                self._full_version = full
            return str(full[2])
        return cached[1]

    def to_state(self) -> tuple[str, dict[str, Any]]:
        """``(model_text, meta)``: LightGBM's text format and the JSON-ready metadata.

        The inverse is :meth:`from_state`; files and MLflow are the edges' business
        (:mod:`pipelines.training.models`, :mod:`pipelines.training.tracking`)."""
        self._check()
        meta = {
            "params": self.get_params(),
            "inputs": self.inputs,
            "feature_names": self.feature_names_,
            "detector": self.detector_,
            "calibration": self.calibration_,
            "metrics": self.metrics_,
            "version": _content_hash(self.booster_),
        }
        return self.booster_.model_to_string(), meta

    @classmethod
    def from_state(
        cls, meta: dict[str, Any], model_text: str | None = None, booster: Any = None
    ) -> RiskModel:
        """A model from its metadata and either its text or a loaded LightGBM booster."""
        try:
            if booster is None:
                booster = lgb.Booster(model_str=model_text)
            model = cls(**meta["params"])
            model.feature_names_ = list(meta["feature_names"])
        except (KeyError, TypeError, ValueError, lgb.basic.LightGBMError) as exc:
            raise ModelError(f"not a risk model: {exc}") from exc
        model.booster_ = booster
        model.detector_ = meta.get("detector")
        inputs = meta.get("inputs") or {}
        model.metric_names_ = tuple(
            inputs.get("metric_names") or metrics_of_features(model.feature_names_)
        )
        model.training_data_ = inputs.get("training_data")
        cal = meta.get("calibration")
        model.calibration_ = (list(cal[0]), list(cal[1])) if cal else None
        model.metrics_ = dict(meta.get("metrics", {}))
        model._version = (booster, _content_hash(booster))
        return model

    @property
    def inputs(self) -> dict[str, Any]:
        """What the model declares it takes: metric names, features, horizon, detector,
        and the data it was trained on. Train, detect and the stream read them here."""
        return {
            "metric_names": list(self.metric_names_),
            "feature_names": list(getattr(self, "feature_names_", [])),
            "horizon_s": self.horizon_s,
            "detector": self.detector_,
            "training_data": self.training_data_,
        }

    def get_params(self) -> dict[str, Any]:
        return {
            "horizon_s": self.horizon_s,
            "n_estimators": self.n_estimators,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples,
            "calibration_fraction": self.calibration_fraction,
            "seed": self.seed,
            "num_threads": self.num_threads,
        }


def due_for_scoring(
    s: np.ndarray,
    t: np.ndarray,
    anomaly: np.ndarray,
    scored_ms: np.ndarray,
    batch_rounds: list[np.ndarray],
    cadence_ms: int,
    on_anomaly: float,
) -> np.ndarray:
    """Rows to score: ``cadence_ms`` of event time since the entity's last scoring, or at
    once on an anomaly score of at least ``on_anomaly``.

    ``s``, ``t``, ``anomaly`` are the rows' entity slots, event times (ms) and anomaly
    scores; ``batch_rounds`` their rounds (:func:`predictor.batching.rounds`), so a row
    sees the scorings of its entity's earlier rows. ``scored_ms`` (per slot) is updated.
    """
    due = np.zeros(len(s), dtype=bool)
    for idx in batch_rounds:
        e = s[idx]
        d = (t[idx] - scored_ms[e] >= cadence_ms) | (anomaly[idx] >= on_anomaly)
        scored_ms[e[d]] = t[idx][d]
        due[idx[d]] = True
    return due


def check_fits(
    model: RiskModel, metric_names: Sequence[str], feature_names: Sequence[str], detector: str
) -> None:
    """Refuse, naming the mismatch, a model that does not fit the stream: its metrics,
    its feature columns, or the detector whose anomaly scores it learnt from."""
    declared = tuple(getattr(model, "metric_names_", ()) or ())
    if declared and declared != tuple(metric_names):
        raise ModelError(
            f"the model takes the metrics {', '.join(declared)}; this stream tracks "
            f"{', '.join(metric_names)} (configure the stream from the model)"
        )
    if list(model.feature_names_) != list(feature_names):
        missing = set(model.feature_names_) - set(feature_names)
        raise ModelError(
            f"model features do not match the stream's ({len(model.feature_names_)} vs "
            f"{len(feature_names)}; missing here: {sorted(missing)[:5]})"
        )
    trained_on = getattr(model, "detector_", None)
    if trained_on is not None and trained_on != detector:
        raise ModelError(
            f"the model was trained on {trained_on!r} anomaly scores and this stream runs "
            f"detector {detector!r}: use --detector {trained_on} or retrain"
        )


def _content_hash(booster: lgb.Booster) -> str:
    """``sha-`` and 12 hex digits of the model text (stable across save and load)."""
    return "sha-" + hashlib.sha256(booster.model_to_string().encode()).hexdigest()[:12]


def metrics_of_features(feature_names: list[str]) -> list[str]:
    """Metric names of feature names ``<metric>__<feature>``, in order (models saved before
    they declared their inputs).

    >>> metrics_of_features(["cpu_pct__z", "cpu_pct__slope", "mem_pct__z", "anomaly_score"])
    ['cpu_pct', 'mem_pct']
    """
    return list(dict.fromkeys(n.split("__", 1)[0] for n in feature_names if "__" in n))
