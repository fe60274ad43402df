"""The demo's terminal: the live view, one line per recommendation, the summary table.

On a terminal :func:`show` redraws :func:`live_view` (fleet health and the newest
recommendations with their lead time against the ground truth); off a terminal it
prints each recommendation as one greppable line (:func:`rec_line`) or, with ``json``,
as a recommendations.v1 JSON line on stdout.

>>> fmt_lead(None), fmt_lead(90.0), fmt_lead(-30.0)
('no failure coming (false alarm)', 'lead time 1.5 min', '0.5 min after the failure began')
"""

from __future__ import annotations

import sys
import time
from typing import Any

import orjson
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from pipelines.embedded.scenario import DemoConfig, DemoRun
from predictor.events import ms_to_iso

__all__ = ["fmt_lead", "live_view", "rec_line", "show", "summary_table"]


def show(run: DemoRun, cfg: DemoConfig, console: Console, port: int) -> None:
    end = time.monotonic() + cfg.duration_s + 2.0 if cfg.duration_s > 0 else float("inf")
    if console.is_terminal and not cfg.json:
        with Live(live_view(run, port), console=console, refresh_per_second=4) as view:
            while time.monotonic() < end:
                time.sleep(0.25)
                view.update(live_view(run, port))
        return
    while time.monotonic() < end:
        time.sleep(0.25)
        while run.to_print:
            rec = run.to_print.popleft()
            if cfg.json:
                sys.stdout.write(orjson.dumps(rec).decode() + "\n")
                sys.stdout.flush()
            else:
                # One line per recommendation whatever the width: greppable off a terminal.
                console.print(rec_line(run, rec), soft_wrap=True, highlight=False)


def fmt_lead(lead: float | None) -> str:
    if lead is None:
        return "no failure coming (false alarm)"
    if lead < 0:
        return f"{-lead / 60:.1f} min after the failure began"
    return f"lead time {lead / 60:.1f} min"


def rec_line(run: DemoRun, rec: dict[str, Any]) -> str:
    reasons = ", ".join(f"{r['feature']}={r['value']}" for r in rec["reasons"][:3])
    window = f" not before {rec['not_before'][11:19]}Z" if rec.get("not_before") else ""
    return (
        f"{rec['issued_at'][11:19]}Z {rec['system']}/{rec['component']}: "
        f"[bold]{rec['action']}[/]{window} · risk {_pct(rec['risk'])} · "
        f"{fmt_lead(run.lead_time_s(rec))} · stay ${_k(rec['expected_loss_stay_usd'])} vs "
        f"switch ${_k(rec['expected_cost_switch_usd'])} · {reasons}"
    )


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.0f}%"


def _k(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v / 1000:,.1f}k" if abs(v) >= 1000 else f"{v:,.0f}"


def live_view(run: DemoRun, port: int) -> Group:
    status = run.live.status()
    wm = status["watermark"]
    systems = Table(title=f"Fleet health at {ms_to_iso(wm) if wm else '—'}", expand=True)
    for col in ("system", "health", "worst component", "max risk", "action"):
        systems.add_column(col)
    for s in run.live.systems():
        h = s["health"]
        color = "green" if h >= 80 else "yellow" if h >= 50 else "red"
        systems.add_row(
            s["system"],
            f"[{color}]{h:5.1f}[/] {'█' * int(h // 10)}",
            f"{s['worst_component']} ({s['worst_component_health']:.0f})",
            _pct(s["max_risk"]),
            s["action"],
        )
    recs = Table(title="Recommendations (newest first)", expand=True)
    for col in (
        "issued",
        "system/component",
        "action",
        "risk",
        "lead time",
        "stay vs switch",
        "reasons",
    ):
        recs.add_column(col)
    shown = [r for r in run.recommendations if r["action"] != "none"][-8:]
    for rec in reversed(shown):
        recs.add_row(
            rec["issued_at"][11:19] + "Z",
            f"{rec['system']}/{rec['component']}",
            rec["action"] + (f" ≥{rec['not_before'][11:19]}Z" if rec.get("not_before") else ""),
            _pct(rec["risk"]),
            fmt_lead(run.lead_time_s(rec)),
            f"${_k(rec['expected_loss_stay_usd'])} / ${_k(rec['expected_cost_switch_usd'])}",
            ", ".join(f"{r['feature']}" for r in rec["reasons"][:2]),
        )
    c = status["counters"]
    rejects = ", ".join(f"{k} {v}" for k, v in sorted(status["reject_reasons"].items())) or "none"
    footer = (
        f"events {c['events']:,} · rejected {c['rejected']:,} ({rejects}) · "
        f"risk scored {c['risk_scored']:,} · recommendations {c['recommendations']:,} · "
        f"model {status['model_version']} · API http://127.0.0.1:{port}/docs"
    )
    return Group(systems, recs, Panel(footer))


def summary_table(s: dict[str, Any]) -> Table:
    t = Table(title="Demo summary (against the simulator's ground truth)")
    t.add_column("what")
    t.add_column("value", justify="right")
    leads = ", ".join(f"{x / 60:.1f}" for x in s["lead_times_s"]) or "—"
    for k, v in (
        ("events processed", f"{s['events']:,}"),
        ("rejected (dead-lettered)", f"{s['rejected']:,}"),
        ("recommendations", f"{s['recommendations']:,}"),
        ("failover recommendations", f"{s['failovers_recommended']}"),
        ("failures in the run", f"{s['failures_in_run']}"),
        ("failures foreseen", f"{s['failures_foreseen']}"),
        ("lead times, min", leads),
        ("false failover recommendations", f"{s['false_failovers']}"),
        ("simulated until", s["sim_until"]),
    ):
        t.add_row(k, v)
    return t
