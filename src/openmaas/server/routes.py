"""Thin routes: parse, delegate to the gateway, serialize."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from openmaas.auth.principal import Principal
from openmaas.console.sessions import CONSOLE_SESSION, ConsoleSessions
from openmaas.dialects.anthropic import render as anthropic_render
from openmaas.errors import InvalidRequest, ModelNotFound, OpenMaaSError, PayloadTooLarge
from openmaas.gateway import Call, Gateway
from openmaas.server.event_stream import event_stream
from openmaas.server.middleware import header
from openmaas.services import Services
from openmaas.store import usage
from openmaas.streams import Stream

JSON = "application/json"


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type=JSON, headers=headers)


async def read_json(request: Request, call: Call | None = None) -> dict[str, Any]:
    """The JSON object in the body (``call``, if given, learns the body's size)."""
    limit: int = request.app.state.settings.server.max_body_bytes
    declared = header(request.scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"Request body of {declared} bytes exceeds the limit of {limit} bytes")
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise PayloadTooLarge(f"Request body exceeds the limit of {limit} bytes")
    if not body:
        raise InvalidRequest("The request body is empty; a JSON object was expected")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(
            f"We could not parse the JSON body of your request ({exc.msg} at position {exc.pos})",
            code="invalid_json",
        ) from None
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object", code="invalid_json")
    if call is not None:
        call.body_bytes = len(body)
    return data


async def _sse(stream: Stream) -> AsyncIterator[bytes]:
    try:
        async for chunk in stream.chunks():
            yield b"data: " + orjson.dumps(chunk) + b"\n\n"
    except OpenMaaSError as exc:
        # After the first byte the status is sent: say so explicitly, never truncate silently.
        yield b"data: " + orjson.dumps(exc.envelope()) + b"\n\n"
        return
    yield b"data: [DONE]\n\n"


def _respond(request: Request, result: dict[str, Any] | Stream, call: Call) -> Response:
    response: Response
    if isinstance(result, Stream):
        response = event_stream(request, _sse(result), call.headers)
    else:
        response = _json(result, headers=call.headers)
    if call.raw_headers:
        response.raw_headers += call.raw_headers
    return response


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


def api_key(request: Request) -> str | None:
    auth = header(request.scope, b"authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return header(request.scope, b"x-api-key") or None


def authenticate(request: Request) -> Principal:
    """The caller: its API key's principal, or a console session's (``console.sessions``) when it sent no key."""
    token = api_key(request)
    if token is None:
        session = request.scope["state"].get(CONSOLE_SESSION)
        if session is not None:
            sessions: ConsoleSessions = request.app.state.console
            return sessions.principal(session)
    services: Services = request.app.state.services
    return services.keys.authenticate(token)


def _call(request: Request) -> Call:
    return Call(request.state.request_id, authenticate(request))


async def chat_completions(request: Request) -> Response:
    call = _call(request)
    return _respond(request, await _gateway(request).chat(await read_json(request, call), call), call)


async def completions(request: Request) -> Response:
    call = _call(request)
    return _respond(request, await _gateway(request).complete(await read_json(request, call), call), call)


async def embeddings(request: Request) -> Response:
    call = _call(request)
    return _respond(request, await _gateway(request).embed(await read_json(request, call), call), call)


async def my_usage(request: Request) -> Response:
    """The calling key's own usage (``start``/``end`` dates, ``group_by``)."""
    principal = _call(request).principal
    q = request.query_params
    group_by = usage.parse_group_by(q.get("group_by") or "day,model")
    services: Services = request.app.state.services
    await services.ledger.sync()  # every response already sent is in the report
    rows = await usage.report(
        services.db,
        group_by=group_by,
        start=usage.parse_day(q.get("start"), "start"),
        end=usage.parse_day(q.get("end"), "end"),
        key_id=principal.key_id,
        anonymous=principal.anonymous,
    )
    return _json({"object": "list", "key": principal.key_prefix, "group_by": group_by, "data": rows})


async def list_models(request: Request) -> Response:
    _call(request)
    cards = _gateway(request).models()
    if request.headers.get("anthropic-version"):  # an Anthropic client: its Models API shape
        return _json(anthropic_render.model_list(cards))
    return _json({"object": "list", "data": cards})


async def get_model(request: Request) -> Response:
    _call(request)
    model_id = request.path_params["model_id"]
    for card in _gateway(request).models():
        if card["id"] == model_id:
            return _json(anthropic_render.model_card(card) if request.headers.get("anthropic-version") else card)
    raise ModelNotFound(f"The model '{model_id}' does not exist", param="model")


async def openapi(request: Request) -> Response:
    return Response(request.app.state.openapi, media_type=JSON)


async def healthz(request: Request) -> Response:
    return _json({"status": "ok"})


async def readyz(request: Request) -> Response:
    states = await _gateway(request).registry.readiness()
    ready = all(states.values())
    return _json({"status": "ready" if ready else "not_ready", "deployments": states}, 200 if ready else 503)


routes = [
    Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    Route("/v1/completions", completions, methods=["POST"]),
    Route("/v1/embeddings", embeddings, methods=["POST"]),
    Route("/v1/models", list_models, methods=["GET"]),
    Route("/v1/usage", my_usage, methods=["GET"]),
    Route("/v1/models/{model_id:path}", get_model, methods=["GET"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
]
