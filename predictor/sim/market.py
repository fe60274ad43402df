"""Venue sessions, market state and positions of the simulated fleet.

Sessions follow a fixed UTC schedule (no daylight saving):

- ``XNYS``/``XNAS``, Monday to Friday: ``pre_open`` 12:00-14:25, ``opening_auction``
  14:25-14:30, ``continuous`` 14:30-20:55, ``closing_auction`` 20:55-21:00, otherwise
  ``closed``; closed all weekend.
- ``FX-EBS``: ``continuous`` from Sunday 22:00 to Friday 22:00 UTC, otherwise ``closed``.

>>> ts = 1767571200000  # 2026-01-05T00:00:00Z, a Monday
>>> session_at("XNYS", ts)
'closed'
>>> session_at("XNYS", ts + 15 * 3_600_000)
'continuous'
>>> next_session_change("XNYS", ts)
(1767614400000, 'pre_open')
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from predictor.contracts import SESSIONS as CONTRACT_SESSIONS
from predictor.errors import ValidationError

logger = logging.getLogger(__name__)

__all__ = [
    "SESSIONS",
    "MarketProcess",
    "PositionProcess",
    "activity",
    "load_curve",
    "next_session_change",
    "open_burst",
    "session_at",
    "session_codes",
]


FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Session names; ``session_codes`` returns indices into this tuple.
SESSIONS: tuple[str, ...] = CONTRACT_SESSIONS
_CLOSED, _PRE, _OPEN_AUC, _CONT, _CLOSE_AUC = range(5)

_MIN_MS = 60_000
_DAY_MIN = 1440
_WEEK_MIN = 7 * _DAY_MIN
_WEEK_MS = _WEEK_MIN * _MIN_MS
# 1970-01-01 was a Thursday; with Monday = 0 the weekday of epoch day d is (d + 3) % 7.
_EPOCH_WEEKDAY = 3


def _equity_week() -> tuple[IntArray, IntArray]:
    starts = [0]
    codes = [_CLOSED]
    for day in range(5):
        base = day * _DAY_MIN
        for minute, code in (
            (12 * 60, _PRE),
            (14 * 60 + 25, _OPEN_AUC),
            (14 * 60 + 30, _CONT),
            (20 * 60 + 55, _CLOSE_AUC),
            (21 * 60, _CLOSED),
        ):
            starts.append(base + minute)
            codes.append(code)
    return np.asarray(starts, np.int64), np.asarray(codes, np.int64)


def _fx_week() -> tuple[IntArray, IntArray]:
    starts = [0, 4 * _DAY_MIN + 22 * 60, 6 * _DAY_MIN + 22 * 60]
    codes = [_CONT, _CLOSED, _CONT]
    return np.asarray(starts, np.int64), np.asarray(codes, np.int64)


_EQ_WEEK = _equity_week()
_FX_WEEK = _fx_week()
_VENUE_CLASS: dict[str, str] = {"XNYS": "equity", "XNAS": "equity", "FX-EBS": "fx"}


def _week_of(venue: str) -> tuple[IntArray, IntArray]:
    cls = _VENUE_CLASS.get(venue)
    if cls is None:
        raise ValidationError("unknown_venue", venue)
    return _EQ_WEEK if cls == "equity" else _FX_WEEK


def _minute_of_week(ts_ms: IntArray) -> IntArray:
    minutes = ts_ms // _MIN_MS
    days = minutes // _DAY_MIN
    weekday = (days + _EPOCH_WEEKDAY) % 7
    return np.asarray(weekday * _DAY_MIN + minutes % _DAY_MIN, np.int64)


def session_codes(venue: str, ts_ms: npt.ArrayLike) -> IntArray:
    """Vectorised session lookup: indices into :data:`SESSIONS` for each timestamp.

    >>> session_codes("FX-EBS", [1767571200000]).tolist()
    [3]
    """
    starts, codes = _week_of(venue)
    mow = _minute_of_week(np.asarray(ts_ms, np.int64))
    return np.asarray(codes[np.searchsorted(starts, mow, side="right") - 1], np.int64)


def session_at(venue: str, ts_ms: int) -> str:
    """Return the session of ``venue`` at ``ts_ms`` (epoch milliseconds, UTC)."""
    return SESSIONS[int(session_codes(venue, [ts_ms])[0])]


def next_session_change(venue: str, ts_ms: int) -> tuple[int, str]:
    """Return ``(ts_ms, session)`` of the first session change strictly after ``ts_ms``.

    >>> next_session_change("XNYS", 1767623100000)  # 14:25Z, opening auction
    (1767623400000, 'continuous')
    """
    starts, codes = _week_of(venue)
    current = int(session_codes(venue, [ts_ms])[0])
    week_start = int(ts_ms) - int(_minute_of_week(np.asarray([ts_ms], np.int64))[0]) * _MIN_MS
    week_start -= int(ts_ms) % _MIN_MS
    for week in range(3):
        base = week_start + week * _WEEK_MS
        for start, code in zip(starts.tolist(), codes.tolist(), strict=True):
            at = base + start * _MIN_MS
            if at > ts_ms and code != current:
                return at, SESSIONS[code]
    raise AssertionError("a weekly schedule always changes within a week")  # pragma: no cover


def _bump(x: FloatArray, center: float, width: float) -> FloatArray:
    return np.asarray(np.exp(-0.5 * ((x - center) / width) ** 2), np.float64)


def load_curve(venue: str, ts_ms: IntArray) -> FloatArray:
    """Relative activity of systems trading on ``venue``, about 0.05 (closed) to 1.1 (open).

    Equities: a burst at the open decaying over ~25 min, a lunch lull, a ramp into the
    close. FX: Tokyo, London and New York sessions overlapping on a 24 h curve.
    """
    ts = np.asarray(ts_ms, np.int64)
    code = session_codes(venue, ts)
    mod = ((ts // _MIN_MS) % _DAY_MIN).astype(np.float64) + (ts % _MIN_MS) / _MIN_MS
    if _VENUE_CLASS[venue] == "fx":
        curve = (
            0.28
            + 0.25 * _bump(mod, 180.0, 150.0)
            + 0.45 * _bump(mod, 600.0, 170.0)
            + 0.40 * _bump(mod, 900.0, 150.0)
            + 0.25 * _bump(mod, 900.0 + _DAY_MIN, 150.0)  # wraps NY into the Asian morning
        )
        return np.asarray(np.where(code == _CLOSED, 0.05, np.minimum(curve, 1.1)), np.float64)
    cont = (
        0.55
        + 0.45 * np.exp(-np.clip(mod - 870.0, 0.0, None) / 25.0)
        - 0.18 * _bump(mod, 1035.0, 50.0)
        + 0.40 * np.exp(-np.clip(1255.0 - mod, 0.0, None) / 20.0)
    )
    pre = 0.15 + 0.15 * np.clip((mod - 720.0) / 145.0, 0.0, 1.0)
    out = np.select(
        [code == _CONT, code == _PRE, code == _OPEN_AUC, code == _CLOSE_AUC],
        [cont, pre, np.full_like(mod, 0.75), np.full_like(mod, 0.95)],
        default=0.08,
    )
    return np.asarray(out, np.float64)


def open_burst(venue: str, ts_ms: IntArray) -> FloatArray:
    """Extra load on order flow at the open, 0..1: the ``market_open_burst`` shape.

    Equities open at 14:30Z (the burst starts with the 14:25Z auction); FX has its
    burst at the London open, 07:00Z, on weekdays.
    """
    ts = np.asarray(ts_ms, np.int64)
    code = session_codes(venue, ts)
    mod = ((ts // _MIN_MS) % _DAY_MIN).astype(np.float64) + (ts % _MIN_MS) / _MIN_MS
    weekday = ((ts // (_DAY_MIN * _MIN_MS)) + _EPOCH_WEEKDAY) % 7
    open_min = 870.0 if _VENUE_CLASS[venue] == "equity" else 420.0
    dt = mod - open_min
    shape = np.where(dt < 0.0, np.exp(dt / 2.0), np.exp(-dt / 8.0))
    live = (dt > -5.0) & (dt < 30.0) & (code != _CLOSED) & (weekday < 5)
    return np.asarray(np.where(live, shape, 0.0), np.float64)


def activity(venue: str, ts_ms: IntArray) -> FloatArray:
    """Trading activity 0.02..1 used to scale positions: zero-ish while closed."""
    code = session_codes(venue, ts_ms)
    lc = load_curve(venue, ts_ms)
    scale = np.select([code == _CONT, code == _PRE], [lc, 0.1 * lc], default=0.5 * lc)
    return np.asarray(np.where(code == _CLOSED, 0.02, np.clip(scale, 0.02, 1.0)), np.float64)


def _event_risk(ts_ms: IntArray) -> npt.NDArray[np.bool_]:
    # Macro releases at 13:30Z and 15:00Z on weekdays (US data in winter time).
    ts = np.asarray(ts_ms, np.int64)
    mod = (ts // _MIN_MS) % _DAY_MIN
    weekday = ((ts // (_DAY_MIN * _MIN_MS)) + _EPOCH_WEEKDAY) % 7
    win = ((mod >= 805) & (mod < 825)) | ((mod >= 895) & (mod < 910))
    return np.asarray(win & (weekday < 5), np.bool_)


_BLOCK_MIN = 60  # minutes per block of the sequential processes


class _BlockProcess:
    """A minute-resolution process simulated in fixed one-hour blocks.

    The state at each block start is cached, so any block is reproducible from the seed
    alone regardless of which blocks were asked for before.
    """

    def __init__(
        self,
        seed: int,
        tag: int,
        origin_ms: int,
        init: Callable[[np.random.Generator], FloatArray],
        step: Callable[[int, FloatArray, np.random.Generator], tuple[FloatArray, FloatArray]],
    ) -> None:
        self._seed = seed
        self._tag = tag
        self._origin_min = origin_ms // _MIN_MS
        self._step = step
        self._states: dict[int, FloatArray] = {0: init(np.random.default_rng((seed, tag, 0, 1)))}
        self._cache: dict[int, FloatArray] = {}

    def _run(self, block: int) -> tuple[FloatArray, FloatArray]:
        rng = np.random.default_rng((self._seed, self._tag, block, 2))
        return self._step(
            (self._origin_min + block * _BLOCK_MIN) * _MIN_MS, self._states[block], rng
        )

    def block(self, block: int) -> FloatArray:
        """Return the block's values, shape ``(60, n, k)``."""
        if block < 0:
            raise ValueError("blocks before the simulation origin are not simulated")
        hit = self._cache.get(block)
        if hit is not None:
            return hit
        last = max(b for b in self._states if b <= block)
        while last < block:
            _, self._states[last + 1] = self._run(last)
            last += 1
        values, end = self._run(block)
        self._states[block + 1] = end
        if len(self._cache) > 4:
            self._cache.clear()
        self._cache[block] = values
        return values

    def at(self, minute_ts_ms: IntArray) -> FloatArray:
        """Values at whole-minute timestamps, shape ``(len(minute_ts_ms), n, k)``."""
        rel = np.asarray(minute_ts_ms, np.int64) // _MIN_MS - self._origin_min
        blocks = rel // _BLOCK_MIN
        parts = [self.block(int(b))[rel[blocks == b] % _BLOCK_MIN] for b in np.unique(blocks)]
        return np.concatenate(parts, axis=0)


