"""The audit trail: for a request id, every ledger event with its route decision."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import or_, select

from openmaas.errors import NotFound
from openmaas.store.db import Database
from openmaas.store.schema import usage_events

FIELDS = (
    "id",
    "request_id",
    "tenant_id",
    "key_id",
    "endpoint",
    "model",
    "deployment",
    "status",
    "error_code",
    "interrupted",
    "degraded",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cost_nanos",
    "created_at",
    "route_reason",
    "route",
)


async def trail(db: Database, request_id: str, tenant_id: str | None = None) -> list[dict[str, Any]]:
    """Events whose request id (x-request-id) or event id is ``request_id``, oldest first."""
    query = select(*(usage_events.c[f] for f in FIELDS)).where(
        or_(usage_events.c.request_id == request_id, usage_events.c.id == request_id)
    )
    if tenant_id is not None:
        query = query.where(usage_events.c.tenant_id == tenant_id)
    async with db.engine.connect() as conn:
        result = await conn.execute(query.order_by(usage_events.c.created_at))
        rows = [{str(k): v for k, v in r._mapping.items()} for r in result]  # plain str keys (orjson)
    if not rows:
        raise NotFound(f"No request with id '{request_id}' is in the ledger", param="request_id")
    for row in rows:
        row["cost_usd"] = row.pop("cost_nanos") / 1e9
        row["route"] = orjson.loads(row["route"]) if row["route"] else None
        row["interrupted"], row["degraded"] = bool(row["interrupted"]), bool(row["degraded"])
    return rows


def describe(event: dict[str, Any]) -> list[str]:
    """Human-readable lines: where the data went and why."""
    route = event.get("route") or {}
    if route.get("kind") == "tool_call":
        return describe_tool(event, route)
    privacy = route.get("privacy") or {}
    lines = [
        f"request {event['request_id']}  (event {event['id']})",
        f"  asked for    {event['model']} ({event['endpoint']}), status {event['status']}"
        + (f" {event['error_code']}" if event.get("error_code") else ""),
        f"  privacy      {privacy.get('class', '-')}"
        + (f": {', '.join(privacy['entities'])}" if privacy.get("entities") else "")
        + f"   policy {route.get('policy', '-')}",
        f"  served by    {event.get('deployment') or '-'} ({route.get('chosen_locality') or '-'})"
        + ("   DEGRADED" if event.get("degraded") else "")
        + ("   masked before the cloud" if route.get("masked") else ""),
        f"  data went to {', '.join(route.get('data_went_to') or []) or 'nowhere'}",
    ]
    if route.get("difficulty") is not None:
        lines.append(f"  difficulty   {route['difficulty']}   prefer {route.get('prefer') or '-'}")
    lines.append("  candidates:")
    for c in route.get("candidates") or []:
        verdict = "kept   " if c["kept"] else "dropped"
        lines.append(f"    {verdict} {c['name']:<24} {c['locality']:<6} {c['role']:<9} {c['reason']}")
    if route.get("attempts"):
        lines.append("  attempts:")
        for a in route["attempts"]:
            lines.append(
                f"    {a['deployment']:<24} {a['outcome']:<24} {a['ms']} ms"
                + ("  masked" if a["masked"] else "")
                + (f"  on {a['placement']}" if a.get("placement") else "")
            )
    cached = event.get("cached_tokens")
    lines.append(
        f"  tokens       {event['prompt_tokens']} in"
        + (f" ({cached} from the prompt cache)" if cached else "")
        + f" / {event['completion_tokens']} out, ${event['cost_usd']:.6f}"
    )
    return lines


def describe_tool(event: dict[str, Any], route: dict[str, Any]) -> list[str]:
    """A tool call's row: which tool, in which step, where its arguments went, what came back."""
    privacy = route.get("privacy") or {}
    categories = ", ".join(privacy.get("categories") or [])
    step = f"step {route['step']} of an agent run ({route['surface']})" if route.get("step") is not None else ""
    lines = [
        f"request {event['request_id']}  (event {event['id']})",
        f"  tool call    {event['model']} via {route.get('surface', '-')}, status {event['status']}"
        + (f" {event['error_code']}" if event.get("error_code") else ""),
    ]
    if step:
        lines.append(f"  in           {step}" + (f", model call id {route['call_id']}" if route.get("call_id") else ""))
    lines += [
        f"  arguments    {privacy.get('class', '-')}"
        + (f": {categories}" if categories else "")
        + f"   policy {route.get('policy', '-')}",
        f"  went to      {', '.join(route.get('arguments_went_to') or []) or 'nowhere (not sent)'}",
        f"  result       {route.get('result_privacy') or '-'}",
        f"  took         {route.get('ms', 0)} ms, ${event['cost_usd']:.6f}",
    ]
    if route.get("error"):
        lines.append(f"  error        {route['error']}")
    return lines


def summary(events: list[dict[str, Any]]) -> str:
    """One line over a request's rows: model calls, tool calls, total cost."""
    tools = [e for e in events if (e.get("route") or {}).get("kind") == "tool_call"]
    models = len(events) - len(tools)
    cost = sum(e["cost_usd"] for e in events)
    return f"{models} model call(s), {len(tools)} tool call(s), total ${cost:.6f}"
