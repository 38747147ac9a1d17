"""Privacy policies with per-category rules (``mask;HEALTH=local_only,FINANCE=allow``) need more than
16 characters on tenants and keys.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("tenants", "api_keys"):
        with op.batch_alter_table(table) as batch:
            batch.alter_column("privacy", type_=sa.String(200), existing_type=sa.String(16))


def downgrade() -> None:
    for table in ("tenants", "api_keys"):
        with op.batch_alter_table(table) as batch:
            batch.alter_column("privacy", type_=sa.String(16), existing_type=sa.String(200))
