"""``/console``: the static pages, and sign-in / sign-out (``/console/session``).

The pages are plain files (``console/static``: HTML, CSS, ES modules and the vendored uPlot), served with a
strict Content-Security-Policy; they read the JSON API under ``/admin/`` and ``/v1/`` with the session
cookie and the CSRF header (``console.sessions``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from openmaas.console.middleware import session_token
from openmaas.console.sessions import COOKIE, CSRF_HEADER, ConsoleSessions, Session, csrf_matches
from openmaas.errors import AuthenticationFailed, InvalidRequest, PermissionDenied
from openmaas.server.routes import read_json

STATIC = Path(__file__).parent / "static"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
}


def _json(data: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(data),
        status_code=status,
        media_type="application/json",
        headers={**SECURITY_HEADERS, "cache-control": "no-store"},
    )


def _sessions(request: Request) -> ConsoleSessions:
    sessions: ConsoleSessions = request.app.state.console
    return sessions


def _described(session: Session, request: Request) -> dict[str, Any]:
    principal = _sessions(request).principal(session)
    return {
        "signed_in": True,
        "scope": session.scope,
        "tenant_id": session.tenant_id,
        "tenant_name": principal.tenant_name or None,
        "key_prefix": principal.key_prefix if session.scope == "tenant" else None,
        "csrf": session.csrf,
        "expires_at": session.expires_at,
    }


def _secure(request: Request) -> bool:
    forced = request.app.state.settings.console.secure_cookie
    if forced is not None:
        return bool(forced)
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"


def _same_origin(request: Request) -> None:
    """Sign-in only from this gateway's own page: a JSON body (an HTML form cannot send one to another site
    without a CORS preflight, which this server never grants) and, when the browser says where the request
    came from, this host. Otherwise another site could sign a visitor in with the other site's key."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise InvalidRequest("Sign in with a JSON body (Content-Type: application/json)", code="invalid_content_type")
    origin = request.headers.get("origin")
    host = request.headers.get("x-forwarded-host") or request.headers.get("host")  # as the browser addressed us
    if origin is not None and urlsplit(origin).netloc != host:  # "null" (a sandboxed page) too
        raise PermissionDenied("Sign-in is only accepted from this gateway's own console page", code="cross_origin")


async def sign_in(request: Request) -> Response:
    _same_origin(request)
    body = await read_json(request)
    key = body.get("key")
    if key is not None and not isinstance(key, str):
        raise InvalidRequest("'key' must be a string", param="key")
    token, session = await _sessions(request).sign_in(key.strip() if key else None)
    response = _json(_described(session, request))
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(_sessions(request).ttl),
        path="/",
        httponly=True,
        secure=_secure(request),
        samesite="strict",
    )
    return response


async def current(request: Request) -> Response:
    """The signed-in session (and its CSRF token, for this page to keep in memory), or how to sign in."""
    token = session_token(request.headers.get("cookie", ""))
    session = await _sessions(request).find(token) if token else None
    if session is None:
        sessions = _sessions(request)
        return _json({"signed_in": False, "open_mode": sessions.keys.open, "admin_enabled": sessions.admin_enabled()})
    return _json(_described(session, request))


async def sign_out(request: Request) -> Response:
    token = session_token(request.headers.get("cookie", ""))
    session = await _sessions(request).find(token) if token else None
    if token is None or session is None or not csrf_matches(session, request.headers.get(CSRF_HEADER)):
        raise AuthenticationFailed("Not signed in to the console.", code="not_signed_in")
    await _sessions(request).sign_out(token)
    response = _json({"signed_in": False})
    response.delete_cookie(COOKIE, path="/", httponly=True, secure=_secure(request), samesite="strict")
    return response


class _Assets(StaticFiles):
    """The static files, with the console's security headers."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    *((k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()),
                    (b"cache-control", b"no-cache"),
                ]
            await send(message)

        await super().__call__(scope, receive, send_with_headers)


def routes() -> list[BaseRoute]:
    return [
        Route("/console", lambda request: RedirectResponse("/console/", status_code=308), methods=["GET"]),
        Route("/console/session", sign_in, methods=["POST"]),
        Route("/console/session", current, methods=["GET"]),
        Route("/console/session", sign_out, methods=["DELETE"]),
        Mount("/console", app=_Assets(directory=STATIC, html=True), name="console"),
    ]
