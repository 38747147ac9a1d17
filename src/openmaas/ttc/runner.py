"""Test-time compute through the gateway: every model call routed, privacy-checked and metered.

One request → one ledger event whose tokens and cost are the sum of every call made
for it (candidates, refinements, escalation, judge), each priced at the deployment
that served it. Admission reserves for all the calls the strategy may make.
Streaming: the strategy runs to completion first (it must see every candidate), the
ledger row is committed, then the chosen answer streams as ordinary chunks.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Collection
from typing import Any

from openmaas.core.view import completion_text
from openmaas.errors import InvalidRequest, OpenMaaSError
from openmaas.gateway import Call, ChatExtension, Gateway
from openmaas.metering import tokens
from openmaas.metering.meter import Outcome, Ticket
from openmaas.metering.pricing import cost_nanos
from openmaas.protocol.chat import ChatCompletionRequest
from openmaas.routing.registry import Target
from openmaas.routing.router import Route, Served
from openmaas.streams import Stream
from openmaas.ttc import spec as ttc_spec
from openmaas.ttc.enforce import Enforcement, for_checks, for_json_schema
from openmaas.ttc.strategies import STRATEGY_FUNCTIONS, Run
from openmaas.ttc.verifiers import Candidate, Context, build

_DROP = ("ttc", "stream", "stream_options", "n")
DEFAULT_TEMPERATURE = 0.7  # several candidates at temperature 0 would all be the same answer


def limits(gateway: Gateway, call: Call) -> tuple[int, int]:
    settings = gateway.router.settings.ttc
    features = call.principal.features
    if not settings.enabled or features.get("ttc") is False:
        raise InvalidRequest(
            "Test-time compute is not enabled for this key's plan", param="ttc", code="ttc_not_allowed"
        )
    n = min(settings.max_n, int(features.get("ttc_max_n", settings.max_n)))
    rounds = min(settings.max_rounds, int(features.get("ttc_max_rounds", settings.max_rounds)))
    return n, rounds


class TtcRun:
    def __init__(self, gateway: Gateway, call: Call, request: ChatCompletionRequest, body: dict[str, Any]) -> None:
        self.gateway, self.call, self.request = gateway, call, request
        max_n, max_rounds = limits(gateway, call)
        self.spec = ttc_spec.parse(body.get("ttc"), max_n, max_rounds)
        self.payload = {k: v for k, v in body.items() if k not in _DROP}
        verifier = self.spec.verifier
        fmt = body.get("response_format") or {}
        # a json_schema verifier without a schema of its own uses the request's: a bad one is a 400 before any call
        if fmt.get("type") == "json_schema" and (
            verifier is None or (verifier.type == "json_schema" and "schema" not in verifier.options)
        ):
            schema = (fmt.get("json_schema") or {}).get("schema") or {}
            ttc_spec.check_schema(schema, "response_format.json_schema.schema")
        # Best-of-N without a temperature of the caller's: one greedy candidate (the model's own best guess)
        # and n-1 samples, so a verifier that accepts the greedy answer never ends worse than one sample.
        sampled = self.spec.strategy in ("best_of_n", "self_consistency", "cascade") and self.spec.n > 1
        self.greedy_first = sampled and self.spec.strategy != "self_consistency" and "temperature" not in body
        if sampled:
            self.payload.setdefault("temperature", DEFAULT_TEMPERATURE)
        self.enforcement = _enforcement(self.spec, body) if self.spec.enforce else None
        if (self.spec.verifier or _default_verifier(self.spec, body)).type == "logprob":
            self.payload["logprobs"] = True
        self.routes: list[Route] = []
        self.calls: list[Candidate] = []

    def _route(self, model: str, payload: dict[str, Any]) -> Route:
        route = self.gateway.router.route(model, "chat", payload, self.call.principal, self.request.output_limit)
        self.routes.append(route)
        return route

    async def _sample(
        self, payload: dict[str, Any], model: str | None, role: str, route: Route | None = None
    ) -> Candidate:
        route = route or self._route(model or self.request.model, payload)
        enforced = [False]

        async def chat(target: Target, body: dict[str, Any]) -> dict[str, Any]:
            shaped = self._enforce(target, body) if role != "judge" else None
            enforced[0] = shaped is not None
            return await target.backend.chat(body if shaped is None else shaped)

        result, served = await self.gateway.router.run(route, chat)
        if served.restorer is not None:
            served.restorer.restore_response(result)
        outcome = await tokens.from_response(served.target.backend, served.payload, result)
        deployment = served.target.deployment
        candidate = Candidate(
            completion_text(result),
            result,
            deployment.name,
            outcome.prompt_tokens,
            outcome.completion_tokens,
            cost_nanos(deployment, outcome.prompt_tokens, outcome.completion_tokens),
            role,
            enforced[0],
        )
        self.calls.append(candidate)
        return candidate

    def _enforce(self, target: Target, body: dict[str, Any]) -> dict[str, Any] | None:
        """The body with the verifier's grammar or schema, where this deployment can take it."""
        if self.enforcement is None or body.get("tools") or "grammar" in body or "response_format" in body:
            return None  # the caller's own constraints and tool calls come first
        caps = target.deployment.capabilities
        return self.enforcement.apply(body, target.backend.accepts_grammar, caps.json_schema)

    async def _judge(self, prompt: str) -> tuple[str, Candidate]:
        model = self.gateway.router.settings.ttc.judge_model or self.request.model
        payload = {
            "model": model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": 16,
            "temperature": 0,
        }
        judged = await self._sample(payload, model, "judge")
        return judged.text, judged

    async def run(self) -> dict[str, Any] | Stream:
        main = self._route(self.request.model, self.payload)
        judged = self.spec.verifier is not None and self.spec.verifier.type == "judge"
        others = [self.spec.escalate_to] if self.spec.escalate_to else []
        if judged:
            others.append(self.gateway.router.settings.ttc.judge_model or self.request.model)
        plan = [self.gateway.registry.deployments[c.name] for c in main.decision.plan]
        for other in others:  # price the reservation at every model it may call; an unknown one is a 404 now
            try:
                decision = self.gateway.router.route(
                    other, "chat", self.payload, self.call.principal, self.request.output_limit
                ).decision
            except OpenMaaSError as exc:
                if exc.status != 403:  # refused by the privacy policy: that call will be refused (and reported) too
                    raise
                continue
            plan += [self.gateway.registry.deployments[c.name] for c in decision.plan]
        calls = self.spec.calls + (self.spec.n if judged else 0)
        ticket = await self.gateway.admit(self.call, "chat", self.request.model, main, plan, calls)
        ctx = Context(
            self.payload,
            judge=self._judge,
            sandbox_timeout_s=self.gateway.router.settings.ttc.sandbox_timeout_s,
            sandbox_memory_mb=self.gateway.router.settings.ttc.sandbox_memory_mb,
        )
        verifier = build(self.spec.verifier or _default_verifier(self.spec, self.payload), self.payload)
        strategy = STRATEGY_FUNCTIONS[self.spec.strategy]

        greedy = [self.greedy_first]

        async def sample(payload: dict[str, Any], model: str | None, role: str) -> Candidate:
            same = model is None and payload is self.payload
            if same and greedy[0] and role == "candidate":
                greedy[0] = False
                return await self._sample({**payload, "temperature": 0}, None, role)
            return await self._sample(payload, model, role, main if same else None)

        try:
            outcome = await strategy(self.spec, self.payload, sample, verifier, ctx)
        except BaseException as exc:
            await self._settle(ticket, main, None, exc)
            raise
        result = self._response(outcome)
        await self._settle(ticket, main, outcome, None)
        if self.request.stream:
            return _as_stream(result, self.request.model, self.request.wants_usage_chunk)
        return result

    async def _settle(self, ticket: Ticket | None, main: Route, run: Run | None, exc: BaseException | None) -> None:
        for other in self.routes[1:]:  # one audit trail: every call's attempts, wherever it went
            main.decision.attempts += other.decision.attempts
        served = Served(self.gateway.registry.target(run.chosen.deployment), {}, None) if run is not None else None
        scores = {id(c): round(s.value, 4) for c, s in zip(run.candidates, run.scores, strict=False)} if run else {}
        main.decision.ttc = {
            "strategy": self.spec.strategy,
            "calls": [
                {
                    "role": c.role,
                    "deployment": c.deployment,
                    "score": scores.get(id(c)),
                    "chosen": run is not None and c is run.chosen,
                    "prompt_tokens": c.prompt_tokens,
                    "completion_tokens": c.completion_tokens,
                    "cost_usd": c.cost_nanos / 1e9,
                }
                for c in self.calls
            ],
        }
        self.call.headers["x-openmaas-ttc"] = self.spec.strategy
        outcome = Outcome(
            sum(c.prompt_tokens for c in self.calls),
            sum(c.completion_tokens for c in self.calls),
            cost_nanos=sum(c.cost_nanos for c in self.calls),
        )
        await self.gateway.settle(self.call, ticket, main, served, outcome, exc)

    def _response(self, run: Run) -> dict[str, Any]:
        result = dict(run.chosen.result)
        result["model"] = self.request.model
        chosen = run.chosen
        total_p = sum(c.prompt_tokens for c in self.calls)
        total_c = sum(c.completion_tokens for c in self.calls)
        by_role: dict[str, dict[str, int]] = {}
        for c in self.calls:
            role = by_role.setdefault(c.role, {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0})
            role["calls"] += 1
            role["prompt_tokens"] += c.prompt_tokens
            role["completion_tokens"] += c.completion_tokens
        result["usage"] = {"prompt_tokens": total_p, "completion_tokens": total_c, "total_tokens": total_p + total_c}
        result["ttc"] = {
            "strategy": self.spec.strategy,
            "verifier": (self.spec.verifier or _default_verifier(self.spec, self.payload)).type,
            "candidates": [
                {
                    "deployment": c.deployment,
                    "role": c.role,
                    "score": round(s.value, 4),
                    "answer": s.answer,
                    "detail": s.detail,
                    "completion_tokens": c.completion_tokens,
                    "enforced": c.enforced,
                }
                for c, s in zip(run.candidates, run.scores, strict=False)
            ],
            "chosen": run.candidates.index(chosen),
            "enforced": list(self.enforcement.kinds) if self.enforcement else [],
            "rounds": run.rounds,
            "escalated": run.escalated,
            "escalation_refused": run.escalation_refused,
            "failed_candidates": run.failures,
            "usage": {
                "chosen": {"prompt_tokens": chosen.prompt_tokens, "completion_tokens": chosen.completion_tokens},
                "extra": {
                    "prompt_tokens": total_p - chosen.prompt_tokens,
                    "completion_tokens": total_c - chosen.completion_tokens,
                },
                "by_role": by_role,
                "cost_usd": round(sum(c.cost_nanos for c in self.calls) / 1e9, 9),
            },
        }
        return result


