"""Streams are billed for what they produced; usage reports stay within a tenant; no DB trip per request."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from sqlalchemy import event, select

from openmaas.server import create_app
from openmaas.store.ledger_sink import LedgerSink, Row
from openmaas.store.schema import usage_events
from openmaas.testing.serve import serve_app
from tests.conftest import metered_settings, running_app
from tests.helpers import ADMIN_KEY

pytestmark = pytest.mark.anyio
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
MSG = [{"role": "user", "content": "tell me a long story"}]


async def _setup(client: Any, **key_fields: Any) -> str:
    await client.post("/admin/tenants", json={"name": "acme"}, headers=ADMIN)
    r = await client.post("/admin/keys", json={"tenant": "acme", **key_fields}, headers=ADMIN)
    return str(r.json()["key"])


async def _events(app: Any) -> list[dict[str, Any]]:
    await app.state.services.ledger.sync()  # what reports do: every committed event is readable
    async with app.state.services.db.engine.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(select(usage_events))]


async def _wait_events(app: Any, n: int) -> list[dict[str, Any]]:
    for _ in range(200):
        rows = await _events(app)
        if len(rows) >= n:
            return rows
        await asyncio.sleep(0.05)
    raise AssertionError(f"expected {n} ledger events, have {len(rows)}")


@pytest.fixture(autouse=True)
def _admin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENMAAS_ADMIN_KEY", ADMIN_KEY)


async def test_upstream_failure_mid_stream_is_billed_for_tokens_delivered(tmp_path: Any, store: dict[str, Any]) -> None:
    async with running_app(metered_settings(tmp_path, store)) as (app, client):
        key = await _setup(client)
        body = {"model": "fake-broken", "messages": MSG, "stream": True}
        r = await client.post("/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"})
        lines = [json.loads(x[6:]) for x in r.text.splitlines() if x.startswith("data: {")]
        delivered = sum(1 for c in lines if c.get("choices") and c["choices"][0]["delta"].get("content"))
        assert "error" in lines[-1] and "[DONE]" not in r.text
        [row] = await _events(app)
        assert row["interrupted"] is True and row["status"] == 502
        assert row["completion_tokens"] == delivered == 3
        assert row["prompt_tokens"] == 5 and row["usage_source"] == "tokenizer"


async def test_client_disconnect_is_billed_for_tokens_produced(tmp_path: Any, store: dict[str, Any]) -> None:
    app = create_app(metered_settings(tmp_path, store))
    async with serve_app(app) as url, aiohttp.ClientSession() as session:
        async with session.post(url + "/admin/tenants", json={"name": "acme"}, headers=ADMIN):
            pass
        async with session.post(url + "/admin/keys", json={"tenant": "acme"}, headers=ADMIN) as r:
            key = (await r.json())["key"]
        body = {"model": "fake-slow", "messages": MSG, "stream": True}
        received = 0
        async with session.post(
            url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
        ) as resp:
            async for line in resp.content:
                if line.startswith(b"data: {") and b'"content"' in line:
                    received += 1
                if received == 6:
                    break  # leave mid-stream: the response is closed here
        [row] = await _wait_events(app, 1)
        assert row["interrupted"] is True and row["error_code"] == "client_disconnected"
        # billed for what the upstream produced: at least what we read, far less than the 200-word answer
        assert received - 1 <= row["completion_tokens"] <= received + 10
        assert row["prompt_tokens"] == 5


async def test_usage_endpoints_never_cross_tenants(tmp_path: Any, store: dict[str, Any]) -> None:
    async with running_app(metered_settings(tmp_path, store)) as (_app, client):
        keys = {}
        for name in ("acme", "globex"):
            await client.post("/admin/tenants", json={"name": name}, headers=ADMIN)
            r = await client.post("/admin/keys", json={"tenant": name}, headers=ADMIN)
            keys[name] = r.json()["key"]
        for name, count in (("acme", 3), ("globex", 5)):
            for _ in range(count):
                auth = {"authorization": f"Bearer {keys[name]}"}
                r = await client.post(
                    "/v1/chat/completions", json={"model": "fake-chat", "messages": MSG}, headers=auth
                )
                assert r.status_code == 200
        mine = await client.get("/v1/usage?group_by=tenant,key", headers={"authorization": f"Bearer {keys['acme']}"})
        rows = mine.json()["data"]
        assert len(rows) == 1 and rows[0]["requests"] == 3
        assert {r["tenant"] for r in rows} == {(await _tenant_id(client, "acme"))}
        assert (await client.get("/v1/usage")).status_code == 401
        report = await client.get("/admin/usage?group_by=tenant", headers=ADMIN)
        by_tenant = {r["tenant"]: r["requests"] for r in report.json()["data"]}
        assert sorted(by_tenant.values()) == [3, 5]
        csv_text = (
            await client.get("/admin/usage?group_by=tenant,model,day&format=csv&tenant=globex", headers=ADMIN)
        ).text
        header, *lines = csv_text.strip().splitlines()
        assert header.startswith("tenant,model,day,requests,prompt_tokens")
        assert len(lines) == 1 and ",fake-chat," in lines[0] and lines[0].split(",")[3] == "5"
        bad = await client.get("/admin/usage?group_by=color", headers=ADMIN)
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "group_by"


async def _tenant_id(client: Any, name: str) -> str:
    return str((await client.get(f"/admin/tenants/{name}", headers=ADMIN)).json()["id"])


class CountingSink(LedgerSink):
    """The real sink, counting the batches (each one statement in one transaction)."""

    def __init__(self, inner: LedgerSink) -> None:
        self.inner = inner
        self.batches: list[int] = []

    async def write(self, rows: list[Row]) -> None:
        self.batches.append(len(rows))
        await self.inner.write(rows)

    async def close(self) -> None:
        await self.inner.close()


async def test_hot_path_makes_no_database_round_trip_beyond_the_group_commit(
    tmp_path: Any, store: dict[str, Any]
) -> None:
    async with running_app(metered_settings(tmp_path, store)) as (app, client):
        key = await _setup(client, budget_usd=100.0, rpm=10_000, tpm=10_000_000)
        statements: list[str] = []

        def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            statements.append(" ".join(statement.split()))

        engine = app.state.services.db.engine.sync_engine
        event.listen(engine, "before_cursor_execute", seen)
        ledger_sink = app.state.services.ledger.sink = CountingSink(app.state.services.ledger.sink)
        try:
            auth = {"authorization": f"Bearer {key}"}
            body = {"model": "fake-chat", "messages": MSG, "max_tokens": 5}
            responses = await asyncio.gather(
                *(client.post("/v1/chat/completions", json=body, headers=auth) for _ in range(40))
            )
        finally:
            event.remove(engine, "before_cursor_execute", seen)
        assert all(r.status_code == 200 for r in responses)
        await asyncio.sleep(0)
        ledger = [s for s in statements if "usage_events" in s]
        periodic = [s for s in statements if "usage_events" not in s]
        # one SELECT seeds the key's monthly budget (once, however many requests race for it);
        # everything else per request is the ledger sink's group-committed multi-row INSERT
        assert len(ledger) <= 1 and all(s.startswith("SELECT") for s in ledger), ledger
        assert 1 <= len(ledger_sink.batches) <= 40 and sum(ledger_sink.batches) == 40, ledger_sink.batches
        # the only other statements are the key cache's periodic change check (not per request)
        assert all("api_keys" in s or "tenants" in s or "plans" in s for s in periodic), periodic
