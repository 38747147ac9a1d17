"""Both agent dialects on the embedded SmolLM2 model (llama.cpp), driven by the official SDKs."""

from __future__ import annotations

import anthropic
import httpx
import openai
import pytest

from tests.real.conftest import RunningServer

pytestmark = pytest.mark.real
WEATHER = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 24}},
        "required": ["city"],
    },
}


@pytest.fixture
def claude(real_server: RunningServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=real_server.base_url, api_key="any", max_retries=0)


def test_messages_create_and_stream_on_the_real_model(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(
        model="claude-haiku-4-5",
        max_tokens=24,
        system="Answer briefly.",
        messages=[{"role": "user", "content": "Name a colour."}],
    )
    assert message.content[0].type == "text" and message.content[0].text.strip()
    assert message.stop_reason in ("end_turn", "max_tokens") and message.usage.input_tokens > 5
    with claude.messages.stream(
        model="default", max_tokens=16, messages=[{"role": "user", "content": "Count to five."}]
    ) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text.strip() and final.usage.output_tokens > 0


def test_count_tokens_is_the_models_own_count(claude: anthropic.Anthropic, real_server: RunningServer) -> None:
    body = {
        "model": "default",
        "system": "Answer briefly.",
        "messages": [{"role": "user", "content": "Name a colour."}],
    }
    counted = claude.messages.count_tokens(**body)  # type: ignore[arg-type]
    served = claude.messages.create(max_tokens=4, **body)  # type: ignore[arg-type]
    prompt = served.usage.input_tokens + (served.usage.cache_read_input_tokens or 0)  # Anthropic splits cache reads out
    assert counted.input_tokens == prompt  # the engine's own prompt count, template included
    r = httpx.post(real_server.base_url + "/v1/messages/count_tokens", json=body)
    assert r.headers["x-openmaas-token-count"].startswith("tokenizer")


def test_tool_use_round_trip_on_the_real_model(claude: anthropic.Anthropic) -> None:
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = claude.messages.create(
        model="default",
        max_tokens=64,
        tools=[WEATHER],
        tool_choice={"type": "any"},
        messages=ask,  # type: ignore[list-item]
    )
    call = next(b for b in first.content if b.type == "tool_use")
    assert first.stop_reason == "tool_use" and call.name == "get_weather" and isinstance(call.input, dict)
    follow = claude.messages.create(
        model="default",
        max_tokens=32,
        tools=[WEATHER],  # type: ignore[list-item]
        messages=[
            *ask,  # type: ignore[list-item]
            {"role": "assistant", "content": first.content},  # type: ignore[list-item]
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "Sunny, 21 C"}]},
        ],
    )

    def prompt(m: anthropic.types.Message) -> int:
        return m.usage.input_tokens + (m.usage.cache_read_input_tokens or 0)

    assert follow.content and prompt(follow) > prompt(first)  # the call and its result reached the model


def test_a_prompt_beyond_the_context_is_a_clear_error_in_each_dialect(
    claude: anthropic.Anthropic, real_server: RunningServer
) -> None:
    huge = "word " * 40_000  # a Claude Code-sized prompt: more than the embedded model's 8k context
    with pytest.raises(anthropic.BadRequestError) as err:
        claude.messages.create(model="claude-sonnet-4-5", max_tokens=16, messages=[{"role": "user", "content": huge}])
    assert err.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert "context" in err.value.message.lower()
    client = openai.OpenAI(base_url=real_server.base_url + "/v1", api_key="any", max_retries=0)
    with pytest.raises(openai.BadRequestError) as bad:
        client.responses.create(model="default", input=huge)
    assert "context" in bad.value.message.lower()


def test_responses_on_the_real_model(real_server: RunningServer) -> None:
    client = openai.OpenAI(base_url=real_server.base_url + "/v1", api_key="any", max_retries=0)
    first = client.responses.create(model="default", input="Name a fruit.", max_output_tokens=16)
    assert first.status in ("completed", "incomplete") and first.output_text.strip()
    with client.responses.stream(model="default", input="And a vegetable?", previous_response_id=first.id) as s:
        final = s.get_final_response()
    assert final.output_text.strip() and final.usage is not None
    assert final.usage.input_tokens > first.usage.input_tokens  # type: ignore[union-attr]  # the first turn came along
