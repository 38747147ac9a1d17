"""Run a route decision: attempts, retries with backoff and jitter, fallbacks, breakers, masking.

``Router.route`` scans the request (privacy class) and asks the policy for an
ordered plan; ``Router.run`` walks the plan. On each deployment it makes up to
``retry.attempts`` tries while the failure is retryable — connect errors,
timeouts, upstream 429 and 5xx — waiting ``base·2^n`` (capped, with jitter)
between tries, then moves to the next candidate. A context-length refusal moves
on at once (to a larger-context candidate, if the plan has one). A request the
upstream rejected as malformed fails at once: retrying it elsewhere would not
help. Every try is recorded in the decision, so the audit trail lists every
deployment that received the data, including the ones that failed.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from openmaas.auth.principal import Principal
from openmaas.backends.base import Payload
from openmaas.core.chat import NATIVE_KEY, fit_ceiling
from openmaas.core.view import PromptView
from openmaas.errors import (
    ContextLengthExceeded,
    OpenMaaSError,
    PrivacyPolicyViolation,
    ServiceUnavailable,
    UpstreamError,
)
from openmaas.metering.pricing import estimate_prompt_tokens
from openmaas.privacy.classify import PrivacyClass, Restorer, Scanned, masked_copy, scan_request
from openmaas.privacy.policy import Applied
from openmaas.privacy.policy import apply as apply_policy
from openmaas.privacy.policy import parse as parse_policy
from openmaas.privacy.scanner import Scanner
from openmaas.privacy.sensitivity import Sensitivity
from openmaas.routing.decision import Attempt, RouteDecision
from openmaas.routing.health import Health, HealthMonitor
from openmaas.routing.policy import Policy, parse_hints
from openmaas.routing.registry import Registry, Target
from openmaas.settings import Settings

log = logging.getLogger("openmaas.routing")
T = TypeVar("T")


@dataclass
class Route:
    decision: RouteDecision
    scanned: Scanned | None
    body: Payload
    view: PromptView  # what privacy, policy and pricing read of ``body``


@dataclass
class Served:
    target: Target
    payload: Payload
    restorer: Restorer | None


def retryable(exc: OpenMaaSError) -> bool:
    return isinstance(exc, UpstreamError)


class Router:
    def __init__(self, settings: Settings, registry: Registry) -> None:
        self.settings = settings
        self.registry = registry
        breaker = settings.routing.breaker
        self.health = {name: Health(name, breaker) for name in registry.deployments}
        self.policy = Policy(registry.deployments, settings.aliases, self.health)
        privacy = settings.privacy
        self.scanner = Scanner(privacy.entities, privacy.threshold, privacy.secrets) if privacy.enabled else None
        self.sensitivity = Sensitivity.load() if privacy.enabled and privacy.topics else None
        self.server_policy = parse_policy(privacy.policy)
        self.monitor = HealthMonitor(self.health, self._probe, breaker.health_interval)
        self.rng = random.Random()

    async def start(self) -> None:
        if self.scanner is not None:
            await asyncio.to_thread(self.scanner.warm_up)
        if self.sensitivity is not None:
            self.sensitivity.judge("warm up: my doctor said my test came back positive")
        self.monitor.start()

    async def close(self) -> None:
        await self.monitor.close()

    async def _probe(self, name: str) -> bool:
        return await self.registry.backends[name].health()

    def route(
        self,
        model: str,
        endpoint: str,
        body: Payload,
        principal: Principal,
        output_limit: int | None,
        body_bytes: int | None = None,
    ) -> Route:
        """``body_bytes``: the size of the JSON ``body`` was parsed from, when nothing was added to it since."""
        view = PromptView(body, endpoint, body_bytes)
        if view.ceiling:  # a ceiling is fitted to each deployment (``payload_for``), never refused
            output_limit = None
        scanned = scan_request(self.scanner, view, self.sensitivity) if self.scanner is not None else None
        privacy = scanned.privacy if scanned is not None else PrivacyClass("unscanned")
        spec = principal.privacy_policy if principal.key_id is not None else self.server_policy
        settings = self.settings.privacy
        applied = apply_policy(spec, privacy, settings.categories, settings.topic_mask)
        if applied.policy == "refuse":
            raise PrivacyPolicyViolation(
                f"This request discloses {privacy.found()} information, which this key's privacy policy does not "
                f"allow to be processed ({applied.rule}).",
                code="privacy_refused",
            )
        hints = parse_hints(view.hints)
        decision = self.policy.decide(model, view, privacy, applied.policy, output_limit, hints, applied.rule)
        return Route(decision, scanned, body, view)

    def classify(self, texts: list[str], principal: Principal) -> tuple[PrivacyClass, Applied]:
        """The privacy class of some texts that are not a model request (tool arguments and tool results), and
        the policy the caller's spec gives it: the same scanner, classifier and policy as ``route``."""
        if self.scanner is None:
            privacy = PrivacyClass("unscanned")
        else:
            entities = sorted({f.entity for text in texts for f in self.scanner.scan(text)})
            categories = self.sensitivity.categories(texts) if self.sensitivity is not None else ()
            privacy = (
                PrivacyClass("sensitive", tuple(entities), categories) if entities or categories else PrivacyClass()
            )
        spec = principal.privacy_policy if principal.key_id is not None else self.server_policy
        settings = self.settings.privacy
        return privacy, apply_policy(spec, privacy, settings.categories, settings.topic_mask)

    def payload_for(self, route: Route, target: Target) -> tuple[Payload, Restorer | None]:
        d = route.decision
        restorer = None
        if d.policy == "mask" and d.privacy.sensitive and target.deployment.locality != "local" and route.scanned:
            payload, mapping = masked_copy(route.body, route.scanned)
            restorer = Restorer(mapping)
        else:
            payload = dict(route.body)
        payload.pop("route", None)
        native = payload.pop(NATIVE_KEY, None)
        # a dialect's own body goes only to a deployment that speaks it, and never when masking applies
        if native is not None and restorer is None and target.backend.native_dialect == native.dialect:
            payload[NATIVE_KEY] = native
        if route.view.ceiling:
            fit_ceiling(payload, target.deployment.context_length - estimate_prompt_tokens(route.view))
        payload["model"] = target.deployment.upstream_model
        return payload, restorer

    def _delay(self, attempt: int) -> float:
        retry = self.settings.routing.retry
        cap = min(retry.backoff_max, retry.backoff_base * 2**attempt)
        return float(cap / 2 + self.rng.uniform(0, cap / 2))  # "equal jitter": never zero, never in lockstep

    async def run(self, route: Route, call: Callable[[Target, Payload], Awaitable[T]]) -> tuple[T, Served]:
        decision = route.decision
        retry = self.settings.routing.retry
        budget = self.settings.routing.max_attempts
        last: OpenMaaSError | None = None
        upstream_failed = False
        for candidate in decision.plan:
            if budget <= 0:
                break
            if candidate.role == "degrade" and not upstream_failed and decision.attempts:
                continue
            target = self.registry.target(candidate.name, decision.requested)
            health = self.health[candidate.name]
            for attempt in range(retry.attempts):
                if budget <= 0:
                    break
                if not health.begin():
                    decision.attempts.append(Attempt(candidate.name, candidate.locality, "circuit_open", 0.0))
                    upstream_failed = True
                    break
                budget -= 1
                payload, restorer = self.payload_for(route, target)
                started = time.perf_counter()
                record = Attempt(
                    candidate.name, candidate.locality, "ok", 0.0, restorer is not None, started=time.time()
                )
                decision.attempts.append(record)
                placed = target
                try:
                    placement = target.backend.place(payload)
                    if placement.backend is not target.backend:
                        placed = replace(target, backend=placement.backend)
                    record.placement = placement.label
                    result = await call(placed, payload)
                except OpenMaaSError as exc:
                    record.ms = round((time.perf_counter() - started) * 1000, 1)
                    record.outcome = exc.code or type(exc).__name__
                    last = exc
                    if isinstance(exc, ContextLengthExceeded):
                        health.release()
                        break  # a larger context may be next in the plan
                    if not retryable(exc):
                        health.release()
                        raise
                    health.failure()
                    upstream_failed = True
                    log.info("attempt on '%s' failed (%s)", candidate.name, record.outcome)
                    if attempt + 1 < retry.attempts and health.available() and budget > 0:
                        await asyncio.sleep(self._delay(attempt))
                        continue
                    break
                except BaseException:
                    record.ms = round((time.perf_counter() - started) * 1000, 1)
                    record.outcome = "cancelled"
                    health.release()
                    raise
                record.ms = round((time.perf_counter() - started) * 1000, 1)
                health.success(record.ms)
                decision.chosen, decision.chosen_locality = candidate.name, candidate.locality
                # degraded: a local stand-in served because the cloud failed or was unavailable (not, say,
                # because privacy dropped the cloud targets)
                cloud_down = upstream_failed or any(c.reason == "circuit_open" for c in decision.candidates)
                decision.degraded = candidate.role == "degrade" and cloud_down
                return result, Served(placed, payload, restorer)
        if last is not None:
            raise last
        raise ServiceUnavailable(
            f"Every deployment for '{decision.requested}' is unavailable (circuit open); try again shortly.",
            code="no_healthy_deployment",
        )

    def status(self) -> dict[str, Any]:
        return {name: h.snapshot() for name, h in self.health.items()}
