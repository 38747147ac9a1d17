"""The request pipeline, independent of HTTP: validate → place → admit → call → meter.

Routes hand this the parsed JSON body and a ``Call`` (request id, caller); it
returns an OpenAI response dict or a ``Stream``. Later stages (privacy, routing
policy, test-time compute) compose here, not in the routes.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from openmaas.auth.principal import ANONYMOUS, Principal
from openmaas.backends.base import Payload
from openmaas.core.chat import RequestHead
from openmaas.core.view import reported_usage
from openmaas.errors import from_validation_error
from openmaas.lifecycle import Observer, Observers, RouteLog
from openmaas.metering import tokens
from openmaas.metering.meter import Metering, Outcome, Ticket, failure
from openmaas.protocol.chat import ChatCompletionRequest
from openmaas.protocol.completions import CompletionRequest, EmbeddingRequest
from openmaas.routing.registry import Target
from openmaas.routing.router import Route, Router, Served
from openmaas.settings import Deployment
from openmaas.streams import Stream, StreamMeter

M = TypeVar("M", bound=BaseModel)
R = TypeVar("R")


def validate(model: type[M], body: dict[str, Any]) -> M:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise from_validation_error(exc) from None


@dataclass
class Call:
    """One HTTP request as the pipeline sees it; ``headers`` and ``raw_headers`` (already
    encoded) go back on the response. ``body_bytes``: the size of the JSON body, while the
    body the pipeline holds is the one parsed from it (bounds the prompt cheaply)."""

    request_id: str = "req_internal"
    principal: Principal = ANONYMOUS
    headers: dict[str, str] = field(default_factory=dict)
    raw_headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body_bytes: int | None = None
    surface: str = "chat"  # the API the request came in through (ledger ``endpoint``): chat, messages, responses
    privacy: str | None = None  # the privacy class routing gave the request ("public", "sensitive")
    deployment: str | None = None  # the deployment that served it (set when routed)
    observer: Observer | None = None  # set when the gateway takes the call (``begin``)
    settled: bool = False  # a settle path owns the ending (``Gateway.settle``, or a stream as it ends)
    ended: bool = False

    def begin(self, observer: Observer, endpoint: str) -> None:
        """Taken by the gateway: observers see ``started`` once, however many times the call re-enters
        (a grounded request is served through ``chat`` again)."""
        if self.observer is None:
            self.observer = observer
            observer.started(self, endpoint)

    def finish(self, outcome: Outcome) -> None:
        """Settled: observers see ``finished`` exactly once."""
        if not self.ended:
            self.ended = True
            if self.observer is not None:
                self.observer.finished(self, outcome)


class ChatExtension(ABC):
    """A feature that takes over a chat request when its body key is set (``knowledge_base``, ``ttc``):
    it composes around the gateway through its public seams (``chat``, ``admit``, ``settle``,
    ``router``), never its private methods. Registered in ``create_app``; their order is the order
    they are tried in."""

    key: str

    def prepare(self, body: Payload, model: str, names: Collection[str]) -> Payload:
        """The body to serve instead (return ``body`` itself for no change), after it was validated."""
        return body

    @abstractmethod
    async def handle(
        self, gateway: Gateway, body: Payload, call: Call, request: ChatCompletionRequest
    ) -> Payload | Stream: ...


class Gateway:
    def __init__(
        self,
        router: Router,
        metering: Metering | None = None,
        extensions: Sequence[ChatExtension] = (),
        observers: Sequence[Observer] = (),
    ) -> None:
        self.router = router
        self.registry = router.registry
        self.metering = metering
        self.extensions: list[ChatExtension] = []
        self.preparing: list[ChatExtension] = []  # those that may rewrite a body (``prepare`` overridden)
        self.names = frozenset(self.registry.names())
        self.extend(*extensions)
        self.observer = Observers([RouteLog(), *observers])

    def extend(self, *extensions: ChatExtension) -> None:
        """Register chat extensions; they are tried in the order registered."""
        self.extensions += extensions
        self.preparing = [e for e in self.extensions if type(e).prepare is not ChatExtension.prepare]
        self.extension_keys = frozenset(e.key for e in self.extensions)  # a plain request: one set test

    async def admit(
        self,
        call: Call,
        endpoint: str,
        model: str,
        route: Route,
        plan: list[Deployment] | None = None,
        calls: int = 1,
        body_bytes: int | None = None,
    ) -> Ticket | None:
        plan = plan or [self.registry.deployments[c.name] for c in route.decision.plan]
        if self.metering is None:
            call.principal.check_model(model, plan[0].name)
            return None
        # Reserve at the priciest deployment the plan may fall back to: a fallback never overshoots the budget.
        priciest = plan[0]
        if len(plan) > 1:
            priciest = max(plan, key=lambda d: d.pricing.input_per_mtok + d.pricing.output_per_mtok)
        ticket = await self.metering.admit(
            call.principal, call.request_id, endpoint, model, priciest, route.view, calls, body_bytes
        )
        if ticket.headers:
            call.raw_headers += ticket.headers
        return ticket

    def _record_route(self, call: Call, ticket: Ticket | None, route: Route, served: Served | None) -> None:
        decision = route.decision
        header = call.headers["x-openmaas-route"] = decision.header()
        call.privacy = decision.privacy.label
        call.deployment = served.target.deployment.name if served is not None else None
        if decision.degraded:
            call.headers["x-openmaas-degraded"] = "true"
        if call.observer is not None:
            call.observer.routed(call, decision, served.target.deployment.name if served is not None else None)
        if ticket is not None:
            if served is not None:
                ticket.deployment = served.target.deployment
            ticket.route_reason = decision.reason(header)
            ticket.route = decision
            ticket.degraded = decision.degraded

    async def _unary(
        self, call: Call, ticket: Ticket | None, route: Route, invoke: Callable[[Target, Payload], Awaitable[Payload]]
    ) -> Payload:
        try:
            result, served = await self.router.run(route, invoke)
        except BaseException as exc:
            await self.settle(call, ticket, route, None, None, exc)
            raise
        if served.restorer is not None:
            served.restorer.restore_response(result)
        if ticket is not None and self.metering is not None:
            outcome = await tokens.from_response(served.target.backend, served.payload, result)
        else:
            outcome = Outcome(*(reported_usage(result) or (0, 0)))
        await self.settle(call, ticket, route, served, outcome)
        return result

    async def settle(
        self,
        call: Call,
        ticket: Ticket | None,
        route: Route,
        served: Served | None,
        outcome: Outcome | None,
        exc: BaseException | None = None,
    ) -> None:
        """The one settle path of every request that ends before a stream reaches the client (streams settle
        as they end, ``streams.Stream``): record the route, write the ledger row, tell the observers.
        ``outcome``: the tokens the request's calls used (None: not known); ``exc``: why it failed. Our errors
        are recorded at once; a call cut off (the client left) or a bug is recorded without blocking the
        teardown, and when its tokens are not known it bills the prompt the upstream received."""
        call.settled = True
        self._record_route(call, ticket, route, served)
        interrupted = False
        if exc is not None:
            status, code, interrupted = failure(exc)
            if outcome is None and interrupted:
                attempts = route.decision.attempts
                target = self.registry.target(attempts[-1].deployment) if attempts else None
                spawn = self.metering.spawn if self.metering is not None else None
                if spawn is not None and ticket is not None:
                    spawn(self._cut_off(call, ticket, target, route.body, status, code))
                else:
                    call.finish(Outcome(source="estimate", status=status, error_code=code, interrupted=True))
                return
            outcome = outcome or Outcome()
            outcome.status, outcome.error_code, outcome.interrupted = status, code, interrupted
        assert outcome is not None
        if ticket is not None and self.metering is not None:
            if interrupted:
                self.metering.finish_later(ticket, outcome)
            else:
                await self.metering.finish(ticket, outcome)
        call.finish(outcome)

    async def _cut_off(
        self, call: Call, ticket: Ticket, target: Target | None, payload: Payload, status: int, code: str | None
    ) -> None:
        assert self.metering is not None
        try:
            if target is None:
                raise LookupError("no attempt was made")
            ticket.deployment = target.deployment
            outcome = await tokens.prompt_only(target.backend, payload)
        except Exception:
            outcome = Outcome(source="estimate")
        outcome.status, outcome.error_code, outcome.interrupted = status, code, True
        self.metering.finish_later(ticket, outcome)
        call.finish(outcome)

    def _route(self, call: Call, model: str, endpoint: str, body: Payload, output_limit: int | None) -> Route:
        return self.router.route(model, endpoint, body, call.principal, output_limit, call.body_bytes)

    def _refused(self, call: Call, exc: BaseException) -> None:
        """Observers see ``finished`` for a request refused before any settle path owned its ending (invalid,
        unknown model, over its limits); ``started`` was told when the gateway took the call (``Call.begin``).
        ``chat``, the path of every dialect, calls this from its own ``except`` rather than through a wrapping
        coroutine (``_observed``): one await level less on every resumption of every request."""
        if not call.settled:
            call.settled = True
            status, code, interrupted = failure(exc)
            call.finish(Outcome(status=status, error_code=code, interrupted=interrupted))

    async def chat(self, body: Payload, call: Call | None = None, head: RequestHead | None = None) -> Payload | Stream:
        """``head``: what the gateway reads of a body the core built (``core.chat.request_head``), which then is
        not validated again (an extension that takes the request over still gets it validated). One coroutine,
        not a wrapper around another: it is every dialect's path, and each await level costs on every resumption."""
        call = call or Call()
        call.begin(self.observer, "chat")
        try:
            resolved = self.registry.resolve_pattern(body)
            request = None
            if head is None or resolved is not body:
                request = validate(ChatCompletionRequest, resolved)
                head = RequestHead.of(request)
            body = resolved
            for extension in self.preparing:  # e.g. a model-name suffix that asks for test-time compute
                prepared = extension.prepare(body, head.model, self.names)
                if prepared is not body:
                    body, request = prepared, validate(ChatCompletionRequest, prepared)
                    head = RequestHead.of(request)
            if not self.extension_keys.isdisjoint(body):
                for extension in self.extensions:  # the first whose body key is set runs the request (in app order)
                    if body.get(extension.key) is not None:
                        return await extension.handle(
                            self, body, call, request or validate(ChatCompletionRequest, body)
                        )
            route = self._route(call, head.model, "chat", body, head.output_limit)
            ticket = await self.admit(call, call.surface, head.model, route, body_bytes=call.body_bytes)
            if head.stream:
                return await self._stream(
                    call, ticket, route, lambda t, p: t.backend.chat_stream(p), head.model, head.wants_usage_chunk
                )
            result = await self._unary(call, ticket, route, lambda t, p: t.backend.chat(p))
            result["model"] = head.model
            return result
        except BaseException as exc:
            self._refused(call, exc)
            raise

    async def complete(self, body: Payload, call: Call | None = None) -> Payload | Stream:
        call = call or Call()
        return await self._observed(call, "completions", self._complete(body, call))

    async def embed(self, body: Payload, call: Call | None = None) -> Payload:
        call = call or Call()
        return await self._observed(call, "embeddings", self._embed(body, call))

    async def _observed(self, call: Call, endpoint: str, serve: Awaitable[R]) -> R:
        """``chat``'s pattern for the other entry points (not on every dialect's path, so one helper)."""
        call.begin(self.observer, endpoint)
        try:
            return await serve
        except BaseException as exc:
            self._refused(call, exc)
            raise

    async def _complete(self, body: Payload, call: Call) -> Payload | Stream:
        request = validate(CompletionRequest, body)
        route = self._route(call, request.model, "completions", body, request.max_tokens)
        ticket = await self.admit(call, "completions", request.model, route, body_bytes=call.body_bytes)
        if request.stream:
            include = bool(request.stream_options and request.stream_options.include_usage)
            return await self._stream(
                call, ticket, route, lambda t, p: t.backend.complete_stream(p), request.model, include
            )
        result = await self._unary(call, ticket, route, lambda t, p: t.backend.complete(p))
        result["model"] = request.model
        return result

    async def _embed(self, body: Payload, call: Call) -> Payload:
        request = validate(EmbeddingRequest, body)
        route = self._route(call, request.model, "embeddings", body, None)
        ticket = await self.admit(call, "embeddings", request.model, route, body_bytes=call.body_bytes)
        result = await self._unary(call, ticket, route, lambda t, p: t.backend.embed(p))
        result["model"] = request.model
        return result

    async def _stream(
        self,
        call: Call,
        ticket: Ticket | None,
        route: Route,
        open_stream: Callable[[Target, Payload], AsyncIterator[Payload]],
        model: str,
        include_usage: bool,
    ) -> Stream:
        """Open the stream on the first deployment that yields a first chunk (failures before it fail over)."""

        async def first_chunk(target: Target, payload: Payload) -> tuple[Payload | None, AsyncIterator[Payload]]:
            iterator = aiter(open_stream(target, payload))
            return await anext(iterator, None), iterator

        try:
            (first, iterator), served = await self.router.run(route, first_chunk)
        except BaseException as exc:  # before the first chunk: nothing was delivered
            await self.settle(call, ticket, route, None, None, exc)
            raise
        call.settled = True  # from here the stream settles as it ends
        self._record_route(call, ticket, route, served)
        if call.observer is not None:
            call.observer.first_token(call)
        meter = None
        if ticket is not None and self.metering is not None:
            ticket.first_token_at = time.perf_counter()
            meter = StreamMeter(self.metering, ticket, served.target.backend, served.payload)
        if first is None:
            first = {"object": "chat.completion.chunk", "choices": []}
        return Stream(
            first, iterator, model, include_usage, meter=meter, restorer=served.restorer, served=served, call=call
        )

    def models(self) -> list[Payload]:
        out = []
        for d in self.registry.deployments.values():
            out.append(_model_card(d.name, d, None))
        for alias, targets in self.registry.aliases.items():
            out.append(_model_card(alias, self.registry.deployments[targets[0]], ",".join(targets)))
        return out


def _model_card(name: str, d: Any, alias_of: str | None) -> Payload:
    return {
        "id": name,
        "object": "model",
        "created": 0,
        "owned_by": "openmaas",
        "openmaas": {
            "alias_of": alias_of,
            "backend": d.backend,
            "locality": d.locality,
            "context_length": d.context_length,
            "capabilities": d.capabilities.model_dump(),
            "pricing": d.pricing.model_dump(),
        },
    }
