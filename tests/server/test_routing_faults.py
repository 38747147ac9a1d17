"""Routing under faults, on real loopback HTTP: the gateway in front of two real upstream servers
(one playing the cloud, one a local engine) that fail on command."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest
from click.testing import CliRunner

from openmaas.cli import main as cli
from openmaas.server import create_app
from openmaas.settings import Settings
from openmaas.testing.openai_upstream import REPLY, OpenAIUpstream
from openmaas.testing.serve import serve_app
from tests.helpers import ADMIN_KEY

pytestmark = pytest.mark.anyio
PII = "Email ann@example.com or call 13800138000 about card 4111 1111 1111 1111."


@contextlib.asynccontextmanager
async def stack(tmp_path: Any, monkeypatch: pytest.MonkeyPatch, policy: str = "allow") -> AsyncIterator[Any]:
    monkeypatch.setenv("OPENMAAS_ADMIN_KEY", ADMIN_KEY)
    cloud, local = OpenAIUpstream(), OpenAIUpstream(reply="local answer")
    async with serve_app(cloud) as cloud_url, serve_app(local) as local_url:

        def dep(name: str, model: str, url: str, locality: str = "cloud", **kw: Any) -> dict[str, Any]:
            base = {"name": name, "backend": "openai_compat", "model": model, "locality": locality}
            return {**base, "params": {"base_url": url + "/v1"}, **kw}

        settings = Settings.model_validate(
            {
                "data_dir": str(tmp_path),
                "deployments": [
                    dep("cloud-a", "a", cloud_url, pricing={"input_per_mtok": 1, "output_per_mtok": 2}),
                    dep("cloud-b", "b", cloud_url, pricing={"input_per_mtok": 1, "output_per_mtok": 2}),
                    dep("cloud-echo", "echo", cloud_url),
                    dep("cloud-tool", "echo-tool", cloud_url),
                    dep("cloud-slow", "slow", cloud_url, timeouts={"first_token": 0.3, "total": 5}),
                    dep("cloud-small", "small", cloud_url, context_length=64),
                    dep("local-echo", "echo", local_url, "local"),
                    dep("local-model", "m", local_url, "local"),
                ],
                "aliases": {
                    "strong": {"targets": ["cloud-a", "cloud-b"], "degrade": ["local-model"]},
                    "only-a": {"targets": ["cloud-a"], "degrade": ["local-model"]},
                    "private": {"targets": ["cloud-echo"], "fallbacks": ["local-echo"]},
                    "slow-first": {"targets": ["cloud-slow"], "fallbacks": ["cloud-b"]},
                    "ctx": {"targets": ["cloud-small"], "fallbacks": ["cloud-b"]},
                },
                "routing": {
                    "retry": {"attempts": 2, "backoff_base": 0.01, "backoff_max": 0.05},
                    "breaker": {"consecutive_failures": 3, "open_seconds": 0.4, "health_interval": 0.1},
                },
                "privacy": {"policy": policy},
            }
        )
        async with serve_app(create_app(settings)) as gw_url:
            client = openai.AsyncOpenAI(base_url=gw_url + "/v1", api_key="unused", max_retries=0)
            admin = httpx.AsyncClient(base_url=gw_url, headers={"authorization": f"Bearer {ADMIN_KEY}"})
            try:
                yield type("Stack", (), {"cloud": cloud, "local": local, "client": client, "admin": admin})
            finally:
                await client.close()
                await admin.aclose()


MSG = [{"role": "user", "content": "hi"}]


async def chat(s: Any, model: str, content: str = "hi", **kw: Any) -> Any:
    return await s.client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": content}], **kw
    )


async def audit(s: Any, raw: Any) -> dict[str, Any]:
    await asyncio.sleep(0)  # the ledger row is committed before the response's last byte
    resp = await s.admin.get(f"/admin/audit/{raw.headers['x-request-id']}")
    assert resp.status_code == 200, resp.text
    events = resp.json()["data"]
    assert len(events) == 1
    return dict(events[0])


async def test_retries_then_fallback_serve_the_request(tmp_path, monkeypatch) -> None:
    async with stack(tmp_path, monkeypatch) as s:
        s.cloud.break_("a", "500")
        s.cloud.fail("b", "429")  # b's first try is rate limited, its retry succeeds
        raw = await chat(s, "strong", extra_body={"route": {"prefer": "quality"}})
        assert raw.parse().choices[0].message.content == REPLY
        route = raw.headers["x-openmaas-route"]
        assert "chosen=cloud-b" in route and "cloud-a:upstream_error" in route
        assert "cloud-b:upstream_rate_limited" in route
        assert s.cloud.calls == {"a": 2, "b": 2}  # two tries on each deployment
        event = await audit(s, raw)
        assert event["deployment"] == "cloud-b" and event["status"] == 200
        assert event["route"]["data_went_to"] == ["cloud-a", "cloud-b"]
        assert [a["outcome"] for a in event["route"]["attempts"]] == [
            "upstream_error",
            "upstream_error",
            "upstream_rate_limited",
            "ok",
        ]


async def test_dropped_connections_and_timeouts_fail_over(tmp_path, monkeypatch) -> None:
    async with stack(tmp_path, monkeypatch) as s:
        s.cloud.fail("a", "drop", "drop")
        raw = await chat(s, "only-a")
        assert raw.headers["x-openmaas-route"].startswith("chosen=local-model")
        # slow first token: the stream fails over before any byte reached the client
        stream = await s.client.chat.completions.create(model="slow-first", messages=MSG, stream=True)
        s.cloud.break_("slow", "slow_first:2000")
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == REPLY


async def test_a_bad_request_is_not_retried_anywhere(tmp_path, monkeypatch) -> None:
    async with stack(tmp_path, monkeypatch) as s:
        s.cloud.fail("a", "400")
        with pytest.raises(openai.BadRequestError) as err:
            await chat(s, "only-a")
        assert err.value.code == "upstream_rejected"
        assert s.cloud.calls == {"a": 1}  # neither retried nor sent to the degraded local model
        s.cloud.heal("a")
        s.cloud.calls.clear()
        s.cloud.break_("a", "hang")
        raw = await chat(s, "ctx", content="word " * 400)  # too long for cloud-small's 64 tokens
        assert raw.headers["x-openmaas-route"].startswith("chosen=cloud-b")
        assert "cloud-small:context" in raw.headers["x-openmaas-route"]
        assert "small" not in s.cloud.calls


async def test_the_breaker_opens_then_closes_when_the_deployment_recovers(tmp_path, monkeypatch) -> None:
    async with stack(tmp_path, monkeypatch) as s:
        s.cloud.break_("a", "503")
        for _ in range(2):  # two requests x two tries: the third consecutive failure opens it
            with pytest.raises(openai.APIStatusError) as err:
                await chat(s, "cloud-a")
            assert err.value.status_code == 503
        status = (await s.admin.get("/admin/routing")).json()["deployments"]["cloud-a"]
        assert status["state"] == "open"
        calls = s.cloud.calls["a"]
        with pytest.raises(openai.APIStatusError) as err:
            await chat(s, "cloud-a")
        assert err.value.code == "no_healthy_deployment"
        assert s.cloud.calls["a"] == calls  # an open circuit sends nothing upstream
        s.cloud.heal("a")
        for _ in range(50):  # open_seconds 0.4, active checks every 0.1 s
            await asyncio.sleep(0.1)
            if (await s.admin.get("/admin/routing")).json()["deployments"]["cloud-a"]["state"] == "closed":
                break
        raw = await chat(s, "cloud-a")
        assert raw.parse().choices[0].message.content == REPLY


async def test_a_stream_dying_midway_ends_with_usage_and_an_error_and_is_billed(tmp_path, monkeypatch) -> None:
    async with stack(tmp_path, monkeypatch) as s:
        s.cloud.break_("a", "die_midstream")
        raw = await s.client.chat.completions.with_raw_response.create(
            model="cloud-a", messages=MSG, stream=True, stream_options={"include_usage": True}
        )
        received = []
        with pytest.raises(openai.APIError):
            async for chunk in raw.parse():
                received.append(chunk)
        *tokens, usage = received
        assert "".join(c.choices[0].delta.content or "" for c in tokens) == "Hello from"
        assert usage.choices == [] and usage.usage.completion_tokens == 2
        event = await audit(s, raw)
        assert event["interrupted"] and event["completion_tokens"] == 2 and event["cost_usd"] > 0


async def test_local_only_keeps_pii_away_from_the_cloud(tmp_path, monkeypatch) -> None:
    async with stack(tmp_path, monkeypatch, policy="local_only") as s:
        raw = await chat(s, "private", PII)
        assert raw.parse().choices[0].message.content == PII  # the local echo answered
        route = raw.headers["x-openmaas-route"]
        assert "chosen=local-echo" in route and "CN_MOBILE" in route and "cloud-echo:privacy" in route
        assert "ann@example.com" not in route
        with pytest.raises(openai.PermissionDeniedError) as err:
            await chat(s, "cloud-echo", PII)
        assert err.value.code == "privacy_policy_violation"
        assert not any("ann@example.com" in json.dumps(r) for r in s.cloud.requests)  # the cloud never saw it
        assert len(s.cloud.requests) == 0
        raw = await chat(s, "private", "no personal data here")
        assert raw.headers["x-openmaas-route"].startswith("chosen=cloud-echo")
        event = await audit(s, raw)
        assert event["route"]["privacy"] == {"class": "public", "entities": [], "categories": []}


async def test_masking_round_trips_through_the_cloud(tmp_path, monkeypatch) -> None:
    async with stack(tmp_path, monkeypatch, policy="mask") as s:
        raw = await chat(s, "cloud-echo", PII)
        sent = s.cloud.requests[-1]["messages"][0]["content"]
        assert "ann@example.com" not in sent and "13800138000" not in sent and "4111" not in sent
        assert "[EMAIL_ADDRESS_1]" in sent and "[CN_MOBILE_1]" in sent
        assert raw.parse().choices[0].message.content == PII  # restored in the answer
        assert "masked=1" in raw.headers["x-openmaas-route"]
        stream = await s.client.chat.completions.create(
            model="cloud-echo", messages=[{"role": "user", "content": PII}], stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == PII
        local = await chat(s, "local-echo", PII)  # local deployments get the data as is
        assert s.local.requests[-1]["messages"][0]["content"] == PII
        assert "masked" not in local.headers["x-openmaas-route"]


async def test_a_keys_privacy_policy_decides_where_its_data_goes(tmp_path, monkeypatch) -> None:
    # The config says "allow" for anonymous callers; the keys' own policies must win for their requests.
    async with stack(tmp_path, monkeypatch, policy="allow") as s:
        made = await s.admin.post("/admin/tenants", json={"name": "hospital", "privacy": "local_only"})
        assert made.status_code == 201, made.text

        async def key(**fields: Any) -> openai.AsyncOpenAI:
            resp = await s.admin.post("/admin/keys", json={"tenant": "hospital", **fields})
            assert resp.status_code == 201, resp.text
            return openai.AsyncOpenAI(base_url=str(s.client.base_url), api_key=resp.json()["key"], max_retries=0)

        inherits, masks, allows = (
            await key(name="ward"),
            await key(name="billing", privacy="mask"),
            await key(name="research", privacy="allow"),
        )
        messages = [{"role": "user", "content": PII}]
        try:
            # No policy on the key: the tenant's local_only. The cloud target is dropped, the local fallback serves.
            raw = await inherits.chat.completions.with_raw_response.create(model="private", messages=messages)
            assert raw.parse().choices[0].message.content == PII  # the local echo answered, with the data
            assert "chosen=local-echo" in raw.headers["x-openmaas-route"]
            assert "policy=local_only" in raw.headers["x-openmaas-route"]
            assert len(s.cloud.requests) == 0
            event = await audit(s, raw)
            assert event["route"]["policy"] == "local_only" and event["route"]["data_went_to"] == ["local-echo"]
            with pytest.raises(openai.PermissionDeniedError) as err:  # cloud only: refused, nothing sent
                await inherits.chat.completions.create(model="cloud-echo", messages=messages)
            assert err.value.code == "privacy_policy_violation" and len(s.cloud.requests) == 0

            # The key's mask overrides the tenant's local_only: the cloud gets placeholders, the client the values.
            raw = await masks.chat.completions.with_raw_response.create(model="cloud-echo", messages=messages)
            sent = s.cloud.requests[-1]["messages"][0]["content"]
            assert "ann@example.com" not in sent and "[EMAIL_ADDRESS_1]" in sent
            assert raw.parse().choices[0].message.content == PII
            assert "policy=mask" in raw.headers["x-openmaas-route"]

            # allow: the cloud sees the request as sent.
            await allows.chat.completions.create(model="cloud-echo", messages=messages)
            assert s.cloud.requests[-1]["messages"][0]["content"] == PII
        finally:
            for client in (inherits, masks, allows):
                await client.close()


async def test_masking_restores_tool_call_arguments_whole_and_streamed(tmp_path, monkeypatch) -> None:
    tools = [{"type": "function", "function": {"name": "send", "parameters": {"type": "object"}}}]
    async with stack(tmp_path, monkeypatch, policy="mask") as s:
        messages = [{"role": "user", "content": PII}]
        whole = await s.client.chat.completions.create(model="cloud-tool", messages=messages, tools=tools)
        assert "ann@example.com" not in json.dumps(s.cloud.requests[-1])
        call = whole.choices[0].message.tool_calls[0]
        assert json.loads(call.function.arguments) == {"text": PII}
        stream = await s.client.chat.completions.create(model="cloud-tool", messages=messages, tools=tools, stream=True)
        arguments, finish = "", None
        async for chunk in stream:
            for choice in chunk.choices:
                for delta in choice.delta.tool_calls or []:
                    arguments += delta.function.arguments or ""
                finish = choice.finish_reason or finish
        assert "[EMAIL_ADDRESS_1]" in s.cloud.requests[-1]["messages"][0]["content"]
        assert json.loads(arguments) == {"text": PII} and finish == "tool_calls"


async def test_degraded_mode_serves_locally_and_traffic_returns_to_the_cloud(tmp_path, monkeypatch) -> None:
    async with stack(tmp_path, monkeypatch) as s:
        s.cloud.break_("a", "503")
        s.cloud.break_("b", "drop")
        raw = await chat(s, "strong")
        assert raw.headers["x-openmaas-degraded"] == "true"
        assert raw.parse().choices[0].message.content == "local answer"
        event = await audit(s, raw)
        assert event["degraded"] and event["deployment"] == "local-model"
        for _ in range(3):  # both circuits open now: straight to the local model, nothing sent to the cloud
            raw = await chat(s, "strong")
            assert raw.headers["x-openmaas-degraded"] == "true"
        calls = dict(s.cloud.calls)
        raw = await chat(s, "strong")
        assert s.cloud.calls == calls and "circuit_open" in raw.headers["x-openmaas-route"]
        s.cloud.heal("a")
        s.cloud.heal("b")
        for _ in range(50):
            await asyncio.sleep(0.1)
            raw = await chat(s, "strong")
            if "x-openmaas-degraded" not in raw.headers:
                break
        assert raw.parse().choices[0].message.content == REPLY
        assert raw.headers["x-openmaas-route"].startswith(("chosen=cloud-a", "chosen=cloud-b"))


async def test_openmaas_audit_shows_the_path_of_a_request(tmp_path, monkeypatch) -> None:
    async with stack(tmp_path, monkeypatch, policy="local_only") as s:
        raw = await chat(s, "private", PII)
        request_id = raw.headers["x-request-id"]
        resp = await s.admin.get(f"/admin/audit/{request_id}")
        assert resp.status_code == 200
        anonymous = await s.admin.get(f"/admin/audit/{request_id}", headers={"authorization": "Bearer nope"})
        assert anonymous.status_code == 403
    config = tmp_path / "openmaas.yaml"
    config.write_text(json.dumps({"data_dir": str(tmp_path), "deployments": [], "aliases": {}}))
    out = await asyncio.to_thread(CliRunner().invoke, cli, ["audit", request_id, "--config", str(config)])
    assert out.exit_code == 0, out.output
    assert "served by    local-echo (local)" in out.output
    assert "dropped cloud-echo" in out.output and "privacy" in out.output
    assert "CN_MOBILE" in out.output and "ann@example.com" not in out.output
    missing = await asyncio.to_thread(CliRunner().invoke, cli, ["audit", "req_nope", "--config", str(config)])
    assert missing.exit_code != 0 and "No request" in missing.output
