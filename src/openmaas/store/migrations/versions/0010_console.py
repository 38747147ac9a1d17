"""The console: ledger rollups kept by a trigger (``store.rollups``), an index for the newest-first
request log, and server-side console sessions.

The rollups are backfilled from the ledger already there, in the migration's transaction.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# Frozen copy of store.rollups.LATENCY_BOUNDS_MS (a test keeps them equal).
BOUNDS = (10, 25, 50, 100, 200, 350, 500, 750, 1000, 1500, 2000, 3000, 5000, 7500, 10000, 15000, 20000, 30000,
          60000, 120000)  # fmt: skip
BUCKETS = len(BOUNDS) + 1
GRAINS = {"usage_hourly": 3600, "usage_daily": 86400}
KEYS = ("bucket", "tenant_id", "key_id", "model", "deployment")
SUMS = (
    "requests", "errors", "interrupted", "degraded", "prompt_tokens", "completion_tokens", "cached_tokens",
    "cost_nanos", "latency_ms_sum", "ttft_count", "ttft_ms_sum",
    *(f"lat_{i}" for i in range(BUCKETS)), *(f"ttft_{i}" for i in range(BUCKETS)),
)  # fmt: skip


def _in_bucket(column: str, i: int) -> str:
    parts = [f"{column} >= {BOUNDS[i - 1]}"] if i else [f"{column} IS NOT NULL"]
    if i < len(BOUNDS):
        parts.append(f"{column} < {BOUNDS[i]}")
    return " AND ".join(parts)


def _values(row: str, flag: str) -> list[str]:
    """Per-row contributions to SUMS (``flag``: how a condition becomes 0/1 in this dialect)."""
    r = f"{row}." if row else ""
    return [
        "1",
        flag.format(f"{r}status >= 400"),
        flag.format(f"{r}interrupted"),
        flag.format(f"{r}degraded"),
        f"{r}prompt_tokens",
        f"{r}completion_tokens",
        f"COALESCE({r}cached_tokens, 0)",
        f"{r}cost_nanos",
        f"{r}latency_ms",
        flag.format(f"{r}ttft_ms IS NOT NULL"),
        f"COALESCE({r}ttft_ms, 0)",
        *(flag.format(_in_bucket(f"{r}latency_ms", i)) for i in range(BUCKETS)),
        *(flag.format(_in_bucket(f"{r}ttft_ms", i)) for i in range(BUCKETS)),
    ]


def _keys(row: str, seconds: int, postgres: bool) -> list[str]:
    r = f"{row}." if row else ""
    start = (
        f"(floor({r}created_at / {seconds}) * {seconds})::bigint"
        if postgres
        else (f"CAST({r}created_at / {seconds} AS INTEGER) * {seconds}")
    )
    return [
        start,
        f"COALESCE({r}tenant_id, '')",
        f"COALESCE({r}key_id, '')",
        f"{r}model",
        f"COALESCE({r}deployment, '')",
    ]


def _grouped(table: str, source: str, postgres: bool) -> str:
    """INSERT … SELECT … GROUP BY from ``source`` into ``table``, adding onto existing rows."""
    flag = "COALESCE(({})::int, 0)" if postgres else "COALESCE(({}), 0)"
    keys = _keys("", GRAINS[table], postgres)
    sums = [f"SUM({v})" for v in _values("", flag)]
    sums[0] = "COUNT(*)"
    positions = ", ".join(str(i + 1) for i in range(len(KEYS)))
    return (
        f"INSERT INTO {table} ({', '.join((*KEYS, *SUMS))}) SELECT {', '.join((*keys, *sums))} FROM {source}"
        f" GROUP BY {positions} ORDER BY {positions}"
        f" ON CONFLICT ({', '.join(KEYS)}) DO UPDATE SET "
        + ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in SUMS)
    )


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for table in GRAINS:
        op.create_table(
            table,
            sa.Column("bucket", sa.BigInteger, primary_key=True),
            sa.Column("tenant_id", sa.String(64), primary_key=True),
            sa.Column("key_id", sa.String(64), primary_key=True),
            sa.Column("model", sa.String(200), primary_key=True),
            sa.Column("deployment", sa.String(200), primary_key=True),
            *(sa.Column(c, sa.Float if c.endswith("_sum") else sa.BigInteger, nullable=False) for c in SUMS),
        )
        op.create_index(f"ix_{table}_tenant_bucket", table, ["tenant_id", "bucket"])
        op.execute(_grouped(table, "usage_events", postgres))
    op.create_index("ix_usage_events_created", "usage_events", ["created_at"])
    op.create_table(
        "console_sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64)),
        sa.Column("tenant_id", sa.String(64)),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    op.create_index("ix_console_sessions_expires_at", "console_sessions", ["expires_at"])
    if postgres:
        body = "; ".join(_grouped(t, "inserted", postgres=True) for t in GRAINS)
        op.execute(
            f"CREATE FUNCTION usage_rollup() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {body}; RETURN NULL; END $$"
        )
        op.execute(
            "CREATE TRIGGER usage_rollup AFTER INSERT ON usage_events REFERENCING NEW TABLE AS inserted"
            " FOR EACH STATEMENT EXECUTE FUNCTION usage_rollup()"
        )
    # SQLite has no statement triggers: its ledger writers add each batch themselves (store.rollups)


def downgrade() -> None:
    op.execute(
        "DROP TRIGGER IF EXISTS usage_rollup"
        + (" ON usage_events" if op.get_bind().dialect.name == "postgresql" else "")
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS usage_rollup()")
    op.drop_table("console_sessions")
    op.drop_index("ix_usage_events_created", table_name="usage_events")
    for table in GRAINS:
        op.drop_table(table)
