"""What an agent run reports as it goes, dialect-neutral: a dialect renders these (Responses: MCP output items
and their SSE events; chat completions: text deltas and an ``openmaas.agent`` trace)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from openmaas.core.types import Event, Usage


@dataclass
class ToolsListed:
    server_label: str
    tools: list[dict[str, Any]]  # name, description, input_schema
    error: str | None = None


@dataclass
class ToolCallStarted:
    item_id: str
    call_id: str  # the model's tool call id
    server_label: str
    name: str  # the tool's own name on its server
    arguments: str
    step: int


@dataclass
class ToolCallEnded:
    item_id: str
    output: str | None
    error: str | None
    ms: float
    status: int | None = None  # set when the gateway refused or could not complete the call (403, 429, 503, 504…)


@dataclass
class ApprovalRequested:
    item_id: str
    server_label: str
    name: str
    arguments: str


@dataclass
class ModelEvent:
    """An event of one step's model output; ``index`` is unique across the run's steps."""

    step: int
    event: Event


@dataclass
class StepEnded:
    step: int
    deployment: str | None
    usage: Usage
    tool_calls: int


EndReason = Literal[
    "completed", "tool_use", "approval", "max_steps", "max_tool_calls", "max_seconds", "max_cost", "max_tokens"
]


@dataclass
class RunEnded:
    reason: EndReason
    usage: Usage
    steps: int
    tool_calls: int
    cost_nanos: int
    trace: list[dict[str, Any]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.reason in ("completed", "tool_use", "approval")


AgentEvent = ToolsListed | ToolCallStarted | ToolCallEnded | ApprovalRequested | ModelEvent | StepEnded | RunEnded
