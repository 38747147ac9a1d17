"""The local engine pool against real ``llama-server`` processes: thread plans, n-gram speculation,
prefix placement across two engines, hot slots that survive a restart, a corrupt slot file."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from openmaas.backends.llamacpp import LlamaCppBackend
from openmaas.backends.llamacpp_engine import LlamaCppEngine
from openmaas.core.view import cached_tokens
from openmaas.engine.tune import Load
from openmaas.settings import Deployment
from openmaas.testing.samples import ORDERS

pytestmark = [pytest.mark.real, pytest.mark.anyio]

SYSTEM = " ".join(
    f"Rule {i}: the assistant of the harbour office answers briefly and names the pier, berth {i} and tide table."
    for i in range(40)
)  # ~800 tokens: a long shared system prompt
PARAGRAPH = (
    "The gateway authenticates the key, checks the budget, classifies the privacy of the prompt, "
    "chooses a deployment, calls the backend and records the usage in the ledger exactly once. "
)
CODE = """def total(items):
    result = 0
    for item in items:
        result = result + item.price * item.count
    return result
"""

STOCK = """class Inventory:
    def __init__(self):
        self.items = {}

    def add(self, name, quantity):
        if quantity <= 0:
            raise ValueError("quantity must be positive")
        self.items[name] = self.items.get(name, 0) + quantity

    def remove(self, name, quantity):
        current = self.items.get(name, 0)
        if quantity > current:
            raise ValueError("not enough " + name)
        self.items[name] = current - quantity

    def count(self, name):
        return self.items.get(name, 0)
