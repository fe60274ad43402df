"""The recommendation feed as server-sent events: the waker and the event generator.

The event stream waits on an asyncio event the worker sets (through :class:`News`), not
in a worker thread, so hundreds of idle streams cost no threads.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson

from pipelines.embedded.live import CursorReset
from serve.backend import Backend


class News:
    """Wakes every event-stream generator when the backend logs recommendations.

    The worker thread calls the listener; it hands over to the event loop with
    ``call_soon_threadsafe``, which swaps in a fresh :class:`asyncio.Event` and sets the
    old one. Waiting costs no thread, so hundreds of idle streams cost no worker threads.
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event = asyncio.Event()
        self._listener: Callable[[], None] | None = None

    def attach(self) -> None:
        """Listen on behalf of the running loop (once per loop)."""
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        if self._listener is not None:
            self.backend.remove_listener(self._listener)
        self._loop, self._event = loop, asyncio.Event()

        def listener() -> None:
            loop.call_soon_threadsafe(self._fire)

        self._listener = listener
        self.backend.add_listener(listener)

    def _fire(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()

    def current(self) -> asyncio.Event:
        return self._event

    @staticmethod
    async def wait(event: asyncio.Event, timeout_s: float) -> bool:
        """Whether ``event`` was set within ``timeout_s``."""
        try:
            async with asyncio.timeout(max(0.0, timeout_s)):
                await event.wait()
        except TimeoutError:
            return False
        return True


def reset_event(why: str, detail: str, stream_id: str) -> bytes:
    """An ``event: reset`` (the client's cursor is of another stream, or too old)."""
    data = orjson.dumps({"reason": why, "detail": detail, "stream_id": stream_id})
    return b"event: reset\ndata: %s\n\n" % data


async def recommendation_events(
    backend: Backend,
    news: News,
    last: Any,
    reset: CursorReset | None,
    sid: str,
    max_s: float,
    keepalive_s: float,
) -> AsyncIterator[bytes]:
    """The body of ``/v1/recommendations/stream``: every recommendation after ``last``
    (a backend position), then each new one as it is logged, for ``max_s`` seconds; a
    ``: keep-alive`` comment every ``keepalive_s`` seconds while idle. ``reset``: the
    client's cursor was refused, so an ``event: reset`` comes first."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_s
    yield b"retry: 2000\n: precovery recommendations, stream %s\n\n" % sid.encode()
    if reset is not None:
        yield reset_event(reset.why, reset.detail, sid)
    while (now := loop.time()) < deadline:
        tick = news.current()
        if backend.newer_than(last):
            recs = backend.recommendations(after=last, limit=1000)
            gone = backend.gap(last, recs)
            if gone:
                yield reset_event("cursor_expired", gone, sid)
            for rec in recs:
                last = backend.position_of(rec)
                yield b"event: recommendation\nid: %s\ndata: %s\n\n" % (
                    rec["cursor"].encode(),
                    orjson.dumps(rec),
                )
            if recs:
                continue
        wait = min(keepalive_s, deadline - now)
        if not await news.wait(tick, wait) and loop.time() < deadline:
            yield b": keep-alive\n\n"
