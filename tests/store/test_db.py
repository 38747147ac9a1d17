from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from openmaas.store import rollups  # noqa: F401  (its tables join the metadata)
from openmaas.store.db import Database, normalize_url
from openmaas.store.schema import metadata

pytestmark = pytest.mark.anyio


def test_plain_urls_get_async_drivers() -> None:
    assert normalize_url("sqlite:///x.db") == "sqlite+aiosqlite:///x.db"
    assert normalize_url("postgresql://u@h/d") == "postgresql+asyncpg://u@h/d"
    assert normalize_url("postgres://u@h/d") == "postgresql+asyncpg://u@h/d"


async def test_migrations_build_exactly_the_described_schema_and_are_idempotent(store: dict[str, Any]) -> None:
    db = Database(store["url"])
    try:
        await db.migrate()
        await db.migrate()  # a second run (another replica, a restart) changes nothing
        async with db.engine.connect() as conn:
            version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar_one()
            diff = await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), metadata))
            names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert version == "0010"
        assert {"plans", "tenants", "api_keys", "usage_events", "knowledge_bases", "kb_documents", "kb_chunks"} <= names
        assert diff == [], f"schema.py and the migrations disagree: {diff}"
    finally:
        await db.close()
