"""Tenants, plans, API keys and the usage ledger.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _stamps() -> list[sa.Column[float]]:
    return [sa.Column("created_at", sa.Float, nullable=False), sa.Column("updated_at", sa.Float, nullable=False)]


def upgrade() -> None:
    op.create_table(
        "plans",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("monthly_token_quota", sa.BigInteger),
        sa.Column("monthly_cost_quota_nanos", sa.BigInteger),
        sa.Column("models", sa.JSON),
        sa.Column("features", sa.JSON, nullable=False),
        sa.Column("rpm", sa.Integer),
        sa.Column("tpm", sa.Integer),
        *_stamps(),
    )
    op.create_table(
        "tenants",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("plan_id", sa.String(64), sa.ForeignKey("plans.id")),
        sa.Column("budget_nanos", sa.BigInteger),
        sa.Column("budget_period", sa.String(16), nullable=False),
        sa.Column("rpm", sa.Integer),
        sa.Column("tpm", sa.Integer),
        sa.Column("privacy", sa.String(16), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        *_stamps(),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(64), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("prefix", sa.String(32), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False, unique=True),
        sa.Column("models", sa.JSON),
        sa.Column("privacy", sa.String(16)),
        sa.Column("rpm", sa.Integer),
        sa.Column("tpm", sa.Integer),
        sa.Column("budget_nanos", sa.BigInteger),
        sa.Column("budget_period", sa.String(16), nullable=False),
        sa.Column("expires_at", sa.Float),
        sa.Column("enabled", sa.Boolean, nullable=False),
        *_stamps(),
    )
    op.create_table(
        "usage_events",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("tenant_id", sa.String(64)),
        sa.Column("key_id", sa.String(64)),
        sa.Column("endpoint", sa.String(32), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("deployment", sa.String(200)),
        sa.Column("route_reason", sa.String(500), nullable=False),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("completion_tokens", sa.Integer, nullable=False),
        sa.Column("cost_nanos", sa.BigInteger, nullable=False),
        sa.Column("usage_source", sa.String(16), nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("ttft_ms", sa.Float),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("error_code", sa.String(64)),
        sa.Column("interrupted", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
    )
    for table, column in (
        ("plans", "updated_at"),
        ("tenants", "updated_at"),
        ("api_keys", "tenant_id"),
        ("api_keys", "updated_at"),
        ("usage_events", "request_id"),
        ("usage_events", "tenant_id"),
        ("usage_events", "key_id"),
        ("usage_events", "created_at"),
        ("usage_events", "day"),
    ):
        op.create_index(f"ix_{table}_{column}", table, [column])


def downgrade() -> None:
    for table in ("usage_events", "api_keys", "tenants", "plans"):
        op.drop_table(table)
