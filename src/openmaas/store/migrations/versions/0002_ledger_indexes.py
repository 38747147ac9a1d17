"""Ledger indexes shaped for the queries that use them, and cheaper to maintain per insert.

Budget seeding sums one key's or tenant's events since a period start: composite
(owner, created_at) indexes serve it; the single-column owner and created_at
indexes they replace cost a b-tree update on every ledger row.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for column in ("tenant_id", "key_id", "created_at"):
        op.drop_index(f"ix_usage_events_{column}", table_name="usage_events")
    op.create_index("ix_usage_events_key_created", "usage_events", ["key_id", "created_at"])
    op.create_index("ix_usage_events_tenant_created", "usage_events", ["tenant_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_usage_events_tenant_created", table_name="usage_events")
    op.drop_index("ix_usage_events_key_created", table_name="usage_events")
    for column in ("tenant_id", "key_id", "created_at"):
        op.create_index(f"ix_usage_events_{column}", "usage_events", [column])
