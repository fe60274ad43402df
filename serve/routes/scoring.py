"""What orchestrators read (tag ``scoring``): the views, recommendations and their event
stream, what-if scoring and a system's history.

Hot paths never wait for the stream: views come pre-serialised from the backend's
per-state cache (a thread only to render), and the event stream waits on an asyncio
event the worker sets (:mod:`serve.sse`), not in a worker thread.
"""

from __future__ import annotations

from typing import Any

import orjson
from anyio import to_thread
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from pipelines.embedded.live import CursorReset
from predictor.errors import PayloadTooLarge, ValidationError
from predictor.events import loads
from serve.backend import Backend
from serve.context import JSON, REQUEST_ID
from serve.schemas import (
    CursorResetBody,
    ErrorBody,
    HistoryPoint,
    Recommendation,
    ScoreResponse,
    SystemDetail,
    SystemSummary,
)
from serve.sse import News, recommendation_events

CURSOR_DOC = (
    "Resume after this cursor: the `cursor` of the last recommendation you have "
    "(`<stream_id>:<seq>`), or 0 / nothing for the start. A cursor of another stream "
    "(the service restarted) or one older than the kept log is refused with 409 "
    "`cursor_reset`: start over with after=0 and drop duplicates by recommendation_id."
)


async def view(backend: Backend, system: str | None) -> bytes:
    """The cached render without leaving the event loop; a thread only to render."""
    data = backend.view_json(system, wait=False)
    if data is None:
        data = await to_thread.run_sync(backend.view_json, system)
    assert data is not None
    return data


def score_events(body: bytes, max_body_bytes: int) -> list[Any]:
    """The events of a score body, or a :class:`ValidationError` (and nothing else)."""
    try:
        # events.loads tells a NaN/Infinity literal (non_finite) from malformed JSON.
        payload = loads(body, max_body_bytes)
    except ValidationError:
        raise
    except Exception as exc:  # a decoder's surprise (deep nesting...) is the body's fault
        raise ValidationError("malformed_json", f"{type(exc).__name__}"[:120]) from None
    events = payload.get("events") if isinstance(payload, dict) else payload
    if not isinstance(events, list):
        raise ValidationError("wrong_type", 'body must be {"events": [...]} or a JSON array')
    bad = [
        {"index": i, "reason": "not_an_object", "detail": type(ev).__name__}
        for i, ev in enumerate(events)
        if not isinstance(ev, dict)
    ]
    if bad:
        first = bad[0]
        raise ValidationError(
            "not_an_object", f"event {first['index']}: {first['detail']}", bad[:100]
        )
    return events


