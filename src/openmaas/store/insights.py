"""The console's read models: bounded, indexed queries only.

- ``overview``: series and top-N breakdowns summed from the rollups (``store.rollups``): hourly rows for
  ranges up to ``HOURLY_MAX_DAYS``, daily rows beyond — a few thousand rows per query, whatever the ledger's size.
- ``requests_page``: the ledger newest first, by keyset pagination on ``(created_at, id)`` (never ``OFFSET``),
  at most ``MAX_PAGE`` rows, through the ``created_at`` / ``(tenant, created_at)`` / ``(key, created_at)`` indexes.
- ``spend``: this month's and today's spend per tenant or key, from the daily rollup.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import time
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Select, and_, func, or_, select, tuple_

from openmaas.errors import InvalidRequest
from openmaas.store import rollups
from openmaas.store.db import Database
from openmaas.store.schema import api_keys, tenants, usage_events

HOURLY_MAX_DAYS = 3
MAX_RANGE_DAYS = 400
MAX_PAGE = 200
TOP = 10
DIMENSIONS = ("model", "deployment", "tenant", "key")


@dataclass(frozen=True)
class Filters:
    tenant_id: str | None = None  # the signed-in tenant's, or the admin's choice
    key_id: str | None = None
    model: str | None = None
    deployment: str | None = None
    endpoint: str | None = None  # the ledger's requests only (rollups do not keep it)


def time_range(start: str | None, end: str | None, default_days: float = 1.0) -> tuple[float, float]:
    """``start``/``end`` as epoch seconds or ISO dates/times (UTC unless an offset is given)."""
    now = time.time()
    high = _instant(end, "end") if end else now
    low = _instant(start, "start") if start else high - default_days * 86400
    if low >= high:
        raise InvalidRequest("'start' must be before 'end'", param="start")
    if high - low > MAX_RANGE_DAYS * 86400:
        raise InvalidRequest(f"a range may span at most {MAX_RANGE_DAYS} days", param="start")
    return low, high


def _instant(text: str, param: str) -> float:
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(value) or abs(value) > 1e11:
            raise InvalidRequest(f"'{param}' is not a time", param=param)
        return value
    try:
        moment = dt.datetime.fromisoformat(text)
        return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).timestamp()
    except (ValueError, OverflowError):
        raise InvalidRequest(f"'{param}' must be epoch seconds or an ISO date/time", param=param) from None


def _filtered(query: Select[Any], table: Any, f: Filters) -> Select[Any]:
    for column, value in (
        ("tenant_id", f.tenant_id),
        ("key_id", f.key_id),
        ("model", f.model),
        ("deployment", f.deployment),
    ):
        if value is not None:
            query = query.where(table.c[column] == value)
    return query


async def overview(db: Database, start: float, end: float, f: Filters) -> dict[str, Any]:
    grain = "hour" if end - start <= HOURLY_MAX_DAYS * 86400 else "day"
    table = rollups.TABLES[grain]
    seconds = rollups.GRAINS[grain]
    c = table.c
    window = and_(c.bucket >= int(start // seconds) * seconds, c.bucket < end)
    sums = [func.sum(c[name]).label(name) for name in rollups.SUMS]
    series_q = _filtered(select(c.bucket, *sums).where(window), table, f).group_by(c.bucket).order_by(c.bucket)
    async with db.engine.connect() as conn:
        rows = [{str(k): v for k, v in r._mapping.items()} for r in await conn.execute(series_q)]
        breakdowns: dict[str, list[dict[str, Any]]] = {}
        for dim in DIMENSIONS:
            column = c[f"{dim}_id" if dim in ("tenant", "key") else dim]
            query: Select[Any] = select(
                column.label("value"),
                func.sum(c.requests).label("requests"),
                func.sum(c.errors).label("errors"),
                func.sum(c.prompt_tokens + c.completion_tokens).label("tokens"),
                func.sum(c.cost_nanos).label("cost_nanos"),
                func.sum(c.latency_ms_sum).label("latency_ms_sum"),
            )
            query = _filtered(query.where(window), table, f).group_by(column)
            query = query.order_by(func.sum(c.cost_nanos).desc(), func.sum(c.requests).desc(), column).limit(TOP)
            breakdowns[dim] = [
                _breakdown({str(k): v for k, v in r._mapping.items()}) for r in await conn.execute(query)
            ]
        await _name(conn, breakdowns)
    series = _filled([_point(r) for r in rows], int(start // seconds) * seconds, end, seconds)
    total: dict[str, Any] = {
        name: sum((float if name.endswith("_sum") else int)(r[name] or 0) for r in rows) for name in rollups.SUMS
    }
    return {
        "object": "console.overview",
        "grain": grain,
        "start": start,
        "end": end,
        "totals": _point({"bucket": None, **total}),
        "series": series,
        "by": breakdowns,
    }


def _filled(points: list[dict[str, Any]], first: int, end: float, seconds: int) -> list[dict[str, Any]]:
    """Every bucket of the range, those without requests as zeros (at most ~400: a chart's x axis)."""
    have = {p["t"]: p for p in points}
    blank = {name: 0 for name in rollups.SUMS}
    return [have.get(t) or _point({"bucket": t, **blank}) for t in range(first, int(end), seconds)]


def _histogram(row: dict[str, Any], prefix: str) -> list[int]:
    return [int(row[f"{prefix}_{i}"] or 0) for i in range(rollups.BUCKETS)]


def _point(row: dict[str, Any]) -> dict[str, Any]:
    requests = int(row["requests"] or 0)
    latency, ttft = _histogram(row, "lat"), _histogram(row, "ttft")
    return {
        "t": row["bucket"],
        "requests": requests,
        "errors": int(row["errors"] or 0),
        "error_rate": (int(row["errors"] or 0) / requests) if requests else 0.0,
        "prompt_tokens": int(row["prompt_tokens"] or 0),
        "completion_tokens": int(row["completion_tokens"] or 0),
        "cached_tokens": int(row["cached_tokens"] or 0),
        "cost_usd": int(row["cost_nanos"] or 0) / 1e9,
        "degraded": int(row["degraded"] or 0),
        "latency_ms": {f"p{q}": rollups.percentile(latency, q / 100) for q in (50, 95, 99)},
        "ttft_ms": {f"p{q}": rollups.percentile(ttft, q / 100) for q in (50, 95, 99)},
        "latency_ms_mean": (float(row["latency_ms_sum"] or 0) / requests) if requests else None,
    }


def _breakdown(row: dict[str, Any]) -> dict[str, Any]:
    requests = int(row["requests"] or 0)
    return {
        "value": row["value"] or None,
        "requests": requests,
        "errors": int(row["errors"] or 0),
        "tokens": int(row["tokens"] or 0),
        "cost_usd": int(row["cost_nanos"] or 0) / 1e9,
        "latency_ms_mean": (float(row["latency_ms_sum"] or 0) / requests) if requests else None,
    }


async def _name(conn: Any, breakdowns: dict[str, list[dict[str, Any]]]) -> None:
    """Tenant and key rows get their names (a handful of primary-key reads)."""
    for dim, table, label in (("tenant", tenants, tenants.c.name), ("key", api_keys, api_keys.c.name)):
        ids = [r["value"] for r in breakdowns[dim] if r["value"]]
        if not ids:
            continue
        names = dict((await conn.execute(select(table.c.id, label).where(table.c.id.in_(ids)))).all())
        for row in breakdowns[dim]:
            row["name"] = names.get(row["value"])


FIELDS = (
    "id", "request_id", "created_at", "tenant_id", "key_id", "endpoint", "model", "deployment", "status",
    "error_code", "route_reason", "degraded", "interrupted", "prompt_tokens", "completion_tokens",
    "cached_tokens", "cost_nanos", "latency_ms", "ttft_ms", "route",
)  # fmt: skip


def _cursor(created_at: float, event_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([created_at, event_id])).decode().rstrip("=")


def _uncursor(text: str) -> tuple[float, str]:
    try:
        created_at, event_id = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        return float(created_at), str(event_id)
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise InvalidRequest("'cursor' is not one this API returned", param="cursor") from None


async def requests_page(
    db: Database,
    f: Filters,
    *,
    start: float | None = None,
    end: float | None = None,
    status: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> dict[str, Any]:
    """Ledger rows newest first; ``status``: ok | error | a code; ``cursor``: the previous page's ``next``."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequest(f"'limit' must be between 1 and {MAX_PAGE}", param="limit")
    c = usage_events.c
    query = _filtered(select(*(c[name] for name in FIELDS)), usage_events, f)
    if start is not None:
        query = query.where(c.created_at >= start)
    if end is not None:
        query = query.where(c.created_at < end)
    if status == "ok":
        query = query.where(c.status < 400)
    elif status == "error":
        query = query.where(c.status >= 400)
    elif status:
        if not (status.isascii() and status.isdigit() and 100 <= int(status) <= 599):
            raise InvalidRequest("'status' must be ok, error or an HTTP status code", param="status")
        query = query.where(c.status == int(status))
    if cursor:
        at, event_id = _uncursor(cursor)
        query = query.where(
            c.created_at <= at, or_(c.created_at < at, tuple_(c.created_at, c.id) < tuple_(at, event_id))
        )
    query = query.order_by(c.created_at.desc(), c.id.desc()).limit(limit + 1)
    async with db.engine.connect() as conn:
        rows = [{str(k): v for k, v in r._mapping.items()} for r in await conn.execute(query)]
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "object": "list",
        "data": [_request_row(r) for r in rows],
        "next": _cursor(rows[-1]["created_at"], rows[-1]["id"]) if more else None,
    }


def _request_row(row: dict[str, Any]) -> dict[str, Any]:
    route = orjson.loads(row.pop("route")) if row.get("route") else {}
    privacy = route.get("privacy") or {}
    row["cost_usd"] = row.pop("cost_nanos") / 1e9
    row["degraded"], row["interrupted"] = bool(row["degraded"]), bool(row["interrupted"])
    row["privacy"] = privacy.get("class")
    row["locality"] = route.get("chosen_locality")
    row["kind"] = route.get("kind") or "model_call"
    return row


def period_starts(now: float | None = None) -> dict[str, float]:
    """UTC midnight today and the first of this month (the budget periods)."""
    today = dt.datetime.fromtimestamp(now if now is not None else time.time(), dt.UTC).date()
    return {
        "day": dt.datetime(today.year, today.month, today.day, tzinfo=dt.UTC).timestamp(),
        "month": dt.datetime(today.year, today.month, 1, tzinfo=dt.UTC).timestamp(),
    }


async def spend(db: Database, by: str, ids: list[str]) -> dict[str, dict[str, float]]:
    """``{id: {"day": usd, "month": usd, "total": usd}}`` for tenants or keys (``by``) in ``ids``: the
    budget periods' spend so far (UTC), from the daily rollup."""
    if not ids:
        return {}
    c = rollups.daily.c
    column = c.tenant_id if by == "tenant" else c.key_id
    starts = period_starts()
    month = func.sum(c.cost_nanos).filter(c.bucket >= starts["month"])
    today = func.sum(c.cost_nanos).filter(c.bucket >= starts["day"])
    query = select(column, func.sum(c.cost_nanos), month, today).where(column.in_(ids)).group_by(column)
    async with db.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return {
        r[0]: {"total": int(r[1] or 0) / 1e9, "month": int(r[2] or 0) / 1e9, "day": int(r[3] or 0) / 1e9} for r in rows
    }
