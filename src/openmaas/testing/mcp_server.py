"""A small MCP server over streamable HTTP that records every call it receives: the "cloud" tool server of the
privacy tests (what did the other side actually get?), and tools that fail or hang on purpose.

Built with the official SDK (``MCPServer``); serve ``app`` with ``testing.serve.serve_app`` on loopback.
"""

from __future__ import annotations

import asyncio
from typing import Any

from mcp.server.mcpserver import MCPServer

RECORD = "Case record: Ann Lee, ann.lee@example.com, was diagnosed with HIV in March and takes 200 mg of efavirenz."


class RecordingMcpServer:
    def __init__(self, token: str | None = None) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []  # (tool, arguments), in arrival order
        self.token = token
        server = MCPServer("recorder")

        @server.tool(description="Echo the text back, upper-cased.")
        def shout(text: str) -> str:
            self.received.append(("shout", {"text": text}))
            return text.upper()

        @server.tool(description="Look up a customer's account notes by a free-text query.")
        def lookup(query: str) -> str:
            self.received.append(("lookup", {"query": query}))
            return f"notes for: {query}"

        @server.tool(description="Fetch the case record that matches the text.")
        def records(text: str) -> str:
            self.received.append(("records", {"text": text}))
            return RECORD

        @server.tool(description="Always fails.")
        def broken(reason: str = "on purpose") -> str:
            self.received.append(("broken", {"reason": reason}))
            raise RuntimeError(f"broken {reason}")

        @server.tool(description="Sleeps for the given seconds, then answers.")
        async def slow(seconds: float) -> str:
            self.received.append(("slow", {"seconds": seconds}))
            await asyncio.sleep(seconds)
            return f"slept {seconds}"

        self.server = server

    def app(self) -> Any:
        app = self.server.streamable_http_app(stateless_http=True, json_response=True)
        if self.token is None:
            return app
        inner, token = app, self.token

        async def guarded(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                headers = dict(scope.get("headers") or [])
                if headers.get(b"authorization") != f"Bearer {token}".encode():
                    await send({"type": "http.response.start", "status": 401, "headers": []})
                    await send({"type": "http.response.body", "body": b"unauthorized"})
                    return
            await inner(scope, receive, send)

        return guarded  # lifespan and every authorised request go to the SDK's app

    def tools_called(self) -> list[str]:
        return [name for name, _ in self.received]
