"""Property tests: what a dialect renders, it loads back without loss (for what both sides express),
and a streamed answer rebuilt from its events equals the unary answer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from openmaas.core.chat import RequestHead, StreamDecoder, from_result, request_head, to_payload
from openmaas.core.types import Event, Message, Part, Request, Result, Text, ToolCall, ToolResult, Usage
from openmaas.dialects.anthropic import render as anthropic_render
from openmaas.dialects.anthropic.load import load as anthropic_load
from openmaas.dialects.responses import render as responses_render
from openmaas.dialects.responses.load import to_messages
from openmaas.ids import IdGenerator
from openmaas.protocol.chat import ChatCompletionRequest

texts = st.text(min_size=1, max_size=40).filter(lambda t: t.strip() == t and t)
names = st.from_regex(r"[a-zA-Z][a-zA-Z0-9_]{0,20}", fullmatch=True)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
arguments = st.dictionaries(names, json_values, max_size=4).map(lambda d: orjson.dumps(d).decode())
calls = st.builds(ToolCall, st.from_regex(r"call_[a-z0-9]{4,12}", fullmatch=True), names, arguments)
# an answer: optional text, then tool calls (the order every dialect renders)
answers = (
    st.tuples(st.lists(texts, max_size=1), st.lists(calls, max_size=3, unique_by=lambda c: c.id))
    .map(lambda t: [*(Text(x) for x in t[0]), *t[1]])
    .filter(bool)
)


def same(parts: list[Part], back: list[Part]) -> None:
    assert len(parts) == len(back)
    for a, b in zip(parts, back, strict=True):
        assert type(a) is type(b)
        if isinstance(a, Text) and isinstance(b, Text):
            assert a.text == b.text
        elif isinstance(a, ToolCall) and isinstance(b, ToolCall):
            assert (a.id, a.name, json.loads(a.arguments)) == (b.id, b.name, json.loads(b.arguments))


@given(answers)
def test_an_anthropic_message_loads_back_as_the_same_assistant_turn(parts: list[Part]) -> None:
    result = Result("r", "m", parts, "end_turn", Usage(3, 4))
    content = anthropic_render.message(result, "req_1", "m")["content"]
    body = {
        "model": "m",
        "max_tokens": 8,
        "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": content}],
    }
    same(parts, anthropic_load(body).messages[1].parts)


@given(answers)
def test_responses_output_items_load_back_as_the_same_assistant_turn(parts: list[Part]) -> None:
    items = responses_render.output_items(parts, IdGenerator("t"))
    (message,) = to_messages(items, [])
    assert message.role == "assistant"
    same(parts, message.parts)


@given(answers, st.text(min_size=1, max_size=30))
def test_tool_results_reach_the_pipeline_right_after_their_calls(parts: list[Part], output: str) -> None:
    tool_calls = [p for p in parts if isinstance(p, ToolCall)]
    results = Message("user", [ToolResult(c.id, [Text(output)]) for c in tool_calls])
    request = Request("m", [Message("user", [Text("q")]), Message("assistant", parts), results])
    payload = to_payload(request)
    assistant = payload["messages"][1]
    assert [c["id"] for c in assistant.get("tool_calls") or []] == [c.id for c in tool_calls]
    tools = payload["messages"][2 : 2 + len(tool_calls)]
    assert [(m["role"], m["tool_call_id"], m["content"]) for m in tools] == [("tool", c.id, output) for c in tool_calls]


def chunks_of(parts: list[Part], piece: int) -> list[dict[str, Any]]:
    """OpenAI chunks an upstream could send for an answer, text and arguments cut every ``piece`` chars."""
    out: list[dict[str, Any]] = [{"choices": [{"index": 0, "delta": {"role": "assistant"}}]}]
    for part in parts:
        if isinstance(part, Text):
            for i in range(0, len(part.text), piece):
                out.append({"choices": [{"index": 0, "delta": {"content": part.text[i : i + piece]}}]})
    tool_calls = [p for p in parts if isinstance(p, ToolCall)]
    for n, call in enumerate(tool_calls):
        head = {"index": n, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}
        out.append({"choices": [{"index": 0, "delta": {"tool_calls": [head]}}]})
        for i in range(0, len(call.arguments), piece):
            delta = {"tool_calls": [{"index": n, "function": {"arguments": call.arguments[i : i + piece]}}]}
            out.append({"choices": [{"index": 0, "delta": delta}]})
    finish = "tool_calls" if tool_calls else "stop"
    out.append({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    out.append({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}})
    return out


def unary_of(parts: list[Part]) -> dict[str, Any]:
    text = "".join(p.text for p in parts if isinstance(p, Text))
    tool_calls = [
        {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
        for c in parts
        if isinstance(c, ToolCall)
    ]
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    finish = "tool_calls" if tool_calls else "stop"
    return {
        "id": "x",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4},
    }


async def _events(chunks: list[dict[str, Any]]) -> AsyncIterator[Event]:
    decoder = StreamDecoder()
    for chunk in chunks:
        for event in decoder.feed(chunk):
            yield event
    for event in decoder.close():
        yield event


async def _collect(stream: AsyncIterator[bytes]) -> list[dict[str, Any]]:
    return [json.loads(block.split(b"data: ", 1)[1]) async for block in stream]


@settings(max_examples=60)
@given(answers, st.integers(1, 7))
def test_a_streamed_messages_answer_rebuilt_equals_the_unary_one(parts: list[Part], piece: int) -> None:
    events = asyncio.run(_collect(anthropic_render.encode(_events(chunks_of(parts, piece)), "req_1", "m", 3)))
    blocks: dict[int, dict[str, Any]] = {}
    for e in events:
        if e["type"] == "content_block_start":
            blocks[e["index"]] = dict(e["content_block"])
        elif e["type"] == "content_block_delta":
            d, b = e["delta"], blocks[e["index"]]
            if d["type"] == "text_delta":
                b["text"] += d["text"]
            else:
                b["json"] = b.get("json", "") + d["partial_json"]
    rebuilt = [
        {k: v for k, v in b.items() if k != "json"}
        | ({"input": json.loads(b["json"] or "{}")} if b["type"] == "tool_use" else {})
        for _, b in sorted(blocks.items())
    ]
    unary = anthropic_render.message(from_result(unary_of(parts), "m"), "req_1", "m")
    assert rebuilt == unary["content"]
    assert events[-2]["delta"]["stop_reason"] == unary["stop_reason"]


@settings(max_examples=60)
@given(answers, st.integers(1, 7))
def test_a_streamed_response_completes_with_the_unary_output(parts: list[Part], piece: int) -> None:
    from openmaas.dialects.responses.wire import ResponsesRequest

    shell = responses_render.Shell("resp_1", "m", ResponsesRequest(model="m", input="q"))
    saved: list[dict[str, Any]] = []

    async def keep(response: dict[str, Any]) -> None:
        saved.append(response)

    encoder = responses_render.Encoder(shell, IdGenerator("s"), keep)
    events = asyncio.run(_collect(encoder.encode(_events(chunks_of(parts, piece)))))
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    streamed = events[-1]["response"]["output"]
    unary = responses_render.from_result(shell, from_result(unary_of(parts), "m"), IdGenerator("u"))["output"]

    def strip(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in i.items() if k != "id"} for i in items]

    assert strip(streamed) == strip(unary) and saved[-1]["output"] == streamed


@given(
    answers,
    st.booleans(),
    st.none() | st.integers(1, 100_000),
    st.booleans(),
    st.none() | st.floats(0, 1),
)
def test_the_head_of_a_core_built_payload_is_what_validation_would_give(
    parts: list[Part], stream: bool, max_tokens: int | None, ceiling: bool, temperature: float | None
) -> None:
    """The gateway skips validating what ``to_payload`` built: its ``request_head`` must equal the head of
    the validated request, whatever the canonical request held."""
    request = Request(
        model="m",
        messages=[Message("user", [Text("hi")]), Message("assistant", list(parts))],
        max_output_tokens=max_tokens,
        output_limit_is_ceiling=ceiling,
        temperature=temperature,
        stream=stream,
    )
    payload = to_payload(request)
    assert request_head(payload) == RequestHead.of(ChatCompletionRequest.model_validate(payload))
