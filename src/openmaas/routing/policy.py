"""The edge-cloud routing policy: one function from a request to an ordered plan.

Precedence, each step only narrowing what the previous one kept:

1. **privacy** — under ``local_only`` a sensitive request drops every ``cloud``
   candidate (none left → 403, never a leak);
2. **capability** — the endpoint, tools, JSON schema, logprobs, and the context
   window (prompt estimate + max tokens); the estimated difficulty only
   *orders* (candidates whose ``quality`` covers it first), it never drops;
3. **health** — candidates whose circuit is open are dropped;
4. **preference** — ``max_cost_usd`` drops candidates whose worst-case cost is
   higher; ``prefer`` orders what is left: ``cost`` (price), ``latency`` (EWMA),
   ``quality`` (rating); without one, load balancing: least in flight, then
   EWMA latency, scaled by weight.

Candidates come from the requested name: an alias's targets (balanced), then
its fallbacks (in order, aliases expanded), then its ``degrade`` deployments,
which serve only after every target and fallback failed or was unavailable.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from openmaas.core.view import PromptView
from openmaas.errors import (
    ContextLengthExceeded,
    InvalidRequest,
    ModelNotFound,
    PrivacyPolicyViolation,
    ServiceUnavailable,
    UnsupportedCapability,
)
from openmaas.metering.pricing import estimate_prompt_tokens
from openmaas.privacy.classify import PrivacyClass
from openmaas.routing.decision import Candidate, RouteDecision
from openmaas.routing.health import Health
from openmaas.settings import Alias, Deployment

_HARD_WORDS = (
    "prove",
    "proof",
    "derive",
    "step by step",
    "step-by-step",
    "algorithm",
    "optimize",
    "optimise",
    "complexity",
    "theorem",
    "analyze",
    "analyse",
    "refactor",
    "debug",
    "integral",
    "equation",
    "trade-off",
    "tradeoff",
    "architecture",
    "证明",
    "推导",
    "算法",
    "分析",
)
_CODE_MARKS = ("```", "def ", "class ", "#include", "function(", "function (", "SELECT ", "=>")
_MATH_MARKS = ("=", "+", "^", "∫", "√", "≤", "≥")
DEFAULT_LATENCY_MS = 100.0
_SIGNAL_HEAD, _SIGNAL_TAIL = 1_000, 3_000  # characters of a long prompt searched for difficulty signals


def estimate_difficulty(view: PromptView) -> float:
    """0 (trivial) … 1 (hard), from cheap signals: length, code, math, reasoning words, tools, schemas."""
    text = "\n".join(view.texts)
    score = min(0.35, math.log10(1 + len(text)) / 12)  # 0.25 at ~1 KB, capped at 0.35
    if len(text) > _SIGNAL_HEAD + _SIGNAL_TAIL:
        # The ask sits at the start (system prompt) or the end (the question) of a long prompt; the
        # middle is pasted material, and scanning it cost more than the rest of the decision.
        text = text[:_SIGNAL_HEAD] + "\n" + text[-_SIGNAL_TAIL:]
    # Substring tests only, each list walked by map in C (a generator ran ~14 bytecodes per word, ~430 a
    # request — more than the rest of the decision); a regex pass would cost more still.
    score += 0.2 * min(1.0, sum(map(text.lower().__contains__, _HARD_WORDS)) / 2)
    if any(map(text.__contains__, _CODE_MARKS)):
        score += 0.15
    if sum(map(text.count, _MATH_MARKS)) >= 3:
        score += 0.1
    if view.tools or view.output_format == "json_schema":
        score += 0.1
    return round(min(1.0, score), 3)


PREFERENCES = ("cost", "latency", "quality")


def parse_hints(value: Any) -> dict[str, Any]:
    """The request's ``route`` object: ``prefer`` and ``max_cost_usd``; anything else is a 400."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest('\'route\' must be an object like {"prefer": "cost"}', param="route")
    unknown = sorted(set(value) - {"prefer", "max_cost_usd"})
    if unknown:
        raise InvalidRequest(f"unknown route hints {unknown}; known: prefer, max_cost_usd", param="route")
    prefer = value.get("prefer")
    if prefer is not None and prefer not in PREFERENCES:
        raise InvalidRequest(f"route.prefer must be one of {', '.join(PREFERENCES)}", param="route.prefer")
    cost = value.get("max_cost_usd")
    if cost is not None and (isinstance(cost, bool) or not isinstance(cost, int | float) or cost < 0):
        raise InvalidRequest("route.max_cost_usd must be a non-negative number", param="route.max_cost_usd")
    return {"prefer": prefer, "max_cost_usd": None if cost is None else float(cost)}


