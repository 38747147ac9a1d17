"""``/admin/``: tenants, plans, keys and usage (thin: the work is in ``store``).

Writes need the admin key (or an admin console session). Reads also accept a tenant's key or a tenant's
console session, and then show only that tenant's rows; an open-mode console session reads everything.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from openmaas.console.sessions import CONSOLE_SESSION, Session
from openmaas.errors import AuthenticationFailed, NotFound, PermissionDenied, from_validation_error
from openmaas.protocol.admin import KeyCreate, KeyFields, PlanCreate, PlanFields, TenantCreate, TenantFields
from openmaas.server.routes import _json, api_key, authenticate, read_json
from openmaas.services import Services
from openmaas.store import audit, insights, usage

M = TypeVar("M", bound=BaseModel)


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    require_admin(request, services)
    return services


@dataclass(frozen=True)
class Access:
    """What a caller may read: everything (``tenant_id`` None) or one tenant's rows; ``admin``: may write."""

    admin: bool
    tenant_id: str | None

    def tenant(self, asked: str | None) -> str | None:
        """The tenant a read is filtered to: the caller's own, or (reading everything) the one asked for."""
        return self.tenant_id if self.tenant_id is not None else asked


def access(request: Request) -> tuple[Services, Access]:
    services: Services = request.app.state.services
    session: Session | None = request.scope["state"].get(CONSOLE_SESSION)
    token = api_key(request)
    if token is None and session is not None and session.scope != "tenant":
        return services, Access(session.admin, None)
    if token is not None and _is_admin_key(token, services):
        return services, Access(True, None)
    if token is not None or session is not None:
        principal = authenticate(request)
        if principal.tenant_id is not None:
            return services, Access(False, principal.tenant_id)
    require_admin(request, services)  # says why not
    return services, Access(True, None)


def _is_admin_key(token: str, services: Services) -> bool:
    expected = os.environ.get(services.settings.auth.admin_key_env) or ""
    given = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
    return bool(expected) and hmac.compare_digest(given, hashlib.sha256(expected.encode()).digest())


def require_admin(request: Request, services: Services) -> None:
    session: Session | None = request.scope["state"].get(CONSOLE_SESSION)
    if session is not None and api_key(request) is None:
        if session.admin:
            return
        raise PermissionDenied(
            "This console session may only read: sign in with the admin key to change tenants, keys and plans.",
            code="admin_required",
        )
    if not os.environ.get(services.settings.auth.admin_key_env):
        raise PermissionDenied(
            f"The admin API is disabled: set {services.settings.auth.admin_key_env} to enable it.",
            code="admin_disabled",
        )
    token = api_key(request)
    if token is None:
        raise AuthenticationFailed("The admin API needs the admin key.", code="missing_api_key")
    if not _is_admin_key(token, services):
        raise PermissionDenied("This key may not use the admin API.", code="admin_required")


async def _body(request: Request, model: type[M]) -> M:
    try:
        return model.model_validate(await read_json(request))
    except ValidationError as exc:
        raise from_validation_error(exc) from None


async def _changed(services: Services, result: Any, status: int = 200) -> Response:
    await services.keys.reload(force=True)
    return _json(result, status)


async def create_plan(request: Request) -> Response:
    s = _services(request)
    return await _changed(s, await s.admin.create_plan(await _body(request, PlanCreate)), 201)


async def list_plans(request: Request) -> Response:
    s, who = access(request)
    plans = await s.admin.list_plans()
    if who.tenant_id is not None:  # a tenant sees its own plan
        own = (await s.admin.get_tenant(who.tenant_id)).get("plan_id")
        plans = [p for p in plans if p["id"] == own]
    return _json({"object": "list", "data": plans})


async def update_plan(request: Request) -> Response:
    s = _services(request)
    plan = await s.admin.update_plan(request.path_params["id"], await _body(request, PlanFields))
    return await _changed(s, plan)


async def create_tenant(request: Request) -> Response:
    s = _services(request)
    return await _changed(s, await s.admin.create_tenant(await _body(request, TenantCreate)), 201)


async def list_tenants(request: Request) -> Response:
    s, who = access(request)
    rows = await s.admin.list_tenants()
    if who.tenant_id is not None:
        rows = [t for t in rows if t["id"] == who.tenant_id]
    spent = await insights.spend(s.db, "tenant", [t["id"] for t in rows])
    return _json({"object": "list", "data": [_with_spend(t, spent) for t in rows]})


async def get_tenant(request: Request) -> Response:
    s, who = access(request)
    tenant = await s.admin.get_tenant(request.path_params["ref"])
    if who.tenant_id not in (None, tenant["id"]):
        raise NotFound(f"No tenant '{request.path_params['ref']}'", param="ref")
    return _json(_with_spend(tenant, await insights.spend(s.db, "tenant", [tenant["id"]])))


