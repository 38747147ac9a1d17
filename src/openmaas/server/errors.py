"""The one place where the OpenAI error envelope is built."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from openmaas.errors import InvalidRequest, MethodNotAllowed, NotFound, OpenMaaSError

log = logging.getLogger("openmaas.server")


def error_response(exc: OpenMaaSError) -> Response:
    return Response(
        orjson.dumps(exc.envelope()),
        status_code=exc.status,
        media_type="application/json",
        headers=exc.headers,
    )


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith(("function-after", "function-before")) or "[" in str(part):
            continue  # pydantic's internal validator / union tags, not a field
        else:
            out += ("." if out else "") + str(part)
    return out


def from_validation_error(exc: ValidationError) -> InvalidRequest:
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    param = _loc(tuple(first.get("loc", ())))
    message = str(first.get("msg", "invalid value"))
    if first.get("type") == "missing":
        text = f"Missing required parameter: '{param}'."
    elif first.get("type") == "extra_forbidden":
        text = f"Unrecognized parameter: '{param}'."
    else:
        text = f"Invalid value for '{param}': {message}." if param else f"Invalid request: {message}."
    if len(errors) > 1:
        text += f" ({len(errors) - 1} more error(s))"
    return InvalidRequest(text, param=param or None, code="invalid_value")


async def handle_openmaas_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OpenMaaSError)
    if exc.status >= 500:
        log.warning("request %s failed: %s", getattr(request.state, "request_id", "-"), exc.message)
    return error_response(exc)


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return error_response(NotFound(f"Unknown request URL: {request.method} {request.url.path}"))
    if exc.status_code == 405:
        return error_response(MethodNotAllowed(f"Method {request.method} is not allowed for {request.url.path}"))
    err = OpenMaaSError(str(exc.detail))
    err.status = exc.status_code
    err.type = "invalid_request_error" if exc.status_code < 500 else "server_error"
    return error_response(err)


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on request %s", getattr(request.state, "request_id", "-"))
    return error_response(OpenMaaSError("The server had an error while processing your request."))
