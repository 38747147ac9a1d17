"""Traces: a real OTLP/HTTP receiver (the collector's wire protocol, parsed with ``opentelemetry-proto``) gets a
server span per request and one inference span per attempt, following the GenAI conventions; the upstream
receives the W3C ``traceparent`` of the same trace; no prompt text is exported."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from openmaas.auth.principal import ANONYMOUS
from openmaas.settings import Settings
from openmaas.testing.openai_upstream import OpenAIUpstream
from openmaas.testing.serve import serve_app
from tests.conftest import running_app
from tests.mcp.conftest import time_server

pytestmark = pytest.mark.anyio
PROMPT = "a prompt that must never be exported"
AGENT = [{"tool_calls": [{"name": "time__get_current_time", "arguments": {"timezone": "UTC"}}]}, {"text": "done"}]


class Receiver:
    """An OTLP/HTTP trace receiver: POST /v1/traces with a protobuf ExportTraceServiceRequest."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"] == "/v1/traces":
            self.bodies.append(body)
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/x-protobuf")]}
        )
        await send({"type": "http.response.body", "body": b""})

    def spans(self) -> list[Any]:
        out = []
        for body in self.bodies:
            request = ExportTraceServiceRequest.FromString(body)
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    out.extend(scope.spans)
        return out


def attributes(span: Any) -> dict[str, Any]:
    out = {}
    for kv in span.attributes:
        value = kv.value
        out[kv.key] = getattr(value, value.WhichOneof("value"))
    return out