def _with_spend(row: dict[str, Any], spent: dict[str, dict[str, float]]) -> dict[str, Any]:
    return {**row, "spend_usd": spent.get(row["id"], {"day": 0.0, "month": 0.0, "total": 0.0})}


async def update_tenant(request: Request) -> Response:
    s = _services(request)
    tenant = await s.admin.update_tenant(request.path_params["ref"], await _body(request, TenantFields))
    return await _changed(s, tenant)


async def create_key(request: Request) -> Response:
    s = _services(request)
    record, secret = await s.admin.create_key(await _body(request, KeyCreate))
    return await _changed(s, {**record, "key": secret}, 201)


async def list_keys(request: Request) -> Response:
    s, who = access(request)
    rows = await s.admin.list_keys(who.tenant(request.query_params.get("tenant")))
    spent = await insights.spend(s.db, "key", [k["id"] for k in rows])
    return _json({"object": "list", "data": [_with_spend(k, spent) for k in rows]})


async def get_key(request: Request) -> Response:
    s, who = access(request)
    key = await s.admin.get_key(request.path_params["id"])
    if who.tenant_id not in (None, key["tenant_id"]):
        raise NotFound(f"No API key '{request.path_params['id']}'", param="id")
    return _json(_with_spend(key, await insights.spend(s.db, "key", [key["id"]])))


async def update_key(request: Request) -> Response:
    s = _services(request)
    return await _changed(s, await s.admin.update_key(request.path_params["id"], await _body(request, KeyFields)))


async def revoke_key(request: Request) -> Response:
    s = _services(request)
    return await _changed(s, await s.admin.revoke_key(request.path_params["id"]))


async def rotate_key(request: Request) -> Response:
    s = _services(request)
    record, secret = await s.admin.rotate_key(request.path_params["id"])
    return await _changed(s, {**record, "key": secret})


async def usage_report(request: Request) -> Response:
    s, who = access(request)
    q = request.query_params
    group_by = usage.parse_group_by(q.get("group_by") or "tenant,key,model,day")
    tenant = who.tenant(q.get("tenant"))
    await s.ledger.sync()  # every response already sent is in the report
    rows = await usage.report(
        s.db,
        group_by=group_by,
        start=usage.parse_day(q.get("start"), "start"),
        end=usage.parse_day(q.get("end"), "end"),
        tenant_id=(await s.admin.get_tenant(tenant))["id"] if tenant else None,
        key_id=q.get("key"),
        model=q.get("model"),
        deployment=q.get("deployment"),
    )
    if q.get("format") == "csv":
        return Response(
            usage.to_csv(rows, group_by),
            media_type="text/csv",
            headers={"content-disposition": 'attachment; filename="usage.csv"'},
        )
    return _json({"object": "list", "group_by": group_by, "data": rows})


async def audit_trail(request: Request) -> Response:
    """Where a request's data went and why: its ledger events with the route decision."""
    s, who = access(request)
    tenant = who.tenant(request.query_params.get("tenant"))
    tenant_id = (await s.admin.get_tenant(tenant))["id"] if tenant else None
    await s.ledger.sync()
    events = await audit.trail(s.db, request.path_params["request_id"], tenant_id)
    return _json({"object": "list", "data": events, "summary": audit.summary(events)})


async def routing_status(request: Request) -> Response:
    """Each deployment's circuit state, requests in flight and EWMA latency."""
    _services(request)
    return _json({"deployments": request.app.state.gateway.router.status()})


admin_routes = [
    Route("/admin/plans", create_plan, methods=["POST"]),
    Route("/admin/plans", list_plans, methods=["GET"]),
    Route("/admin/plans/{id}", update_plan, methods=["PATCH"]),
    Route("/admin/tenants", create_tenant, methods=["POST"]),
    Route("/admin/tenants", list_tenants, methods=["GET"]),
    Route("/admin/tenants/{ref}", get_tenant, methods=["GET"]),
    Route("/admin/tenants/{ref}", update_tenant, methods=["PATCH"]),
    Route("/admin/keys", create_key, methods=["POST"]),
    Route("/admin/keys", list_keys, methods=["GET"]),
    Route("/admin/keys/{id}", get_key, methods=["GET"]),
    Route("/admin/keys/{id}", update_key, methods=["PATCH"]),
    Route("/admin/keys/{id}/revoke", revoke_key, methods=["POST"]),
    Route("/admin/keys/{id}/rotate", rotate_key, methods=["POST"]),
    Route("/admin/usage", usage_report, methods=["GET"]),
    Route("/admin/audit/{request_id}", audit_trail, methods=["GET"]),
    Route("/admin/routing", routing_status, methods=["GET"]),
]
