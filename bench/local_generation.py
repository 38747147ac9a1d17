"""Local generation through OpenMaaS versus the raw llama.cpp engine it supervises.

Method: ``openmaas serve`` starts one llama-server (SmolLM2-135M Q4_1, 8 slots);
the same engine is then driven directly (its private port) and through the
gateway, alternating, at 1, 4 and 8 concurrent streams. Each stream asks for
128 tokens with ``ignore_eos`` and a unique prompt of fixed token length (a
random 8-digit request number, so the prompt cache cannot favour either side
and every prompt costs the same). Reported: aggregate decode tokens/s (completion tokens
over wall time) and time to first token (first content chunk).

``--stream-hold-ms`` sets the gateway's ``server.stream_hold_ms`` (default: the server's own, 20 ms;
0 writes one event per socket write, as before the setting existed).

Usage: python bench/local_generation.py [--rounds 2] [--tokens 128] [--stream-hold-ms MS]
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


def engine_port(gateway_pid: int) -> int:
    out = subprocess.run(["pgrep", "-P", str(gateway_pid), "-f", "llama-server"], capture_output=True, text=True)
    pid = out.stdout.split()[0]
    args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    return int(args[args.index(b"--port") + 1])


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--stream-hold-ms", type=float, default=None)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="openmaas-bench-gen-"))
    config = tmp / "openmaas.yaml"
    config.write_text(
        json.dumps(
            {
                "server": {
                    "log_level": "warning",
                    **({} if args.stream_hold_ms is None else {"stream_hold_ms": args.stream_hold_ms}),
                },
                "deployments": [
                    {
                        "name": "smollm2-135m",
                        "backend": "llamacpp",
                        "locality": "local",
                        "context_length": 2048,
                        # the engine is also driven directly here, where the gateway cannot see its
                        # requests: a fixed thread count, so it never relaunches under them
                        "params": {"model_path": "builtin:smollm2-135m", "parallel": 8, "threads": 2},
                    }
                ],
                "aliases": {},
            }
        )
    )
    port = free_port()
    log = (tmp / "serve.log").open("wb")
    proc = subprocess.Popen(
        [python(), "-m", "openmaas", "serve", "--config", str(config), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={"OPENMAAS_DATA_DIR": str(tmp), "PATH": "/usr/bin:/bin"},
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", 600)
        targets = {
            "engine": f"http://127.0.0.1:{engine_port(proc.pid)}/v1/chat/completions",
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
                    r = asyncio.run(run(targets[name], "smollm2-135m", streams, args.tokens))
                    rows.append({"target": name, "streams": streams, "round": rnd, **r})
                    print(f"streams={streams} {name:<9} {r}", flush=True)
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "local_generation.json").write_text(
            json.dumps(
                {"tokens_per_stream": args.tokens, "stream_hold_ms": args.stream_hold_ms, "runs": rows}, indent=2
            )
        )
        print("| streams | engine tok/s | openmaas tok/s | ratio | engine TTFT p50 ms | openmaas TTFT p50 ms |")
        print("|---|---|---|---|---|---|")
        for streams in (1, 4, 8):

            def med(target: str, key: str, s: int = streams) -> float:
                return statistics.median(r[key] for r in rows if r["target"] == target and r["streams"] == s)

            e, o = med("engine", "tok_s"), med("openmaas", "tok_s")
            print(
                f"| {streams} | {e:.1f} | {o:.1f} | {o / e:.3f} | {med('engine', 'ttft_p50_ms'):.1f} | "
                f"{med('openmaas', 'ttft_p50_ms'):.1f} |"
            )
    finally:
        stop(proc)


if __name__ == "__main__":
    main()
