"""The agent loop in chat completions, through the ``agent`` extension field:

```json
{"model": "default", "messages": [...],
 "agent": {"tools": [{"type": "mcp", "server_label": "time"}], "max_steps": 4, "max_tool_calls": 8}}
```

Chat completions has no approval round trip, so hosted tools here default to ``require_approval: "never"``
and a tool that asks for approval is refused. The reply is a ``chat.completion`` whose message holds the
final answer (function tools the client declared in ``tools`` come back as ``tool_calls``, as usual), with
the run in ``openmaas.agent`` (steps, each tool call, cost). Streamed, the text of every step arrives as
content deltas, and each tool call as a chunk carrying ``openmaas.agent_event`` (started / completed / failed).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from openmaas.agents.events import (
    AgentEvent,
    ApprovalRequested,
    ModelEvent,
    RunEnded,
    StepEnded,
    ToolCallEnded,
    ToolCallStarted,
)
from openmaas.agents.loop import AgentLoop
from openmaas.agents.spec import AgentSpec, hosted_mcp
from openmaas.agents.spec import limits as agent_limits
from openmaas.agents.steps import prime
from openmaas.backends.base import Payload
from openmaas.core.chat_load import from_chat
from openmaas.core.types import TextDelta, ToolArgsDelta, ToolCallStart
from openmaas.errors import InvalidRequest
from openmaas.gateway import Call, ChatExtension, Gateway
from openmaas.ids import IdGenerator
from openmaas.mcp.config import AgentSettings
from openmaas.metering.meter import Outcome, failure
from openmaas.protocol.chat import ChatCompletionRequest
from openmaas.streams import Stream

FINISH = {"completed": "stop", "tool_use": "tool_calls", "max_tokens": "length"}


def agent_spec(agent: Any) -> AgentSpec:
    if not isinstance(agent, dict):
        raise InvalidRequest("agent must be an object with 'tools'", param="agent")
    tools = agent.get("tools")
    if not isinstance(tools, list) or not tools:
        raise InvalidRequest("agent.tools must list at least one tool", param="agent.tools")
    spec = AgentSpec(asked=agent)
    for i, tool in enumerate(tools):
        at = f"agent.tools.{i}"
        if not isinstance(tool, dict) or tool.get("type") != "mcp":
            raise InvalidRequest(f"{at}: only tools of type 'mcp' are served here", param=at)
        approval = tool.get("require_approval", "never")
        if approval != "never":
            raise InvalidRequest(f"{at}: chat completions cannot ask for approval; use the Responses API", param=at)
        spec.mcp.append(hosted_mcp({**tool, "require_approval": "never"}, at))
    return spec


class AgentChat(ChatExtension):
    key = "agent"

    def __init__(self, loop: AgentLoop, settings: AgentSettings) -> None:
        self.loop, self.settings = loop, settings
        self.new_id = IdGenerator("chatcmpl")

    async def handle(
        self, gateway: Gateway, body: Payload, call: Call, request: ChatCompletionRequest
    ) -> Payload | Stream:
        spec = agent_spec(body.get("agent"))
        canonical = from_chat(body)
        limits = agent_limits(self.settings, spec.asked)
        events = self.loop.run(canonical, call.principal, call.request_id, "chat", spec, limits)
        model = str(body["model"])
        call.settled = True  # each step and tool call settles on its own; the run is told to observers as it ends
        try:
            if canonical.stream:
                primed = await prime(events)
                include = bool((body.get("stream_options") or {}).get("include_usage"))
                completion_id = self.new_id()
                first: Payload = {
                    "id": completion_id,
                    "object": "chat.completion.chunk",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
                }
                return Stream(first, self._chunks(primed, call, completion_id, model, include), model, include)
            return await self._unary(events, call, model)
        except BaseException as exc:
            _failed(call, exc)
            raise

    async def _unary(self, events: AsyncIterator[AgentEvent], call: Call, model: str) -> Payload:
        text: list[str] = []
        calls: dict[int, dict[str, Any]] = {}
        last_step_calls: list[int] = []
        trace: list[dict[str, Any]] = []
        async for event in events:
            if isinstance(event, ModelEvent):
                inner = event.event
                if isinstance(inner, TextDelta):
                    text.append(inner.text)
                elif isinstance(inner, ToolCallStart):
                    calls[inner.index] = {
                        "id": inner.id,
                        "type": "function",
                        "function": {"name": inner.name, "arguments": ""},
                    }
                    last_step_calls.append(inner.index)
                elif isinstance(inner, ToolArgsDelta):
                    calls[inner.index]["function"]["arguments"] += inner.arguments
            elif isinstance(event, StepEnded):
                trace_step = {
                    "step": event.step,
                    "deployment": event.deployment,
                    "input_tokens": event.usage.input_tokens,
                    "output_tokens": event.usage.output_tokens,
                }
                trace.append(trace_step)
            elif isinstance(event, ToolCallEnded | ToolCallStarted):
                trace.append(_tool_event(event))
            elif isinstance(event, RunEnded):
                call.finish(Outcome(source="agent"))
                hosted = {t.get("call_id") for t in trace if t.get("event") == "mcp_call.started"}
                client_calls = [calls[i] for i in last_step_calls if calls[i]["id"] not in hosted]
                message: Payload = {"role": "assistant", "content": "".join(text) if not client_calls else None}
                if client_calls and event.reason == "tool_use":
                    message["tool_calls"] = client_calls
                return {
                    "id": self.new_id(),
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [{"index": 0, "message": message, "finish_reason": FINISH.get(event.reason, "length")}],
                    "usage": _usage(event),
                    "openmaas": {"agent": _summary(event, trace)},
                }
            elif isinstance(event, ApprovalRequested):  # pragma: no cover - chat tools never need approval
                raise InvalidRequest("a tool asked for approval, which chat completions cannot give", param="agent")
        raise RuntimeError("the agent run ended without a result")

    async def _chunks(
        self, events: AsyncIterator[AgentEvent], call: Call, completion_id: str, model: str, include_usage: bool
    ) -> AsyncIterator[Payload]:
        def chunk(delta: Payload, finish: str | None = None, **extra: Any) -> Payload:
            return {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                **extra,
            }

        trace: list[dict[str, Any]] = []
        try:
            async for event in events:
                if isinstance(event, ModelEvent) and isinstance(event.event, TextDelta):
                    yield chunk({"content": event.event.text})
                elif isinstance(event, ToolCallStarted | ToolCallEnded):
                    record = _tool_event(event)
                    trace.append(record)
                    yield chunk({}, openmaas={"agent_event": record})
                elif isinstance(event, StepEnded):
                    trace.append({"step": event.step, "deployment": event.deployment})
                elif isinstance(event, RunEnded):
                    call.finish(Outcome(source="agent"))
                    yield chunk({}, FINISH.get(event.reason, "length"), openmaas={"agent": _summary(event, trace)})
                    if include_usage:
                        yield {
                            "id": completion_id,
                            "object": "chat.completion.chunk",
                            "model": model,
                            "choices": [],
                            "usage": _usage(event),
                        }
        except BaseException as exc:
            _failed(call, exc)
            raise


def _failed(call: Call, exc: BaseException) -> None:
    status, code, interrupted = failure(exc)
    call.finish(Outcome(source="agent", status=status, error_code=code, interrupted=interrupted))


def _tool_event(event: ToolCallStarted | ToolCallEnded) -> dict[str, Any]:
    if isinstance(event, ToolCallStarted):
        return {
            "event": "mcp_call.started",
            "id": event.item_id,
            "call_id": event.call_id,
            "step": event.step,
            "server_label": event.server_label,
            "name": event.name,
            "arguments": event.arguments,
        }
    kind = "mcp_call.failed" if event.error is not None else "mcp_call.completed"
    return {"event": kind, "id": event.item_id, "output": event.output, "error": event.error, "ms": event.ms}


def _usage(event: RunEnded) -> Payload:
    u = event.usage
    return {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
    }


def _summary(event: RunEnded, trace: list[dict[str, Any]]) -> Payload:
    return {
        "end": event.reason,
        "steps": event.steps,
        "tool_calls": event.tool_calls,
        "cost_usd": event.cost_nanos / 1e9,
        "trace": trace,
    }
