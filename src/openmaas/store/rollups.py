"""Ledger rollups: hourly and daily totals per (tenant, key, model, deployment), kept with every ledger insert.

Every row that is really inserted — a re-imported row skipped by ``ON CONFLICT DO NOTHING`` adds nothing —
is added to one hourly and one daily row, in the same transaction as the insert, by one grouped upsert per
batch (``grouped_sql``):

- PostgreSQL: a statement-level trigger over the insert's transition table (migration 0010), so every writer
  (spool import, direct batches, any replica) keeps them exact.
- SQLite: the ledger's two writers (``ledger_spool.import_file``, ``ledger_sink.EngineSink``) run the same
  grouped upsert over the rows whose rowid is above the table's largest before the insert (SQLite has no
  statement triggers; a row trigger cost ~32 µs per row here — bench §l). The database has one writer at a
  time, so those rows are exactly the batch's new ones. The spool importer, when every row of its file was
  new (the usual case), sums them in Python instead (``sqlite_add``: ~2 µs a row against the SQL's ~7–10).

Latency and time to first token are kept as histograms over fixed bounds, so percentiles over any range
and any filter are sums of a few hundred rows, never a scan of the ledger. A percentile is interpolated
inside its bucket (the bounds below are ~1.5× apart: a p95 is within that bucket's width).

The bounds are frozen: migration 0010 holds the same list, and a test keeps the two equal.
"""

from __future__ import annotations

import sqlite3
from bisect import bisect_right
from collections import Counter
from collections.abc import Sequence
from functools import partial
from itertools import repeat
from operator import is_not, itemgetter, mul, truediv
from typing import Any

from sqlalchemy import BigInteger, Column, Float, Index, MetaData, String, Table

from openmaas.store.schema import metadata, usage_events

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


def _in_bucket(column: str, i: int) -> str:
    parts = [f"{column} >= {LATENCY_BOUNDS_MS[i - 1]}"] if i else [f"{column} IS NOT NULL"]
    if i < len(LATENCY_BOUNDS_MS):
        parts.append(f"{column} < {LATENCY_BOUNDS_MS[i]}")
    return " AND ".join(parts)


def grouped_sql(table: str, source: str, postgres: bool) -> str:
    """``INSERT INTO table SELECT … FROM source GROUP BY …``, adding onto the rows already there. ``source``:
    ledger rows (a table, or a parenthesised query with an alias)."""
    seconds = GRAINS["hour" if table == "usage_hourly" else "day"]
    flag = "COALESCE(({})::int, 0)" if postgres else "COALESCE(({}), 0)"
    start = (
        f"(floor(created_at / {seconds}) * {seconds})::bigint"
        if postgres
        else (f"CAST(created_at / {seconds} AS INTEGER) * {seconds}")
    )
    keys = [start, "COALESCE(tenant_id, '')", "COALESCE(key_id, '')", "model", "COALESCE(deployment, '')"]
    values = [
        "COUNT(*)",
        f"SUM({flag.format('status >= 400')})",
        f"SUM({flag.format('interrupted')})",
        f"SUM({flag.format('degraded')})",
        "SUM(prompt_tokens)",
        "SUM(completion_tokens)",
        "SUM(COALESCE(cached_tokens, 0))",
        "SUM(cost_nanos)",
        "SUM(latency_ms)",
        f"SUM({flag.format('ttft_ms IS NOT NULL')})",
        "SUM(COALESCE(ttft_ms, 0))",
        *(f"SUM({flag.format(_in_bucket('latency_ms', i))})" for i in range(BUCKETS)),
        *(f"SUM({flag.format(_in_bucket('ttft_ms', i))})" for i in range(BUCKETS)),
    ]
    positions = ", ".join(str(i + 1) for i in range(len(KEYS)))
    return (
        f"INSERT INTO {table} ({', '.join((*KEYS, *SUMS))}) SELECT {', '.join((*keys, *values))} FROM {source}"
        f" WHERE true GROUP BY {positions} ORDER BY {positions}"
        f" ON CONFLICT ({', '.join(KEYS)}) DO UPDATE SET "
        + ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in SUMS)
    )


# SQLite: the rows a batch added (``:before``: the largest rowid before it), into each grain
SQLITE_AFTER = [
    grouped_sql(t.name, "(SELECT * FROM usage_events WHERE rowid > :before) AS added", postgres=False)
    for t in (hourly, daily)
]
SQLITE_LAST_ROWID = "SELECT COALESCE(MAX(rowid), 0) FROM usage_events"
SQLITE_UPSERT = {
    grain: f"INSERT INTO {t.name} ({', '.join((*KEYS, *SUMS))}) VALUES ({', '.join('?' * (len(KEYS) + len(SUMS)))})"
    f" ON CONFLICT ({', '.join(KEYS)}) DO UPDATE SET " + ", ".join(f"{c} = {t.name}.{c} + excluded.{c}" for c in SUMS)
    for grain, t in TABLES.items()
}
_AT = {name: i for i, name in enumerate(usage_events.c.keys())}  # a ledger row's column positions


