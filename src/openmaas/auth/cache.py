"""Authenticate a request from an in-memory map of key hash → principal.

The map is loaded at start and reloaded whenever a key, tenant or plan row
changes (polled every ``auth.refresh_seconds``; changes made through this
process's admin API apply at once). A request never waits on the database:
an unknown key is refused from memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from sqlalchemy import func, select

from openmaas.auth.keys import hash_key
from openmaas.auth.principal import ANONYMOUS, Principal, from_rows
from openmaas.errors import AuthenticationFailed
from openmaas.store.db import Database
from openmaas.store.schema import api_keys, plans, tenants

log = logging.getLogger("openmaas.auth")

_MONEY = {"budget_nanos", "monthly_cost_quota_nanos"}


class KeyCache:
    def __init__(self, db: Database, *, mode: str = "auto", refresh_seconds: float = 2.0) -> None:
        """``mode``: "open" (keys optional), "auto" (open while no key exists), "closed"."""
        self.db = db
        self.mode = mode
        self.refresh_seconds = refresh_seconds
        self.by_hash: dict[str, Principal] = {}
        self.key_count = 0
        self._stamp: tuple[object, ...] | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def open(self) -> bool:
        return self.mode == "open" or (self.mode == "auto" and self.key_count == 0)

    async def start(self) -> None:
        await self.reload()
        self._task = asyncio.create_task(self._poll(), name="openmaas-key-cache")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_seconds)
            try:
                await self.reload()
            except Exception as exc:  # keep serving from the last good map
                log.warning("reloading API keys failed: %s", type(exc).__name__)

    async def reload(self, force: bool = False) -> None:
        async with self.db.engine.connect() as conn:
            parts: list[object] = []
            for table in (api_keys, tenants, plans):
                query = select(func.count(), func.max(table.c.updated_at)).select_from(table)
                parts.append(tuple((await conn.execute(query)).one()))
            stamp = tuple(parts)
            if stamp == self._stamp and not force:
                return
            plan_rows = {r.id: dict(r._mapping) for r in await conn.execute(select(plans))}
            tenant_rows = {r.id: dict(r._mapping) for r in await conn.execute(select(tenants))}
            key_rows = [dict(r._mapping) for r in await conn.execute(select(api_keys))]
        by_hash = {}
        for key in key_rows:
            tenant = tenant_rows[key["tenant_id"]]
            by_hash[key["hash"]] = from_rows(key, tenant, plan_rows.get(tenant.get("plan_id") or ""))
        self.by_hash, self.key_count, self._stamp = by_hash, len(key_rows), stamp

    def authenticate(self, token: str | None) -> Principal:
        if token is None:
            if self.open:
                return ANONYMOUS
            raise AuthenticationFailed(
                "You didn't provide an API key. Send it as 'Authorization: Bearer KEY' or 'x-api-key: KEY'.",
                code="missing_api_key",
            )
        principal = self.by_hash.get(hash_key(token))
        if principal is None:
            if self.open:
                return ANONYMOUS
            raise AuthenticationFailed("Incorrect API key provided.", code="invalid_api_key")
        principal.check_usable(time.time())
        return principal
