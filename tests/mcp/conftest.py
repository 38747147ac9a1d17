from __future__ import annotations

import contextlib
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from starlette.applications import Starlette

from openmaas.server import create_app
from openmaas.settings import Settings
from openmaas.testing.mcp_server import RecordingMcpServer
from openmaas.testing.serve import serve_app

BIN = Path(sys.executable).parent
TIME_SERVER = shutil.which("mcp-server-time") or str(BIN / "mcp-server-time")
GIT_SERVER = shutil.which("mcp-server-git") or str(BIN / "mcp-server-git")
RECORDER_TOKEN = "recorder-token-0123456789"


def time_server(**extra: Any) -> dict[str, Any]:
    return {"name": "time", "command": TIME_SERVER, "args": ["--local-timezone", "UTC"], **extra}


def recorder_server(url: str, **extra: Any) -> dict[str, Any]:
    return {"name": "cloud", "url": url + "/mcp", "token_env": "RECORDER_TOKEN", "locality": "cloud", **extra}


def settings(tmp_path: Path, servers: list[dict[str, Any]], **extra: Any) -> Settings:
    data: dict[str, Any] = {
        "data_dir": str(tmp_path),
        "deployments": [{"name": "fake-chat", "backend": "fake", "locality": "local"}],
        "aliases": {"default": "fake-chat"},
        "mcp": {"servers": servers},
    }
    data.update(extra)
    return Settings.model_validate(data)


@pytest.fixture
async def recorder(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[RecordingMcpServer, str]]:
    """A real MCP server over streamable HTTP on loopback (bearer token required) that records its calls."""
    monkeypatch.setenv("RECORDER_TOKEN", RECORDER_TOKEN)
    server = RecordingMcpServer(token=RECORDER_TOKEN)
    async with serve_app(server.app()) as url:
        yield server, url


@contextlib.asynccontextmanager
async def gateway(config: Settings) -> AsyncIterator[tuple[Starlette, str]]:
    """The whole gateway on a loopback port, with its MCP servers connected."""
    app = create_app(config)
    async with serve_app(app) as url:
        await app.state.mcp.wait_ready(30)
        yield app, url


@contextlib.asynccontextmanager
async def mcp_session(url: str, key: str | None = None, request_id: str | None = None) -> AsyncIterator[ClientSession]:
    """The official SDK's client on the gateway's /mcp."""
    headers = {"authorization": f"Bearer {key}"} if key else {}
    if request_id:
        headers["x-request-id"] = request_id
    async with (
        create_mcp_http_client(headers=headers) as http,
        streamable_http_client(url + "/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session
