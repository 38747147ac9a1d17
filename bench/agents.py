"""The MCP gateway and the agent loop against their baselines, in one run.

- ``mcp``: ``tools/call`` latency of the real ``mcp-server-time`` through the gateway's ``/mcp`` (the gateway
  an ``openmaas serve`` process on its own core; the official SDK client here) versus the same SDK client on
  the server directly over stdio. 300 calls each after 30 warm-up calls, one at a time; added = p50 via the
  gateway − p50 direct.
- ``loop``: the agent loop in this process (``AgentLoop.run``), a scripted zero-latency model (the fake
  backend) and the real time server: 200 runs of 2 steps (one tool call). Overhead per step = (run wall time
  − the time inside the MCP server call, as the client sees it) / steps: everything the gateway does per
  step — the model call's whole lifecycle (admission, privacy, routing, ledger) and the loop itself.
- ``reliability``: 1,000 runs with 10 % injected tool failures (a flaky in-process tool provider) and 10 %
  model-call failures (every 10th call to the model's deployment fails with 503; a healthy fallback
  deployment serves those), a model that retries a failed tool call. Counted: runs that end with an answer
  built on a successful tool result; runs whose ledger rows disagree with the calls actually made (tool rows
  ≠ calls the provider received under that request id, or model rows ≠ the run's steps).

Usage: python bench/agents.py [--parts mcp,loop,reliability]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, cores, free_port, python, start, stop, wait_http
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from openmaas.agents.events import ModelEvent
from openmaas.agents.spec import AgentSpec, HostedMcp, Limits
from openmaas.auth.principal import ANONYMOUS, Principal
from openmaas.core.types import Message, Request, Text, TextDelta
from openmaas.mcp.config import McpServer
from openmaas.mcp.upstream import ToolOutput
from openmaas.server import create_app
from openmaas.settings import Settings
from openmaas.store import audit

TIME = shutil.which("mcp-server-time") or str(Path(sys.executable).parent / "mcp-server-time")
TIME_ARGS = ["--local-timezone", "UTC"]
ARGS = {"timezone": "Asia/Tokyo"}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


async def timed_calls(session: ClientSession, name: str, n: int, warm: int = 30) -> list[float]:
    for _ in range(warm):
        await session.call_tool(name, ARGS)
    out = []
    for _ in range(n):
        t = time.perf_counter()
        result = await session.call_tool(name, ARGS)
        out.append((time.perf_counter() - t) * 1000)
        assert not result.is_error
    return out


async def mcp_part(tmp: Path) -> dict[str, Any]:
    gw_core, other = cores()
    config = tmp / "mcp.yaml"
    server = {"name": "time", "command": TIME, "args": TIME_ARGS}
    config.write_text(json.dumps({"server": {"log_level": "warning"}, "mcp": {"servers": [server]}}))
    port = free_port()
    data = tmp / "data-mcp"
    data.mkdir()
    cmd = [python(), "-m", "openmaas", "serve", "--config", str(config), "--port", str(port)]
    proc = start(cmd, gw_core, tmp / "gateway.log", {"OPENMAAS_DATA_DIR": str(data)})
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", 180)
        async with (
            create_mcp_http_client() as http,
            streamable_http_client(f"http://127.0.0.1:{port}/mcp", http_client=http) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            via = await timed_calls(session, "time__get_current_time", 300)
            listing = []  # tools/list: the SDK server's per-request cost over HTTP, no tool server involved
            for _ in range(300):
                t = time.perf_counter()
                await session.list_tools()
                listing.append((time.perf_counter() - t) * 1000)
            floor = []  # one plain HTTP round trip to the same process (GET /healthz), the same client
            for _ in range(300):
                t = time.perf_counter()
                await http.get(f"http://127.0.0.1:{port}/healthz")
                floor.append((time.perf_counter() - t) * 1000)
    finally:
        stop(proc)
    params = StdioServerParameters(command="taskset", args=["-c", gw_core, TIME, *TIME_ARGS])
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        direct = await timed_calls(session, "get_current_time", 300)
    _ = other
    return {
        "via_gateway_ms": {"p50": pct(via, 0.5), "p90": pct(via, 0.9)},
        "direct_ms": {"p50": pct(direct, 0.5), "p90": pct(direct, 0.9)},
        "added_p50_ms": round(pct(via, 0.5) - pct(direct, 0.5), 3),
        "http_round_trip_p50_ms": pct(floor, 0.5),
        "tools_list_via_gateway_p50_ms": pct(listing, 0.5),
    }


class Timed:
    """A tool provider wrapper that measures the time spent inside the wrapped provider's calls."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name, self.spec = inner, inner.name, inner.spec
        self.spent = 0.0

    @property
    def tools(self) -> Any:
        return self.inner.tools

    @property
    def ready(self) -> Any:
        return self.inner.ready

    def start(self) -> None:
        self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    def status(self) -> dict[str, Any]:
        return dict(self.inner.status())

    async def call(self, tool: str, arguments: dict[str, Any], timeout: float | None = None) -> ToolOutput:
        t = time.perf_counter()
        try:
            return await self.inner.call(tool, arguments, timeout)  # type: ignore[no-any-return]
        finally:
            self.spent += time.perf_counter() - t


