"""The official ``openai`` SDK's Responses API against the gateway, in-process, on fake deployments."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import httpx2
import openai
import pytest
from starlette.applications import Starlette

from tests.conftest import fake_settings, ledger_events, running_app

pytestmark = pytest.mark.anyio

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def sdk(app: Starlette, key: str = "any") -> openai.AsyncOpenAI:
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://test")
    return openai.AsyncOpenAI(base_url="http://test/v1", api_key=key, http_client=http, max_retries=0)


@pytest.fixture
async def app(tmp_path: Any, store: dict[str, Any]) -> AsyncIterator[Starlette]:
    """On SQLite, and on PostgreSQL + Redis (the ``store`` fixture's two parameters)."""
    extra = {
        "store": store,
        "deployments": [
            {"name": "fake-chat", "backend": "fake", "locality": "local", "params": {"echo": "prompt"}},
            {"name": "fake-slow", "backend": "fake", "locality": "local", "params": {"latency_ms": 300}},
            {"name": "fake-broken", "backend": "fake", "params": {"fail_after_tokens": 2, "reply": "a b c d"}},
        ],
    }
    async with running_app(fake_settings(tmp_path, **extra)) as (application, _):
        yield application


async def test_create_answers_and_the_response_is_stored_and_retrievable(app: Starlette) -> None:
    client = sdk(app)
    r = await client.responses.create(model="fake-chat", input="hello there", instructions="Be brief.")
    assert r.status == "completed" and r.object == "response"
    assert r.output_text == "Be brief. hello there"  # the fake echoes the whole prompt: instructions come first
    assert r.usage is not None and r.usage.input_tokens > 0 and r.usage.output_tokens > 0
    again = await client.responses.retrieve(r.id)
    assert again.id == r.id and again.output_text == r.output_text
    items = await client.responses.input_items.list(r.id)
    assert [i.type for i in items.data] == ["message"]
    deleted = await client.responses.delete(r.id)
    assert deleted is None or getattr(deleted, "deleted", True)
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(r.id)


async def test_previous_response_id_continues_the_conversation(app: Starlette) -> None:
    client = sdk(app)
    first = await client.responses.create(model="fake-chat", input="my name is Ada")
    second = await client.responses.create(model="fake-chat", input="what is my name?", previous_response_id=first.id)
    # the fake echoes every message it was given: the first turn and its answer are in the prompt
    assert second.output_text.startswith("my name is Ada my name is Ada what is my name?")


async def test_store_false_keeps_nothing(app: Starlette) -> None:
    client = sdk(app)
    r = await client.responses.create(model="fake-chat", input="x", store=False)
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(r.id)


async def test_stream_sends_the_typed_events_in_order_with_sequence_numbers(app: Starlette) -> None:
    client = sdk(app)
    kinds: list[str] = []
    numbers: list[int] = []
    async with client.responses.stream(model="fake-chat", input="one two") as stream:
        async for event in stream:
            kinds.append(event.type)
            numbers.append(event.sequence_number)
        final = await stream.get_final_response()
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    for kind in (
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.output_item.done",
    ):
        assert kind in kinds
    assert numbers == list(range(len(numbers)))
    assert final.output_text == "one two"
    stored = await client.responses.retrieve(final.id)
    assert stored.output_text == "one two"


async def test_function_tool_round_trip(app: Starlette) -> None:
    client = sdk(app)
    r = await client.responses.create(
        model="fake-chat", input="weather in Paris?", tools=[WEATHER], tool_choice="required"
    )
    calls = [o for o in r.output if o.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    follow = await client.responses.create(
        model="fake-chat",
        previous_response_id=r.id,
        input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny, 21 C"}],
    )
    assert "sunny, 21 C" in follow.output_text


async def test_other_tool_types_are_accepted_and_noted(app: Starlette) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        body = {"model": "fake-chat", "input": "hi", "tools": [{"type": "web_search"}], "store": False}
        r = await http.post("/v1/responses", json=body)
    assert r.status_code == 200
    assert r.json()["openmaas"]["notes"] == ["tool type 'web_search' is not served here; ignored"]


async def test_a_failure_mid_stream_is_response_failed(app: Starlette) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        r = await http.post("/v1/responses", json={"model": "fake-broken", "input": "x", "stream": True})
    kinds = [line.removeprefix("event: ") for line in r.text.splitlines() if line.startswith("event: ")]
    assert kinds[0] == "response.created" and "response.output_text.delta" in kinds
    assert kinds[-1] == "response.failed" and "response.completed" not in kinds


async def test_background_response_runs_to_completion_and_is_polled(app: Starlette) -> None:
    client = sdk(app)
    r = await client.responses.create(model="fake-slow", input="later", background=True)
    assert r.status == "queued"
    for _ in range(200):
        polled = await client.responses.retrieve(r.id)
        if polled.status == "completed":
            break
        await asyncio.sleep(0.02)
    assert polled.status == "completed" and polled.output_text == "fake reply to: later"


async def test_background_response_can_be_cancelled(app: Starlette) -> None:
    client = sdk(app)
    r = await client.responses.create(model="fake-slow", input="later", background=True)
    cancelled = await client.responses.cancel(r.id)
    assert cancelled.status == "cancelled"
    assert (await client.responses.retrieve(r.id)).status == "cancelled"


async def test_each_response_is_one_ledger_row_labelled_responses(app: Starlette) -> None:
    client = sdk(app)
    await client.responses.create(model="fake-chat", input="count me")
    rows = [r for r in await ledger_events(app) if r["endpoint"] == "responses"]
    assert len(rows) == 1 and rows[0]["deployment"] == "fake-chat" and rows[0]["status"] == 200


async def test_bad_input_is_a_400_in_the_openai_envelope(app: Starlette) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        for body in (
            {"model": "fake-chat"},
            {"model": "fake-chat", "input": [{"type": "function_call_output"}]},
            {"model": "fake-chat", "input": "x", "tool_choice": {"type": "function", "name": "nope"}},
            {"model": "fake-chat", "input": "x", "previous_response_id": "resp_missing"},
        ):
            r = await http.post("/v1/responses", json=body)
            assert r.status_code in (400, 404), (body, r.text)
            assert r.json()["error"]["message"]
        r = await http.get("/v1/responses/resp_x/input_items?limit=0")
        assert r.status_code == 404


async def test_text_format_json_schema_reaches_the_model_as_structured_output(app: Starlette) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    fmt = {"type": "json_schema", "name": "answer", "schema": schema, "strict": True}
    r = await sdk(app).responses.create(model="fake-slow", input="x", text={"format": fmt})  # type: ignore[arg-type]
    assert r.output_text == '{"answer": "fake"}'  # the fake answers JSON when it is asked for a schema
    assert r.text is not None and r.text.format is not None and r.text.format.type == "json_schema"
