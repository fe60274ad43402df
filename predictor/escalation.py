"""When a proposed action becomes a recommendation: confirm, hold, and sticky failovers.

Per component, at each decision tick:

- **confirm**: a forecast failover (``failover_at_window`` or ``failover_now`` proposed by
  the policy) must be proposed for ``confirm_s`` before it is recommended; until then it
  is ``prepare_standby``. The heartbeat rule (a dead component) is never delayed.
- **escalate at once**: a more urgent action than the current one is emitted now.
- **hold**: a less urgent one is emitted only after it has held for ``hold_s``.
- **sticky failover**: after a failover recommendation, only an all-clear (``none`` or
  ``watch``) de-escalates; a dip to ``prepare_standby`` is no reason to undo a switch.

>>> esc = Escalation()
>>> esc.ensure(1)
>>> import numpy as np
>>> dead = np.array([False])
>>> esc.step(np.array([4], dtype=np.int8), dead, 0, confirm_s=60, hold_s=300)[0].tolist()
[True]
>>> esc.action[:1].tolist()  # an unconfirmed failover is prepare_standby first
[2]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from predictor.policy import AT_WINDOW, PREPARE, WATCH
from predictor.registry import grow

SNAPSHOT_VERSION = 1


class Escalation:
    """Current action per component and the clocks of its pending changes."""

    def __init__(self) -> None:
        self.action = np.zeros(16, dtype=np.int8)
        self.lower_since = np.full(16, -1, dtype=np.int64)
        self.fail_since = np.full(16, -1, dtype=np.int64)

    def ensure(self, n: int) -> None:
        self.action = grow(self.action, n, 0)
        self.lower_since = grow(self.lower_since, n, -1)
        self.fail_since = grow(self.fail_since, n, -1)

    def step(
        self,
        proposed: np.ndarray,
        dead: np.ndarray,
        t_ms: int,
        confirm_s: float,
        hold_s: float,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Apply the rules at tick ``t_ms``; returns (emit mask, the actions to emit).

        ``proposed`` and ``dead`` have one entry per component. The emitted components'
        current action becomes the emitted one.
        """
        nc = len(proposed)
        self.ensure(nc)
        fail = proposed >= AT_WINDOW
        fail_since = self.fail_since[:nc]
        fail_since[~fail] = -1
        fail_since[fail & (fail_since < 0)] = t_ms
        unconfirmed = fail & ~dead & (t_ms - fail_since < int(confirm_s * 1000))
        proposed = np.where(unconfirmed, PREPARE, proposed).astype(np.int8)
        current = self.action[:nc]
        up = proposed > current
        down = (proposed < current) & ((current < AT_WINDOW) | (proposed <= WATCH))
        since = self.lower_since[:nc]
        since[~down] = -1
        since[down & (since < 0)] = t_ms
        emit = up | (down & (t_ms - since >= int(hold_s * 1000)))
        current[emit] = proposed[emit]
        since[emit] = -1
        return emit, proposed

    def snapshot(self, n: int) -> dict[str, Any]:
        self.ensure(n)
        return {
            "version": SNAPSHOT_VERSION,
            "action": self.action[:n].copy(),
            "lower_since": self.lower_since[:n].copy(),
            "fail_since": self.fail_since[:n].copy(),
        }

    def restore(self, snap: Mapping[str, Any]) -> None:
        if snap.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"escalation snapshot version {snap.get('version')!r} unsupported")
        self.action = grow(np.array(snap["action"], dtype=np.int8), 16, 0)
        self.lower_since = grow(np.array(snap["lower_since"], dtype=np.int64), 16, -1)
        self.fail_since = grow(np.array(snap["fail_since"], dtype=np.int64), 16, -1)
