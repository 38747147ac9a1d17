"""Metering overhead: the same gateway with auth + metering + limits off, and on over each store.

Method: as in ``gateway_overhead.py`` — the fast upstream and ``hey`` share one
core, the gateway under test (one worker) has the other (``taskset``);
PostgreSQL and Redis are pinned beside the upstream. Targets: ``off``
(auth.required false, metering disabled), ``sqlite`` (a key with RPM, TPM and a
budget; SQLite ledger, in-process counters), ``pg_redis`` (PostgreSQL ledger,
Redis counters) and, on request, ``pg`` (PostgreSQL ledger, in-process
counters: the ledger's share of pg_redis). All on the defaults (ledger spool,
Redis leases). Runs alternate between targets, ``--rounds`` per concurrency;
the figure of merit is requests/s on vs off, paired by round; the gateway's and
PostgreSQL's and Redis's CPU per request are recorded too. PostgreSQL and Redis
must be running (``bash scripts/services.sh``); the bench uses its own
databases (``openmaas_bench*``), dropped and re-created each run.

``--baseline REV`` adds each metered target once more, run by the code of git
revision REV (a temporary ``git worktree``, started with ``PYTHONPATH`` pointing
at its ``src``; its own SQLite file, PostgreSQL database and Redis db, since its
schema may differ), alternating with the others: the change's effect measured
in one run, on one machine state.

Usage: python bench/metering_overhead.py [--seconds 5] [--rounds 5] [--baseline REV]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, cores, free_port, hey, pin_services, python, services_cpu, start, stop, wait_http, warm_up

BODY = json.dumps(
    {"model": "bench", "messages": [{"role": "user", "content": "Say something short."}], "max_tokens": 16}
)
PG_ADMIN = os.environ.get("OPENMAAS_TEST_PG_URL", "postgresql://openmaas:openmaas@127.0.0.1:5432/openmaas_test")
PG_BENCH = PG_ADMIN.rsplit("/", 1)[0] + "/openmaas_bench"
REDIS = os.environ.get("OPENMAAS_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
PG_BASELINE = PG_BENCH + "_baseline"
REDIS_BASELINE = REDIS.rsplit("/", 1)[0] + "/13"
REPO = Path(__file__).resolve().parent.parent


async def fresh_pg_and_redis() -> None:
    import asyncpg
    import redis.asyncio as redis

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        for database in (
            "openmaas_bench",
            "openmaas_bench_baseline",
            "openmaas_bench_pg",
            "openmaas_bench_baseline_pg",
        ):
            await conn.execute(f"DROP DATABASE IF EXISTS {database}")
            await conn.execute(f"CREATE DATABASE {database}")
    finally:
        await conn.close()
    for url in (REDIS, REDIS_BASELINE):
        client = redis.from_url(url)
        await client.flushdb()
        await client.aclose()


def gateway_config(tmp: Path, name: str, up_port: int) -> Path:
    """``name``: off, sqlite, pg_redis or pg, or ``<target>@<rev>`` for the baseline's twin of a target."""
    kind, _, rev = name.partition("@")
    store: dict[str, Any] = {"url": f"sqlite:///{tmp / name / 'openmaas.db'}"}
    if kind == "pg_redis":
        store = {"url": PG_BASELINE if rev else PG_BENCH, "redis_url": REDIS_BASELINE if rev else REDIS}
    elif kind == "pg":  # the PostgreSQL ledger alone, counters in process (diagnostic: ledger vs Redis)
        store = {"url": (PG_BASELINE if rev else PG_BENCH) + "_pg"}
    config: dict[str, Any] = {
        "server": {"log_level": "warning"},
        "data_dir": str(tmp / name),
        "store": store,
        "deployments": [
            {
                "name": "bench",
                "backend": "openai_compat",
                "params": {"base_url": f"http://127.0.0.1:{up_port}/v1"},
                "pricing": {"input_per_mtok": 0.5, "output_per_mtok": 1.5},
            }
        ],
        "aliases": {},
    }
    if kind == "off":
        config["auth"] = {"required": False}
        config["metering"] = {"enabled": False}
    path = tmp / f"{name}.yaml"
    path.write_text(json.dumps(config))
    return path


def baseline_src(rev: str, tmp: Path) -> Path:
    tree = tmp / "baseline"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), rev], check=True)
    return tree / "src"


