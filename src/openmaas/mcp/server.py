"""The gateway as an MCP server at ``/mcp`` (streamable HTTP, the official SDK's low-level server).

Stateless: every POST is served on its own (the SDK's stateless mode), so any replica serves any request
and there is no session to lose when a balancer switches replicas. The caller is authenticated per request
with the same keys as the rest of the API (``Authorization: Bearer`` or ``x-api-key``); ``tools/list``
shows only what that key may use, ``tools/call`` goes through ``McpHub.call`` (permissions, privacy,
admission, ledger) under the HTTP request's id.

A client with a tool-count cap: when a key may use more than ``mcp.max_listed_tools`` tools, the list
holds two tools instead — ``search_tools`` (find tools by words, with their schemas) and ``call_tool``
(call one by name) — so every tool stays reachable through two.

``tools/call`` on the handshake protocol versions (what clients speak today) is answered without the SDK's
per-request machinery (a transport, memory streams, a dispatcher and a task group per POST: ~1 ms here), by
the SDK's own pieces — its Accept check, its request validation, its result serialisation, its error mapping.
Anything else, and any request the fast path is not sure of, goes to the SDK unchanged (the body is
replayed); ``tests/mcp/test_fast_path.py`` checks both paths give the same answers.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import mcp_types as types
import orjson
from mcp.server.lowlevel.server import Server
from mcp.server.streamable_http import check_accept_headers
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError
from mcp.shared.jsonrpc_dispatcher import handler_exception_to_error_data
from mcp_types import methods as mcp_methods
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send

from openmaas.auth.cache import KeyCache
from openmaas.auth.principal import Principal
from openmaas.errors import NotFound, OpenMaaSError, PermissionDenied
from openmaas.mcp.hub import McpHub, ToolEntry
from openmaas.mcp.upstream import ToolOutput
from openmaas.server.routes import api_key

log = logging.getLogger("openmaas.mcp")
FAST_MAX_BYTES = 256 * 1024  # larger calls (or chunked bodies) take the SDK's path, with its size limit
FORBIDDEN = -32003  # JSON-RPC server error range: the key may not use this tool (data.code: tool_not_allowed)
REFUSED = -32004  # refused by policy or limits (privacy, rate limit, budget); data.code says which

SEARCH_TOOLS = types.Tool(
    name="search_tools",
    description="Find tools by what they do. Returns matching tool names with their descriptions and input schemas; "
    "call one with call_tool.",
    input_schema={
        "type": "object",
        "properties": {"query": {"type": "string"}, "limit": {"type": "integer", "minimum": 1, "maximum": 50}},
        "required": ["query"],
    },
)
CALL_TOOL = types.Tool(
    name="call_tool",
    description="Call a tool found with search_tools by its name, with its arguments.",
    input_schema={
        "type": "object",
        "properties": {"name": {"type": "string"}, "arguments": {"type": "object"}},
        "required": ["name"],
    },
)


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def search(entries: list[ToolEntry], query: str, limit: int = 10) -> list[ToolEntry]:
    """Tools ranked by how many of the query's words their name and description share."""
    wanted = _words(query)
    scored = [(len(wanted & _words(f"{e.name} {e.description}")), e.name, e) for e in entries]
    return [e for score, _, e in sorted(scored, key=lambda x: (-x[0], x[1])) if score > 0][:limit]


