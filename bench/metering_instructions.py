"""Metering overhead as CPU instructions per request: deterministic, unlike requests/s on a shared VM.

Method: each target gateway (same configs as ``metering_overhead.py``) runs
under ``valgrind --tool=callgrind`` with instrumentation off; after a warm-up
of 300 requests it is switched on (``callgrind_control -i on``), ``hey`` sends
``--requests`` requests at concurrency 16, and the dump gives the instructions
executed by the whole process (all threads) over those requests. The figure of
merit is instructions per request, on vs off; neighbours on the machine cannot
change it. The fast upstream and hey run on the other core.

Usage: python bench/metering_instructions.py [--requests 1000]
       [--targets off auth_only ledger_only sqlite pg_redis]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, cores, free_port, pin_services, python, start, stop, wait_http, warm_up
from metering_overhead import BODY, fresh_pg_and_redis, gateway_config, make_key


def instructions(dump_dir: Path, pid: int) -> int:
    total = 0
    for path in dump_dir.glob(f"callgrind.out.{pid}*"):
        found = re.search(r"^totals:\s+(\d+)", path.read_text(errors="replace"), re.M)
        if found:
            total += int(found.group(1))
    return total


def counted(
    pid: int, url: str, body: str, headers: dict[str, str], requests: int, concurrency: int, core: str, dumps: Path
) -> float:
    """Instructions per request of ``requests`` POSTs (``hey``, pinned to ``core``) to a process running under
    ``valgrind --tool=callgrind --instr-atstart=no``, its dumps written to ``dumps``."""
    control = ["callgrind_control"]
    subprocess.run([*control, "-z", str(pid)], check=True, capture_output=True)
    subprocess.run([*control, "-i", "on", str(pid)], check=True, capture_output=True)
    cmd = ["taskset", "-c", core, "hey", "-n", str(requests), "-c", str(concurrency), "-m", "POST"]
    cmd += ["-T", "application/json", "-d", body]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True).stdout
    subprocess.run([*control, "-i", "off", str(pid)], check=True, capture_output=True)
    subprocess.run([*control, "-d", str(pid)], check=True, capture_output=True)
    ok = re.search(r"\[200\]\s+(\d+) responses", out)
    if not ok or int(ok.group(1)) != requests:
        raise RuntimeError(f"{url}: not every request succeeded:\n{out}")
    time.sleep(1)
    return instructions(dumps, pid) / requests


def _config_and_key(tmp: Path, name: str, up_port: int) -> tuple[Path, str]:
    """``off``, ``sqlite``, ``pg_redis`` as in metering_overhead.py, plus two partial targets on SQLite that
    split the cost: ``auth_only`` (keys checked, metering off) and ``ledger_only`` (a key with no limits and no
    budget: auth + a ledger row, no admission counters, no rate-limit headers)."""
    if name not in ("auth_only", "ledger_only"):
        config = gateway_config(tmp, name, up_port)
        return config, "none" if name == "off" else make_key(config)
    config = gateway_config(tmp, "sqlite", up_port)
    data = json.loads(config.read_text())
    data["data_dir"] = str(tmp / name)
    data["store"] = {"url": f"sqlite:///{tmp / name / 'openmaas.db'}"}
    if name == "auth_only":
        data["metering"] = {"enabled": False}
    config = tmp / f"{name}.yaml"
    config.write_text(json.dumps(data))
    openmaas = [python(), "-m", "openmaas"]
    subprocess.run([*openmaas, "tenants", "create", "bench", "-c", str(config)], check=True, capture_output=True)
    out = subprocess.run(
        [*openmaas, "keys", "create", "--tenant", "bench", "-c", str(config)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return config, out.strip().splitlines()[-1]


def measure(name: str, tmp: Path, up_port: int, requests: int, concurrency: int, gw_core: str, other: str) -> int:
    (tmp / name).mkdir()
    config, key = _config_and_key(tmp, name, up_port)
    port = free_port()
    dumps = tmp / f"{name}-callgrind"
    dumps.mkdir()
    proc = start(
        [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            "--collect-systime=no",
            f"--callgrind-out-file={dumps}/callgrind.out.%p",
            python(),
            "-m",
            "openmaas",
            "serve",
            "--config",
            str(config),
            "--port",
            str(port),
        ],
        gw_core,
        tmp / f"{name}.log",
    )
    try:
        url = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {key}"}
        wait_http(url + "/healthz", 600, headers)
        warm_up(url + "/v1/chat/completions", BODY, headers, count=300)
        return round(
            counted(proc.pid, url + "/v1/chat/completions", BODY, headers, requests, concurrency, other, dumps)
            * requests
        )
    finally:
        stop(proc)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--targets", nargs="+", default=["off", "auth_only", "ledger_only", "sqlite", "pg_redis"])
    parser.add_argument("--out", default="metering_instructions.json", help="results file ('' to skip)")
    args = parser.parse_args()
    args.requests -= args.requests % args.concurrency  # hey sends requests // concurrency per worker
    gw_core, other = cores()
    tmp = Path(tempfile.mkdtemp(prefix="openmaas-bench-instr-"))
    asyncio.run(fresh_pg_and_redis())
    pin_services(other)
    up_port = free_port()
    upstream = start([python(), "bench/upstream.py", str(up_port)], other, tmp / "upstream.log")
    try:
        wait_http(f"http://127.0.0.1:{up_port}/v1/models", 60, {})
        per_request = {}
        for name in args.targets:
            total = measure(name, tmp, up_port, args.requests, args.concurrency, gw_core, other)
            per_request[name] = total / args.requests
            print(f"{name:<9} {per_request[name] / 1000:,.0f} k instructions / request", flush=True)
    finally:
        stop(upstream)
    base = per_request.get("off")
    lines = ["| target | instructions / request | vs off |", "|---|---|---|"]
    for name, value in per_request.items():
        ratio = f"+{100 * (value / base - 1):.0f} %" if base else "—"
        lines.append(f"| {name} | {value / 1000:,.0f} k | {ratio} |")
    print("\n".join(lines))
    if args.out:
        RESULTS.mkdir(exist_ok=True)
        result = {"requests": args.requests, "concurrency": args.concurrency, "per_request": per_request}
        (RESULTS / args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
