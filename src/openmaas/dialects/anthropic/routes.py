"""Thin routes of the Messages API; every error leaves in Anthropic's envelope."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from openmaas.core.execute import EventStream, Executor
from openmaas.dialects.anthropic import render
from openmaas.dialects.anthropic.load import compile_patterns, load
from openmaas.errors import OpenMaaSError
from openmaas.gateway import Call
from openmaas.server.event_stream import event_stream
from openmaas.server.routes import authenticate, read_json
from openmaas.settings import AnthropicDialect

log = logging.getLogger("openmaas.server")
Handler = Callable[[Request], Awaitable[Response]]


def _json(data: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json", headers=headers)


def enveloped(handler: Handler) -> Handler:
    """Render every failure of ``handler`` as Anthropic does (``{"type": "error", "error": …}``)."""

    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except OpenMaaSError as exc:
            if exc.status >= 500:
                log.warning("request %s failed: %s", request.state.request_id, exc.message)
            return _json(render.error_body(exc, request.state.request_id), exc.status, exc.headers)
        except Exception:
            log.exception("unexpected error on request %s", request.state.request_id)
            err = OpenMaaSError("The server had an error while processing your request.")
            return _json(render.error_body(err, request.state.request_id), 500)

    return wrapped


class MessagesAPI:
    def __init__(self, executor: Executor, settings: AnthropicDialect) -> None:
        self.executor = executor
        self.volatile = compile_patterns(settings.volatile_system)

    def _call(self, request: Request) -> Call:
        principal = authenticate(request)
        return Call(request.state.request_id, principal, surface="messages")

    async def messages(self, request: Request) -> Response:
        call = self._call(request)
        canonical = load(await read_json(request, call), self.volatile)
        out = await self.executor.run(canonical, call)
        headers = dict(call.headers)
        if isinstance(out, EventStream):
            body = render.encode(out.events, call.request_id, canonical.model, out.input_tokens)
            response: Response = event_stream(request, body, headers)
        else:
            response = _json(render.message(out, call.request_id, canonical.model), headers=headers)
        response.raw_headers += call.raw_headers
        return response

    async def count_tokens(self, request: Request) -> Response:
        call = self._call(request)
        canonical = load(await read_json(request, call), self.volatile, counting=True)
        count = await self.executor.count(canonical, call)
        headers = {"x-openmaas-token-count": f"{count.source}; deployment={count.deployment}"}
        return _json({"input_tokens": count.input_tokens}, headers=headers)


def routes(executor: Executor, settings: AnthropicDialect) -> list[Route]:
    api = MessagesAPI(executor, settings)
    return [
        Route("/v1/messages", enveloped(api.messages), methods=["POST"]),
        Route("/v1/messages/count_tokens", enveloped(api.count_tokens), methods=["POST"]),
    ]
