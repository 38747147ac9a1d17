"""Pure ASGI middleware (no per-request task or body copy)."""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openmaas.ids import IdGenerator

_VALID_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
ANTHROPIC_PATHS = ("/v1/messages", "/v1/models")  # the routes Anthropic's clients call: they read ``request-id``


def header(scope: Scope, name: bytes) -> str | None:
    """A request header's first value (``name`` lower-case, as ASGI servers give them), read from the scope:
    starlette's ``Headers.get`` builds a mapping and raises a KeyError for every header that is absent."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


class RequestIdMiddleware:
    """Every response carries ``x-request-id``: the client's if valid, else a new one; responses on the routes
    Anthropic's clients call also carry it as ``request-id`` (their name; one header less on every other route,
    each a few thousand instructions in the HTTP server's header checks)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.new_id = IdGenerator("req")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = header(scope, b"x-request-id")
        if request_id is None or not _VALID_ID.match(request_id):
            request_id = self.new_id()
        scope.setdefault("state", {})["request_id"] = request_id
        encoded = request_id.encode()
        headers = [(b"x-request-id", encoded)]
        if scope["path"].startswith(ANTHROPIC_PATHS):
            headers.append((b"request-id", encoded))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *headers]
            await send(message)

        await self.app(scope, receive, send_with_id)