def _enforcement(spec: ttc_spec.TtcSpec, body: dict[str, Any]) -> Enforcement | None:
    verifier = spec.verifier
    assert verifier is not None  # spec.parse refuses enforce without one
    if verifier.type == "checks":
        return for_checks(verifier.options["checks"])
    schema = verifier.options.get("schema") or ((body.get("response_format") or {}).get("json_schema") or {}).get(
        "schema"
    )
    return for_json_schema(schema)


def _default_verifier(spec: ttc_spec.TtcSpec, body: dict[str, Any]) -> ttc_spec.VerifierSpec:
    """Without one: a cascade trusts the model's confidence; otherwise the request's JSON schema, else a vote."""
    if spec.strategy == "cascade":
        return ttc_spec.VerifierSpec("logprob")
    if (body.get("response_format") or {}).get("type") == "json_schema":
        return ttc_spec.VerifierSpec("json_schema")
    return ttc_spec.VerifierSpec("vote")


def _as_stream(result: dict[str, Any], model: str, include_usage: bool) -> Stream:
    """The chosen answer as chunks: role, content in pieces, finish, then usage (and the ttc summary)."""
    choice = (result.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    base = {"id": result.get("id", "chatcmpl-ttc"), "object": "chat.completion.chunk", "created": int(time.time())}
    first = {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}

    async def rest() -> AsyncIterator[dict[str, Any]]:
        text = message.get("content") or ""
        for i in range(0, len(text), 64):
            yield {**base, "choices": [{"index": 0, "delta": {"content": text[i : i + 64]}, "finish_reason": None}]}
        calls = [{"index": i, **c} for i, c in enumerate(message.get("tool_calls") or [])]
        delta = {"tool_calls": calls} if calls else {}
        yield {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": choice.get("finish_reason")}]}
        yield {**base, "choices": [], "usage": result["usage"], "ttc": result["ttc"]}

    return Stream(first, rest(), model, include_usage)


class TestTimeCompute(ChatExtension):
    """``ttc`` on a chat request (or a ``model@strategy`` name): run a test-time compute strategy."""

    __test__ = False  # not a pytest class
    key = "ttc"

    def prepare(self, body: dict[str, Any], model: str, names: Collection[str]) -> dict[str, Any]:
        if "@" not in model or model in names:
            return body
        base, ttc = ttc_spec.split_suffix(model)
        if ttc is None:
            return body
        given = body.get("ttc")  # the body's ttc fields win over the suffix's; a bad one is parsed as a 400
        return {**body, "model": base, "ttc": {**ttc, **given} if isinstance(given, dict) else given or ttc}

    async def handle(
        self, gateway: Gateway, body: dict[str, Any], call: Call, request: ChatCompletionRequest
    ) -> dict[str, Any] | Stream:
        return await TtcRun(gateway, call, request, body).run()
