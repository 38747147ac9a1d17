"""Alembic environment: migrations always run on a connection handed in by ``Database.migrate``."""

from __future__ import annotations

from alembic import context

from openmaas.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `openmaas db upgrade` (or start the server), not the alembic CLI")
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