# Volatility regimes: calm, normal, stressed; per-minute transition probabilities.
_REGIME_P = np.array([[0.994, 0.006, 0.0], [0.004, 0.993, 0.003], [0.0, 0.02, 0.98]])
_REGIME_CUM = np.cumsum(_REGIME_P, axis=1)
_REGIME_VOL = np.array([1.5, 3.0, 8.0])
_REGIME_SPREAD = np.array([1.0, 1.3, 3.0])
_REGIME_DEPTH = np.array([1.2, 1.0, 0.4])
_VENUE_SPREAD = {"XNYS": 1.5, "XNAS": 1.2, "FX-EBS": 0.3}
_VENUE_DEPTH = {"XNYS": 5e6, "XNAS": 4e6, "FX-EBS": 2e7}
_SESSION_SPREAD = np.array([10.0, 4.0, 3.0, 1.0, 2.5])
_SESSION_DEPTH = np.array([0.05, 0.2, 0.3, 1.0, 0.4])
_SESSION_VOL = np.array([0.3, 0.6, 2.0, 1.0, 1.5])


class _HourlyRecords:
    """Compute records an hour at a time and serve any minutes from that cache."""

    _origin_ms: int
    _width: int
    _hours: dict[int, list[dict[str, object]]]

    def _compute(self, minute_ts_ms: IntArray) -> list[dict[str, object]]:
        raise NotImplementedError

    def records(self, minute_ts_ms: IntArray) -> list[dict[str, object]]:
        """Records for the given whole-minute timestamps (ascending), ts-major."""
        out: list[dict[str, object]] = []
        for t in np.asarray(minute_ts_ms, np.int64).tolist():
            hour = (t - self._origin_ms) // (_BLOCK_MIN * _MIN_MS)
            recs = self._hours.get(hour)
            if recs is None:
                t0 = self._origin_ms + hour * _BLOCK_MIN * _MIN_MS
                recs = self._compute(t0 + _MIN_MS * np.arange(_BLOCK_MIN, dtype=np.int64))
                if len(self._hours) >= 2:
                    self._hours.pop(min(self._hours))
                self._hours[hour] = recs
            i = (t - self._origin_ms) // _MIN_MS % _BLOCK_MIN * self._width
            out.extend(dict(r) for r in recs[i : i + self._width])
        return out


