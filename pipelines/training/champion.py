"""Judge models on a history, promote a candidate to ``@champion``, follow the champion.

**Evaluation on a history** (``precovery evaluate --telemetry T --incidents I``): the
features come from the stream's engine over the file, labels from the incidents with the
first model's horizon. The evaluation window is everything from ``from_ms`` (``--from``;
a promotion uses the candidate's recorded test window); without it, the latest 70 % of
the time range. The rows before the window fit the baselines' calibration and are not
scored. Incidents count when they start at least one horizon into the window (their
whole warning period lies inside it).

**Promotion** (``precovery promote``): the candidate and the current champion are scored
on the same window of the same history. The candidate *beats* the champion when it
catches at least as many incidents with the minimum lead **and** has a higher PR-AUC
(ties keep the champion: a swap must buy something). A first champion needs no
comparison. ``--force`` promotes anyway; the promotion record (table, who, forced or
not) goes on the MLflow model version (tag ``promotion``) and to the audit trail
(``model_change``).

**Following the champion** (:class:`ChampionWatcher`): the demo and the stream, with
``PRECOVERY_MLFLOW__CHAMPION=true``, load ``models:/failure-risk@champion`` at start and
check every ``poll_s`` for a new one; a new champion is loaded off the hot path and
swapped in between two batches (the engine's lock), so no event is dropped or scored
twice, and the swap is audited.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.training.evaluation import baseline_scores, judge
from predictor.errors import ModelError, PrecoveryError, ValidationError
from predictor.events import ms_to_iso, parse_ts
from predictor.labels import make_labels
from predictor.risk import RiskModel

logger = logging.getLogger(__name__)

#: Share of the time range before the evaluation window when no ``from`` is given.
FIT_FRACTION = 0.3


def evaluate_history(
    models: dict[str, RiskModel],
    telemetry: Path,
    incidents_path: Path,
    from_ms: int | None = None,
    min_lead_s: float = 120.0,
    alarm_risk: float | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every model, then the baselines, judged on one window: ``(rows, window)``."""
    from pipelines.files.frames import iter_frames
    from pipelines.training.train import (
        TrainConfig,
        build_features,
        check_train_inputs,
        read_incidents,
    )

    if not models:
        raise ValidationError("bad_option", "no model to evaluate")
    first = next(iter(models.values()))
    metrics = tuple(first.metric_names_) or None
    check_train_inputs(telemetry, incidents_path, metrics)
    incidents = read_incidents(incidents_path)
    data = build_features(iter_frames(telemetry), metrics, 3, progress, source=telemetry)
    horizon_s = first.horizon_s
    alarm = TrainConfig().alarm_risk if alarm_risk is None else alarm_risk
    y, keep = make_labels(data.keys, data.ts_ms, incidents, horizon_s)
    order = np.argsort(data.ts_ms, kind="stable")
    order = order[keep[order]]
    x, y, ts = data.x[order], y[order], data.ts_ms[order]
    keys = [data.keys[i] for i in order.tolist()]
    t0, t1 = int(ts[0]), int(ts[-1])
    start = from_ms if from_ms is not None else t0 + int((t1 - t0) * FIT_FRACTION)
    if not t0 < start < t1:
        raise ValidationError(
            "bad_option",
            f"evaluation window from {ms_to_iso(start)} is outside {telemetry}'s time range "
            f"{ms_to_iso(t0)} .. {ms_to_iso(t1)}",
        )
    window = ts >= start
    fit = ts < start
    win_keys = [k for k, w in zip(keys, window.tolist(), strict=True) if w]
    win_ts, win_y = ts[window], y[window]
    purge = int(horizon_s * 1000)
    win_incidents = [i for i in incidents if start + purge <= i.started_ms <= t1]
    rows = []
    for name, model in models.items():
        if list(model.feature_names_) != data.feature_names:
            raise ModelError(
                f"model {name} takes other features than {telemetry} gives "
                f"({len(model.feature_names_)} vs {len(data.feature_names)}): evaluate it on "
                "a history with its metrics"
            )
        risk = model.predict_risk(x[window])
        rows.append(
            judge(name, win_keys, win_ts, win_y, risk, win_incidents, horizon_s, min_lead_s, alarm)
        )
    for name, score in baseline_scores(x[fit], y[fit], x[window], data.feature_names).items():
        rows.append(
            judge(name, win_keys, win_ts, win_y, score, win_incidents, horizon_s, min_lead_s, alarm)
        )
    info = {
        "from": ms_to_iso(start),
        "to": ms_to_iso(t1),
        "rows": int(window.sum()),
        "incidents": len(win_incidents),
        "horizon_s": horizon_s,
        "min_lead_s": min_lead_s,
        "alarm_risk": alarm,
        "data_sha256": (data.source or {}).get("sha256"),
    }
    return rows, info


def beats(candidate: dict[str, Any], champion: dict[str, Any]) -> bool:
    """The promotion rule (module doc).

    >>> beats({"incidents_caught": 5, "pr_auc": 0.4}, {"incidents_caught": 5, "pr_auc": 0.3})
    True
    >>> beats({"incidents_caught": 4, "pr_auc": 0.9}, {"incidents_caught": 5, "pr_auc": 0.3})
    False
    """
    c_auc = candidate.get("pr_auc") or 0.0
    h_auc = champion.get("pr_auc") or 0.0
    return bool(candidate["incidents_caught"] >= champion["incidents_caught"] and c_auc > h_auc)


