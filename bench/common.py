"""Shared helpers for the benchmark scripts: processes pinned to cores, readiness, hey."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

RESULTS = Path(__file__).parent / "results"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cores() -> tuple[str, str]:
    """(gateway core, everything-else core) — separate when the machine has two or more."""
    n = os.cpu_count() or 1
    return ("0", "1") if n >= 2 else ("0", "0")


def start(cmd: list[str], core: str, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    out = log.open("wb")
    return subprocess.Popen(
        ["taskset", "-c", core, *cmd], stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
    )


def pin_services(core: str) -> None:
    """Move PostgreSQL and Redis (every process and thread) onto ``core``, beside the upstream and
    hey: the gateway under test keeps its core to itself, as it would next to a remote database."""
    for name in ("postgres", "redis-server"):
        found = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True).stdout.split()
        for pid in found:
            subprocess.run(["taskset", "-a", "-p", "-c", core, pid], capture_output=True)


def services_cpu() -> dict[str, float]:
    """User + system CPU seconds of every PostgreSQL and of every Redis process so far (backends come
    and go: a bench reads it around one run, over which its connections stay open)."""
    totals: dict[str, float] = {}
    for name in ("postgres", "redis-server"):
        total = 0
        for pid in subprocess.run(["pgrep", "-x", name], capture_output=True, text=True).stdout.split():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except FileNotFoundError:
                continue
            total += int(fields[11]) + int(fields[12])
        totals[name] = total / os.sysconf("SC_CLK_TCK")
    return totals


def wait_http(url: str, timeout: float = 120, headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2, headers=headers).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"{url} not ready after {timeout}s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def hey(url: str, body: str, concurrency: int, seconds: int, core: str, headers: dict[str, str]) -> dict[str, Any]:
    cmd = [
        "taskset",
        "-c",
        core,
        "hey",
        "-z",
        f"{seconds}s",
        "-c",
        str(concurrency),
        "-m",
        "POST",
        "-T",
        "application/json",
        "-d",
        body,
    ]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout

    def number(pattern: str, scale: float = 1.0) -> float:
        found = re.search(pattern, out)
        return float(found.group(1)) * scale if found else float("nan")

    rps = number(r"Requests/sec:\s+([\d.]+)")
    p50 = number(r"50%+ in ([\d.]+) secs", 1000)
    p99 = number(r"99%+ in ([\d.]+) secs", 1000)
    codes = dict(re.findall(r"\[(\d+)\]\s+(\d+) responses", out))
    errors = sum(int(v) for k, v in codes.items() if k != "200")
    errors += (
        sum(int(n) for n in re.findall(r"^\s+\[(\d+)\]\s+\S", out.split("Error distribution")[-1], re.M))
        if "Error distribution" in out
        else 0
    )
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "non_200": errors}


def warm_up(url: str, body: str, headers: dict[str, str], count: int = 20) -> None:
    """A few requests before measuring, so lazy initialisation is not counted."""
    for _ in range(count):
        httpx.post(url, content=body, headers={**headers, "content-type": "application/json"}, timeout=60)


def python() -> str:
    return sys.executable
