"""Where the API's keys and feedback live, and how a server is guarded (docs/api.md).

The rule: with at least one active API key in the key file, every server (demo or
``precovery serve``) requires keys. With none, a server runs *open* — only on a loopback
address; asked to bind anywhere else it refuses to start (:class:`ConfigError`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.records.feedback import FeedbackStore
from pipelines.settings import Settings
from predictor.errors import ConfigError
from serve.auth import KeyStore, is_loopback
from serve.gates import Security


def keys_path(settings: Settings) -> Path:
    return settings.api.keys_file or settings.state_dir / "api-keys.json"


def key_store(settings: Settings) -> KeyStore:
    return KeyStore(keys_path(settings))


def feedback_store(settings: Settings) -> FeedbackStore:
    return FeedbackStore(settings.api.feedback_db or settings.state_dir / "feedback.sqlite")


def security_for(settings: Settings, host: str) -> tuple[Security, str]:
    """The server's guard for listening on ``host``, and one line saying which mode.

    Raises :class:`ConfigError` for a non-loopback ``host`` without API keys.
    """
    api = settings.api
    store = key_store(settings)
    active = store.active()
    hosts = list(api.allowed_hosts)
    if active:
        mode = f"API keys required ({active} active in {store.path})"
        keys: KeyStore | None = store
    elif is_loopback(host):
        mode = (
            f"open: no API keys, so anyone on this machine may call it; listening on {host} "
            f"only (precovery keys create to require keys)"
        )
        keys = None
    else:
        raise ConfigError(
            f"refusing to listen on {host} without API keys: anyone who can reach it could "
            f"call it. Create one with `precovery keys create NAME --role read` (keys file "
            f"{store.path}), or listen on 127.0.0.1"
        )
    if host not in hosts and host not in ("0.0.0.0", "::"):
        hosts.append(host)  # the name it listens on is a name it is reached by
    return (
        Security(
            keys=keys,
            allowed_hosts=hosts,
            cors_origins=list(api.cors_origins),
            rate_per_s=api.rate_per_s,
            burst=api.burst,
        ),
        mode,
    )


def tls_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's certificate options from the settings (both or neither)."""
    api = settings.api
    if (api.ssl_certfile is None) != (api.ssl_keyfile is None):
        raise ConfigError("TLS needs both PRECOVERY_API__SSL_CERTFILE and ..._SSL_KEYFILE")
    if api.ssl_certfile is None:
        return {}
    for p in (api.ssl_certfile, api.ssl_keyfile):
        if p is None or not p.is_file():
            raise ConfigError(f"TLS file not found: {p}")
    return {"ssl_certfile": str(api.ssl_certfile), "ssl_keyfile": str(api.ssl_keyfile)}
