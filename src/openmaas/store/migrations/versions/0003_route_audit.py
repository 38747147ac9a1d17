"""The route decision of each request, for the audit trail; whether it was served degraded.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("usage_events") as batch:
        batch.add_column(sa.Column("degraded", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("route", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("usage_events") as batch:
        batch.drop_column("route")
        batch.drop_column("degraded")