def request(text: str) -> Request:
    return Request(model="agent", messages=[Message("user", [Text(text)])])


async def drain(
    app: Any, spec: AgentSpec, limits: Limits, request_id: str, principal: Principal = ANONYMOUS
) -> tuple[Any, str]:
    """Run to the end: (the RunEnded event, the text the model wrote)."""
    end, text = None, []
    async for event in app.state.agents.run(request("go"), principal, request_id, "chat", spec, limits):
        if isinstance(event, ModelEvent) and isinstance(event.event, TextDelta):
            text.append(event.event.text)
        end = event
    return end, "".join(text)


def base_settings(
    tmp: Path, deployments: list[dict[str, Any]], servers: list[dict[str, Any]], **extra: Any
) -> Settings:
    data = {"data_dir": str(tmp), "deployments": deployments, "aliases": {}, "mcp": {"servers": servers}}
    data["server"] = {"log_level": "warning"}
    data.update(extra)
    return Settings.model_validate(data)


async def loop_part(tmp: Path) -> dict[str, Any]:
    steps = [{"tool_calls": [{"name": "time__get_current_time", "arguments": ARGS}]}, {"text": "It is {results}"}]
    model = {"name": "agent", "backend": "fake", "locality": "local", "params": {"script": {"steps": steps}}}
    settings = base_settings(tmp / "loop", [model], [{"name": "time", "command": TIME, "args": TIME_ARGS}])
    app = create_app(settings)
    spec = AgentSpec(mcp=[HostedMcp("time")])
    limits = Limits(8, 16, 60.0, None)
    per_step: list[float] = []
    async with app.router.lifespan_context(app):
        hub = app.state.mcp
        timed = Timed(hub.providers["time"])
        hub.providers["time"] = timed
        for i in range(230):
            timed.spent = 0.0
            t = time.perf_counter()
            end, _ = await drain(app, spec, limits, f"req_loop_{i}")
            wall = time.perf_counter() - t
            assert end.reason == "completed" and end.steps == 2 and end.tool_calls == 1
            if i >= 30:
                per_step.append((wall - timed.spent) * 1000 / end.steps)
    return {
        "runs": len(per_step),
        "steps_per_run": 2,
        "overhead_per_step_ms": {
            "p50": pct(per_step, 0.5),
            "p90": pct(per_step, 0.9),
            "mean": round(statistics.mean(per_step), 3),
        },
    }


