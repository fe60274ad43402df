"""What the audit trail costs the stream loop, next to the delivery outbox, in one run.

    .venv/bin/python benchmarks/bench_audit.py [--batches 200] [--per-batch 20] [--repeats 5]

The stream thread hands each batch's recommendations to the audit (``AuditLog
.recommendations``: a queue put per record; JSON and SQL happen on the writer thread) and,
with a push configured, to the outbox (``Outbox.add``: one synchronous SQLite transaction
with ``synchronous=FULL``, the baseline already on that thread). Both get the same
realistic recommendations.v1 records (about 1.6 KB of JSON each). Reported, medians over
``--repeats``: the stream thread's time per batch for each, their ratio, and the audit
writer's sustained rate (records committed per second, from the first put until
``close`` returned: everything on disk).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.outbound.orchestrator import Outbox  # noqa: E402
from pipelines.records.audit import AuditLog, AuditStore, sqlite_url  # noqa: E402


def recommendation(i: int) -> dict[str, Any]:
    return {
        "recommendation_id": f"{i:032x}",
        "epoch": i,
        "issued_at": "2026-01-05T14:03:10.000Z",
        "system": f"sys-{i % 3}",
        "component": "database",
        "action": "failover_at_window",
        "not_before": "2026-01-05T14:05:00.000Z",
        "risk": 0.81,
        "horizon_s": 1800.0,
        "health": 31.5,
        "expected_loss_stay_usd": 412_000.0,
        "expected_cost_switch_usd": 38_000.0,
        "cost_switch_now_usd": 91_000.0,
        "cost_switch_at_window_usd": 38_000.0,
        "outage_loss_usd": 509_000.0,
        "exposure_usd": {"net": 12e6, "gross": 48e6, "open_orders": 140, "as_of": "x" * 24},
        "criticality": 1.0,
        "active_site": "ny4",
        "failover_site": "ch2",
        "authority": "approve",
        "authority_declared": "approve",
        "auto_limits_hold": None,
        "auto_limits_breached": [],
        "stale_context": [],
        "decision_reasons": ["risk 0.81 within 1800 s", "closing auction in 110 s"],
        "market": {
            "venue": "XNYS",
            "session": "continuous",
            "volatility_bps_per_min": 3.2,
            "spread_bps": 1.4,
            "depth_usd": 2.1e6,
            "event_risk": False,
            "window_in_s": 110.0,
        },
        "reasons": [
            {"feature": f"db_lock_wait_ms_slope_{k}", "value": 12.5 * k, "contribution": 0.4}
            for k in range(5)
        ],
        "model_version": "risk-20260105-abc123",
    }


def one_run(batches: int, per_batch: int, folder: Path, run: int) -> dict[str, float]:
    recs = [
        [recommendation(run * 10**7 + b * per_batch + j) for j in range(per_batch)]
        for b in range(batches)
    ]
    outbox = Outbox(folder / f"outbox-{run}.sqlite")
    t0 = time.perf_counter()
    for batch in recs:
        outbox.add(batch)
    outbox_s = time.perf_counter() - t0
    outbox.close()

    log = AuditLog(AuditStore(sqlite_url(folder / f"audit-{run}.sqlite")))
    t0 = time.perf_counter()
    for batch in recs:
        log.recommendations(batch)
    audit_s = time.perf_counter() - t0
    log.close()
    total_s = time.perf_counter() - t0
    n = batches * per_batch
    assert log.written == n, (log.written, n)
    return {
        "outbox_ms_per_batch": 1000 * outbox_s / batches,
        "audit_ms_per_batch": 1000 * audit_s / batches,
        "audit_records_per_s": n / total_s,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--per-batch", type=int, default=20, help="recommendations per batch")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = [one_run(args.batches, args.per_batch, Path(tmp), r) for r in range(args.repeats)]
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(f"{args.batches} batches × {args.per_batch} recommendations, median of {args.repeats}:")
    print("| on the stream thread | ms per batch | vs outbox |")
    print("|---|---:|---:|")
    print(f"| Outbox.add (baseline) | {med['outbox_ms_per_batch']:.3f} | 1.00× |")
    ratio = med["audit_ms_per_batch"] / med["outbox_ms_per_batch"]
    print(f"| AuditLog.recommendations | {med['audit_ms_per_batch']:.3f} | {ratio:.2f}× |")
    print(f"audit writer: {med['audit_records_per_s']:,.0f} records/s committed (SQLite, FULL)")


if __name__ == "__main__":
    main()
