"""``GET /v1/mcp/servers``: the MCP servers this gateway serves, their health, and the tools the caller's key
may use (``openmaas mcp list``)."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from openmaas.mcp.hub import McpHub
from openmaas.server.routes import authenticate


def routes(hub: McpHub) -> list[Route]:
    async def servers(request: Request) -> Response:
        principal = authenticate(request)
        allowed = hub.catalog(principal)
        data = []
        for status in hub.status():
            tools = [
                {"name": e.name, "description": e.description, "price_usd": e.price_nanos / 1e9}
                for e in allowed
                if e.server == status["name"]
            ]
            data.append({**status, "tools": tools, "tools_served": status["tools"]})
        return Response(orjson.dumps({"object": "list", "data": data}), media_type="application/json")

    return [Route("/v1/mcp/servers", servers, methods=["GET"])]
