"""``create_app(settings)``: everything is wired once, here."""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Sequence

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Route
from threadpoolctl import threadpool_limits

from openmaas.agents.chat import AgentChat
from openmaas.agents.loop import AgentLoop
from openmaas.console import routes as console
from openmaas.console.middleware import ConsoleSessionMiddleware
from openmaas.console.sessions import ConsoleSessions
from openmaas.core.execute import Executor
from openmaas.dialects.anthropic import routes as anthropic
from openmaas.dialects.responses import routes as responses
from openmaas.errors import OpenMaaSError
from openmaas.gateway import Gateway
from openmaas.lifecycle import Observer
from openmaas.limits.redis_counters import RedisCounters
from openmaas.mcp.builtin import Builtins
from openmaas.mcp.hub import McpHub
from openmaas.mcp.routes import routes as mcp_routes
from openmaas.mcp.server import McpEndpoint
from openmaas.observability.logs import AccessLog
from openmaas.observability.metrics import Metrics
from openmaas.observability.routes import listen as metrics_listen
from openmaas.observability.routes import routes as metrics_routes
from openmaas.observability.tracing import Tracing
from openmaas.rag.grounding import Grounding
from openmaas.routing.registry import Registry
from openmaas.routing.router import Router
from openmaas.server import errors, openapi
from openmaas.server.admin_routes import admin_routes
from openmaas.server.insight_routes import insight_routes
from openmaas.server.kb_routes import kb_routes
from openmaas.server.middleware import RequestIdMiddleware
from openmaas.server.routes import routes
from openmaas.services import Services
from openmaas.settings import Settings
from openmaas.store.responses import ResponseStore
from openmaas.ttc.runner import TestTimeCompute

log = logging.getLogger("openmaas.server")


def create_app(settings: Settings, registry: Registry | None = None, observers: Sequence[Observer] = ()) -> Starlette:
    """The gateway as an ASGI app. ``observers`` watch every request's lifecycle (``openmaas.lifecycle``)."""
    registry = registry or Registry(settings)
    services = Services(settings)
    router = Router(settings, registry)
    metrics = Metrics(settings.metrics, router, services.db.spool) if settings.metrics.enabled else None
    stored = ResponseStore(services.db)
    if metrics is not None:  # the store's latencies, as the ledger, stored responses and the counters see them
        services.ledger.on_latency = metrics.ledger_write
        stored.on_latency = metrics.database_call
        if isinstance(services.counters, RedisCounters):
            services.counters.on_latency = metrics.redis_call
    tracing = Tracing(settings.tracing, registry) if settings.tracing.enabled else None
    watching = [
        *observers,
        *([metrics] if metrics else []),
        *([tracing] if tracing else []),
        *([AccessLog(registry)] if settings.server.access_log else []),
    ]
    gateway = Gateway(router, services.metering, observers=watching)
    knowledge = None
    if settings.rag.enabled:
        try:
            from openmaas.rag.service import KnowledgeBases
            from openmaas.store.knowledge import KnowledgeStore
        except ImportError as exc:
            log.info("knowledge bases are off: the 'rag' extra is not installed (%s)", exc.name)
        else:
            knowledge = KnowledgeBases(KnowledgeStore(services.db), gateway, settings.rag)
    executor = Executor(gateway)
    hub = McpHub(settings.mcp, router, services.metering, str(settings.data_dir))
    hub.observer = gateway.observer
    if settings.mcp.builtin_tools:
        hub.add(Builtins(settings.ttc, knowledge))
    agents = AgentLoop(executor, hub, settings.agents.parallel_tools, gateway.observer)
    endpoint = McpEndpoint(hub, services.keys, settings.mcp.max_listed_tools) if settings.mcp.endpoint else None
    # chat extensions, in the order they are tried: grounding first (its grounded request may use TTC)
    gateway.extend(Grounding(knowledge), TestTimeCompute(), AgentChat(agents, settings.agents))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        threadpool_limits(limits=settings.server.blas_threads, user_api="blas")  # process-wide, kept
        await services.start()
        try:
            await registry.start()
            await router.start()
            await hub.start()
            stop_listening = metrics_listen(metrics) if metrics is not None else (lambda: None)
            await hub.wait_ready(settings.mcp.ready_timeout_s)  # ready with its tools (a down server does not block)
            # Everything built so far lives as long as the process: keep it out of the
            # collector's full passes, which otherwise re-scan it on every gen-2 collection.
            gc.freeze()
            try:
                async with endpoint.running() if endpoint is not None else contextlib.nullcontext():
                    yield
            finally:
                stop_listening()
                if tracing is not None:
                    tracing.close()
                await hub.close()
                await router.close()
                await registry.close()
        finally:
            await services.close()

    dialects = [
        *anthropic.routes(executor, settings.dialects.anthropic),
        *responses.routes(executor, stored, settings.dialects.responses, (agents, settings.agents)),
    ]
    dialects += mcp_routes(hub)
    if metrics is not None:
        dialects += metrics_routes(metrics)
    if endpoint is not None:
        dialects.append(Route("/mcp", endpoint, methods=["GET", "POST", "DELETE"]))
    sessions = ConsoleSessions(services.db, services.keys, settings.auth.admin_key_env, settings.console.session_hours)
    middleware = [Middleware(RequestIdMiddleware)]
    if settings.console.enabled:
        middleware.append(Middleware(ConsoleSessionMiddleware, sessions=sessions))
    app = Starlette(
        routes=_hot_first(
            [
                *routes,
                *dialects,
                *kb_routes,
                *admin_routes,
                *insight_routes,
                *(console.routes() if settings.console.enabled else []),
            ]
        ),
        middleware=middleware,
        exception_handlers={
            OpenMaaSError: errors.handle_openmaas_error,
            HTTPException: errors.handle_http_exception,
            Exception: errors.handle_unexpected,
        },
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.openapi = orjson.dumps(openapi.document())
    app.state.gateway = gateway
    app.state.knowledge = knowledge
    app.state.mcp = hub
    app.state.agents = agents
    app.state.metrics = metrics
    app.state.services = services
    app.state.console = sessions
    return app


HOT_PATHS = ("/v1/chat/completions", "/v1/messages", "/v1/responses")


def _hot_first(every: list[BaseRoute]) -> list[BaseRoute]:
    """The generation routes first: Starlette tries routes in order, each a regex match, and these carry
    almost all traffic (no path is served by more than one route, so the order changes nothing else)."""
    hot = [r for r in every if isinstance(r, Route) and r.path in HOT_PATHS]
    hot.sort(key=lambda r: HOT_PATHS.index(r.path))
    return [*hot, *(r for r in every if r not in hot)]
