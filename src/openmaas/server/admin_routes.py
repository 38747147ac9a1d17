"""``/admin/``: tenants, plans, keys and usage, guarded by the admin key (thin: the work is in ``store``)."""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from openmaas.errors import AuthenticationFailed, PermissionDenied, from_validation_error
from openmaas.protocol.admin import KeyCreate, KeyFields, PlanCreate, PlanFields, TenantCreate, TenantFields
from openmaas.server.routes import _json, api_key, read_json
from openmaas.services import Services
from openmaas.store import audit, usage

M = TypeVar("M", bound=BaseModel)


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    require_admin(request, services)
    return services


def require_admin(request: Request, services: Services) -> None:
    expected = os.environ.get(services.settings.auth.admin_key_env) or ""
    if not expected:
        raise PermissionDenied(
            f"The admin API is disabled: set {services.settings.auth.admin_key_env} to enable it.",
            code="admin_disabled",
        )
    token = api_key(request)
    if token is None:
        raise AuthenticationFailed("The admin API needs the admin key.", code="missing_api_key")
    given = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
    if not hmac.compare_digest(given, hashlib.sha256(expected.encode()).digest()):
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
    return _json({"object": "list", "data": await _services(request).admin.list_plans()})


async def update_plan(request: Request) -> Response:
    s = _services(request)
    plan = await s.admin.update_plan(request.path_params["id"], await _body(request, PlanFields))
    return await _changed(s, plan)


async def create_tenant(request: Request) -> Response:
    s = _services(request)
    return await _changed(s, await s.admin.create_tenant(await _body(request, TenantCreate)), 201)


async def list_tenants(request: Request) -> Response:
    return _json({"object": "list", "data": await _services(request).admin.list_tenants()})


async def get_tenant(request: Request) -> Response:
    return _json(await _services(request).admin.get_tenant(request.path_params["ref"]))


async def update_tenant(request: Request) -> Response:
    s = _services(request)
    tenant = await s.admin.update_tenant(request.path_params["ref"], await _body(request, TenantFields))
    return await _changed(s, tenant)


async def create_key(request: Request) -> Response:
    s = _services(request)
    record, secret = await s.admin.create_key(await _body(request, KeyCreate))
    return await _changed(s, {**record, "key": secret}, 201)


async def list_keys(request: Request) -> Response:
    s = _services(request)
    return _json({"object": "list", "data": await s.admin.list_keys(request.query_params.get("tenant"))})


async def get_key(request: Request) -> Response:
    return _json(await _services(request).admin.get_key(request.path_params["id"]))


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
    s = _services(request)
    q = request.query_params
    group_by = usage.parse_group_by(q.get("group_by") or "tenant,key,model,day")
    tenant = q.get("tenant")
    await s.ledger.sync()  # every response already sent is in the report
    rows = await usage.report(
        s.db,
        group_by=group_by,
        start=usage.parse_day(q.get("start"), "start"),
        end=usage.parse_day(q.get("end"), "end"),
        tenant_id=(await s.admin.get_tenant(tenant))["id"] if tenant else None,
        key_id=q.get("key"),
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
    s = _services(request)
    tenant = request.query_params.get("tenant")
    tenant_id = (await s.admin.get_tenant(tenant))["id"] if tenant else None
    await s.ledger.sync()
    events = await audit.trail(s.db, request.path_params["request_id"], tenant_id)
    return _json({"object": "list", "data": events})


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
