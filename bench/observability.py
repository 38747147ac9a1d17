"""The cost of metrics and the access log, against the same gateway without them, in one run.

- ``core``: the request path alone (``Gateway.chat`` on a zero-latency fake deployment, in this process, no
  HTTP): requests/s with telemetry off, with metrics on, with metrics and the access log on — best of 5 ×
  2,000 requests each, the variants interleaved. The conservative figure (no HTTP in the base).
- ``http``: requests/s of ``openmaas serve`` processes (one per variant, on the same core, measured one after
  the other, order alternating by round) under ``hey`` at concurrency 16 and 64 against the fake upstream of
  ``bench/upstream.py``; a chat-against-chat control shows the method's noise.

Usage: python bench/observability.py [--parts core,http] [--seconds 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, cores, free_port, hey, python, start, stop, wait_http, warm_up

from openmaas.gateway import Call
from openmaas.server import create_app
from openmaas.settings import Settings

VARIANTS = {
    "off": {"metrics": {"enabled": False}, "server": {"access_log": False, "log_level": "warning"}},
    "metrics": {"metrics": {"enabled": True}, "server": {"access_log": False, "log_level": "warning"}},
    "metrics+access_log": {"metrics": {"enabled": True}, "server": {"access_log": True, "log_level": "info"}},
}
BODY = {"model": "bench", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 16}


def config(base: dict[str, Any], deployment: dict[str, Any], tmp: Path) -> dict[str, Any]:
    return {"data_dir": str(tmp), "deployments": [deployment], "aliases": {}, "privacy": {"topics": False}, **base}


async def core_part(tmp: Path) -> dict[str, Any]:
    logging.getLogger("openmaas.access").addHandler(logging.NullHandler())
    logging.getLogger("openmaas.access").propagate = False  # formatting counts, printing to a terminal does not
    deployment = {"name": "bench", "backend": "fake", "locality": "local", "params": {"reply": "hello there"}}
    apps = {}
    for name, variant in VARIANTS.items():
        apps[name] = create_app(Settings.model_validate(config(variant, deployment, tmp / name)))
    best: dict[str, float] = {name: 0.0 for name in apps}
    for app in apps.values():
        await app.router.lifespan_context(app).__aenter__()
    try:
        for _ in range(5):
            for name, app in apps.items():
                if name == "metrics+access_log":
                    logging.getLogger("openmaas.access").setLevel(logging.INFO)
                gateway = app.state.gateway
                for _ in range(200):
                    await gateway.chat(dict(BODY), Call())
                t = time.perf_counter()
                for _ in range(2000):
                    await gateway.chat(dict(BODY), Call())
                best[name] = max(best[name], 2000 / (time.perf_counter() - t))
    finally:
        for app in apps.values():
            await app.router.lifespan_context(app).__aexit__(None, None, None)
    return {
        "rps": {k: round(v) for k, v in best.items()},
        "cost_vs_off": {k: round(1 - v / best["off"], 4) for k, v in best.items() if k != "off"},
    }


def http_part(tmp: Path, seconds: int, rounds: int) -> dict[str, Any]:
    gw_core, other = cores()
    up = free_port()
    procs = [start([python(), "bench/upstream.py", str(up)], other, tmp / "upstream.log")]
    deployment = {"name": "bench", "backend": "openai_compat", "params": {"base_url": f"http://127.0.0.1:{up}/v1"}}
    ports: dict[str, int] = {}
    results: dict[str, list[float]] = {}
    try:
        for name, variant in {**VARIANTS, "off_control": VARIANTS["off"]}.items():
            path = tmp / f"{name}.json"
            data = config(variant, deployment, tmp / f"data-{name}")
            data.pop("data_dir")
            path.write_text(json.dumps(data))
            ports[name] = free_port()
            (tmp / f"data-{name}").mkdir()
            cmd = [python(), "-m", "openmaas", "serve", "--config", str(path), "--port", str(ports[name])]
            procs.append(start(cmd, gw_core, tmp / f"{name}.log", {"OPENMAAS_DATA_DIR": str(tmp / f"data-{name}")}))
        for port in ports.values():
            wait_http(f"http://127.0.0.1:{port}/readyz")
            warm_up(f"http://127.0.0.1:{port}/v1/chat/completions", json.dumps(BODY), {}, 50)
        for concurrency in (16, 64):
            for n in range(rounds):
                order = list(ports) if n % 2 == 0 else list(reversed(ports))
                for name in order:
                    url = f"http://127.0.0.1:{ports[name]}/v1/chat/completions"
                    r = hey(url, json.dumps(BODY), concurrency, seconds, other, {})
                    results.setdefault(f"{name}@{concurrency}", []).append(r["rps"])
                    print(name, concurrency, r["rps"], flush=True)
    finally:
        for proc in procs:
            stop(proc)
    median = {k: statistics.median(v) for k, v in results.items()}
    ratios = {}
    for concurrency in (16, 64):
        off = median[f"off@{concurrency}"]
        for name in (*VARIANTS, "off_control"):
            if name != "off":
                ratios[f"{name}@{concurrency}"] = round(median[f"{name}@{concurrency}"] / off, 3)
    return {"rps_median": median, "ratio_to_off": ratios, "runs": results, "seconds": seconds, "rounds": rounds}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parts", default="core,http")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as raw:
        tmp = Path(raw)
        if "core" in args.parts:
            out["core"] = asyncio.run(core_part(tmp))
            print("core", out["core"], flush=True)
        if "http" in args.parts:
            out["http"] = http_part(tmp, args.seconds, args.rounds)
            print("http", json.dumps(out["http"]["ratio_to_off"]), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "observability.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
