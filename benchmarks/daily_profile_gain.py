"""Would a time-of-day profile help the ``surprise`` detector? Measured, one command.

    .venv/bin/python benchmarks/daily_profile_gain.py [--split tune|held_out|all] [--bins 24]

For each JumpStarter service (``pipelines.offline.evaluate_detectors``' data, splits and
metrics), ``surprise_daily`` is ``surprise`` on metrics from which an hour-of-day profile
was subtracted: per metric, the median of the history rows in each of ``--bins`` slots of
the (UTC) day, less the history's overall median, fit on the history only (its rows are
taken as contiguous before the test rows, one step apart). Both variants are scored in
the same run through the same code path; the table is the mean over services.

The profile is fit on ``--history``, so this measures the offline path; the live
detector carries no timestamps yet (see ``docs/detectors.md``, "Seasonality").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.offline import evaluate_detectors as ev  # noqa: E402


def daily_profile(ts_s: np.ndarray, x: np.ndarray, bins: int) -> np.ndarray:
    """Per slot of the day and metric, the median deviation from the overall median.

    >>> ts = np.arange(48) * 3600.0
    >>> x = np.where((ts % 86400) < 43200, 10.0, 20.0)[:, None]
    >>> daily_profile(ts, x, 2)[:, 0].tolist()
    [-5.0, 5.0]
    """
    slot = ((ts_s % 86400) // (86400 / bins)).astype(int)
    prof = np.zeros((bins, x.shape[1]))
    overall = np.nanmedian(x, axis=0)
    for b in range(bins):
        rows = x[slot == b]
        if len(rows):
            prof[b] = np.nanmedian(rows, axis=0) - overall
    return np.asarray(np.nan_to_num(prof))


def surprise_daily(ent: ev.Entity, seed: int = 0, bins: int = 24) -> np.ndarray:
    """``surprise`` on metrics less the history's hour-of-day profile."""
    ts_h = ent.ts_s[0] - ent.step_s * np.arange(len(ent.history), 0, -1)
    prof = daily_profile(ts_h, ent.history, bins)

    def slot(ts: np.ndarray) -> np.ndarray:
        return np.asarray(((ts % 86400) // (86400 / bins)).astype(int))

    flat = ev.Entity(
        ent.name,
        ent.history - prof[slot(ts_h)],
        ent.test - prof[slot(ent.ts_s)],
        ent.label,
        ent.ts_s,
    )
    return ev.stream_scores("surprise", flat, seed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--split", choices=("tune", "held_out", "all"), default="all")
    ap.add_argument("--bins", type=int, default=24, help="slots per day (24: hours)")
    args = ap.parse_args()
    ev.SCORERS["surprise_daily"] = lambda ent, seed: surprise_daily(ent, seed, args.bins)
    ev.CALIBRATED = (*ev.CALIBRATED, "surprise_daily")
    names = [
        n
        for n in ev.list_entities(ev.DEFAULT_DATA_DIR)
        if args.split == "all" or ev.split_of(n) == args.split
    ]
    done = [0]

    def progress(n: int) -> None:
        done[0] += n
        print(f"  {done[0]}/{len(names)} services", file=sys.stderr, flush=True)

    df = ev.evaluate(None, None, ["surprise", "surprise_daily"], names, progress=progress)
    for split in ("tune", "held_out"):
        if (df["split"] == split).any():
            print(f"\n{split}:")
            print(ev.summarise(df, split).round(3).to_string())


if __name__ == "__main__":
    main()
