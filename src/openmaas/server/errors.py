"""The one place where the OpenAI error envelope is built."""

from __future__ import annotations

import logging

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from openmaas.errors import MethodNotAllowed, NotFound, OpenMaaSError

log = logging.getLogger("openmaas.server")


def error_response(exc: OpenMaaSError) -> Response:
    return Response(
        orjson.dumps(exc.envelope()),
        status_code=exc.status,
        media_type="application/json",
        headers=exc.headers,
    )


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
