"""Who is calling: the key, its tenant and plan, folded into what admission needs."""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import cached_property
from typing import Any

from openmaas.errors import AuthenticationFailed, PermissionDenied
from openmaas.privacy.policy import PolicySpec
from openmaas.privacy.policy import parse as parse_policy


@dataclass(frozen=True)
class Limits:
    """The limits of one scope (a key, or a tenant with its plan)."""

    rpm: int | None = None
    tpm: int | None = None
    budget_nanos: int | None = None
    budget_period: str = "month"
    monthly_token_quota: int | None = None
    monthly_cost_quota_nanos: int | None = None


@dataclass(frozen=True)
class Principal:
    key_id: str | None
    key_prefix: str
    tenant_id: str | None
    tenant_name: str = ""
    models: frozenset[str] | None = None  # None: any model
    # MCP tool name patterns (``server__tool``, fnmatch) the key may use: every scope that sets a list must
    # allow the tool (key and tenant); None: every tool the gateway serves
    tools: tuple[tuple[str, ...], ...] = ()
    privacy: str = "allow"
    plan: str | None = None
    features: dict[str, Any] = field(default_factory=dict)
    key_limits: Limits = Limits()
    tenant_limits: Limits = Limits()
    expires_at: float | None = None
    enabled: bool = True
    tenant_enabled: bool = True

    @cached_property
    def privacy_policy(self) -> PolicySpec:
        """``privacy`` parsed (stored specs were validated when written; a bad one falls back to local_only)."""
        try:
            return parse_policy(self.privacy)
        except ValueError:
            return PolicySpec("local_only")

    @property
    def anonymous(self) -> bool:
        return self.key_id is None

    def check_usable(self, now: float) -> None:
        if not self.enabled:
            raise AuthenticationFailed(f"The API key {self.key_prefix} has been revoked.", code="key_revoked")
        if self.expires_at is not None and now >= self.expires_at:
            raise AuthenticationFailed(f"The API key {self.key_prefix} has expired.", code="key_expired")
        if not self.tenant_enabled:
            raise PermissionDenied(f"The tenant '{self.tenant_name}' is disabled.", code="tenant_disabled")

    def may_use_tool(self, name: str) -> bool:
        return all(any(fnmatchcase(name, pattern) for pattern in scope) for scope in self.tools)

    def check_model(self, requested: str, deployment: str) -> None:
        if self.models is not None and requested not in self.models and deployment not in self.models:
            raise PermissionDenied(
                f"The API key {self.key_prefix} may not use the model '{requested}'.",
                param="model",
                code="model_not_allowed",
            )


ANONYMOUS = Principal(key_id=None, key_prefix="anonymous", tenant_id=None)


def from_rows(key: dict[str, Any], tenant: dict[str, Any], plan: dict[str, Any] | None) -> Principal:
    models: frozenset[str] | None = None
    for allowed in (key.get("models"), (plan or {}).get("models")):
        if allowed is not None:
            models = frozenset(allowed) if models is None else models & frozenset(allowed)
    plan = plan or {}
    return Principal(
        key_id=key["id"],
        key_prefix=key["prefix"],
        tenant_id=tenant["id"],
        tenant_name=tenant["name"],
        models=models,
        tools=tuple(tuple(scope) for scope in (tenant.get("tools"), key.get("tools")) if scope is not None),
        privacy=key.get("privacy") or tenant.get("privacy") or "allow",
        plan=plan.get("id"),
        features=dict(plan.get("features") or {}),
        key_limits=Limits(
            rpm=key.get("rpm"),
            tpm=key.get("tpm"),
            budget_nanos=key.get("budget_nanos"),
            budget_period=key.get("budget_period") or "month",
        ),
        tenant_limits=Limits(
            rpm=tenant.get("rpm") or plan.get("rpm"),
            tpm=tenant.get("tpm") or plan.get("tpm"),
            budget_nanos=tenant.get("budget_nanos"),
            budget_period=tenant.get("budget_period") or "month",
            monthly_token_quota=plan.get("monthly_token_quota"),
            monthly_cost_quota_nanos=plan.get("monthly_cost_quota_nanos"),
        ),
        expires_at=key.get("expires_at"),
        enabled=bool(key.get("enabled", True)),
        tenant_enabled=bool(tenant.get("enabled", True)),
    )
