"""``GET /metrics`` (the admin key, or open: ``metrics.access``), and the optional separate listen address."""

from __future__ import annotations

import os
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest, start_http_server
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from openmaas.observability.metrics import Metrics
from openmaas.server.admin_routes import require_admin
from openmaas.services import Services, is_loopback


def routes(metrics: Metrics) -> list[Route]:
    settings = metrics.settings

    async def scrape(request: Request) -> Response:
        services: Services = request.app.state.services
        if settings.access == "admin" and not _open_loopback(services):
            require_admin(request, services)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return [Route(settings.path, scrape, methods=["GET"])]


def _open_loopback(services: Services) -> bool:
    """No admin key is set and the server listens on loopback only (the zero-set-up default): like the API in
    its open mode, /metrics needs no key there."""
    return not os.environ.get(services.settings.auth.admin_key_env) and is_loopback(services.settings.server.host)


def listen(metrics: Metrics) -> Callable[[], None]:
    """Serve the exposition on ``metrics.listen`` (host:port) from a daemon thread, without auth; returns
    what stops it."""
    address = metrics.settings.listen
    if not address:
        return lambda: None
    host, _, port = address.rpartition(":")
    server, thread = start_http_server(int(port), addr=host or "127.0.0.1", registry=metrics.registry)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return stop
