"""The gateway as an MCP server: real MCP servers nobody here wrote (mcp-server-time, mcp-server-git over stdio)
and a recording server over streamable HTTP behind it, reached with the official SDK's client and the MCP
Inspector CLI; per-key tool permissions, privacy of tool arguments, metering and the audit trail."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp.shared.exceptions import MCPError

from openmaas.mcp.server import FORBIDDEN, REFUSED
from openmaas.store import audit
from tests.helpers import ADMIN_KEY
from tests.mcp.conftest import GIT_SERVER, gateway, mcp_session, recorder_server, settings, time_server

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
SENSITIVE = "My doctor told me my HIV test came back positive, how do I tell my partner?"


async def rows(app: Any, request_id: str) -> list[dict[str, Any]]:
    await app.state.services.ledger.sync()
    return await audit.trail(app.state.services.db, request_id)


async def make_key(url: str, tenant: str, **fields: Any) -> str:
    async with httpx.AsyncClient(base_url=url, headers=ADMIN) as client:
        r = await client.post("/admin/tenants", json={"name": tenant})
        assert r.status_code in (201, 409), r.text
        r = await client.post("/admin/keys", json={"tenant": tenant, **fields})
        assert r.status_code == 201, r.text
        return str(r.json()["key"])


async def test_sdk_client_lists_and_calls_the_real_time_server_through_the_gateway(
    tmp_path: Path, recorder: Any
) -> None:
    server, url = recorder
    config = settings(tmp_path, [time_server(price_per_call_usd=0.002), recorder_server(url)])
    async with gateway(config) as (app, base), mcp_session(base, request_id="req_mcp_time_1") as session:
        names = {t.name for t in (await session.list_tools()).tools}
        assert {"time__get_current_time", "time__convert_time", "cloud__shout", "builtin__python"} <= names
        result = await session.call_tool("time__get_current_time", {"timezone": "Asia/Tokyo"})
        assert not result.is_error
        assert json.loads(result.content[0].text)["timezone"] == "Asia/Tokyo"
        shouted = await session.call_tool("cloud__shout", {"text": "hello"})  # streamable HTTP, with its token
        assert shouted.content[0].text == "HELLO" and server.received == [("shout", {"text": "hello"})]
        trail = await rows(app, "req_mcp_time_1")
    tool_rows = [r for r in trail if r["model"] == "time__get_current_time"]
    assert len(tool_rows) == 1
    row = tool_rows[0]
    assert row["endpoint"] == "tool" and row["deployment"] == "mcp:time" and row["status"] == 200
    assert row["cost_usd"] == pytest.approx(0.002)
    assert row["route"]["arguments_went_to"] == ["time (local)"] and row["route"]["surface"] == "mcp"
    assert "tool call    time__get_current_time via mcp, status 200" in "\n".join(audit.describe(row))


async def test_a_tool_error_is_a_tool_result_and_a_hung_tool_times_out(tmp_path: Path, recorder: Any) -> None:
    _, url = recorder
    config = settings(tmp_path, [time_server(), recorder_server(url, call_timeout_s=0.5)])
    async with gateway(config) as (app, base), mcp_session(base, request_id="req_mcp_fail") as session:
        bad = await session.call_tool("time__get_current_time", {"timezone": "Nowhere/Bad"})
        assert bad.is_error and "Invalid timezone" in bad.content[0].text
        broken = await session.call_tool("cloud__broken", {})
        assert broken.is_error and "Error executing tool broken" in broken.content[0].text
        hung = await session.call_tool("cloud__slow", {"seconds": 5})
        assert hung.is_error and "did not answer within 0.5 s" in hung.content[0].text
        trail = await rows(app, "req_mcp_fail")
    codes = sorted((r["model"], r["status"], r["error_code"]) for r in trail)
    assert codes == [
        ("cloud__broken", 200, "tool_error"),
        ("cloud__slow", 504, "tool_timeout"),
        ("time__get_current_time", 200, "tool_error"),
    ]
    assert [r["cost_usd"] for r in trail if r["status"] == 504] == [0.0]  # a call that never answered is not billed


async def test_keys_see_only_their_tools_and_a_forbidden_call_is_refused_and_recorded(
    tmp_path: Path, recorder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENMAAS_ADMIN_KEY", ADMIN_KEY)
    server, url = recorder
    config = settings(tmp_path, [time_server(), recorder_server(url)])
    async with gateway(config) as (app, base):
        narrow = await make_key(base, "acme", tools=["time__get_*"])
        wide = await make_key(base, "globex")
        async with mcp_session(base, narrow, "req_mcp_forbidden") as session:
            listed = [t.name for t in (await session.list_tools()).tools]
            assert listed == ["time__get_current_time"]
            with pytest.raises(MCPError) as refused:
                await session.call_tool("cloud__shout", {"text": "leak"})
            assert refused.value.error.code == FORBIDDEN and "may not use the tool 'cloud__shout'" in str(refused.value)
            with pytest.raises(MCPError):
                await session.call_tool("time__convert_time", {})
        async with mcp_session(base, wide) as session:
            assert "cloud__shout" in [t.name for t in (await session.list_tools()).tools]
        async with httpx.AsyncClient(base_url=base) as client:  # the REST listing shows each key its own tools
            servers = (await client.get("/v1/mcp/servers", headers={"authorization": f"Bearer {narrow}"})).json()
            by_server = {s["name"]: [t["name"] for t in s["tools"]] for s in servers["data"]}
            assert by_server["time"] == ["time__get_current_time"] and by_server["cloud"] == []
            servers = (await client.get("/v1/mcp/servers", headers={"authorization": f"Bearer {wide}"})).json()
            assert "cloud__shout" in [t["name"] for s in servers["data"] for t in s["tools"]]
            assert (await client.get("/v1/mcp/servers")).status_code == 401
        async with httpx.AsyncClient() as client:  # no key at all once keys exist: 401, never a tool list
            r = await client.post(base + "/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
            assert r.status_code == 401
        trail = await rows(app, "req_mcp_forbidden")
    assert server.received == []  # the forbidden call never left the gateway
    assert {(r["model"], r["status"], r["error_code"]) for r in trail} == {
        ("cloud__shout", 403, "tool_not_allowed"),
        ("time__convert_time", 403, "tool_not_allowed"),
    }


async def test_sensitive_arguments_never_reach_a_cloud_tool(
    tmp_path: Path, recorder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENMAAS_ADMIN_KEY", ADMIN_KEY)
    server, url = recorder
    config = settings(tmp_path, [time_server(), recorder_server(url)])
    async with gateway(config) as (app, base):
        key = await make_key(base, "clinic", privacy="local_only")
        async with mcp_session(base, key, "req_mcp_private") as session:
            with pytest.raises(MCPError) as refused:
                await session.call_tool("cloud__lookup", {"query": SENSITIVE})
            assert refused.value.error.code == REFUSED and "HEALTH" in str(refused.value)
            fine = await session.call_tool("cloud__lookup", {"query": "opening hours of the Lyon office"})
            assert fine.content[0].text == "notes for: opening hours of the Lyon office"
        trail = await rows(app, "req_mcp_private")
    assert server.received == [("lookup", {"query": "opening hours of the Lyon office"})]
    assert not any(SENSITIVE in json.dumps(args) for _, args in server.received)
    refusal = next(r for r in trail if r["status"] == 403)
    assert refusal["error_code"] == "privacy_refused" and refusal["route"]["arguments_went_to"] == []
    assert refusal["route"]["privacy"]["class"] == "sensitive"


async def test_a_client_with_a_tool_cap_finds_and_calls_tools_through_search(tmp_path: Path) -> None:
    config = settings(tmp_path, [time_server()], mcp={"servers": [time_server()], "max_listed_tools": 2})
    async with gateway(config) as (_, base), mcp_session(base) as session:
        listed = [t.name for t in (await session.list_tools()).tools]
        assert listed == ["search_tools", "call_tool"]  # 4 tools > the cap of 2
        found = await session.call_tool("search_tools", {"query": "current time in a timezone"})
        names = [t["name"] for t in json.loads(found.content[0].text)["tools"]]
        assert names[0] == "time__get_current_time"
        called = await session.call_tool(
            "call_tool", {"name": "time__get_current_time", "arguments": {"timezone": "Europe/Paris"}}
        )
        assert json.loads(called.content[0].text)["timezone"] == "Europe/Paris"


async def test_a_stdio_server_that_exits_is_restarted(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    make_repo(repo)
    git = {"name": "git", "command": GIT_SERVER, "args": ["--repository", str(repo)], "restart_backoff_s": 0.2}
    config = settings(tmp_path / "data", [git])
    async with gateway(config) as (app, base):
        upstream = app.state.mcp.providers["git"]
        async with mcp_session(base) as session:
            log = await session.call_tool("git__git_log", {"repo_path": str(repo)})
            assert "first commit" in log.content[0].text
        pid = _child_pid(GIT_SERVER)
        os.kill(pid, 9)
        for _ in range(200):  # the supervisor notices (a ping or the closed pipe) and starts it again
            if upstream.starts >= 2 and upstream.state == "ready":
                break
            await asyncio.sleep(0.05)
        assert upstream.starts >= 2 and upstream.state == "ready"
        async with mcp_session(base) as session:
            status = await session.call_tool("git__git_status", {"repo_path": str(repo)})
            assert not status.is_error and "nothing to commit" in status.content[0].text


def make_repo(repo: Path) -> None:
    repo.mkdir()
    for args in (["init", "-q"], ["config", "user.email", "t@example.com"], ["config", "user.name", "T"]):
        subprocess.run(["git", *args], cwd=repo, check=True)
    (repo / "notes.txt").write_text("first\n")
    subprocess.run(["git", "add", "notes.txt"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "first commit"], cwd=repo, check=True)


def _child_pid(command: str) -> int:
    out = subprocess.run(["pgrep", "-f", "-P", str(os.getpid()), "--", command], capture_output=True, text=True)
    pids = [int(p) for p in out.stdout.split()]
    assert pids, f"no child process runs {command}"
    return pids[0]


@pytest.fixture(scope="module")
def inspector() -> str:
    out = subprocess.run(
        ["bash", str(ROOT / "scripts/mcp_inspector.sh")], capture_output=True, text=True, timeout=600, check=True
    )
    return out.stdout.strip().splitlines()[-1]


async def test_mcp_inspector_cli_lists_calls_and_is_refused(
    tmp_path: Path, inspector: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENMAAS_ADMIN_KEY", ADMIN_KEY)
    config = settings(tmp_path, [time_server()])
    async with gateway(config) as (_, base):
        key = await make_key(base, "acme", tools=["time__get_current_time"])

        async def run(*args: str) -> subprocess.CompletedProcess[str]:
            argv = [
                inspector,
                "--cli",
                base + "/mcp",
                "--transport",
                "http",
                "--header",
                f"Authorization: Bearer {key}",
            ]
            return await asyncio.to_thread(subprocess.run, [*argv, *args], capture_output=True, text=True, timeout=120)

        listed = await run("--method", "tools/list")
        assert listed.returncode == 0, listed.stderr[-2000:]
        assert [t["name"] for t in json.loads(listed.stdout)["tools"]] == ["time__get_current_time"]
        called = await run(
            "--method", "tools/call", "--tool-name", "time__get_current_time", "--tool-arg", "timezone=UTC"
        )
        assert called.returncode == 0, called.stderr[-2000:]
        assert json.loads(json.loads(called.stdout)["content"][0]["text"])["timezone"] == "UTC"
        # the key cannot even see the forbidden tool, so the Inspector refuses it from the list we served
        refused = await run("--method", "tools/call", "--tool-name", "builtin__python", "--tool-arg", "code=print(1)")
        assert refused.returncode != 0
        assert "Tool 'builtin__python' not found" in refused.stdout + refused.stderr


async def test_the_time_server_behind_streamable_http(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """mcp-server-time behind a streamable HTTP endpoint (an edge gateway's /mcp, with a key), configured as
    an HTTP MCP server of a second gateway: calls pass through both, each metered where it ran."""
    monkeypatch.setenv("OPENMAAS_ADMIN_KEY", ADMIN_KEY)
    async with gateway(settings(tmp_path / "edge", [time_server()])) as (edge_app, edge):
        key = await make_key(edge, "hq", tools=["time__*"])
        monkeypatch.setenv("EDGE_MCP_KEY", key)
        remote = {"name": "edge", "url": edge + "/mcp", "token_env": "EDGE_MCP_KEY", "price_per_call_usd": 0.003}
        async with (
            gateway(settings(tmp_path / "hq", [remote])) as (hq_app, hq),
            mcp_session(hq, None, "req_chain") as s,
        ):
            names = [t.name for t in (await s.list_tools()).tools]
            assert "edge__time__get_current_time" in names
            result = await s.call_tool("edge__time__get_current_time", {"timezone": "Asia/Tokyo"})
            assert json.loads(result.content[0].text)["timezone"] == "Asia/Tokyo"
            hq_rows = await rows(hq_app, "req_chain")
        assert hq_app.state.mcp.providers["edge"].spec.transport == "http"
        await edge_app.state.services.ledger.sync()
    assert [(r["model"], r["deployment"], r["cost_usd"]) for r in hq_rows] == [
        ("edge__time__get_current_time", "mcp:edge", pytest.approx(0.003))
    ]
