"""HTTPProvider.stream_sse against a real loopback server that writes server-sent events in awkward pieces."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from openmaas.backends import http
from openmaas.backends.http import HTTPProvider
from openmaas.errors import UpstreamError
from openmaas.settings import Deployment

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def loopback(app: web.Application) -> AsyncIterator[int]:
    """``app`` served on a free loopback port (yielded) for the duration."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    finally:
        await runner.cleanup()


@asynccontextmanager
async def serve(pieces: list[bytes]) -> AsyncIterator[str]:
    """A loopback server whose POST /sse writes ``pieces`` one by one, each flushed on its own."""

    async def sse(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        for piece in pieces:
            await resp.write(piece)
            await asyncio.sleep(0.005)  # separate socket reads on the client side
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/sse", sse)
    async with loopback(app) as port:
        yield f"http://127.0.0.1:{port}"


async def events(pieces: list[bytes]) -> list[tuple[str | None, bytes]]:
    async with serve(pieces) as base:
        provider = HTTPProvider(Deployment(name="up", backend="openai_compat"), base, {})
        try:
            return [e async for e in provider.stream_sse("/sse", {})]
        finally:
            await provider.close()


async def test_events_split_anywhere_across_reads_arrive_whole() -> None:
    body = b'event: a\ndata: {"x": 1}\n\ndata: {"y": 2}\r\n\r\n: a comment\ndata: [DONE]\n\n'
    # every split point, three pieces at a time
    for cut in range(1, len(body) - 1, 3):
        got = await events([body[:cut], body[cut : cut + 2], body[cut + 2 :]])
        assert got == [("a", b'{"x": 1}'), (None, b'{"y": 2}'), (None, b"[DONE]")], cut


async def test_a_last_line_without_newline_is_still_delivered() -> None:
    assert await events([b"data: one\n\n", b"data: two"]) == [(None, b"one"), (None, b"two")]


async def test_a_line_far_beyond_one_read_arrives_whole() -> None:
    big = b'{"text": "' + b"x" * 300_000 + b'"}'
    got = await events([b"data: " + big[:100_000], big[100_000:], b"\n\ndata: [DONE]\n\n"])
    assert got == [(None, big), (None, b"[DONE]")]


async def test_an_endless_line_is_an_upstream_error_not_unbounded_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http, "MAX_SSE_LINE", 10_000)
    with pytest.raises(UpstreamError, match="over 10000 bytes"):
        await events([b"data: " + b"y" * 8_000, b"y" * 8_000, b"\n\n"])


async def test_cookies_an_upstream_sets_are_never_sent_back() -> None:
    """One upstream session serves every tenant: a cookie set in answer to one request must not ride along on the
    next one (which may be another tenant's)."""
    seen: list[str | None] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(request.headers.get("cookie"))
        resp = web.json_response({"ok": True})
        resp.set_cookie("session", "tenant-a", path="/")
        return resp

    app = web.Application()
    app.router.add_post("/v1/x", answer)
    async with loopback(app) as port:
        # by name: aiohttp's default jar already ignores cookies from bare IP addresses
        provider = HTTPProvider(Deployment(name="up", backend="openai_compat"), f"http://localhost:{port}", {})
        try:
            for _ in range(3):
                assert await provider.post_json("/v1/x", {}) == {"ok": True}
        finally:
            await provider.close()
    assert seen == [None, None, None]
