"""Local generation through OpenMaaS versus the raw llama.cpp engine it supervises.

Method: ``openmaas serve`` starts one llama-server (SmolLM2-135M Q4_1, 8 slots);
the same engine is then driven directly (its private port) and through the
gateway, alternating, at 1, 4 and 8 concurrent streams. Each stream asks for
128 tokens with ``ignore_eos`` and a unique prompt of fixed token length (a
random 8-digit request number, so the prompt cache cannot favour either side
and every prompt costs the same). Reported: aggregate decode tokens/s (completion tokens
over wall time) and time to first token (first content chunk); the ratio is the median over rounds of
gateway / engine within a round (the two ran back to back).

Also reported, per token: the client's CPU time (this process) and the gateway's (``/proc``).
``--stream-hold-ms 0,20`` runs one gateway (with its own engine) per value of ``server.stream_hold_ms``, one
after the other (default: one gateway on the server's default, 20 ms; 0 writes one event per socket write).

Usage: python bench/local_generation.py [--rounds 2] [--tokens 128] [--stream-hold-ms 0,20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, free_port, python, stop, wait_http

from dialects import cpu_seconds


def supervised_engine(gateway_pid: int) -> tuple[int, int]:
    """The supervised engine's pid and private port."""
    out = subprocess.run(["pgrep", "-P", str(gateway_pid), "-f", "llama-server"], capture_output=True, text=True)
    pid = int(out.stdout.split()[0])
    args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    return pid, int(args[args.index(b"--port") + 1])


async def one_stream(session: aiohttp.ClientSession, url: str, model: str, tokens: int) -> tuple[float, int]:
    body = {
        "model": model,
        "stream": True,
        "max_tokens": tokens,
        "ignore_eos": True,
        "temperature": 0,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": f"Request {random.randrange(10**8):08d}: tell me a long story."}],
    }
    t0 = time.perf_counter()
    ttft, completion = -1.0, 0
    async with session.post(url, json=body) as resp:
        assert resp.status == 200, await resp.text()
        async for line in resp.content:
            if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                continue
            chunk = json.loads(line[6:])
            if ttft < 0 and chunk.get("choices") and chunk["choices"][0]["delta"].get("content"):
                ttft = time.perf_counter() - t0
            if chunk.get("usage"):
                completion = chunk["usage"]["completion_tokens"]
    return ttft * 1000, completion


async def run(url: str, model: str, streams: int, tokens: int) -> dict[str, float]:
    async with aiohttp.ClientSession() as session:
        t0 = time.perf_counter()
        results = await asyncio.gather(*(one_stream(session, url, model, tokens) for _ in range(streams)))
        wall = time.perf_counter() - t0
    total = sum(r[1] for r in results)
    return {"tok_s": total / wall, "ttft_p50_ms": statistics.median(r[0] for r in results), "tokens": total}


