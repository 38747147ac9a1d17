"""Prometheus metrics: an observer of the request lifecycle, exposed with the official ``prometheus-client``.

GenAI metrics follow the OpenTelemetry GenAI semantic conventions as published in semantic-conventions
**v1.44.0** (``opentelemetry-semantic-conventions`` 0.66b2, the last release carrying ``gen_ai`` before it moved
to its own repository), translated to Prometheus names by the OpenTelemetry compatibility rules: dots become
underscores, a unit of seconds adds ``_seconds``, an annotation unit (``{token}``) adds nothing; attribute names
become labels the same way. ``CONVENTIONS`` below is the table tests/observability checks the exposition against.

Each process keeps its own registry (no module state) and is scraped on its own: one gateway process per
replica, every replica a target (prometheus-client's multiprocess mode is not used).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from openmaas.lifecycle import AgentRunEvent, Observer, RetrievalEvent, ToolCallEvent
from openmaas.metering.pricing import cost_nanos
from openmaas.observability.config import MetricsSettings
from openmaas.observability.series import CounterSeries, GaugeSeries, HistogramSeries, families

if TYPE_CHECKING:
    from openmaas.gateway import Call
    from openmaas.metering.meter import Outcome
    from openmaas.routing.decision import RouteDecision
    from openmaas.routing.router import Router

SEMCONV_VERSION = "1.44.0"
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
STORE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
CHUNK_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
OPERATION = {
    "chat": "chat",
    "messages": "chat",
    "responses": "chat",
    "completions": "text_completion",
    "embeddings": "embeddings",
}
PROVIDER = {
    "llamacpp": "llama.cpp",
    "openai_compat": "openai",
    "anthropic": "anthropic",
    "encoder": "openmaas",
    "fake": "openmaas",
    "oracle": "openmaas",
}


@dataclass(frozen=True)
class Convention:
    name: str  # the OpenTelemetry metric name
    unit: str
    required: tuple[str, ...]  # attributes every data point carries (required, or conditionally required here)
    prometheus: str  # the exposition name


def _prom(name: str, unit: str) -> str:
    base = name.replace(".", "_")
    return base + "_seconds" if unit == "s" else base


def _convention(name: str, unit: str, *required: str) -> Convention:
    return Convention(name, unit, required, _prom(name, unit))


BASE = ("gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model")
CONVENTIONS = {
    "token_usage": _convention("gen_ai.client.token.usage", "{token}", *BASE, "gen_ai.token.type"),
    "duration": _convention("gen_ai.client.operation.duration", "s", *BASE),
    "first_chunk": _convention("gen_ai.client.operation.time_to_first_chunk", "s", *BASE),
    "per_chunk": _convention("gen_ai.client.operation.time_per_output_chunk", "s", *BASE),
    "server_duration": _convention("gen_ai.server.request.duration", "s", *BASE),
    "server_ttft": _convention("gen_ai.server.time_to_first_token", "s", *BASE),
    "server_tpot": _convention("gen_ai.server.time_per_output_token", "s", *BASE),
}
ERROR_TYPE = "error.type"  # conditionally required: on operations that ended in an error


def _labels(attributes: tuple[str, ...]) -> list[str]:
    return [a.replace(".", "_") for a in attributes]


@dataclass
class _Request:
    started: float
    endpoint: str
    model: str = ""
    deployment: str | None = None
    provider: str = "openmaas"
    first: float | None = None


class Metrics(Observer):
    def __init__(self, settings: MetricsSettings, router: Router, spool: Path | None = None) -> None:
        self.settings, self.router = settings, router
        self.registry = CollectorRegistry(auto_describe=False)
        self._open: dict[int, _Request] = {}
        self._tenants: set[str] = set()
        self._keys: set[str] = set()
        c = CONVENTIONS

        def hist(key: str, doc: str, buckets: tuple[float, ...], *extra: str) -> HistogramSeries:
            return HistogramSeries(c[key].prometheus, doc, (*_labels(c[key].required), *extra), buckets)

        self.token_usage = hist("token_usage", "Number of input and output tokens used.", TOKEN_BUCKETS)
        self.duration = hist("duration", "GenAI operation duration.", DURATION_BUCKETS, "error_type")
        self.first_chunk = hist("first_chunk", "Time to receive the first chunk of a stream.", CHUNK_BUCKETS)
        self.per_chunk = hist("per_chunk", "Time per output chunk after the first.", CHUNK_BUCKETS)
        # measured by the engine itself (llama.cpp's timings), not estimated at the proxy
        self.server_duration = hist("server_duration", "Engine-measured request duration.", DURATION_BUCKETS)
        self.server_ttft = hist("server_ttft", "Engine-measured time to first token.", DURATION_BUCKETS)
        self.server_tpot = hist("server_tpot", "Engine-measured time per output token.", CHUNK_BUCKETS)
        base = tuple(_labels(BASE))
        self.cache_read = CounterSeries(
            "gen_ai_usage_cache_read_input_tokens",
            "Prompt tokens the engine served from its prompt cache (gen_ai.usage.cache_read.input_tokens).",
            base,
        )
        tenant = ("tenant",) * settings.tenant_labels + ("key",) * settings.key_labels
        self.requests = CounterSeries(
            "openmaas_requests",
            "Requests by dialect, model, status and error code.",
            ("dialect", "model", "status", "error_code", *tenant),
        )
        self.in_flight = GaugeSeries("openmaas_requests_in_flight", "Requests being served.", ("dialect",))
        self.decisions = CounterSeries("openmaas_route_decisions", "Route decisions by reason.", ("reason",))
        self.attempts = CounterSeries(
            "openmaas_deployment_attempts",
            "Attempts on a deployment by outcome (retries and fallbacks are attempts after the first).",
            ("deployment", "outcome"),
        )
        self.fallbacks = CounterSeries(
            "openmaas_fallbacks", "Requests served by another deployment than their first attempt's.", ("deployment",)
        )
        self.refusals = CounterSeries("openmaas_refusals", "Requests refused by limits or policy.", ("kind",))
        self.cost = CounterSeries("openmaas_cost_usd", "Cost of served requests in USD.", ("model", *tenant))
        self.tool_calls = CounterSeries(
            "openmaas_tool_calls",
            "Tool calls by server, tool, surface and status.",
            ("server", "tool", "surface", "status", "error_code"),
        )
        self.tool_duration = HistogramSeries(
            "openmaas_tool_call_duration_seconds", "Tool call duration.", ("server", "tool"), DURATION_BUCKETS
        )
        self.agent_runs = CounterSeries(
            "openmaas_agent_runs", "Server-side agent runs by surface and how they ended.", ("surface", "end")
        )
        self.database = HistogramSeries(
            "openmaas_database_duration_seconds",
            "Database reads and writes of the request path outside the ledger (stored responses).",
            ("operation",),
            STORE_BUCKETS,
        )
        self.retrievals = CounterSeries("openmaas_retrievals", "Knowledge-base searches by mode.", ("mode",))
        self.redis_calls = HistogramSeries(
            "openmaas_redis_call_duration_seconds", "Redis admission/settlement script calls.", (), STORE_BUCKETS
        )
        self.ledger_writes = HistogramSeries(
            "openmaas_ledger_write_duration_seconds",
            "Ledger batch writes (spool append or database transaction).",
            (),
            STORE_BUCKETS,
        )
        self.all = [
            self.token_usage,
            self.duration,
            self.first_chunk,
            self.per_chunk,
            self.server_duration,
            self.server_ttft,
            self.server_tpot,
            self.cache_read,
            self.requests,
            self.in_flight,
            self.decisions,
            self.attempts,
            self.fallbacks,
            self.refusals,
            self.cost,
            self.tool_calls,
            self.tool_duration,
            self.redis_calls,
            self.ledger_writes,
            self.agent_runs,
            self.retrievals,
            self.database,
        ]
        self.registry.register(_SeriesCollector(self.all))
        self.registry.register(_StateCollector(router, spool))

    # --- lifecycle ----------------------------------------------------------------------------------------

    def started(self, call: Call, endpoint: str) -> None:
        dialect = call.surface if endpoint == "chat" else endpoint
        self._open[id(call)] = _Request(time.perf_counter(), dialect)
        self.in_flight.add((dialect,), 1)

    def routed(self, call: Call, decision: RouteDecision, deployment: str | None) -> None:
        state = self._open.get(id(call))
        if state is None:
            return
        state.model, state.deployment = decision.requested, deployment
        if deployment is not None:
            backend = self.router.registry.deployments[deployment].backend
            state.provider = PROVIDER.get(backend, backend)
        for reason in _reasons(decision):
            self.decisions.inc((reason,))
        attempts = decision.attempts
        for attempt in attempts:
            self.attempts.inc((attempt.deployment, attempt.outcome))
        if deployment is not None and attempts and deployment != attempts[0].deployment:
            self.fallbacks.inc((deployment,))

    def first_token(self, call: Call) -> None:
        state = self._open.get(id(call))
        if state is not None:
            state.first = time.perf_counter()

    def finished(self, call: Call, outcome: Outcome) -> None:
        state = self._open.pop(id(call), None)
        if state is None:
            return
        now = time.perf_counter()
        self.in_flight.add((state.endpoint,), -1)
        status, code = outcome.status, outcome.error_code
        tenant = self._owner(call)
        self.requests.inc((state.endpoint, state.model or "-", str(status), code or "", *tenant))
        if status in (402, 429):
            self.refusals.inc(("budget" if status == 402 else "rate_limit",))
        elif status == 403:
            self.refusals.inc((code or "forbidden",))
        if not state.model:  # refused before routing: no GenAI operation happened
            return
        base = (OPERATION.get(state.endpoint, "chat"), state.provider, state.model)
        error = code or (str(status) if status >= 400 else "")
        self.duration.observe((*base, error), now - state.started)
        if outcome.prompt_tokens:
            self.token_usage.observe((*base, "input"), outcome.prompt_tokens)
        if outcome.completion_tokens:
            self.token_usage.observe((*base, "output"), outcome.completion_tokens)
        if state.first is not None:
            self.first_chunk.observe(base, state.first - state.started)
            if outcome.completion_tokens > 1:
                self.per_chunk.observe(base, (now - state.first) / (outcome.completion_tokens - 1))
        if outcome.cached_tokens:
            self.cache_read.inc(base, outcome.cached_tokens)
        engine = outcome.engine
        if engine is not None:
            self.server_duration.observe(base, engine.duration)
            self.server_ttft.observe(base, engine.time_to_first_token)
            if engine.time_per_output_token is not None:
                self.server_tpot.observe(base, engine.time_per_output_token)
        nanos = outcome.cost_nanos
        if nanos is None and state.deployment is not None:
            deployment = self.router.registry.deployments.get(state.deployment)
            if deployment is not None and (deployment.pricing.input_per_mtok or deployment.pricing.output_per_mtok):
                nanos = cost_nanos(deployment, outcome.prompt_tokens, outcome.completion_tokens)
        if nanos:
            self.cost.inc((state.model, *tenant), nanos / 1e9)

    def redis_call(self, seconds: float) -> None:
        self.redis_calls.observe((), seconds)

    def database_call(self, operation: str, seconds: float) -> None:
        self.database.observe((operation,), seconds)

    def ledger_write(self, seconds: float) -> None:
        self.ledger_writes.observe((), seconds)

    def retrieved(self, event: RetrievalEvent) -> None:
        self.retrievals.inc((event.mode,))
        # the model label holds a constant: knowledge-base ids would be unbounded label values
        self.duration.observe(("retrieval", "openmaas", "knowledge_base", ""), event.seconds)

    def agent_ran(self, event: AgentRunEvent) -> None:
        self.agent_runs.inc((event.surface, event.end))
        self.duration.observe(("invoke_agent", "openmaas", event.model, ""), event.seconds)

    def tool_called(self, event: ToolCallEvent) -> None:
        self.tool_calls.inc((event.server, event.name, event.surface, str(event.status), event.error_code or ""))
        if event.status != 403:
            self.tool_duration.observe((event.server, event.name), event.seconds)

    def _owner(self, call: Call) -> tuple[str, ...]:
        """The opt-in tenant and key labels, each bounded by ``label_cap`` distinct values ("other" beyond)."""
        out: tuple[str, ...] = ()
        principal = call.principal
        if self.settings.tenant_labels:
            out += (
                self._capped(self._tenants, principal.tenant_name or ("anonymous" if principal.anonymous else "-")),
            )
        if self.settings.key_labels:
            out += (self._capped(self._keys, "-" if principal.anonymous else principal.key_prefix),)
        return out

    def _capped(self, seen: set[str], value: str) -> str:
        if value in seen or len(seen) < self.settings.label_cap:
            seen.add(value)
            return value
        return "other"


class _SeriesCollector(Collector):
    def __init__(self, series: list[Any]) -> None:
        self.series = series

    def collect(self) -> Iterator[Any]:
        return families(self.series)


def _reasons(decision: RouteDecision) -> set[str]:
    """Why the plan is what it is: privacy, capability, health or preference drops; degraded service."""
    out = set()
    for c in decision.candidates:
        if c.kept:
            continue
        reason = c.reason.split(":")[0]
        out.add({"privacy": "privacy", "circuit_open": "health", "max_cost": "preference"}.get(reason, "capability"))
    if decision.degraded:
        out.add("degraded")
    return out or {"preference"}


class _StateCollector(Collector):
    """Read at scrape time: circuit state per deployment, local engines' slots and queues, and the ledger spool's
    backlog and its oldest file."""

    STATES = ("closed", "half_open", "open")

    def __init__(self, router: Router, spool: Path | None) -> None:
        self.router, self.spool = router, spool

    def collect(self) -> Iterator[Any]:
        breaker = GaugeMetricFamily(
            "openmaas_circuit_state", "1 for the state each deployment's breaker is in.", labels=["deployment", "state"]
        )
        for name, health in self.router.health.items():
            for state in self.STATES:
                breaker.add_metric([name, state], 1.0 if health.state == state else 0.0)
        yield breaker
        slots = GaugeMetricFamily(
            "openmaas_engine_slots",
            "Slots of each local engine process, busy or idle.",
            labels=["deployment", "engine", "state"],
        )
        queue = GaugeMetricFamily(
            "openmaas_engine_queue",
            "Requests waiting for a slot of each local engine.",
            labels=["deployment", "engine"],
        )
        for name, backend in self.router.registry.backends.items():
            for engine in backend.occupancy():
                slots.add_metric([name, engine.label, "busy"], engine.busy)
                slots.add_metric([name, engine.label, "idle"], engine.slots - engine.busy)
                queue.add_metric([name, engine.label], engine.queued)
        yield slots
        yield queue
        if self.spool is not None:
            files = list(self.spool.glob("*.jsonl")) if self.spool.exists() else []
            sizes = [f.stat() for f in files]
            backlog = GaugeMetricFamily("openmaas_ledger_spool_bytes", "Bytes of ledger rows not yet imported.")
            backlog.add_metric([], float(sum(s.st_size for s in sizes)))
            yield backlog
            lag = GaugeMetricFamily("openmaas_ledger_spool_lag_seconds", "Age of the oldest spool file not imported.")
            lag.add_metric([], max((time.time() - min(s.st_mtime for s in sizes)), 0.0) if sizes else 0.0)
            yield lag
