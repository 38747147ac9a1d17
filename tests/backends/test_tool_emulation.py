import json

from openmaas.backends import tool_emulation as te

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    },
    {"type": "function", "function": {"name": "get_time"}},
]


def _req(**kw: object) -> dict:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": TOOLS, **kw}


def test_required_admits_only_calls_of_offered_tools() -> None:
    schema = te.response_schema(_req(tool_choice="required", parallel_tool_calls=True))
    items = schema["properties"]["tool_calls"]["items"]["anyOf"]
    assert [i["properties"]["name"]["const"] for i in items] == ["get_weather", "get_time"]
    assert items[1]["properties"]["arguments"] == {"type": "object"}
    assert schema["properties"]["tool_calls"]["minItems"] == 1
    assert schema["properties"]["tool_calls"]["maxItems"] == te.MAX_PARALLEL_CALLS


def test_a_named_choice_admits_exactly_one_call_of_that_function() -> None:
    schema = te.response_schema(_req(tool_choice={"type": "function", "function": {"name": "get_time"}}))
    calls = schema["properties"]["tool_calls"]
    assert calls["maxItems"] == 1
    assert [i["properties"]["name"]["const"] for i in calls["items"]["anyOf"]] == ["get_time"]


def test_auto_admits_calls_or_a_plain_answer() -> None:
    schema = te.response_schema(_req(tool_choice="auto"))
    assert len(schema["anyOf"]) == 2
    assert schema["anyOf"][1]["required"] == ["content"]
    assert schema["anyOf"][1]["properties"]["content"]["minLength"] == 1, "an answer is never empty"


def test_one_call_per_turn_unless_parallel_calls_are_asked_for() -> None:
    for parallel in (False, None):
        schema = te.response_schema(_req(tool_choice="required", parallel_tool_calls=parallel))
        assert schema["properties"]["tool_calls"]["maxItems"] == 1


def test_the_constrained_request_describes_tools_and_flattens_history() -> None:
    body = te.to_constrained(
        _req(
            tool_choice="auto",
            messages=[
                {"role": "system", "content": "You are helpful."},
                {"role": "user", "content": "weather in Rome?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
            ],
        )
    )
    assert "tools" not in body and "tool_choice" not in body
    assert body["messages"][0]["role"] == "system"
    assert body["messages"][0]["content"].startswith("You are helpful.")
    assert "get_weather" in body["messages"][0]["content"]
    assert json.loads(body["messages"][2]["content"]) == {
        "tool_calls": [{"name": "get_weather", "arguments": {"city": "Rome"}}]
    }
    assert body["messages"][3] == {"role": "user", "content": "Result of get_weather: sunny"}
    assert body["response_format"]["type"] == "json_schema"


def test_engine_json_becomes_openai_tool_calls() -> None:
    message, finish = te.from_constrained(
        '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]}', "stop"
    )
    assert finish == "tool_calls"
    assert message["content"] is None
    call = message["tool_calls"][0]
    assert call["id"].startswith("call_") and call["type"] == "function"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}


def test_a_plain_answer_and_a_truncated_answer_stay_text() -> None:
    assert te.from_constrained('{"content": "It is sunny."}', "stop") == (
        {"role": "assistant", "content": "It is sunny."},
        "stop",
    )
    message, finish = te.from_constrained('{"tool_calls": [{"name": "get_w', "length")
    assert finish == "length" and message["content"].startswith("{")


def test_a_response_replays_as_openai_chunks() -> None:
    response = {
        "id": "x",
        "created": 1,
        "model": "m",
        "usage": {"prompt_tokens": 1},
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
                },
            }
        ],
    }
    chunks = te.as_chunks(response)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[1]["choices"][0]["delta"]["tool_calls"][0]["index"] == 0
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1] == {
        "id": "x",
        "created": 1,
        "model": "m",
        "object": "chat.completion.chunk",
        "choices": [],
        "usage": {"prompt_tokens": 1},
    }
