"""Guarantees that need real processes: kill -9 right after a response, and two replicas sharing limits."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from openmaas.settings import Settings
from openmaas.store.schema import usage_events
from tests.helpers import ADMIN_KEY, start_server, store_settings

pytestmark = pytest.mark.anyio
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
MSG = [{"role": "user", "content": "count the events"}]


def config(store: dict[str, Any]) -> dict[str, Any]:
    return {
        "deployments": [
            {
                "name": "fake-chat",
                "backend": "fake",
                "pricing": {"input_per_mtok": 1000.0, "output_per_mtok": 2000.0},
                "context_length": 4096,
            }
        ],
        "aliases": {},
        "store": store,
        "auth": {"required": True, "refresh_seconds": 0.2},
        "server": {"log_level": "info"},
    }


async def _key(session: aiohttp.ClientSession, url: str, **fields: Any) -> str:
    async with session.post(url + "/admin/tenants", json={"name": "acme"}, headers=ADMIN) as r:
        assert r.status == 201, await r.text()
    async with session.post(url + "/admin/keys", json={"tenant": "acme", **fields}, headers=ADMIN) as r:
        assert r.status == 201, await r.text()
        return str((await r.json())["key"])


async def _chat(session: aiohttp.ClientSession, url: str, key: str, request_id: str, stream: bool) -> int:
    body = {"model": "fake-chat", "messages": MSG, "max_tokens": 8, "stream": stream}
    headers = {"authorization": f"Bearer {key}", "x-request-id": request_id}
    async with session.post(url + "/v1/chat/completions", json=body, headers=headers) as r:
        text = await r.text()
        if r.status == 200 and stream:
            assert text.endswith("data: [DONE]\n\n")  # received in full
        return r.status


async def _ledger(store: dict[str, Any], data_dir: Path) -> list[dict[str, Any]]:
    """Every ledger row, read as an ``openmaas`` command on the gateway's host would (its data directory:
    on both stores the spool lives there by default)."""
    db = Settings.model_validate({"data_dir": str(data_dir), "store": store}).database()
    assert db.spool is not None
    try:
        await db.migrate()  # as every gateway start and openmaas command does: imports a killed gateway's spool
        async with db.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(select(usage_events))]
    finally:
        await db.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_responses_received_in_full_survive_kill_9(kind: str, tmp_path: Path) -> None:
    store = await store_settings(kind, tmp_path)
    server = start_server(f"kill9-{kind}", tmp_path, config(store), {"OPENMAAS_ADMIN_KEY": ADMIN_KEY})
    try:
        async with aiohttp.ClientSession() as session:
            key = await _key(session, server.base_url)
            ids = [f"kill9-{kind}-{i}" for i in range(40)]
            # sequential then a concurrent burst; the process dies the instant the last response is read
            for i, request_id in enumerate(ids[:20]):
                assert await _chat(session, server.base_url, key, request_id, stream=i % 2 == 0) == 200
            statuses = await asyncio.gather(
                *(_chat(session, server.base_url, key, rid, stream=i % 2 == 1) for i, rid in enumerate(ids[20:]))
            )
            os.kill(server.proc.pid, signal.SIGKILL)
            assert statuses == [200] * 20
        server.proc.wait(timeout=10)
        assert server.proc.returncode == -signal.SIGKILL
        rows = await _ledger(store, tmp_path)
        assert sorted(r["request_id"] for r in rows) == sorted(ids)
        assert all(r["status"] == 200 and r["completion_tokens"] > 0 and r["cost_nanos"] > 0 for r in rows)
    finally:
        server.stop()


async def test_two_gateways_share_one_rate_limit_and_one_budget(tmp_path: Path) -> None:
    store = await store_settings("postgres", tmp_path)
    env = {"OPENMAAS_ADMIN_KEY": ADMIN_KEY}
    a = start_server("replica-a", tmp_path, config(store), env)
    b = start_server("replica-b", tmp_path, config(store), env)
    try:
        async with aiohttp.ClientSession() as session:
            key = await _key(session, a.base_url, rpm=10)
            await asyncio.sleep(0.6)  # replica b picks the new key up from the shared store
            urls = [a.base_url, b.base_url]
            statuses = [await _chat(session, urls[i % 2], key, f"rpm-{i}", stream=False) for i in range(30)]
            # per-replica counting would admit 20; one global bucket admits 10 (+1 if a refill lands)
            assert 10 <= statuses.count(200) <= 11, statuses
            assert statuses.count(429) == 30 - statuses.count(200)

            async with session.post(
                a.base_url + "/admin/keys", json={"tenant": "acme", "budget_usd": 0.3}, headers=ADMIN
            ) as r:
                budget_key = (await r.json())["key"]
            await asyncio.sleep(0.6)
            results = await asyncio.gather(
                *(_chat(session, urls[i % 2], budget_key, f"budget-{i}", stream=i % 3 == 0) for i in range(60))
            )
            assert results.count(200) > 0 and results.count(402) > 0, results
        for _ in range(50):  # the replicas, still running, import their spools every 0.5 s
            rows = [r for r in await _ledger(store, tmp_path) if r["request_id"].startswith("budget-")]
            if len(rows) >= results.count(200):
                break
            await asyncio.sleep(0.1)
        assert len(rows) == results.count(200)
        spent = sum(r["cost_nanos"] for r in rows) / 1e9
        assert spent <= 0.3, f"two replicas together spent ${spent} of a $0.30 budget"
        assert {r["request_id"] for r in rows} and len({r["id"] for r in rows}) == len(rows)
    finally:
        a.stop()
        b.stop()
