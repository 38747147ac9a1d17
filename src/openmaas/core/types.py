"""Canonical request, result, stream events and usage: dialect-neutral and typed.

A dialect adapter loads its wire body into a ``Request`` and renders a ``Result`` (unary) or a
sequence of ``Event``s (streamed) back into its own shape. What one dialect can express and another
cannot is kept in typed fields (``cache_control``, reasoning signatures, ``top_k``, ``is_error``), and
the original body rides along as ``native`` so a deployment that speaks the same dialect receives it
unchanged (no lossy double translation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]
StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use", "content_filter"]


@dataclass
class Text:
    text: str
    cache_control: dict[str, Any] | None = None


@dataclass
class Image:
    media_type: str | None = None
    data: str | None = None  # base64
    url: str | None = None


@dataclass
class Document:
    """A document block: text documents become prompt text; others (PDF bytes) are opaque."""

    media_type: str
    data: str | None = None
    text: str | None = None
    url: str | None = None
    title: str | None = None


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, whole


@dataclass
class ToolResult:
    call_id: str
    content: list[Text | Image | Document]
    is_error: bool = False


@dataclass
class Reasoning:
    text: str = ""
    signature: str | None = None  # Anthropic's thinking signature / Responses' encrypted content
    redacted: bool = False


Part = Text | Image | Document | ToolCall | ToolResult | Reasoning


@dataclass
class Message:
    role: Role
    parts: list[Part]

    def texts(self) -> list[str]:
        return [p.text for p in self.parts if isinstance(p, Text)]


@dataclass
class ToolSpec:
    name: str
    description: str | None
    parameters: dict[str, Any]


@dataclass
class ToolChoice:
    mode: Literal["auto", "required", "none", "named"] = "auto"
    name: str | None = None
    parallel: bool | None = None


@dataclass
class OutputFormat:
    kind: Literal["text", "json_object", "json_schema"] = "text"
    name: str | None = None
    schema: dict[str, Any] | None = None
    strict: bool | None = None


@dataclass
class Native:
    """The original wire body of a dialect, forwarded as is to a deployment that speaks it."""

    dialect: str
    body: dict[str, Any]


@dataclass
class Request:
    model: str
    messages: list[Message]
    instructions: list[Text] = field(default_factory=list)
    tools: list[ToolSpec] = field(default_factory=list)
    tool_choice: ToolChoice | None = None
    max_output_tokens: int | None = None
    # a ceiling (Anthropic's required max_tokens, which clients set to the model's maximum): lowered to
    # what the chosen deployment's context leaves, rather than refused
    output_limit_is_ceiling: bool = False
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: list[str] = field(default_factory=list)
    output: OutputFormat | None = None
    stream: bool = False
    user: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # our extensions, declared once: test-time compute, knowledge base grounding, routing hints
    ttc: Any = None
    knowledge_base: Any = None
    route: Any = None
    native: Native | None = None
    notes: list[str] = field(default_factory=list)  # what was accepted but not served, said to the client


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0


@dataclass
class Result:
    id: str
    model: str
    parts: list[Part]  # Text, ToolCall, Reasoning, in output order
    stop_reason: StopReason
    usage: Usage
    stop_sequence: str | None = None


# --- stream events (canonical), in the order a dialect renders them ---


@dataclass
class PartStart:
    """A text or reasoning part opens (tool calls open with ``ToolCallStart``)."""

    index: int
    kind: Literal["text", "reasoning"]


@dataclass
class TextDelta:
    index: int  # the output part this delta belongs to
    text: str


@dataclass
class ReasoningDelta:
    index: int
    text: str


@dataclass
class ToolCallStart:
    index: int
    id: str
    name: str


@dataclass
class ToolArgsDelta:
    index: int
    arguments: str


@dataclass
class PartEnd:
    index: int


@dataclass
class Finish:
    stop_reason: StopReason
    usage: Usage


Event = PartStart | TextDelta | ReasoningDelta | ToolCallStart | ToolArgsDelta | PartEnd | Finish
