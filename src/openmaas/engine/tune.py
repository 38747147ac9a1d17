"""``openmaas engine tune``: measure decode speed per thread setting, idle and beside a competing load.

For each candidate setting, a private ``llama-server`` runs single-stream greedy decodes (the first is a
warm-up) with the host idle, then with ``load`` busy processes beside it (pure-Python spinners: the
synthetic stand-in for the gateway's own work, an embedding run or a user's other programs). The choice:
the fastest decode thread count on the idle host for a calm one, and the fastest beside the load for a
contended one (``engine.threads``: the pool switches between the two as the host's load changes).
Results and the choice go to ``<data_dir>/engine-tune.json``, which local deployments without explicit
``threads`` then use.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp

from openmaas.engine.supervisor import LlamaServerProcess
from openmaas.engine.threads import ThreadPlan, cores, tune_path

PROMPT = "Write a long, detailed story about a lighthouse keeper who finds a message in a bottle."


def _spin() -> None:  # a competing load: one core's worth of pure-Python work
    x = 0
    while True:
        x = (x * 31 + 7) % 1_000_003


@dataclass
class Measured:
    plan: ThreadPlan
    idle: float  # decode tokens/s, median of the runs
    loaded: float


def candidates(host_cores: int) -> list[ThreadPlan]:
    """Decode thread counts from every core down to half of them (at least one), prompt on every core."""
    counts = sorted({host_cores, max(1, host_cores - 1), max(1, host_cores // 2)}, reverse=True)
    return [ThreadPlan(n, host_cores, None, None, "tune") for n in counts]


async def decode_rate(base_url: str, runs: int, tokens: int, timeout: float = 20.0) -> float:
    rates = []
    async with aiohttp.ClientSession() as session:
        for i in range(runs + 1):
            body = {
                "messages": [{"role": "user", "content": f"{PROMPT} ({i})"}],
                "max_tokens": tokens,
                "temperature": 0,
                "ignore_eos": True,
            }
            started = time.perf_counter()
            try:
                async with session.post(
                    base_url + "/v1/chat/completions", json=body, timeout=aiohttp.ClientTimeout(total=timeout)
                ) as resp:
                    data = await resp.json(content_type=None)
                rate = float(data["timings"]["predicted_per_second"])
            except TimeoutError:  # collapsed: at most this fast (the engine is restarted per setting)
                rate = tokens / (time.perf_counter() - started)
                if i:
                    rates.append(rate)
                break
            if i:  # the first run warms the engine up
                rates.append(rate)
    return statistics.median(rates)


class Load:
    """``n`` busy processes while the block runs."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.procs: list[multiprocessing.process.BaseProcess] = []

    def __enter__(self) -> Load:
        for _ in range(self.n):
            proc = multiprocessing.get_context("spawn").Process(target=_spin, daemon=True)
            proc.start()
            self.procs.append(proc)
        time.sleep(0.3)
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            proc.terminate()
            proc.join()


async def measure(
    binary: Path,
    model: Path,
    plan: ThreadPlan,
    log_dir: Path,
    *,
    load: int = 1,
    runs: int = 3,
    tokens: int = 96,
    extra: tuple[str, ...] = (),
) -> Measured:
    args = ["-m", str(model), "--parallel", "1", "--no-webui", *plan.args(), *extra]
    process = LlamaServerProcess("tune", binary, args, log_dir / "engine-tune.log", env=plan.env())
    await process.start()
    try:
        idle = await decode_rate(process.base_url, runs, tokens)
        with Load(load):
            loaded = await decode_rate(process.base_url, runs, tokens)
    finally:
        await process.stop()
    return Measured(plan, round(idle, 1), round(loaded, 1))


def choose(results: list[Measured]) -> ThreadPlan:
    """The fastest setting on a calm host, and the fastest under load for a contended one."""
    calm = max(results, key=lambda r: (r.idle, r.loaded))
    contended = max(results, key=lambda r: (r.loaded, r.idle))
    threads = calm.plan.threads
    return ThreadPlan(threads, calm.plan.threads_batch, None, contended.plan.threads, "tuned")


async def tune(binary: Path, model: Path, data_dir: Path, *, load: int = 1, runs: int = 3) -> dict[str, Any]:
    host = cores()
    results = [await measure(binary, model, plan, data_dir / "logs", load=load, runs=runs) for plan in candidates(host)]
    report = {
        "cores": host,
        "load": load,
        "measured": [{"threads": r.plan.threads, "idle": r.idle, "loaded": r.loaded} for r in results],
        "plan": asdict(choose(results)),
        "measured_at": time.time(),
    }
    path = tune_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    return report


def run(binary: Path, model: Path, data_dir: Path, load: int = 1, runs: int = 3) -> dict[str, Any]:
    return asyncio.run(tune(binary, model, data_dir, load=load, runs=runs))
