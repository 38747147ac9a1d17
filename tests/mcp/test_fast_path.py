"""``/mcp``'s fast path for ``tools/call`` answers exactly as the SDK's own stateless path does, and leaves
everything else to the SDK — checked request by request against the real ``mcp-server-time``, over HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS
from starlette.routing import Route

from openmaas.mcp.server import McpEndpoint
from tests.helpers import ADMIN_KEY
from tests.mcp.conftest import gateway, mcp_session, settings, time_server

pytestmark = pytest.mark.anyio
JSON_SSE = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
CONVERT = {"source_timezone": "UTC", "time": "12:30", "target_timezone": "Asia/Tokyo"}


def call(tool: str, arguments: Any, request_id: Any = 1) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments},
    }


# (what is sent, headers over JSON_SSE, does the fast path answer it)
CASES: list[tuple[Any, dict[str, str], bool]] = [
    (call("time__convert_time", CONVERT), {}, True),
    (call("time__convert_time", CONVERT, "req-a"), {"mcp-protocol-version": "2025-06-18"}, True),
    (call("time__convert_time", CONVERT), {"mcp-protocol-version": "2024-11-05"}, True),
    (call("time__convert_time", CONVERT), {"mcp-protocol-version": "2025-11-25"}, True),
    (call("time__convert_time", {"time": "25:99"}), {}, True),  # the tool's own error: isError
    (call("time__no_such_tool", {}), {}, True),  # INVALID_PARAMS from the gateway
    (call("time__get_current_time", {"timezone": "UTC"}), {"x-test": "forbidden"}, True),  # -32003 for this key
    (call("time__convert_time", "not an object"), {}, False),  # invalid params: the SDK's error
    ({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {}}, {}, False),
    ({"jsonrpc": "2.0", "id": True, "method": "tools/call", "params": {"name": "x"}}, {}, False),
    ({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}, {}, False),
    ({"jsonrpc": "2.0", "method": "notifications/initialized"}, {}, False),
    ([call("time__convert_time", CONVERT)], {}, False),  # a batch
    (call("time__convert_time", CONVERT), {"accept": "text/event-stream"}, False),  # 406 from the SDK
    (call("time__convert_time", CONVERT), {"content-type": "text/plain"}, False),
    (call("time__convert_time", CONVERT), {"mcp-protocol-version": "1999-01-01"}, False),
]


def endpoint(app: Any) -> McpEndpoint:
    route = next(r for r in app.routes if isinstance(r, Route) and r.path == "/mcp")
    assert isinstance(route.endpoint, McpEndpoint)
    return route.endpoint


async def test_the_fast_path_answers_as_the_sdk_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENMAAS_ADMIN_KEY", ADMIN_KEY)
    async with gateway(settings(tmp_path, [time_server()])) as (app, url):
        mcp = endpoint(app)
        sdk_calls = 0
        handle = mcp.manager.handle_request

        async def counted(scope: Any, receive: Any, send: Any) -> None:
            nonlocal sdk_calls
            sdk_calls += 1
            await handle(scope, receive, send)

        mcp.manager.handle_request = counted  # type: ignore[method-assign]
        admin = {"authorization": f"Bearer {ADMIN_KEY}"}
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            await client.post("/admin/tenants", json={"name": "fast"}, headers=admin)
            keys = {}
            for name, tools in (("all", None), ("forbidden", ["time__convert_time"])):
                made = await client.post(
                    "/admin/keys", json={"tenant": "fast", "name": name, "tools": tools}, headers=admin
                )
                keys[name] = made.json()["key"]
            for message, extra, fast in CASES:
                answers = []
                for fast_path in (True, False):
                    mcp.fast_path = fast_path
                    key = keys["forbidden" if extra.get("x-test") == "forbidden" else "all"]
                    before = sdk_calls
                    resp = await client.post(
                        "/mcp",
                        content=json.dumps(message),
                        headers={**JSON_SSE, **extra, "authorization": f"Bearer {key}"},
                    )
                    took_sdk = sdk_calls > before
                    if fast_path:
                        assert took_sdk != fast, (message, extra)
                    try:
                        body = resp.json()
                    except ValueError:
                        body = resp.text
                    answers.append((resp.status_code, resp.headers.get("content-type"), body))
                assert answers[0] == answers[1], (message, extra, answers)
            mcp.fast_path = True
        # the official client through the fast path, end to end
        async with mcp_session(url, keys["all"]) as session:
            result = await session.call_tool("time__convert_time", CONVERT)
            assert not result.is_error and "Asia/Tokyo" in result.content[0].text
            with pytest.raises(MCPError) as refused:
                await session.call_tool("time__no_such_tool", {})
            assert refused.value.code == INVALID_PARAMS
