"""Topology of the simulated trading fleet: systems, components and hosts.

A *system* (``eq-oms``) trades on one venue and is made of *components*
(``order-gateway``, ``database`` ...), each running on one to three *hosts*. An
:class:`Entity` is one (system, component, host) triple: the unit that emits telemetry.

>>> fleet = build_fleet()
>>> [s.name for s in fleet.systems]
['eq-oms', 'fx-pricing', 'md-feed']
>>> fleet.entities[0].host
'eq-oms-order-gateway-01'
>>> len(build_fleet(copies=2, hosts_per_component=1).entities)
34
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

__all__ = [
    "KINDS",
    "ComponentSpec",
    "Entity",
    "Fleet",
    "SystemSpec",
    "build_fleet",
]

#: Every component kind the simulator knows a baseline for.
KINDS: tuple[str, ...] = (
    "order-gateway",
    "risk-engine",
    "matching-engine",
    "pricing-engine",
    "feed-handler",
    "normalizer",
    "publisher",
    "database",
    "reporting",
)


@dataclass(frozen=True)
class ComponentSpec:
    """One component of a system.

    Parameters
    ----------
    name : str
        Component name, unique within its system (``order-gateway``).
    kind : str
        Which baseline and failure modes apply; one of :data:`KINDS`.
    hosts : int
        Number of hosts running the component.
    critical : bool
        Whether the system is down when this component is down (health roll-up).
    """

    name: str
    kind: str
    hosts: int
    critical: bool


@dataclass(frozen=True)
class SystemSpec:
    """One trading system.

    Parameters
    ----------
    name : str
        System name (``eq-oms``, ``eq-oms-002`` for a copy).
    template : str
        Name of the template it was built from.
    venue : str
        Venue whose sessions drive its load and positions.
    description : str
        One line for humans.
    components : tuple of ComponentSpec
        Its components, in a stable order.
    """

    name: str
    template: str
    venue: str
    description: str
    components: tuple[ComponentSpec, ...]


@dataclass(frozen=True)
class Entity:
    """One emitter of telemetry: a host of a component of a system."""

    system: str
    component: str
    host: str
    kind: str


@dataclass(frozen=True)
class Fleet:
    """The simulated fleet.

    Parameters
    ----------
    systems : tuple of SystemSpec
        All systems, templates first, copies after.
    entities : tuple of Entity
        All (system, component, host) triples in a stable order; telemetry rows follow it.
    venues : tuple of str
        Distinct venues, in order of first use.
    system_venue : dict of str to str
        Venue of each system.
    """

    systems: tuple[SystemSpec, ...]
    entities: tuple[Entity, ...]
    venues: tuple[str, ...]
    system_venue: dict[str, str] = field(compare=False, hash=False)
    _by_name: dict[str, SystemSpec] = field(compare=False, hash=False, repr=False)

    def system(self, name: str) -> SystemSpec:
        """Return the system called ``name`` (``KeyError`` if unknown)."""
        return self._by_name[name]

    def components_of(self, system: str) -> tuple[ComponentSpec, ...]:
        """Return the components of ``system``.

        >>> [c.name for c in build_fleet().components_of("md-feed")]
        ['feed-handler', 'normalizer', 'publisher', 'database', 'reporting']
        """
        return self._by_name[system].components

    def is_critical(self, system: str, component: str) -> bool:
        """Return whether ``component`` is critical to ``system``."""
        for c in self._by_name[system].components:
            if c.name == component:
                return c.critical
        raise KeyError(f"{system}/{component}")

    def hosts_of(self, system: str, component: str) -> tuple[str, ...]:
        """Return the host names of one component, in order."""
        for c in self._by_name[system].components:
            if c.name == component:
                return tuple(_host_name(system, c.name, i) for i in range(c.hosts))
        raise KeyError(f"{system}/{component}")


def _c(name: str, hosts: int, critical: bool) -> ComponentSpec:
    return ComponentSpec(name=name, kind=name, hosts=hosts, critical=critical)


# Host counts sum to 38 entities for one copy, the "about 40" default fleet.
_TEMPLATES: tuple[SystemSpec, ...] = (
    SystemSpec(
        name="eq-oms",
        template="eq-oms",
        venue="XNYS",
        description="equities order management",
        components=(
            _c("order-gateway", 3, True),
            _c("risk-engine", 3, True),
            _c("matching-engine", 2, True),
            _c("feed-handler", 2, False),
            _c("database", 2, True),
            _c("reporting", 1, False),
        ),
    ),
    SystemSpec(
        name="fx-pricing",
        template="fx-pricing",
        venue="FX-EBS",
        description="FX pricing and streaming",
        components=(
            _c("pricing-engine", 3, True),
            _c("order-gateway", 3, True),
            _c("feed-handler", 2, True),
            _c("risk-engine", 2, True),
            _c("database", 2, False),
            _c("reporting", 1, False),
        ),
    ),
    SystemSpec(
        name="md-feed",
        template="md-feed",
        venue="XNAS",
        description="market data distribution",
        components=(
            _c("feed-handler", 3, True),
            _c("normalizer", 3, True),
            _c("publisher", 3, True),
            _c("database", 2, False),
            _c("reporting", 1, False),
        ),
    ),
)


def _host_name(system: str, component: str, i: int) -> str:
    return f"{system}-{component}-{i + 1:02d}"


def build_fleet(copies: int = 1, hosts_per_component: int | None = None) -> Fleet:
    """Build the fleet from the system templates.

    Parameters
    ----------
    copies : int, default 1
        How many times every template is instantiated. Copy 1 keeps the template name,
        copy ``i`` > 1 is suffixed ``-{i:03d}`` (``eq-oms-002``). One copy has 17
        components, so ``copies=196, hosts_per_component=3`` gives 9,996 entities.
    hosts_per_component : int, optional
        Force every component onto this many hosts (default: the template's 1-3).

    Returns
    -------
    Fleet
    """
    if copies < 1:
        raise ValueError(f"copies must be >= 1, got {copies}")
    if hosts_per_component is not None and hosts_per_component < 1:
        raise ValueError(f"hosts_per_component must be >= 1, got {hosts_per_component}")
    systems: list[SystemSpec] = []
    for i in range(1, copies + 1):
        for t in _TEMPLATES:
            name = t.name if i == 1 else f"{t.name}-{i:03d}"
            comps = tuple(
                ComponentSpec(c.name, c.kind, hosts_per_component or c.hosts, c.critical)
                for c in t.components
            )
            systems.append(SystemSpec(name, t.template, t.venue, t.description, comps))
    entities = tuple(
        Entity(s.name, c.name, _host_name(s.name, c.name, h), c.kind)
        for s in systems
        for c in s.components
        for h in range(c.hosts)
    )
    venues = tuple(dict.fromkeys(s.venue for s in systems))
    logger.debug("built fleet: %d systems, %d entities", len(systems), len(entities))
    return Fleet(
        systems=tuple(systems),
        entities=entities,
        venues=venues,
        system_venue={s.name: s.venue for s in systems},
        _by_name={s.name: s for s in systems},
    )
