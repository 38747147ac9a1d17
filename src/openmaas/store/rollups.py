"""Ledger rollups: hourly and daily totals per (tenant, key, model, deployment), kept by the database.

A trigger on ``usage_events`` (migration 0010) adds every row that is really inserted — a re-imported
row skipped by ``ON CONFLICT DO NOTHING`` adds nothing — to one hourly and one daily row, in the same
transaction as the insert: the totals are exact, whatever wrote the ledger. On PostgreSQL the trigger is
per statement over its transition table (one grouped upsert per imported batch); on SQLite per row (in C,
inside the importing transaction).

Latency and time to first token are kept as histograms over fixed bounds, so percentiles over any range
and any filter are sums of a few hundred rows, never a scan of the ledger. A percentile is interpolated
inside its bucket (the bounds below are ~1.5× apart: a p95 is within that bucket's width).

The bounds are frozen: migration 0010 holds the same list, and a test keeps the two equal.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, MetaData, String, Table

from openmaas.store.schema import metadata

LATENCY_BOUNDS_MS: tuple[float, ...] = (
    10, 25, 50, 100, 200, 350, 500, 750, 1000, 1500, 2000, 3000, 5000, 7500, 10000, 15000, 20000, 30000, 60000,
    120000,
)  # fmt: skip
BUCKETS = len(LATENCY_BOUNDS_MS) + 1  # the last bucket is open-ended
GRAINS = {"hour": 3600, "day": 86400}
KEYS = ("bucket", "tenant_id", "key_id", "model", "deployment")
SUMS = (
    "requests",
    "errors",
    "interrupted",
    "degraded",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cost_nanos",
    "latency_ms_sum",
    "ttft_count",
    "ttft_ms_sum",
    *(f"lat_{i}" for i in range(BUCKETS)),
    *(f"ttft_{i}" for i in range(BUCKETS)),
)


def _table(name: str, metadata: MetaData) -> Table:
    return Table(
        name,
        metadata,
        Column("bucket", BigInteger, primary_key=True),  # UTC epoch seconds of the hour or day
        Column("tenant_id", String(64), primary_key=True),  # '' for none (open mode)
        Column("key_id", String(64), primary_key=True),
        Column("model", String(200), primary_key=True),
        Column("deployment", String(200), primary_key=True),
        *(Column(c, Float if c.endswith("_sum") else BigInteger, nullable=False, default=0) for c in SUMS),
        Index(f"ix_{name}_tenant_bucket", "tenant_id", "bucket"),
    )


hourly = _table("usage_hourly", metadata)
daily = _table("usage_daily", metadata)
TABLES = {"hour": hourly, "day": daily}


def percentile(counts: list[int], q: float) -> float | None:
    """The ``q`` quantile (0–1) of a histogram over ``LATENCY_BOUNDS_MS``, interpolated in its bucket."""
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(counts):
        if n and seen + n >= rank:
            low = LATENCY_BOUNDS_MS[i - 1] if i else 0.0
            high = LATENCY_BOUNDS_MS[i] if i < len(LATENCY_BOUNDS_MS) else low * 2
            return low + (high - low) * max(0.0, rank - seen) / n
        seen += n
    return LATENCY_BOUNDS_MS[-1] * 2
