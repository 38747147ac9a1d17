"""Stored Responses state across tenants, gateway processes and restarts, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import update

from openmaas.store import schema
from tests.conftest import fake_settings, metered_settings, running_app
from tests.helpers import ADMIN_KEY, start_server, store_settings

pytestmark = pytest.mark.anyio
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}


async def _keys(client: httpx.AsyncClient, *tenants: str) -> dict[str, str]:
    keys = {}
    for tenant in tenants:
        r = await client.post("/admin/tenants", json={"name": tenant}, headers=ADMIN)
        assert r.status_code == 201, r.text
        r = await client.post("/admin/keys", json={"tenant": tenant}, headers=ADMIN)
        keys[tenant] = r.json()["key"]
    return keys


async def test_one_tenant_never_reads_anothers_responses(
    store: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENMAAS_ADMIN_KEY", ADMIN_KEY)
    async with running_app(metered_settings(tmp_path, store)) as (_, client):
        keys = await _keys(client, "acme", "globex")
        acme = {"authorization": f"Bearer {keys['acme']}"}
        globex = {"authorization": f"Bearer {keys['globex']}"}
        r = await client.post("/v1/responses", json={"model": "fake-chat", "input": "acme secret plan"}, headers=acme)
        assert r.status_code == 200, r.text
        rid = r.json()["id"]
        assert (await client.get(f"/v1/responses/{rid}", headers=acme)).status_code == 200
        for method, path in (
            ("GET", f"/v1/responses/{rid}"),
            ("GET", f"/v1/responses/{rid}/input_items"),
            ("DELETE", f"/v1/responses/{rid}"),
            ("POST", f"/v1/responses/{rid}/cancel"),
        ):
            other = await client.request(method, path, headers=globex)
            assert other.status_code == 404, (method, path, other.text)
            assert "acme secret" not in other.text
        cont = {"model": "fake-chat", "input": "and?", "previous_response_id": rid}
        assert (await client.post("/v1/responses", json=cont, headers=globex)).status_code == 404
        assert (await client.get(f"/v1/responses/{rid}")).status_code == 401  # no key at all
        assert (await client.get(f"/v1/responses/{rid}", headers=acme)).status_code == 200  # still there


async def test_previous_response_id_continues_across_two_gateway_processes_on_postgres(tmp_path: Path) -> None:
    store = await store_settings("postgres", tmp_path)
    config = {
        "deployments": [{"name": "echo", "backend": "fake", "locality": "local", "params": {"echo": "prompt"}}],
        "aliases": {},
        "store": store,
        "auth": {"required": True, "refresh_seconds": 0.2},
    }
    env = {"OPENMAAS_ADMIN_KEY": ADMIN_KEY}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = start_server("responses-a", tmp_path / "a", config, env)
    try:
        async with httpx.AsyncClient(base_url=first.base_url) as admin:
            key = (await _keys(admin, "acme"))["acme"]
        async with openai.AsyncOpenAI(base_url=first.base_url + "/v1", api_key=key, max_retries=0) as client:
            one = await client.responses.create(model="echo", input="remember: blue")
    finally:
        first.stop()
    second = start_server("responses-b", tmp_path / "b", config, env)  # another process, after a restart
    try:
        async with openai.AsyncOpenAI(base_url=second.base_url + "/v1", api_key=key, max_retries=0) as client:
            two = await client.responses.create(model="echo", input="which colour?", previous_response_id=one.id)
            assert two.output_text.startswith("remember: blue remember: blue which colour?")
            items = await client.responses.input_items.list(two.id)
            assert [i.type for i in items.data] == ["message"]
    finally:
        second.stop()


async def _eventually_gone(client: httpx.AsyncClient, path: str) -> bool:
    for _ in range(200):
        if (await client.get(path)).status_code == 404:
            return True
        await asyncio.sleep(0.02)
    return False


async def test_responses_older_than_the_retention_are_deleted(tmp_path: Path) -> None:
    responses = {"retention_days": 30, "retention_check_seconds": 0}
    settings = fake_settings(tmp_path, dialects={"responses": responses})
    async with running_app(settings) as (app, client):
        old = (await client.post("/v1/responses", json={"model": "fake-chat", "input": "old"})).json()["id"]
        async with app.state.services.db.engine.begin() as conn:  # as if it were written 31 days ago
            await conn.execute(
                update(schema.responses)
                .where(schema.responses.c.id == old)
                .values(created_at=time.time() - 31 * 86_400)
            )
        new = (await client.post("/v1/responses", json={"model": "fake-chat", "input": "new"})).json()["id"]
        assert await _eventually_gone(client, f"/v1/responses/{old}")
        assert (await client.get(f"/v1/responses/{new}")).status_code == 200


async def test_store_sensitive_none_keeps_only_metadata_of_sensitive_requests(tmp_path: Path) -> None:
    settings = fake_settings(tmp_path, dialects={"responses": {"store_sensitive": "none"}})
    async with running_app(settings) as (_, client):
        secret = {"model": "fake-chat", "input": "Mail ann.lee@example.com my lab results, phone +1 415 555 0100"}
        r = await client.post("/v1/responses", json=secret)
        assert r.status_code == 200 and "ann.lee@example.com" in r.text  # the client gets its answer
        rid = r.json()["id"]
        stored = (await client.get(f"/v1/responses/{rid}")).json()
        assert stored["status"] == "completed" and stored["output"] == [] and stored["usage"]["input_tokens"] > 0
        assert stored["openmaas"]["content_stored"] is False and "ann.lee" not in json.dumps(stored)
        assert (await client.get(f"/v1/responses/{rid}/input_items")).json()["data"] == []
        cont = await client.post(
            "/v1/responses", json={"model": "fake-chat", "input": "more", "previous_response_id": rid}
        )
        assert cont.status_code == 400 and "not stored" in cont.json()["error"]["message"]
        plain = (await client.post("/v1/responses", json={"model": "fake-chat", "input": "weather in Paris"})).json()
        assert (await client.get(f"/v1/responses/{plain['id']}")).json()["output"]  # public requests are kept whole
