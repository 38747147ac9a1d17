"""One agent step's model output as events and parts, and the event plumbing the loop and the dialects share."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace

from openmaas.agents.events import AgentEvent, ToolsListed
from openmaas.core.types import (
    Event,
    Finish,
    Part,
    PartEnd,
    PartStart,
    Reasoning,
    ReasoningDelta,
    Result,
    Text,
    TextDelta,
    ToolArgsDelta,
    ToolCall,
    ToolCallStart,
    Usage,
)


@dataclass
class Step:
    """One step's model output, collected from its events."""

    parts: dict[int, Part] = field(default_factory=dict)
    order: list[int] = field(default_factory=list)
    stop_reason: str = "end_turn"
    usage: Usage = field(default_factory=Usage)

    def feed(self, event: Event) -> None:
        if isinstance(event, PartStart):
            self._open(event.index, Text("") if event.kind == "text" else Reasoning(""))
        elif isinstance(event, ToolCallStart):
            self._open(event.index, ToolCall(event.id, event.name, ""))
        elif isinstance(event, TextDelta):
            part = self.parts[event.index]
            assert isinstance(part, Text)
            part.text += event.text
        elif isinstance(event, ReasoningDelta):
            part = self.parts[event.index]
            assert isinstance(part, Reasoning)
            part.text += event.text
        elif isinstance(event, ToolArgsDelta):
            part = self.parts[event.index]
            assert isinstance(part, ToolCall)
            part.arguments += event.arguments
        elif isinstance(event, Finish):
            self.stop_reason, self.usage = event.stop_reason, event.usage

    def _open(self, index: int, part: Part) -> None:
        self.parts[index] = part
        self.order.append(index)

    @property
    def output(self) -> list[Part]:
        return [self.parts[i] for i in self.order]


def result_events(result: Result) -> list[Event]:
    """A unary result as the events a stream of it would have carried."""
    events: list[Event] = []
    for index, part in enumerate(result.parts):
        if isinstance(part, Text):
            events += [PartStart(index, "text"), TextDelta(index, part.text), PartEnd(index)]
        elif isinstance(part, Reasoning):
            events += [PartStart(index, "reasoning"), ReasoningDelta(index, part.text), PartEnd(index)]
        elif isinstance(part, ToolCall):
            events += [ToolCallStart(index, part.id, part.name), ToolArgsDelta(index, part.arguments), PartEnd(index)]
    events.append(Finish(result.stop_reason, result.usage))
    return events


def shifted(event: Event, offset: int) -> Event:
    if offset and not isinstance(event, Finish):
        shifted: Event = replace(event, index=event.index + offset)
        return shifted
    return event


async def from_list(events: list[Event]) -> AsyncIterator[Event]:
    for event in events:
        yield event


async def prime(events: AsyncIterator[AgentEvent]) -> AsyncIterator[AgentEvent]:
    """Run ``events`` up to the first model output (or the end), so failures before it — a bad model, a
    refused request — raise here, before a stream's HTTP status is sent; then replay and go on."""
    buffered: list[AgentEvent] = []
    async for event in events:
        buffered.append(event)
        if not isinstance(event, ToolsListed):
            break

    async def replay() -> AsyncIterator[AgentEvent]:
        for event in buffered:
            yield event
        async for event in events:
            yield event

    return replay()
