"""Data contracts of DESIGN.md §2 and their validation.

Decoding is the first step of the hot path, so telemetry is decoded a micro-batch at a
time into columns (entity keys, ``ts_ms`` and a float matrix over the metrics the engine
tracks). Every rejected message keeps its index and a short reason, so the caller can
dead-letter it and carry on.

>>> batch = decode_telemetry(
...     [b'{"ts": 1767571200000, "system": "s", "component": "c", "host": "h",'
...      b' "metrics": {"cpu_pct": 12.5}}', b'{"ts": "nope"}'],
...     metric_names=("cpu_pct", "mem_pct"),
... )
>>> batch.keys, batch.x.tolist()
([('s', 'c', 'h')], [[12.5, nan]])
>>> batch.rejects
[Reject(index=1, reason='missing_field', detail='system')]
"""

from __future__ import annotations

import functools
import json
import keyword
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import msgspec
import numpy as np
import orjson

from predictor.contracts import SESSIONS
from predictor.errors import ValidationError

T = TypeVar("T")

SESSION_CODE = {name: i for i, name in enumerate(SESSIONS)}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: Epoch-ms bounds a timestamp must fall in (2000-01-01 .. 2100-01-01).
MIN_TS_MS = 946_684_800_000
MAX_TS_MS = 4_102_444_800_000

#: Default upper bound for one encoded message, bytes.
DEFAULT_MAX_BYTES = 64 * 1024
#: At most this many metrics in one telemetry event.
MAX_METRICS = 256
#: Longest system/component/host/venue name, characters.
MAX_NAME = 128


@dataclass(frozen=True, slots=True)
class Reject:
    """A message that failed validation: its index in the batch and why."""

    index: int
    reason: str
    detail: str = ""


@dataclass(slots=True)
class TelemetryBatch:
    """Decoded telemetry, one row per accepted event, in arrival order.

    ``index`` maps each row back to its position in the input batch.
    """

    keys: list[tuple[str, str, str]]
    ts_ms: np.ndarray
    x: np.ndarray
    index: np.ndarray
    rejects: list[Reject] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.keys)


