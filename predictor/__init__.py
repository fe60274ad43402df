"""Precovery core: pure functions and estimators, no I/O.

Sub-modules: ``events`` (data contracts and validation), ``features`` (per-entity
state), ``detectors`` (online anomaly detectors), ``risk`` (LightGBM failure-risk
model), ``health`` (0-100 scores), ``market`` and ``policy`` (the failover decision),
``engine`` (the full loop over a micro-batch) and ``sim`` (a simulated trading fleet).
"""

from __future__ import annotations

__version__ = "0.1.0"
