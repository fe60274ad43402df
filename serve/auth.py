"""API keys, roles, per-key rate limits and the allowed-hosts check.

Keys. A key reads ``pcv_<id>_<secret>``: ``id`` (12 hex digits) names the record, the
secret is 256 random bits (``secrets.token_urlsafe(32)``) and is shown once, when the key
is made. At rest a key is its id, name, role, a 16-byte random salt and
``SHA-256(salt || secret)``, in a JSON file (mode 0600, rewritten atomically). A slow
password hash (scrypt, bcrypt) protects *guessable* secrets; these are not guessable, and
a fast hash lets every request be checked in about a microsecond. Comparison is
constant-time. The store re-reads its file when it changes (looked at most once a
second), so ``precovery keys revoke`` takes effect in running servers without a restart.

Roles are ordered: ``read`` (orchestrators: every GET, ``POST /v1/score``) <
``operate`` (SREs: feedback, acknowledgements, approving or rejecting a failover) <
``admin`` (keys). A key of a higher role may do what a lower one may.

>>> import tempfile, pathlib
>>> store = KeyStore(pathlib.Path(tempfile.mkdtemp()) / "keys.json")
>>> record, secret = store.create("orchestrator", "read")
>>> store.verify(secret).name, store.verify(secret + "x")
('orchestrator', None)
>>> allows("operate", "read"), allows("read", "operate")
(True, False)
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from predictor.errors import ConfigError, ValidationError

ROLES = ("read", "operate", "admin")
_RANK = {role: i for i, role in enumerate(ROLES)}
_KEY = re.compile(r"pcv_([0-9a-f]{12})_([A-Za-z0-9_\-]{20,100})")
_NAME = re.compile(r"[A-Za-z0-9._@:\- ]{1,64}")


def allows(have: str, need: str) -> bool:
    """Whether a key of role ``have`` may do what needs role ``need``."""
    return _RANK.get(have, -1) >= _RANK[need]


@dataclass(frozen=True)
class ApiKey:
    """One key as stored (never the secret)."""

    id: str
    name: str
    role: str
    salt: str
    digest: str
    created_at: str
    revoked_at: str | None = None
    rate_per_s: float | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def public(self) -> dict[str, Any]:
        """What may be shown: everything but the salt and digest."""
        out = asdict(self)
        del out["salt"], out["digest"]
        return out


def _digest(salt: bytes, secret: str) -> str:
    return hashlib.sha256(salt + secret.encode()).hexdigest()


class KeyStore:
    """API keys in a JSON file (see the module docstring).

    Parameters
    ----------
    path
        The file; created (with its folder) by the first :meth:`create`.
    recheck_s
        How often, at most, a reader looks whether the file changed.
    """

    def __init__(self, path: Path, recheck_s: float = 1.0) -> None:
        self.path = path
        self.recheck_s = recheck_s
        self._lock = threading.Lock()
        self._keys: dict[str, ApiKey] = {}
        self._stamp: tuple[int, int] | None = None
        self._checked = -math.inf
        self._load()

    # -- file ---------------------------------------------------------------------------
    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def _load(self) -> None:
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return
        keys: dict[str, ApiKey] = {}
        if stamp is not None:
            try:
                data = orjson.loads(self.path.read_bytes())
                for row in data.get("keys", []):
                    key = ApiKey(**row)
                    keys[key.id] = key
            except (OSError, ValueError, TypeError) as exc:
                raise ConfigError(f"API key file {self.path} is unreadable: {exc}") from None
        self._keys, self._stamp = keys, stamp

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = orjson.dumps(
            {"version": 1, "keys": [asdict(k) for k in self._keys.values()]},
            option=orjson.OPT_INDENT_2,
        )
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(body)
        os.replace(tmp, self.path)
        self._stamp = self._file_stamp()

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked >= self.recheck_s:
            self._checked = now
            with self._lock:
                self._load()

    # -- admin --------------------------------------------------------------------------
    def create(self, name: str, role: str, rate_per_s: float | None = None) -> tuple[ApiKey, str]:
        """A new key; returns its record and the full key (shown once, never stored)."""
        if role not in _RANK:
            raise ValidationError("bad_role", f"role must be one of {', '.join(ROLES)}: {role!r}")
        if not _NAME.fullmatch(name):
            raise ValidationError("bad_name", "name: 1-64 of letters, digits, ._@:- and space")
        if rate_per_s is not None and not rate_per_s > 0:
            raise ValidationError("bad_rate", f"rate must be > 0 requests/s, got {rate_per_s}")
        secret = secrets.token_urlsafe(32)
        salt = secrets.token_bytes(16)
        with self._lock:
            self._load()
            key_id = secrets.token_hex(6)
            while key_id in self._keys:
                key_id = secrets.token_hex(6)
            record = ApiKey(
                id=key_id,
                name=name,
                role=role,
                salt=salt.hex(),
                digest=_digest(salt, secret),
                created_at=_now(),
                rate_per_s=rate_per_s,
            )
            self._keys[key_id] = record
            self._save()
        return record, f"pcv_{key_id}_{secret}"

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key by id (idempotent); unknown ids raise ValidationError."""
        with self._lock:
            self._load()
            key = self._keys.get(key_id)
            if key is None:
                raise ValidationError("unknown_key", f"no API key with id {key_id!r}")
            if key.active:
                key = replace(key, revoked_at=_now())
                self._keys[key_id] = key
                self._save()
        return key

    def keys(self) -> list[ApiKey]:
        self._refresh()
        return sorted(self._keys.values(), key=lambda k: k.created_at)

    def active(self) -> int:
        """How many keys are not revoked."""
        self._refresh()
        return sum(k.active for k in self._keys.values())

    # -- hot path -----------------------------------------------------------------------
    def verify(self, presented: str) -> ApiKey | None:
        """The active key ``presented`` is, or None (unknown, revoked or wrong secret)."""
        self._refresh()
        m = _KEY.fullmatch(presented)
        if m is None:
            return None
        key = self._keys.get(m.group(1))
        if key is None or not key.active:
            return None
        if not hmac.compare_digest(_digest(bytes.fromhex(key.salt), m.group(2)), key.digest):
            return None
        return key


