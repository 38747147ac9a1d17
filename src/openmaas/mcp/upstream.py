"""One configured MCP server, reached with the official SDK's client and kept connected.

A stdio server is a child process the gateway starts; a streamable HTTP server is a URL. Either way one
task owns the connection (the SDK's transports are anyio contexts that must be entered and left in the
same task): it connects, lists the tools, then pings every ``PING_SECONDS``; when the process exits or the
connection fails it reconnects (a stdio server is restarted) with a doubling back-off. Calls come from any
task and share the session (requests are matched by id).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import mcp_types as types
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from openmaas.mcp.config import McpServer

log = logging.getLogger("openmaas.mcp")
PING_SECONDS = 5.0
MAX_BACKOFF = 30.0


class ToolUnavailable(Exception):
    """The server could not be reached (not started, restarting, or the call's transport failed)."""


class ToolTimeout(Exception):
    pass


@dataclass
class ToolOutput:
    """What a tool call returned: its text (what a model reads), structured content if any, and whether the
    tool itself reported an error (``isError``: the call worked, the tool failed)."""

    text: str
    is_error: bool = False
    structured: Any = None
    sensitive: bool = False  # the gateway classified the text as sensitive (set by ``McpHub.call``)


def output_of(result: types.CallToolResult) -> ToolOutput:
    texts: list[str] = []
    for block in result.content:
        if isinstance(block, types.TextContent):
            texts.append(block.text)
        elif isinstance(block, types.EmbeddedResource) and isinstance(block.resource, types.TextResourceContents):
            texts.append(block.resource.text)
        else:
            texts.append(f"[{block.type} content]")
    return ToolOutput("\n".join(texts), bool(result.is_error), result.structured_content)


class Upstream:
    def __init__(self, spec: McpServer, log_dir: str | None = None) -> None:
        self.spec = spec
        self.name = spec.name
        self.tools: list[types.Tool] = []
        self.session: ClientSession | None = None
        self.ready = asyncio.Event()
        self.state = "stopped"  # stopped | starting | ready | down
        self.last_error: str | None = None
        self.starts = 0
        self.connected_at: float | None = None
        self.log_dir = log_dir
        self._stop = asyncio.Event()
        self._broken = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._stop.clear()
            self._task = asyncio.get_running_loop().create_task(self._supervise(), name=f"mcp:{self.name}")

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, 10)
            self._task = None
        self.state = "stopped"

    @contextlib.asynccontextmanager
    async def _connect(self) -> AsyncIterator[ClientSession]:
        spec = self.spec
        async with contextlib.AsyncExitStack() as stack:
            if spec.command is not None:
                command = resolve_command(spec.command)
                params = StdioServerParameters(command=command, args=spec.args, env=spec.env or None, cwd=spec.cwd)
                path = os.path.join(self.log_dir, f"mcp-{self.name}.log") if self.log_dir else os.devnull
                errlog = stack.enter_context(await asyncio.to_thread(open, path, "a"))
                read, write = await stack.enter_async_context(stdio_client(params, errlog=errlog))
            else:
                assert spec.url is not None
                headers = dict(spec.headers)
                if spec.token_env:
                    token = os.environ.get(spec.token_env)
                    if not token:
                        raise ToolUnavailable(f"environment variable {spec.token_env} is not set")
                    headers["Authorization"] = f"Bearer {token}"
                client = await stack.enter_async_context(create_mcp_http_client(headers=headers))
                read, write = await stack.enter_async_context(streamable_http_client(spec.url, http_client=client))
            yield await stack.enter_async_context(ClientSession(read, write))

    async def _supervise(self) -> None:
        backoff = self.spec.restart_backoff_s
        while not self._stop.is_set():
            self.state = "starting"
            self.starts += 1
            try:
                async with self._connect() as session:
                    await asyncio.wait_for(session.initialize(), self.spec.connect_timeout_s)
                    self.tools = await asyncio.wait_for(_list_all(session), self.spec.connect_timeout_s)
                    self.session, self.state, self.last_error = session, "ready", None
                    self.connected_at = time.time()
                    self._broken.clear()
                    self.ready.set()
                    log.info("MCP server %s ready: %d tools", self.name, len(self.tools))
                    backoff = self.spec.restart_backoff_s
                    await self._watch(session)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # an exit, a refused connection, a handshake that timed out
                self.last_error = _describe(exc)
                log.warning("MCP server %s is down: %s", self.name, self.last_error)
            finally:
                self.ready.clear()
                self.session = None
            if self._stop.is_set():
                break
            self.state = "down"
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    async def _watch(self, session: ClientSession) -> None:
        """Until stopped, or until a ping or a call finds the connection gone."""
        while not self._stop.is_set():
            stop = asyncio.ensure_future(self._stop.wait())
            broken = asyncio.ensure_future(self._broken.wait())
            try:
                await asyncio.wait({stop, broken}, timeout=PING_SECONDS, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop.cancel()
                broken.cancel()
            if self._broken.is_set():
                raise ToolUnavailable(self.last_error or "the connection failed")
            if not self._stop.is_set():
                await asyncio.wait_for(session.send_ping(), PING_SECONDS)

    async def wait_ready(self, timeout: float) -> ClientSession:
        if self.session is None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.ready.wait(), timeout)
        if self.session is None:
            raise ToolUnavailable(f"MCP server '{self.name}' is {self.state}: {self.last_error or 'not connected'}")
        return self.session

    async def call(self, tool: str, arguments: dict[str, Any], timeout: float | None = None) -> ToolOutput:
        session = await self.wait_ready(self.spec.connect_timeout_s)
        limit = min(timeout, self.spec.call_timeout_s) if timeout else self.spec.call_timeout_s
        try:
            result = await asyncio.wait_for(session.call_tool(tool, arguments), limit)
        except TimeoutError:
            raise ToolTimeout(f"tool '{self.name}.{tool}' did not answer within {limit:g} s") from None
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            message = _describe(exc)
            if _is_transport_failure(exc):
                self.last_error = message
                self._broken.set()
                raise ToolUnavailable(f"MCP server '{self.name}' failed: {message}") from None
            return ToolOutput(message, is_error=True)  # a protocol error from the server: the tool failed
        if not isinstance(result, types.CallToolResult):
            return ToolOutput(f"tool '{tool}' asked for input, which the gateway cannot give", is_error=True)
        return output_of(result)

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "transport": self.spec.transport,
            "locality": self.spec.locality,
            "state": self.state,
            "tools": len(self.tools),
            "starts": self.starts,
            "error": self.last_error,
        }


def resolve_command(command: str) -> str:
    """A bare command name is looked up on PATH, then beside this Python (a server installed in the same
    virtual environment as the gateway, started as ``.venv/bin/openmaas serve`` without activating it)."""
    if os.sep in command or shutil.which(command):
        return command
    beside = os.path.join(os.path.dirname(sys.executable), command)
    return beside if os.access(beside, os.X_OK) else command


async def _list_all(session: ClientSession) -> list[types.Tool]:
    tools: list[types.Tool] = []
    cursor: str | None = None
    for _ in range(100):  # a server that pages forever is cut off
        page = await session.list_tools(params=types.PaginatedRequestParams(cursor=cursor) if cursor else None)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            break
    return tools


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in exc.exceptions)
    text = str(exc) or type(exc).__name__
    return text[:300]


def _is_transport_failure(exc: BaseException) -> bool:
    return not isinstance(exc, MCPError) or exc.code == types.CONNECTION_CLOSED
