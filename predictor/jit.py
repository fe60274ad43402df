"""Compiled kernels: numba's ``njit`` with the project's settings, in one place.

The stream's hot loops (the detector, the features, the risk model's trees) walk rows
one at a time per entity. As numpy they pay a fixed cost per call of tens of small array
operations, so a partition-sized tick (~100 rows) costs nearly as much as a 5,000-row
batch; as one compiled loop over the rows they cost a few microseconds a row and almost
nothing per call (issue 8's Kafka ratio, issue 11's training time).

Settings, and why:

- ``cache=True``: the machine code is written next to the module (``__pycache__``, or
  numba's user-wide cache where that is read-only), so only the first process after an
  install or a change pays the compile (seconds); the others load it.
- ``nogil=True``: a kernel releases the GIL, so the HTTP server and the Kafka client's
  threads keep running while a tick is scored.
- ``error_model="numpy"``: a division by zero gives ``inf``/``nan`` as in numpy, never a
  Python ``ZeroDivisionError`` from inside the stream.
- no ``fastmath``: IEEE semantics (NaN means "absent" throughout; reassociation would let
  results differ from the numpy reference beyond rounding).

Each kernel is pinned by a test to the numpy definition it replaced (outputs recorded
from that code, or recomputed by it), within float rounding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numba

F = TypeVar("F", bound=Callable[..., Any])


def kernel(fn: F) -> F:
    """``fn`` compiled by numba with the settings above (lazily, on its first call)."""
    return numba.njit(cache=True, nogil=True, error_model="numpy")(fn)  # type: ignore[return-value]
