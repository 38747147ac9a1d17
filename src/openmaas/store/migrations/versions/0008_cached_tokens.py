"""The ledger records how many prompt tokens the upstream served from its prompt cache.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("usage_events") as batch:
        batch.add_column(sa.Column("cached_tokens", sa.Integer))


def downgrade() -> None:
    with op.batch_alter_table("usage_events") as batch:
        batch.drop_column("cached_tokens")
