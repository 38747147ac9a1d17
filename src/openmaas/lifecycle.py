"""The request lifecycle's observation seam.

Every request the gateway serves passes the same stages — authenticate → admit → classify privacy →
ground → route → execute → settle — and observers watch it without taking part: ``started`` (the
gateway took the request, before it is validated), ``routed`` (the route decision and, once known, the
deployment that served), ``first_token`` (a stream's first chunk arrived), ``finished`` (exactly once,
with the outcome that was settled: status, error code, tokens and where they came from). Metrics,
traces and structured logs attach here, not in routes or features. Observers run inline on the event
loop: they must be quick, must not block, and what they raise is logged and swallowed (an observer
never fails a request).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from openmaas.gateway import Call
    from openmaas.metering.meter import Outcome
    from openmaas.routing.decision import RouteDecision

log = logging.getLogger("openmaas.lifecycle")


@dataclass(frozen=True)
class ToolCallEvent:
    """One tool call as observers see it (``mcp.hub.McpHub.call``): no arguments, no result."""

    request_id: str
    name: str  # server__tool
    server: str
    locality: str
    surface: str  # mcp, agent:responses, agent:chat
    status: int
    error_code: str | None
    started: float  # epoch seconds
    seconds: float
    call_id: str | None = None


@dataclass(frozen=True)
class AgentRunEvent:
    """One server-side agent run as observers see it (``agents.loop``), when it ends."""

    request_id: str
    surface: str  # responses, chat
    model: str
    end: str  # completed, tool_use, approval, max_steps, …
    steps: int
    tool_calls: int
    cost_nanos: int
    started: float  # epoch seconds
    seconds: float


@dataclass(frozen=True)
class RetrievalEvent:
    """One knowledge-base search (``rag.service``): which base, how, how many results — never the query."""

    request_id: str
    knowledge_base: str
    mode: str
    top_k: int
    results: int
    started: float  # epoch seconds
    seconds: float


class Observer:
    """Override what you need; every stage defaults to nothing."""

    def started(self, call: Call, endpoint: str) -> None:
        return None

    def routed(self, call: Call, decision: RouteDecision, deployment: str | None) -> None:
        return None

    def first_token(self, call: Call) -> None:
        return None

    def finished(self, call: Call, outcome: Outcome) -> None:
        return None

    def tool_called(self, event: ToolCallEvent) -> None:
        """A tool call ended (refused, failed or answered); not a stage of a model request."""
        return None

    def agent_ran(self, event: AgentRunEvent) -> None:
        """An agent run ended (its steps and tool calls were observed on their own)."""
        return None

    def retrieved(self, event: RetrievalEvent) -> None:
        """A knowledge base was searched (RAG grounding, /search, file_search)."""
        return None


class Observers(Observer):
    """Several observers as one, each isolated from the others' failures. Each stage calls only the
    observers that override it (bound once, here): a stage nobody watches costs one call."""

    def __init__(self, observers: Sequence[Observer] = ()) -> None:
        self.observers = tuple(observers)
        self.stages: dict[str, tuple[Callable[..., None], ...]] = {
            stage: tuple(
                getattr(o, stage) for o in self.observers if getattr(type(o), stage) is not getattr(Observer, stage)
            )
            for stage in ("started", "routed", "first_token", "finished", "tool_called", "agent_ran", "retrieved")
        }

    def _each(self, stage: str, *args: object) -> None:
        for method in self.stages[stage]:
            try:
                method(*args)
            except Exception:
                log.exception("observer %s failed in %s", type(method.__self__).__name__, stage)  # type: ignore[attr-defined]

    def started(self, call: Call, endpoint: str) -> None:
        if self.stages["started"]:
            self._each("started", call, endpoint)

    def routed(self, call: Call, decision: RouteDecision, deployment: str | None) -> None:
        if self.stages["routed"]:
            self._each("routed", call, decision, deployment)

    def first_token(self, call: Call) -> None:
        if self.stages["first_token"]:
            self._each("first_token", call)

    def finished(self, call: Call, outcome: Outcome) -> None:
        if self.stages["finished"]:
            self._each("finished", call, outcome)

    def tool_called(self, event: ToolCallEvent) -> None:
        if self.stages["tool_called"]:
            self._each("tool_called", event)

    def agent_ran(self, event: AgentRunEvent) -> None:
        if self.stages["agent_ran"]:
            self._each("agent_ran", event)

    def retrieved(self, event: RetrievalEvent) -> None:
        if self.stages["retrieved"]:
            self._each("retrieved", event)


class RouteLog(Observer):
    """The ``openmaas.routing`` log line of every routed request (request id and the route header)."""

    def __init__(self) -> None:
        self.log = logging.getLogger("openmaas.routing")

    def routed(self, call: Call, decision: RouteDecision, deployment: str | None) -> None:
        self.log.info("route %s %s", call.request_id, call.headers.get("x-openmaas-route", ""))
