"""Two gateway replicas on PostgreSQL + Redis: one MCP client session whose requests alternate between them
(a balancer without sticky sessions) keeps working, and both replicas' tool calls land in the one ledger."""

from __future__ import annotations

import contextlib
from pathlib import Path

import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from openmaas.server import create_app
from openmaas.store import audit
from openmaas.testing.serve import serve_app
from tests.helpers import store_settings
from tests.mcp.conftest import settings, time_server

pytestmark = pytest.mark.anyio


class Alternating(httpx2.AsyncBaseTransport):
    """Sends each request to the next replica in turn, as a round-robin balancer would."""

    def __init__(self, ports: list[int]) -> None:
        self.ports, self.sent = ports, [0] * len(ports)
        self.inner = httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        n = sum(self.sent) % len(self.ports)
        self.sent[n] += 1
        request.url = request.url.copy_with(port=self.ports[n])
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_an_mcp_session_survives_switching_replicas(tmp_path: Path) -> None:
    store = await store_settings("postgres", tmp_path)
    config = settings(tmp_path, [time_server(price_per_call_usd=0.001)], store=store)
    apps = [create_app(config), create_app(config)]
    async with contextlib.AsyncExitStack() as stack:
        urls = [await stack.enter_async_context(serve_app(app)) for app in apps]
        for app in apps:
            await app.state.mcp.wait_ready(30)
        ports = [int(url.rsplit(":", 1)[1]) for url in urls]
        balancer = Alternating(ports)
        http = await stack.enter_async_context(
            httpx2.AsyncClient(transport=balancer, headers={"x-request-id": "req_replicas"}, timeout=30)
        )
        read, write = await stack.enter_async_context(streamable_http_client(urls[0] + "/mcp", http_client=http))
        session = await stack.enter_async_context(ClientSession(read, write))
        await session.initialize()  # replica A
        listed = await session.list_tools()  # replica B
        assert "time__get_current_time" in [t.name for t in listed.tools]
        for zone in ("Asia/Tokyo", "Europe/Paris", "America/Lima", "UTC"):  # A, B, A, B …
            result = await session.call_tool("time__get_current_time", {"timezone": zone})
            assert not result.is_error, result.content
        assert min(balancer.sent) >= 3  # both replicas served this one session
        for app in apps:
            await app.state.services.ledger.sync()
        rows = await audit.trail(apps[0].state.services.db, "req_replicas")
    assert sorted(r["model"] for r in rows) == ["time__get_current_time"] * 4
    assert sum(r["cost_usd"] for r in rows) == pytest.approx(0.004)
