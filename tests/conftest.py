from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.applications import Starlette
import pytest

from openmaas.server import create_app
from openmaas.settings import Settings


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def fake_settings(tmp_path: Any, **extra: Any) -> Settings:
    deployments = [
        {"name": "fake-chat", "backend": "fake", "locality": "local", "context_length": 4096},
        {
            "name": "fake-embed",
            "backend": "fake",
            "locality": "local",
            "capabilities": {"embeddings": True, "chat": False, "completions": False},
        },
        {"name": "fake-notools", "backend": "fake", "capabilities": {"tools": False, "json_schema": False}},
        {"name": "fake-broken", "backend": "fake", "params": {"fail_after_tokens": 2, "reply": "one two three four"}},
        {"name": "fake-down", "backend": "fake", "params": {"fail_every": 1, "fail_status": 503}},
    ]
    data = {"deployments": deployments, "aliases": {"default": "fake-chat"}, "data_dir": str(tmp_path)}
    data.update(extra)
    return Settings.model_validate(data)


@contextlib.asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    """The whole app in-process, lifespan included (store, ledger, engines)."""
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client,
    ):
        yield app, client


@pytest.fixture
async def fake_client(tmp_path: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(fake_settings(tmp_path, server={"max_body_bytes": 4096})) as (_, client):
        yield client
