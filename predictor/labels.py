"""Labels from incident history, and the metrics operators care about.

A row (an entity's event at time ``t``) is *positive* when an incident on its entity
starts in ``(t, t + H]``; rows inside an incident (``started_at <= t <= resolved_at``)
are left out, since nothing there is a forecast. An incident matches an entity when
system and component match and, if the incident names a host, the host too.

>>> import numpy as np
>>> inc = [Incident("s", "c", None, 1_000_000, 1_600_000)]
>>> y, keep = make_labels([("s", "c", "h")] * 4, np.array([0, 500_000, 1_200_000, 2_000_000]),
...                        inc, horizon_s=600)
>>> y.tolist(), keep.tolist()
([0, 1, 0, 0], [True, True, False, True])
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from predictor.events import parse_ts


@dataclass(frozen=True, slots=True)
class Incident:
    """An incident, times in epoch ms (``resolved_ms`` None if still open)."""

    system: str
    component: str
    host: str | None
    started_ms: int
    resolved_ms: int | None = None
    kind: str = ""
    incident_id: str = ""

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> Incident:
        host = rec.get("host")
        resolved = rec.get("resolved_at")
        return cls(
            system=str(rec["system"]),
            component=str(rec["component"]),
            host=str(host) if isinstance(host, str) and host else None,
            started_ms=parse_ts(rec["started_at"]),
            resolved_ms=parse_ts(resolved) if isinstance(resolved, str) and resolved else None,
            kind=str(rec.get("kind", "")),
            incident_id=str(rec.get("incident_id", "")),
        )


def make_labels(
    keys: Sequence[tuple[str, str, str]],
    ts_ms: np.ndarray,
    incidents: Iterable[Incident],
    horizon_s: float,
) -> tuple[np.ndarray, np.ndarray]:
    """``(y, keep)``: 1 where an incident starts within the horizon; ``keep`` False inside."""
    h = int(horizon_s * 1000)
    by_comp: dict[tuple[str, str], list[Incident]] = defaultdict(list)
    for inc in incidents:
        by_comp[(inc.system, inc.component)].append(inc)
    y = np.zeros(len(keys), dtype=np.int8)
    keep = np.ones(len(keys), dtype=bool)
    groups: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for i, k in enumerate(keys):
        groups[k].append(i)
    for (system, component, host), rows in groups.items():
        idx = np.asarray(rows)
        t = ts_ms[idx]
        for inc in by_comp.get((system, component), ()):
            if inc.host is not None and inc.host != host:
                continue
            y[idx[(t < inc.started_ms) & (t >= inc.started_ms - h)]] = 1
            end = inc.resolved_ms if inc.resolved_ms is not None else np.iinfo(np.int64).max
            keep[idx[(t >= inc.started_ms) & (t <= end)]] = False
    return y, keep


@dataclass(frozen=True, slots=True)
class Alarm:
    """A raised alarm (e.g. a recommendation at or above some action) on a component."""

    system: str
    component: str
    ts_ms: int


def lead_time_report(
    alarms: Sequence[Alarm],
    incidents: Sequence[Incident],
    horizon_s: float,
    min_warning_s: float,
    entity_days: float,
) -> dict[str, Any]:
    """Incidents caught, lead times and false alarms.

    An incident is *caught* by the earliest alarm on its component within the horizon
    before it starts; its lead time is ``started - alarm``. An alarm that precedes no
    incident on its component within the horizon (and is not during one) is *false*.

    >>> inc = [Incident("s", "c", None, 3_600_000, 4_000_000)]
    >>> rep = lead_time_report([Alarm("s", "c", 2_400_000), Alarm("s", "x", 0)], inc,
    ...                        horizon_s=1800, min_warning_s=300, entity_days=1.0)
    >>> rep["caught"], rep["median_lead_time_s"], rep["false_alarms"]
    (1, 1200.0, 1)
    """
    h = int(horizon_s * 1000)
    by_comp: dict[tuple[str, str], list[int]] = defaultdict(list)
    for a in alarms:
        by_comp[(a.system, a.component)].append(a.ts_ms)
    for v in by_comp.values():
        v.sort()
    leads: list[float] = []
    per_incident = []
    for inc in incidents:
        ts = by_comp.get((inc.system, inc.component), [])
        before = [t for t in ts if inc.started_ms - h <= t < inc.started_ms]
        lead = (inc.started_ms - before[0]) / 1000.0 if before else None
        if lead is not None:
            leads.append(lead)
        per_incident.append(
            {
                "incident_id": inc.incident_id,
                "system": inc.system,
                "component": inc.component,
                "kind": inc.kind,
                "lead_time_s": lead,
            }
        )
    false = 0
    inc_by_comp: dict[tuple[str, str], list[Incident]] = defaultdict(list)
    for inc in incidents:
        inc_by_comp[(inc.system, inc.component)].append(inc)
    for comp, ts in by_comp.items():
        for t in ts:
            explained = any(
                (inc.started_ms - h <= t < inc.started_ms)
                or (inc.started_ms <= t <= (inc.resolved_ms or inc.started_ms) + h // 6)
                for inc in inc_by_comp.get(comp, ())
            )
            false += not explained
    caught_n = sum(1 for x in leads if x >= min_warning_s)
    return {
        "incidents": len(incidents),
        "caught": caught_n,
        "caught_any_warning": len(leads),
        "min_warning_s": min_warning_s,
        "recall": caught_n / len(incidents) if incidents else float("nan"),
        "median_lead_time_s": float(np.median(leads)) if leads else None,
        "alarms": len(alarms),
        "false_alarms": false,
        "false_alarms_per_entity_day": false / entity_days if entity_days > 0 else float("nan"),
        "per_incident": per_incident,
    }
