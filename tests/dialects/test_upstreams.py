"""Both agent dialects on a real loopback socket in front of real upstreams (OpenAI-compatible and
Anthropic), driven by the official SDKs: native pass-through, translation, privacy."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import openai
import pytest

from openmaas.server import create_app
from openmaas.settings import Settings
from openmaas.testing.anthropic_upstream import TEXT, AnthropicUpstream
from openmaas.testing.openai_upstream import OpenAIUpstream
from openmaas.testing.serve import serve_app

pytestmark = pytest.mark.anyio
ANTHROPIC_KEY = "sk-ant-test-key-0123456789"
SECRET_SYSTEM = "The patient is Ann Lee, ann.lee@example.com, phone +1 415 555 0100."


@contextlib.asynccontextmanager
async def stack(tmp_path: Any, monkeypatch: pytest.MonkeyPatch, policy: str = "allow") -> AsyncIterator[Any]:
    monkeypatch.setenv("TEST_ANTHROPIC_KEY", ANTHROPIC_KEY)
    cloud, local, claude = OpenAIUpstream(), OpenAIUpstream(reply="local answer"), AnthropicUpstream(ANTHROPIC_KEY)
    async with serve_app(cloud) as cloud_url, serve_app(local) as local_url, serve_app(claude.app) as claude_url:

        def dep(name: str, model: str, url: str, locality: str = "cloud") -> dict[str, Any]:
            return {
                "name": name,
                "backend": "openai_compat",
                "model": model,
                "locality": locality,
                "params": {"base_url": url + "/v1"},
            }

        anthropic_dep = {
            "name": "claude-up",
            "backend": "anthropic",
            "model": "claude-test",
            "params": {"base_url": claude_url, "api_key_env": "TEST_ANTHROPIC_KEY"},
        }
        settings = Settings.model_validate(
            {
                "data_dir": str(tmp_path),
                "deployments": [
                    dep("cloud-echo", "echo", cloud_url),
                    dep("local-echo", "m", local_url, "local"),
                    anthropic_dep,
                ],
                "aliases": {"private": {"targets": ["cloud-echo"], "fallbacks": ["local-echo"]}},
                "model_patterns": {"claude-*": "claude-up"},
                "privacy": {"policy": policy},
            }
        )
        async with (
            serve_app(create_app(settings)) as gw,
            anthropic.AsyncAnthropic(base_url=gw, api_key="unused", max_retries=0) as an_client,
            openai.AsyncOpenAI(base_url=gw + "/v1", api_key="unused", max_retries=0) as oa_client,
        ):
            clients = {"anthropic": an_client, "openai": oa_client}
            yield type("Stack", (), {"cloud": cloud, "local": local, "claude": claude, **clients})


async def test_anthropic_deployments_receive_the_clients_own_body(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with stack(tmp_path, monkeypatch) as s:
        system = [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}]
        message = await s.anthropic.messages.create(
            model="claude-sonnet-4-5",
            max_tokens=200,
            system=system,
            thinking={"type": "enabled", "budget_tokens": 100},
            messages=[
                {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}
            ],
            extra_body={"context_management": {"edits": []}, "top_k": 5},
        )
        assert message.content[0].type == "text" and message.content[0].text == TEXT
        sent = s.claude.requests[-1]
        assert sent["model"] == "claude-test"  # the deployment's own model id
        assert sent["system"] == system and sent["top_k"] == 5 and sent["thinking"]["budget_tokens"] == 100
        assert sent["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral"}
        assert sent["context_management"] == {"edits": []}


async def test_tool_arguments_stream_whole_through_an_anthropic_upstream(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with stack(tmp_path, monkeypatch) as s:
        tool = {"name": "weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
        async with s.anthropic.messages.stream(
            model="claude-up",
            max_tokens=100,
            tools=[tool],
            tool_choice={"type": "any"},
            messages=[{"role": "user", "content": "weather?"}],
        ) as stream:
            final = await stream.get_final_message()
        assert final.stop_reason == "tool_use"
        block = final.content[0]
        assert block.type == "tool_use" and block.name == "weather" and block.input == {"city": "Paris"}


async def test_count_tokens_asks_an_anthropic_upstream(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    async with stack(tmp_path, monkeypatch) as s:
        count = await s.anthropic.messages.count_tokens(
            model="claude-up", system="one two", messages=[{"role": "user", "content": "three four five"}]
        )
        assert count.input_tokens == 7 + 5  # the upstream's own count


async def test_messages_over_an_openai_compatible_upstream(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    async with stack(tmp_path, monkeypatch) as s:
        message = await s.anthropic.messages.create(
            model="local-echo", max_tokens=50, system="sys", messages=[{"role": "user", "content": "ping"}]
        )
        assert message.content[0].type == "text" and message.content[0].text == "local answer"
        sent = s.local.requests[-1]
        assert sent["messages"][0] == {"role": "system", "content": "sys"} and "_native" not in sent
        async with s.anthropic.messages.stream(
            model="local-echo", max_tokens=50, messages=[{"role": "user", "content": "ping"}]
        ) as stream:
            assert "".join([t async for t in stream.text_stream]) == "local answer"


async def test_a_sensitive_system_prompt_under_local_only_never_reaches_the_cloud(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with stack(tmp_path, monkeypatch, policy="local_only") as s:
        message = await s.anthropic.messages.create(
            model="private", max_tokens=50, system=SECRET_SYSTEM, messages=[{"role": "user", "content": "summarise"}]
        )
        assert message.content[0].text == "local answer"
        response = await s.openai.responses.create(model="private", instructions=SECRET_SYSTEM, input="summarise")
        assert response.output_text == "local answer"
        response = await s.openai.responses.create(
            model="private",
            input=[
                {"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": SECRET_SYSTEM},
            ],
        )
        assert response.output_text == "local answer"
        assert len(s.cloud.requests) == 0
        assert not any("ann.lee@example.com" in json.dumps(r) for r in s.cloud.requests)
        assert len(s.local.requests) == 3
        with pytest.raises(anthropic.PermissionDeniedError):
            await s.anthropic.messages.create(
                model="cloud-echo", max_tokens=50, system=SECRET_SYSTEM, messages=[{"role": "user", "content": "x"}]
            )


async def test_message_start_carries_the_upstreams_own_input_count(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with stack(tmp_path, monkeypatch) as s:
        async with s.anthropic.messages.stream(
            model="claude-up", max_tokens=20, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            starts = [e.message.usage.input_tokens async for e in stream if e.type == "message_start"]
        assert starts == [12]  # the Anthropic upstream's message_start says 12
        assert all("max_tokens" in r for r in s.claude.requests)  # no extra count_tokens call was made
        chunks = await s.openai.chat.completions.create(
            model="claude-up",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        raw = [c.model_dump() async for c in chunks]
        assert not any("x_openmaas_prompt_tokens" in json.dumps(c) for c in raw)  # chat clients never see it
        assert raw[-1]["usage"]["prompt_tokens"] == 12


async def test_a_messages_max_tokens_is_a_ceiling_fitted_to_the_deployment(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Claude Code sends max_tokens 32k–128k: on a smaller model it is lowered to what the context leaves
    instead of refused (chat completions keep refusing it: there it is the client's demand)."""
    async with stack(tmp_path, monkeypatch) as s:
        async with s.anthropic.messages.stream(  # the SDK streams requests this large, as Claude Code does
            model="local-echo", max_tokens=128_000, messages=[{"role": "user", "content": "ping"}]
        ) as stream:
            message = await stream.get_final_message()
        assert message.content[0].type == "text" and message.content[0].text == "local answer"
        sent = s.local.requests[-1]["max_tokens"]
        assert 8000 < sent < 8192  # the deployment's 8192-token context minus the prompt
        with pytest.raises(openai.BadRequestError, match="max_tokens is 128000"):
            await s.openai.chat.completions.create(
                model="local-echo", max_tokens=128_000, messages=[{"role": "user", "content": "ping"}]
            )