class MarketProcess(_HourlyRecords):
    """One ``market.v1`` record per venue per minute.

    Volatility regimes (calm/normal/stressed) follow a Markov chain per venue; spreads
    widen and depth thins in auctions, pre-open, closed sessions and stress; volatility
    rises around macro releases, which also set ``event_risk``.
    """

    def __init__(self, seed: int, venues: tuple[str, ...], origin_ms: int) -> None:
        self.venues = venues
        n = len(venues)
        self._origin_ms, self._width, self._hours = origin_ms, n, {}

        def init(rng: np.random.Generator) -> FloatArray:
            return np.asarray(rng.choice(3, size=n, p=[0.3, 0.6, 0.1]), np.float64)

        def step(
            t0: int, state: FloatArray, rng: np.random.Generator
        ) -> tuple[FloatArray, FloatArray]:
            u = rng.random((_BLOCK_MIN, n))
            z = rng.standard_normal((_BLOCK_MIN, n, 3))
            regime = state.astype(np.int64)
            out = np.empty((_BLOCK_MIN, n, 4))
            for k in range(_BLOCK_MIN):
                regime = (u[k][:, None] > _REGIME_CUM[regime]).sum(axis=1)
                out[k, :, 0] = regime
            out[:, :, 1:] = z
            return out, out[-1, :, 0].copy()

        self._proc = _BlockProcess(seed, 11, origin_ms, init, step)

    def _compute(self, minute_ts_ms: IntArray) -> list[dict[str, object]]:
        """``market.v1`` dicts for the given whole-minute timestamps, ts-major."""
        ts = np.asarray(minute_ts_ms, np.int64)
        if len(ts) == 0:
            return []
        raw = self._proc.at(ts)
        risk = _event_risk(ts)
        mod = (ts // _MIN_MS) % _DAY_MIN
        macro = ((mod >= 810) & (mod < 820)) | ((mod >= 900) & (mod < 905))
        cols: list[tuple[list[float], list[float], list[float], list[str]]] = []
        for j, venue in enumerate(self.venues):
            code = session_codes(venue, ts)
            regime = raw[:, j, 0].astype(np.int64)
            z = raw[:, j, 1:]
            vol = (
                _REGIME_VOL[regime]
                * _SESSION_VOL[code]
                * (1.0 + 0.8 * macro)
                * (1.0 + 0.5 * open_burst(venue, ts))
                * np.exp(0.2 * z[:, 0])
            )
            spread = (
                _VENUE_SPREAD[venue]
                * _REGIME_SPREAD[regime]
                * _SESSION_SPREAD[code]
                * np.exp(0.15 * z[:, 1])
            )
            depth = (
                _VENUE_DEPTH[venue]
                * _REGIME_DEPTH[regime]
                * _SESSION_DEPTH[code]
                * np.exp(0.2 * z[:, 2])
            )
            cols.append(
                (
                    np.round(vol, 4).tolist(),
                    np.round(spread, 4).tolist(),
                    np.round(depth, 0).tolist(),
                    [SESSIONS[c] for c in code.tolist()],
                )
            )
        out: list[dict[str, object]] = []
        for i, t in enumerate(ts.tolist()):
            er = bool(risk[i])
            for j, venue in enumerate(self.venues):
                vol_l, spr_l, dep_l, ses_l = cols[j]
                out.append(
                    {
                        "ts": t,
                        "venue": venue,
                        "volatility_bps_per_min": vol_l[i],
                        "spread_bps": spr_l[i],
                        "depth_usd": dep_l[i],
                        "session": ses_l[i],
                        "event_risk": er,
                    }
                )
        return out


_TEMPLATE_SCALE = {"eq-oms": (4e7, 400.0), "fx-pricing": (8e7, 250.0), "md-feed": (1e7, 60.0)}


class PositionProcess(_HourlyRecords):
    """One ``positions.v1`` record per system per minute.

    Net notional is a mean-reverting random walk (about two hours' memory) scaled by the
    venue's activity, so it shrinks towards zero while the venue is closed; gross is at
    least ``|net|``; open orders follow activity.
    """

    def __init__(
        self,
        seed: int,
        systems: tuple[str, ...],
        templates: tuple[str, ...],
        venues: tuple[str, ...],
        origin_ms: int,
    ) -> None:
        self.systems = systems
        self.venues = venues
        n = len(systems)
        self._origin_ms, self._width, self._hours = origin_ms, n, {}
        scales = np.array([_TEMPLATE_SCALE.get(t, (2e7, 100.0)) for t in templates])
        self._notional = scales[:, 0]
        self._orders = scales[:, 1]
        self._venue_names = tuple(dict.fromkeys(venues))
        self._venue_idx = np.array([self._venue_names.index(v) for v in venues], np.int64)
        phi = float(np.exp(-1.0 / 120.0))
        eps = float(np.sqrt(1.0 - phi * phi))

        def init(rng: np.random.Generator) -> FloatArray:
            return rng.standard_normal((n, 2))

        def step(
            t0: int, state: FloatArray, rng: np.random.Generator
        ) -> tuple[FloatArray, FloatArray]:
            z = rng.standard_normal((_BLOCK_MIN, n, 3))
            out = np.empty((_BLOCK_MIN, n, 3))
            x = state.copy()
            for k in range(_BLOCK_MIN):
                x = phi * x + eps * z[k, :, :2]
                out[k, :, :2] = x
            out[:, :, 2] = z[:, :, 2]
            return out, x

        self._proc = _BlockProcess(seed, 13, origin_ms, init, step)

    def _compute(self, minute_ts_ms: IntArray) -> list[dict[str, object]]:
        """``positions.v1`` dicts for the given whole-minute timestamps, ts-major."""
        ts = np.asarray(minute_ts_ms, np.int64)
        if len(ts) == 0:
            return []
        raw = self._proc.at(ts)
        act_v = np.stack([activity(v, ts) for v in self._venue_names], axis=1)
        act = act_v[:, self._venue_idx]
        net = self._notional * raw[:, :, 0] * act
        gross = np.abs(net) + self._notional * act * (2.0 + 0.5 * np.exp(0.3 * raw[:, :, 1]))
        orders = np.round(self._orders * act * np.exp(0.3 * raw[:, :, 2]))
        net_l = np.round(net, 2).tolist()
        gross_l = np.round(gross, 2).tolist()
        orders_l = orders.astype(np.int64).tolist()
        out: list[dict[str, object]] = []
        for i, t in enumerate(ts.tolist()):
            for j, system in enumerate(self.systems):
                out.append(
                    {
                        "ts": t,
                        "system": system,
                        "venue": self.venues[j],
                        "net_notional_usd": net_l[i][j],
                        "gross_notional_usd": gross_l[i][j],
                        "open_orders": orders_l[i][j],
                    }
                )
        return out
