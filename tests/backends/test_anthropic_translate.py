import json

import pytest

from openmaas.backends.anthropic_translate import (
    FORMAT_TOOL,
    StreamTranslator,
    from_messages_response,
    json_format,
    to_messages_request,
)
from openmaas.errors import InvalidRequest

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


def test_system_messages_become_the_system_field_and_roles_alternate() -> None:
    body = to_messages_request(
        {
            "model": "claude",
            "max_tokens": 50,
            "temperature": 0.2,
            "stop": "END",
            "user": "u1",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "a"},
                {"role": "user", "content": [{"type": "text", "text": "b"}]},
            ],
        }
    )
    assert body["system"] == "be brief"
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    ]
    assert body["max_tokens"] == 50 and body["temperature"] == 0.2
    assert body["stop_sequences"] == ["END"]
    assert body["metadata"] == {"user_id": "u1"}


def test_max_tokens_defaults_when_the_client_sends_none() -> None:
    body = to_messages_request({"model": "c", "messages": [{"role": "user", "content": "x"}]}, 1234)
    assert body["max_tokens"] == 1234


def test_tool_calls_and_results_translate_to_tool_use_and_tool_result_blocks() -> None:
    body = to_messages_request(
        {
            "model": "c",
            "tools": TOOLS,
            "tool_choice": "required",
            "parallel_tool_calls": False,
            "messages": [
                {"role": "user", "content": "weather?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "toolu_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
            ],
        }
    )
    assert body["tools"][0]["input_schema"]["properties"]["city"] == {"type": "string"}
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert body["messages"][1]["content"] == [
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
    ]
    assert body["messages"][2] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}],
    }


@pytest.mark.parametrize(
    "choice, expected",
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ({"type": "function", "function": {"name": "get_weather"}}, {"type": "tool", "name": "get_weather"}),
    ],
)
def test_tool_choice_maps_to_anthropic_forms(choice: object, expected: dict) -> None:
    body = to_messages_request(
        {"model": "c", "tools": TOOLS, "tool_choice": choice, "messages": [{"role": "user", "content": "x"}]}
    )
    assert body["tool_choice"] == expected


def test_images_become_base64_sources() -> None:
    body = to_messages_request(
        {
            "model": "c",
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,QUJD"}}]}
            ],
        }
    )
    assert body["messages"][0]["content"][0]["source"] == {"type": "base64", "media_type": "image/png", "data": "QUJD"}


def test_unsupported_parts_are_a_client_error() -> None:
    with pytest.raises(InvalidRequest):
        to_messages_request(
            {"model": "c", "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]}
        )


def test_a_response_with_text_and_tool_use_translates_back() -> None:
    out = from_messages_response(
        {
            "id": "msg_1",
            "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_9", "name": "get_weather", "input": {"city": "Rome"}},
            ],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 10, "output_tokens": 7, "cache_read_input_tokens": 5},
        },
        "claude-x",
    )
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Let me check."
    assert json.loads(choice["message"]["tool_calls"][0]["function"]["arguments"]) == {"city": "Rome"}
    assert out["usage"] == {"prompt_tokens": 15, "completion_tokens": 7, "total_tokens": 22}
    assert out["model"] == "claude-x"


def test_stream_events_translate_to_chunks_with_tool_call_deltas_and_usage() -> None:
    t = StreamTranslator("claude-x")
    events = [
        {"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 9, "output_tokens": 1}}},
        {"type": "ping"},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "content_block_stop", "index": 0},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}},
        },
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"a":'}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "1}"}},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 6}},
        {"type": "message_stop"},
    ]
    chunks = [c for e in events for c in t.feed(e)]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert "".join(d.get("content") or "" for d in deltas) == "Hi"
    args = "".join(d["tool_calls"][0]["function"]["arguments"] for d in deltas if "tool_calls" in d)
    assert json.loads(args) == {"a": 1}
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"] == {"prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15}
    assert all(c["id"] == "chatcmpl-msg_1" for c in chunks[1:])


def test_json_mode_keeps_only_the_format_tools_input_as_content() -> None:
    assert json_format({"response_format": {"type": "text"}}) is None
    schema = {"properties": {"n": {"type": "integer"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    assert json_format({"response_format": fmt}) == {"type": "object", **schema}
    resp = {
        "id": "msg_1",
        "content": [
            {"type": "text", "text": "Here you go:"},  # anything but the forced tool's input would break the JSON
            {"type": "tool_use", "id": "toolu_1", "name": FORMAT_TOOL, "input": {"n": 3}},
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 5, "output_tokens": 4},
    }
    out = from_messages_response(resp, "claude", json_mode=True)
    assert out["choices"][0]["message"] == {"role": "assistant", "content": '{"n": 3}'}
    assert out["choices"][0]["finish_reason"] == "stop"
    plain = from_messages_response(resp, "claude")
    assert plain["choices"][0]["finish_reason"] == "tool_calls" and plain["choices"][0]["message"]["tool_calls"]
