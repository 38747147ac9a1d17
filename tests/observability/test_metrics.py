"""Prometheus metrics: conformance with the GenAI semantic conventions (names and units taken from the
``opentelemetry-semantic-conventions`` package, so a drift on either side fails here), and values after a
known sequence of requests — unary, streamed, a failing deployment with a fallback, refusals."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes
from opentelemetry.semconv._incubating.metrics import gen_ai_metrics
from prometheus_client.parser import text_string_to_metric_families

from openmaas.observability.metrics import CONVENTIONS, ERROR_TYPE, SEMCONV_VERSION
from openmaas.settings import Settings
from tests.conftest import running_app
from tests.helpers import ADMIN_KEY

pytestmark = pytest.mark.anyio
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}


class RecordingMeter:
    """Stands in for an OpenTelemetry Meter to read what the conventions package declares."""

    def __init__(self) -> None:
        self.declared: dict[str, dict[str, str]] = {}

    def create_histogram(self, name: str, description: str = "", unit: str = "", **_: Any) -> None:
        self.declared[name] = {"unit": unit, "kind": "histogram"}


def declared() -> dict[str, dict[str, str]]:
    meter = RecordingMeter()
    for name, fn in inspect.getmembers(gen_ai_metrics, inspect.isfunction):
        if name.startswith("create_gen_ai_"):
            fn(meter)
    return meter.declared


def test_our_table_matches_the_conventions_package() -> None:
    from importlib.metadata import version

    assert version("opentelemetry-semantic-conventions") == "0.66b2" and SEMCONV_VERSION == "1.44.0"
    spec = declared()
    assert {c.name for c in CONVENTIONS.values()} == set(spec)  # every client metric, none invented
    for c in CONVENTIONS.values():
        assert c.unit == spec[c.name]["unit"], c.name
        assert c.prometheus == c.name.replace(".", "_") + ("_seconds" if c.unit == "s" else "")
    attributes = {getattr(gen_ai_attributes, n) for n in dir(gen_ai_attributes) if n.startswith("GEN_AI_")}
    for c in CONVENTIONS.values():
        assert set(c.required) <= attributes  # every required attribute is a real convention attribute


def settings(tmp_path: Path, **extra: Any) -> Settings:
    deployments = [
        {
            "name": "fake-chat",
            "backend": "fake",
            "locality": "local",
            "pricing": {"input_per_mtok": 1.0, "output_per_mtok": 2.0},
            "params": {"reply": "one two three four five", "engine_timings": True},
        },
        {
            "name": "flaky",
            "backend": "fake",
            "locality": "local",
            "fallbacks": ["fake-chat"],
            "params": {"fail_every": 1, "fail_status": 503},
        },
    ]
    data: dict[str, Any] = {"data_dir": str(tmp_path), "deployments": deployments, "aliases": {"default": "fake-chat"}}
    data["routing"] = {"retry": {"attempts": 1}}
    data.update(extra)
    return Settings.model_validate(data)


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def samples(family: Any, suffix: str, **labels: str) -> list[Any]:
    return [
        s for s in family.samples if s.name.endswith(suffix) and all(s.labels.get(k) == v for k, v in labels.items())
    ]


async def test_a_known_sequence_gives_exact_counts_and_conformant_series(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENMAAS_ADMIN_KEY", ADMIN_KEY)
    async with running_app(settings(tmp_path)) as (_, client):
        chat = {"model": "fake-chat", "messages": [{"role": "user", "content": "hello there"}]}
        for _ in range(3):
            assert (await client.post("/v1/chat/completions", json=chat)).status_code == 200
        streamed = {**chat, "stream": True}
        assert (await client.post("/v1/chat/completions", json=streamed)).status_code == 200
        assert (await client.post("/v1/chat/completions", json={**chat, "model": "flaky"})).status_code == 200
        assert (await client.post("/v1/chat/completions", json={**chat, "model": "nope"})).status_code == 404
        assert (await client.get("/metrics")).status_code == 401  # the admin key guards it by default
        r = await client.get("/metrics", headers=ADMIN)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    found = families(r.text)
    # conformance: every GenAI series has the convention's name, kind and required labels
    for c in CONVENTIONS.values():
        family = found[c.prometheus]
        assert family.type == "histogram", c.name
        for sample in family.samples:
            for attribute in c.required:
                assert sample.labels.get(attribute.replace(".", "_")), (c.name, attribute, sample)
    for sample in found[CONVENTIONS["duration"].prometheus].samples:
        assert ERROR_TYPE.replace(".", "_") in sample.labels
    # values: 5 chat operations routed (3 unary, 1 streamed, 1 on flaky → fake-chat), the unknown model none
    duration = found[CONVENTIONS["duration"].prometheus]
    fake = samples(duration, "_count", gen_ai_request_model="fake-chat", gen_ai_operation_name="chat")
    flaky = samples(duration, "_count", gen_ai_request_model="flaky")
    assert sum(s.value for s in fake) == 4 and sum(s.value for s in flaky) == 1
    assert {s.labels["gen_ai_provider_name"] for s in fake} == {"openmaas"}
    tokens = found[CONVENTIONS["token_usage"].prometheus]
    output = samples(tokens, "_sum", gen_ai_token_type="output")
    assert sum(s.value for s in output) == 5 * 5  # "one two three four five", five times
    ttft = found[CONVENTIONS["server_ttft"].prometheus]  # what the engine measured, not the proxy
    assert sum(s.value for s in samples(ttft, "_count", gen_ai_request_model="fake-chat")) == 4
    assert sum(s.value for s in samples(ttft, "_sum", gen_ai_request_model="fake-chat")) == pytest.approx(4 * 0.020)
    tpot = found[CONVENTIONS["server_tpot"].prometheus]
    assert sum(s.value for s in samples(tpot, "_sum")) == pytest.approx(5 * 0.010)
    first = found[CONVENTIONS["first_chunk"].prometheus]
    assert sum(s.value for s in samples(first, "_count")) == 1  # one streamed request
    requests = found["openmaas_requests"]
    assert sum(s.value for s in samples(requests, "_total", status="200")) == 5
    assert sum(s.value for s in samples(requests, "_total", status="404", error_code="model_not_found")) == 1
    attempts = found["openmaas_deployment_attempts"]
    assert samples(attempts, "_total", deployment="flaky")[0].value == 1  # it failed once…
    assert samples(found["openmaas_fallbacks"], "_total", deployment="fake-chat")[0].value == 1  # …and fell back
    cost = sum(s.value for s in samples(found["openmaas_cost_usd"], "_total", model="fake-chat"))
    assert cost > 0
    states = {(s.labels["deployment"], s.labels["state"]): s.value for s in found["openmaas_circuit_state"].samples}
    assert states[("fake-chat", "closed")] == 1
    assert found["openmaas_requests_in_flight"].samples[0].value == 0
    assert "hello there" not in r.text  # no prompt text in metrics


async def test_refusals_and_tenant_labels_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENMAAS_ADMIN_KEY", ADMIN_KEY)
    config = settings(tmp_path, metrics={"tenant_labels": True, "key_labels": True, "label_cap": 1, "access": "public"})
    async with running_app(config) as (_, client):
        keys = []
        for tenant in ("acme", "globex"):
            await client.post("/admin/tenants", json={"name": tenant}, headers=ADMIN)
            r = await client.post("/admin/keys", json={"tenant": tenant, "rpm": 1}, headers=ADMIN)
            keys.append(r.json()["key"])
        chat = {"model": "fake-chat", "messages": [{"role": "user", "content": "hi"}]}
        for key in keys:
            headers = {"authorization": f"Bearer {key}"}
            assert (await client.post("/v1/chat/completions", json=chat, headers=headers)).status_code == 200
            assert (await client.post("/v1/chat/completions", json=chat, headers=headers)).status_code == 429
        r = await client.get("/metrics")  # access: public
        assert r.status_code == 200
    found = families(r.text)
    tenants = {s.labels["tenant"] for s in found["openmaas_requests"].samples}
    assert tenants == {"acme", "other"}  # the cap of 1 puts the second tenant in "other"
    labelled = {s.labels["key"] for s in found["openmaas_requests"].samples}
    assert len(labelled) == 2 and "other" in labelled  # the first key's listed prefix, then "other"
    prefix = next(k for k in labelled if k != "other")
    assert keys[0].startswith(prefix.removesuffix("…")) and len(prefix) < len(keys[0]) // 2
    assert samples(found["openmaas_refusals"], "_total", kind="rate_limit")[0].value == 2
    assert not any(k[:12] in r.text for k in keys)  # never a key


async def test_metrics_can_be_turned_off(tmp_path: Path) -> None:
    async with running_app(settings(tmp_path, metrics={"enabled": False})) as (app, client):
        assert app.state.metrics is None
        assert (await client.get("/metrics")).status_code == 404


async def test_a_separate_listen_address_serves_without_auth(tmp_path: Path) -> None:
    from tests.helpers import free_port

    port = free_port()
    async with running_app(settings(tmp_path, metrics={"listen": f"127.0.0.1:{port}"})) as (_, client):
        await client.post(
            "/v1/chat/completions", json={"model": "fake-chat", "messages": [{"role": "user", "content": "x"}]}
        )
        async with httpx.AsyncClient() as http:
            r = await http.get(f"http://127.0.0.1:{port}/metrics")
        assert r.status_code == 200 and "gen_ai_client_operation_duration_seconds_count" in r.text


async def test_tool_calls_are_counted_and_timed(tmp_path: Path) -> None:
    from openmaas.auth.principal import ANONYMOUS
    from tests.mcp.conftest import time_server

    config = settings(tmp_path, metrics={"access": "public"}, mcp={"servers": [time_server()]})
    async with running_app(config) as (app, client):
        hub = app.state.mcp
        await hub.wait_ready(30)
        await hub.call(ANONYMOUS, "req_tool_metrics", "time__get_current_time", {"timezone": "UTC"})
        bad = await hub.call(ANONYMOUS, "req_tool_metrics", "time__get_current_time", {"timezone": "Nowhere/Bad"})
        assert bad.is_error
        text = (await client.get("/metrics")).text
    found = families(text)
    calls = {
        (s.labels["tool"], s.labels["status"], s.labels["error_code"]): s.value
        for s in found["openmaas_tool_calls"].samples
    }
    assert (
        calls[("time__get_current_time", "200", "")] == 1
        and calls[("time__get_current_time", "200", "tool_error")] == 1
    )
    durations = samples(found["openmaas_tool_call_duration_seconds"], "_count", server="time")
    assert sum(s.value for s in durations) == 2


async def test_store_latencies_are_measured_on_postgres_and_redis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.helpers import store_settings

    monkeypatch.setenv("OPENMAAS_ADMIN_KEY", ADMIN_KEY)
    store = await store_settings("postgres", tmp_path)
    async with running_app(settings(tmp_path, store=store, metrics={"access": "public"})) as (app, client):
        await client.post("/admin/tenants", json={"name": "acme"}, headers=ADMIN)
        key = (await client.post("/admin/keys", json={"tenant": "acme", "rpm": 100}, headers=ADMIN)).json()["key"]
        chat = {"model": "fake-chat", "messages": [{"role": "user", "content": "hi"}]}
        for _ in range(3):
            r = await client.post("/v1/chat/completions", json=chat, headers={"authorization": f"Bearer {key}"})
            assert r.status_code == 200
        created = await client.post(
            "/v1/responses", json={"model": "fake-chat", "input": "hi"}, headers={"authorization": f"Bearer {key}"}
        )
        assert created.status_code == 200, created.text
        got = await client.get(f"/v1/responses/{created.json()['id']}", headers={"authorization": f"Bearer {key}"})
        assert got.status_code == 200
        await app.state.services.ledger.sync()
        found = families((await client.get("/metrics")).text)
    database = found["openmaas_database_duration_seconds"]
    assert samples(database, "_count", operation="responses_write")[0].value >= 1
    assert samples(database, "_count", operation="responses_read")[0].value >= 1
    redis_calls = samples(found["openmaas_redis_call_duration_seconds"], "_count")
    assert redis_calls and redis_calls[0].value >= 3  # each admission is one script call (settlements ride along)
    writes = samples(found["openmaas_ledger_write_duration_seconds"], "_count")
    assert writes and writes[0].value >= 1


async def test_the_zero_setup_server_serves_metrics_without_a_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENMAAS_ADMIN_KEY", raising=False)
    async with running_app(settings(tmp_path)) as (_, client):  # loopback, no admin key: like `make serve`
        r = await client.get("/metrics")
        assert r.status_code == 200 and "gen_ai_client_operation_duration_seconds" in r.text


async def test_agent_runs_are_counted_and_timed(tmp_path: Path) -> None:
    from tests.mcp.conftest import time_server

    steps = [{"tool_calls": [{"name": "time__get_current_time", "arguments": {"timezone": "UTC"}}]}, {"text": "ok"}]
    deployments = [{"name": "agent", "backend": "fake", "locality": "local", "params": {"script": {"steps": steps}}}]
    config = settings(
        tmp_path, deployments=deployments, aliases={}, metrics={"access": "public"}, mcp={"servers": [time_server()]}
    )
    async with running_app(config) as (app, client):
        await app.state.mcp.wait_ready(30)
        tool = {"type": "mcp", "server_label": "time", "require_approval": "never"}
        r = await client.post("/v1/responses", json={"model": "agent", "input": "time?", "tools": [tool]})
        assert r.status_code == 200, r.text
        found = families((await client.get("/metrics")).text)
    runs = samples(found["openmaas_agent_runs"], "_total", surface="responses", end="completed")
    assert runs and runs[0].value == 1
    agent = samples(found[CONVENTIONS["duration"].prometheus], "_count", gen_ai_operation_name="invoke_agent")
    assert sum(s.value for s in agent) == 1
    chats = samples(found[CONVENTIONS["duration"].prometheus], "_count", gen_ai_operation_name="chat")
    assert sum(s.value for s in chats) == 2  # its two model steps, each a request of its own
