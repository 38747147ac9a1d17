"""Anthropic Messages wire types (pydantic only): what ``/v1/messages`` validates and documents.

Blocks are open objects keyed by ``type``; ``load`` checks each kind's fields and names the bad one.
Unknown top-level fields are accepted (new client versions add them); see docs/dialects.md for what
is forwarded where.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Block(_Open):
    type: str = Field(min_length=1)


class InputMessage(_Open):
    role: Literal["user", "assistant", "system"]  # Claude Code sends mid-conversation system messages
    content: str | list[Block]


class ToolDefinition(_Open):
    name: str = Field(min_length=1, max_length=128)
    description: str | None = None
    input_schema: dict[str, Any] | None = None
    type: str | None = None  # server tools (web_search_…) carry a type and no schema


class ToolChoice(_Open):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class Metadata(_Open):
    user_id: str | None = None


class MessagesRequest(_Open):
    model: str = Field(min_length=1)
    max_tokens: int = Field(ge=1)
    messages: list[InputMessage]
    system: str | list[Block] | None = None
    stop_sequences: list[str] | None = None
    stream: bool | None = False
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    tools: list[ToolDefinition] | None = None
    tool_choice: ToolChoice | None = None
    metadata: Metadata | None = None
    thinking: dict[str, Any] | None = None
    context_management: dict[str, Any] | None = None


class CountTokensRequest(_Open):
    model: str = Field(min_length=1)
    messages: list[InputMessage]
    system: str | list[Block] | None = None
    tools: list[ToolDefinition] | None = None
    tool_choice: ToolChoice | None = None
    thinking: dict[str, Any] | None = None


class Usage(BaseModel):
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int | None = 0
    cache_read_input_tokens: int | None = 0


class MessageResponse(BaseModel):
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    model: str
    content: list[dict[str, Any]]
    stop_reason: str | None
    stop_sequence: str | None = None
    usage: Usage


class CountTokensResponse(BaseModel):
    input_tokens: int


class ErrorDetail(BaseModel):
    type: str
    message: str


class ErrorResponse(BaseModel):
    type: Literal["error"] = "error"
    error: ErrorDetail
    request_id: str | None = None