"""
# edits whose answers copy long runs of the file: drafts of dozens of tokens verified in one batch (without
# batch-invariant kernels 3 of 6 such edits decoded differently with speculation: docs/benchmarks.md §i)
EDITS = [
    ("In this code, rename the variable `orders` to `records` everywhere. Return the complete updated code.", ORDERS),
    ("Change the default country handling so totals start at 0. Return the complete code.", ORDERS),
    ("Rename the class Inventory to Stock. Return the complete code.", STOCK),
    ("Change the error message 'quantity must be positive' to 'must be above zero'. Return the complete code.", STOCK),
]


def deployment(name: str, **params: Any) -> Deployment:
    return Deployment(name=name, backend="llamacpp", locality="local", context_length=4096, params=params)


@pytest.fixture
async def pool(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[LlamaCppBackend]:
    params = {"parallel": 2, **request.param}
    backend = LlamaCppBackend(deployment("pool", **params), data_dir=tmp_path)
    await backend.start()
    try:
        yield backend
    finally:
        await backend.close()


def ask(content: str, system: str | None = None, max_tokens: int = 48) -> dict[str, Any]:
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": content}]
    return {"model": "pool", "messages": messages, "max_tokens": max_tokens, "temperature": 0}


def pgrep(pattern: str) -> list[str]:
    return subprocess.run(["pgrep", "-f", "--", pattern], capture_output=True, text=True).stdout.split()


def engine_threads(engine: LlamaCppEngine) -> list[int]:
    return [int(n) for n in re.findall(r"n_threads = (\d+)", engine.process.log_path.read_text())]


@pytest.mark.parametrize("pool", [{"threads": 1, "threads_batch": 2, "threads_contended": None}], indirect=True)
async def test_the_thread_plan_reaches_the_engine(pool: LlamaCppBackend) -> None:
    [engine] = pool.engines
    args = engine.process.args
    assert args[args.index("--threads") + 1] == "1" and args[args.index("--threads-batch") + 1] == "2"
    assert engine_threads(engine)[-1] == 1  # what the engine itself reports at start
    assert not pool.thread_plan.adaptive


@pytest.mark.parametrize("pool", [{"threads": 2, "threads_contended": 1}], indirect=True)
async def test_a_contended_host_switches_an_idle_engine_to_fewer_threads_and_back(pool: LlamaCppBackend) -> None:
    [engine] = pool.engines
    watch = pool.load
    watch.interval, watch.rise, watch.fall = 0.3, 2, 3
    assert engine_threads(engine)[-1] == 2
    with Load(1):
        for _ in range(100):
            if engine.contended:
                break
            await asyncio.sleep(0.1)
    assert engine.contended and engine.process.ready
    assert engine_threads(engine)[-1] == 1
    result = await pool.chat(ask("Say hello."))
    assert result["choices"][0]["message"]["content"]
    for _ in range(100):
        if not engine.contended:
            break
        await asyncio.sleep(0.1)
    assert not engine.contended and engine_threads(engine)[-1] == 2


@pytest.mark.parametrize("pool", [{"threads": 2, "threads_contended": 1}], indirect=True)
async def test_a_switch_while_the_engine_is_down_leaves_the_restart_to_the_supervisor(pool: LlamaCppBackend) -> None:
    [engine] = pool.engines
    port, old = engine.process.port, engine.process.pid
    assert old is not None
    os.kill(old, signal.SIGKILL)
    await asyncio.sleep(0.3)  # reaped: the supervisor is restarting it
    await engine.switch(True)  # the load watch firing now must not start a second process
    assert await engine.process.wait_ready(60)
    await asyncio.sleep(1.0)
    alive = pgrep(f"--port {port}")
    assert len(alive) == 1 and int(alive[0]) != old and not engine.contended
    result = await pool.chat(ask("Say hello."))
    assert result["choices"][0]["message"]["content"]


@pytest.mark.parametrize("pool", [{"speculative": "auto"}], indirect=True)
async def test_speculation_gives_the_same_output_at_temperature_zero_and_takes_copy_heavy_requests(
    pool: LlamaCppBackend,
) -> None:
    plain, fast = pool.engines
    assert not plain.speculative and fast.speculative
    assert "--spec-type" in fast.process.args and "--spec-type" not in plain.process.args
    prompts = [
        ask("Repeat the following text exactly:\n\n" + PARAGRAPH * 2, max_tokens=80),
        ask("Rename the variable result to acc in this code and return the code:\n```python\n" + CODE + "```"),
        ask("Write a short poem about the sea."),
    ]
    drafted = 0
    for body in prompts:
        a = await plain.chat(dict(body))
        b = await fast.chat(dict(body))
        assert a["choices"][0]["message"]["content"] == b["choices"][0]["message"]["content"]
        drafted += int((b.get("timings") or {}).get("draft_n") or 0)
    assert drafted > 0, "the speculative engine drafted"
    assert pool.gain.samples == 3 and fast.gain is pool.gain and plain.gain is None  # its answers feed `auto`
    assert pool.place(prompts[0]).backend is fast and pool.place(prompts[1]).backend is fast
    assert pool.place(prompts[2]).backend is plain


@pytest.mark.parametrize("pool", [{"speculative": "auto", "prompt_cache": {"save_slots": False}}], indirect=True)
async def test_long_drafts_verified_in_batches_decode_the_same_tokens_as_one_at_a_time(pool: LlamaCppBackend) -> None:
    plain, fast = pool.engines
    assert pool.batch_invariant and "--no-repack" in plain.process.args and "--no-repack" in fast.process.args
    accepted = 0
    for instruction, code in EDITS:
        body = ask(f"{instruction}\n\n```python\n{code}```", max_tokens=300)
        a = await plain.chat(dict(body))
        b = await fast.chat(dict(body))
        assert a["choices"][0]["message"]["content"] == b["choices"][0]["message"]["content"], instruction
        accepted += int((b.get("timings") or {}).get("draft_n_accepted") or 0)
    assert accepted >= 50, "long drafts were verified in batches"


INVARIANT = {"batch_invariant": True, "parallel": 4, "threads": 2, "prompt_cache": {"save_slots": False}}


@pytest.mark.parametrize("pool", [INVARIANT], indirect=True)
async def test_batch_invariant_answers_do_not_depend_on_the_requests_decoded_beside_them(pool: LlamaCppBackend) -> None:
    """Alone, a request over ~800 cached tokens decodes one row at a time; beside three others its rows share
    every product and the attention with theirs (continuous batching). Same tokens either way."""
    [engine] = pool.engines
    assert engine.process.env.get("GGML_CPU_BATCH_INVARIANT") == "1"
    body = {**ask("Tell a long story about the harbour and its piers.", system=SYSTEM, max_tokens=96)}
    alone = await engine.chat({**body, "cache_prompt": False})
    others = [
        ask(f"Write a poem about berth {n} at night.", system=SYSTEM if n % 2 else None, max_tokens=96)
        for n in range(3)
    ]
    together = await asyncio.gather(
        engine.chat({**body, "cache_prompt": False}), *(engine.chat({**o, "cache_prompt": False}) for o in others)
    )
    assert alone["usage"]["completion_tokens"] >= 48
    assert together[0]["choices"][0]["message"]["content"] == alone["choices"][0]["message"]["content"]


@pytest.mark.parametrize("pool", [{"engines": 2, "prompt_cache": {"save_slots": False}}], indirect=True)
async def test_a_follow_up_turn_goes_to_the_engine_that_holds_its_prefix(pool: LlamaCppBackend) -> None:
    first = ask("Where is berth 7?", system=SYSTEM)
    placed = pool.place(first)
    assert isinstance(placed.backend, LlamaCppEngine)
    reply = await placed.backend.chat(first)
    second = dict(first)
    second["messages"] = [
        *first["messages"],
        reply["choices"][0]["message"],
        {"role": "user", "content": "And berth 9?"},
    ]
    again = pool.place(second)
    assert again.backend is placed.backend and again.label is not None and "prefix" in again.label
    result = await again.backend.chat(second)
    assert cached_tokens(result["usage"]) > 500
    other = next(e for e in pool.engines if e is not placed.backend)
    cold = await other.chat(dict(second))  # the engine that does not hold it computes it all
    assert cached_tokens(cold["usage"]) < 50


@pytest.mark.parametrize("pool", [{"prompt_cache": {"save_min_tokens": 64}}], indirect=True)
async def test_hot_slots_survive_an_engine_restart_and_a_corrupt_file_is_skipped(
    pool: LlamaCppBackend, caplog: pytest.LogCaptureFixture
) -> None:
    [engine] = pool.engines
    body = ask("Which pier is closest to the ferry?", system=SYSTEM, max_tokens=8)
    await engine.chat(dict(body))
    assert await engine.save_slots() >= 1
    assert engine.store is not None
    files = sorted(engine.store.folder.glob("*.bin"))
    assert files and all(f.stat().st_size > 1_000_000 for f in files)

    await engine.process.relaunch(engine.process.args)  # a restart: the new process starts empty...
    result = await engine.chat(dict(body))
    assert cached_tokens(result["usage"]) > 500  # ... and its first request hits the restored slot

    for f in files:  # torn files (the engine itself aborts on these)
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 3])
    await engine.process.relaunch(engine.process.args)
    assert engine.process.ready
    result = await engine.chat(dict(body))
    assert cached_tokens(result["usage"]) < 50 and result["choices"][0]["message"]["content"] is not None
    assert "is missing or corrupt; skipped" in caplog.text
