"""The server-side agent loop with a scripted deterministic model, through the Responses API and chat completions
(the official openai SDK over loopback), unary and streamed: steps, parallel calls, limits, approvals, tool
errors, hung tools, privacy re-routing; every model and tool call in the ledger under the request's id."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from openmaas.store import audit
from openmaas.testing.mcp_server import RECORD
from openmaas.testing.openai_upstream import OpenAIUpstream
from openmaas.testing.serve import serve_app
from tests.mcp.conftest import gateway, settings, time_server

pytestmark = pytest.mark.anyio
TOKYO = {"name": "time__get_current_time", "arguments": {"timezone": "Asia/Tokyo"}}
PARIS = {"name": "time__get_current_time", "arguments": {"timezone": "Europe/Paris"}}
TIME_TOOL = {"type": "mcp", "server_label": "time", "require_approval": "never"}


def local_recorder(url: str, **extra: Any) -> dict[str, Any]:
    return {"name": "rec", "url": url + "/mcp", "token_env": "RECORDER_TOKEN", "locality": "local", **extra}


def agent_settings(tmp_path: Path, steps: list[dict[str, Any]], servers: list[dict[str, Any]], **extra: Any) -> Any:
    model = {"name": "agent", "backend": "fake", "locality": "local", "pricing": {"input_per_mtok": 1.0}}
    script: dict[str, Any] = {"steps": steps}
    if extra.pop("force", False):
        script["force"] = True
    model["params"] = {"script": script}
    return settings(tmp_path, servers, deployments=[model], aliases={"default": "agent"}, **extra)


@contextlib.asynccontextmanager
async def client_for(config: Any) -> AsyncIterator[tuple[Any, openai.AsyncOpenAI]]:
    async with gateway(config) as (app, url), openai.AsyncOpenAI(base_url=url + "/v1", api_key="x") as client:
        yield app, client


async def trail(app: Any, request_id: str) -> list[dict[str, Any]]:
    await app.state.services.ledger.sync()
    return await audit.trail(app.state.services.db, request_id)


async def test_responses_runs_parallel_tool_calls_then_answers_and_meters_each_call(tmp_path: Path) -> None:
    steps = [{"tool_calls": [TOKYO, PARIS]}, {"text": "Times: {results}"}]
    config = agent_settings(tmp_path, steps, [time_server(price_per_call_usd=0.001)])
    async with client_for(config) as (app, client):
        raw = await client.responses.with_raw_response.create(
            model="agent", input="Time in Tokyo and Paris?", tools=[TIME_TOOL]
        )  # type: ignore[list-item]
        response = raw.parse()
        rows = await trail(app, raw.headers["x-request-id"])
    kinds = [item.type for item in response.output]
    assert kinds == ["mcp_list_tools", "mcp_call", "mcp_call", "message"]
    calls = [item for item in response.output if item.type == "mcp_call"]
    assert [json.loads(c.output or "{}")["timezone"] for c in calls] == ["Asia/Tokyo", "Europe/Paris"]
    assert all(c.server_label == "time" and c.name == "get_current_time" and c.error is None for c in calls)
    assert response.status == "completed" and response.output_text.startswith("Times: {")
    assert "Asia/Tokyo" in response.output_text and "Europe/Paris" in response.output_text
    agent = response.model_extra["openmaas"]["agent"]  # type: ignore[index]
    assert agent["end"] == "completed" and agent["steps"] == 2 and agent["tool_calls"] == 2
    models = [r for r in rows if r["endpoint"] == "responses"]
    tools = [r for r in rows if r["endpoint"] == "tool"]
    assert len(models) == 2 and len(tools) == 2  # every model step and every tool call, once
    assert {r["route"]["step"] for r in tools} == {1} and {r["route"]["surface"] for r in tools} == {"agent:responses"}
    assert sum(r["cost_usd"] for r in tools) == pytest.approx(0.002)
    model_cost = sum(r["cost_usd"] for r in models)
    assert agent["cost_usd"] == pytest.approx(model_cost + 0.002)  # the run's cost is the ledger's sum
    assert response.usage is not None
    assert response.usage.input_tokens == sum(r["prompt_tokens"] for r in models)


async def test_a_streamed_run_emits_mcp_events_as_they_happen(tmp_path: Path) -> None:
    steps = [{"tool_calls": [TOKYO]}, {"text": "It is {results}"}]
    config = agent_settings(tmp_path, steps, [time_server()])
    async with client_for(config) as (_, client):
        stream = await client.responses.create(model="agent", input="Tokyo?", tools=[TIME_TOOL], stream=True)  # type: ignore[list-item]
        events = [event async for event in stream]
    kinds = [e.type for e in events]
    order = [
        "response.created",
        "response.mcp_list_tools.in_progress",
        "response.mcp_list_tools.completed",
        "response.mcp_call.in_progress",
        "response.mcp_call_arguments.delta",
        "response.mcp_call_arguments.done",
        "response.mcp_call.completed",
        "response.output_text.delta",
        "response.completed",
    ]
    positions = [kinds.index(k) for k in order]
    assert positions == sorted(positions)  # the tool's events come before the answer's text, not at the end
    assert [e.sequence_number for e in events] == list(range(len(events)))
    final = events[-1].response  # type: ignore[union-attr]
    assert [i.type for i in final.output] == ["mcp_list_tools", "mcp_call", "message"]
    assert "Asia/Tokyo" in final.output_text


async def test_chat_completions_runs_the_loop_through_the_agent_field(tmp_path: Path) -> None:
    steps = [{"tool_calls": [TOKYO]}, {"text": "Answer: {results}"}]
    config = agent_settings(tmp_path, steps, [time_server()])
    body = {"agent": {"tools": [{"type": "mcp", "server_label": "time"}], "max_steps": 3}}
    async with client_for(config) as (_, client):
        done = await client.chat.completions.create(
            model="agent", messages=[{"role": "user", "content": "Tokyo?"}], extra_body=body
        )
        assert done.choices[0].finish_reason == "stop"
        assert (done.choices[0].message.content or "").startswith("Answer: {") and "Asia/Tokyo" in str(
            done.choices[0].message.content
        )
        trace = done.model_extra["openmaas"]["agent"]  # type: ignore[index]
        assert trace["steps"] == 2 and trace["tool_calls"] == 1
        assert [t.get("event") for t in trace["trace"] if "event" in t] == ["mcp_call.started", "mcp_call.completed"]
        stream = await client.chat.completions.create(
            model="agent", messages=[{"role": "user", "content": "Tokyo?"}], extra_body=body, stream=True
        )
        chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Answer: {") and "Asia/Tokyo" in text
    progress = [
        c.model_extra["openmaas"]["agent_event"]["event"]
        for c in chunks
        if "agent_event" in (c.model_extra or {}).get("openmaas", {})
    ]  # type: ignore[index]
    assert progress == ["mcp_call.started", "mcp_call.completed"]
    assert chunks[-1].choices[0].finish_reason == "stop"


@pytest.mark.parametrize(
    ("limit", "steps", "force", "expect_tool_rows"),
    [
        ({"max_steps": 2}, [{"tool_calls": [TOKYO]}], True, 2),
        ({"max_tool_calls": 1}, [{"tool_calls": [TOKYO, PARIS]}, {"text": "x"}], False, 0),
        (
            {"max_cost_usd": 0.0015},
            [{"tool_calls": [TOKYO]}, {"tool_calls": [PARIS]}, {"text": "x"}],
            False,
            2,
        ),
    ],
)
async def test_a_run_stops_at_its_limits(
    tmp_path: Path, limit: dict[str, Any], steps: list[dict[str, Any]], force: bool, expect_tool_rows: int
) -> None:
    config = agent_settings(tmp_path, steps, [time_server(price_per_call_usd=0.001)], force=force)
    async with client_for(config) as (app, client):
        raw = await client.responses.with_raw_response.create(
            model="agent",
            input="go",
            tools=[TIME_TOOL],
            extra_body={"agent": limit},  # type: ignore[list-item]
        )
        response = raw.parse()
        rows = await trail(app, raw.headers["x-request-id"])
    name = next(iter(limit)).removesuffix("_usd")
    assert response.status == "incomplete" and response.incomplete_details is not None
    assert response.incomplete_details.reason == name  # type: ignore[comparison-overlap]
    assert len([r for r in rows if r["endpoint"] == "tool"]) == expect_tool_rows
    calls = [i for i in response.output if i.type == "mcp_call"]
    assert len(calls) == expect_tool_rows  # the ledger and the calls actually made agree


async def test_a_hung_tool_times_out_within_the_runs_time_limit(tmp_path: Path, recorder: Any) -> None:
    server, url = recorder
    steps = [{"tool_calls": [{"name": "rec__slow", "arguments": {"seconds": 3}}]}, {"text": "after: {results}"}]
    config = agent_settings(tmp_path, steps, [local_recorder(url)])
    tool = {"type": "mcp", "server_label": "rec", "require_approval": "never"}
    async with client_for(config) as (_, client):
        response = await client.responses.create(
            model="agent", input="go", tools=[tool], extra_body={"agent": {"max_seconds": 1}}
        )  # type: ignore[list-item]
    call = next(i for i in response.output if i.type == "mcp_call")
    assert call.error is not None and call.error.type == "http_error" and call.error.code == 504  # type: ignore[union-attr]
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_seconds"  # type: ignore[union-attr,comparison-overlap]
    assert server.tools_called() == ["slow"]


async def test_tool_errors_go_back_to_the_model_as_results(tmp_path: Path, recorder: Any) -> None:
    _, url = recorder
    steps = [
        {"tool_calls": [{"name": "rec__broken", "arguments": {}}, {"name": "rec__slow", "arguments": {"seconds": 5}}]},
        {"text": "saw: {results}"},
    ]
    config = agent_settings(tmp_path, steps, [local_recorder(url, call_timeout_s=0.5)])
    tool = {"type": "mcp", "server_label": "rec", "require_approval": "never"}
    async with client_for(config) as (_, client):
        response = await client.responses.create(model="agent", input="go", tools=[tool])  # type: ignore[list-item]
    assert response.status == "completed"
    errors = [i.error for i in response.output if i.type == "mcp_call"]
    assert [e.type for e in errors] == ["mcp_tool_execution_error", "http_error"]  # type: ignore[union-attr]
    assert (
        "Error executing tool broken" in response.output_text and "did not answer within 0.5 s" in response.output_text
    )


async def test_a_call_that_needs_approval_waits_for_the_client(tmp_path: Path, recorder: Any) -> None:
    server, url = recorder
    steps = [{"tool_calls": [{"name": "rec__shout", "arguments": {"text": "hi"}}]}, {"text": "done: {results}"}]
    config = agent_settings(tmp_path, steps, [local_recorder(url)])
    tool = {"type": "mcp", "server_label": "rec", "require_approval": {"never": {"tool_names": ["lookup"]}}}
    async with client_for(config) as (_, client):
        first = await client.responses.create(model="agent", input="shout hi", tools=[tool])  # type: ignore[list-item]
        request = next(i for i in first.output if i.type == "mcp_approval_request")
        assert request.name == "shout" and json.loads(request.arguments) == {"text": "hi"}
        assert server.received == []  # nothing ran before the approval
        approved = await client.responses.create(
            model="agent",
            previous_response_id=first.id,
            tools=[tool],  # type: ignore[list-item]
            input=[{"type": "mcp_approval_response", "approval_request_id": request.id, "approve": True}],
        )
        assert server.received == [("shout", {"text": "hi"})]
        assert approved.output_text == "done: HI"
        call = next(i for i in approved.output if i.type == "mcp_call")
        assert call.id == request.id and call.output == "HI"
        declined = await client.responses.create(
            model="agent",
            previous_response_id=first.id,
            tools=[tool],  # type: ignore[list-item]
            input=[{"type": "mcp_approval_response", "approval_request_id": request.id, "approve": False}],
        )
        assert declined.output_text.startswith("done: ") and "The user declined this call" in declined.output_text
        assert len(server.received) == 1
        with pytest.raises(openai.BadRequestError):
            await client.responses.create(
                model="agent",
                previous_response_id=first.id,
                tools=[tool],  # type: ignore[list-item]
                input=[{"type": "mcp_approval_response", "approval_request_id": "mcpr_unknown", "approve": True}],
            )


async def test_a_sensitive_tool_result_never_reaches_a_cloud_model(tmp_path: Path, recorder: Any) -> None:
    server, url = recorder
    cloud, local = OpenAIUpstream(), OpenAIUpstream(reply="local answer")
    async with serve_app(cloud) as cloud_url, serve_app(local) as local_url:

        def dep(name: str, model: str, base: str, locality: str) -> dict[str, Any]:
            params = {"base_url": base + "/v1"}
            return {"name": name, "backend": "openai_compat", "model": model, "locality": locality, "params": params}

        config = settings(
            tmp_path,
            [local_recorder(url)],
            deployments=[
                dep("cloud-agent", "echo-tool", cloud_url, "cloud"),
                dep("local-agent", "m", local_url, "local"),
            ],
            aliases={"private": {"targets": ["cloud-agent"], "fallbacks": ["local-agent"]}},
            privacy={"policy": "local_only"},
        )
        tool = {"type": "mcp", "server_label": "rec", "allowed_tools": ["records"], "require_approval": "never"}
        async with client_for(config) as (app, client):
            raw = await client.responses.with_raw_response.create(model="private", input="Fetch case 7.", tools=[tool])  # type: ignore[list-item]
            response = raw.parse()
            rows = await trail(app, raw.headers["x-request-id"])
    assert server.received == [("records", {"text": "Fetch case 7."})]  # step 1 (public) ran on the cloud model
    assert response.output_text == "local answer"  # step 2 (holds the sensitive record) ran locally
    assert len(cloud.requests) == 1 and not any("ann.lee@example.com" in json.dumps(r) for r in cloud.requests)
    assert len(local.requests) == 1 and RECORD in json.dumps(local.requests[0])
    served = [r["deployment"] for r in rows if r["endpoint"] == "responses"]
    assert served == ["cloud-agent", "local-agent"]


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"tools": [{"type": "mcp"}]}, "needs 'server_label'"),
        ({"tools": [{"type": "mcp", "server_label": "nowhere"}]}, "No MCP server 'nowhere'"),
        ({"tools": [{"type": "mcp", "server_label": "time", "require_approval": 3}]}, "require_approval"),
        ({"tools": [{"type": "mcp", "server_label": "time", "allowed_tools": "x"}]}, "allowed_tools"),
        ({"tools": [TIME_TOOL], "agent": {"max_steps": "many"}}, "agent.max_steps"),
        ({"tools": [TIME_TOOL], "background": True}, "background"),
        ({"tools": [TIME_TOOL], "stream": True, "model": "no-such-model"}, "no-such-model"),
    ],
)
async def test_bad_agent_requests_get_a_400_in_the_openai_envelope(
    tmp_path: Path, extra: dict[str, Any], needle: str
) -> None:
    config = agent_settings(tmp_path, [{"text": "x"}], [time_server()])
    async with gateway(config) as (_, url), httpx.AsyncClient(base_url=url) as http:
        body = {"model": "agent", "input": "go", **extra}
        r = await http.post("/v1/responses", json=body)
        assert 400 <= r.status_code < 500, r.text
        assert needle in r.json()["error"]["message"]
        chat = {"model": "agent", "messages": [{"role": "user", "content": "go"}], "agent": {"tools": [{"type": "x"}]}}
        r = await http.post("/v1/chat/completions", json=chat)
        assert r.status_code == 400 and "only tools of type 'mcp'" in r.json()["error"]["message"]
        r = await http.post(
            "/v1/chat/completions", json={**chat, "agent": {"tools": [{**TIME_TOOL, "require_approval": "always"}]}}
        )
        assert r.status_code == 400 and "cannot ask for approval" in r.json()["error"]["message"]