def parse_ts(value: Any) -> int:
    """Epoch milliseconds from an int/float epoch-ms or an RFC 3339 string.

    >>> parse_ts("2026-01-05T00:00:00Z"), parse_ts(1767571200000)
    (1767571200000, 1767571200000)
    """
    if isinstance(value, bool):
        raise ValidationError("wrong_type", "ts")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValidationError("non_finite", "ts")
        ms = int(value)
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            raise ValidationError("bad_timestamp", f"ts {value[:40]!r}") from None
        if dt.tzinfo is None:
            raise ValidationError("bad_timestamp", "ts has no UTC offset")
        # Exact integer arithmetic: float ``timestamp() * 1000`` can land 1 ms short.
        delta = dt - _EPOCH
        ms = (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
    else:
        raise ValidationError("wrong_type", "ts")
    if not MIN_TS_MS <= ms < MAX_TS_MS:
        raise ValidationError("bad_timestamp", "ts out of range 2000..2100")
    return ms


def ms_to_iso(ms: int) -> str:
    """RFC 3339 UTC with milliseconds and a ``Z``.

    >>> ms_to_iso(1767571200123)
    '2026-01-05T00:00:00.123Z'
    """
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def loads(raw: bytes | str, max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """Parse JSON with a size limit and a precise reason on failure.

    Raises :class:`ValidationError` and nothing else, whatever the bytes: invalid UTF-8,
    a nesting bomb (orjson refuses depth > 1024; the stdlib fallback that names NaN
    literals would recurse, so it only runs on shallow input), junk of any size.

    >>> try:
    ...     loads(b"[" * 1100 + b"]" * 1100)
    ... except ValidationError as exc:
    ...     print(exc.reason, exc.detail[:20])
    malformed_json depth limit exceeded
    """
    if len(raw) > max_bytes:
        raise ValidationError("too_large", f"{len(raw)} bytes > {max_bytes} bytes")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        detail = str(exc)[:120]
    except Exception as exc:  # never let a decoder's surprise stop a stream
        raise ValidationError("malformed_json", f"{type(exc).__name__}: {exc}"[:120]) from None
    # orjson refuses NaN/Infinity literals; tell the sender that rather than "malformed".
    if "depth limit" not in detail and (b"NaN" in _as_bytes(raw) or b"Infinity" in _as_bytes(raw)):
        try:
            json.loads(raw, parse_constant=_refuse_constant)
        except _NonFinite:
            raise ValidationError("non_finite", "NaN or Infinity literal") from None
        except (ValueError, RecursionError, TypeError):
            pass
    raise ValidationError("malformed_json", detail)


def _as_bytes(raw: bytes | str) -> bytes:
    return raw.encode("utf-8", "replace") if isinstance(raw, str) else raw


def decode_record(
    raw: bytes | str, parse: Callable[[Any], T], max_bytes: int = DEFAULT_MAX_BYTES
) -> T:
    """Decode one context record (positions.v1, market.v1) with ``parse``.

    The one guarded entry point for single records: any exception while decoding or
    validating becomes a :class:`ValidationError` (``invalid`` with the exception named
    when it is not one already), so a caller's ``except ValidationError`` is total.

    >>> decode_record(b"null", parse_market)
    Traceback (most recent call last):
    ...
    predictor.errors.ValidationError: not_an_object: NoneType
    """
    return validated(parse, loads(raw, max_bytes))


def validated(parse: Callable[[Any], T], obj: Any) -> T:
    """``parse(obj)``, with any exception but :class:`ValidationError` turned into one."""
    try:
        return parse(obj)
    except ValidationError:
        raise
    except Exception as exc:
        raise ValidationError("invalid", f"{type(exc).__name__}: {exc}"[:200]) from None


class _NonFinite(Exception):
    pass


def _refuse_constant(name: str) -> float:
    raise _NonFinite(name)


def _name(obj: dict[str, Any], key: str) -> str:
    try:
        value = obj[key]
    except KeyError:
        raise ValidationError("missing_field", key) from None
    if not isinstance(value, str) or not value:
        raise ValidationError("wrong_type", key)
    if len(value) > MAX_NAME:
        raise ValidationError("too_long", key)
    return value


def validate_telemetry(
    obj: Any, metric_names: Sequence[str]
) -> tuple[tuple[str, str, str], int, list[float]]:
    """Validate one decoded telemetry object; return (key, ts_ms, metric row).

    Metrics the engine does not track are ignored; tracked ones that are absent are NaN.
    """
    if not isinstance(obj, dict):
        raise ValidationError("not_an_object", type(obj).__name__)
    key = (_name(obj, "system"), _name(obj, "component"), _name(obj, "host"))
    if "ts" not in obj:
        raise ValidationError("missing_field", "ts")
    ts = parse_ts(obj["ts"])
    metrics = obj.get("metrics")
    if metrics is None:
        raise ValidationError("missing_field", "metrics")
    if not isinstance(metrics, dict):
        raise ValidationError("wrong_type", "metrics")
    if len(metrics) > MAX_METRICS:
        raise ValidationError("too_many_metrics", f"{len(metrics)} > {MAX_METRICS}")
    row: list[float] = []
    for name in metric_names:
        v = metrics.get(name)
        if v is None:
            row.append(math.nan)
        elif type(v) is float or type(v) is int:
            if not math.isfinite(v):
                raise ValidationError("non_finite", f"metrics.{name}")
            row.append(float(v))
        else:
            raise ValidationError("wrong_type", f"metrics.{name}")
    return key, ts, row


_Name = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME)]
_TsMs = Annotated[int, msgspec.Meta(ge=MIN_TS_MS, lt=MAX_TS_MS)]


