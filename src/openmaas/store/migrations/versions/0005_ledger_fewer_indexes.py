"""Drop the ledger's ``day`` index: every row paid for it on the hot path, and reports now
filter days by ``created_at`` (same UTC days), which the (key, created_at) and (tenant,
created_at) indexes serve.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_usage_events_day", table_name="usage_events")


def downgrade() -> None:
    op.create_index("ix_usage_events_day", "usage_events", ["day"])
