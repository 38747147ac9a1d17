"""The embedded SmolLM2 model through the running server, driven by the openai SDK."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import httpx
import openai
import pytest

from tests.real.conftest import RunningServer

pytestmark = pytest.mark.real

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 24}},
            "required": ["city"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string", "maxLength": 24}},
            "required": ["zone"],
        },
    },
}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture
def client(real_server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=real_server.base_url + "/v1", api_key="any", max_retries=0)


def test_chat_answers_with_the_real_model(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model="smollm2-135m", messages=[{"role": "user", "content": "Say hello."}], max_tokens=20, temperature=0
    )
    assert r.choices[0].message.content
    assert r.model == "smollm2-135m"
    assert r.usage is not None and r.usage.prompt_tokens > 5 and 0 < r.usage.completion_tokens <= 20
    default = client.chat.completions.create(
        model="default", messages=[{"role": "user", "content": "Hi"}], max_tokens=5
    )
    assert default.model == "default" and default.choices[0].message.content


def test_streaming_delivers_tokens_then_usage(client: openai.OpenAI) -> None:
    # ignore_eos is a llama.cpp field: unknown fields pass through to the engine.
    stream = client.chat.completions.create(
        model="smollm2-135m",
        messages=[{"role": "user", "content": "Count to ten."}],
        max_tokens=24,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 10
    assert text.strip()
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 24


def test_json_schema_output_parses_and_fits_the_schema(client: openai.OpenAI) -> None:
    # A 135M model can loop inside an unbounded string: bound it, as users of small models do.
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 24},
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
        },
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    r = client.chat.completions.create(
        model="smollm2-135m",
        messages=[{"role": "user", "content": "Invent a person."}],
        max_tokens=80,
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema}},
    )
    data = json.loads(r.choices[0].message.content or "")
    assert set(data) == {"name", "age"} and isinstance(data["age"], int) and isinstance(data["name"], str)
    obj = client.chat.completions.create(
        model="smollm2-135m",
        max_tokens=200,
        response_format={"type": "json_object"},
        temperature=0,
        seed=1,
        # "Reply with a JSON object." let the model nest ever deeper past any limit: ask for something finite
        messages=[{"role": "user", "content": "Describe a cat as a JSON object with a name and an age."}],
    )
    assert obj.choices[0].finish_reason == "stop"  # the object closed on its own, not cut at max_tokens
    assert isinstance(json.loads(obj.choices[0].message.content or ""), dict)


def test_tool_choice_required_gives_a_valid_tool_call(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model="smollm2-135m", messages=ASK, tools=[WEATHER, TIME], tool_choice="required", max_tokens=120, temperature=0
    )
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls
    for call in choice.message.tool_calls:
        assert call.function.name in ("get_weather", "get_time")
        args = json.loads(call.function.arguments)
        assert set(args) == ({"city"} if call.function.name == "get_weather" else {"zone"})


def test_a_named_tool_choice_calls_exactly_that_function(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model="smollm2-135m",
        messages=ASK,
        tools=[WEATHER, TIME],
        tool_choice={"type": "function", "function": {"name": "get_time"}},
        max_tokens=120,
        temperature=0,
    )
    calls = r.choices[0].message.tool_calls or []
    assert len(calls) == 1 and calls[0].function.name == "get_time"
    assert isinstance(json.loads(calls[0].function.arguments)["zone"], str)


def test_auto_and_none_tool_choices(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model="smollm2-135m", messages=ASK, tools=[WEATHER], tool_choice="auto", max_tokens=120, temperature=0
    )
    message = r.choices[0].message
    assert bool(message.tool_calls) != bool(message.content), "either a call or an answer, not neither or both"
    if message.tool_calls:
        assert r.choices[0].finish_reason == "tool_calls"
        assert message.tool_calls[0].function.name == "get_weather"
    none = client.chat.completions.create(
        model="smollm2-135m", messages=ASK, tools=[WEATHER], tool_choice="none", max_tokens=20
    )
    assert none.choices[0].message.content and not none.choices[0].message.tool_calls


def test_a_tool_call_streams_as_tool_call_deltas(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="smollm2-135m",
        messages=ASK,
        tools=[WEATHER],
        tool_choice="required",
        max_tokens=120,
        stream=True,
        temperature=0,
    )
    args, names, finish = "", set(), None
    for chunk in stream:
        for choice in chunk.choices:
            for tc in choice.delta.tool_calls or []:
                names.add(tc.function.name)
                args += tc.function.arguments or ""
            finish = choice.finish_reason or finish
    assert names == {"get_weather"} and finish == "tool_calls"
    assert "city" in json.loads(args)


def test_a_tool_result_round_trip(client: openai.OpenAI) -> None:
    first = client.chat.completions.create(
        model="smollm2-135m", messages=ASK, tools=[WEATHER], tool_choice="required", max_tokens=120, temperature=0
    )
    call = first.choices[0].message.tool_calls[0]
    follow = client.chat.completions.create(
        model="smollm2-135m",
        max_tokens=30,
        tools=[WEATHER],
        tool_choice="none",
        messages=[
            *ASK,
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 C"},
        ],
    )
    assert follow.choices[0].message.content


def test_concurrent_requests_are_served_without_crosstalk(real_server: RunningServer) -> None:
    async def run() -> list[int]:
        client = openai.AsyncOpenAI(base_url=real_server.base_url + "/v1", api_key="any", max_retries=0)

        async def one(i: int) -> int:
            schema = {
                "type": "object",
                "properties": {"ticket": {"const": i}},
                "required": ["ticket"],
                "additionalProperties": False,
            }
            r = await client.chat.completions.create(
                model="smollm2-135m",
                max_tokens=60,
                messages=[{"role": "user", "content": f"Ticket {i}: note it."}],
                response_format={"type": "json_schema", "json_schema": {"name": "t", "schema": schema}},
            )
            return int(json.loads(r.choices[0].message.content or "")["ticket"])

        try:
            return await asyncio.gather(*(one(i) for i in range(12)))
        finally:
            await client.close()

    assert asyncio.run(run()) == list(range(12))


def test_logprobs_n_and_legacy_completions(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model="smollm2-135m",
        messages=[{"role": "user", "content": "Hi"}],
        max_tokens=5,
        logprobs=True,
        top_logprobs=2,
        n=2,
    )
    assert len(r.choices) == 2
    lp = r.choices[0].logprobs
    assert lp is not None and lp.content and len(lp.content[0].top_logprobs) == 2
    c = client.completions.create(model="smollm2-135m", prompt="The capital of France is", max_tokens=5)
    assert c.choices[0].text


def test_context_overflow_and_missing_embeddings_are_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="smollm2-135m", max_tokens=10, messages=[{"role": "user", "content": "word " * 9000}]
        )
    assert info.value.code == "context_length_exceeded" and "8192" in info.value.message
    with pytest.raises(openai.BadRequestError) as emb:
        client.embeddings.create(model="smollm2-135m", input="x")
    assert emb.value.code == "unsupported_capability"


def test_the_cli_chat_command_streams_an_answer(real_server: RunningServer) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "openmaas",
            "chat",
            "Say hi.",
            "--max-tokens",
            "10",
            "--base-url",
            real_server.base_url + "/v1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()


def test_a_killed_engine_is_restarted_by_the_supervisor(real_server: RunningServer, client: openai.OpenAI) -> None:
    for _ in range(20):  # the supervisor may be relaunching it right now (a thread plan follows the host's load)
        pids = subprocess.run(
            ["pgrep", "-P", str(real_server.proc.pid), "-f", "llama-server"], capture_output=True, text=True
        ).stdout.split()
        assert len(pids) <= 1
        if pids and subprocess.run(["kill", "-9", pids[0]], capture_output=True).returncode == 0:
            break
        time.sleep(0.5)
    else:
        pytest.fail("no engine process to kill")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        new = subprocess.run(
            ["pgrep", "-P", str(real_server.proc.pid), "-f", "llama-server"], capture_output=True, text=True
        ).stdout.split()
        if new and new != pids and httpx.get(real_server.base_url + "/readyz").status_code == 200:
            break
        time.sleep(0.2)
    else:
        pytest.fail("engine was not restarted")
    r = client.chat.completions.create(model="smollm2-135m", messages=[{"role": "user", "content": "Hi"}], max_tokens=5)
    assert r.choices[0].message.content
