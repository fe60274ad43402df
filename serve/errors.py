"""Errors as JSON bodies: one handler per kind, every body naming the request id.

:data:`STATUS` maps :mod:`predictor.errors` to status codes; a cursor of another stream
is a 409 ``cursor_reset``; a backend that cannot do something (``NotImplementedError``)
a 501; a request FastAPI refuses a 422 in the same shape as ours (``rejects``).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from pipelines.embedded.live import CursorReset
from predictor.errors import (
    ConfigError,
    EdgeError,
    ModelError,
    PayloadTooLarge,
    PrecoveryError,
    UnknownEntityError,
    ValidationError,
)
from serve.context import REQUEST_ID

STATUS = {
    PayloadTooLarge: 413,
    ValidationError: 422,
    UnknownEntityError: 404,
    ModelError: 503,
    ConfigError: 500,
    EdgeError: 502,
}


def install(app: FastAPI) -> None:
    """Register the error handlers on ``app``."""

    @app.exception_handler(PrecoveryError)
    async def _precovery_error(_request: Request, exc: PrecoveryError) -> JSONResponse:
        status = next((code for cls, code in STATUS.items() if isinstance(exc, cls)), 500)
        body: dict[str, Any] = {"error": type(exc).__name__, "reason": str(exc)}
        if isinstance(exc, ValidationError):
            body = {"error": "validation", "reason": exc.reason, "detail": exc.detail}
            if exc.items:
                body["rejects"] = exc.items[:100]
        body["request_id"] = REQUEST_ID.get()
        return JSONResponse(body, status_code=status)

    @app.exception_handler(CursorReset)
    async def _cursor_reset(_request: Request, exc: CursorReset) -> JSONResponse:
        body = {
            "error": "cursor_reset",
            "reason": exc.why,
            "detail": exc.detail,
            "stream_id": exc.stream_id,
            "request_id": REQUEST_ID.get(),
        }
        return JSONResponse(body, status_code=409, headers={"X-Stream-ID": exc.stream_id})

    @app.exception_handler(NotImplementedError)
    async def _not_here(_request: Request, exc: NotImplementedError) -> JSONResponse:
        body = {
            "error": "not_implemented",
            "reason": "not_served_here",
            "detail": str(exc)[:300],
            "request_id": REQUEST_ID.get(),
        }
        return JSONResponse(body, status_code=501)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        rejects = [
            {
                "loc": [str(p) for p in err.get("loc", ())],
                "reason": str(err.get("type", "invalid")),
                "detail": str(err.get("msg", ""))[:200],
            }
            for err in exc.errors()[:100]
        ]
        first = rejects[0] if rejects else {"loc": [], "detail": ""}
        body = {
            "error": "validation",
            "reason": "invalid_request",
            "detail": f"{'.'.join(first['loc'])}: {first['detail']}",
            "rejects": rejects,
            "request_id": REQUEST_ID.get(),
        }
        return JSONResponse(body, status_code=422)
