"""Console sign-in: server-side sessions behind an HttpOnly, SameSite=Strict cookie.

The browser never holds a key: signing in exchanges the admin key or a tenant key for a random session
token in a cookie the page's script cannot read; the database keeps only the token's hash, the scope, the
hash of the key signed in with, and a CSRF token. Every request the console makes sends the CSRF token in
a header (``x-openmaas-csrf``), which another site cannot set (no CORS), on top of SameSite=Strict.

A session resolves to the same ``Principal`` an API key would, on every request: revoking the key (or
changing the admin key) ends its sessions at once, and sessions live in the store, so any replica serves
them. Sessions end at ``console.session_hours`` after sign-in, or at sign-out.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import delete, insert, select

from openmaas.auth.cache import KeyCache
from openmaas.auth.keys import hash_key
from openmaas.auth.principal import ANONYMOUS, Principal
from openmaas.errors import AuthenticationFailed
from openmaas.store.db import Database
from openmaas.store.schema import console_sessions

COOKIE = "openmaas_console"
CSRF_HEADER = "x-openmaas-csrf"
CONSOLE_SESSION = "console_session"  # the key of a request's live session in its ASGI scope state
Scope = Literal["admin", "tenant", "open"]


@dataclass(frozen=True)
class Session:
    scope: Scope
    tenant_id: str | None
    key_hash: str | None
    csrf: str
    expires_at: float

    @property
    def admin(self) -> bool:
        return self.scope == "admin"


class ConsoleSessions:
    def __init__(self, db: Database, keys: KeyCache, admin_key_env: str, hours: float) -> None:
        self.db = db
        self.keys = keys
        self.admin_key_env = admin_key_env
        self.ttl = hours * 3600

    def admin_enabled(self) -> bool:
        return self._admin_hash() is not None

    def _admin_hash(self) -> str | None:
        key = os.environ.get(self.admin_key_env) or ""
        return hash_key(key) if key else None

    async def sign_in(self, key: str | None) -> tuple[str, Session]:
        """A new session for ``key`` (none: the open mode, only while the API itself is open). Returns the
        cookie's token (shown once, to the browser) and the session."""
        admin = self._admin_hash()
        scope: Scope
        tenant_id = None
        if key:
            digest = hash_key(key)
            if admin is not None and hmac.compare_digest(digest, admin):
                scope = "admin"
            else:
                principal = self.keys.by_hash.get(digest)
                if principal is None or principal.tenant_id is None:
                    raise AuthenticationFailed(
                        "That key is neither the admin key nor a tenant's key.", code="invalid_api_key"
                    )
                principal.check_usable(time.time())
                scope, tenant_id = "tenant", principal.tenant_id
        elif self.keys.open:
            scope, digest = "open", None
        else:
            raise AuthenticationFailed("Sign in with the admin key or a tenant's API key.", code="missing_api_key")
        token = secrets.token_urlsafe(32)
        now = time.time()
        session = Session(scope, tenant_id, digest, secrets.token_urlsafe(24), now + self.ttl)
        async with self.db.engine.begin() as conn:
            await conn.execute(delete(console_sessions).where(console_sessions.c.expires_at < now))
            await conn.execute(
                insert(console_sessions).values(
                    id=hash_key(token),
                    scope=session.scope,
                    key_hash=session.key_hash,
                    tenant_id=session.tenant_id,
                    csrf=session.csrf,
                    created_at=now,
                    expires_at=session.expires_at,
                )
            )
        return token, session

    async def find(self, token: str) -> Session | None:
        """The live session of a cookie's token, if any: unexpired, and its key still valid."""
        async with self.db.engine.connect() as conn:
            row = (await conn.execute(select(console_sessions).where(console_sessions.c.id == hash_key(token)))).first()
        if row is None or row.expires_at <= time.time():
            return None
        session = Session(row.scope, row.tenant_id, row.key_hash, row.csrf, row.expires_at)
        if session.scope == "admin" and session.key_hash != self._admin_hash():
            return None  # the admin key changed since
        if session.scope == "open" and not self.keys.open:
            return None  # keys exist now: the open mode is over
        return session

    async def sign_out(self, token: str) -> None:
        async with self.db.engine.begin() as conn:
            await conn.execute(delete(console_sessions).where(console_sessions.c.id == hash_key(token)))

    def principal(self, session: Session) -> Principal:
        """Who a session's requests run as: the tenant key's principal (checked now), or the keyless one."""
        if session.scope != "tenant":
            return ANONYMOUS
        principal = self.keys.by_hash.get(session.key_hash or "")
        if principal is None:
            raise AuthenticationFailed(
                "The key this console session signed in with was removed.", code="invalid_api_key"
            )
        principal.check_usable(time.time())
        return principal


def csrf_matches(session: Session, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(
        hashlib.sha256(given.encode("utf-8", "surrogatepass")).digest(),
        hashlib.sha256(session.csrf.encode()).digest(),
    )
