"""The server-side agent loop: model → tool calls → tools → results → model, until an answer or a limit.

Every model step is a request through the gateway's lifecycle (``Executor.run``: admitted, privacy-classified
and routed — a step whose conversation now holds a sensitive tool result is routed like any sensitive
request — metered, observed) under the run's request id; every tool call goes through ``McpHub.call``
(permissions, privacy of its arguments, admission, its own ledger row). The loop itself keeps no state
beyond the run: a turn that ends waiting for approvals or client-executed function calls is continued by
the dialect (Responses: ``previous_response_id``).

Limits: ``max_steps`` model calls, ``max_tool_calls``, ``max_seconds`` (checked before each step, and it
bounds each tool call's timeout), ``max_cost_usd`` (the run's model and tool cost so far, checked before
each step and each batch of tool calls; each step and call is also admitted against the key's budget).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import orjson

from openmaas.agents.events import (
    AgentEvent,
    ApprovalRequested,
    EndReason,
    ModelEvent,
    RunEnded,
    StepEnded,
    ToolCallEnded,
    ToolCallStarted,
    ToolsListed,
)
from openmaas.agents.spec import AgentSpec, HostedMcp, Limits, Pending
from openmaas.agents.steps import Step, from_list, result_events, shifted
from openmaas.auth.principal import Principal
from openmaas.core.execute import EventStream, Executor
from openmaas.core.types import (
    Finish,
    Message,
    Part,
    Request,
    Text,
    ToolCall,
    ToolCallStart,
    ToolChoice,
    ToolResult,
    ToolSpec,
    Usage,
)
from openmaas.errors import InvalidRequest, OpenMaaSError
from openmaas.gateway import Call
from openmaas.ids import IdGenerator
from openmaas.lifecycle import AgentRunEvent, Observer
from openmaas.mcp.config import SEPARATOR
from openmaas.mcp.hub import McpHub, ToolEntry
from openmaas.metering.pricing import cost_nanos


class AgentLoop:
    def __init__(self, executor: Executor, hub: McpHub, parallel_tools: int, observer: Observer | None = None) -> None:
        self.executor, self.hub, self.parallel_tools, self.observer = executor, hub, parallel_tools, observer
        self.new_call_id = IdGenerator("mcp")
        self.new_approval_id = IdGenerator("mcpr")

    def toolset(
        self, principal: Principal, spec: AgentSpec
    ) -> tuple[dict[str, tuple[ToolEntry, HostedMcp]], list[ToolsListed]]:
        """The hosted tools of this run (public name → entry and the request's spec for its server)."""
        tools: dict[str, tuple[ToolEntry, HostedMcp]] = {}
        listed: list[ToolsListed] = []
        for hosted in spec.mcp:
            if hosted.server_label not in self.hub.providers:
                raise InvalidRequest(
                    f"No MCP server '{hosted.server_label}' is configured in this gateway", param="tools"
                )
            entries = [e for e in self.hub.catalog(principal, [hosted.server_label]) if hosted.allows(e.tool)]
            for entry in entries:
                tools[entry.name] = (entry, hosted)
            state = self.hub.providers[hosted.server_label].status()
            error = None if state["state"] == "ready" else f"server is {state['state']}: {state['error'] or ''}"
            shown = [{"name": e.tool, "description": e.description, "input_schema": e.input_schema} for e in entries]
            listed.append(ToolsListed(hosted.server_label, shown, error))
        return tools, listed

    async def run(
        self,
        request: Request,
        principal: Principal,
        request_id: str,
        surface: str,
        spec: AgentSpec,
        limits: Limits,
    ) -> AsyncIterator[AgentEvent]:
        started = time.monotonic()
        pending: list[Pending] = spec.pending
        tools, listed = self.toolset(principal, spec)
        for listing in listed:
            yield listing
        request = replace(request, messages=list(request.messages))
        request.tools = [*request.tools, *(ToolSpec(n, e.description, e.input_schema) for n, (e, _) in tools.items())]
        usage, cost, steps, calls, offset = Usage(), 0, 0, 0, 0
        seen: set[tuple[str, str]] = set()  # (tool, arguments) of every hosted call that succeeded in this run
        repeated = False
        trace: list[dict[str, Any]] = []

        wall = time.time()

        def end(reason: EndReason) -> RunEnded:
            if self.observer is not None:
                seconds = time.monotonic() - started
                self.observer.agent_ran(
                    AgentRunEvent(request_id, surface, request.model, reason, steps, calls, cost, wall, seconds)
                )
            return RunEnded(reason, usage, steps, calls, cost, trace)

        if pending:  # answers to the previous turn's approval requests
            approved = [p for p in pending if p.approve]
            if calls + len(approved) > limits.max_tool_calls:
                yield end("max_tool_calls")
                return
            assistant = Message("assistant", [ToolCall(p.item_id, _public(p), p.arguments) for p in pending])
            results: list[Part] = []
            for p in pending:
                if not p.approve:
                    results.append(
                        ToolResult(p.item_id, [Text(f"The user declined this call. {p.reason or ''}".strip())], True)
                    )
            async for tool_event in self._execute(
                principal,
                request_id,
                surface,
                0,
                [(p.item_id, _public(p), p.arguments, p.item_id) for p in approved],
                started,
                limits,
                results,
                trace,
            ):
                yield tool_event
            calls += len(approved)
            cost += sum(t["cost_nanos"] for t in trace)
            request.messages += [assistant, Message("tool", results)]
        while True:
            if steps >= limits.max_steps:
                yield end("max_steps")
                return
            if time.monotonic() - started >= limits.max_seconds:
                yield end("max_seconds")
                return
            if limits.max_cost_nanos is not None and cost >= limits.max_cost_nanos:
                yield end("max_cost")
                return
            steps += 1
            call = Call(request_id, principal, surface=surface)
            step = Step()
            # The last step allowed, and the step after one that only repeated earlier calls, are offered no
            # tools: the run ends with an answer rather than a cut-off or looping tool call.
            answer_only = steps == limits.max_steps or repeated
            asked = replace(request, tool_choice=ToolChoice("none")) if answer_only and request.tools else request
            out = await self.executor.run(asked, call)
            events = out.events if isinstance(out, EventStream) else from_list(result_events(out))
            hidden: set[int] = set()  # hosted tool calls: shown as the tool call items, not as function calls
            async for model_event in events:
                step.feed(model_event)
                if isinstance(model_event, ToolCallStart) and model_event.name in tools:
                    hidden.add(model_event.index)
                if isinstance(model_event, Finish) or getattr(model_event, "index", None) in hidden:
                    continue
                yield ModelEvent(steps, shifted(model_event, offset))
            offset += max(step.order, default=-1) + 1
            usage = Usage(
                usage.input_tokens + step.usage.input_tokens,
                usage.output_tokens + step.usage.output_tokens,
                usage.cached_input_tokens + step.usage.cached_input_tokens,
            )
            step_cost = 0
            if call.deployment is not None and call.deployment in self.executor.gateway.registry.deployments:
                deployment = self.executor.gateway.registry.deployments[call.deployment]
                step_cost = cost_nanos(deployment, step.usage.input_tokens, step.usage.output_tokens)
            cost += step_cost
            tool_calls = [p for p in step.output if isinstance(p, ToolCall)]
            yield StepEnded(steps, call.deployment, step.usage, len(tool_calls))
            trace.append(
                {
                    "step": steps,
                    "kind": "model",
                    "deployment": call.deployment,
                    "cost_nanos": step_cost,
                    "input_tokens": step.usage.input_tokens,
                    "output_tokens": step.usage.output_tokens,
                }
            )
            request.messages.append(Message("assistant", step.output))
            if not tool_calls:
                yield end("max_tokens" if step.stop_reason == "max_tokens" else "completed")
                return
            hosted = [c for c in tool_calls if c.name in tools]
            signatures = {(c.name, c.arguments.strip()) for c in hosted}
            repeated = bool(signatures) and signatures <= seen  # retrying a call that failed is not a repeat
            needs = [c for c in hosted if tools[c.name][1].needs_approval(tools[c.name][0].tool)]
            runnable = [c for c in hosted if c not in needs]
            if calls + len(runnable) > limits.max_tool_calls:
                yield end("max_tool_calls")
                return
            if limits.max_cost_nanos is not None and cost >= limits.max_cost_nanos:
                yield end("max_cost")
                return
            results = []
            before = len(trace)
            async for tool_event in self._execute(
                principal,
                request_id,
                surface,
                steps,
                [(c.id, c.name, c.arguments, None) for c in runnable],
                started,
                limits,
                results,
                trace,
            ):
                yield tool_event
            calls += len(runnable)
            cost += sum(t["cost_nanos"] for t in trace[before:])
            succeeded = {t["call_id"] for t in trace[before:] if t.get("error") is None}
            seen |= {(c.name, c.arguments.strip()) for c in runnable if c.id in succeeded}
            for c in needs:
                entry = tools[c.name][0]
                yield ApprovalRequested(self.new_approval_id(), entry.server, entry.tool, c.arguments)
            if results:
                request.messages.append(Message("tool", results))
            if needs:
                yield end("approval")
                return
            if len(hosted) < len(tool_calls):  # function tools: the client runs them and continues the turn
                yield end("tool_use")
                return

    async def _execute(
        self,
        principal: Principal,
        request_id: str,
        surface: str,
        step: int,
        batch: list[tuple[str, str, str, str | None]],  # (call id, public name, arguments, item id)
        started: float,
        limits: Limits,
        results: list[Part],
        trace: list[dict[str, Any]],
    ) -> AsyncIterator[AgentEvent]:
        """Run one step's tool calls, at most ``parallel_tools`` at a time; results in the model's order."""
        if not batch:
            return
        gate = asyncio.Semaphore(self.parallel_tools)
        queue: asyncio.Queue[AgentEvent] = asyncio.Queue()
        outputs: dict[str, ToolResult] = {}

        async def one(call_id: str, name: str, arguments: str, item_id: str | None) -> None:
            server, _, tool = name.partition(SEPARATOR)
            item = item_id or self.new_call_id()
            await queue.put(ToolCallStarted(item, call_id, server, tool, arguments, step))
            t0 = time.perf_counter()
            output, error, nanos, status = None, None, 0, None
            async with gate:
                try:
                    parsed = orjson.loads(arguments or "{}")
                    if not isinstance(parsed, dict):
                        raise ValueError("arguments must be a JSON object")
                except ValueError as exc:
                    error, status = f"the arguments are not a JSON object: {exc}", 400
                else:
                    remaining = max(0.1, limits.max_seconds - (time.monotonic() - started))
                    try:
                        result = await self.hub.call(
                            principal,
                            request_id,
                            name,
                            parsed,
                            surface=f"agent:{surface}",
                            step=step,
                            call_id=call_id,
                            timeout=remaining,
                            classify_result=True,
                        )
                        output = result.text
                        if result.is_error:
                            error, output = result.text, None
                        entry = self.hub.entries().get(name)
                        nanos = entry.price_nanos if entry is not None else 0
                    except OpenMaaSError as exc:  # refused, timed out, unreachable: the model is told, the run goes on
                        error, status = exc.message, exc.status
            ms = round((time.perf_counter() - t0) * 1000, 3)
            text = output if error is None or output is not None else f"Error: {error}"
            outputs[call_id] = ToolResult(call_id, [Text(text or "")], error is not None)
            trace.append(
                {
                    "step": step,
                    "kind": "tool",
                    "tool": name,
                    "call_id": call_id,
                    "ms": ms,
                    "cost_nanos": nanos,
                    "error": error,
                }
            )
            await queue.put(ToolCallEnded(item, output, error, ms, status))

        tasks = [asyncio.ensure_future(one(*args)) for args in batch]
        done = asyncio.ensure_future(asyncio.gather(*tasks))
        try:
            while not (done.done() and queue.empty()):
                getter = asyncio.ensure_future(queue.get())
                waits: set[asyncio.Future[Any]] = {getter, done}
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    yield getter.result()
                else:
                    getter.cancel()
            done.result()
        finally:
            for task in tasks:
                task.cancel()
        results.extend(outputs[call_id] for call_id, *_ in batch)


def _public(p: Pending) -> str:
    return f"{p.server_label}{SEPARATOR}{p.name}"
