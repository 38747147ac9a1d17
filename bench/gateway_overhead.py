"""Gateway overhead: OpenMaaS and the LiteLLM proxy in front of the same fast upstream,
versus that upstream called directly.

Method: the upstream (a bare-ASGI OpenAI-compatible app on uvicorn) and the load
generator (Debian's ``hey``, or an aiohttp client for streaming time to first
byte) share one core; the gateway under test (one worker) has the other core to
itself (``taskset``). Runs alternate between targets, twice per concurrency
level. LiteLLM is installed into its own virtual environment under the cache
directory (``pip install 'litellm[proxy]'``), run with one worker, a master key
and no database.

Usage: python bench/gateway_overhead.py [--seconds 5] [--no-litellm]
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
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, cores, free_port, hey, python, start, stop, wait_http, warm_up

KEY = "sk-bench-master-key"
BODY = json.dumps(
    {"model": "bench", "messages": [{"role": "user", "content": "Say something short."}], "max_tokens": 16}
)
STREAM_BODY = json.dumps(
    {
        "model": "bench",
        "stream": True,
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "Say something short."}],
    }
)
CACHE = Path(os.environ.get("OPENMAAS_CACHE_DIR") or Path.home() / ".cache/openmaas")


def litellm_bin() -> Path:
    venv = CACHE / "bench" / "litellm-venv"
    exe, marker = venv / "bin" / "litellm", venv / ".installed"
    if not marker.exists():  # written only after a complete install
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "litellm[proxy]"], check=True)
        marker.touch()
    return exe


def litellm_version() -> str:
    out = subprocess.run(
        [str(CACHE / "bench/litellm-venv/bin/pip"), "show", "litellm"], capture_output=True, text=True
    ).stdout
    return next((line.split()[1] for line in out.splitlines() if line.startswith("Version:")), "?")


async def ttfb(url: str, concurrency: int, total: int, core: str) -> dict[str, float]:
    os.sched_setaffinity(0, {int(core)})
    samples: list[float] = []
    headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(i)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def worker() -> None:
            while not queue.empty():
                queue.get_nowait()
                t0 = time.perf_counter()
                async with session.post(url, data=STREAM_BODY, headers=headers) as resp:
                    assert resp.status == 200, await resp.text()
                    first = True
                    async for _ in resp.content.iter_any():
                        if first:
                            samples.append((time.perf_counter() - t0) * 1000)
                            first = False

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    samples.sort()
    return {"ttfb_p50_ms": statistics.median(samples), "ttfb_p99_ms": samples[int(len(samples) * 0.99) - 1]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-litellm", action="store_true")
    args = parser.parse_args()
    gw_core, other = cores()
    tmp = Path(tempfile.mkdtemp(prefix="openmaas-bench-"))
    up_port, stream_port, om_port, ll_port = free_port(), free_port(), free_port(), free_port()
    procs = [
        start([python(), "bench/upstream.py", str(up_port)], other, tmp / "upstream.log"),
        # streaming upstream: 16 tokens, 5 ms apart, so first byte and last byte differ
        start([python(), "bench/upstream.py", str(stream_port), "5"], other, tmp / "upstream-stream.log"),
    ]
    config = tmp / "openmaas.yaml"
    config.write_text(
        json.dumps(
            {
                "server": {"log_level": "warning"},
                "deployments": [
                    {
                        "name": "bench",
                        "backend": "openai_compat",
                        "params": {"base_url": f"http://127.0.0.1:{up_port}/v1"},
                    },
                    {
                        "name": "bench-stream",
                        "backend": "openai_compat",
                        "params": {"base_url": f"http://127.0.0.1:{stream_port}/v1"},
                    },
                ],
                "aliases": {},
            }
        )
    )
    procs.append(
        start(
            [python(), "-m", "openmaas", "serve", "--config", str(config), "--port", str(om_port)],
            gw_core,
            tmp / "openmaas.log",
            {"OPENMAAS_DATA_DIR": str(tmp)},
        )
    )
    targets = {"direct": f"http://127.0.0.1:{up_port}", "openmaas": f"http://127.0.0.1:{om_port}"}
    stream_targets = {"direct": f"http://127.0.0.1:{stream_port}", "openmaas": f"http://127.0.0.1:{om_port}"}
    if not args.no_litellm:
        ll_config = tmp / "litellm.yaml"
        ll_config.write_text(
            json.dumps(
                {
                    "model_list": [
                        {
                            "model_name": "bench",
                            "litellm_params": {
                                "model": "openai/bench",
                                "api_key": "x",
                                "api_base": f"http://127.0.0.1:{up_port}/v1",
                            },
                        },
                        {
                            "model_name": "bench-stream",
                            "litellm_params": {
                                "model": "openai/bench",
                                "api_key": "x",
                                "api_base": f"http://127.0.0.1:{stream_port}/v1",
                            },
                        },
                    ],
                    "general_settings": {"master_key": KEY},
                    "litellm_settings": {"telemetry": False},
                }
            )
        )
        procs.append(
            start(
                [str(litellm_bin()), "--config", str(ll_config), "--port", str(ll_port), "--num_workers", "1"],
                gw_core,
                tmp / "litellm.log",
                {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR", "DISABLE_SCHEMA_UPDATE": "True"},
            )
        )
        targets["litellm"] = f"http://127.0.0.1:{ll_port}"
        stream_targets["litellm"] = f"http://127.0.0.1:{ll_port}"
    try:
        headers = {"Authorization": f"Bearer {KEY}"}
        for url in targets.values():
            wait_http(url + "/v1/models", 180, headers)
            warm_up(url + "/v1/chat/completions", BODY, headers)
        results: dict[str, Any] = {
            "litellm_version": None if args.no_litellm else litellm_version(),
            "cpu_count": os.cpu_count(),
            "seconds_per_run": args.seconds,
            "runs": [],
        }
        names = list(targets)
        for concurrency in (1, 16, 64):
            for rnd in range(args.rounds):
                order = names[rnd % len(names) :] + names[: rnd % len(names)]  # alternate who goes first
                for name in order:
                    r = hey(targets[name] + "/v1/chat/completions", BODY, concurrency, args.seconds, other, headers)
                    results["runs"].append({"target": name, "concurrency": concurrency, "round": rnd, **r})
                    print(f"c={concurrency:<3} {name:<9} {r}", flush=True)
        for rnd in range(args.rounds):
            for name in names:
                body_model = "bench-stream" if name != "direct" else "bench"
                global STREAM_BODY
                STREAM_BODY = json.dumps({**json.loads(STREAM_BODY), "model": body_model})
                r = asyncio.run(ttfb(stream_targets[name] + "/v1/chat/completions", 16, 400, other))
                results["runs"].append({"target": name, "concurrency": 16, "round": rnd, "stream": True, **r})
                print(f"stream c=16 {name:<9} {r}", flush=True)
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "gateway_overhead.json").write_text(json.dumps(results, indent=2))
        print(summary(results))
    finally:
        for proc in procs:
            stop(proc)


def summary(results: dict[str, Any]) -> str:
    def best(target: str, c: int, key: str, stream: bool = False) -> float:
        vals = [
            r[key]
            for r in results["runs"]
            if r["target"] == target and r["concurrency"] == c and bool(r.get("stream")) == stream
        ]
        return statistics.median(vals) if vals else float("nan")

    targets = sorted({r["target"] for r in results["runs"]})
    lines = ["| target | c | req/s | p50 ms | p99 ms |", "|---|---|---|---|---|"]
    for c in (1, 16, 64):
        for t in targets:
            lines.append(
                f"| {t} | {c} | {best(t, c, 'rps'):.0f} | {best(t, c, 'p50_ms'):.2f} | {best(t, c, 'p99_ms'):.2f} |"
            )
    lines += ["", "| target | streaming TTFB p50 ms (c=16) | p99 ms |", "|---|---|---|"]
    for t in targets:
        lines.append(f"| {t} | {best(t, 16, 'ttfb_p50_ms', True):.2f} | {best(t, 16, 'ttfb_p99_ms', True):.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
