"""The declared topology: systems, their components, venues, sites and authority.

A pure value parsed from a mapping (the file is read at the edge, by
:mod:`pipelines.files.topology`; the format is in docs/decisions.md). Every error names the
field by its path (``systems.eq-oms.authority.max_gross_usd``) and the value.

- **criticality** per component, in [0, 1]: the share of the system's outage loss that a
  failure of this component causes (1: the system stops trading; 0.2: reporting lags).
  A component is *critical* for the health roll-up when its criticality is ≥ 0.5.
- **venue** per system, optionally overridden per component (a gateway that trades
  another venue): the market whose conditions price that component's decisions.
- **primary_site / standby_site** per system: the names ``Engine.fail_over`` flips.
- **authority** per system: ``approve`` (a person approves every failover) or ``auto``
  with limits (``max_gross_usd``, ``max_net_usd``, ``max_open_orders``; absent = no limit):
  the orchestrator may act alone only while every limit holds.

Without a topology every component is critical with criticality 1, sites are
``primary``/``standby`` and authority is ``approve`` (the safe default).

>>> t = Topology.from_mapping({"systems": {"eq-oms": {
...     "venue": "XNYS", "primary_site": "ny4", "standby_site": "ch2",
...     "authority": {"mode": "auto", "max_gross_usd": 5e7},
...     "components": {"order-gateway": {"criticality": 1.0},
...                    "reporting": {"criticality": 0.1}}}}})
>>> t.criticality("eq-oms", "reporting"), t.critical_map()[("eq-oms", "reporting")]
(0.1, False)
>>> t.systems["eq-oms"].authority.mode, t.sites("eq-oms")
('auto', ('ny4', 'ch2'))
>>> Topology.from_mapping({"systems": {"x": {"authority": {"mode": "sometimes"}}}})
Traceback (most recent call last):
...
predictor.errors.ConfigError: topology: systems.x.authority.mode must be 'auto' or ...
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from predictor.errors import ConfigError

#: Criticality at or above which a component counts as critical in the health roll-up.
CRITICAL_AT = 0.5
DEFAULT_SITES = ("primary", "standby")
AUTHORITY_MODES = ("auto", "approve")
LIMIT_FIELDS = ("max_gross_usd", "max_net_usd", "max_open_orders")


@dataclass(frozen=True, slots=True)
class Authority:
    """Who may fail a system over: ``approve``, or ``auto`` within the limits (USD, count)."""

    mode: str = "approve"
    max_gross_usd: float | None = None
    max_net_usd: float | None = None
    max_open_orders: float | None = None

    def limits(self) -> dict[str, float]:
        return {k: v for k in LIMIT_FIELDS if (v := getattr(self, k)) is not None}


@dataclass(frozen=True, slots=True)
class ComponentTopo:
    criticality: float = 1.0
    venue: str | None = None


@dataclass(frozen=True, slots=True)
class SystemTopo:
    venue: str | None = None
    primary_site: str = DEFAULT_SITES[0]
    standby_site: str = DEFAULT_SITES[1]
    authority: Authority = field(default_factory=Authority)
    components: Mapping[str, ComponentTopo] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Topology:
    """Systems by name; anything not declared takes the defaults above."""

    systems: Mapping[str, SystemTopo] = field(default_factory=dict)

    # -- queries ----------------------------------------------------------------------
    def system(self, name: str) -> SystemTopo:
        return self.systems.get(name) or _DEFAULT_SYSTEM

    def criticality(self, system: str, component: str) -> float:
        comp = self.system(system).components.get(component)
        return comp.criticality if comp is not None else 1.0

    def sites(self, system: str) -> tuple[str, str]:
        s = self.system(system)
        return s.primary_site, s.standby_site

    def critical_map(self) -> dict[tuple[str, str], bool]:
        """``(system, component) -> critical?`` for the engine's health roll-up."""
        return {
            (s, c): comp.criticality >= CRITICAL_AT
            for s, sys in self.systems.items()
            for c, comp in sys.components.items()
        }

    def system_venues(self) -> dict[str, str]:
        return {s: sys.venue for s, sys in self.systems.items() if sys.venue}

    def component_venue(self, system: str, component: str) -> str | None:
        comp = self.system(system).components.get(component)
        return comp.venue if comp is not None else None

    def merged_with_defaults(
        self,
        critical: Mapping[tuple[str, str], bool] | None,
        system_venue: Mapping[str, str] | None,
    ) -> tuple[dict[tuple[str, str], bool], dict[str, str]]:
        """The engine's ``critical`` and ``system_venue`` maps: the topology wins."""
        crit = dict(critical or {})
        crit.update(self.critical_map())
        venues = dict(system_venue or {})
        venues.update(self.system_venues())
        return crit, venues

    # -- parsing ----------------------------------------------------------------------
    @classmethod
    def from_mapping(cls, data: Any, source: str = "topology") -> Topology:
        """Parse and validate; raises :class:`ConfigError` naming the field and value."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: the top level must be a mapping with 'systems'")
        _no_extra(data, ("systems",), "", source)
        systems_raw = data.get("systems", {})
        if not isinstance(systems_raw, Mapping):
            raise ConfigError(f"{source}: systems must be a mapping of system name to system")
        systems = {}
        for name, raw in systems_raw.items():
            systems[str(name)] = _system(raw, f"systems.{name}", source)
        return cls(systems)

    def as_dict(self) -> dict[str, Any]:
        """The topology as plain data (the inverse of :meth:`from_mapping`)."""
        out: dict[str, Any] = {}
        for name, s in self.systems.items():
            auth: dict[str, Any] = {"mode": s.authority.mode, **s.authority.limits()}
            comps = {
                c: {"criticality": v.criticality, **({"venue": v.venue} if v.venue else {})}
                for c, v in s.components.items()
            }
            out[name] = {
                **({"venue": s.venue} if s.venue else {}),
                "primary_site": s.primary_site,
                "standby_site": s.standby_site,
                "authority": auth,
                "components": comps,
            }
        return {"systems": out}


_DEFAULT_SYSTEM = SystemTopo()


def _no_extra(raw: Mapping[str, Any], allowed: tuple[str, ...], path: str, source: str) -> None:
    extra = sorted(set(map(str, raw)) - set(allowed))
    if extra:
        where = f"{path}." if path else ""
        raise ConfigError(
            f"{source}: unknown field {where}{extra[0]} (allowed: {', '.join(allowed)})"
        )


def _str(raw: Any, path: str, source: str) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise ConfigError(f"{source}: {path} must be a non-empty string, got {raw!r}")
    return raw


def _number(raw: Any, path: str, source: str, lo: float, hi: float = math.inf) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ConfigError(f"{source}: {path} must be a number, got {raw!r}")
    v = float(raw)
    if not (lo <= v <= hi) or math.isnan(v):
        bound = f"in [{lo:g}, {hi:g}]" if math.isfinite(hi) else f">= {lo:g}"
        raise ConfigError(f"{source}: {path} must be {bound}, got {raw!r}")
    return v


def _system(raw: Any, path: str, source: str) -> SystemTopo:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: {path} must be a mapping, got {raw!r}")
    fields = ("venue", "primary_site", "standby_site", "authority", "components")
    _no_extra(raw, fields, path, source)
    venue = _str(raw["venue"], f"{path}.venue", source) if "venue" in raw else None
    primary = _str(raw.get("primary_site", DEFAULT_SITES[0]), f"{path}.primary_site", source)
    standby = _str(raw.get("standby_site", DEFAULT_SITES[1]), f"{path}.standby_site", source)
    if primary == standby:
        raise ConfigError(
            f"{source}: {path}.standby_site must differ from primary_site, got {standby!r}"
        )
    comps_raw = raw.get("components", {}) or {}
    if not isinstance(comps_raw, Mapping):
        raise ConfigError(f"{source}: {path}.components must be a mapping, got {comps_raw!r}")
    comps = {}
    for cname, craw in comps_raw.items():
        cpath = f"{path}.components.{cname}"
        if craw is None:
            craw = {}
        if isinstance(craw, int | float) and not isinstance(craw, bool):
            craw = {"criticality": craw}  # shorthand: ``database: 0.3``
        if not isinstance(craw, Mapping):
            raise ConfigError(f"{source}: {cpath} must be a mapping, got {craw!r}")
        _no_extra(craw, ("criticality", "venue"), cpath, source)
        crit = _number(craw.get("criticality", 1.0), f"{cpath}.criticality", source, 0.0, 1.0)
        cvenue = _str(craw["venue"], f"{cpath}.venue", source) if "venue" in craw else None
        comps[str(cname)] = ComponentTopo(crit, cvenue)
    authority = _authority(raw.get("authority"), path, source)
    return SystemTopo(venue, primary, standby, authority, comps)


def _authority(raw: Any, path: str, source: str) -> Authority:
    apath = f"{path}.authority"
    if raw is None:
        return Authority()
    if isinstance(raw, str):
        raw = {"mode": raw}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: {apath} must be 'auto', 'approve' or a mapping, got {raw!r}")
    _no_extra(raw, ("mode", *LIMIT_FIELDS), apath, source)
    mode = raw.get("mode", "approve")
    if mode not in AUTHORITY_MODES:
        raise ConfigError(f"{source}: {apath}.mode must be 'auto' or 'approve', got {mode!r}")
    limits = {k: _number(raw[k], f"{apath}.{k}", source, 0.0) for k in LIMIT_FIELDS if k in raw}
    if limits and mode != "auto":
        raise ConfigError(
            f"{source}: {apath}.{next(iter(limits))} is a limit of mode 'auto', but mode is "
            f"{mode!r}"
        )
    return Authority(mode, **limits)


def authority_check(
    auth: Authority, exposure: Mapping[str, Any], stale_context: tuple[str, ...] | list[str] = ()
) -> tuple[str, bool | None, list[str]]:
    """(effective authority, do the auto limits hold?, the limits breached).

    ``auto`` holds only while every limit holds on the exposure the decision used and
    that exposure is fresh; otherwise the effective authority is ``approve``. For a
    declared ``approve``, ``holds`` is None (there are no limits to hold).

    >>> a = Authority("auto", max_gross_usd=5e7)
    >>> authority_check(a, {"net": 1e6, "gross": 6e7, "open_orders": 10})
    ('approve', False, ['gross 60,000,000 USD > max_gross_usd 50,000,000 USD'])
    >>> authority_check(a, {"net": 1e6, "gross": 4e7, "open_orders": 10})
    ('auto', True, [])
    """
    if auth.mode != "auto":
        return "approve", None, []
    breached = []
    for key, field_name, unit in (
        ("gross", "max_gross_usd", " USD"),
        ("net", "max_net_usd", " USD"),
        ("open_orders", "max_open_orders", ""),
    ):
        limit = getattr(auth, field_name)
        value = abs(float(exposure.get(key) or 0.0))
        if limit is not None and value > limit:
            breached.append(f"{key} {value:,.0f}{unit} > {field_name} {limit:,.0f}{unit}")
    breached += [f"{name} stale" for name in stale_context]
    return ("approve" if breached else "auto"), not breached, breached
