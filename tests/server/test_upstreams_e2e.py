"""The gateway on a real loopback socket in front of real upstream servers,
driven by the official openai SDK (and the anthropic SDK against the
Anthropic-format upstream)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import openai
import pytest

from openmaas.routing.registry import Registry
from openmaas.server import create_app
from openmaas.settings import Settings
from openmaas.testing.anthropic_upstream import TEXT, AnthropicUpstream
from openmaas.testing.openai_upstream import REPLY, OpenAIUpstream
from openmaas.testing.serve import serve_app

pytestmark = pytest.mark.anyio
UPSTREAM_KEY = "sk-upstream-secret-key-0123456789"
ANTHROPIC_KEY = "sk-ant-test-key-0123456789"


@contextlib.asynccontextmanager
async def stack(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[dict[str, Any]]:
    monkeypatch.setenv("TEST_UPSTREAM_KEY", UPSTREAM_KEY)
    monkeypatch.setenv("TEST_ANTHROPIC_KEY", ANTHROPIC_KEY)
    oa, an = OpenAIUpstream(), AnthropicUpstream(ANTHROPIC_KEY)
    async with serve_app(oa) as oa_url, serve_app(an.app) as an_url:

        def up(name: str, model: str, **kw: Any) -> dict[str, Any]:
            return {
                "name": name,
                "backend": "openai_compat",
                "model": model,
                **kw,
                "params": {"base_url": oa_url + "/v1", "api_key_env": "TEST_UPSTREAM_KEY"},
            }

        settings = Settings.model_validate(
            {
                "data_dir": str(tmp_path),
                "deployments": [
                    up("cloud-chat", "up-model", capabilities={"embeddings": True}),
                    up("cloud-429", "fail-429"),
                    up("cloud-500", "fail-500"),
                    up("cloud-503", "fail-503"),
                    up("cloud-400", "fail-400"),
                    up("cloud-401", "fail-401"),
                    up("cloud-ctx", "context-overflow"),
                    up("cloud-garbage", "garbage"),
                    up("cloud-midstream", "midstream-error"),
                    up("cloud-slow", "slow-3000", timeouts={"first_token": 0.3, "total": 1}),
                    up("cloud-long", "slow-800", timeouts={"first_token": 0.3, "total": 5}),
                    {
                        "name": "cloud-refused",
                        "backend": "openai_compat",
                        "params": {"base_url": "http://127.0.0.1:9/v1", "api_key_env": "TEST_UPSTREAM_KEY"},
                    },
                    {
                        "name": "claude",
                        "backend": "anthropic",
                        "model": "claude-test",
                        "params": {"base_url": an_url, "api_key_env": "TEST_ANTHROPIC_KEY"},
                    },
                ],
                "aliases": {},
            }
        )
        registry = Registry(settings)
        async with serve_app(create_app(settings, registry)) as gw_url:
            client = openai.AsyncOpenAI(base_url=gw_url + "/v1", api_key="unused", max_retries=0)
            try:
                yield {
                    "gateway": gw_url,
                    "openai_upstream": oa,
                    "anthropic_upstream": an,
                    "anthropic_url": an_url,
                    "client": client,
                }
            finally:
                await client.close()


MSG = [{"role": "user", "content": "hi"}]


async def test_openai_sdk_through_the_gateway_to_an_openai_compatible_upstream(tmp_path, monkeypatch) -> None:
    async with stack(tmp_path, monkeypatch) as s:
        client: openai.AsyncOpenAI = s["client"]
        r = await client.chat.completions.create(
            model="cloud-chat", messages=MSG, temperature=0.5, extra_body={"vendor_knob": {"x": 1}}
        )
        assert r.choices[0].message.content == REPLY
        assert r.model == "cloud-chat"
        forwarded = s["openai_upstream"].requests[-1]
        assert forwarded["model"] == "up-model"
        assert forwarded["vendor_knob"] == {"x": 1}, "unknown fields pass through"
        assert s["openai_upstream"].headers[-1]["authorization"] == f"Bearer {UPSTREAM_KEY}"

        stream = await client.chat.completions.create(model="cloud-chat", messages=MSG, stream=True)
        pieces = [c.choices[0].delta.content or "" async for c in stream if c.choices]
        assert "".join(pieces) == REPLY
        assert s["openai_upstream"].requests[-1]["stream_options"] == {"include_usage": True}

        stream = await client.chat.completions.create(
            model="cloud-chat", messages=MSG, stream=True, stream_options={"include_usage": True}
        )
        usage = [c.usage async for c in stream if c.usage]
        assert usage[0].completion_tokens == len(REPLY.split())

        completion = await client.completions.create(model="cloud-chat", prompt="say hi")
        assert completion.choices[0].text == REPLY
        emb = await client.embeddings.create(model="cloud-chat", input=["a", "b"])
        assert len(emb.data) == 2


async def test_a_unary_answer_slower_than_the_first_token_timeout_is_bound_by_the_total_only(
    tmp_path, monkeypatch
) -> None:
    # A non-streamed response starts only when the whole answer exists (a long answer, a busy local engine).
    async with stack(tmp_path, monkeypatch) as s:
        reply = await s["client"].chat.completions.create(model="cloud-long", messages=MSG)
        assert reply.choices[0].message.content


@pytest.mark.parametrize(
    "model, status, code",
    [
        ("cloud-429", 429, "upstream_rate_limited"),
        ("cloud-500", 502, "upstream_error"),
        ("cloud-503", 503, "upstream_unavailable"),
        ("cloud-400", 400, "upstream_rejected"),
        ("cloud-401", 502, "upstream_error"),
        ("cloud-ctx", 400, "context_length_exceeded"),
        ("cloud-garbage", 502, "upstream_error"),
        ("cloud-refused", 503, "upstream_unavailable"),
        ("cloud-slow", 504, "upstream_timeout"),
    ],
)
async def test_upstream_failures_map_to_clear_statuses_without_secrets(
    tmp_path, monkeypatch, model, status, code
) -> None:
    async with stack(tmp_path, monkeypatch) as s:
        with pytest.raises(openai.APIStatusError) as info:
            await s["client"].chat.completions.create(model=model, messages=MSG)
        assert info.value.status_code == status
        body = info.value.body
        assert isinstance(body, dict) and body["code"] == code
        assert UPSTREAM_KEY not in json.dumps(body)
        assert "Traceback" not in json.dumps(body)


async def test_a_stream_failing_midway_raises_in_the_sdk_instead_of_truncating(tmp_path, monkeypatch) -> None:
    async with stack(tmp_path, monkeypatch) as s:
        stream = await s["client"].chat.completions.create(model="cloud-midstream", messages=MSG, stream=True)
        received = []
        with pytest.raises(openai.APIError, match="failed mid-stream"):
            async for chunk in stream:
                received.append(chunk)
        *tokens, usage = received
        assert [c.choices[0].delta.content for c in tokens] == ["Hello", " from"]
        assert usage.choices == [] and usage.usage is not None and usage.usage.completion_tokens == 2


async def test_the_anthropic_upstream_speaks_the_real_messages_format(tmp_path, monkeypatch) -> None:
    async with stack(tmp_path, monkeypatch) as s:
        client = anthropic.AsyncAnthropic(base_url=s["anthropic_url"], api_key=ANTHROPIC_KEY, max_retries=0)
        message = await client.messages.create(model="claude-test", max_tokens=20, messages=MSG)
        assert message.content[0].type == "text" and message.content[0].text == TEXT
        async with client.messages.stream(model="claude-test", max_tokens=20, messages=MSG) as stream:
            text = "".join([t async for t in stream.text_stream])
        assert text.strip() == TEXT
        await client.close()


async def test_openai_sdk_through_the_gateway_to_an_anthropic_upstream(tmp_path, monkeypatch) -> None:
    async with stack(tmp_path, monkeypatch) as s:
        client: openai.AsyncOpenAI = s["client"]
        r = await client.chat.completions.create(
            model="claude", messages=[{"role": "system", "content": "be brief"}, *MSG]
        )
        assert r.choices[0].message.content == TEXT
        assert r.usage is not None and r.usage.prompt_tokens == 12
        sent = s["anthropic_upstream"].requests[-1]
        assert sent["system"] == "be brief" and sent["model"] == "claude-test" and sent["max_tokens"] == 4096

        stream = await client.chat.completions.create(
            model="claude", messages=MSG, stream=True, stream_options={"include_usage": True}
        )
        chunks = [c async for c in stream]
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip() == TEXT
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4

        tools = [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                },
            }
        ]
        r = await client.chat.completions.create(model="claude", messages=MSG, tools=tools, tool_choice="required")
        call = r.choices[0].message.tool_calls[0]
        assert r.choices[0].finish_reason == "tool_calls"
        assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}

        stream = await client.chat.completions.create(
            model="claude", messages=MSG, tools=tools, tool_choice="required", stream=True
        )
        args = ""
        async for c in stream:
            for tc in (c.choices[0].delta.tool_calls or []) if c.choices else []:
                args += tc.function.arguments or ""
        assert json.loads(args) == {"city": "Paris"}


async def test_enforce_sends_the_schema_to_openai_compatible_and_anthropic_upstreams_a_grammar_to_neither(
    tmp_path, monkeypatch
) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    checks = {"type": "checks", "checks": [{"kind": "lowercase", "value": True}]}
    async with stack(tmp_path, monkeypatch) as s:
        client: openai.AsyncOpenAI = s["client"]
        ttc = {"strategy": "best_of_n", "n": 2, "verifier": {"type": "json_schema", "schema": schema}, "enforce": True}
        r = await client.chat.completions.create(model="cloud-chat", messages=MSG, extra_body={"ttc": ttc})
        assert [c["enforced"] for c in (r.model_extra or {})["ttc"]["candidates"]] == [True, True]
        sent = s["openai_upstream"].requests[-1]
        assert sent["response_format"] == {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
        # a grammar goes only where one is taken: an OpenAI-compatible upstream gets none unless params.grammar
        ttc["verifier"] = checks
        await client.chat.completions.create(model="cloud-chat", messages=MSG, extra_body={"ttc": ttc})
        assert "grammar" not in s["openai_upstream"].requests[-1]
        # on Anthropic deployments the schema becomes the forced format tool
        ttc["verifier"] = {"type": "json_schema", "schema": schema}
        r = await client.chat.completions.create(model="claude", messages=MSG, extra_body={"ttc": ttc})
        summary = (r.model_extra or {})["ttc"]
        assert [c["enforced"] for c in summary["candidates"]] == [True, True]
        assert [c["score"] for c in summary["candidates"]] == [1.0, 1.0]  # '{"city": "Paris"}' meets the schema
        assert s["anthropic_upstream"].requests[-1]["tool_choice"] == {"type": "tool", "name": "json_answer"}


async def test_structured_output_on_an_anthropic_deployment_is_a_forced_tool_returned_as_json(
    tmp_path, monkeypatch
) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "place", "schema": schema}}
    async with stack(tmp_path, monkeypatch) as s:
        client: openai.AsyncOpenAI = s["client"]
        r = await client.chat.completions.create(model="claude", messages=MSG, response_format=fmt)  # type: ignore[arg-type]
        choice = r.choices[0]
        assert json.loads(choice.message.content or "") == {"city": "Paris"}
        assert choice.message.tool_calls is None and choice.finish_reason == "stop"
        sent = s["anthropic_upstream"].requests[-1]
        assert sent["tools"] == [
            {"name": "json_answer", "description": sent["tools"][0]["description"], "input_schema": schema}
        ]
        assert sent["tool_choice"] == {"type": "tool", "name": "json_answer"}
        stream = await client.chat.completions.create(
            model="claude", messages=MSG, response_format={"type": "json_object"}, stream=True
        )
        chunks = [c async for c in stream]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert json.loads(text) == {"city": "Paris"}
        assert not any(c.choices[0].delta.tool_calls for c in chunks if c.choices)
        assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
        assert s["anthropic_upstream"].requests[-1]["tools"][0]["input_schema"] == {"type": "object"}
        tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
        for extra in (
            {"tools": tools},  # both at once: refused rather than one silently winning
            {"response_format": {"type": "json_schema", "json_schema": {"name": "l", "schema": {"type": "array"}}}},
        ):
            body = {"response_format": fmt, **extra}
            with pytest.raises(openai.BadRequestError) as err:
                await client.chat.completions.create(model="claude", messages=MSG, **body)  # type: ignore[arg-type]
            assert (err.value.body or {}).get("param") == "response_format", err.value.body
