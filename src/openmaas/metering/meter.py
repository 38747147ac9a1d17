"""Per-request metering: admission (limits + reservations) before the call, the ledger event after.

``admit`` does no database round-trip on the hot path: keys come from the
cache, counters are in memory or one Redis script. ``finish`` waits for the
group commit and queues the settlement that swaps reservations for actuals.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from sqlalchemy import func, select

from openmaas.auth.principal import Limits, Principal
from openmaas.core.view import PromptView
from openmaas.errors import BudgetExceeded, OpenMaaSError, RateLimitExceeded
from openmaas.ids import IdGenerator
from openmaas.limits.counters import Admission, Bucket, Counters, Quota, Settlement, seconds_to_full
from openmaas.metering.ledger import Ledger, UsageEvent
from openmaas.metering.pricing import cost_nanos, day_of, max_output_tokens, period_start, prompt_upper_bound
from openmaas.settings import Deployment
from openmaas.store.db import Database
from openmaas.store.schema import usage_events

Header = tuple[bytes, bytes]


class RouteRecord(Protocol):
    """What the ledger stores of a route decision (``routing.decision.RouteDecision``)."""

    def to_json(self, cached_tokens: int | None = None) -> str: ...


@dataclass(slots=True)
class Ticket:
    id: str
    request_id: str
    principal: Principal
    endpoint: str
    model: str
    deployment: Deployment
    started: float
    wall_start: float
    day: str
    buckets: list[tuple[Bucket, float]] = field(default_factory=list)
    quotas: list[tuple[Quota, int]] = field(default_factory=list)
    headers: list[Header] = field(default_factory=list)  # x-ratelimit-*, encoded for the response
    route_reason: str = ""
    route: RouteRecord | None = None  # the route decision, serialised when the row is written
    degraded: bool = False
    first_token_at: float | None = None
    finished: bool = False


def failure(exc: BaseException) -> tuple[int, str | None, bool]:
    """How a request that ended with ``exc`` is recorded: (status, error code, interrupted). The one
    mapping every settle path uses: our errors keep their status; a cancelled task is a client that
    went away (499); anything else is a bug (500)."""
    if isinstance(exc, OpenMaaSError):
        return exc.status, exc.code, False
    if isinstance(exc, asyncio.CancelledError):
        return 499, "client_disconnected", True
    return 500, "internal_error", True


@dataclass(frozen=True, slots=True)
class EngineTimings:
    """Server-side timings an engine reports with its answer (seconds): prompt processing (its time to first
    token), time per output token after the first, and the whole request."""

    time_to_first_token: float
    time_per_output_token: float | None
    duration: float


@dataclass(slots=True)
class Outcome:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    source: str = "upstream"
    status: int = 200
    error_code: str | None = None
    interrupted: bool = False
    cost_nanos: int | None = None  # set when the request used several deployments (test-time compute)
    cached_tokens: int = 0  # prompt tokens the upstream served from its prompt cache (part of prompt_tokens)
    engine: EngineTimings | None = None  # what the engine itself measured (llama.cpp's ``timings``), when it says


_HEADER_NAMES = {
    kind: (
        f"x-ratelimit-limit-{kind}".encode(),
        f"x-ratelimit-remaining-{kind}".encode(),
        f"x-ratelimit-reset-{kind}".encode(),
    )
    for kind in ("requests", "tokens")
}


@dataclass(frozen=True)
class _Shape:
    """What admission checks for one principal today: built once per key and UTC day, not per request."""

    principal: Principal
    request_pairs: tuple[tuple[Bucket, float], ...]  # each request bucket with its cost (1 request)
    token_buckets: tuple[Bucket, ...]
    quotas: tuple[tuple[Quota, bool], ...]  # (quota, counts tokens rather than cost)
    day: str
    until: float  # next UTC midnight: every budget period starts at one
    # per bucket kind: header names, and the indexes of its buckets in a ticket's bucket list
    header_plan: tuple[tuple[tuple[bytes, bytes, bytes], tuple[int, ...]], ...]
    limit_values: tuple[bytes, ...]  # each bucket's per-minute limit, encoded

    @property
    def idle(self) -> bool:
        return not self.request_pairs and not self.token_buckets and not self.quotas


def _buckets(scope: str, owner: str, limits: Limits) -> tuple[list[Bucket], list[Bucket]]:
    requests = [Bucket(f"rpm:{scope}:{owner}", "requests", limits.rpm)] if limits.rpm else []
    tokens = [Bucket(f"tpm:{scope}:{owner}", "tokens", limits.tpm)] if limits.tpm else []
    return requests, tokens


def _quota(kind: str, column: Literal["key_id", "tenant_id"], owner: str, limit: int, period: str, now: float) -> Quota:
    label, since, ttl = period_start(period, now)
    unit: Literal["nanos", "tokens"] = "tokens" if kind == "tokens" else "nanos"
    return Quota(f"q:{kind}:{column[:-3]}:{owner}:{label}", unit, limit, column, owner, since, ttl)


def _shape(principal: Principal, now: float) -> _Shape:
    assert principal.key_id is not None and principal.tenant_id is not None
    kl, tl = principal.key_limits, principal.tenant_limits
    key_requests, key_tokens = _buckets("key", principal.key_id, kl)
    tenant_requests, tenant_tokens = _buckets("tenant", principal.tenant_id, tl)
    quotas: list[tuple[Quota, bool]] = []
    if kl.budget_nanos is not None:
        quotas.append((_quota("usd", "key_id", principal.key_id, kl.budget_nanos, kl.budget_period, now), False))
    if tl.budget_nanos is not None:
        quotas.append((_quota("usd", "tenant_id", principal.tenant_id, tl.budget_nanos, tl.budget_period, now), False))
    if tl.monthly_cost_quota_nanos is not None:
        quota = _quota("planusd", "tenant_id", principal.tenant_id, tl.monthly_cost_quota_nanos, "month", now)
        quotas.append((quota, False))
    if tl.monthly_token_quota is not None:
        quotas.append((_quota("tokens", "tenant_id", principal.tenant_id, tl.monthly_token_quota, "month", now), True))
    ordered = key_requests + tenant_requests + key_tokens + tenant_tokens  # a ticket's bucket order
    plan = tuple(
        (_HEADER_NAMES[kind], indexes)
        for kind in ("requests", "tokens")
        if (indexes := tuple(i for i, b in enumerate(ordered) if b.kind == kind))
    )
    return _Shape(
        principal,
        tuple((b, 1.0) for b in key_requests + tenant_requests),
        tuple(key_tokens + tenant_tokens),
        tuple(quotas),
        day_of(now),
        (now // 86_400 + 1) * 86_400,
        plan,
        tuple(str(b.per_minute).encode() for b in ordered),
    )


def _duration(seconds: float) -> str:
    """OpenAI's reset format: "20ms", "1.5s", "6m0s"."""
    if seconds < 1:
        return f"{max(1, int(seconds * 1000))}ms"
    if seconds < 60:
        return f"{round(seconds, 1):g}s"
    return f"{int(seconds // 60)}m{int(seconds % 60)}s"


