"""Who is tracked: hosts (slots), components, systems and venues, each a dense index.

The engine's state is arrays indexed by these numbers; the registry is the one place
that hands them out. Indices only grow (nothing is forgotten in a run), so an index is
stable for the life of the state and across snapshots.

>>> reg = Registry(critical={("s", "db"): False}, system_venue={"s": "XNYS"})
>>> reg.register(("s", "db", "h1")), reg.register(("s", "gw", "h2"))
(0, 1)
>>> reg.comp_keys, reg.comp_critical[:2].tolist(), reg.venue_names
([('s', 'db'), ('s', 'gw')], [False, True], ['XNYS'])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

Key = tuple[str, str, str]

#: Version of :meth:`Registry.snapshot`'s layout.
SNAPSHOT_VERSION = 1


def grow(arr: np.ndarray, size: int, fill: float | int | bool) -> np.ndarray:
    """``arr`` with room for ``size`` rows (doubling), new rows set to ``fill``."""
    if size <= len(arr):
        return arr
    new = np.full((max(size, 2 * len(arr)), *arr.shape[1:]), fill, dtype=arr.dtype)
    new[: len(arr)] = arr
    return new


class Registry:
    """Hosts, components, systems and venues, with their static attributes.

    Parameters
    ----------
    critical
        ``(system, component) -> critical?``; components not named are critical.
    system_venue
        ``system -> venue`` known before any positions arrive.
    """

    def __init__(
        self,
        critical: Mapping[tuple[str, str], bool] | None = None,
        system_venue: Mapping[str, str] | None = None,
    ) -> None:
        self.critical_cfg = dict(critical or {})
        self.system_venue_cfg = dict(system_venue or {})
        self.slot: dict[Key, int] = {}
        self.keys: list[Key] = []
        self.comp: dict[tuple[str, str], int] = {}
        self.comp_keys: list[tuple[str, str]] = []
        self.comp_slots: list[list[int]] = []
        self.system: dict[str, int] = {}
        self.system_names: list[str] = []
        self.venue: dict[str, int] = {}
        self.venue_names: list[str] = []
        self.slot_comp = np.zeros(64, dtype=np.int64)
        self.comp_system = np.zeros(16, dtype=np.int64)
        self.comp_critical = np.ones(16, dtype=bool)
        #: Venue each system's default comes from (-1: none configured).
        self.system_default_venue = np.full(8, -1, dtype=np.int64)

    @property
    def n_entities(self) -> int:
        return len(self.keys)

    @property
    def n_components(self) -> int:
        return len(self.comp_keys)

    @property
    def n_systems(self) -> int:
        return len(self.system_names)

    @property
    def n_venues(self) -> int:
        return len(self.venue_names)

    def register(self, key: Key) -> int:
        """A slot for a new host (and its component and system, when new)."""
        slot = len(self.keys)
        self.slot[key] = slot
        self.keys.append(key)
        system, component, _host = key
        sidx = self.system_index(system)
        ckey = (system, component)
        cidx = self.comp.get(ckey)
        if cidx is None:
            cidx = len(self.comp_keys)
            self.comp[ckey] = cidx
            self.comp_keys.append(ckey)
            self.comp_slots.append([])
            self.comp_system = grow(self.comp_system, cidx + 1, 0)
            self.comp_critical = grow(self.comp_critical, cidx + 1, True)
            self.comp_system[cidx] = sidx
            self.comp_critical[cidx] = self.critical_cfg.get(ckey, True)
        self.comp_slots[cidx].append(slot)
        self.slot_comp = grow(self.slot_comp, slot + 1, 0)
        self.slot_comp[slot] = cidx
        return slot

    def system_index(self, system: str) -> int:
        sidx = self.system.get(system)
        if sidx is None:
            sidx = len(self.system_names)
            self.system[system] = sidx
            self.system_names.append(system)
            self.system_default_venue = grow(self.system_default_venue, sidx + 1, -1)
            venue = self.system_venue_cfg.get(system)
            if venue is not None:
                self.system_default_venue[sidx] = self.venue_index(venue)
        return sidx

    def venue_index(self, venue: str) -> int:
        vidx = self.venue.get(venue)
        if vidx is None:
            vidx = len(self.venue_names)
            self.venue[venue] = vidx
            self.venue_names.append(venue)
        return vidx

    # -- state ------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """The names in index order (everything else is derived from them)."""
        return {
            "version": SNAPSHOT_VERSION,
            "keys": list(self.keys),
            "systems": list(self.system_names),
            "venues": list(self.venue_names),
            "critical": dict(self.critical_cfg),
            "system_venue": dict(self.system_venue_cfg),
        }

    @classmethod
    def from_snapshot(cls, snap: Mapping[str, Any]) -> Registry:
        if snap.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"registry snapshot version {snap.get('version')!r} unsupported")
        reg = cls(snap["critical"], snap["system_venue"])
        for name in snap["venues"]:
            reg.venue_index(name)
        for name in snap["systems"]:
            reg.system_index(name)
        for key in snap["keys"]:
            reg.register((key[0], key[1], key[2]))
        return reg
