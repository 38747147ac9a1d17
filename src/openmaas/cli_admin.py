"""``openmaas tenants|plans|keys|usage|db``: manage the store directly (no running server needed).

Running gateways pick changes up within ``auth.refresh_seconds``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
from pydantic import BaseModel, ValidationError

from openmaas.errors import OpenMaaSError
from openmaas.protocol.admin import KeyCreate, KeyFields, PlanCreate, PlanFields, TenantCreate, TenantFields
from openmaas.settings import load_settings
from openmaas.store import audit, usage
from openmaas.store.admin import AdminStore

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
config_option = click.option("--config", "-c", type=click.Path(exists=True, dir_okay=False), help="openmaas.yaml")


def _run(config: str | None, work: Callable[[AdminStore], Awaitable[T]]) -> T:
    async def main() -> T:
        db = load_settings(config).database()
        try:
            await db.migrate()
            return await work(AdminStore(db))
        finally:
            await db.close()

    try:
        return asyncio.run(main())
    except OpenMaaSError as exc:
        raise click.ClickException(exc.message) from None


def _spec(model: type[M], values: dict[str, Any]) -> M:
    try:
        return model.model_validate({k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        raise click.ClickException(str(exc.errors(include_url=False)[0]["msg"])) from None


def _table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    if not rows:
        click.echo("(none)")
        return
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6f}".rstrip("0").rstrip(".") if value < 1e9 else dt.datetime.fromtimestamp(value).isoformat()
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


def _models(text: str | None) -> list[str] | None:
    return None if text is None else [m.strip() for m in text.split(",") if m.strip()]


limit_options = [
    click.option("--rpm", type=int, help="requests per minute"),
    click.option("--tpm", type=int, help="tokens per minute"),
    click.option("--budget-usd", type=float, help="hard budget in USD per period"),
    click.option("--budget-period", type=click.Choice(["day", "month", "total"])),
    click.option(
        "--tools",
        help="comma-separated MCP tools (server__tool) or patterns ('time__*', '*') it may use; '' allows none",
    ),
    click.option(
        "--privacy",
        help="allow | mask | local_only, optionally with per-category rules: 'mask;HEALTH=local_only,FINANCE=allow'",
    ),
]


def _tool_list(fields: dict[str, Any]) -> dict[str, Any]:
    """``--tools`` as the list the admin API takes (absent: unchanged)."""
    if fields.get("tools") is not None:
        fields["tools"] = _models(fields["tools"])
    return fields


def with_limits(f: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(limit_options):
        f = option(f)
    return f


@click.group()
def tenants() -> None:
    """Tenants (organisations or teams) own keys and are on one plan."""


@tenants.command("create")
@click.argument("name")
@click.option("--plan")
@with_limits
@config_option
def tenants_create(name: str, config: str | None, **fields: Any) -> None:
    spec = _spec(TenantCreate, {"name": name, **_tool_list(fields)})
    tenant = _run(config, lambda s: s.create_tenant(spec))
    click.echo(f"created tenant {tenant['id']} ({tenant['name']})")


@tenants.command("update")
@click.argument("tenant")
@click.option("--plan")
@click.option("--enable/--disable", "enabled", default=None)
@with_limits
@config_option
def tenants_update(tenant: str, config: str | None, **fields: Any) -> None:
    spec = _spec(TenantFields, _tool_list(fields))
    row = _run(config, lambda s: s.update_tenant(tenant, spec))
    click.echo(f"updated tenant {row['id']} ({row['name']})")


@tenants.command("list")
@click.option("--json", "as_json", is_flag=True)
@config_option
def tenants_list(config: str | None, as_json: bool) -> None:
    rows = _run(config, lambda s: s.list_tenants())
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        _table(
            rows, ["id", "name", "plan_id", "budget_usd", "budget_period", "rpm", "tpm", "privacy", "tools", "enabled"]
        )


@click.group()
def plans() -> None:
    """Plans bundle monthly quotas, allowed models and features."""


@plans.command("create")
@click.argument("plan_id")
@click.option("--name")
@click.option("--monthly-tokens", "monthly_token_quota", type=int)
@click.option("--monthly-usd", "monthly_cost_quota_usd", type=float)
@click.option("--models", help="comma-separated model names (default: all)")
@click.option("--features", help='JSON object, e.g. \'{"ttc": {"max_n": 4}}\'')
@click.option("--rpm", type=int)
@click.option("--tpm", type=int)
@config_option
def plans_create(plan_id: str, config: str | None, models: str | None, features: str | None, **fields: Any) -> None:
    values = {"id": plan_id, "models": _models(models), "features": json.loads(features) if features else None}
    spec = _spec(PlanCreate, {**values, **fields})
    plan = _run(config, lambda s: s.create_plan(spec))
    click.echo(f"created plan {plan['id']}")


@plans.command("update")
@click.argument("plan_id")
@click.option("--monthly-tokens", "monthly_token_quota", type=int)
@click.option("--monthly-usd", "monthly_cost_quota_usd", type=float)
@click.option("--models")
@click.option("--rpm", type=int)
@click.option("--tpm", type=int)
@config_option
def plans_update(plan_id: str, config: str | None, models: str | None, **fields: Any) -> None:
    spec = _spec(PlanFields, {"models": _models(models), **fields})
    _run(config, lambda s: s.update_plan(plan_id, spec))
    click.echo(f"updated plan {plan_id}")


@plans.command("list")
@config_option
def plans_list(config: str | None) -> None:
    rows = _run(config, lambda s: s.list_plans())
    _table(rows, ["id", "name", "monthly_token_quota", "monthly_cost_quota_usd", "models", "rpm", "tpm", "features"])


@click.group()
def keys() -> None:
    """API keys: shown once at creation, stored only as a hash."""


@keys.command("create")
@click.option("--tenant", required=True, help="tenant id or name")
@click.option("--name", default="default", show_default=True)
@click.option("--models", help="comma-separated models or aliases this key may use (default: all)")
@click.option("--expires-in-days", type=float)
@with_limits
@config_option
def keys_create(
    tenant: str, name: str, models: str | None, expires_in_days: float | None, config: str | None, **fields: Any
) -> None:
    expires = None if expires_in_days is None else dt.datetime.now(dt.UTC).timestamp() + expires_in_days * 86400
    spec = _spec(
        KeyCreate,
        {"tenant": tenant, "name": name, "models": _models(models), "expires_at": expires, **_tool_list(fields)},
    )
    record, secret = _run(config, lambda s: s.create_key(spec))
    click.echo(f"created key {record['id']} for tenant {record['tenant_id']}. Copy it now; it is not shown again:")
    click.echo(secret)


@keys.command("list")
@click.option("--tenant")
@click.option("--json", "as_json", is_flag=True)
@config_option
def keys_list(tenant: str | None, config: str | None, as_json: bool) -> None:
    rows = _run(config, lambda s: s.list_keys(tenant))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        _table(rows, ["id", "prefix", "name", "tenant_id", "models", "tools", "rpm", "tpm", "budget_usd", "enabled"])


@keys.command("update")
@click.argument("key_id")
@click.option("--models")
@click.option("--enable/--disable", "enabled", default=None)
@with_limits
@config_option
def keys_update(key_id: str, models: str | None, config: str | None, **fields: Any) -> None:
    spec = _spec(KeyFields, {"models": _models(models), **_tool_list(fields)})
    _run(config, lambda s: s.update_key(key_id, spec))
    click.echo(f"updated key {key_id}")


@keys.command("revoke")
@click.argument("key_id")
@config_option
def keys_revoke(key_id: str, config: str | None) -> None:
    _run(config, lambda s: s.revoke_key(key_id))
    click.echo(f"revoked key {key_id}")


@keys.command("rotate")
@click.argument("key_id")
@config_option
def keys_rotate(key_id: str, config: str | None) -> None:
    _, secret = _run(config, lambda s: s.rotate_key(key_id))
    click.echo(f"rotated key {key_id}; the old secret no longer works. New key (shown once):")
    click.echo(secret)


@click.command("usage")
@click.option("--tenant")
@click.option("--key", "key_id")
@click.option("--start", help="first day (YYYY-MM-DD, UTC)")
@click.option("--end", help="last day (YYYY-MM-DD, UTC)")
@click.option("--group-by", default="tenant,model,day", show_default=True)
@click.option("--csv", "as_csv", is_flag=True, help="CSV on stdout")
@config_option
def usage_command(
    tenant: str | None,
    key_id: str | None,
    start: str | None,
    end: str | None,
    group_by: str,
    as_csv: bool,
    config: str | None,
) -> None:
    """Usage and cost from the ledger."""

    async def work(store: AdminStore) -> list[dict[str, Any]]:
        tenant_id = (await store.get_tenant(tenant))["id"] if tenant else None
        return await usage.report(
            store.db,
            group_by=groups,
            start=usage.parse_day(start, "start"),
            end=usage.parse_day(end, "end"),
            tenant_id=tenant_id,
            key_id=key_id,
        )

    try:
        groups = usage.parse_group_by(group_by)
    except OpenMaaSError as exc:
        raise click.ClickException(exc.message) from None
    rows = _run(config, work)
    if as_csv:
        click.echo(usage.to_csv(rows, groups), nl=False)
    else:
        _table(rows, [*groups, *usage.COLUMNS])


@click.command("audit")
@click.argument("request_id")
@click.option("--json", "as_json", is_flag=True)
@config_option
def audit_command(request_id: str, as_json: bool, config: str | None) -> None:
    """Where a request's data went and why (from the ledger)."""

    async def work(store: AdminStore) -> list[dict[str, Any]]:
        return await audit.trail(store.db, request_id)

    events = _run(config, work)
    if as_json:
        click.echo(json.dumps(events, indent=2))
        return
    for event in events:
        click.echo("\n".join(audit.describe(event)))
    if len(events) > 1:
        click.echo(audit.summary(events))


@click.group()
def db() -> None:
    """The database schema."""


@db.command("upgrade")
@config_option
def db_upgrade(config: str | None) -> None:
    """Apply every pending migration (the server also does this at start)."""

    async def nothing(store: AdminStore) -> None:
        return None

    _run(config, nothing)
    click.echo("database is at the newest schema")


def register(main: click.Group) -> None:
    for command in (tenants, plans, keys, usage_command, audit_command, db):
        main.add_command(command)
