"""Usage reports from the ledger: aggregated by any of tenant, key, model, deployment and day.

Read from the daily rollup (``store.rollups``), which the database keeps exact with every ledger insert:
a month of a busy gateway is a few thousand rows to sum, not millions of events to scan."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

from sqlalchemy import func, select

from openmaas.errors import InvalidRequest
from openmaas.store.db import Database
from openmaas.store.rollups import daily

DIMENSIONS = {
    "tenant": daily.c.tenant_id,
    "key": daily.c.key_id,
    "model": daily.c.model,
    "deployment": daily.c.deployment,
    "day": daily.c.bucket,
}
COLUMNS = ["requests", "prompt_tokens", "completion_tokens", "total_tokens", "cost_usd", "errors", "interrupted"]


def parse_group_by(text: str | None) -> list[str]:
    names = [n.strip() for n in (text or "day").split(",") if n.strip()]
    unknown = [n for n in names if n not in DIMENSIONS]
    if unknown:
        raise InvalidRequest(
            f"cannot group usage by {', '.join(unknown)}; choose from {', '.join(DIMENSIONS)}", param="group_by"
        )
    return names


def parse_day(text: str | None, param: str) -> str | None:
    if not text:
        return None
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise InvalidRequest(f"'{param}' must be a date like 2026-11-22", param=param) from None


def _midnight(day: str, days: int = 0) -> float:
    date = dt.date.fromisoformat(day) + dt.timedelta(days=days)
    return dt.datetime(date.year, date.month, date.day, tzinfo=dt.UTC).timestamp()


async def report(
    db: Database,
    *,
    group_by: list[str],
    start: str | None = None,
    end: str | None = None,
    tenant_id: str | None = None,
    key_id: str | None = None,
    model: str | None = None,
    deployment: str | None = None,
    anonymous: bool = False,
) -> list[dict[str, Any]]:
    """Rows of totals; ``start``/``end`` are inclusive UTC dates."""
    c = daily.c
    dims = [DIMENSIONS[name].label(name) for name in group_by]
    query = select(
        *dims,
        func.coalesce(func.sum(c.requests), 0).label("requests"),
        func.coalesce(func.sum(c.prompt_tokens), 0).label("prompt_tokens"),
        func.coalesce(func.sum(c.completion_tokens), 0).label("completion_tokens"),
        func.coalesce(func.sum(c.cost_nanos), 0).label("cost_nanos"),
        func.coalesce(func.sum(c.errors), 0).label("errors"),
        func.coalesce(func.sum(c.interrupted), 0).label("interrupted"),
    )
    if start:
        query = query.where(c.bucket >= _midnight(start))
    if end:
        query = query.where(c.bucket < _midnight(end, days=1))
    if tenant_id is not None:
        query = query.where(c.tenant_id == tenant_id)
    if key_id is not None:
        query = query.where(c.key_id == key_id)
    if model is not None:
        query = query.where(c.model == model)
    if deployment is not None:
        query = query.where(c.deployment == deployment)
    if anonymous:
        query = query.where(c.key_id == "")
    if dims:
        query = query.group_by(*[DIMENSIONS[n] for n in group_by]).order_by(*[DIMENSIONS[n] for n in group_by])
    async with db.engine.connect() as conn:
        rows = [{str(k): v for k, v in r._mapping.items()} for r in await conn.execute(query)]
    out = []
    for row in rows:
        nanos = int(row.pop("cost_nanos"))
        row = {k: (int(v) if k in COLUMNS else _dimension(k, v)) for k, v in row.items()}
        row["total_tokens"] = row["prompt_tokens"] + row["completion_tokens"]
        row["cost_usd"] = nanos / 1e9
        out.append(row)
    return [r for r in out if r["requests"]]


def _dimension(name: str, value: Any) -> Any:
    """A rollup key as the ledger has it: days as ISO dates, '' (none) as null."""
    if name == "day":
        return dt.datetime.fromtimestamp(int(value), dt.UTC).date().isoformat()
    return value or None


def to_csv(rows: list[dict[str, Any]], group_by: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*group_by, *COLUMNS], lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "cost_usd": f"{row['cost_usd']:.9f}"})
    return buffer.getvalue()
