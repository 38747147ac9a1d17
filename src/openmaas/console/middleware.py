"""Puts a request's console session in its ASGI scope (pure ASGI: no task, no body copy).

Only requests to the API (``/v1/``, ``/admin/``) that carry no key, the console's cookie and the session's
CSRF token in ``x-openmaas-csrf`` get one; everything else passes untouched (API-key traffic pays one scan
of its headers). A bad or missing session is not refused here: the route then sees an anonymous caller
and refuses it in its own dialect's envelope.
"""

from __future__ import annotations

from http.cookies import CookieError, SimpleCookie

from starlette.types import ASGIApp, Receive, Scope, Send

from openmaas.console.sessions import CONSOLE_SESSION, COOKIE, CSRF_HEADER, ConsoleSessions, csrf_matches

_API = ("/v1/", "/admin/")
_KEYED = (b"authorization", b"x-api-key")
_CSRF = CSRF_HEADER.encode()


class ConsoleSessionMiddleware:
    def __init__(self, app: ASGIApp, sessions: ConsoleSessions) -> None:
        self.app = app
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(_API):
            cookie = csrf = None
            for name, value in scope["headers"]:
                if name in _KEYED:
                    cookie = None
                    break
                if name == b"cookie":
                    cookie = value
                elif name == _CSRF:
                    csrf = value
            if cookie is not None:
                token = session_token(cookie.decode("latin-1"))
                session = await self.sessions.find(token) if token else None
                if session is not None and csrf_matches(session, csrf.decode("latin-1") if csrf else None):
                    scope.setdefault("state", {})[CONSOLE_SESSION] = session
        await self.app(scope, receive, send)


def session_token(cookie_header: str) -> str | None:
    try:
        jar = SimpleCookie(cookie_header)
    except CookieError:
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None and morsel.value else None
