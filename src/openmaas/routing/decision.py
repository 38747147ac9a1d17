"""The route decision: what was asked, what was considered, why, and where the data went.

One object per request, built by the policy and completed by the router as
attempts succeed or fail. It is returned compactly in ``x-openmaas-route``,
logged, and stored whole in the ledger (``usage_events.route``) for
``openmaas audit``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from openmaas.privacy.classify import PrivacyClass


@dataclass
class Candidate:
    name: str
    locality: str
    role: str  # "target" | "fallback" | "degrade"
    kept: bool = True
    reason: str = "ok"  # why dropped (privacy, context, tools, circuit_open, …) or how it ranked


@dataclass
class Attempt:
    deployment: str
    locality: str
    outcome: str  # "ok", or the error code that ended it
    ms: float
    masked: bool = False
    placement: str | None = None  # where within the deployment it ran, e.g. "engine 1 (prefix 2,048 chars)"
    started: float | None = None  # epoch seconds (the trace's attempt spans)


@dataclass
class RouteDecision:
    requested: str
    endpoint: str
    privacy: PrivacyClass
    policy: str
    difficulty: float
    rule: str | None = None  # what set the policy, e.g. "HEALTH:local_only" (privacy.policy.apply)
    prefer: str | None = None
    max_cost_usd: float | None = None
    candidates: list[Candidate] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    chosen: str | None = None
    chosen_locality: str | None = None
    degraded: bool = False
    # test-time compute: the strategy and every model call it made (role, deployment, tokens, cost; no text)
    ttc: dict[str, Any] | None = None

    @property
    def plan(self) -> list[Candidate]:
        return [c for c in self.candidates if c.kept]

    @property
    def masked(self) -> bool:
        return any(a.masked for a in self.attempts)

    def data_went_to(self) -> list[str]:
        """Every deployment that received the request's data (attempts that failed included)."""
        return list(dict.fromkeys(a.deployment for a in self.attempts))

    def header(self) -> str:
        """Compact, for ``x-openmaas-route``: chosen, privacy, policy, dropped candidates, attempts."""
        parts = [f"chosen={self.chosen or '-'}", f"privacy={self.privacy.label}"]
        if self.privacy.entities or self.privacy.categories:
            parts[-1] += "(" + self.privacy.found() + ")"
        parts.append(f"policy={self.policy}")
        if self.rule:
            parts.append(f"rule={self.rule}")
        if self.masked:
            parts.append("masked=1")
        dropped = [f"{c.name}:{c.reason}" for c in self.candidates if not c.kept]
        if dropped:
            parts.append("dropped=" + ",".join(dropped))
        failed = [f"{a.deployment}:{a.outcome}" for a in self.attempts if a.outcome != "ok"]
        if failed:
            parts.append("failed=" + ",".join(failed))
        if self.prefer:
            parts.append(f"prefer={self.prefer}")
        if self.degraded:
            parts.append("degraded=1")
        return "; ".join(parts)[:1000]

    def reason(self, header: str | None = None) -> str:
        """One line for ``usage_events.route_reason`` (``header``: ``header()``, when already made)."""
        return (header if header is not None else self.header())[:500]

    def to_dict(self, cached_tokens: int | None = None) -> dict[str, Any]:
        """The whole decision, for the ledger. Candidates and attempts stay dataclasses: orjson
        serialises those natively, far cheaper than ``dataclasses.asdict`` (which deep-copies)."""
        return {
            "requested": self.requested,
            "endpoint": self.endpoint,
            "privacy": {
                "class": self.privacy.label,
                "entities": list(self.privacy.entities),
                "categories": list(self.privacy.categories),
            },
            "policy": self.policy,
            "rule": self.rule,
            "difficulty": self.difficulty,
            "prefer": self.prefer,
            "max_cost_usd": self.max_cost_usd,
            "candidates": self.candidates,
            "attempts": self.attempts,
            "chosen": self.chosen,
            "chosen_locality": self.chosen_locality,
            "degraded": self.degraded,
            "masked": self.masked,
            "data_went_to": self.data_went_to(),
            "cached_tokens": cached_tokens,
            "ttc": self.ttc,
        }

    def to_json(self, cached_tokens: int | None = None) -> str:
        """``cached_tokens``: of the prompt, what the deployment served from its prompt cache (known once
        the request settled)."""
        return orjson.dumps(self.to_dict(cached_tokens)).decode()