class FlakyTool:
    """An in-process tool provider that fails one call in ten (seeded), and remembers every call it received."""

    name = "flaky"

    def __init__(self, seed: int) -> None:
        import mcp_types as types

        self.spec = McpServer(name="flaky", command="(in process)", locality="local")
        self.tools = [types.Tool(name="fetch", description="Fetch a value.", input_schema={"type": "object"})]
        self.rng = random.Random(seed)
        self.received: Counter[str] = Counter()

    def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def status(self) -> dict[str, Any]:
        return {"name": self.name, "state": "ready", "error": None}

    async def call(self, tool: str, arguments: dict[str, Any], timeout: float | None = None) -> ToolOutput:
        raise NotImplementedError

    async def call_as(
        self, principal: Principal, request_id: str, tool: str, arguments: dict[str, Any], timeout: float | None
    ) -> ToolOutput:
        self.received[request_id] += 1
        if self.rng.random() < 0.10:
            return ToolOutput("injected failure", is_error=True)
        return ToolOutput(f"ok-{request_id}")


async def reliability_part(tmp: Path, runs: int) -> dict[str, Any]:
    steps = [{"tool_calls": [{"name": "flaky__fetch", "arguments": {}}]}, {"text": "answer: {results}"}]
    script = {"steps": steps, "retry_on_error": True}
    flaky = {
        "name": "agent",
        "backend": "fake",
        "locality": "local",
        "fallbacks": ["steady"],
        "params": {"script": script, "fail_every": 10, "fail_status": 503},
    }
    steady = {"name": "steady", "backend": "fake", "locality": "local", "params": {"script": script}}
    retry = {"retry": {"attempts": 1}, "breaker": {"consecutive_failures": 1000, "min_requests": 100000}}
    settings = base_settings(tmp / "rel", [flaky, steady], [], routing=retry)
    app = create_app(settings)
    tool = FlakyTool(seed=7)
    app.state.mcp.add(tool)
    spec = AgentSpec(mcp=[HostedMcp("flaky")])
    limits = Limits(8, 16, 60.0, None)
    correct = disagree = 0
    debug = False
    ends: Counter[str] = Counter()
    async with app.router.lifespan_context(app):
        results = []
        for i in range(runs):
            rid = f"req_rel_{i}"
            end, text = await drain(app, spec, limits, rid)
            results.append((rid, end, text))
        await app.state.services.ledger.sync()
        for rid, end, text in results:
            ends[end.reason] += 1
            rows = await audit.trail(app.state.services.db, rid)
            tool_rows = [r for r in rows if r["endpoint"] == "tool"]
            model_rows = [r for r in rows if r["endpoint"] != "tool"]
            if len(tool_rows) != tool.received[rid] or len(model_rows) != end.steps or end.tool_calls != len(tool_rows):
                disagree += 1
            if end.reason == "completed" and text.startswith("answer: ") and f"ok-{rid}" in text:
                correct += 1  # an answer built on a successful tool result of this very run
            elif len(ends) < 100 and debug:
                print("NOT CORRECT", rid, end.reason, end.steps, end.tool_calls, repr(text[:200]), tool.received[rid])
    return {
        "runs": runs,
        "completed_correctly": correct,
        "share": round(correct / runs, 5),
        "ledger_disagreements": disagree,
        "end_reasons": dict(ends),
        "injected": {"tool_failure_rate": 0.10, "model_failure": "every 10th call to the primary, 503"},
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parts", default="mcp,loop,reliability")
    parser.add_argument("--runs", type=int, default=1000)
    args = parser.parse_args()
    parts = args.parts.split(",")
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as raw:
        tmp = Path(raw)
        if "mcp" in parts:
            out["mcp"] = await mcp_part(tmp)
            print("mcp", out["mcp"], flush=True)
        if "loop" in parts:
            out["loop"] = await loop_part(tmp)
            print("loop", out["loop"], flush=True)
        if "reliability" in parts:
            out["reliability"] = await reliability_part(tmp, args.runs)
            print("reliability", out["reliability"], flush=True)
    RESULTS.mkdir(exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        previous = json.loads((RESULTS / "agents.json").read_text())
        out = {**previous, **out}
    (RESULTS / "agents.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
