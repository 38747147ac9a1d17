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
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, cores, free_port, hey, python, start, stop, wait_http, warm_up

from openmaas.gateway import Call
from openmaas.lifecycle import Observer
from openmaas.observability.config import MetricsSettings, TracingSettings
from openmaas.observability.logs import AccessLog
from openmaas.observability.metrics import Metrics
from openmaas.observability.tracing import Tracing
from openmaas.server import create_app
from openmaas.settings import Settings

QUIET = {"access_log": False, "log_level": "warning"}
VARIANTS: dict[str, dict[str, Any]] = {
    "off": {"metrics": {"enabled": False}, "server": QUIET},
    "metrics": {"metrics": {"enabled": True}, "server": QUIET},
    "metrics+access_log": {"metrics": {"enabled": True}, "server": {"access_log": True, "log_level": "info"}},
    "tracing_100": {"metrics": {"enabled": False}, "server": QUIET, "tracing": {"enabled": True, "sample_ratio": 1.0}},
    "tracing_1": {"metrics": {"enabled": False}, "server": QUIET, "tracing": {"enabled": True, "sample_ratio": 0.01}},
    "off_control": {"metrics": {"enabled": False}, "server": QUIET},  # the method's own bias and noise
}


def with_sink(variant: dict[str, Any], sink: int) -> dict[str, Any]:
    if "tracing" not in variant:
        return variant
    return {**variant, "tracing": {**variant["tracing"], "endpoint": f"http://127.0.0.1:{sink}/v1/traces"}}


BODY = {"model": "bench", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 16}


def config(base: dict[str, Any], deployment: dict[str, Any], tmp: Path) -> dict[str, Any]:
    return {
        "data_dir": str(tmp),
        "deployments": [deployment],
        "aliases": {},
        "privacy": {"topics": False},
        "mcp": {"endpoint": False},
        **base,
    }


class Spy(Observer):
    """Keeps the last request's lifecycle arguments, to replay them to an observer under test."""

    def routed(self, call: Call, decision: Any, deployment: str | None) -> None:
        self.decision, self.deployment = decision, deployment

    def finished(self, call: Call, outcome: Any) -> None:
        self.outcome = outcome


async def core_part(tmp: Path, sink: int) -> dict[str, Any]:
    """The request path's own cost, and each telemetry observer's cost per request replayed on the same objects
    (CPU time of this process, export threads included: spans are flushed inside the timed window)."""
    access = logging.getLogger("openmaas.access")
    access.addHandler(logging.NullHandler())
    access.propagate = False  # formatting counts; printing to a terminal would not
    access.setLevel(logging.INFO)
    deployment = {"name": "bench", "backend": "fake", "locality": "local", "params": {"reply": "hello there"}}
    spy = Spy()
    app = create_app(Settings.model_validate(config(VARIANTS["off"], deployment, tmp / "core")), observers=[spy])
    out: dict[str, Any] = {}
    async with app.router.lifespan_context(app):
        gateway = app.state.gateway
        best = float("inf")
        for _ in range(5):
            t = time.process_time()
            for _ in range(2000):
                await gateway.chat(dict(BODY), Call())
            best = min(best, (time.process_time() - t) / 2000 * 1e6)
        out["request_path_cpu_us"] = round(best, 2)
        router, registry = app.state.gateway.router, app.state.gateway.registry
        tracing = TracingSettings(enabled=True, endpoint=f"http://127.0.0.1:{sink}/v1/traces", flush_ms=200)
        observers = {
            "metrics": lambda: Metrics(MetricsSettings(), router, None),
            "access_log": lambda: AccessLog(registry),
            "tracing_100": lambda: Tracing(tracing, registry),
            "tracing_1": lambda: Tracing(tracing.model_copy(update={"sample_ratio": 0.01}), registry),
        }
        costs = {}
        for name, make in observers.items():
            observer = make()
            best = float("inf")
            for _ in range(5):
                t = time.process_time()
                for _ in range(5000):
                    call = Call()
                    observer.started(call, "chat")
                    observer.routed(call, spy.decision, spy.deployment)
                    observer.first_token(call)
                    observer.finished(call, spy.outcome)
                if isinstance(observer, Tracing):
                    observer.provider.force_flush()
                best = min(best, (time.process_time() - t) / 5000 * 1e6)
            if isinstance(observer, Tracing):
                observer.close()
            costs[name] = round(best, 2)
        out["observer_cpu_us"] = costs
        out["share_of_request_path"] = {k: round(v / out["request_path_cpu_us"], 4) for k, v in costs.items()}
    return out


