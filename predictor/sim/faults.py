"""Broken input, on purpose: what real feeds get wrong, for demos and stream tests.

>>> ev = {"ts": 1767571200000, "system": "s", "component": "c", "host": "h",
...       "metrics": {"cpu_pct": 1.0}}
>>> [bad_message(i, ev, DEMO_KINDS)[0] for i in range(4)]
['malformed_json', 'wrong_type', 'non_finite', 'missing_field']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

#: The rotation the embedded demo plays.
DEMO_KINDS = ("malformed_json", "wrong_type", "non_finite", "missing_field")
#: The rotation ``simulate --to-kafka --bad-every N`` produces.
KAFKA_KINDS = ("malformed_json", "wrong_type", "missing_field", "too_large")


def bad_message(
    i: int, ev: dict[str, Any], kinds: Sequence[str], max_bytes: int = 64 * 1024
) -> tuple[str, bytes]:
    """The ``i``-th broken message of a rotation: (the reason it should be rejected, bytes)."""
    kind = kinds[i % len(kinds)]
    if kind == "malformed_json":
        return kind, orjson.dumps(ev)[:-7]  # truncated
    if kind == "wrong_type":
        return kind, orjson.dumps({**ev, "metrics": {"cpu_pct": "high"}})
    if kind == "non_finite":
        return kind, orjson.dumps(ev).replace(b'"cpu_pct":', b'"cpu_pct":NaN,"x":', 1)
    if kind == "missing_field":
        return kind, orjson.dumps({k: v for k, v in ev.items() if k != "host"})
    if kind == "too_large":
        return kind, orjson.dumps({**ev, "note": "x" * (max_bytes + 1)})
    raise ValueError(f"unknown kind of bad message {kind!r}")
