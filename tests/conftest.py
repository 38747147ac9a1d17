from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from openmaas.lifecycle import Observer
from openmaas.server import create_app
from openmaas.settings import Settings
from openmaas.store.db import Database
from tests.helpers import log_dir, store_settings


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
async def running_app(
    settings: Settings, observers: Sequence[Observer] = ()
) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    """The whole app in-process, lifespan included (store, ledger, engines)."""
    app = create_app(settings, observers=observers)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client,
    ):
        yield app, client


@pytest.fixture
async def fake_client(tmp_path: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(fake_settings(tmp_path, server={"max_body_bytes": 4096})) as (_, client):
        yield client


def pytest_configure(config: pytest.Config) -> None:
    """Everything logged in-process during the run also goes to a file the log-scanning test reads."""
    handler = logging.FileHandler(log_dir() / "in-process.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(min(root.level or logging.INFO, logging.INFO))
    logging.getLogger("openmaas").setLevel(logging.DEBUG)


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Any) -> dict[str, Any]:
    """``store`` settings for each backend: SQLite + in-process counters; PostgreSQL + Redis."""
    return await store_settings(request.param, tmp_path)


@pytest.fixture
async def db(store: dict[str, Any]) -> AsyncIterator[Database]:
    """The store's database at the latest schema, on each backend."""
    database = Database(store["url"])
    await database.migrate()
    try:
        yield database
    finally:
        await database.close()


async def ledger_events(app: Starlette) -> list[dict[str, Any]]:
    """Every usage event in the app's store, after flushing what the ledger still holds."""
    from sqlalchemy import select

    from openmaas.store.schema import usage_events

    await app.state.services.ledger.close()
    await app.state.services.ledger.start()
    async with app.state.services.db.engine.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(select(usage_events))]


def metered_settings(tmp_path: Any, store: dict[str, Any], **extra: Any) -> Settings:
    """Fake deployments with prices, keys required (as on a shared server)."""
    deployments = [
        {
            "name": "fake-chat",
            "backend": "fake",
            "pricing": {"input_per_mtok": 1000.0, "output_per_mtok": 2000.0},
            "context_length": 4096,
            "capabilities": {"embeddings": True},
        },
        {"name": "fake-other", "backend": "fake", "pricing": {"input_per_mtok": 1.0, "output_per_mtok": 1.0}},
        {
            "name": "fake-slow",
            "backend": "fake",
            "params": {"tokens_per_s": 50, "reply": " ".join(f"w{i}" for i in range(200))},
        },
        {"name": "fake-broken", "backend": "fake", "params": {"fail_after_tokens": 3, "reply": "a b c d e f"}},
        {"name": "fake-429", "backend": "fake", "params": {"fail_every": 1, "fail_status": 429}},
        {"name": "fake-latent", "backend": "fake", "params": {"latency_ms": 5000}},
    ]
    data: dict[str, Any] = {
        "deployments": deployments,
        "aliases": {"default": "fake-chat"},
        "data_dir": str(tmp_path),
        "store": store,
        "auth": {"required": True, "refresh_seconds": 0.2},
    }
    data.update(extra)
    return Settings.model_validate(data)
