"""Where each system runs: its active site, and the failovers already applied.

A system starts on its topology's primary site (index 0 of
:meth:`~predictor.topology.Topology.sites`) and flips to the other one at every
failover carried out (:meth:`Sites.fail_over`). A failover applied by an approved
recommendation carries that recommendation's ``epoch``: one at or below the system's
last failover epoch was applied already (a command read again after a restart, a
decision repeated), so applying it again leaves the site as it is.

Recommendations and situation reports name the site a system runs on now
(:meth:`Sites.name`) and the one it would fail over to.

>>> from predictor.registry import Registry
>>> from predictor.topology import Topology
>>> sites = Sites(Registry({}, {}), Topology.from_mapping({}, "example"))
>>> sites.active_site("eq-oms")
Traceback (most recent call last):
...
predictor.errors.UnknownEntityError: unknown system 'eq-oms': not seen nor declared
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from predictor.errors import ConfigError, UnknownEntityError
from predictor.registry import Registry, grow
from predictor.topology import Topology

logger = logging.getLogger(__name__)

#: Version of the ``sites`` part of the engine's snapshot (active site per system, the
#: failover epochs, the topology).
SNAPSHOT_VERSION = 1


class Sites:
    """Active site and last failover epoch per system (dense system indices).

    Parameters
    ----------
    registry
        Who is tracked: a system seen first here (declared, never reported) is
        registered.
    topology
        The declared systems and their sites.
    """

    def __init__(self, registry: Registry, topology: Topology) -> None:
        self.registry = registry
        self.topology = topology
        #: Active site per system: 0 its primary site, 1 its standby (see fail_over).
        self.active = np.zeros(8, dtype=np.int8)
        #: Epoch of the recommendation behind each system's last failover (0: none): a
        #: failover command carrying an epoch at or below it was applied already.
        self.epoch = np.zeros(8, dtype=np.int64)

    def ensure(self, n: int) -> None:
        """Room for ``n`` systems (new ones on their primary site, no failover)."""
        self.active = grow(self.active, n, 0)
        self.epoch = grow(self.epoch, n, 0)

    def knows(self, system: str) -> bool:
        """Whether ``system`` has been seen (telemetry, positions) or is declared."""
        return system in self.registry.system or system in self.topology.systems

    def index(self, system: str) -> int:
        """The dense index of ``system``, registering a declared one not seen yet.

        Raises :class:`UnknownEntityError` for a system neither seen nor declared.
        """
        if not self.knows(system):
            raise UnknownEntityError(f"unknown system {system!r}: not seen nor declared")
        s = self.registry.system_index(system)
        self.ensure(self.registry.n_systems)
        return s

    def name(self, s: int, standby: bool = False) -> str:
        """The site system index ``s`` runs on now (``standby``: the other one)."""
        active = int(self.active[s])
        return self.topology.sites(self.registry.system_names[s])[1 - active if standby else active]

    def active_site(self, system: str) -> str:
        """The site ``system`` runs on now (its topology's primary until a failover)."""
        return self.name(self.index(system))

    def failover_epoch(self, system: str) -> int:
        """Epoch of the recommendation behind ``system``'s last failover (0: none)."""
        return int(self.epoch[self.index(system)])

    def fail_over(self, system: str, epoch: int | None = None) -> str:
        """Flip ``system``'s active site, once per ``epoch`` where given; the site now."""
        s = self.index(system)
        if epoch is not None:
            if epoch <= int(self.epoch[s]):
                return self.name(s)
            self.epoch[s] = epoch
        self.active[s] = 1 - int(self.active[s])
        site = self.name(s)
        logger.info("%s failed over: active site now %s", system, site)
        return site

    def snapshot(self, n: int) -> dict[str, Any]:
        """The first ``n`` systems' sites, with the topology that names them."""
        return {
            "version": SNAPSHOT_VERSION,
            "active": self.active[:n],
            "epoch": self.epoch[:n],
            "topology": self.topology.as_dict(),
        }

    def restore(self, snap: Mapping[str, Any] | None) -> None:
        """The sites of ``snap`` (None, an older snapshot without the part: every system
        on its primary site; without ``epoch``, which came later in the same layout: no
        failover applied by epoch)."""
        check_version(snap)
        snap = snap or {"active": []}
        self.active = grow(np.asarray(snap["active"], dtype=np.int8), 8, 0)
        self.epoch = grow(np.asarray(snap.get("epoch", []), dtype=np.int64), 8, 0)


def check_version(snap: Mapping[str, Any] | None) -> None:
    """Refuse a ``sites`` part of a layout this release does not know, by name."""
    if snap and snap.get("version") != SNAPSHOT_VERSION:
        raise ConfigError(
            f"engine snapshot part 'sites' version {snap.get('version')!r} is not "
            f"{SNAPSHOT_VERSION}; remove the checkpoint directory to start afresh"
        )


def written_topology(snap: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The topology a ``sites`` part was written with (empty: none, an older snapshot);
    refuses another layout by name (:func:`check_version`)."""
    check_version(snap)
    return (snap or {}).get("topology") or {}
