"""Conformance: requests in Claude Code's and Codex's recorded shapes (tests/dialects/shapes.py), replayed
unary and streamed; the event streams are checked against each dialect's grammar."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.conftest import fake_settings, running_app
from tests.dialects.shapes import claude_code_request, codex_request

pytestmark = pytest.mark.anyio
SCRIPT = {"tools": {"Bash": {"command": "echo hi"}, "exec_command": {"cmd": "echo hi"}}, "final": "Done:"}


@pytest.fixture
async def client(tmp_path: Any) -> AsyncIterator[httpx.AsyncClient]:
    deployments = [
        {
            "name": "agent",
            "backend": "fake",
            "locality": "local",
            "context_length": 200_000,
            "params": {"script": SCRIPT},
        },
        {
            "name": "echo",
            "backend": "fake",
            "locality": "local",
            "context_length": 200_000,
            "params": {"echo": "prompt"},
        },
    ]
    settings = fake_settings(
        tmp_path, deployments=deployments, aliases={"default": "agent"}, server={"max_body_bytes": 1 << 20}
    )
    async with running_app(settings) as (_, http):
        yield http


def events(text: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((lines["event"], json.loads(lines["data"])))
    return out


def check_messages_grammar(stream: list[tuple[str, dict[str, Any]]]) -> dict[int, dict[str, Any]]:
    """Anthropic's stream grammar; returns the blocks rebuilt from it."""
    names = [name for name, _ in stream]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert all(name == data["type"] for name, data in stream)
    blocks: dict[int, dict[str, Any]] = {}
    open_block: int | None = None
    for name, data in stream:
        if name == "content_block_start":
            assert open_block is None and data["index"] == len(blocks)
            open_block = data["index"]
            blocks[open_block] = {**data["content_block"], "partial": ""}
        elif name == "content_block_delta":
            assert data["index"] == open_block
            delta = data["delta"]
            blocks[data["index"]]["partial"] += (
                delta.get("text") or delta.get("partial_json") or delta.get("thinking") or ""
            )
        elif name == "content_block_stop":
            assert data["index"] == open_block
            open_block = None
    assert open_block is None
    return blocks


async def test_claude_code_turns_replayed_unary_and_streamed(client: httpx.AsyncClient) -> None:
    for stream in (False, True):
        first = await client.post(
            "/v1/messages?beta=true", json=claude_code_request("List the files.", "a1", stream=stream)
        )
        assert first.status_code == 200, first.text
        if stream:
            blocks = check_messages_grammar(events(first.text))
            (call,) = blocks.values()
            assert call["type"] == "tool_use" and call["name"] == "Bash"
            assert json.loads(call["partial"]) == {"command": "echo hi"}  # the arguments arrived whole
            assert events(first.text)[-2][1]["delta"]["stop_reason"] == "tool_use"
        else:
            body = first.json()
            assert body["stop_reason"] == "tool_use" and body["content"][0]["input"] == {"command": "echo hi"}
        second = await client.post(
            "/v1/messages", json=claude_code_request("List the files.", "b2", "hi\n", stream=stream)
        )
        assert second.status_code == 200, second.text
        if stream:
            blocks = check_messages_grammar(events(second.text))
            assert blocks[0]["type"] == "text" and blocks[0]["partial"] == "Done: hi"
        else:
            assert second.json()["content"] == [{"type": "text", "text": "Done: hi"}]


async def test_the_volatile_billing_line_never_reaches_a_local_model(client: httpx.AsyncClient) -> None:
    body = {**claude_code_request("Hello there.", "n0nce", stream=False), "model": "echo"}
    seen = (await client.post("/v1/messages", json=body)).json()["content"][0]["text"]
    assert "x-anthropic-billing-header" not in seen and "n0nce" not in seen
    assert seen.startswith("You are Claude Code.") and "# Environment" in seen and "Hello there." in seen


async def test_codex_turns_replayed_unary_and_streamed(client: httpx.AsyncClient) -> None:
    for stream in (False, True):
        first = await client.post("/v1/responses", json=codex_request("List the files.", stream=stream))
        assert first.status_code == 200, first.text
        if stream:
            stream_events = events(first.text)
            kinds = [name for name, _ in stream_events]
            assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
            assert [data["sequence_number"] for _, data in stream_events] == list(range(len(stream_events)))
            args = "".join(d["delta"] for n, d in stream_events if n == "response.function_call_arguments.delta")
            done = next(d for n, d in stream_events if n == "response.function_call_arguments.done")
            assert json.loads(args) == json.loads(done["arguments"]) == {"cmd": "echo hi"}
            output = stream_events[-1][1]["response"]["output"]
        else:
            output = first.json()["output"]
            notes = first.json()["openmaas"]["notes"]
            assert "tool type 'namespace' is not served here; ignored" in notes
        assert [o["type"] for o in output] == ["function_call"] and output[0]["name"] == "exec_command"
        second = await client.post("/v1/responses", json=codex_request("List the files.", "hi\n", stream=stream))
        assert second.status_code == 200, second.text
        final = events(second.text)[-1][1]["response"] if stream else second.json()
        assert final["status"] == "completed"
        assert final["output"][0]["content"][0]["text"] == "Done: hi"
