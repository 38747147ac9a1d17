"""``/admin/overview``, ``/admin/requests``, ``/admin/models``: what the console's pages read.

Readable with the admin key, a tenant's key or a console session (``admin_routes.access``): a tenant
sees only its own rows, whatever it asks for. Every query is bounded (``store.insights``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from openmaas.errors import InvalidRequest
from openmaas.routing.router import Router
from openmaas.server.admin_routes import access
from openmaas.server.routes import _json, authenticate
from openmaas.store import insights


def _filters(request: Request, tenant_id: str | None) -> insights.Filters:
    q = request.query_params
    return insights.Filters(
        tenant_id=tenant_id, key_id=q.get("key"), model=q.get("model"), deployment=q.get("deployment")
    )


async def _tenant_id(request: Request) -> tuple[Any, str | None]:
    s, who = access(request)
    asked = who.tenant(request.query_params.get("tenant"))
    return s, (await s.admin.get_tenant(asked))["id"] if asked else None


async def overview(request: Request) -> Response:
    s, tenant_id = await _tenant_id(request)
    start, end = insights.time_range(request.query_params.get("start"), request.query_params.get("end"))
    await s.ledger.sync()
    return _json(await insights.overview(s.db, start, end, _filters(request, tenant_id)))


async def requests_log(request: Request) -> Response:
    s, tenant_id = await _tenant_id(request)
    q = request.query_params
    start, end = insights.time_range(q.get("start"), q.get("end"), default_days=30)
    limit = q.get("limit") or "50"
    if not (limit.isascii() and limit.isdigit()):
        raise InvalidRequest("'limit' must be a whole number", param="limit")
    await s.ledger.sync()
    page = await insights.requests_page(
        s.db,
        _filters(request, tenant_id),
        start=start,
        end=end,
        status=q.get("status"),
        cursor=q.get("cursor"),
        limit=int(limit),
    )
    return _json(page)


async def models(request: Request) -> Response:
    """Deployments and aliases: locality, price, capabilities, circuit state, in-flight requests, recent
    latency and the local engines' slots. A tenant sees the models its key may use."""
    _, who = access(request)
    allowed = None if who.tenant_id is None else authenticate(request).models
    router: Router = request.app.state.gateway.router
    registry = router.registry
    status = router.status()
    aliases = {name: targets for name, targets in registry.aliases.items() if allowed is None or name in allowed}
    data = []
    for name, spec in registry.deployments.items():
        if allowed is not None and name not in allowed and not any(name in t for t in aliases.values()):
            continue
        engines = [dataclasses.asdict(o) for o in registry.backends[name].occupancy()]
        data.append(
            {
                "name": name,
                "backend": spec.backend,
                "locality": spec.locality,
                "upstream_model": spec.upstream_model,
                "context_length": spec.context_length,
                "pricing": spec.pricing.model_dump(),
                "capabilities": spec.capabilities.model_dump(),
                "quality": spec.quality,
                "fallbacks": spec.fallbacks,
                "aliases": sorted(a for a, targets in aliases.items() if name in targets),
                "health": status.get(name),
                "engines": engines,
            }
        )
    return _json({"object": "list", "data": data, "aliases": aliases})


insight_routes = [
    Route("/admin/overview", overview, methods=["GET"]),
    Route("/admin/requests", requests_log, methods=["GET"]),
    Route("/admin/models", models, methods=["GET"]),
]