def promote(
    tracker: Any,
    version: str | None,
    telemetry: Path,
    incidents: Path,
    force: bool = False,
    actor: str = "cli",
    min_lead_s: float = 120.0,
    from_ts: str | None = None,
    audit: Any = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Promote ``version`` (default: the latest) to ``@champion`` if it beats the champion.

    Returns the record: ``promoted`` (bool), ``candidate``, ``champion`` (the version it
    was compared with, None for a first champion), ``forced``, ``reason``, ``window`` and
    ``evaluation`` (the table).
    """
    version = version or tracker.latest_version()
    if version is None:
        raise ModelError(f"no version of {tracker.name!r} in {tracker.uri}: train one first")
    cand_mv = tracker.version(version)
    champ_mv = tracker.champion()
    champ_version = None if champ_mv is None else str(champ_mv.version)
    record: dict[str, Any] = {
        "candidate": str(version),
        "champion": champ_version,
        "forced": force,
        "actor": actor,
    }
    if champ_version == str(version):
        return {**record, "promoted": False, "reason": f"version {version} is already champion"}
    start = from_ts or (cand_mv.tags or {}).get("test.from")
    from_ms = parse_ts(start) if start else None
    models = {f"v{version}": tracker.load(str(version))}
    if champ_version is not None:
        models[f"v{champ_version} (champion)"] = tracker.load(champ_version)
    rows, window = evaluate_history(
        models, telemetry, incidents, from_ms, min_lead_s, progress=progress
    )
    record.update({"window": window, "evaluation": _public(rows)})
    if champ_version is None:
        ok, reason = True, "first champion"
    elif beats(rows[0], rows[1]):
        ok, reason = True, "beats the champion on the same window"
    else:
        ok, reason = (
            False,
            (
                f"does not beat champion v{champ_version} on the same window (caught "
                f"{rows[0]['incidents_caught']} vs {rows[1]['incidents_caught']}, PR-AUC "
                f"{_f(rows[0]['pr_auc'])} vs {_f(rows[1]['pr_auc'])})"
            ),
        )
    if not ok and force:
        ok, reason = True, f"forced by {actor}: {reason}"
    record.update({"promoted": ok, "reason": reason})
    if ok:
        tracker.set_champion(str(version), record)
        _audit(audit, actor, f"{tracker.name}/{version}", champ_version, reason, record)
    return record


def _audit(
    audit: Any, actor: str, new: str, old: str | None, reason: str, record: dict[str, Any]
) -> None:
    try:
        from pipelines.records.audit import model_changed
    except ImportError:  # pragma: no cover - the audit trail ships with the service
        return
    details = {k: record[k] for k in ("forced", "evaluation", "window") if k in record}
    model_changed(audit, actor, new, old, reason, **details)


def _public(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from pipelines.training.evaluation import public

    return public(rows)


def _f(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}"


class ChampionWatcher:
    """Polls the registry for a new ``@champion`` and hands it to ``swap`` (a thread).

    ``swap(model, label)`` is called with the loaded RiskModel and ``failure-risk/<v>``;
    it must apply the model between batches (``LiveState.set_model`` does). A failure to
    reach MLflow or to load is logged and retried at the next poll: the stream keeps
    its current model.
    """

    def __init__(
        self,
        tracker: Any,
        swap: Callable[[RiskModel, str], None],
        poll_s: float = 30.0,
        current: str | None = None,
    ) -> None:
        self.tracker = tracker
        self.swap = swap
        self.poll_s = poll_s
        self.current = current
        self.swaps = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="champion-watch", daemon=True)

    def start(self) -> ChampionWatcher:
        self._thread.start()
        return self

    def check(self) -> bool:
        """One poll; True when a new champion was swapped in."""
        try:
            mv = self.tracker.champion()
            if mv is None or str(mv.version) == self.current:
                return False
            model = self.tracker.load(str(mv.version))
            label = f"{self.tracker.name}/{mv.version}"
            self.swap(model, label)
        except (PrecoveryError, OSError) as exc:
            self.last_error = str(exc)
            logger.warning("champion check failed (keeping the current model): %s", exc)
            return False
        logger.info("swapped to champion %s (was %s)", label, self.current)
        self.current = str(mv.version)
        self.swaps += 1
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.check()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)


def load_champion(tracker: Any) -> tuple[RiskModel, str]:
    """The current ``@champion`` and its version (ModelError when there is none)."""
    mv = tracker.champion()
    if mv is None:
        raise ModelError(
            f"PRECOVERY_MLFLOW__CHAMPION is on but {tracker.name!r} has no @champion in "
            f"{tracker.uri}: train and promote one (docs/retraining.md)"
        )
    return tracker.load(str(mv.version)), str(mv.version)


def follow_champion(
    tracker: Any,
    set_model: Callable[[RiskModel], None],
    current: RiskModel,
    current_version: str,
    audit: Any = None,
    actor: str = "stream",
    poll_s: float = 30.0,
) -> ChampionWatcher:
    """Start a :class:`ChampionWatcher` that swaps through ``set_model`` and audits it."""
    state = {"version": current.version}

    def swap(model: RiskModel, label: str) -> None:
        model.compiled_trees()  # compiled here, in the watcher's thread, not in a tick
        set_model(model)
        _audit(audit, actor, model.version, state["version"], "new champion", {})
        state["version"] = model.version

    return ChampionWatcher(tracker, swap, poll_s, current=current_version).start()
