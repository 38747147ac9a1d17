"""Every malformed request gets a 4xx in the OpenAI error envelope, never a 500."""

import httpx
import pytest

pytestmark = pytest.mark.anyio

CHAT = {"model": "fake-chat", "messages": [{"role": "user", "content": "hi"}]}


def assert_envelope(resp: httpx.Response, status: int, code: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if code is not None:
        assert error["code"] == code
    return error


async def test_malformed_json(fake_client: httpx.AsyncClient) -> None:
    resp = await fake_client.post(
        "/v1/chat/completions", content=b'{"model": "x", ', headers={"content-type": "application/json"}
    )
    assert_envelope(resp, 400, "invalid_json")


@pytest.mark.parametrize("raw", [b"", b"[1,2]", b'"text"', b"null"])
async def test_bodies_that_are_not_objects(fake_client: httpx.AsyncClient, raw: bytes) -> None:
    resp = await fake_client.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
    assert_envelope(resp, 400)


@pytest.mark.parametrize(
    "body, param",
    [
        ({"model": "fake-chat"}, "messages"),
        ({"model": "fake-chat", "messages": "hi"}, "messages"),
        ({"model": 7, "messages": [{"role": "user", "content": "x"}]}, "model"),
        ({**CHAT, "temperature": "warm"}, "temperature"),
        ({**CHAT, "max_tokens": -1}, "max_tokens"),
        ({**CHAT, "stream": "yes please"}, "stream"),
        ({**CHAT, "response_format": {"type": "json_object", "schema": {}}}, "response_format.json_object.schema"),
        ({**CHAT, "tool_choice": {"type": "function", "function": {"name": "f", "extra": 1}}}, None),
    ],
)
async def test_wrong_types_and_misplaced_fields(fake_client: httpx.AsyncClient, body: dict, param: str | None) -> None:
    error = assert_envelope(await fake_client.post("/v1/chat/completions", json=body), 400)
    if param is not None:
        assert error["param"] == param


async def test_oversized_bodies_are_413(fake_client: httpx.AsyncClient) -> None:
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 10_000}]}
    assert_envelope(await fake_client.post("/v1/chat/completions", json=big), 413, "request_too_large")

    async def chunks():  # no content-length: the limit holds while reading
        for _ in range(10):
            yield b"x" * 1000

    resp = await fake_client.post("/v1/chat/completions", content=chunks())
    assert_envelope(resp, 413, "request_too_large")


async def test_unknown_model_is_404_listing_known_ones(fake_client: httpx.AsyncClient) -> None:
    error = assert_envelope(
        await fake_client.post("/v1/chat/completions", json={**CHAT, "model": "gpt-9"}), 404, "model_not_found"
    )
    assert "fake-chat" in error["message"] and "default" in error["message"]
    assert_envelope(await fake_client.get("/v1/models/gpt-9"), 404, "model_not_found")


async def test_context_overflow_names_the_limit(fake_client: httpx.AsyncClient) -> None:
    error = assert_envelope(
        await fake_client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 5000}),
        400,
        "context_length_exceeded",
    )
    assert "4096" in error["message"]


async def test_capabilities_the_model_lacks_are_400(fake_client: httpx.AsyncClient) -> None:
    tool = {"type": "function", "function": {"name": "f"}}
    assert_envelope(
        await fake_client.post("/v1/chat/completions", json={**CHAT, "model": "fake-notools", "tools": [tool]}),
        400,
        "unsupported_capability",
    )
    assert_envelope(
        await fake_client.post("/v1/embeddings", json={"model": "fake-chat", "input": "x"}),
        400,
        "unsupported_capability",
    )
    assert_envelope(
        await fake_client.post("/v1/chat/completions", json={**CHAT, "model": "fake-embed"}),
        400,
        "unsupported_capability",
    )


async def test_upstream_unavailable_is_503(fake_client: httpx.AsyncClient) -> None:
    assert_envelope(
        await fake_client.post("/v1/chat/completions", json={**CHAT, "model": "fake-down"}), 503, "upstream_unavailable"
    )


async def test_unknown_routes_and_methods(fake_client: httpx.AsyncClient) -> None:
    assert_envelope(await fake_client.post("/v1/nothing", json=CHAT), 404)
    assert_envelope(await fake_client.get("/v1/chat/completions"), 405)


@pytest.mark.parametrize(
    ("route", "param"),
    [
        ("cheap", "route"),
        ({"prefer": "fast"}, "route.prefer"),
        ({"max_cost_usd": "lots"}, "route.max_cost_usd"),
        ({"max_cost_usd": -1}, "route.max_cost_usd"),
        ({"speed": 1}, "route"),
    ],
)
async def test_bad_route_hints_are_400(fake_client: httpx.AsyncClient, route: object, param: str) -> None:
    resp = await fake_client.post("/v1/chat/completions", json={**CHAT, "route": route})
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == param


async def test_good_route_hints_are_applied(fake_client: httpx.AsyncClient) -> None:
    resp = await fake_client.post("/v1/chat/completions", json={**CHAT, "route": {"prefer": "cost", "max_cost_usd": 1}})
    assert resp.status_code == 200
    assert "prefer=cost" in resp.headers["x-openmaas-route"]