def http_part(tmp: Path, seconds: int, rounds: int, sink: int) -> dict[str, Any]:
    gw_core, other = cores()
    up = free_port()
    procs = [start([python(), "bench/upstream.py", str(up)], other, tmp / "upstream.log")]
    deployment = {"name": "bench", "backend": "openai_compat", "params": {"base_url": f"http://127.0.0.1:{up}/v1"}}
    ports: dict[str, int] = {}
    pids: dict[str, int] = {}
    results: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    try:
        for name, variant in VARIANTS.items():
            path = tmp / f"{name}.json"
            data = config(with_sink(variant, sink), deployment, tmp / f"data-{name}")
            data.pop("data_dir")
            path.write_text(json.dumps(data))
            ports[name] = free_port()
            (tmp / f"data-{name}").mkdir()
            cmd = [python(), "-m", "openmaas", "serve", "--config", str(path), "--port", str(ports[name])]
            procs.append(start(cmd, gw_core, tmp / f"{name}.log", {"OPENMAAS_DATA_DIR": str(tmp / f"data-{name}")}))
            pids[name] = procs[-1].pid
        for port in ports.values():
            wait_http(f"http://127.0.0.1:{port}/readyz")
            warm_up(f"http://127.0.0.1:{port}/v1/chat/completions", json.dumps(BODY), {}, 50)
        for concurrency in (16, 64):
            for n in range(rounds):
                order = list(ports) if n % 2 == 0 else list(reversed(ports))
                for name in order:
                    url = f"http://127.0.0.1:{ports[name]}/v1/chat/completions"
                    before = cpu_seconds(pids[name])
                    r = hey(url, json.dumps(BODY), concurrency, seconds, other, {})
                    cpu_us = (cpu_seconds(pids[name]) - before) / max(1.0, r["rps"] * seconds) * 1e6
                    results.setdefault(f"{name}@{concurrency}", []).append(r["rps"])
                    cpu.setdefault(f"{name}@{concurrency}", []).append(cpu_us)
                    print(name, concurrency, r["rps"], round(cpu_us, 1), flush=True)
    finally:
        for proc in procs:
            stop(proc)
    median = {k: statistics.median(v) for k, v in results.items()}
    ratios = {}
    for concurrency in (16, 64):
        off = median[f"off@{concurrency}"]
        for name in VARIANTS:
            if name != "off":
                ratios[f"{name}@{concurrency}"] = round(median[f"{name}@{concurrency}"] / off, 3)
    cpu_median = {k: round(statistics.median(v), 1) for k, v in cpu.items()}
    return {
        "rps_median": median,
        "ratio_to_off": ratios,
        "gateway_cpu_us_per_request": cpu_median,
        "runs": results,
        "seconds": seconds,
        "rounds": rounds,
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (``/proc/PID/stat``; its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parts", default="core,http")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as raw:
        tmp = Path(raw)
        sink = free_port()
        receiver = start([python(), "bench/otlp_sink.py", str(sink)], cores()[1], tmp / "sink.log")
        try:
            wait_http(f"http://127.0.0.1:{sink}/", 30)
            if "core" in args.parts:
                out["core"] = asyncio.run(core_part(tmp, sink))
                print("core", out["core"], flush=True)
            if "http" in args.parts:
                out["http"] = http_part(tmp, args.seconds, args.rounds, sink)
                print("http", json.dumps(out["http"]["ratio_to_off"]), flush=True)
        finally:
            stop(receiver)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "observability.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**previous, **out}, indent=2) + "\n")


if __name__ == "__main__":
    main()
