"""The gateway's CPU per relayed stream chunk: this code against an earlier commit, in one run.

Method: a fast OpenAI-compatible upstream (``bench/upstream.py``'s app) streams N tokens, either as fast as it
can (``saturated``: the relay is the bottleneck, reads coalesce) or one every ``--delay-ms`` (``paced``: like
a local engine decoding ~110 tokens/s, one socket read and one write per token). One gateway runs this tree,
another the ``--before`` commit (a git worktree); two streams at a time through each, alternating, ``--rounds``
rounds. Reported: gateway CPU time (``/proc``) per relayed chunk, median over rounds.

Usage: python bench/relay_cpu.py [--before REF] [--tokens 4000] [--paced-tokens 300] [--delay-ms 9] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, free_port, python, stop, wait_http

from dialects import cpu_seconds

ROOT = Path(__file__).resolve().parents[1]
UPSTREAM = """
import sys
import uvicorn
from openmaas.testing.openai_upstream import OpenAIUpstream
port, tokens, delay = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
app = OpenAIUpstream(reply=" ".join(["tok"] * tokens), keep=1, chunk_delay=delay)
uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools", log_level="warning", access_log=False)
"""


async def streams(url: str, count: int) -> int:
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}

    async def one(session: aiohttp.ClientSession) -> int:
        n = 0
        async with session.post(url, json=body) as resp:
            assert resp.status == 200, await resp.text()
            async for line in resp.content:
                n += line.startswith(b"data: {")
        return n

    async with aiohttp.ClientSession() as session:
        return sum(await asyncio.gather(*(one(session) for _ in range(count))))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", default="eb0ddef")
    parser.add_argument("--tokens", type=int, default=4000)
    parser.add_argument("--paced-tokens", type=int, default=300)
    parser.add_argument("--delay-ms", type=float, default=9.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="openmaas-bench-relay-"))
    tree = tmp / "before"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), args.before], check=True)
    (tmp / "upstream.py").write_text(UPSTREAM)
    results: dict[str, Any] = {"method": vars(args)}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for mode, tokens, delay in (
            ("saturated", args.tokens, 0.0),
            ("paced", args.paced_tokens, args.delay_ms / 1000),
        ):
            up = free_port()
            upstream = subprocess.Popen([python(), str(tmp / "upstream.py"), str(up), str(tokens), str(delay)])
            procs.append(upstream)
            gateways: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
            for name, src in (("now", ROOT / "src"), ("before", tree / "src")):
                config = tmp / f"{mode}-{name}.json"
                deployment = {
                    "name": "m",
                    "backend": "openai_compat",
                    "params": {"base_url": f"http://127.0.0.1:{up}/v1"},
                }
                settings = {"server": {"log_level": "warning"}, "deployments": [deployment], "aliases": {}}
                config.write_text(json.dumps(settings))
                data = tmp / f"data-{mode}-{name}"
                data.mkdir()
                port = free_port()
                env = {"OPENMAAS_DATA_DIR": str(data), "PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"}
                cmd = [python(), "-m", "openmaas", "serve", "--config", str(config), "--port", str(port)]
                log = (tmp / f"{mode}-{name}.log").open("wb")
                proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
                procs.append(proc)
                gateways[name] = (proc, f"http://127.0.0.1:{port}/v1/chat/completions")
                wait_http(f"http://127.0.0.1:{port}/readyz", 60)
            wait_http(f"http://127.0.0.1:{up}/v1/models", 60)
            rows: dict[str, list[float]] = {"now": [], "before": []}
            for _, url in gateways.values():
                asyncio.run(streams(url, 1))  # warm-up
            for rnd in range(args.rounds):
                for name in ("now", "before") if rnd % 2 == 0 else ("before", "now"):
                    proc, url = gateways[name]
                    cpu = cpu_seconds(proc.pid)
                    chunks = asyncio.run(streams(url, 2))
                    rows[name].append((cpu_seconds(proc.pid) - cpu) / chunks * 1e6)
                    print(f"{mode} {name:<6} {rows[name][-1]:.1f} µs/chunk", flush=True)
            results[mode] = {
                name: {"cpu_us_per_chunk_median": round(statistics.median(v), 1), "rounds": [round(x, 1) for x in v]}
                for name, v in rows.items()
            }
            results[mode]["now_over_before"] = round(
                results[mode]["now"]["cpu_us_per_chunk_median"] / results[mode]["before"]["cpu_us_per_chunk_median"], 3
            )
            for proc in procs:
                stop(proc)
            procs.clear()
    finally:
        for proc in procs:
            stop(proc)
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "relay_cpu.json").write_text(json.dumps(results, indent=2))
    print(json.dumps({k: v for k, v in results.items() if k != "method"}, indent=2))


if __name__ == "__main__":
    main()
