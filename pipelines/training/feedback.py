"""SREs' verdicts (``precovery feedback-export``) folded into the training labels.

Part of :mod:`pipelines.training.train`, which re-exports every name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.training.dataset import Dataset, TrainConfig
from predictor.errors import ValidationError
from predictor.events import parse_ts
from predictor.labels import Incident

#: Weight of a training row that an SRE's ``false_alarm`` verdict covers (others weigh 1).
FALSE_ALARM_WEIGHT = 3.0
FEEDBACK_COLUMNS = ("system", "component", "verdict", "ts")


def apply_feedback(
    data: Dataset, incidents: list[Incident], path: Path, cfg: TrainConfig
) -> list[Incident]:
    """Fold SREs' verdicts (``precovery feedback-export``) into the labels.

    - ``confirmed`` and ``missed`` at time ``ts`` on a component: an incident starting
      at ``ts``, unless the incident history already has one on that component within
      one horizon of it (the history wins: it has the real start time);
    - ``false_alarm`` at ``ts``: that component's rows in the horizon before ``ts`` weigh
      ``FALSE_ALARM_WEIGHT`` in the fit (they are negatives the model got wrong), unless
      an incident follows within the horizon (then the history wins and the verdict is
      counted as overruled);
    - ``acknowledged`` says nothing about the truth and is ignored.

    Sets ``data.weights`` and ``data.weights_note``; returns the incidents to label with.
    """
    try:
        fb = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise ValidationError("bad_file", f"{path}: cannot read feedback labels: {exc}") from exc
    missing = [c for c in FEEDBACK_COLUMNS if c not in fb.columns]
    if missing:
        raise ValidationError(
            "missing_field",
            f"{path}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"(has: {', '.join(map(str, fb.columns))}); expected {', '.join(FEEDBACK_COLUMNS)}",
        )
    h = int(cfg.horizon_s * 1000)
    by_comp: dict[tuple[str, str], list[int]] = {}
    for inc in incidents:
        by_comp.setdefault((inc.system, inc.component), []).append(inc.started_ms)
    comp_of = np.array([f"{k[0]}\x00{k[1]}" for k in data.keys], dtype=object)
    weights = np.ones(len(data.keys))
    added: list[Incident] = []
    note = {"confirmed_added": 0, "missed_added": 0, "false_alarm_rows": 0, "overruled": 0}
    records: list[dict[str, Any]] = fb.to_dict("records")  # type: ignore[assignment]
    for i, rec in enumerate(records, start=1):
        verdict = str(rec["verdict"])
        try:
            t = parse_ts(str(rec["ts"]))
        except (ValidationError, ValueError) as exc:
            raise ValidationError(
                "bad_timestamp", f"{path}: row {i} column ts {rec['ts']!r} does not parse"
            ) from exc
        comp = (str(rec["system"]), str(rec["component"]))
        near = [s for s in by_comp.get(comp, []) if abs(s - t) <= h]
        if verdict in ("confirmed", "missed"):
            if near:
                note["overruled"] += 1
                continue
            added.append(Incident(comp[0], comp[1], None, t, None, f"feedback_{verdict}"))
            by_comp.setdefault(comp, []).append(t)
            note[f"{verdict}_added"] += 1
        elif verdict == "false_alarm":
            if any(t <= s <= t + h for s in by_comp.get(comp, [])):
                note["overruled"] += 1
                continue
            hit = (comp_of == f"{comp[0]}\x00{comp[1]}") & (data.ts_ms >= t - h) & (data.ts_ms <= t)
            weights[hit] = FALSE_ALARM_WEIGHT
            note["false_alarm_rows"] += int(hit.sum())
        elif verdict != "acknowledged":
            raise ValidationError(
                "bad_value",
                f"{path}: row {i} column verdict {verdict!r}: expected confirmed, missed, "
                "false_alarm or acknowledged",
            )
    data.weights = weights
    data.weights_note = {"file": str(path), "false_alarm_weight": FALSE_ALARM_WEIGHT, **note}
    return incidents + added
