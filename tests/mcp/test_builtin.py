"""The gateway's own tools through /mcp: the sandboxed ``python`` tool, and ``file_search`` over the caller's
knowledge bases only; tool calls count against the key's rate limit and budget like any request."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from mcp.shared.exceptions import MCPError

from openmaas.mcp.server import REFUSED
from tests.helpers import ADMIN_KEY
from tests.mcp.conftest import gateway, mcp_session, settings, time_server
from tests.mcp.test_endpoint import make_key, rows

pytestmark = pytest.mark.anyio
EMBED = {
    "name": "fake-embed",
    "backend": "fake",
    "locality": "local",
    "capabilities": {"embeddings": True, "chat": False, "completions": False},
}


async def test_the_python_tool_runs_in_the_sandbox(tmp_path: Path) -> None:
    async with gateway(settings(tmp_path, [])) as (_, base), mcp_session(base) as session:
        ok = await session.call_tool("builtin__python", {"code": "print(sum(range(10)))"})
        assert not ok.is_error and ok.content[0].text.strip() == "45"
        net = await session.call_tool(
            "builtin__python", {"code": "import socket\nsocket.create_connection(('1.1.1.1', 80))"}
        )
        assert net.is_error and "socket" in net.content[0].text  # no network in the sandbox
        slow = await session.call_tool("builtin__python", {"code": "while True: pass"})
        assert slow.is_error and ("timed out" in slow.content[0].text or "CPU or memory limit" in slow.content[0].text)


async def test_file_search_sees_only_the_callers_knowledge_bases(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENMAAS_ADMIN_KEY", ADMIN_KEY)
    config = settings(
        tmp_path,
        [],
        deployments=[{"name": "fake-chat", "backend": "fake", "locality": "local"}, EMBED],
        rag={"embedding_model": "fake-embed"},
    )
    async with gateway(config) as (_, base):
        acme, globex = await make_key(base, "acme"), await make_key(base, "globex")
        async with httpx.AsyncClient(base_url=base) as client:
            r = await client.post(
                "/v1/knowledge_bases", json={"name": "ops"}, headers={"authorization": f"Bearer {acme}"}
            )
            assert r.status_code in (200, 201), r.text
            kb = r.json()["id"]
            docs = {"file": ("berths.txt", b"Berth 3 is on the north quay next to the grain silo.")}
            r = await client.post(
                f"/v1/knowledge_bases/{kb}/documents", files=docs, headers={"authorization": f"Bearer {acme}"}
            )
            assert r.status_code == 200, r.text
        async with mcp_session(base, acme) as session:
            found = await session.call_tool(
                "builtin__file_search", {"query": "where is berth 3", "knowledge_base_ids": [kb]}
            )
            results = json.loads(found.content[0].text)["results"]
            assert results and "north quay" in results[0]["text"]
            everything = await session.call_tool("builtin__file_search", {"query": "berth 3"})  # all of acme's
            assert json.loads(everything.content[0].text)["results"]
        async with mcp_session(base, globex) as session:
            foreign = await session.call_tool("builtin__file_search", {"query": "berth 3", "knowledge_base_ids": [kb]})
            assert foreign.is_error and "north quay" not in foreign.content[0].text
            own = await session.call_tool("builtin__file_search", {"query": "berth 3"})
            assert json.loads(own.content[0].text)["results"] == []  # globex has no knowledge base
        async with httpx.AsyncClient(base_url=base) as client:  # each search reached the observers, no query text
            metrics = (await client.get("/metrics", headers={"authorization": f"Bearer {ADMIN_KEY}"})).text
        searched = [
            line for line in metrics.splitlines() if line.startswith('openmaas_retrievals_total{mode="hybrid"}')
        ]
        assert searched and float(searched[0].split()[-1]) == 2  # acme's two searches; globex's found no base
        assert "berth" not in metrics


async def test_tool_calls_count_against_the_keys_rate_limit_and_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENMAAS_ADMIN_KEY", ADMIN_KEY)
    config = settings(tmp_path, [time_server(price_per_call_usd=0.01)])
    async with gateway(config) as (app, base):
        limited = await make_key(base, "acme", rpm=2)
        thrifty = await make_key(base, "globex", budget_usd=0.015)
        async with mcp_session(base, limited, "req_rpm") as session:
            for _ in range(2):
                assert not (await session.call_tool("time__get_current_time", {"timezone": "UTC"})).is_error
            with pytest.raises(MCPError) as over:
                await session.call_tool("time__get_current_time", {"timezone": "UTC"})
            assert over.value.error.code == REFUSED and over.value.error.data == {"code": "rate_limit_exceeded"}
        async with mcp_session(base, thrifty, "req_budget") as session:
            assert not (await session.call_tool("time__get_current_time", {"timezone": "UTC"})).is_error
            with pytest.raises(MCPError) as broke:  # 0.01 spent, 0.01 more would pass 0.015
                await session.call_tool("time__get_current_time", {"timezone": "UTC"})
            assert broke.value.error.data == {"code": "budget_exceeded"}
        limited_rows, budget_rows = await rows(app, "req_rpm"), await rows(app, "req_budget")
    assert [(r["status"], r["error_code"]) for r in limited_rows] == [
        (200, None),
        (200, None),
        (429, "rate_limit_exceeded"),
    ]
    assert [(r["status"], r["error_code"]) for r in budget_rows] == [(200, None), (402, "budget_exceeded")]
    assert sum(r["cost_usd"] for r in budget_rows) == pytest.approx(0.01)
