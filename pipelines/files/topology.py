"""Read a topology file (YAML or JSON) into the engine's decision configuration.

The file declares the systems (docs/decisions.md has the format and an example) and may
override any cost or policy parameter under ``costs:`` and ``policy:`` (names as in
:class:`~predictor.market.CostConfig` and :class:`~predictor.policy.PolicyConfig`, units
in the names). ``.yaml``/``.yml`` are read as YAML, anything else as JSON. Every error
names the file and the field.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from predictor.config import EngineConfig
from predictor.errors import ConfigError
from predictor.market import CostConfig
from predictor.policy import PolicyConfig
from predictor.topology import Topology


@dataclass(frozen=True, slots=True)
class DecisionFile:
    """What a topology file declares."""

    topology: Topology
    policy: PolicyConfig
    costs: CostConfig


def read_topology(path: Path) -> DecisionFile:
    """Parse ``path``; raises :class:`ConfigError` naming the file and the field."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"topology file {path}: cannot read it ({exc.strerror})") from exc
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # yaml.YAMLError, json.JSONDecodeError
        raise ConfigError(f"topology file {path}: not valid {_kind(path)}: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"topology file {path}: the top level must be a mapping")
    costs = _overrides(CostConfig(), data.pop("costs", None), "costs", path)
    policy = _overrides(PolicyConfig(), data.pop("policy", None), "policy", path)
    topology = Topology.from_mapping(data, f"topology file {path}")
    return DecisionFile(topology, policy, costs)


def with_topology(config: EngineConfig, path: Path | None) -> EngineConfig:
    """``config`` with the topology, policy and costs of ``path`` (None: unchanged)."""
    if path is None:
        return config
    f = read_topology(path)
    return dataclasses.replace(config, topology=f.topology, policy=f.policy, costs=f.costs)


def _kind(path: Path) -> str:
    return "YAML" if path.suffix.lower() in (".yaml", ".yml") else "JSON"


def _overrides(default: Any, raw: Any, section: str, path: Path) -> Any:
    if raw is None:
        return default
    if not isinstance(raw, dict):
        raise ConfigError(f"topology file {path}: {section} must be a mapping, got {raw!r}")
    names = [f.name for f in dataclasses.fields(default)]
    values = {}
    for key, value in raw.items():
        if key not in names:
            raise ConfigError(
                f"topology file {path}: unknown field {section}.{key} (allowed: {', '.join(names)})"
            )
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or not math.isfinite(value) or value < 0:
            raise ConfigError(
                f"topology file {path}: {section}.{key} must be a number >= 0, got {value!r}"
            )
        values[key] = float(value)
    return dataclasses.replace(default, **values)
