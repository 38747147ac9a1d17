"""Admin API wire types (tenants, keys, plans), shared by ``/admin/`` and the CLI.

Money on the wire is USD (float); the store keeps integer nano-dollars.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from openmaas.privacy.policy import valid as valid_policy

Period = Literal["day", "month", "total"]
# "allow" | "mask" | "local_only", optionally with per-category rules: "mask;HEALTH=local_only,FINANCE=allow"
Privacy = Annotated[
    str,
    Field(max_length=200, examples=["local_only", "mask;HEALTH=local_only,FINANCE=allow"]),
    AfterValidator(valid_policy),
]

# MCP tools a key or tenant may use: ``server__tool`` names or fnmatch patterns ("time__*", "*"); [] allows none
Tools = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_*?\[\]!.-]+$")]],
    Field(max_length=200, examples=[["time__*", "builtin__python"]]),
]

# The store's columns bound what may be asked: money in int64 nano-dollars, rates in int32.
MAX_USD = 1_000_000_000.0
MAX_TOKENS = 10**15
MAX_RATE = 2**31 - 1


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PlanFields(_Closed):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    monthly_token_quota: int | None = Field(default=None, ge=0, le=MAX_TOKENS)
    monthly_cost_quota_usd: float | None = Field(default=None, ge=0, le=MAX_USD)
    models: list[str] | None = None
    features: dict[str, Any] | None = None
    rpm: int | None = Field(default=None, ge=1, le=MAX_RATE)
    tpm: int | None = Field(default=None, ge=1, le=MAX_RATE)


class PlanCreate(PlanFields):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")


class TenantFields(_Closed):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    plan: str | None = Field(default=None, description="plan id")
    budget_usd: float | None = Field(default=None, ge=0, le=MAX_USD)
    budget_period: Period | None = None
    rpm: int | None = Field(default=None, ge=1, le=MAX_RATE)
    tpm: int | None = Field(default=None, ge=1, le=MAX_RATE)
    privacy: Privacy | None = None
    tools: Tools | None = None
    enabled: bool | None = None


class TenantCreate(TenantFields):
    name: str = Field(min_length=1, max_length=200)


class KeyFields(_Closed):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    models: list[str] | None = None
    privacy: Privacy | None = None
    tools: Tools | None = None
    rpm: int | None = Field(default=None, ge=1, le=MAX_RATE)
    tpm: int | None = Field(default=None, ge=1, le=MAX_RATE)
    budget_usd: float | None = Field(default=None, ge=0, le=MAX_USD)
    budget_period: Period | None = None
    expires_at: float | None = Field(default=None, description="UTC epoch seconds")
    enabled: bool | None = None


class KeyCreate(KeyFields):
    tenant: str = Field(min_length=1, description="tenant id or name")
    name: str = Field(default="default", min_length=1, max_length=200)