def make_key(config: Path, env: dict[str, str] | None = None) -> str:
    """A tenant and a key with limits and budgets, made by the CLI of the code under test (``env``)."""
    openmaas = [python(), "-m", "openmaas"]
    env = {**os.environ, **(env or {})}
    cmd = [*openmaas, "tenants", "create", "bench", "--budget-usd", "1000000", "-c", str(config)]
    subprocess.run(cmd, check=True, env=env)
    out = subprocess.run(
        [
            *openmaas,
            "keys",
            "create",
            "--tenant",
            "bench",
            "--rpm",
            "100000000",
            "--tpm",
            "1000000000",
            "--budget-usd",
            "1000000",
            "-c",
            str(config),
        ],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout
    return out.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--out", default="metering_overhead.json", help="results file ('' to skip)")
    parser.add_argument("--targets", nargs="+", default=["off", "sqlite", "pg_redis"])
    parser.add_argument("--baseline", help="also run each metered target on this git revision's code")
    args = parser.parse_args()
    gw_core, other = cores()
    tmp = Path(tempfile.mkdtemp(prefix="openmaas-bench-metering-"))
    asyncio.run(fresh_pg_and_redis())
    pin_services(other)
    names = list(args.targets)
    envs: dict[str, dict[str, str]] = {}
    if args.baseline:
        src = baseline_src(args.baseline, tmp)
        for name in args.targets:
            if name != "off":
                names.append(f"{name}@{args.baseline}")
                envs[names[-1]] = {"PYTHONPATH": str(src)}
    up_port = free_port()
    procs = [start([python(), "bench/upstream.py", str(up_port)], other, tmp / "upstream.log")]
    targets: dict[str, tuple[str, dict[str, str]]] = {}
    pids: dict[str, int] = {}
    try:
        for name in names:
            (tmp / name).mkdir()
            config = gateway_config(tmp, name, up_port)
            key = "none" if name == "off" else make_key(config, envs.get(name))
            port = free_port()
            procs.append(
                start(
                    [python(), "-m", "openmaas", "serve", "--config", str(config), "--port", str(port)],
                    gw_core,
                    tmp / f"{name}.log",
                    envs.get(name),
                )
            )
            targets[name] = (f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {key}"})
            pids[name] = procs[-1].pid
        for url, headers in targets.values():
            wait_http(url + "/healthz", 120, headers)
            warm_up(url + "/v1/chat/completions", BODY, headers, count=200)
        results: dict[str, Any] = {"cpu_count": os.cpu_count(), "seconds_per_run": args.seconds, "runs": []}
        names = list(targets)
        for concurrency in args.concurrency:
            for rnd in range(args.rounds):
                order = names[rnd % len(names) :] + names[: rnd % len(names)]
                for name in order:
                    url, headers = targets[name]
                    cpu_before, services_before = cpu_seconds(pids[name]), services_cpu()
                    r = hey(url + "/v1/chat/completions", BODY, concurrency, args.seconds, other, headers)
                    cpu = cpu_seconds(pids[name]) - cpu_before
                    served = max(1.0, r["rps"] * args.seconds)
                    r["cpu_us_per_req"] = round(1e6 * cpu / served, 1)
                    services_after = services_cpu()
                    for service, key in (("postgres", "postgres_us_per_req"), ("redis-server", "redis_us_per_req")):
                        r[key] = round(1e6 * (services_after[service] - services_before[service]) / served, 1)
                    results["runs"].append({"target": name, "concurrency": concurrency, "round": rnd, **r})
                    print(f"c={concurrency:<3} {name:<9} {r}", flush=True)
        if args.out:
            RESULTS.mkdir(exist_ok=True)
            (RESULTS / args.out).write_text(json.dumps(results, indent=2))
        print(summary(results))
    finally:
        for proc in procs:
            stop(proc)
        if args.baseline:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tmp / "baseline")])


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the gateway process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def summary(results: dict[str, Any]) -> str:
    def med(target: str, c: int, key: str) -> float:
        vals = [r[key] for r in results["runs"] if r["target"] == target and r["concurrency"] == c]
        return statistics.median(vals) if vals else float("nan")

    def paired(target: str, c: int) -> float:
        """Median over rounds of (target req/s ÷ off req/s in the same round): drift between rounds cancels."""
        by_round = {(r["target"], r["round"]): r["rps"] for r in results["runs"] if r["concurrency"] == c}
        ratios = [v / by_round[("off", n)] for (t, n), v in by_round.items() if t == target and ("off", n) in by_round]
        return statistics.median(ratios) if ratios else float("nan")

    lines = [
        "| target | c | req/s | vs off | vs off, paired by round | gateway CPU µs/req | PostgreSQL / Redis CPU µs/req"
        " | p50 ms | p99 ms | non-2xx |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in sorted({r["concurrency"] for r in results["runs"]}):
        base = med("off", c, "rps")
        for t in dict.fromkeys(r["target"] for r in results["runs"]):
            rps = med(t, c, "rps")
            errors = sum(r.get("non_200", 0) for r in results["runs"] if r["target"] == t and r["concurrency"] == c)
            lines.append(
                f"| {t} | {c} | {rps:.0f} | {rps / base:.3f} | {paired(t, c):.3f} | "
                f"{med(t, c, 'cpu_us_per_req'):.0f} | {med(t, c, 'postgres_us_per_req'):.0f} / "
                f"{med(t, c, 'redis_us_per_req'):.0f} | {med(t, c, 'p50_ms'):.2f} | "
                f"{med(t, c, 'p99_ms'):.2f} | {errors} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
