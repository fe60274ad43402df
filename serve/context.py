"""The request context: an id on every response, and no plain-text 500s.

:data:`REQUEST_ID` holds the id of the request being served, for error bodies (see
:mod:`serve.errors`) and log lines; :class:`RequestContext` sets it.
"""

from __future__ import annotations

import contextvars
import logging
import re
import uuid

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Unhandled errors are logged under ``serve.app``, the name they had before the API was
#: split into modules (log filters and alert rules may match on it).
logger = logging.getLogger("serve.app")

#: The request id of the request being served (for error bodies and log lines).
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
SANE_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")
JSON = "application/json"


class RequestContext:
    """Pure ASGI middleware: a request id on every response, and no plain-text 500s.

    The id is the client's ``X-Request-ID`` when it is sane (1-128 of ``A-Za-z0-9._:-``),
    else a fresh one. An exception that escapes a handler is logged at ERROR with the
    id and its traceback, and answered with a JSON 500 naming the id (when the response
    has not started; otherwise the connection is closed after logging).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or ()).get(b"x-request-id", b"")
        rid = given.decode() if SANE_ID.fullmatch(given) else uuid.uuid4().hex
        token = REQUEST_ID.set(rid)
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [
                    (k, v) for k, v in message.get("headers", ()) if k.lower() != b"x-request-id"
                ]
                headers.append((b"x-request-id", rid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            logger.error(
                "unhandled error [request_id=%s] %s %s",
                rid,
                scope.get("method"),
                scope.get("path"),
                exc_info=exc,
            )
            if started:
                return
            body = orjson.dumps(
                {
                    "error": "internal",
                    "reason": "internal_error",
                    "detail": f"{type(exc).__name__}; the log has the traceback under this id",
                    "request_id": rid,
                }
            )
            await send_with_id(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [
                        (b"content-type", JSON.encode()),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
        finally:
            REQUEST_ID.reset(token)
