"""OpenTelemetry traces (``tracing.enabled``; the ``otel`` extra), exported over OTLP/HTTP — a lifecycle observer.

Per request: a SERVER span named after the route (``POST /v1/chat/completions``…) carrying the request id, the
privacy class, where the data went (deployment, ``local``/``cloud``), status and token usage; under it one CLIENT
inference span per attempt (``{gen_ai.operation.name} {gen_ai.request.model}``, GenAI conventions v1.44.0),
so retries and fallbacks are visible, each with its deployment, outcome and ``error.type``. Attempt spans are
written when the decision is known, from the times the router recorded. The server span is the current span
while the request runs, so ``traceparent`` goes to HTTP upstreams (``backends.http``). Message content is never
recorded.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from openmaas.lifecycle import AgentRunEvent, Observer, RetrievalEvent, ToolCallEvent
from openmaas.observability.config import TracingSettings
from openmaas.observability.metrics import OPERATION, PROVIDER

if TYPE_CHECKING:
    from openmaas.gateway import Call
    from openmaas.metering.meter import Outcome
    from openmaas.routing.decision import RouteDecision
    from openmaas.routing.registry import Registry

ROUTES = {
    "chat": "/v1/chat/completions",
    "messages": "/v1/messages",
    "responses": "/v1/responses",
    "completions": "/v1/completions",
    "embeddings": "/v1/embeddings",
}


class Tracing(Observer):
    def __init__(self, settings: TracingSettings, registry: Registry) -> None:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

        self.registry = registry
        self.trace = trace
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": settings.service_name}),
            sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)),
        )
        exporter = OTLPSpanExporter(endpoint=settings.endpoint, headers=dict(settings.headers))
        self.provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=settings.flush_ms))
        self.tracer = self.provider.get_tracer("openmaas", schema_url="https://opentelemetry.io/schemas/1.44.0")
        self._open: dict[int, tuple[Any, str, Any]] = {}

    def close(self) -> None:
        self.provider.force_flush()
        self.provider.shutdown()

    def started(self, call: Call, endpoint: str) -> None:
        from opentelemetry import context

        dialect = call.surface if endpoint == "chat" else endpoint
        span = self.tracer.start_span(
            f"POST {ROUTES.get(dialect, '/v1/' + dialect)}",
            context=context.Context(),  # a root: a request never nests under another that shared its task
            kind=self.trace.SpanKind.SERVER,
            attributes={
                "openmaas.request_id": call.request_id,
                "http.request.method": "POST",
                "http.route": ROUTES.get(dialect, dialect),
                "openmaas.dialect": dialect,
            },
        )
        if not span.is_recording():  # not sampled: nothing to record or propagate (the cost of 1 % sampling)
            return
        # current for the rest of this request's task: upstream calls carry its traceparent
        token = context.attach(self.trace.set_span_in_context(span))
        self._open[id(call)] = (span, dialect, token)

    def routed(self, call: Call, decision: RouteDecision, deployment: str | None) -> None:
        entry = self._open.get(id(call))
        if entry is None:
            return
        server, dialect, _ = entry
        server.set_attribute("gen_ai.request.model", decision.requested)
        server.set_attribute("openmaas.privacy.class", decision.privacy.label)
        server.set_attribute("openmaas.privacy.policy", decision.policy)
        if deployment is not None:
            server.set_attribute("openmaas.deployment", deployment)
            server.set_attribute("openmaas.data.destination", decision.chosen_locality or "")
        parent = self.trace.set_span_in_context(server)
        operation = OPERATION.get(dialect, "chat")
        for attempt in decision.attempts:
            d = self.registry.deployments.get(attempt.deployment)
            backend = d.backend if d is not None else "unknown"
            start = attempt.started or time.time() - attempt.ms / 1000
            span = self.tracer.start_span(
                f"{operation} {decision.requested}",
                context=parent,
                kind=self.trace.SpanKind.CLIENT,
                start_time=int(start * 1e9),
                attributes={
                    "gen_ai.operation.name": operation,
                    "gen_ai.provider.name": PROVIDER.get(backend, backend),
                    "gen_ai.request.model": decision.requested,
                    "gen_ai.response.model": d.upstream_model if d is not None else attempt.deployment,
                    "openmaas.deployment": attempt.deployment,
                    "openmaas.locality": attempt.locality,
                    "openmaas.attempt.outcome": attempt.outcome,
                    "openmaas.masked": attempt.masked,
                },
            )
            if attempt.outcome != "ok":
                span.set_attribute("error.type", attempt.outcome)
                span.set_status(self.trace.Status(self.trace.StatusCode.ERROR))
            span.end(end_time=int((start + attempt.ms / 1000) * 1e9))

    def agent_ran(self, event: AgentRunEvent) -> None:
        """An ``invoke_agent`` span over the run (its steps are request spans of their own, its calls
        ``execute_tool`` spans, all with the same request id)."""
        self._finished_span(f"invoke_agent {event.model}", event.started, event.seconds, {
            "gen_ai.operation.name": "invoke_agent", "gen_ai.provider.name": "openmaas",
            "gen_ai.request.model": event.model, "openmaas.request_id": event.request_id,
            "openmaas.surface": event.surface, "openmaas.agent.end": event.end, "openmaas.agent.steps": event.steps,
            "openmaas.agent.tool_calls": event.tool_calls, "openmaas.cost_usd": event.cost_nanos / 1e9,
        }, root=True)  # fmt: skip

    def retrieved(self, event: RetrievalEvent) -> None:
        """A ``retrieval`` span (GenAI conventions): the knowledge base searched and how; never the query."""
        self._finished_span(f"retrieval {event.knowledge_base}", event.started, event.seconds, {
            "gen_ai.operation.name": "retrieval", "gen_ai.data_source.id": event.knowledge_base,
            "openmaas.request_id": event.request_id, "openmaas.retrieval.mode": event.mode,
            "openmaas.retrieval.top_k": event.top_k, "openmaas.retrieval.results": event.results,
        })  # fmt: skip

    def tool_called(self, event: ToolCallEvent) -> None:
        """An ``execute_tool`` span (GenAI conventions, and MCP's ``mcp.method.name``: every tool here is an MCP
        ``tools/call``): the tool, its server and where its arguments went, never the arguments."""
        failed = event.error_code or (str(event.status) if event.status >= 400 else None)
        self._finished_span(f"execute_tool {event.name}", event.started, event.seconds, {
            "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": event.name, "gen_ai.tool.type": "extension",
            "gen_ai.tool.call.id": event.call_id or "", "mcp.method.name": "tools/call",
            "openmaas.request_id": event.request_id, "openmaas.tool.server": event.server,
            "openmaas.data.destination": event.locality, "openmaas.surface": event.surface,
        }, error=failed)  # fmt: skip

    def _finished_span(
        self,
        name: str,
        started: float,
        seconds: float,
        attributes: dict[str, Any],
        error: str | None = None,
        root: bool = False,
    ) -> None:
        """A span for something that already ended (epoch ``started``, ``seconds`` long)."""
        from opentelemetry import context

        span = self.tracer.start_span(
            name,
            context=context.Context() if root else None,
            kind=self.trace.SpanKind.INTERNAL,
            start_time=int(started * 1e9),
            attributes=attributes,
        )
        if error is not None:
            span.set_attribute("error.type", error)
            span.set_status(self.trace.Status(self.trace.StatusCode.ERROR))
        span.end(end_time=int((started + seconds) * 1e9))

    def finished(self, call: Call, outcome: Outcome) -> None:
        entry = self._open.pop(id(call), None)
        if entry is None:
            return
        span, _, token = entry
        if self.trace.get_current_span() is span:  # still in the request's own context: leave it as it was
            from opentelemetry import context

            context.detach(token)
        span.set_attribute("http.response.status_code", outcome.status)
        span.set_attribute("gen_ai.usage.input_tokens", outcome.prompt_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", outcome.completion_tokens)
        if outcome.cached_tokens:
            span.set_attribute("gen_ai.usage.cache_read.input_tokens", outcome.cached_tokens)
        if outcome.status >= 400:
            span.set_attribute("error.type", outcome.error_code or str(outcome.status))
            if outcome.status >= 500:
                span.set_status(self.trace.Status(self.trace.StatusCode.ERROR))
        span.end()
