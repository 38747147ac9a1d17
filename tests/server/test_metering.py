"""Auth, limits, budgets and the ledger through the whole app, on both store backends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from openmaas.gateway import Call
from openmaas.metering.meter import _quota
from tests.conftest import ledger_events, metered_settings, running_app
from tests.helpers import ADMIN_KEY

pytestmark = pytest.mark.anyio
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
MSG = [{"role": "user", "content": "hello there"}]


class Env:
    def __init__(self, app: Starlette, client: httpx.AsyncClient) -> None:
        self.app = app
        self.client = client

    async def tenant(self, name: str, **fields: Any) -> dict[str, Any]:
        r = await self.client.post("/admin/tenants", json={"name": name, **fields}, headers=ADMIN)
        assert r.status_code == 201, r.text
        return dict(r.json())

    async def key(self, tenant: str, **fields: Any) -> str:
        r = await self.client.post("/admin/keys", json={"tenant": tenant, **fields}, headers=ADMIN)
        assert r.status_code == 201, r.text
        return str(r.json()["key"])

    async def chat(self, key: str, model: str = "fake-chat", **body: Any) -> httpx.Response:
        payload = {"model": model, "messages": MSG, "max_tokens": 10, **body}
        return await self.client.post("/v1/chat/completions", json=payload, headers={"authorization": f"Bearer {key}"})

    async def events(self) -> list[dict[str, Any]]:
        return await ledger_events(self.app)


@pytest.fixture
async def env(tmp_path: Any, store: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Env]:
    monkeypatch.setenv("OPENMAAS_ADMIN_KEY", ADMIN_KEY)
    async with running_app(metered_settings(tmp_path, store)) as (app, client):
        yield Env(app, client)


async def test_keys_are_required_and_errors_use_the_envelope(env: Env) -> None:
    await env.tenant("acme")
    key = await env.key("acme")
    none = await env.client.post("/v1/chat/completions", json={"model": "fake-chat", "messages": MSG})
    bad = await env.chat("om-not-a-real-key")
    assert none.status_code == 401 and none.json()["error"]["code"] == "missing_api_key"
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "invalid_api_key"
    assert "om-not-a-real-key" not in bad.text
    ok = await env.chat(key)
    assert ok.status_code == 200, ok.text
    via_x_api_key = await env.client.post(
        "/v1/chat/completions", json={"model": "fake-chat", "messages": MSG}, headers={"x-api-key": key}
    )
    assert via_x_api_key.status_code == 200
    models = await env.client.get("/v1/models")
    assert models.status_code == 401


async def test_revoked_expired_and_rotated_keys(env: Env) -> None:
    await env.tenant("acme")
    r = await env.client.post("/admin/keys", json={"tenant": "acme", "name": "old"}, headers=ADMIN)
    key, key_id = r.json()["key"], r.json()["id"]
    assert "hash" not in r.json()
    rotated = await env.client.post(f"/admin/keys/{key_id}/rotate", headers=ADMIN)
    new_key = rotated.json()["key"]
    assert (await env.chat(key)).status_code == 401
    assert (await env.chat(new_key)).status_code == 200
    await env.client.post(f"/admin/keys/{key_id}/revoke", headers=ADMIN)
    revoked = await env.chat(new_key)
    assert revoked.status_code == 401 and revoked.json()["error"]["code"] == "key_revoked"
    expired_key = await env.key("acme", expires_at=1.0)
    expired = await env.chat(expired_key)
    assert expired.status_code == 401 and expired.json()["error"]["code"] == "key_expired"


async def test_allowed_models_and_disabled_tenants(env: Env) -> None:
    await env.tenant("acme")
    key = await env.key("acme", models=["default"])
    assert (await env.chat(key, model="default")).status_code == 200
    refused = await env.chat(key, model="fake-other")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "model_not_allowed"
    await env.client.patch("/admin/tenants/acme", json={"enabled": False}, headers=ADMIN)
    disabled = await env.chat(key, model="default")
    assert disabled.status_code == 403 and disabled.json()["error"]["code"] == "tenant_disabled"


async def test_admin_api_refuses_tenant_keys_every_write_and_shows_them_only_their_tenant(env: Env) -> None:
    await env.tenant("acme")
    await env.tenant("other")
    key = await env.key("acme")
    tenant_key = {"authorization": f"Bearer {key}"}
    as_tenant = await env.client.post("/admin/tenants", json={"name": "mine"}, headers=tenant_key)
    assert as_tenant.status_code == 403 and as_tenant.json()["error"]["code"] == "admin_required"
    new_key = await env.client.post("/admin/keys", json={"tenant": "acme"}, headers=tenant_key)
    assert new_key.status_code == 403 and new_key.json()["error"]["code"] == "admin_required"
    listed = await env.client.get("/admin/tenants", headers=tenant_key)
    assert [t["name"] for t in listed.json()["data"]] == ["acme"]  # reads: its own tenant only
    anonymous = await env.client.get("/admin/tenants")
    assert anonymous.status_code == 401
    invalid = await env.client.post("/admin/tenants", json={"name": "x", "budget_usd": -1}, headers=ADMIN)
    assert invalid.status_code == 400 and invalid.json()["error"]["param"] == "budget_usd"


async def test_rate_limit_429_has_openai_headers_and_differs_from_an_upstream_429(env: Env) -> None:
    await env.tenant("acme")
    key = await env.key("acme", rpm=3, tpm=100_000)
    ok = [await env.chat(key) for _ in range(3)]
    assert all(r.status_code == 200 for r in ok)
    assert ok[0].headers["x-ratelimit-limit-requests"] == "3"
    assert ok[0].headers["x-ratelimit-remaining-requests"] == "2"
    assert ok[2].headers["x-ratelimit-remaining-requests"] == "0"
    assert ok[0].headers["x-ratelimit-limit-tokens"] == "100000"
    assert int(ok[0].headers["x-ratelimit-remaining-tokens"]) < 100_000
    assert "x-ratelimit-reset-requests" in ok[0].headers and "x-ratelimit-reset-tokens" in ok[0].headers
    refused = await env.chat(key)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    other = await env.key("acme")
    upstream = await env.chat(other, model="fake-429")
    assert upstream.status_code == 429 and upstream.json()["error"]["code"] == "upstream_rate_limited"


async def test_tenant_limit_holds_across_its_keys(env: Env) -> None:
    await env.tenant("acme", rpm=4)
    keys = [await env.key("acme") for _ in range(3)]
    statuses = [(await env.chat(keys[i % 3])).status_code for i in range(6)]
    assert statuses == [200, 200, 200, 200, 429, 429]


async def test_concurrent_requests_cannot_overshoot_a_budget(env: Env) -> None:
    # fake-chat: $1000/M in, $2000/M out. Each request reserves (prompt bound + 10 out) and costs far less.
    await env.tenant("acme")
    key = await env.key("acme", budget_usd=0.5, budget_period="month")
    responses = await asyncio.gather(*(env.chat(key) for _ in range(60)))
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) > 0 and statuses.count(402) > 0, statuses
    refused = next(r for r in responses if r.status_code == 402)
    assert refused.json()["error"]["code"] == "budget_exceeded"
    events = await env.events()
    spent = sum(e["cost_nanos"] for e in events) / 1e9
    assert len(events) == statuses.count(200)
    assert spent <= 0.5, f"spent ${spent} of a $0.50 budget"
    # every reservation was settled to the ledger's actual cost
    await env.app.state.services.ledger.settled()
    ticket_quota = await _key_quota(env)
    assert await env.app.state.services.counters.quota_state(ticket_quota) == (sum(e["cost_nanos"] for e in events), 0)


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream-before-first-token"])
async def test_a_cancelled_call_is_recorded_and_releases_its_reservation(env: Env, stream: bool) -> None:
    """A call cut off mid-way (client gone) — unary, or a stream before its first token (that path once
    leaked its reservation): billed for its prompt, nothing left reserved."""
    await env.tenant("acme")
    key = await env.key("acme", budget_usd=100.0)
    call = Call("req_cut", env.app.state.services.keys.authenticate(key))
    body = {"model": "fake-latent", "messages": MSG, "max_tokens": 10, "stream": stream}
    pending = asyncio.ensure_future(env.app.state.gateway.chat(body, call))
    await asyncio.sleep(0.2)
    assert not pending.done()
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending
    await env.app.state.services.metering.close()  # the billing task of the cut-off call has run
    [event] = await env.events()
    assert (event["request_id"], event["status"], event["error_code"]) == ("req_cut", 499, "client_disconnected")
    assert event["interrupted"] is True and event["prompt_tokens"] > 0 and event["completion_tokens"] == 0
    await env.app.state.services.ledger.settled()
    assert await env.app.state.services.counters.quota_state(await _key_quota(env)) == (event["cost_nanos"], 0)


async def _key_quota(env: Env) -> Any:
    principal = next(iter(env.app.state.services.keys.by_hash.values()))
    limits = principal.key_limits
    return _quota("usd", "key_id", principal.key_id, limits.budget_nanos, limits.budget_period, time.time())


async def test_plan_token_quota_and_allowed_models(env: Env) -> None:
    r = await env.client.post(
        "/admin/plans",
        json={"id": "free", "monthly_token_quota": 200, "models": ["fake-chat"], "features": {"ttc": False}},
        headers=ADMIN,
    )
    assert r.status_code == 201, r.text
    await env.tenant("small", plan="free")
    key = await env.key("small")
    assert (await env.chat(key, model="fake-other")).json()["error"]["code"] == "model_not_allowed"
    statuses = [(await env.chat(key)).status_code for _ in range(40)]
    assert 200 in statuses and statuses[-1] == 402
    assert (await env.chat(key)).json()["error"]["code"] == "quota_exceeded"
    events = await env.events()
    assert sum(e["prompt_tokens"] + e["completion_tokens"] for e in events) <= 200