def _price(d: Deployment) -> float:
    return d.pricing.input_per_mtok + d.pricing.output_per_mtok


class Policy:
    def __init__(self, deployments: dict[str, Deployment], aliases: dict[str, Alias], health: dict[str, Health]):
        self.deployments = deployments
        self.aliases = aliases
        self.health = health
        self._rr = itertools.count()

    def expand(self, model: str) -> list[tuple[str, str, float]]:
        """(deployment, role, weight) for a requested name, in trial order, without repeats."""
        out: list[tuple[str, str, float]] = []
        seen: set[str] = set()

        def add(name: str, role: str, weight: float = 1.0) -> None:
            if name not in seen:
                seen.add(name)
                out.append((name, role, weight))

        def walk(name: str, role: str, depth: int) -> None:
            if depth > 8:
                return
            alias = self.aliases.get(name)
            if alias is None:
                add(name, role)
                for fallback in self.deployments[name].fallbacks:
                    walk(fallback, "fallback", depth + 1)
                return
            for target in alias.targets:
                add(target.name, role, target.weight)
            for target in alias.targets:
                for fallback in self.deployments[target.name].fallbacks:
                    walk(fallback, "fallback", depth + 1)
            for fallback in alias.fallbacks:
                walk(fallback, "fallback", depth + 1)
            if depth == 0:
                for name in alias.degrade:
                    add(name, "degrade")

        if model not in self.aliases and model not in self.deployments:
            known = ", ".join(sorted([*self.deployments, *self.aliases]))
            raise ModelNotFound(f"The model '{model}' does not exist. Known models: {known}", param="model")
        walk(model, "target", 0)
        return out

    def decide(
        self,
        model: str,
        view: PromptView,
        privacy: PrivacyClass,
        policy: str,
        output_limit: int | None,
        hints: dict[str, Any] | None = None,
        rule: str | None = None,
    ) -> RouteDecision:
        hints = hints or {}
        decision = RouteDecision(
            requested=model,
            endpoint=view.endpoint,
            privacy=privacy,
            policy=policy,
            rule=rule,
            difficulty=estimate_difficulty(view),
            prefer=hints.get("prefer"),
            max_cost_usd=hints.get("max_cost_usd"),
        )
        # the window is checked against a bound from the body's size first; the prompt is walked only when that
        # bound does not fit (or a cost limit needs the estimate itself)
        bound = estimate_prompt_tokens(view, view.body_bytes)
        weights: dict[str, float] = {}
        errors: list[Exception] = []
        for name, role, weight in self.expand(model):
            d = self.deployments[name]
            weights[name] = weight
            candidate = Candidate(name, d.locality, role)
            decision.candidates.append(candidate)
            reason = self._drop_reason(d, decision, view, bound, output_limit, errors)
            if reason:
                candidate.kept, candidate.reason = False, reason
        if not decision.plan:
            raise self._nothing_left(decision, model, errors)
        self._order(decision, weights)
        return decision

    def _drop_reason(
        self,
        d: Deployment,
        decision: RouteDecision,
        view: PromptView,
        bound: int,
        output_limit: int | None,
        errors: list[Exception],
    ) -> str | None:
        """Why ``d`` cannot serve, or None. ``bound``: an upper bound on ``estimate_prompt_tokens(view)``."""
        endpoint = decision.endpoint
        if decision.privacy.sensitive and decision.policy == "local_only" and d.locality != "local":
            return "privacy"
        caps = d.capabilities
        fmt = view.output_format
        checks = [
            (not getattr(caps, endpoint), "endpoint", f"does not serve {endpoint}", "model"),
            (view.tools and not caps.tools, "tools", "does not support tools", "tools"),
            (
                fmt in ("json_schema", "json_object") and not caps.json_schema,
                "json_schema",
                f"does not support response_format {fmt}",
                "response_format",
            ),
            (view.logprobs and not caps.logprobs, "logprobs", "does not return logprobs", "logprobs"),
        ]
        for failed, reason, message, param in checks:
            if failed:
                errors.append(UnsupportedCapability(f"model '{d.name}' {message}", param=param))
                return reason
        if output_limit is not None and output_limit >= d.context_length:
            errors.append(
                ContextLengthExceeded(
                    f"max_tokens is {output_limit}, but the model '{d.name}' has a context of "
                    f"{d.context_length} tokens",
                    param="max_tokens",
                )
            )
            return "context"
        # Embeddings: the window applies to each input, not to a batch's sum, and a byte estimate of one input
        # is no measure of its tokens; local encoders truncate to their window and upstreams apply their own.
        room = d.context_length - (output_limit or 0)
        if endpoint != "embeddings" and bound > room and (prompt := estimate_prompt_tokens(view)) > room:
            errors.append(
                ContextLengthExceeded(
                    f"the prompt (about {prompt} tokens) does not fit the context of '{d.name}' "
                    f"({d.context_length} tokens)",
                    param="messages",
                )
            )
            return "context"
        health = self.health.get(d.name)
        if health is not None and not health.available():
            return "circuit_open"
        limit = decision.max_cost_usd
        if limit is not None:
            prompt = estimate_prompt_tokens(view)
            worst = (prompt * d.pricing.input_per_mtok + (output_limit or 0) * d.pricing.output_per_mtok) / 1e6
            if worst > limit:
                return "over_max_cost"
        return None

    def _nothing_left(self, decision: RouteDecision, model: str, errors: list[Exception]) -> Exception:
        reasons = {c.reason for c in decision.candidates}
        if "privacy" in reasons and not any(c.locality == "local" for c in decision.candidates):
            return PrivacyPolicyViolation(
                f"This request contains sensitive data ({decision.privacy.found()}) and the key's privacy policy "
                f"keeps it local ({decision.rule or 'local_only'}), but '{model}' has no local deployment. Use a "
                "local model, or remove the data."
            )
        if "circuit_open" in reasons:
            return ServiceUnavailable(
                f"Every deployment for '{model}' is unavailable (circuit open); try again shortly.",
                code="no_healthy_deployment",
            )
        if "over_max_cost" in reasons and not errors:
            return UnsupportedCapability(
                f"No deployment for '{model}' fits max_cost_usd={decision.max_cost_usd}", param="route"
            )
        if errors:
            return errors[0]
        return PrivacyPolicyViolation(
            f"This request contains sensitive data ({decision.privacy.found()}); under the local_only policy "
            f"({decision.rule or 'local_only'}) only local deployments may serve it, and none of those for "
            f"'{model}' can."
        )

    def _order(self, decision: RouteDecision, weights: dict[str, float]) -> None:
        prefer, difficulty = decision.prefer, decision.difficulty
        turn = next(self._rr)

        def load(c: Candidate) -> float:
            h = self.health.get(c.name)
            if h is None:
                return 1.0
            return (h.in_flight + 1) * (h.latency_ms or DEFAULT_LATENCY_MS) / weights.get(c.name, 1.0)

        def key(item: tuple[int, Candidate]) -> tuple[Any, ...]:
            i, c = item
            d = self.deployments[c.name]
            h = self.health.get(c.name)
            capable = d.quality >= difficulty
            tie = (i + turn) % max(1, len(targets))
            if prefer == "cost":
                return (_price(d), not capable, tie)
            if prefer == "latency":
                return ((h.latency_ms if h and h.latency_ms else DEFAULT_LATENCY_MS), tie)
            if prefer == "quality":
                return (-d.quality, _price(d), tie)
            return (not capable, round(load(c), 3), tie)

        targets = [c for c in decision.candidates if c.kept and c.role == "target"]
        ranked = [c for _, c in sorted(enumerate(targets), key=key)]
        others = [c for c in decision.candidates if not (c.kept and c.role == "target")]
        decision.candidates = ranked + others
        for rank, c in enumerate(ranked, 1):
            c.reason = f"rank {rank}"
