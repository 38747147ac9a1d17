"""Dialect overhead: /v1/messages and /v1/responses against /v1/chat/completions through the same
gateway and the same fast upstream, and chat on this code against chat on the code before the
canonical core (a git worktree of ``--before``), all in one run.

Method: as bench/gateway_overhead.py — the upstream (bare-ASGI OpenAI-compatible app) and ``hey`` share
one core, the gateway under test (one worker, metering on, SQLite) has the other core; targets alternate,
``--rounds`` times each, ``--seconds`` per run, at concurrency 16. This machine is a VM whose speed
drifts by ±20 % from minute to minute, so every target is measured next to a chat run of its own (after
it in even rounds, before it in odd ones) and compared with it: the figure is the median over rounds of
those paired ratios.

Usage: python bench/dialects.py [--seconds 5] [--rounds 3] [--before 7250679]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, cores, free_port, hey, python, start, stop, wait_http, warm_up

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "Say something short."
BODIES = {
    "chat": (
        "/v1/chat/completions",
        {"model": "bench", "max_tokens": 16, "messages": [{"role": "user", "content": PROMPT}]},
    ),
    "messages": (
        "/v1/messages",
        {"model": "bench", "max_tokens": 16, "messages": [{"role": "user", "content": PROMPT}]},
    ),
    "responses": ("/v1/responses", {"model": "bench", "max_output_tokens": 16, "input": PROMPT, "store": False}),
    "responses_stored": ("/v1/responses", {"model": "bench", "max_output_tokens": 16, "input": PROMPT}),
}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(
    url: str, body: str, pid: int, args: argparse.Namespace, core: str, headers: dict[str, str]
) -> dict[str, Any]:
    """One ``hey`` run, with the gateway's CPU time per request (steadier than wall time on a VM)."""
    before = cpu_seconds(pid)
    r = hey(url, body, args.concurrency, args.seconds, core, headers)
    r["cpu_us_per_request"] = round((cpu_seconds(pid) - before) / max(1.0, r["rps"] * args.seconds) * 1e6, 1)
    return r


def serve(src: Path, config: Path, port: int, core: str, tmp: Path, name: str) -> subprocess.Popen[bytes]:
    data = tmp / f"data-{name}"
    data.mkdir()
    env = {"OPENMAAS_DATA_DIR": str(data), "PYTHONPATH": str(src)}
    cmd = [python(), "-m", "openmaas", "serve", "--config", str(config), "--port", str(port)]
    return start(cmd, core, tmp / f"{name}.log", env)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--before", default="7250679")
    args = parser.parse_args()
    gw_core, other = cores()
    tmp = Path(tempfile.mkdtemp(prefix="openmaas-bench-dialects-"))
    before = tmp / "before"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(before), args.before],
        check=True,
        capture_output=True,
    )
    up_port, now_port, before_port, store_port = free_port(), free_port(), free_port(), free_port()
    config = tmp / "openmaas.yaml"
    deployment = {"name": "bench", "backend": "openai_compat", "params": {"base_url": f"http://127.0.0.1:{up_port}/v1"}}
    config.write_text(json.dumps({"server": {"log_level": "warning"}, "deployments": [deployment], "aliases": {}}))
    # the same features as the code before: what did not exist there is off here — the disclosure classifier
    # (issue 20, priced in bench/routing.py), metrics and the access log (§k), MCP's endpoint and built-in tools,
    # the console — so this run measures the dialects and the typed core
    config_now = tmp / "openmaas-now.yaml"
    same = {
        "server": {"log_level": "warning", "access_log": False},
        "deployments": [deployment],
        "aliases": {},
        "privacy": {"topics": False},
        "metrics": {"enabled": False},
        "mcp": {"endpoint": False, "builtin_tools": False},
        "console": {"enabled": False},
    }
    config_now.write_text(json.dumps(same))
    procs = [start([python(), "bench/upstream.py", str(up_port)], other, tmp / "upstream.log")]
    results: dict[str, list[dict[str, Any]]] = {}
    try:
        procs.append(serve(ROOT / "src", config_now, now_port, gw_core, tmp, "now"))
        procs.append(serve(before / "src", config, before_port, gw_core, tmp, "before"))
        # stored responses write the database: a gateway of their own, so its growing store and WAL
        # cannot slow the other targets' process
        procs.append(serve(ROOT / "src", config_now, store_port, gw_core, tmp, "store"))
        targets = {
            name: (f"http://127.0.0.1:{store_port if name == 'responses_stored' else now_port}{path}", json.dumps(body))
            for name, (path, body) in BODIES.items()
        }
        targets["chat_control"] = targets["chat"]  # chat against chat: the method's own bias and noise
        targets["chat_before"] = (f"http://127.0.0.1:{before_port}/v1/chat/completions", json.dumps(BODIES["chat"][1]))
        for port in (now_port, before_port, store_port):
            wait_http(f"http://127.0.0.1:{port}/readyz")
        headers = {"anthropic-version": "2023-06-01"}
        for url, body in targets.values():
            warm_up(url, body, headers, 50)
        chat_url, chat_body = targets.pop("chat")
        pid = {"chat_before": procs[2].pid, "responses_stored": procs[3].pid}
        for n in range(args.rounds):
            for name, (url, body) in targets.items():
                # odd rounds measure the target first: no order effect favours either side
                if n % 2:
                    r = measured(url, body, pid.get(name, procs[1].pid), args, other, headers)
                base = measured(chat_url, chat_body, procs[1].pid, args, other, headers)
                if not n % 2:
                    r = measured(url, body, pid.get(name, procs[1].pid), args, other, headers)
                r["paired_chat_rps"] = base["rps"]
                results.setdefault("chat", []).append(base)
                results.setdefault(name, []).append(r)
                print(name, r, flush=True)
    finally:
        for proc in procs:
            stop(proc)
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)], check=False)
    median = {name: statistics.median(r["rps"] for r in runs) for name, runs in results.items()}
    p50 = {name: statistics.median(r["p50_ms"] for r in runs) for name, runs in results.items()}
    summary = {
        "rps": median,
        "p50_ms": p50,
        "non_200": {name: sum(r["non_200"] for r in runs) for name, runs in results.items()},
        "ratio_to_chat": {
            name: round(statistics.median(r["rps"] / r["paired_chat_rps"] for r in runs), 3)
            for name, runs in results.items()
            if name != "chat"
        },
        "chat_now_vs_before": round(
            statistics.median(r["paired_chat_rps"] / r["rps"] for r in results["chat_before"]), 3
        ),
        "cpu_us_per_request": {
            name: statistics.median(r["cpu_us_per_request"] for r in runs) for name, runs in results.items()
        },
        "added_p50_ms_vs_chat": {name: round(v - p50["chat"], 2) for name, v in p50.items()},
        "method": {
            "seconds": args.seconds,
            "rounds": args.rounds,
            "concurrency": args.concurrency,
            "before": args.before,
        },
        "runs": results,
    }
    out = RESULTS / "dialects.json"
    out.write_text(json.dumps(summary, indent=2))
    print(
        json.dumps(
            {k: summary[k] for k in ("rps", "ratio_to_chat", "chat_now_vs_before", "added_p50_ms_vs_chat")}, indent=2
        )
    )


if __name__ == "__main__":
    main()
