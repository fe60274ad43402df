"""SRE alerts to a Prometheus Alertmanager (API v2): fire, re-post while firing, resolve.

:class:`AlertNotifier` is told every recommendation (``observe``) and, on a wall-clock
cadence, brings Alertmanager in step with :func:`predictor.alerts.desired_alerts`
(``sync``): a new alert is posted with ``startsAt``; a firing one is re-posted every
``repeat_s`` with ``endsAt`` a few repeats ahead (Alertmanager expires an alert at
``endsAt``, so a notifier that dies lets its alerts lapse instead of firing forever);
an alert that is no longer wanted — or whose severity changed, which changes its labels
— is resolved by posting it with ``endsAt`` = now. Identical labels are one alert in
Alertmanager, so replays and repeats never duplicate a page. Times sent are wall-clock
(Alertmanager compares them with its own clock); the event time of the recommendation
behind an alert is in its ``issued_at`` annotation.

A post that fails (Alertmanager down) is retried at the next ``sync`` with the whole
desired state, so nothing is lost while it is away; errors are counted, never raised
into the stream.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx

from predictor.alerts import Alert, AlertPolicy, desired_alerts
from predictor.errors import SinkError

logger = logging.getLogger(__name__)


def rfc3339(t: float) -> str:
    """Wall-clock seconds as RFC 3339 UTC."""
    return (
        datetime.fromtimestamp(t, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


class AlertmanagerClient:
    """``POST /api/v2/alerts`` with a timeout and a few quick retries."""

    def __init__(
        self,
        url: str,
        timeout_s: float = 5.0,
        retries: int = 2,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.retries = retries
        self._http = httpx.Client(timeout=timeout_s, transport=transport)

    def post(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        """Post alerts; raises :class:`SinkError` when every try failed."""
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            try:
                resp = self._http.post(f"{self.url}/api/v2/alerts", json=list(alerts))
                if resp.status_code < 300:
                    return
                last = SinkError(f"Alertmanager answered {resp.status_code}: {resp.text[:200]}")
                if resp.status_code < 500:
                    break  # a 4xx will not get better by retrying
            except httpx.HTTPError as exc:
                last = exc
            time.sleep(min(2.0, 0.2 * 2**attempt))
        raise SinkError(f"posting {len(alerts)} alerts to {self.url} failed: {last}") from last

    def alerts(self, active: bool = True) -> list[dict[str, Any]]:
        """``GET /api/v2/alerts`` (what Alertmanager holds now)."""
        params = {"active": str(active).lower(), "silenced": "true", "inhibited": "true"}
        resp = self._http.get(f"{self.url}/api/v2/alerts", params=params)
        resp.raise_for_status()
        out: list[dict[str, Any]] = resp.json()
        return out

    def close(self) -> None:
        self._http.close()


class AlertNotifier:
    """Keeps Alertmanager in step with the recommendations it is shown.

    Parameters
    ----------
    client
        Where alerts go.
    policy
        Dollar thresholds of the severity mapping.
    link
        URL prefix of a system's page; the system name is appended.
    repeat_s
        Re-post a firing alert this often (wall seconds); Alertmanager lets it expire
        ``3 × repeat_s`` after the last post.
    clock
        Wall-clock seconds (injectable for tests).
    """

    def __init__(
        self,
        client: AlertmanagerClient,
        policy: AlertPolicy | None = None,
        link: str = "",
        repeat_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.policy = policy or AlertPolicy()
        self.link = link
        self.repeat_s = repeat_s
        self._clock = clock
        self._lock = threading.Lock()
        self._latest: dict[tuple[str, str], Mapping[str, Any]] = {}
        #: key -> (alert as last posted, startsAt, last post time)
        self._firing: dict[tuple[str, str], tuple[Alert, float, float]] = {}
        self.counts: Counter[str] = Counter()

    def observe(self, recs: Iterable[Mapping[str, Any]]) -> None:
        """Note recommendations (the latest per component is the component's state)."""
        with self._lock:
            for rec in recs:
                self._latest[(rec["system"], rec["component"])] = rec

    def firing(self) -> list[Alert]:
        with self._lock:
            return [a for a, _, _ in self._firing.values()]

    def sync(self, conditions: Sequence[str] = ()) -> int:
        """Post what changed (and what is due for a repeat); returns alerts posted."""
        now = self._clock()
        with self._lock:
            want = {
                a.key: a
                for a in desired_alerts(self._latest.values(), conditions, self.policy, self.link)
            }
            payload: list[dict[str, Any]] = []
            fired: dict[tuple[str, str], tuple[Alert, float, float]] = {}
            resolved = 0
            for key, (old, starts, _posted) in self._firing.items():
                new = want.get(key)
                if new is None or new.labels != old.labels:
                    payload.append(self._wire(old, starts, ends=now))
                    resolved += 1
            for key, alert in want.items():
                prev = self._firing.get(key)
                if prev is not None and prev[0].labels == alert.labels:
                    starts, posted = prev[1], prev[2]
                    if alert == prev[0] and now - posted < self.repeat_s:
                        fired[key] = prev
                        continue
                else:
                    starts = now
                payload.append(self._wire(alert, starts, ends=now + 3 * self.repeat_s))
                fired[key] = (alert, starts, now)
        if not payload:
            return 0
        try:
            self.client.post(payload)
        except SinkError as exc:
            self.counts["failed"] += 1
            logger.warning("alerts not delivered (retried at the next sync): %s", exc)
            return 0
        with self._lock:
            self._firing = fired
        self.counts["posted"] += len(payload) - resolved
        self.counts["resolved"] += resolved
        logger.info("alerts: %d posted, %d resolved", len(payload) - resolved, resolved)
        return len(payload)

    def _wire(self, alert: Alert, starts: float, ends: float) -> dict[str, Any]:
        body: dict[str, Any] = {
            "labels": alert.labels,
            "annotations": alert.annotations,
            "startsAt": rfc3339(starts),
            "endsAt": rfc3339(ends),
        }
        console = alert.annotations.get("console")
        if console:
            body["generatorURL"] = console
        return body

    def run(
        self,
        stop: threading.Event,
        interval_s: float = 5.0,
        conditions: Callable[[], Sequence[str]] = lambda: (),
    ) -> None:
        """Sync every ``interval_s`` until ``stop``; once more on the way out."""
        while not stop.wait(interval_s):
            try:
                self.sync(conditions())
            except Exception:  # the notifier must not die of one bad sync
                logger.exception("alert sync failed")
        self.sync(conditions())
