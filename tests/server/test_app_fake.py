"""In-process app tests (ASGI transport) against the fake backend."""

import json
from pathlib import Path

import httpx
import pytest

from tests.conftest import fake_settings, running_app

pytestmark = pytest.mark.anyio

CHAT = {"model": "fake-chat", "messages": [{"role": "user", "content": "hello there"}]}


def sse_events(text: str) -> list:
    return [line[6:] for line in text.splitlines() if line.startswith("data: ")]


async def test_chat_answers_in_openai_shape_under_the_public_name(fake_client: httpx.AsyncClient) -> None:
    resp = await fake_client.post("/v1/chat/completions", json={**CHAT, "model": "default"})
    assert resp.status_code == 200
    body = resp.json()
    assert body["model"] == "default"
    assert body["choices"][0]["message"]["content"] == "fake reply to: hello there"
    assert body["usage"]["prompt_tokens"] == 2
    assert resp.headers["x-request-id"].startswith("req_")


async def test_request_id_is_echoed_when_the_client_sends_one(fake_client: httpx.AsyncClient) -> None:
    resp = await fake_client.post("/v1/chat/completions", json=CHAT, headers={"x-request-id": "abc-123"})
    assert resp.headers["x-request-id"] == "abc-123"
    bad = await fake_client.post("/v1/chat/completions", json=CHAT, headers={"x-request-id": "bad id\twith tab"})
    assert bad.headers["x-request-id"].startswith("req_")
    missing = await fake_client.get("/nope")
    assert missing.headers["x-request-id"].startswith("req_")


async def test_request_id_is_also_sent_under_anthropics_name_on_the_routes_its_clients_call(
    fake_client: httpx.AsyncClient,
) -> None:
    chat = await fake_client.post("/v1/chat/completions", json=CHAT)
    assert "request-id" not in chat.headers
    message = {"model": "fake-chat", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    for resp in (
        await fake_client.post("/v1/messages?beta=true", json=message),
        await fake_client.post("/v1/messages", json={"model": "fake-chat"}),  # an error: max_tokens is required
        await fake_client.get("/v1/models", headers={"anthropic-version": "2023-06-01"}),
    ):
        assert resp.headers["request-id"] == resp.headers["x-request-id"]
        assert resp.headers["request-id"].startswith("req_")


async def test_streaming_sends_chunks_then_done_and_hides_usage_unless_asked(fake_client: httpx.AsyncClient) -> None:
    resp = await fake_client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    events = sse_events(resp.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["choices"] for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "fake reply to: hello there"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"

    with_usage = await fake_client.post(
        "/v1/chat/completions", json={**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    )
    last = json.loads(sse_events(with_usage.text)[-2])
    assert last["choices"] == [] and last["usage"]["completion_tokens"] == 5


async def test_a_stream_that_breaks_after_tokens_ends_with_an_error_event(fake_client: httpx.AsyncClient) -> None:
    resp = await fake_client.post("/v1/chat/completions", json={**CHAT, "model": "fake-broken", "stream": True})
    assert resp.status_code == 200
    events = sse_events(resp.text)
    assert "[DONE]" not in events
    error = json.loads(events[-1])["error"]
    assert error["code"] == "upstream_stream_broken"
    *delivered, usage = [json.loads(e) for e in events[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in delivered) == "one two"
    # the partial output is billed, and the client is told so in a final usage chunk before the error
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 2


async def test_a_stream_that_fails_before_its_first_token_is_an_http_error(fake_client: httpx.AsyncClient) -> None:
    resp = await fake_client.post("/v1/chat/completions", json={**CHAT, "model": "fake-down", "stream": True})
    assert resp.status_code == 503
    assert resp.json()["error"]["code"] == "upstream_unavailable"


async def test_completions_and_max_tokens(fake_client: httpx.AsyncClient) -> None:
    resp = await fake_client.post("/v1/completions", json={"model": "fake-chat", "prompt": "a b c", "max_tokens": 2})
    body = resp.json()
    assert body["object"] == "text_completion"
    assert body["choices"][0]["text"] == "fake reply"
    assert body["choices"][0]["finish_reason"] == "length"
    stream = await fake_client.post("/v1/completions", json={"model": "fake-chat", "prompt": "x", "stream": True})
    texts = [json.loads(e)["choices"][0]["text"] for e in sse_events(stream.text)[:-1]]
    assert "".join(texts) == "fake reply to: x"


async def test_embeddings_go_to_a_model_that_serves_them(fake_client: httpx.AsyncClient) -> None:
    resp = await fake_client.post("/v1/embeddings", json={"model": "fake-embed", "input": ["a", "b"]})
    body = resp.json()
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert abs(sum(v * v for v in body["data"][0]["embedding"]) - 1) < 1e-9
    assert body["data"][0]["embedding"] != body["data"][1]["embedding"]


async def test_models_list_deployments_and_aliases(fake_client: httpx.AsyncClient) -> None:
    body = (await fake_client.get("/v1/models")).json()
    ids = {m["id"] for m in body["data"]}
    assert {"fake-chat", "fake-embed", "default"} <= ids
    alias = (await fake_client.get("/v1/models/default")).json()
    assert alias["openmaas"]["alias_of"] == "fake-chat"
    assert alias["openmaas"]["locality"] == "local"


async def test_health_and_readiness(fake_client: httpx.AsyncClient) -> None:
    assert (await fake_client.get("/healthz")).json() == {"status": "ok"}
    ready = await fake_client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


async def test_tools_on_the_fake_backend_come_back_as_tool_calls(fake_client: httpx.AsyncClient) -> None:
    tool = {"type": "function", "function": {"name": "lookup"}}
    resp = await fake_client.post("/v1/chat/completions", json={**CHAT, "tools": [tool], "tool_choice": "required"})
    choice = resp.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"][0]["function"]["name"] == "lookup"


async def test_the_gateway_runs_openblas_on_its_blas_threads(tmp_path: Path) -> None:
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas_threads() -> set[int]:
        return {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}

    with threadpool_limits(limits=None):  # the test process gets its own setting back afterwards
        threadpool_limits(limits=2, user_api="blas")
        async with running_app(fake_settings(tmp_path)):
            assert blas_threads() == {1}  # default: no OpenBLAS pool (its hang: backends.encoder)
        async with running_app(fake_settings(tmp_path / "two", server={"blas_threads": 2})):
            assert blas_threads() == {2}