def serve(tmp: Path, hold_ms: float | None) -> tuple[subprocess.Popen[bytes], int]:
    config = tmp / f"openmaas-{hold_ms}.yaml"
    server: dict[str, Any] = {"log_level": "warning"}
    if hold_ms is not None:
        server["stream_hold_ms"] = hold_ms
    deployment = {
        "name": "smollm2-135m",
        "backend": "llamacpp",
        "locality": "local",
        "context_length": 2048,
        # the engine is also driven directly here, where the gateway cannot see its
        # requests: a fixed thread count, so it never relaunches under them
        "params": {"model_path": "builtin:smollm2-135m", "parallel": 8, "threads": 2},
    }
    config.write_text(json.dumps({"server": server, "deployments": [deployment], "aliases": {}}))
    port = free_port()
    log = (tmp / "serve.log").open("ab")
    proc = subprocess.Popen(
        [python(), "-m", "openmaas", "serve", "--config", str(config), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={"OPENMAAS_DATA_DIR": str(tmp / str(hold_ms)), "PATH": "/usr/bin:/bin"},
    )
    return proc, port


def measure(tmp: Path, hold_ms: float | None, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Raw engine and gateway alternating, on one gateway (and its engine) with this ``stream_hold_ms``."""
    proc, port = serve(tmp, hold_ms)
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", 600)
        engine_pid, engine_port = supervised_engine(proc.pid)
        targets = {
            "engine": f"http://127.0.0.1:{engine_port}/v1/chat/completions",
            "openmaas": f"http://127.0.0.1:{port}/v1/chat/completions",
        }
        # warm-up, to the steady state of a running server: every slot used once on both sides (the gateway
        # pins slots, and a slot's first use starts from a copy of another slot's prompt cache; the engine
        # left alone fills its slots as it goes)
        for target in ("engine", "openmaas"):
            asyncio.run(run(targets[target], "smollm2-135m", 8, 16))
        rows: list[dict[str, Any]] = []
        for streams in (1, 4, 8):
            for rnd in range(args.rounds):
                order = ["engine", "openmaas"] if rnd % 2 == 0 else ["openmaas", "engine"]
                for name in order:
                    client, gateway, engine = time.process_time(), cpu_seconds(proc.pid), cpu_seconds(engine_pid)
                    r = asyncio.run(run(targets[name], "smollm2-135m", streams, args.tokens))
                    per_token = 1e6 / r["tokens"]
                    r["client_cpu_us_per_token"] = (time.process_time() - client) * per_token
                    r["gateway_cpu_us_per_token"] = (cpu_seconds(proc.pid) - gateway) * per_token
                    r["engine_cpu_us_per_token"] = (cpu_seconds(engine_pid) - engine) * per_token
                    rows.append({"hold_ms": hold_ms, "target": name, "streams": streams, "round": rnd, **r})
                    print(f"hold={hold_ms} streams={streams} {name:<9} {r}", flush=True)
        return rows
    finally:
        stop(proc)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--stream-hold-ms", default="", help="comma-separated; one gateway each, in this order")
    args = parser.parse_args()
    holds = [float(h) for h in args.stream_hold_ms.split(",")] if args.stream_hold_ms else [None]
    tmp = Path(tempfile.mkdtemp(prefix="openmaas-bench-gen-"))
    rows = [row for hold in holds for row in measure(tmp, hold, args)]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "local_generation.json").write_text(
        json.dumps({"tokens_per_stream": args.tokens, "runs": rows}, indent=2)
    )
    print(
        "| hold ms | streams | engine tok/s | openmaas tok/s | ratio (median of rounds) | engine TTFT p50 ms "
        "| openmaas TTFT p50 ms | client CPU µs/token raw → via gateway | gateway CPU µs/token |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for hold in holds:
        for streams in (1, 4, 8):
            mine = [r for r in rows if r["streams"] == streams and r["hold_ms"] == hold]

            def med(target: str, key: str, runs: list[dict[str, Any]] = mine) -> float:
                return float(statistics.median(r[key] for r in runs if r["target"] == target))

            # each round ran the engine and the gateway back to back: the ratio within a round is immune to the
            # VM's slow drift (its decode rate moves in steps of ~15 % within minutes), the median to a step
            ratios = [
                next(r for r in mine if r["round"] == n and r["target"] == "openmaas")["tok_s"]
                / next(r for r in mine if r["round"] == n and r["target"] == "engine")["tok_s"]
                for n in range(args.rounds)
            ]
            print(
                f"| {'default' if hold is None else hold} | {streams} | {med('engine', 'tok_s'):.1f} "
                f"| {med('openmaas', 'tok_s'):.1f} | {statistics.median(ratios):.3f} "
                f"| {med('engine', 'ttft_p50_ms'):.1f} | {med('openmaas', 'ttft_p50_ms'):.1f} "
                f"| {med('engine', 'client_cpu_us_per_token'):.0f} → {med('openmaas', 'client_cpu_us_per_token'):.0f} "
                f"| {med('openmaas', 'gateway_cpu_us_per_token'):.0f} |"
            )


if __name__ == "__main__":
    main()
