"""Responses API wire types (pydantic only): what ``POST /v1/responses`` validates and documents.

Input items and tools are open objects keyed by ``type``; ``load`` checks each kind and names the bad
one. Unknown top-level fields are accepted (clients add them: ``client_metadata``, ``prompt_cache_key``…).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Item(_Open):
    type: str | None = None  # absent on the short message form {"role": …, "content": …}
    role: str | None = None


class ToolDefinition(_Open):
    type: str = Field(min_length=1)
    name: str | None = None
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class TextFormat(_Open):
    type: Literal["text", "json_object", "json_schema"] = "text"
    name: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class TextOptions(_Open):
    format: TextFormat | None = None


class ResponsesRequest(_Open):
    model: str = Field(min_length=1)
    input: str | list[Item] | None = None
    instructions: str | None = None
    tools: list[ToolDefinition] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: TextOptions | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    metadata: dict[str, str] | None = None
    store: bool | None = True
    previous_response_id: str | None = None
    include: list[str] | None = None
    prompt_cache_key: str | None = None
    reasoning: dict[str, Any] | None = None
    background: bool | None = False
    stream: bool | None = False
    user: str | None = None


class InputItemList(BaseModel):
    object: Literal["list"] = "list"
    data: list[dict[str, Any]]
    first_id: str | None
    last_id: str | None
    has_more: bool


class DeletedResponse(BaseModel):
    id: str
    object: Literal["response"] = "response"
    deleted: bool