def sqlite_add(conn: sqlite3.Connection, rows: Sequence[Sequence[Any]]) -> None:
    """Add ledger rows that were all just inserted (in ``usage_events`` column order) to both grains — the sums
    ``grouped_sql`` computes, done here over the rows the importer already holds: a grouped upsert evaluates 42
    bucket conditions per row in SQL (~7 µs a row), this ~2 µs (bench §l). One pass over the rows makes the
    hours; the days are folded from them (half the bytecodes of a pass per grain, bench §g)."""
    hours = _hours(rows)
    for grain, groups in (("hour", hours), ("day", fold(hours, GRAINS["day"]))):
        conn.executemany(SQLITE_UPSERT[grain], [[*key, *sums] for key, sums in groups.items()])


def grouped(rows: Sequence[Sequence[Any]], seconds: int) -> dict[tuple[Any, ...], list[Any]]:
    """Rollup rows (``KEYS`` → ``SUMS``) of ledger rows at a grain (``GRAINS``), as ``grouped_sql`` sums them.
    A day holds the hours that start in it (the same as the row's own day, except for a row within one float
    rounding step of midnight: then its hour and its day still agree)."""
    hours = _hours(rows)
    return hours if seconds == GRAINS["hour"] else fold(hours, seconds)


def fold(groups: dict[tuple[Any, ...], list[Any]], seconds: int) -> dict[tuple[Any, ...], list[Any]]:
    """Rollup rows of a finer grain summed into a coarser one (``seconds`` a multiple of theirs)."""
    out: dict[tuple[Any, ...], list[Any]] = {}
    for (start, *rest), sums in groups.items():
        key = (start // seconds * seconds, *rest)
        into = out.get(key)
        out[key] = list(sums) if into is None else [a + b for a, b in zip(into, sums, strict=True)]
    return out


_HOUR = GRAINS["hour"]
_LAT0, _TTFT0 = SUMS.index("lat_0"), SUMS.index("ttft_0")
_GROUP = tuple(_AT[c] for c in KEYS[1:])  # the key columns after the time bucket
_SUMMED = tuple(
    _AT[c]
    for c in (
        "status",
        "interrupted",
        "degraded",
        "prompt_tokens",
        "completion_tokens",
        "cached_tokens",
        "cost_nanos",
        "latency_ms",
        "ttft_ms",
    )
)
_NOT_NONE = partial(is_not, None)
_BUCKET = partial(bisect_right, LATENCY_BOUNDS_MS)


def _hours(rows: Sequence[Sequence[Any]]) -> dict[tuple[Any, ...], list[Any]]:
    """The hourly rollup rows of ledger rows: the importer's per-row work, so done column-wise by builtins (sum,
    map, Counter) over each group's columns. Python code runs per group; per row, at most one list append (when
    a batch holds several groups)."""
    if not rows:
        return {}
    columns = list(zip(*rows, strict=True))
    starts = map(mul, map(int, map(truediv, columns[_AT["created_at"]], repeat(_HOUR))), repeat(_HOUR))
    keys = list(zip(starts, *(columns[i] for i in _GROUP), strict=True))
    members: dict[tuple[Any, ...], list[int]] = {}
    if len(set(keys)) == 1:
        members[keys[0]] = list(range(len(rows)))
    else:
        for i, key in enumerate(keys):
            members.setdefault(key, []).append(i)
    summed: list[Sequence[Any]] = [columns[i] for i in _SUMMED]
    out: dict[tuple[Any, ...], list[Any]] = {}
    for (start, tenant, key_id, model, deployment), index in members.items():
        if len(index) == len(rows):
            parts: list[Sequence[Any]] = summed
        else:
            pick = itemgetter(*index)
            parts = [pick(c) if len(index) > 1 else (pick(c),) for c in summed]
        group = (start, tenant or "", key_id or "", model, deployment or "")
        sums = _sums(*parts)
        if group in out:  # only if a NULL and an empty string both appear in one key column
            sums = [a + b for a, b in zip(out[group], sums, strict=True)]
        out[group] = sums
    return out


def _sums(
    status: Sequence[int],
    interrupted: Sequence[Any],
    degraded: Sequence[Any],
    prompt: Sequence[int],
    completion: Sequence[int],
    cached: Sequence[int | None],
    cost: Sequence[int],
    latency: Sequence[Any],  # float, or None
    ttft: Sequence[Any],
) -> list[Any]:
    """``SUMS`` of one group's columns."""
    sums: list[Any] = [0] * len(SUMS)
    sums[0] = len(status)
    sums[1] = sum(map((400).__le__, status))
    sums[2] = sum(map(bool, interrupted))
    sums[3] = sum(map(bool, degraded))
    sums[4] = sum(prompt)
    sums[5] = sum(completion)
    sums[6] = sum(filter(None, cached))
    sums[7] = sum(cost)
    timed: list[float] = list(filter(_NOT_NONE, latency))
    sums[8] = sum(timed, 0.0)
    for bucket, n in Counter(map(_BUCKET, timed)).items():
        sums[_LAT0 + bucket] = n
    timed = list(filter(_NOT_NONE, ttft))
    sums[9] = len(timed)
    sums[10] = sum(timed, 0.0)
    for bucket, n in Counter(map(_BUCKET, timed)).items():
        sums[_TTFT0 + bucket] = n
    return sums


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