def add_routes(
    router: APIRouter,
    backend: Backend,
    max_body_bytes: int,
    max_events_per_request: int,
    sse_keepalive_s: float,
) -> None:
    """The scoring routes over ``backend`` (limits as in :func:`serve.app.create_app`)."""
    news = News(backend)

    @router.get("/v1/systems", response_model=list[SystemSummary], tags=["scoring"])
    async def systems() -> Response:
        """Health, worst component and most urgent action of every system.

        Rendered at most once per engine state; while a batch is in progress the render
        of the state before it is served (``as_of`` in the detail view tells which)."""
        return Response(await view(backend, None), media_type=JSON)

    @router.get(
        "/v1/systems/{system}",
        response_model=SystemDetail,
        responses={404: {"model": ErrorBody}},
        tags=["scoring"],
    )
    async def system(system: str) -> Response:
        """Components and hosts of one system, with health, risk and latest recommendation.

        Rendered at most once per engine state (see ``/v1/systems``); ``as_of`` is the
        watermark the view was rendered at."""
        return Response(await view(backend, system), media_type=JSON)

    @router.get(
        "/v1/recommendations",
        response_model=list[Recommendation],
        responses={409: {"model": CursorResetBody}, 422: {"model": ErrorBody}},
        tags=["scoring"],
    )
    async def recommendations(
        system: str | None = None,
        after: str | None = Query(None, max_length=200, description=CURSOR_DOC),
        limit: int = Query(100, ge=1, le=1000),
    ) -> Response:
        """Recent recommendations, oldest first (the latest ``limit`` unless ``after``).

        Cursors survive restarts by refusing to be reused across them: sequence numbers
        restart at 1 in every process, so each process has a fresh ``stream_id`` (also in
        the ``X-Stream-ID`` header) and a cursor is ``<stream_id>:<seq>``. Resuming with a
        cursor of another stream answers 409 ``cursor_reset`` (reason
        ``stream_changed``); with one older than the kept log, 409 ``cursor_expired``.
        Nothing is ever skipped silently. A bare number other than 0 is refused (422)."""
        seq = backend.parse_cursor(after)
        rows = backend.recommendations(system, seq, limit)
        return Response(
            orjson.dumps(rows), media_type=JSON, headers={"X-Stream-ID": backend.stream_id}
        )

    @router.get(
        "/v1/recommendations/stream",
        responses={200: {"content": {"text/event-stream": {}}}, 422: {"model": ErrorBody}},
        tags=["scoring"],
    )
    async def stream(
        after: str | None = Query(None, max_length=200, description=CURSOR_DOC),
        max_s: float = Query(3600.0, gt=0, le=86_400, description="Close after, seconds"),
        last_event_id: str | None = Header(
            None,
            alias="Last-Event-ID",
            max_length=200,
            description="Standard SSE resume header; wins over ?after=",
        ),
    ) -> StreamingResponse:
        """Server-sent events: one ``recommendation`` event per recommendation.

        Each event's ``id:`` is its cursor ``<stream_id>:<seq>``, so a reconnecting
        ``EventSource`` resumes by itself (``Last-Event-ID``; ``?after=`` works too). A
        cursor of another stream (the service restarted) or one older than the kept log
        gets an ``event: reset`` first (data: reason, detail, the new ``stream_id``);
        the events after it are the current stream's from its oldest kept one: drop
        duplicates by ``recommendation_id``. While idle, a ``: keep-alive`` comment
        comes every ``sse_keepalive_s`` seconds."""
        reset: CursorReset | None = None
        last: Any
        try:
            last = backend.parse_cursor(last_event_id or after)
        except CursorReset as exc:
            reset, last = exc, backend.parse_cursor(None)
        news.attach()
        sid = backend.stream_id
        return StreamingResponse(
            recommendation_events(backend, news, last, reset, sid, max_s, sse_keepalive_s),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "X-Stream-ID": sid},
        )

    @router.post(
        "/v1/score",
        response_model=ScoreResponse,
        responses={
            413: {"model": ErrorBody},
            415: {"model": ErrorBody, "description": "Body not sent as application/json"},
            422: {"model": ErrorBody},
            501: {"model": ErrorBody, "description": "This server has no engine (serve)"},
        },
        tags=["scoring"],
        # The body is parsed by hand (exact reasons, NaN, size limit), so its schema is
        # declared here; create_app adds the models it refers to.
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    JSON: {
                        "schema": {
                            "anyOf": [
                                {"$ref": "#/components/schemas/ScoreRequest"},
                                {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/TelemetryEvent"},
                                },
                            ]
                        }
                    }
                },
            }
        },
    )
    async def score(request: Request) -> Any:
        """Score a batch of telemetry.v1 events (a what-if: the live state is not changed).

        Body: ``{"events": [...]}`` (``ScoreRequest``) or a bare JSON array of events, at
        most ``max_body_bytes``. Any invalid event fails the whole request with 422 and
        every reason; so does a body that is not JSON, too deeply nested, or not of
        either shape.
        """
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        # A body with no type is read as JSON; any other declared type is refused (no
        # text/plain "simple requests" from a browser on another origin).
        if ctype and ctype != JSON and not ctype.endswith("+json"):
            return JSONResponse(
                {
                    "error": "unsupported_media_type",
                    "reason": "not_json",
                    "detail": f"Content-Type must be {JSON}, got {ctype[:60]!r}",
                    "request_id": REQUEST_ID.get(),
                },
                status_code=415,
            )
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_body_bytes:
            raise PayloadTooLarge("too_large", f"{declared} bytes > {max_body_bytes} bytes")
        body = bytearray()
        async for part in request.stream():
            body.extend(part)
            if len(body) > max_body_bytes:
                raise PayloadTooLarge("too_large", f"body over {max_body_bytes} bytes")
        events = score_events(bytes(body), max_body_bytes)
        return await to_thread.run_sync(backend.score, events, max_events_per_request)

    @router.get(
        "/v1/systems/{system}/history",
        response_model=list[HistoryPoint],
        responses={404: {"model": ErrorBody}},
        tags=["scoring"],
    )
    def history(system: str) -> Response:
        """A system's health, highest risk and action over the last hours, oldest first.

        One point per step of event time (the live state's ``history_step_s``, a minute
        by default), bounded (``history_points``); the console draws its charts from it."""
        return Response(orjson.dumps(backend.history(system)), media_type=JSON)