def ratelimit_headers(levels: list[float], buckets: list[tuple[Bucket, float]], shape: _Shape) -> list[Header]:
    """OpenAI-style headers from the tightest bucket of each kind, encoded once here."""
    headers: list[Header] = []
    for (limit_name, remaining_name, reset_name), indexes in shape.header_plan:
        tightest = indexes[0]
        for i in indexes[1:]:
            if levels[i] < levels[tightest]:
                tightest = i
        left = levels[tightest]
        per_minute = buckets[tightest][0].per_minute
        headers.append((limit_name, shape.limit_values[tightest]))
        headers.append((remaining_name, str(int(left) if left > 0 else 0).encode()))
        headers.append((reset_name, _duration(seconds_to_full(left, per_minute)).encode()))
    return headers


class Metering:
    def __init__(self, db: Database, ledger: Ledger, counters: Counters) -> None:
        self.db = db
        self.ledger = ledger
        self.counters = counters
        self._tasks: set[asyncio.Task[None]] = set()
        self._seeding: dict[str, asyncio.Future[None]] = {}
        self._shapes: dict[str, _Shape] = {}
        self.new_id = IdGenerator("evt")

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _reshape(self, principal: Principal, now: float) -> _Shape:
        assert principal.key_id is not None
        shape = self._shapes[principal.key_id] = _shape(principal, now)
        return shape

    async def admit(
        self,
        principal: Principal,
        request_id: str,
        endpoint: str,
        model: str,
        deployment: Deployment,
        view: PromptView,
        calls: int = 1,
        body_bytes: int | None = None,
    ) -> Ticket:
        """``calls``: model calls the request may make (test-time compute); the reservation covers all.
        ``body_bytes``: the size of the JSON body the request was parsed from, when it was (bounds the prompt)."""
        principal.check_model(model, deployment.name)
        ticket, shape = self._open(principal, request_id, endpoint, model, deployment)
        if shape is None:
            return ticket
        prompt = prompt_upper_bound(view, body_bytes)
        output = max_output_tokens(view, deployment, prompt) if endpoint != "embeddings" else 0
        if calls != 1:
            prompt, output = prompt * calls, output * calls
        tokens = prompt + output
        nanos = cost_nanos(deployment, prompt, output)
        ticket.buckets = [*shape.request_pairs, *[(b, float(tokens)) for b in shape.token_buckets]]
        ticket.quotas = [(q, tokens if counts_tokens else nanos) for q, counts_tokens in shape.quotas]
        await self._reserve(ticket, shape)
        return ticket

    async def admit_fixed(
        self, principal: Principal, request_id: str, endpoint: str, name: str, deployment: Deployment, nanos: int
    ) -> Ticket:
        """A call of a known price (a tool call): one request in the request buckets and ``nanos`` against
        the cost budgets; token buckets and token quotas are not touched."""
        ticket, shape = self._open(principal, request_id, endpoint, name, deployment)
        if shape is None:
            return ticket
        ticket.buckets = list(shape.request_pairs)
        ticket.quotas = [(q, nanos) for q, counts_tokens in shape.quotas if not counts_tokens]
        await self._reserve(ticket, shape)
        return ticket

    def unreserved(
        self, principal: Principal, request_id: str, endpoint: str, name: str, deployment: Deployment
    ) -> Ticket:
        """A ticket that reserves nothing: to record a call refused before admission (a forbidden tool)."""
        now = time.time()
        return Ticket(
            self.new_id(), request_id, principal, endpoint, name, deployment, time.perf_counter(), now, day_of(now)
        )

    def _open(
        self, principal: Principal, request_id: str, endpoint: str, model: str, deployment: Deployment
    ) -> tuple[Ticket, _Shape | None]:
        """A new ticket, and the principal's admission shape (None: nothing to reserve — anonymous, or no limits)."""
        if principal.anonymous:
            return self.unreserved(principal, request_id, endpoint, model, deployment), None
        now = time.time()
        shape = self._shapes.get(principal.key_id)  # type: ignore[arg-type]
        if shape is None or shape.principal is not principal or now >= shape.until:
            shape = self._reshape(principal, now)
        ticket = Ticket(
            self.new_id(), request_id, principal, endpoint, model, deployment, time.perf_counter(), now, shape.day
        )
        return ticket, None if shape.idle else shape

    async def _reserve(self, ticket: Ticket, shape: _Shape) -> None:
        buckets, quotas = ticket.buckets, ticket.quotas
        admission = await self.counters.admit(buckets, quotas)
        seeded = 0
        while admission.unloaded is not None and seeded < len(quotas):
            await self._seed(admission.unloaded)
            seeded += 1
            admission = await self.counters.admit(buckets, quotas)
        if not admission.ok:
            self._refuse(ticket, admission)
        if shape.header_plan and len(buckets) == sum(len(ix) for _, ix in shape.header_plan):
            ticket.headers = ratelimit_headers(admission.levels, buckets, shape)

    def _refuse(self, ticket: Ticket, admission: Admission) -> None:
        name = admission.failed or ""
        if name.startswith(("rpm:", "tpm:")):
            kind, scope = name.split(":")[:2]
            bucket = next(b for b, _ in ticket.buckets if b.name == name)
            unit = "requests" if kind == "rpm" else "tokens"
            headers = {
                "retry-after": str(max(1, int(admission.retry_after + 0.999))),
                f"x-ratelimit-limit-{unit}": str(bucket.per_minute),
                f"x-ratelimit-remaining-{unit}": "0",
                f"x-ratelimit-reset-{unit}": _duration(admission.retry_after),
            }
            raise RateLimitExceeded(
                f"Rate limit reached for {scope} {ticket.principal.key_prefix if scope == 'key' else ''}"
                f"{ticket.principal.tenant_name if scope == 'tenant' else ''}: {bucket.per_minute} {unit} per minute."
                f" Please try again in {admission.retry_after:.2f}s.",
                headers=headers,
            )
        unit, scope = name.split(":")[1:3]
        what = {"usd": "budget", "planusd": "plan's monthly cost quota", "tokens": "plan's monthly token quota"}[unit]
        raise BudgetExceeded(
            f"This request could exceed the {scope}'s {what} (it reserves the cost of its prompt plus max_tokens)."
            " Lower max_tokens, or raise the budget.",
            code="budget_exceeded" if unit == "usd" else "quota_exceeded",
        )

    async def _seed(self, quota: Quota) -> None:
        """Load a quota's spend from the ledger once, however many requests ask at the same time."""
        pending = self._seeding.get(quota.name)
        if pending is None:

            async def load() -> None:
                await self.ledger.sink.sync()  # rows still in the SQLite spool count too
                await self.counters.seed(quota, await self._spent(quota))

            pending = self._seeding[quota.name] = asyncio.ensure_future(load())
            pending.add_done_callback(lambda _: self._seeding.pop(quota.name, None))
        await asyncio.shield(pending)

    async def _spent(self, quota: Quota) -> int:
        column = usage_events.c[quota.owner_column]
        amount = (
            usage_events.c.cost_nanos
            if quota.unit == "nanos"
            else usage_events.c.prompt_tokens + usage_events.c.completion_tokens
        )
        query = select(func.coalesce(func.sum(amount), 0)).where(column == quota.owner)
        query = query.where(usage_events.c.created_at >= quota.since)
        async with self.db.engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    def _event(self, ticket: Ticket, outcome: Outcome) -> tuple[UsageEvent, Settlement | None]:
        ticket.finished = True
        prompt, completion = outcome.prompt_tokens, outcome.completion_tokens
        cost = outcome.cost_nanos
        if cost is None:
            cost = cost_nanos(ticket.deployment, prompt, completion)
        started = ticket.started
        first = ticket.first_token_at
        principal = ticket.principal
        event = UsageEvent(
            ticket.id,
            ticket.request_id,
            principal.tenant_id,
            principal.key_id,
            ticket.endpoint,
            ticket.model,
            ticket.deployment.name,
            ticket.route_reason,
            prompt,
            completion,
            cost,
            outcome.source,
            round((time.perf_counter() - started) * 1000, 3),
            None if first is None else round((first - started) * 1000, 3),
            outcome.status,
            outcome.error_code,
            outcome.interrupted,
            ticket.wall_start,
            ticket.day,
            ticket.degraded,
            None if ticket.route is None else ticket.route.to_json(outcome.cached_tokens),
            outcome.cached_tokens,
        )
        if not ticket.buckets and not ticket.quotas:
            return event, None
        used = prompt + completion
        settlement = Settlement(
            [(bucket, reserved - used) for bucket, reserved in ticket.buckets if bucket.kind == "tokens"],
            [(quota, amount, cost if quota.unit == "nanos" else used) for quota, amount in ticket.quotas],
        )
        return event, settlement

    async def finish(self, ticket: Ticket, outcome: Outcome) -> None:
        """Record the request and wait for the group commit (call before the response's final byte)."""
        if not ticket.finished:
            await self.ledger.record(*self._event(ticket, outcome))

    def finish_later(self, ticket: Ticket, outcome: Outcome) -> None:
        """Record without waiting (the client is gone)."""
        if not ticket.finished:
            self.ledger.submit(*self._event(ticket, outcome))

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