class RateLimiter:
    """A token bucket per key: ``rate_per_s`` sustained, ``burst`` at once.

    Per process: behind a load balancer each replica counts its own share.

    >>> t = [0.0]
    >>> rl = RateLimiter(2.0, 2, clock=lambda: t[0])
    >>> [rl.take("k") for _ in range(3)]
    [0.0, 0.0, 0.5]
    >>> t[0] = 0.5; rl.take("k")
    0.0
    """

    def __init__(
        self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, rate_per_s: float | None = None) -> float:
        """Spend one token: 0.0 when allowed, else the seconds until one is available."""
        rate = rate_per_s or self.rate_per_s
        burst = max(float(self.burst), rate) if rate_per_s else float(self.burst)
        now = self._clock()
        with self._lock:
            tokens, then = self._buckets.get(key, (burst, now))
            tokens = min(burst, tokens + (now - then) * rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / rate


def host_allowed(host: str, allowed: list[str]) -> bool:
    """Whether a ``Host`` header (port stripped) matches the list (``*``, ``*.domain``).

    >>> host_allowed("api.example.com:8443", ["*.example.com"])
    True
    >>> host_allowed("evil.com", ["localhost", "127.0.0.1"])
    False
    """
    if host.startswith("["):
        name = host[1:].split("]", 1)[0]
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    name = name.lower()
    for pattern in allowed:
        p = pattern.lower().strip("[]")
        if p == "*" or p == name or (p.startswith("*.") and name.endswith(p[1:])):
            return True
    return False


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def is_loopback(host: str) -> bool:
    return host in LOOPBACK or host.startswith("127.")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