class McpEndpoint:
    def __init__(self, hub: McpHub, keys: KeyCache, max_listed: int) -> None:
        self.hub, self.keys, self.max_listed = hub, keys, max_listed
        self.server: Server[Any] = Server(
            "openmaas",
            version="0.1.0",
            instructions="Tools of every MCP server this gateway serves, as server__tool.",
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
        )
        self.manager = StreamableHTTPSessionManager(self.server, stateless=True, json_response=True)
        self.fast_path = True

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with self.manager.run():
            yield

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope)
        try:
            principal = self.keys.authenticate(api_key(request))
        except OpenMaaSError as exc:
            body = {"jsonrpc": "2.0", "id": None, "error": {"code": -32001, "message": exc.message}}
            await _respond(send, exc.status, orjson.dumps(body), {"www-authenticate": "Bearer"})
            return
        scope.setdefault("state", {})["principal"] = principal
        length = request.headers.get("content-length", "")
        if self.fast_path and scope["method"] == "POST" and length.isdigit() and int(length) <= FAST_MAX_BYTES:
            payload = await _read_body(receive)
            if await self._fast(request, payload, principal, send):
                return
            receive = _replay(payload, receive)
        await self.manager.handle_request(scope, receive, send)

    async def _fast(self, request: Request, body: bytes, principal: Principal, send: Send) -> bool:
        """Answer a plain ``tools/call``; False (nothing sent) when the SDK should handle the request."""
        version = request.headers.get("mcp-protocol-version", types.DEFAULT_NEGOTIATED_VERSION)
        content_type = request.headers.get("content-type", "").split(";")[0].strip()
        if version not in HANDSHAKE_PROTOCOL_VERSIONS or content_type != "application/json":
            return False
        if not check_accept_headers(request)[0]:
            return False
        try:
            message = orjson.loads(body)
        except orjson.JSONDecodeError:
            return False
        if not (
            isinstance(message, dict)
            and message.keys() == {"jsonrpc", "id", "method", "params"}
            and message["jsonrpc"] == "2.0"
            and message["method"] == "tools/call"
            and isinstance(message["params"], dict)
            and isinstance(message["id"], (str, int))
            and not isinstance(message["id"], bool)
        ):
            return False
        try:
            mcp_methods.validate_client_request("tools/call", version, message["params"])
            params = types.CallToolRequestParams.model_validate(message["params"], by_name=False)
        except (KeyError, ValueError):
            return False  # the SDK's own error, from the SDK
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": message["id"]}
        try:
            result = await self._tool_call(principal, str(request.scope["state"].get("request_id")), params)
            dumped = result.model_dump(by_alias=True, mode="json", exclude_none=True)
            reply["result"] = mcp_methods.serialize_server_result("tools/call", version, dumped)
        except Exception as exc:  # the SDK's mapping: MCPError as is, anything else code 0 with its text
            error = handler_exception_to_error_data(exc)
            if error is None:
                log.exception("handler for 'tools/call' raised")
                error = types.ErrorData(code=0, message=str(exc))
            reply["error"] = error.model_dump(by_alias=True, mode="json", exclude_none=True)
        await _respond(send, 200, orjson.dumps(reply), {})
        return True

    @staticmethod
    def _caller(ctx: Any) -> tuple[Principal, str]:
        request = ctx.request
        state = request.scope.get("state", {}) if request is not None else {}
        principal = state.get("principal")
        if not isinstance(principal, Principal):
            raise MCPError(-32001, "not authenticated")
        return principal, str(state.get("request_id") or "req_mcp")

    async def _list_tools(self, ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        principal, _ = self._caller(ctx)
        entries = self.hub.catalog(principal)
        if len(entries) > self.max_listed:
            return types.ListToolsResult(tools=[SEARCH_TOOLS, CALL_TOOL])
        return types.ListToolsResult(tools=[e.as_mcp() for e in entries])

    async def _call_tool(self, ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        principal, request_id = self._caller(ctx)
        return await self._tool_call(principal, request_id, params)

    async def _tool_call(
        self, principal: Principal, request_id: str, params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        name, arguments = params.name, dict(params.arguments or {})
        if name == SEARCH_TOOLS.name and name not in self.hub.entries():
            limit = arguments.get("limit", 10)
            found = search(
                self.hub.catalog(principal),
                str(arguments.get("query", "")),
                int(limit) if isinstance(limit, int) else 10,
            )
            listed = [{"name": e.name, "description": e.description, "input_schema": e.input_schema} for e in found]
            return _result(ToolOutput(orjson.dumps({"tools": listed}).decode(), structured={"tools": listed}))
        if name == CALL_TOOL.name and name not in self.hub.entries():
            name = str(arguments.get("name", ""))
            inner = arguments.get("arguments")
            arguments = inner if isinstance(inner, dict) else {}
        try:
            output = await self.hub.call(principal, request_id, name, arguments, surface="mcp")
        except NotFound as exc:
            raise MCPError(types.INVALID_PARAMS, exc.message) from None
        except PermissionDenied as exc:
            code = FORBIDDEN if exc.code == "tool_not_allowed" else REFUSED
            raise MCPError(code, exc.message, {"code": exc.code}) from None
        except OpenMaaSError as exc:
            if exc.status in (503, 504):  # the tool server failed or hung: a tool error the caller can act on
                return _result(ToolOutput(exc.message, is_error=True))
            raise MCPError(REFUSED, exc.message, {"code": exc.code}) from None
        return _result(output)


def _result(output: ToolOutput) -> types.CallToolResult:
    structured = output.structured if isinstance(output.structured, dict) else None
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=output.text)],
        structured_content=structured,
        is_error=output.is_error,
    )


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` that hands the SDK the body already read, then the connection's own messages."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _respond(send: Send, status: int, body: bytes, headers: dict[str, str]) -> None:
    raw = [(b"content-type", b"application/json"), *((k.encode(), v.encode()) for k, v in headers.items())]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
