"""The ``metrics:`` slice of the settings."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class MetricsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    path: str = "/metrics"
    # who may scrape ``path`` on the API port: the admin key (default), or anyone (a private network)
    access: Literal["admin", "public"] = "admin"
    # also serve the exposition on a separate address without auth, e.g. "127.0.0.1:9464" (a sidecar scrape)
    listen: str | None = None
    # tenant labels on the cost and request counters: opt-in, and at most ``label_cap`` distinct tenants per
    # process (the rest are counted under "other"); never key ids or keys
    tenant_labels: bool = False
    key_labels: bool = False  # the key's listed prefix (never the key), under the same cap
    label_cap: int = Field(default=100, ge=1, le=10_000)


class TracingSettings(BaseModel):
    """OpenTelemetry traces over OTLP/HTTP (the ``otel`` extra). Message content is never recorded."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    endpoint: str = "http://127.0.0.1:4318/v1/traces"
    headers: dict[str, str] = Field(default_factory=dict)
    sample_ratio: float = Field(default=1.0, ge=0, le=1)
    service_name: str = "openmaas"
    flush_ms: int = Field(default=1000, ge=10)
