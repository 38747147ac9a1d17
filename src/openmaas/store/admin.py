"""Tenants, plans and keys: the operations behind ``/admin/`` and ``openmaas keys|tenants|plans``."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError

from openmaas.auth.keys import display_prefix, generate_key, hash_key, new_id
from openmaas.errors import InvalidRequest, NotFound
from openmaas.protocol.admin import KeyCreate, KeyFields, PlanCreate, PlanFields, TenantCreate, TenantFields
from openmaas.store.db import Database
from openmaas.store.schema import api_keys, plans, tenants

NANOS = 1_000_000_000


def usd_to_nanos(usd: float | None) -> int | None:
    return None if usd is None else round(usd * NANOS)


def nanos_to_usd(nanos: int | None) -> float | None:
    return None if nanos is None else nanos / NANOS


def _money_fields(values: dict[str, Any]) -> dict[str, Any]:
    out = dict(values)
    if "budget_usd" in out:
        out["budget_nanos"] = usd_to_nanos(out.pop("budget_usd"))
    if "monthly_cost_quota_usd" in out:
        out["monthly_cost_quota_nanos"] = usd_to_nanos(out.pop("monthly_cost_quota_usd"))
    return out


def _public(row: Any) -> dict[str, Any]:
    data = {str(k): v for k, v in row._mapping.items()}
    data.pop("hash", None)
    for nanos, usd in (("budget_nanos", "budget_usd"), ("monthly_cost_quota_nanos", "monthly_cost_quota_usd")):
        if nanos in data:
            data[usd] = nanos_to_usd(data.pop(nanos))
    return data


class AdminStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # plans -----------------------------------------------------------------
    async def create_plan(self, spec: PlanCreate) -> dict[str, Any]:
        now = time.time()
        values = _money_fields(spec.model_dump())
        values["name"] = values.get("name") or spec.id
        values["features"] = values.get("features") or {}
        await self._insert(plans, {**values, "created_at": now, "updated_at": now}, f"plan '{spec.id}' exists")
        return await self.get_plan(spec.id)

    async def update_plan(self, plan_id: str, spec: PlanFields) -> dict[str, Any]:
        await self._update(plans, plans.c.id == plan_id, _money_fields(spec.model_dump(exclude_unset=True)))
        return await self.get_plan(plan_id)

    async def get_plan(self, plan_id: str) -> dict[str, Any]:
        async with self.db.engine.connect() as conn:
            row = (await conn.execute(select(plans).where(plans.c.id == plan_id))).first()
        if row is None:
            raise NotFound(f"no plan '{plan_id}'", param="plan")
        return _public(row)

    async def list_plans(self) -> list[dict[str, Any]]:
        async with self.db.engine.connect() as conn:
            return [_public(r) for r in await conn.execute(select(plans).order_by(plans.c.id))]

    # tenants ---------------------------------------------------------------
    async def create_tenant(self, spec: TenantCreate) -> dict[str, Any]:
        now = time.time()
        values = _money_fields(spec.model_dump(exclude={"plan"}))
        values["budget_period"] = values.get("budget_period") or "month"
        values["privacy"] = values.get("privacy") or "allow"
        values["enabled"] = True if values.get("enabled") is None else values["enabled"]
        if spec.plan is not None:
            await self.get_plan(spec.plan)
        tenant_id = new_id("ten")
        row = {**values, "id": tenant_id, "plan_id": spec.plan, "created_at": now, "updated_at": now}
        await self._insert(tenants, row, f"a tenant named '{spec.name}' exists")
        return await self.get_tenant(tenant_id)

    async def update_tenant(self, ref: str, spec: TenantFields) -> dict[str, Any]:
        tenant = await self.get_tenant(ref)
        values = _money_fields(spec.model_dump(exclude_unset=True))
        if "plan" in values:
            if values["plan"] is not None:
                await self.get_plan(values["plan"])
            values["plan_id"] = values.pop("plan")
        await self._update(tenants, tenants.c.id == tenant["id"], values)
        return await self.get_tenant(tenant["id"])

    async def get_tenant(self, ref: str) -> dict[str, Any]:
        async with self.db.engine.connect() as conn:
            query = select(tenants).where(or_(tenants.c.id == ref, tenants.c.name == ref))
            row = (await conn.execute(query)).first()
        if row is None:
            raise NotFound(f"no tenant '{ref}'", param="tenant")
        return _public(row)

    async def list_tenants(self) -> list[dict[str, Any]]:
        async with self.db.engine.connect() as conn:
            return [_public(r) for r in await conn.execute(select(tenants).order_by(tenants.c.created_at))]

    # keys ------------------------------------------------------------------
    async def create_key(self, spec: KeyCreate) -> tuple[dict[str, Any], str]:
        """Returns the key record and the key itself, which is never retrievable again."""
        tenant = await self.get_tenant(spec.tenant)
        secret = generate_key()
        now = time.time()
        values = _money_fields(spec.model_dump(exclude={"tenant"}))
        values["budget_period"] = values.get("budget_period") or "month"
        values["enabled"] = True if values.get("enabled") is None else values["enabled"]
        key_id = new_id("key")
        row = {
            **values,
            "id": key_id,
            "tenant_id": tenant["id"],
            "prefix": display_prefix(secret),
            "hash": hash_key(secret),
            "created_at": now,
            "updated_at": now,
        }
        await self._insert(api_keys, row, "key collision; try again")
        return await self.get_key(key_id), secret

    async def update_key(self, key_id: str, spec: KeyFields) -> dict[str, Any]:
        await self._update(api_keys, api_keys.c.id == key_id, _money_fields(spec.model_dump(exclude_unset=True)))
        return await self.get_key(key_id)

    async def revoke_key(self, key_id: str) -> dict[str, Any]:
        await self._update(api_keys, api_keys.c.id == key_id, {"enabled": False})
        return await self.get_key(key_id)

    async def rotate_key(self, key_id: str) -> tuple[dict[str, Any], str]:
        """A new secret for the same key id (limits, budget and usage history stay); the old one stops working."""
        secret = generate_key()
        await self._update(
            api_keys, api_keys.c.id == key_id, {"hash": hash_key(secret), "prefix": display_prefix(secret)}
        )
        return await self.get_key(key_id), secret

    async def get_key(self, key_id: str) -> dict[str, Any]:
        async with self.db.engine.connect() as conn:
            row = (await conn.execute(select(api_keys).where(api_keys.c.id == key_id))).first()
        if row is None:
            raise NotFound(f"no key '{key_id}'", param="key")
        return _public(row)

    async def list_keys(self, tenant: str | None = None) -> list[dict[str, Any]]:
        query = select(api_keys).order_by(api_keys.c.created_at)
        if tenant is not None:
            query = query.where(api_keys.c.tenant_id == (await self.get_tenant(tenant))["id"])
        async with self.db.engine.connect() as conn:
            return [_public(r) for r in await conn.execute(query)]

    async def key_count(self) -> int:
        async with self.db.engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(api_keys))).scalar_one())

    # helpers ---------------------------------------------------------------
    async def _insert(self, table: Any, row: dict[str, Any], conflict: str) -> None:
        try:
            async with self.db.engine.begin() as conn:
                await conn.execute(table.insert().values(**row))
        except IntegrityError:
            raise InvalidRequest(conflict, code="conflict") from None

    async def _update(self, table: Any, where: Any, values: dict[str, Any]) -> None:
        values = {**values, "updated_at": time.time()}
        try:
            async with self.db.engine.begin() as conn:
                result = await conn.execute(update(table).where(where).values(**values))
        except IntegrityError:
            raise InvalidRequest("that change conflicts with an existing record", code="conflict") from None
        if result.rowcount == 0:
            raise NotFound(f"no such {table.name[:-1].replace('_', ' ')}")
