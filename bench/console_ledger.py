"""The console on a 10-million-row ledger (PostgreSQL), and what the console costs the request path.

1. ``generate``: 10,000,000 ledger rows over the last 30 days (20 tenants × 5 keys, 6 models on 8 deployments,
   ~5 % errors, latencies 50 ms–5 s) into their own database (``openmaas_bench_console``), by
   ``INSERT … SELECT generate_series`` in 1M-row statements — the rollup trigger runs on each, as it does on
   every ledger import. Kept between runs (regenerated with ``--regenerate``).
2. ``queries``: every API call the console's pages make, each 20 times in a row against ``openmaas serve``
   on that database (p50 / p95 wall time at the client, the gateway on its own core), as the admin and as a tenant.
3. ``throughput``: requests/s of ``/v1/chat/completions`` on a zero-latency fake deployment under ``hey``
   (concurrency 16), with and without a console open on the overview (its API calls every 5 s), alternating
   for ``--rounds`` rounds; the ledger rows of these requests go into the same 10M-row table.

4. ``sqlite_import``: what the rollups add to importing ledger rows into SQLite (the spool import's transaction,
   4,096-row batches, with and without the grouped upserts, interleaved, best of 5): on SQLite the import runs
   in the gateway's process, so this is the console's whole cost to the request path there.

Usage: python bench/console_ledger.py [--parts generate,queries,throughput,sqlite_import] [--rows 10000000]
       [--rounds 3] [--seconds 10] [--regenerate]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, cores, free_port, hey, pin_services, python, start, stop, wait_http, warm_up

from openmaas.store.db import Database

ADMIN = "adm-bench-console"
SERVER = "postgresql://openmaas:openmaas@127.0.0.1:5432"
DB_NAME = "openmaas_bench_console"
URL = f"{SERVER}/{DB_NAME}"
CHUNK = 1_000_000
INSERT = """
INSERT INTO usage_events (id, request_id, tenant_id, key_id, endpoint, model, deployment, route_reason,
  prompt_tokens, completion_tokens, cost_nanos, usage_source, latency_ms, ttft_ms, status, error_code,
  interrupted, created_at, day, degraded, route, cached_tokens)
SELECT 'evt_b' || g, 'req_b' || g, 'ten_b' || ((g % 100) / 5), 'key_b' || (g % 100), 'chat',
  'model-' || (g % 6), 'dep-' || (g % 8), 'chosen=dep-' || (g % 8) || '; privacy=public; policy=allow',
  (g * 7) % 2000, (g * 13) % 500, (g * 37) % 200000, 'upstream',
  50 + ((g * 7919) % 4950)::float8, CASE WHEN g % 3 = 0 THEN NULL ELSE 20 + ((g * 104729) % 980)::float8 END,
  CASE WHEN g % 29 = 0 THEN 502 WHEN g % 53 = 0 THEN 429 ELSE 200 END, NULL, g % 101 = 0,
  $3 + (g::float8 / $4) * 30 * 86400,
  to_char(to_timestamp($3 + (g::float8 / $4) * 30 * 86400) AT TIME ZONE 'UTC', 'YYYY-MM-DD'), g % 50 = 0,
  '{"privacy":{"class":"public"},"chosen_locality":"' || CASE WHEN g % 8 < 5 THEN 'local' ELSE 'cloud' END || '"}', 0
