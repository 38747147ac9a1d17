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
    label_cap: int = Field(default=100, ge=1, le=10_000)
