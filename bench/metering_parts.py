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

Usage: python bench/metering_parts.py [--requests 20000] [--concurrency 16] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from openmaas.auth.principal import Limits, Principal
from openmaas.limits.counters import LocalCounters
from openmaas.metering.ledger import Ledger
from openmaas.metering.meter import Metering, Outcome
from openmaas.settings import Deployment
from openmaas.store.db import Database

BODY = {"model": "bench", "messages": [{"role": "user", "content": "Say something short."}], "max_tokens": 16}
RAW_BYTES = 104


async def run(requests: int, concurrency: int, metered: bool, tmp: Path) -> float:
    db = Database(f"sqlite:///{tmp / f'parts-{time.monotonic_ns()}.db'}")
    await db.migrate()
    counters = LocalCounters()
    ledger = Ledger(db, on_commit=counters.settle)
    await ledger.start()
    metering = Metering(db, ledger, counters)
    deployment = Deployment(name="bench", backend="fake", pricing={"input_per_mtok": 0.5, "output_per_mtok": 1.5})
    limits = Limits(rpm=10**9, tpm=10**12, budget_nanos=10**15)
    principal = Principal("key_bench", "sk-bench", "ten_bench", "bench", key_limits=limits, tenant_limits=limits)
    per_task = requests // concurrency

    async def client(worker: int) -> None:
        for i in range(per_task):
            if metered:
                ticket = await metering.admit(principal, f"req_{worker}_{i}", "chat", "bench", deployment, BODY)
            await asyncio.sleep(0)
            if metered:
                await metering.finish(ticket, Outcome(9, 16))

    await asyncio.gather(*(client(w) for w in range(concurrency)))  # warm-up (seeds the budgets)
    await ledger.sync()  # the warm-up's rows are imported before the clock starts
    start = time.process_time()
    await asyncio.gather(*(client(w) for w in range(concurrency)))
    await ledger.close()  # the rows still in the spool are imported on the clock too
    spent = time.process_time() - start
    await metering.close()
    await db.close()
    return spent / (per_task * concurrency) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="openmaas-parts-"))
    off, on = [], []
    for _ in range(args.rounds):
        off.append(asyncio.run(run(args.requests, args.concurrency, False, tmp)))
        on.append(asyncio.run(run(args.requests, args.concurrency, True, tmp)))
    base, metered = statistics.median(off), statistics.median(on)
    print(f"loop only {base:.1f} µs/request; metered {metered:.1f}; metering {metered - base:.1f} µs/request")


if __name__ == "__main__":
    main()
