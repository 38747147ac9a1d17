"""The long-lived parts behind the gateway, wired from settings: store, keys, counters, ledger."""

from __future__ import annotations

import logging

from openmaas.auth.cache import KeyCache
from openmaas.limits.counters import Counters, LocalCounters
from openmaas.metering.ledger import Ledger
from openmaas.metering.meter import Metering
from openmaas.settings import Settings
from openmaas.store.admin import AdminStore

log = logging.getLogger("openmaas")


def is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def make_counters(settings: Settings) -> Counters:
    if settings.store.redis_url:
        from openmaas.limits.redis_counters import RedisCounters

        return RedisCounters(settings.store.redis_url)
    return LocalCounters()


class Services:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = settings.database()
        self.admin = AdminStore(self.db)
        required = settings.auth.required
        mode = "open" if required is False else "closed"
        if required is None and is_loopback(settings.server.host):
            mode = "auto"
        self.keys = KeyCache(self.db, mode=mode, refresh_seconds=settings.auth.refresh_seconds)
        self.counters = make_counters(settings)
        self.ledger = Ledger(
            self.db,
            max_batch=settings.metering.max_batch,
            on_commit=self.counters.settle,
            settle_inline=isinstance(self.counters, LocalCounters),
            fsync=settings.metering.ledger_fsync,
        )
        self.metering: Metering | None = (
            Metering(self.db, self.ledger, self.counters) if settings.metering.enabled else None
        )

    async def start(self) -> None:
        await self.db.migrate()
        await self.counters.start()
        await self.keys.start()
        await self.ledger.start()
        if self.keys.open:
            log.warning(
                "*** OPEN MODE: no API key exists, so %s accepts requests without one. Create a key with "
                "`openmaas keys create --tenant NAME` (after `openmaas tenants create NAME`) to require keys. ***",
                "this loopback-only server" if self.keys.mode == "auto" else "this server (auth.required: false)",
            )
        elif self.keys.key_count == 0:
            log.warning("no API key exists yet: every /v1/ request will get 401 until one is created")

    async def close(self) -> None:
        if self.metering is not None:
            await self.metering.close()
        await self.ledger.close()
        await self.keys.close()
        await self.counters.close()
        await self.db.close()