async def test_spans_follow_the_conventions_and_the_trace_reaches_the_upstream(tmp_path: Path) -> None:
    receiver, upstream = Receiver(), OpenAIUpstream()
    async with serve_app(receiver) as collector, serve_app(upstream) as up:
        deployments = [
            {
                "name": "down",
                "backend": "fake",
                "locality": "local",
                "fallbacks": ["cloud"],
                "params": {"fail_every": 1, "fail_status": 503},
            },
            {"name": "cloud", "backend": "openai_compat", "model": "echo", "params": {"base_url": up + "/v1"}},
            {"name": "agent", "backend": "fake", "locality": "local", "params": {"script": {"steps": AGENT}}},
            {
                "name": "embed",
                "backend": "fake",
                "locality": "local",
                "capabilities": {"embeddings": True, "chat": False, "completions": False},
            },
        ]
        settings = Settings.model_validate(
            {
                "data_dir": str(tmp_path),
                "deployments": deployments,
                "aliases": {},
                "routing": {"retry": {"attempts": 1}},
                "tracing": {"enabled": True, "endpoint": collector + "/v1/traces", "flush_ms": 50},
                "mcp": {"servers": [time_server()]},
                "rag": {"embedding_model": "embed"},
            }
        )
        async with running_app(settings) as (app, client):
            await app.state.mcp.wait_ready(30)
            await app.state.mcp.call(ANONYMOUS, "req_traced_tool", "time__get_current_time", {"timezone": PROMPT})
            chat = {"model": "down", "messages": [{"role": "user", "content": PROMPT}]}
            unary = await client.post("/v1/chat/completions", json=chat)
            streamed = await client.post("/v1/chat/completions", json={**chat, "model": "cloud", "stream": True})
            tool = {"type": "mcp", "server_label": "time", "require_approval": "never"}
            run = await client.post("/v1/responses", json={"model": "agent", "input": "time?", "tools": [tool]})
            assert run.status_code == 200, run.text
            kb = (await client.post("/v1/knowledge_bases", json={"name": "docs"})).json()["id"]
            files = {"file": ("a.txt", b"Berth 3 is on the north quay.")}
            assert (await client.post(f"/v1/knowledge_bases/{kb}/documents", files=files)).status_code == 200
            found = await client.post(f"/v1/knowledge_bases/{kb}/search", json={"query": PROMPT})
            assert found.status_code == 200
            assert unary.status_code == 200 and streamed.status_code == 200
        for _ in range(50):  # the batch processor was flushed at shutdown
            if receiver.bodies:
                break
            await asyncio.sleep(0.05)
    spans = receiver.spans()
    servers = [s for s in spans if s.kind == s.SPAN_KIND_SERVER]
    clients = [s for s in spans if s.kind == s.SPAN_KIND_CLIENT]
    by_request = {attributes(s)["openmaas.request_id"]: s for s in servers}
    first = by_request[unary.headers["x-request-id"]]
    assert first.name == "POST /v1/chat/completions"
    server = attributes(first)
    assert server["http.response.status_code"] == 200 and server["gen_ai.request.model"] == "down"
    assert server["openmaas.deployment"] == "cloud" and server["openmaas.data.destination"] == "cloud"
    assert server["openmaas.privacy.class"] == "public" and server["gen_ai.usage.output_tokens"] > 0
    attempts = [s for s in clients if s.trace_id == first.trace_id]
    assert [s.name for s in attempts] == ["chat down", "chat down"]  # the failed try, then the fallback
    failed, served = (attributes(s) for s in attempts)
    assert failed["openmaas.deployment"] == "down" and failed["error.type"] == "upstream_unavailable"
    assert served["openmaas.deployment"] == "cloud" and "error.type" not in served
    for span in attempts:  # the conventions' required attributes on every inference span
        a = attributes(span)
        assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.provider.name"] in ("openai", "openmaas")
        assert span.parent_span_id == first.span_id
    assert served["gen_ai.provider.name"] == "openai" and served["gen_ai.response.model"] == "echo"
    sent = list(upstream.headers)  # the W3C trace context went to the upstream, in the same trace
    parents = [h.get("traceparent") for h in sent]
    assert all(parents) and parents[0].split("-")[1] == first.trace_id.hex()
    second = by_request[streamed.headers["x-request-id"]]
    assert parents[1].split("-")[1] == second.trace_id.hex() and second.trace_id != first.trace_id
    tool = next(s for s in spans if s.name == "execute_tool time__get_current_time")
    tool_attributes = attributes(tool)
    assert (
        tool_attributes["gen_ai.operation.name"] == "execute_tool"
        and tool_attributes["openmaas.request_id"] == "req_traced_tool"
    )
    assert tool_attributes["openmaas.data.destination"] == "local" and tool_attributes["error.type"] == "tool_error"
    assert tool_attributes["mcp.method.name"] == "tools/call"
    agent = attributes(next(s for s in spans if s.name == "invoke_agent agent"))
    assert (
        agent["gen_ai.operation.name"] == "invoke_agent" and agent["openmaas.request_id"] == run.headers["x-request-id"]
    )
    assert (agent["openmaas.agent.end"], agent["openmaas.agent.steps"], agent["openmaas.agent.tool_calls"]) == (
        "completed",
        2,
        1,
    )
    run_tool = [
        s
        for s in spans
        if s.name == "execute_tool time__get_current_time"
        and attributes(s)["openmaas.request_id"] == run.headers["x-request-id"]
    ]
    assert len(run_tool) == 1 and attributes(run_tool[0])["openmaas.surface"] == "agent:responses"
    retrieval = attributes(next(s for s in spans if s.name == f"retrieval {kb}"))
    assert retrieval["gen_ai.operation.name"] == "retrieval" and retrieval["gen_ai.data_source.id"] == kb
    assert (
        retrieval["openmaas.request_id"] == found.headers["x-request-id"]
        and retrieval["openmaas.retrieval.results"] == 1
    )
    assert not any(PROMPT.encode() in body for body in receiver.bodies)  # content (and tool arguments) never exported


def test_span_attributes_are_the_conventions_own() -> None:
    """Every ``gen_ai.*`` attribute and operation name the tracer writes exists in the conventions package."""
    import inspect

    from opentelemetry.semconv._incubating.attributes import gen_ai_attributes, mcp_attributes

    from openmaas.observability import tracing

    source = inspect.getsource(tracing)
    used = set(re.findall(r'"(gen_ai\.[a-z_.]+)"', source))
    known = {getattr(gen_ai_attributes, n) for n in dir(gen_ai_attributes) if n.startswith("GEN_AI_")}
    assert used and used <= known, used - known
    mcp_used = set(re.findall(r'"(mcp\.[a-z_.]+)"', source))
    assert mcp_used and mcp_used <= {getattr(mcp_attributes, n) for n in dir(mcp_attributes) if n.startswith("MCP_")}
    operations = {v.value for v in gen_ai_attributes.GenAiOperationNameValues}
    assert set(re.findall(r'"gen_ai\.operation\.name": "([a-z_]+)"', source)) <= operations
