"""The lifecycle's observers: every request is started once, routed, and finished exactly once with the
outcome that was settled — through every dialect, streams, refusals, failures and test-time compute."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from openmaas.gateway import Call
from openmaas.lifecycle import Observer
from openmaas.metering.meter import Outcome
from openmaas.routing.decision import RouteDecision
from openmaas.server import create_app
from openmaas.testing.serve import serve_app
from tests.conftest import fake_settings, running_app

pytestmark = pytest.mark.anyio
MSG = [{"role": "user", "content": "hello there"}]


class Recorder(Observer):
    """A real observer that keeps what it saw, per request id."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, Any]] = []

    def started(self, call: Call, endpoint: str) -> None:
        self.events.append(("started", call.request_id, endpoint))

    def routed(self, call: Call, decision: RouteDecision, deployment: str | None) -> None:
        self.events.append(("routed", call.request_id, (decision.requested, deployment)))

    def first_token(self, call: Call) -> None:
        self.events.append(("first_token", call.request_id, None))

    def finished(self, call: Call, outcome: Outcome) -> None:
        self.events.append(("finished", call.request_id, outcome))

    def stages(self) -> list[str]:
        return [stage for stage, _, _ in self.events]

    def outcome(self) -> Outcome:
        [outcome] = [o for stage, _, o in self.events if stage == "finished"]
        assert isinstance(outcome, Outcome)
        return outcome


class Broken(Observer):
    def started(self, call: Call, endpoint: str) -> None:
        raise RuntimeError("an observer bug")

    def finished(self, call: Call, outcome: Outcome) -> None:
        raise RuntimeError("an observer bug")


async def test_a_unary_request_is_started_routed_and_finished_once_with_its_tokens(tmp_path: Any) -> None:
    rec = Recorder()
    async with running_app(fake_settings(tmp_path), [rec]) as (_, client):
        r = await client.post("/v1/chat/completions", json={"model": "default", "messages": MSG})
        assert r.status_code == 200
    assert rec.stages() == ["started", "routed", "finished"]
    assert {rid for _, rid, _ in rec.events} == {r.headers["x-request-id"]}
    assert rec.events[1][2] == ("default", "fake-chat")
    outcome = rec.outcome()
    usage = r.json()["usage"]
    assert (outcome.status, outcome.prompt_tokens, outcome.completion_tokens) == (
        200,
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages", "/v1/responses"])
async def test_a_stream_is_finished_only_when_it_ends_in_every_dialect(tmp_path: Any, path: str) -> None:
    rec = Recorder()
    bodies = {
        "/v1/chat/completions": {"model": "default", "messages": MSG, "stream": True},
        "/v1/messages": {"model": "default", "messages": MSG, "max_tokens": 64, "stream": True},
        "/v1/responses": {"model": "default", "input": "hello there", "stream": True, "store": False},
    }
    app = create_app(fake_settings(tmp_path), observers=[rec])
    async with (  # real HTTP: chunks arrive as they are sent
        serve_app(app) as url,
        aiohttp.ClientSession() as session,
        session.post(url + path, json=bodies[path]) as r,
    ):
        assert r.status == 200
        chunks = 0
        async for line in r.content:
            if line.startswith(b"data:"):
                chunks += 1
                if chunks == 1:  # the first chunk is out, the stream is not over
                    assert "first_token" in rec.stages() and "finished" not in rec.stages()
        assert chunks > 3
    assert rec.stages() == ["started", "routed", "first_token", "finished"]
    assert rec.events[0][2] == "chat"  # every dialect runs the chat lifecycle
    outcome = rec.outcome()
    assert outcome.status == 200 and outcome.completion_tokens > 0 and not outcome.interrupted


async def test_a_request_refused_before_routing_is_finished_with_its_status(tmp_path: Any) -> None:
    rec = Recorder()
    async with running_app(fake_settings(tmp_path), [rec]) as (_, client):
        r = await client.post("/v1/chat/completions", json={"model": "default"})
        assert r.status_code == 400
        r = await client.post("/v1/messages", json={"model": "nope", "messages": MSG, "max_tokens": 8})
        assert r.status_code == 404
    assert rec.stages() == ["started", "finished", "started", "finished"]
    statuses = [(o.status, o.error_code) for stage, _, o in rec.events if stage == "finished"]
    assert statuses[0][0] == 400 and statuses[1] == (404, "model_not_found")


async def test_an_upstream_failure_is_routed_nowhere_and_finished_with_the_upstream_status(tmp_path: Any) -> None:
    rec = Recorder()
    async with running_app(fake_settings(tmp_path), [rec]) as (_, client):
        r = await client.post("/v1/chat/completions", json={"model": "fake-down", "messages": MSG})
        assert r.status_code == 503
    assert rec.stages() == ["started", "routed", "finished"]
    assert rec.events[1][2] == ("fake-down", None)
    assert rec.outcome().status == 503


async def test_a_failure_mid_stream_is_finished_as_interrupted(tmp_path: Any) -> None:
    rec = Recorder()
    async with running_app(fake_settings(tmp_path), [rec]) as (_, client):
        body = {"model": "fake-broken", "messages": MSG, "stream": True}
        r = await client.post("/v1/chat/completions", json=body)
        assert "error" in [json.loads(x[6:]) for x in r.text.splitlines() if x.startswith("data: {")][-1]
    assert rec.stages() == ["started", "routed", "first_token", "finished"]
    outcome = rec.outcome()
    assert outcome.interrupted and outcome.status >= 500 and outcome.completion_tokens == 2


async def test_test_time_compute_is_one_request_to_observers(tmp_path: Any) -> None:
    rec = Recorder()
    ttc = {"strategy": "best_of_n", "n": 3, "verifier": {"type": "regex", "pattern": "hello"}}
    async with running_app(fake_settings(tmp_path), [rec]) as (_, client):
        r = await client.post("/v1/chat/completions", json={"model": "default", "messages": MSG, "ttc": ttc})
        assert r.status_code == 200, r.text
    assert rec.stages() == ["started", "routed", "finished"]
    usage = r.json()["usage"]
    outcome = rec.outcome()
    assert (outcome.prompt_tokens, outcome.completion_tokens) == (usage["prompt_tokens"], usage["completion_tokens"])
    assert outcome.prompt_tokens >= 3 * r.json()["ttc"]["usage"]["chosen"]["prompt_tokens"]


async def test_a_failing_observer_never_fails_a_request(tmp_path: Any) -> None:
    rec = Recorder()
    async with running_app(fake_settings(tmp_path), [Broken(), rec]) as (_, client):
        r = await client.post("/v1/chat/completions", json={"model": "default", "messages": MSG})
        assert r.status_code == 200
    assert rec.stages() == ["started", "routed", "finished"]  # the others still hear every stage
