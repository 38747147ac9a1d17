"""The official ``anthropic`` SDK against the gateway's Messages API, in-process, on fake deployments."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx
import httpx2
import pytest
from starlette.applications import Starlette

from tests.conftest import fake_settings, running_app

pytestmark = pytest.mark.anyio

WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def sdk(app: Starlette, key: str = "any") -> anthropic.AsyncAnthropic:
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://test")
    return anthropic.AsyncAnthropic(base_url="http://test", api_key=key, http_client=http, max_retries=0)


@pytest.fixture
async def app(tmp_path: Any) -> AsyncIterator[Starlette]:
    extra = {
        "deployments": [
            {"name": "fake-chat", "backend": "fake", "locality": "local", "context_length": 4096},
            {"name": "fake-broken", "backend": "fake", "params": {"fail_after_tokens": 2, "reply": "a b c d"}},
            {"name": "fake-down", "backend": "fake", "params": {"fail_every": 1, "fail_status": 503}},
        ]
    }
    async with running_app(fake_settings(tmp_path, **extra)) as (application, _):
        yield application


async def test_create_answers_with_a_message_and_real_usage(app: Starlette) -> None:
    client = sdk(app)
    message = await client.messages.create(
        model="fake-chat", max_tokens=64, system="Be brief.", messages=[{"role": "user", "content": "hello there"}]
    )
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "text"
    assert message.content[0].text == "fake reply to: hello there"
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert message.model == "fake-chat"


async def test_claude_model_names_are_served_by_the_default_model(app: Starlette) -> None:
    message = await sdk(app).messages.create(
        model="claude-sonnet-4-5", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.content[0].type == "text" and message.model == "claude-sonnet-4-5"


async def test_stream_text_arrives_whole_with_input_usage_in_message_start(app: Starlette) -> None:
    client = sdk(app)
    async with client.messages.stream(
        model="fake-chat", max_tokens=64, messages=[{"role": "user", "content": "one two three"}]
    ) as stream:
        kinds = []
        async for event in stream:
            kinds.append(event.type)
            if event.type == "message_start":
                assert event.message.usage.input_tokens > 0
        final = await stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "content_block_start" in kinds and "content_block_stop" in kinds and "message_delta" in kinds
    assert final.content[0].type == "text" and final.content[0].text == "fake reply to: one two three"
    assert final.usage.output_tokens > 0


async def test_text_stream_yields_the_answer(app: Starlette) -> None:
    async with sdk(app).messages.stream(
        model="fake-chat", max_tokens=64, messages=[{"role": "user", "content": "abc"}]
    ) as stream:
        text = "".join([piece async for piece in stream.text_stream])
    assert text == "fake reply to: abc"


async def test_a_failure_after_the_stream_began_is_an_error_event(app: Starlette) -> None:
    with pytest.raises(anthropic.APIStatusError) as err:
        async with sdk(app).messages.stream(
            model="fake-broken", max_tokens=64, messages=[{"role": "user", "content": "x"}]
        ) as stream:
            async for _ in stream:
                pass
    assert "api_error" in err.value.message and "broke the stream" in err.value.message
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        body = {
            "model": "fake-broken",
            "max_tokens": 64,
            "stream": True,
            "messages": [{"role": "user", "content": "x"}],
        }
        r = await http.post("/v1/messages", json=body)
    events = [line.removeprefix("event: ") for line in r.text.splitlines() if line.startswith("event: ")]
    assert r.status_code == 200 and events[0] == "message_start" and "content_block_delta" in events
    assert events[-1] == "error" and "message_stop" not in events


async def test_errors_come_in_anthropics_envelope_with_a_request_id(app: Starlette) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        cases = [
            ({"model": "fake-chat", "messages": [{"role": "user", "content": "x"}]}, 400, "invalid_request_error"),
            (
                {"model": "nope", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]},
                404,
                "not_found_error",
            ),
            ({"model": "fake-down", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}, 503, None),
        ]
        for body, status, kind in cases:
            r = await http.post("/v1/messages?beta=true", json=body)
            assert r.status_code == status, r.text
            data = r.json()
            assert data["type"] == "error" and data["error"]["message"]
            assert data["error"]["type"] == (kind or "overloaded_error")
            assert r.headers["request-id"] == data["request_id"]
        r = await http.post("/v1/messages", content=b"{not json")
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


async def test_count_tokens_uses_the_models_tokenizer(app: Starlette) -> None:
    count = await sdk(app).messages.count_tokens(
        model="fake-chat", system="alpha beta", messages=[{"role": "user", "content": "gamma delta epsilon"}]
    )
    assert count.input_tokens == 5  # the fake deployment's tokenizer counts words of system + messages


async def test_models_are_listed_in_anthropics_shape_for_anthropic_clients(app: Starlette) -> None:
    client = sdk(app)
    page = await client.models.list()
    ids = [m.id for m in page.data]
    assert "fake-chat" in ids and all(m.type == "model" for m in page.data)
    one = await client.models.retrieve("fake-chat")
    assert one.id == "fake-chat" and one.type == "model"