FROM generate_series($1::bigint, $2::bigint) AS g
"""


async def generate(rows: int, regenerate: bool) -> dict[str, Any]:
    admin = await asyncpg.connect(f"{SERVER}/postgres")
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DB_NAME)
        if exists and regenerate:
            await admin.execute(f"DROP DATABASE {DB_NAME} WITH (FORCE)")
            exists = False
        if not exists:
            await admin.execute(f"CREATE DATABASE {DB_NAME}")
    finally:
        await admin.close()
    db = Database(URL, spool=None)
    await db.migrate()
    await db.close()
    conn = await asyncpg.connect(URL)
    try:
        have = await conn.fetchval("SELECT count(*) FROM usage_events WHERE id LIKE 'evt_b%'")
        took = 0.0
        if have < rows:
            await conn.execute("TRUNCATE usage_events, usage_hourly, usage_daily")
            now = time.time()
            await conn.execute("DELETE FROM api_keys WHERE id LIKE 'key_b%'")
            await conn.execute("DELETE FROM tenants WHERE id LIKE 'ten_b%'")
            for t in range(20):
                await conn.execute(
                    "INSERT INTO tenants (id, name, budget_period, privacy, enabled, created_at, updated_at)"
                    " VALUES ($1, $2, 'month', 'allow', true, $3, $3)",
                    f"ten_b{t}", f"bench-tenant-{t}", now,
                )  # fmt: skip
            for k in range(100):
                await conn.execute(
                    "INSERT INTO api_keys (id, tenant_id, name, prefix, hash, budget_period, enabled, created_at,"
                    " updated_at) VALUES ($1, $2, $3, 'om-bench…', $4, 'month', true, $5, $5)",
                    f"key_b{k}", f"ten_b{k // 5}", f"bench-key-{k}", f"{k:064x}", now,
                )  # fmt: skip
            started = time.perf_counter()
            t0 = now - 30 * 86400
            for low in range(0, rows, CHUNK):
                high = min(rows, low + CHUNK) - 1
                await conn.execute(INSERT, low, high, t0, float(rows))
                print(f"generated {high + 1:,} rows ({time.perf_counter() - started:.0f} s)", flush=True)
            await conn.execute("ANALYZE")
            took = time.perf_counter() - started
        count = await conn.fetchval("SELECT count(*) FROM usage_events")
        hourly = await conn.fetchval("SELECT count(*) FROM usage_hourly")
        daily = await conn.fetchval("SELECT count(*) FROM usage_daily")
        size = await conn.fetchval("SELECT pg_size_pretty(pg_database_size($1))", DB_NAME)
    finally:
        await conn.close()
    return {
        "ledger_rows": count,
        "hourly_rows": hourly,
        "daily_rows": daily,
        "database_size": size,
        "generate_s": round(took),
    }


def timed(
    client: httpx.Client, path: str, params: dict[str, Any], headers: dict[str, str], n: int = 20
) -> dict[str, Any]:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        resp = client.get(path, params=params, headers=headers)
        times.append((time.perf_counter() - started) * 1000)
        if resp.status_code != 200:
            raise RuntimeError(f"{path} {params}: {resp.status_code} {resp.text[:300]}")
    times.sort()
    return {
        "p50_ms": round(statistics.median(times), 1),
        "p95_ms": round(times[int(0.95 * n) - 1], 1),
        "max_ms": round(times[-1], 1),
    }


def queries(base: str, tenant_key: str) -> dict[str, Any]:
    now = time.time()
    admin = {"authorization": f"Bearer {ADMIN}"}
    tenant = {"authorization": f"Bearer {tenant_key}"}
    out: dict[str, Any] = {}
    with httpx.Client(base_url=base, timeout=60) as client:
        first = client.get("/admin/requests", params={"limit": 50, "start": now - 7 * 86400}, headers=admin).json()
        third = client.get(
            "/admin/requests", params={"limit": 50, "start": now - 7 * 86400, "cursor": first["next"]}, headers=admin
        ).json()
        one = first["data"][0]["request_id"]
        calls = {
            "overview 24h": ("/admin/overview", {"start": now - 86400}, admin),
            "overview 7d": ("/admin/overview", {"start": now - 7 * 86400}, admin),
            "overview 30d": ("/admin/overview", {"start": now - 30 * 86400}, admin),
            "overview 30d, one tenant": ("/admin/overview", {"start": now - 30 * 86400, "tenant": "ten_b3"}, admin),
            "overview 24h, one key + model": (
                "/admin/overview",
                {"start": now - 86400, "key": "key_b7", "model": "model-1"},
                admin,
            ),
            "overview 30d as a tenant": ("/admin/overview", {"start": now - 30 * 86400}, tenant),
            "requests, newest 50": ("/admin/requests", {"limit": 50, "start": now - 7 * 86400}, admin),
            "requests, page 2 (cursor)": (
                "/admin/requests",
                {"limit": 50, "start": now - 7 * 86400, "cursor": third["next"]},
                admin,
            ),
            "requests, errors only": (
                "/admin/requests",
                {"limit": 50, "status": "error", "start": now - 7 * 86400},
                admin,
            ),
            "requests, one model": (
                "/admin/requests",
                {"limit": 50, "model": "model-4", "start": now - 7 * 86400},
                admin,
            ),
            "requests, one deployment + errors": (
                "/admin/requests",
                {"limit": 50, "deployment": "dep-5", "status": "error", "start": now - 7 * 86400},
                admin,
            ),
            "requests as a tenant": ("/admin/requests", {"limit": 50, "start": now - 7 * 86400}, tenant),
            "data flow (audit) of one request": (f"/admin/audit/{one}", {}, admin),
            "usage 30d by model, day": ("/admin/usage", {"group_by": "model,day"}, admin),
            "usage 30d by tenant, key": ("/admin/usage", {"group_by": "tenant,key"}, admin),
            "usage CSV by tenant, key, model, day": (
                "/admin/usage",
                {"group_by": "tenant,key,model,day", "format": "csv"},
                admin,
            ),
            "keys (100, with spend)": ("/admin/keys", {}, admin),
            "tenants (20, with spend)": ("/admin/tenants", {}, admin),
            "models": ("/admin/models", {}, admin),
        }
        for name, (path, params, headers) in calls.items():
            out[name] = timed(client, path, params, headers)
            print(f"{name:<40} {out[name]}", flush=True)
    return out


def throughput(base: str, key: str, rounds: int, seconds: int, core: str) -> dict[str, Any]:
    body = json.dumps({"model": "bench", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8})
    headers = {"authorization": f"Bearer {key}"}
    warm_up(f"{base}/v1/chat/completions", body, headers, 100)
    results: dict[str, list[float]] = {"idle": [], "console_open": []}
    refreshes: list[float] = []
    for n in range(rounds):
        for mode in ("idle", "console_open") if n % 2 == 0 else ("console_open", "idle"):
            done = threading.Event()

            def refresh(done: threading.Event = done) -> None:
                with httpx.Client(base_url=base, timeout=30, headers={"authorization": f"Bearer {ADMIN}"}) as client:
                    while not done.is_set():
                        started = time.perf_counter()
                        client.get("/admin/overview", params={"start": time.time() - 86400}).raise_for_status()
                        client.get("/admin/models").raise_for_status()
                        refreshes.append((time.perf_counter() - started) * 1000)
                        done.wait(5)

            worker = threading.Thread(target=refresh) if mode == "console_open" else None
            if worker:
                worker.start()
            r = hey(f"{base}/v1/chat/completions", body, 16, seconds, core, headers)
            done.set()
            if worker:
                worker.join()
            results[mode].append(r["rps"])
            print(mode, r, flush=True)
    idle, busy = statistics.median(results["idle"]), statistics.median(results["console_open"])
    return {
        "rps_median": {"idle": idle, "console_open": busy},
        "ratio_console_open_to_idle": round(busy / idle, 3),
        "runs": results,
        "overview_refresh_ms_median": round(statistics.median(refreshes), 1) if refreshes else None,
        "seconds": seconds,
        "rounds": rounds,
    }


def sqlite_import(tmp: Path, rounds: int = 5, n: int = 20_000) -> dict[str, Any]:
    """The spool import's transaction (``ledger_spool.import_file``) with and without the rollups' grouped
    upserts, in batches of 4,096 rows (the import's size at load), best of ``rounds``."""
    import sqlite3

    from openmaas.store import rollups
    from openmaas.store.ledger_spool import SQL

    sys.path.insert(0, str(Path(__file__).parents[1]))
    from tests.store.test_rollups import events

    rows = [tuple(e) for e in events(n, seed=1)]
    path = tmp / "import.db"
    db = Database(f"sqlite:///{path}", spool=None)
    asyncio.run(db.migrate())
    asyncio.run(db.close())
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    best: dict[str, float] = {}
    for r in range(rounds):
        for name in ("with_rollups", "without_rollups") if r % 2 == 0 else ("without_rollups", "with_rollups"):
            batch = [(f"{row[0]}_{r}_{name}", *row[1:]) for row in rows]
            started = time.perf_counter()
            for i in range(0, n, 4096):
                conn.execute("BEGIN IMMEDIATE")
                before = conn.execute(rollups.SQLITE_LAST_ROWID).fetchone()[0]
                conn.executemany(SQL, batch[i : i + 4096])
                if name == "with_rollups":
                    for statement in rollups.SQLITE_AFTER:
                        conn.execute(statement, {"before": before})
                conn.execute("COMMIT")
            took = (time.perf_counter() - started) / n * 1e6
            best[name] = min(best.get(name, took), took)
    conn.close()
    out = {f"{k}_us_per_row": round(v, 2) for k, v in best.items()}
    out["rollups_us_per_row"] = round(best["with_rollups"] - best["without_rollups"], 2)
    print(out, flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--regenerate", action="store_true")
    parser.add_argument("--parts", default="generate,queries,throughput,sqlite_import")
    args = parser.parse_args()
    parts = args.parts.split(",")
    out = RESULTS / "console_ledger.json"
    result: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    if "sqlite_import" in parts:
        with tempfile.TemporaryDirectory() as tmp_dir:
            result["sqlite_import"] = sqlite_import(Path(tmp_dir))
        out.write_text(json.dumps(result, indent=2))
    if not {"generate", "queries", "throughput"} & set(parts):
        return
    result["ledger"] = asyncio.run(generate(args.rows, args.regenerate))
    print(result["ledger"], flush=True)
    gw_core, other = cores()
    pin_services(other)
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        port = free_port()
        config = {
            "store": {"url": URL},
            "deployments": [{"name": "bench", "backend": "fake", "locality": "local"}],
            "aliases": {},
            "privacy": {"topics": False},
            "mcp": {"endpoint": False},
            "server": {"access_log": False, "log_level": "warning"},
        }
        (tmp / "config.json").write_text(json.dumps(config))
        env = {"OPENMAAS_DATA_DIR": str(tmp), "OPENMAAS_ADMIN_KEY": ADMIN}
        cmd = [python(), "-m", "openmaas", "serve", "--config", str(tmp / "config.json"), "--port", str(port)]
        proc = start(cmd, gw_core, tmp / "gateway.log", env)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_http(f"{base}/readyz")
            admin = {"authorization": f"Bearer {ADMIN}"}
            key = httpx.post(
                f"{base}/admin/keys", json={"tenant": "bench-tenant-3", "name": "bench-live"}, headers=admin
            ).json()["key"]
            if "queries" in parts:
                result["queries"] = queries(base, key)
            if "throughput" in parts:
                result["throughput"] = throughput(base, key, args.rounds, args.seconds, other)
        finally:
            stop(proc)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result.get("throughput"), indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