class _Telemetry(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """The fast path's view of a telemetry.v1 message: only what it can prove valid.

    Every field is typed, so msgspec parses (and checks) every byte of the message: an
    unknown field is refused rather than skipped, because a skipped value would go
    unchecked (orjson refuses ``1e400`` or invalid UTF-8 anywhere in the message).
    ``metrics`` maps every name, tracked or not, to a finite number or null; a value
    out of double range fails msgspec as it fails orjson.
    """

    system: _Name
    component: _Name
    host: _Name
    ts: _TsMs
    metrics: dict[str, float | None]


_FAST_DECODE = msgspec.json.Decoder(_Telemetry).decode


@functools.lru_cache(maxsize=8)
def _batch_decoder(names: tuple[str, ...]) -> Callable[[bytes], Any] | None:
    """A decoder whose ``metrics`` are a struct of exactly the tracked ``names``.

    The fastest path (a whole micro-batch of messages that carry only tracked metrics):
    any other metric is refused, not skipped, so every byte is still checked, and the
    metric count cannot pass :data:`MAX_METRICS`. ``None`` when a name cannot be a
    struct field (not an identifier, a keyword, a leading underscore, a duplicate) or
    there are more names than a message may carry.
    """
    if (
        not names
        or len(set(names)) != len(names)
        or len(names) > MAX_METRICS
        or not all(n.isidentifier() and not keyword.iskeyword(n) and n[0] != "_" for n in names)
    ):
        return None
    metrics = msgspec.defstruct(
        "_Metrics",
        [(n, float | None, None) for n in names],
        forbid_unknown_fields=True,
        gc=False,
    )
    event = msgspec.defstruct(
        "_TrackedTelemetry",
        [
            ("system", _Name),
            ("component", _Name),
            ("host", _Name),
            ("ts", _TsMs),
            ("metrics", metrics),
        ],
        forbid_unknown_fields=True,
        gc=False,
    )
    return msgspec.json.Decoder(event).decode


def decode_telemetry(
    raws: Sequence[bytes | str | dict[str, Any]],
    metric_names: Sequence[str],
    max_bytes: int = DEFAULT_MAX_BYTES,
    *,
    fast: bool = True,
) -> TelemetryBatch:
    """Decode and validate a micro-batch of telemetry messages (bytes or dicts).

    The hot path: msgspec decodes a message of bytes straight into a typed struct,
    checking types, name lengths and the timestamp's range in C (:class:`_Telemetry`);
    the metric count is checked here and the metric row gathered with ``map``. A
    message the fast path cannot prove valid (any error at all, an epoch-ms float or an
    RFC 3339 ``ts``, a boolean or a string among the metrics, an extra field, ``str``
    input, a dict) takes :func:`validate_telemetry`, which accepts the odd valid case or
    names the exact problem, so the accepted rows and every :class:`Reject` are those
    of the slow path alone (``tests/unit/test_decode_fast.py`` checks it on generated
    messages). Infinite values are caught on the whole matrix at once. ``fast=False``
    sends every message down the slow path: the reference the fast path is tested
    against.
    """
    keys: list[tuple[str, str, str]] = []
    ts: list[int] = []
    rows: list[Any] = []
    index: list[int] = []
    rejects: list[Reject] = []
    names = tuple(metric_names)
    if fast and raws:
        batch = _decode_whole_batch(raws, names, max_bytes)
        if batch is not None:
            return batch
    fast_decode = _FAST_DECODE
    for i, raw in enumerate(raws):
        row: Any = None
        if fast and type(raw) is bytes and len(raw) <= max_bytes:
            try:
                event = fast_decode(raw)
            except Exception:  # the slow path names the problem (or accepts the odd case)
                event = None
            if event is not None and len(event.metrics) <= MAX_METRICS:
                system, component, host, t = event.system, event.component, event.host, event.ts
                row = tuple(map(event.metrics.get, names))  # None (absent, null) -> NaN
        if row is None:  # the slow path names the exact problem (or accepts the odd case)
            try:
                obj = raw if isinstance(raw, dict) else loads(raw, max_bytes)
                (system, component, host), t, row = validate_telemetry(obj, names)
            except ValidationError as exc:
                rejects.append(Reject(i, exc.reason, exc.detail))
                continue
            except Exception as exc:  # whatever it is, it goes to the DLQ, not up the stack
                rejects.append(Reject(i, "invalid", f"{type(exc).__name__}: {exc}"[:200]))
                continue
        keys.append((system, component, host))
        ts.append(t)
        rows.append(row)
        index.append(i)
    x = np.array(rows, dtype=np.float64).reshape(len(rows), len(names))
    ts_arr = np.array(ts, dtype=np.int64)
    idx_arr = np.array(index, dtype=np.int64)
    bad = np.isinf(x).any(axis=1)
    if bad.any():
        for j in np.flatnonzero(bad).tolist():
            col = int(np.flatnonzero(np.isinf(x[j]))[0])
            rejects.append(Reject(int(idx_arr[j]), "non_finite", f"metrics.{names[col]}"))
        good = ~bad
        keys = [keys[j] for j in np.flatnonzero(good).tolist()]
        x, ts_arr, idx_arr = x[good], ts_arr[good], idx_arr[good]
        rejects.sort(key=lambda r: r.index)
    return TelemetryBatch(keys=keys, ts_ms=ts_arr, x=x, index=idx_arr, rejects=rejects)


def _decode_whole_batch(
    raws: Sequence[Any], names: tuple[str, ...], max_bytes: int
) -> TelemetryBatch | None:
    """Every message at once when all are bytes, valid and carry only tracked metrics.

    ``None`` (the caller goes message by message) at the first message that is not; that
    is cheap when it comes early, and a batch with a bad message is rare.
    """
    decode = _batch_decoder(names)
    if decode is None or set(map(type, raws)) != {bytes} or max(map(len, raws)) > max_bytes:
        return None
    try:
        events = list(map(decode, raws))
    except Exception:
        return None
    n = len(events)
    astuple = msgspec.structs.astuple
    x = np.array([astuple(e.metrics) for e in events], dtype=np.float64).reshape(n, len(names))
    return TelemetryBatch(
        keys=[(e.system, e.component, e.host) for e in events],
        ts_ms=np.fromiter((e.ts for e in events), dtype=np.int64, count=n),
        x=x,
        index=np.arange(n, dtype=np.int64),
    )


@dataclass(frozen=True, slots=True)
class Position:
    """What a failover of ``system`` would disturb (positions.v1)."""

    ts_ms: int
    system: str
    venue: str
    net_notional_usd: float
    gross_notional_usd: float
    open_orders: int


@dataclass(frozen=True, slots=True)
class MarketState:
    """Conditions at one venue (market.v1)."""

    ts_ms: int
    venue: str
    volatility_bps_per_min: float
    spread_bps: float
    depth_usd: float
    session: str
    event_risk: bool


def _number(obj: dict[str, Any], key: str, *, minimum: float | None = None) -> float:
    if key not in obj:
        raise ValidationError("missing_field", key)
    v = obj[key]
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValidationError("wrong_type", key)
    if not math.isfinite(v):
        raise ValidationError("non_finite", key)
    if minimum is not None and v < minimum:
        raise ValidationError("out_of_range", f"{key} < {minimum}")
    return float(v)


def parse_position(obj: Any) -> Position:
    """Validate a positions.v1 object."""
    if not isinstance(obj, dict):
        raise ValidationError("not_an_object", type(obj).__name__)
    if "ts" not in obj:
        raise ValidationError("missing_field", "ts")
    return Position(
        ts_ms=parse_ts(obj["ts"]),
        system=_name(obj, "system"),
        venue=_name(obj, "venue"),
        net_notional_usd=_number(obj, "net_notional_usd"),
        gross_notional_usd=_number(obj, "gross_notional_usd", minimum=0.0),
        open_orders=int(_number(obj, "open_orders", minimum=0.0)),
    )


def parse_market(obj: Any) -> MarketState:
    """Validate a market.v1 object."""
    if not isinstance(obj, dict):
        raise ValidationError("not_an_object", type(obj).__name__)
    if "ts" not in obj:
        raise ValidationError("missing_field", "ts")
    session = obj.get("session")
    if session not in SESSION_CODE:
        raise ValidationError("bad_session", f"session must be one of {', '.join(SESSIONS)}")
    event_risk = obj.get("event_risk", False)
    if not isinstance(event_risk, bool):
        raise ValidationError("wrong_type", "event_risk")
    return MarketState(
        ts_ms=parse_ts(obj["ts"]),
        venue=_name(obj, "venue"),
        volatility_bps_per_min=_number(obj, "volatility_bps_per_min", minimum=0.0),
        spread_bps=_number(obj, "spread_bps", minimum=0.0),
        depth_usd=_number(obj, "depth_usd", minimum=0.0),
        session=str(session),
        event_risk=event_risk,
    )
