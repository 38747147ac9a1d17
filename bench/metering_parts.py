"""The metering hot path alone, in process: CPU per request of admit + finish (ledger commit included).

Method: a real ``Metering`` (SQLite ledger on a migrated temp database, in-process
counters) and a key with RPM, TPM and a budget on a tenant with a budget — the
``sqlite`` target of ``metering_overhead.py`` without HTTP. ``--concurrency``
tasks each run admit → one loop pass (the "upstream") → finish, ``--requests``
in all after a warm-up; the figure is ``time.process_time`` per request (all
threads, the import of every row into SQLite included), median of ``--rounds``.
A baseline in the same run does the same loop with metering off (admit/finish
skipped), so the figure is the metering cost alone. Not a ratio of the whole
gateway: that is ``metering_overhead.py``.

``--store pg_redis`` runs the same on PostgreSQL (database ``openmaas_bench_parts``,
re-created; ledger through the spool, as by default) and Redis (db 12, flushed) —
started by ``bash scripts/services.sh`` — and also reports their CPU per request; ``--leases 0`` turns Redis leases off.
The loop is uvloop's, as in the gateway.

Usage: python bench/metering_parts.py [--requests 20000] [--concurrency 16] [--rounds 3]
       [--store sqlite|pg_redis] [--leases SECONDS]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import uvloop

from openmaas.auth.principal import Limits, Principal
from openmaas.core.view import PromptView
from openmaas.limits.counters import Counters, LocalCounters
from openmaas.limits.leases import Leases
from openmaas.limits.redis_counters import RedisCounters
from openmaas.metering.ledger import Ledger
from openmaas.metering.meter import Metering, Outcome
from openmaas.settings import Deployment
from openmaas.store.db import Database

BODY = {"model": "bench", "messages": [{"role": "user", "content": "Say something short."}], "max_tokens": 16}
RAW_BYTES = 104


sys.path.insert(0, str(Path(__file__).parent))
from common import services_cpu  # noqa: E402

PG_ADMIN = os.environ.get("OPENMAAS_TEST_PG_URL", "postgresql://openmaas:openmaas@127.0.0.1:5432/openmaas_test")
PG_PARTS = PG_ADMIN.rsplit("/", 1)[0] + "/openmaas_bench_parts"
REDIS_PARTS = "redis://127.0.0.1:6379/12"


async def fresh_pg_and_redis() -> None:
    import asyncpg
    import redis.asyncio as redis

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute("DROP DATABASE IF EXISTS openmaas_bench_parts")
        await conn.execute("CREATE DATABASE openmaas_bench_parts")
    finally:
        await conn.close()
    client = redis.from_url(REDIS_PARTS)
    await client.flushdb()
    await client.aclose()


async def run(
    requests: int, concurrency: int, metered: bool, tmp: Path, store: str, leases: float
) -> tuple[float, float]:
    """(gateway-side CPU µs per request, PostgreSQL + Redis CPU µs per request)."""
    counters: Counters
    if store == "pg_redis":
        await fresh_pg_and_redis()
        db = Database(PG_PARTS, spool=tmp / f"spool-{time.monotonic_ns()}")  # the default: ledger spool
        counters = RedisCounters(REDIS_PARTS, leases=Leases(leases))
    else:
        db = Database(f"sqlite:///{tmp / f'parts-{time.monotonic_ns()}.db'}")
        counters = LocalCounters()
    await db.migrate()
    await counters.start()
    ledger = Ledger(db, on_commit=counters.settle, settle_inline=isinstance(counters, LocalCounters))
    await ledger.start()
    metering = Metering(db, ledger, counters)
    deployment = Deployment(name="bench", backend="fake", pricing={"input_per_mtok": 0.5, "output_per_mtok": 1.5})
    limits = Limits(rpm=10**9, tpm=10**12, budget_nanos=10**15)
    principal = Principal("key_bench", "sk-bench", "ten_bench", "bench", key_limits=limits, tenant_limits=limits)
    per_task = requests // concurrency
    view = PromptView(BODY)

    async def client(worker: int) -> None:
        for i in range(per_task):
            if metered:
                ticket = await metering.admit(principal, f"req_{worker}_{i}", "chat", "bench", deployment, view)
            await asyncio.sleep(0)
            if metered:
                await metering.finish(ticket, Outcome(9, 16))

    await asyncio.gather(*(client(w) for w in range(concurrency)))  # warm-up (seeds the budgets)
    await ledger.sync()  # the warm-up's rows are imported before the clock starts
    start, services = time.process_time(), sum(services_cpu().values())
    await asyncio.gather(*(client(w) for w in range(concurrency)))
    await ledger.sync()
    await ledger.settled()
    await counters.settle([])  # Redis: what waits to ride along is applied (still connected: CPU counted)
    services = sum(services_cpu().values()) - services
    await ledger.close()  # the rows still in the spool are imported on the clock too
    await counters.close()  # leases given back, on the clock
    spent = time.process_time() - start
    await metering.close()
    await db.close()
    done = per_task * concurrency
    return spent / done * 1e6, services / done * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--store", choices=["sqlite", "pg_redis"], default="sqlite")
    parser.add_argument("--leases", type=float, default=Leases().seconds, help="Redis lease seconds (0: off)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="openmaas-parts-"))
    off, on, services = [], [], []
    for _ in range(args.rounds):
        off.append(uvloop.run(run(args.requests, args.concurrency, False, tmp, args.store, args.leases))[0])
        gateway, other = uvloop.run(run(args.requests, args.concurrency, True, tmp, args.store, args.leases))
        on.append(gateway)
        services.append(other)
    base, metered = statistics.median(off), statistics.median(on)
    print(
        f"{args.store}: loop only {base:.1f} µs/request; metered {metered:.1f}; metering {metered - base:.1f}"
        f" µs/request in process; PostgreSQL + Redis {statistics.median(services):.1f} µs/request"
    )


if __name__ == "__main__":
    main()
