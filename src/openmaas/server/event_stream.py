"""Server-sent event responses that share socket writes between events of a steady stream.

A local engine streams a token every ~10 ms; relayed one write each, every token costs the gateway a socket
write and the client a wake-up, on the cores the engine decodes on. Here an event that follows a short gap —
the stream is in its steady cadence — may wait up to ``hold`` seconds for the events after it, and they leave
in one write (measured, docs/benchmarks.md §b: a client on the same host spends 122 instead of ~270 µs of CPU
per token; the gateway's own cost is its read side and does not change). Every event is still its own
``data:`` event, byte for byte and in order; only when the bytes leave changes:

- the opening events (those within ``hold`` of the first) and any event after a gap of ``hold`` or more
  (the first content after a long prefill, a tool call after a pause) are written at once, so time to
  first token and slow streams are untouched;
- a held event never waits longer than ``hold``: a timer writes it out if the next one is late;
- the held events go out with the last write of the response (the end of the stream costs no extra
  write either).

``hold`` 0 writes every event as it comes (``server.stream_hold_ms``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, Mapping

from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Send

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


class EventStreamResponse(StreamingResponse):
    """``text/event-stream`` from an iterator of whole events (bytes), written as described above."""

    def __init__(self, events: AsyncIterable[bytes], hold: float, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(events, media_type="text/event-stream", headers={**SSE_HEADERS, **(headers or {})})
        self.events = events
        self.hold = hold

    async def stream_response(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        if self.hold <= 0:
            async for event in self.events:
                await send({"type": "http.response.body", "body": event, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        writer = _Writer(send, self.hold)
        try:
            async for event in self.events:
                await writer.event(event)
        except Exception:
            # the source failed: what it produced before still reaches the client, as without holding
            with contextlib.suppress(Exception):
                await writer.release()
            raise
        else:
            await writer.finish()
        finally:
            writer.cancel()


class _Writer:
    """The holding policy of one response (see the module doc)."""

    def __init__(self, send: Send, hold: float) -> None:
        self.send = send
        self.hold = hold
        self.loop = asyncio.get_running_loop()
        self.first = -1.0  # arrival of the first event
        self.last = 0.0  # arrival of the previous event
        self.held: list[bytes] = []
        self.since = 0.0  # arrival of the oldest held event
        self.timer: asyncio.TimerHandle | None = None
        self.flushing: asyncio.Task[None] | None = None  # a write the timer started

    async def event(self, data: bytes) -> None:
        now = self.loop.time()
        gap, self.last = now - self.last, now
        if self.first < 0:
            self.first = now
        if self.flushing is not None:  # the timer's write goes first
            await self.flushing
            self.flushing = None
        if self.held:
            if now - self.since + gap <= self.hold:  # the next one should come in time too
                self.held.append(data)
                return
            self._stop_timer()
            data = b"".join((*self.held, data))
            self.held.clear()
        elif gap < self.hold and now - self.first >= self.hold:
            self.held.append(data)
            self.since = now
            self.timer = self.loop.call_at(now + self.hold, self._expired)
            return
        await self.send({"type": "http.response.body", "body": data, "more_body": True})

    async def finish(self) -> None:
        await self.release(more_body=False)

    async def release(self, more_body: bool = True) -> None:
        """Write what is held now (with ``more_body`` false: and end the response)."""
        if self.flushing is not None:
            await self.flushing
            self.flushing = None
        self._stop_timer()
        body = b"".join(self.held)
        self.held.clear()
        if body or not more_body:
            await self.send({"type": "http.response.body", "body": body, "more_body": more_body})

    def _expired(self) -> None:
        """The next event is late: write the held ones now (the response's task is waiting on its iterator)."""
        self.timer = None
        body = b"".join(self.held)
        self.held.clear()
        self.flushing = self.loop.create_task(self._write(body))

    async def _write(self, body: bytes) -> None:
        await self.send({"type": "http.response.body", "body": body, "more_body": True})

    def _stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def cancel(self) -> None:
        """The response ended or was cancelled (the client left): no write may follow."""
        self._stop_timer()
        if self.flushing is not None:
            if self.flushing.done():
                if not self.flushing.cancelled():
                    self.flushing.exception()  # retrieved: it was the client leaving, already ended the response
            else:
                self.flushing.cancel()
        self.held.clear()


def event_stream(
    request: Request, events: AsyncIterable[bytes], headers: Mapping[str, str] | None = None
) -> EventStreamResponse:
    """The response for a stream of events on this server (its ``server.stream_hold_ms``)."""
    hold_ms: float = request.app.state.settings.server.stream_hold_ms
    return EventStreamResponse(events, hold_ms / 1000, headers)
