"""The API's gates, as pure ASGI middleware (cheap on the hot path): hosts, keys, roles.

Order, outermost first: :class:`HostGate` (the ``Host`` header against an allow list; not
Starlette's ``TrustedHostMiddleware``, which answers in plain text),
CORS (Starlette's, when origins are configured), the request-id context, then
:class:`KeyGate` (API key, role, rate limit). Refusals are JSON bodies with the request
id, like every other error:

- 400 ``bad_host``: a ``Host`` header not on the list;
- 401 ``unauthorized`` (``missing_key`` / ``invalid_key``), with ``WWW-Authenticate``;
- 403 ``forbidden`` (``role``): the key's role is below the route's;
- 429 ``rate_limited``, with ``Retry-After`` (whole seconds).

A key travels as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; never in a URL
(URLs end up in access logs). Nothing here logs a key; refusals log the key id at most.
"""

from __future__ import annotations

import contextvars
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from serve.auth import ApiKey, KeyStore, RateLimiter, allows, host_allowed

logger = logging.getLogger(__name__)

#: The key of the request being served (None when the API runs open).
API_KEY: contextvars.ContextVar[ApiKey | None] = contextvars.ContextVar("api_key", default=None)

PUBLIC_PATHS = frozenset(
    {"/healthz", "/readyz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/console"}
)
PUBLIC_PREFIXES = ("/static/",)
#: The routes where a person approves or rejects a failover (role operate).
DECIDE = ("/approve", "/reject")


@dataclass
class Security:
    """How the API is guarded.

    ``keys`` None runs it open (the demo on loopback). ``allowed_hosts`` None accepts
    any ``Host``. ``rate_per_s`` / ``burst``: the per-key token bucket (a key's own
    ``rate_per_s`` wins).
    """

    keys: KeyStore | None = None
    allowed_hosts: list[str] | None = None
    cors_origins: list[str] = field(default_factory=list)
    rate_per_s: float = 50.0
    burst: int = 100


def required_role(method: str, path: str) -> str | None:
    """The least role a route needs; None for public ones (probes, docs, console shell)."""
    if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
        return None
    if path.startswith("/v1/keys"):
        return "admin"
    if path == "/v1/feedback" and method == "POST":
        return "operate"
    if method == "POST" and path.startswith("/v1/recommendations/") and path.endswith(DECIDE):
        return "operate"
    return "read"


async def send_json(
    send: Send,
    status: int,
    body: Mapping[str, object],
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    data = orjson.dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


class HostGate:
    """Refuses a ``Host`` header that is not on the list (DNS rebinding, host spoofing)."""

    def __init__(self, app: ASGIApp, allowed: list[str]) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = b""
        for k, v in scope["headers"]:
            if k == b"host":
                host = v
                break
        if not host_allowed(host.decode("latin-1"), self.allowed):
            await send_json(
                send,
                400,
                {
                    "error": "bad_host",
                    "reason": "host_not_allowed",
                    "detail": "this Host header is not served here "
                    "(PRECOVERY_API__ALLOWED_HOSTS lists the names that are)",
                },
            )
            return
        await self.app(scope, receive, send)


class KeyGate:
    """API key, role and rate limit for every non-public route (inside the request id)."""

    def __init__(
        self,
        app: ASGIApp,
        keys: KeyStore,
        limiter: RateLimiter,
        request_id: Callable[[], str],
    ) -> None:
        self.app = app
        self.keys = keys
        self.limiter = limiter
        self.request_id = request_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        need = required_role(scope["method"], scope["path"])
        if need is None:
            await self.app(scope, receive, send)
            return
        presented = None
        for k, v in scope["headers"]:
            if k == b"authorization":
                scheme, _, value = v.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer":
                    presented = value.strip()
                break
            if k == b"x-api-key":
                presented = v.decode("latin-1").strip()
                break
        if not presented:
            await self._refuse(
                send,
                401,
                "unauthorized",
                "missing_key",
                "send an API key: Authorization: Bearer <key> (or X-API-Key)",
            )
            return
        key = self.keys.verify(presented)
        if key is None:
            logger.info("refused an unknown or revoked API key on %s", scope["path"])
            await self._refuse(
                send, 401, "unauthorized", "invalid_key", "unknown or revoked API key"
            )
            return
        if not allows(key.role, need):
            await self._refuse(
                send,
                403,
                "forbidden",
                "role",
                f"this route needs role {need}; key {key.id} has {key.role}",
            )
            return
        wait = self.limiter.take(key.id, key.rate_per_s)
        if wait > 0:
            retry = max(1, math.ceil(wait))
            await self._refuse(
                send,
                429,
                "rate_limited",
                "rate_limited",
                f"key {key.id}: over its request rate; retry after {retry} s",
                [(b"retry-after", str(retry).encode())],
            )
            return
        token = API_KEY.set(key)
        try:
            await self.app(scope, receive, send)
        finally:
            API_KEY.reset(token)

    async def _refuse(
        self,
        send: Send,
        status: int,
        error: str,
        reason: str,
        detail: str,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        extra = list(headers or [])
        if status == 401:
            extra.append((b"www-authenticate", b'Bearer realm="precovery"'))
        body = {"error": error, "reason": reason, "detail": detail, "request_id": self.request_id()}
        await send_json(send, status, body, extra)
