"""The model registry: public names and aliases → deployments and their backends.

This is the seam the routing policy (aliases over groups, fallbacks, privacy)
grows from; for now a name resolves to exactly one deployment, and the checks
that belong to every placement (known model, capability, context) live here.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openmaas.backends.base import Backend, create_backend
from openmaas.errors import ModelNotFound, UnsupportedCapability
from openmaas.settings import Deployment, Settings

log = logging.getLogger("openmaas.routing")


@dataclass(frozen=True)
class Target:
    public_name: str
    deployment: Deployment
    backend: Backend


class Registry:
    def __init__(self, settings: Settings, backends: dict[str, Backend] | None = None) -> None:
        self.settings = settings
        self.deployments = {d.name: d for d in settings.deployments}
        self.aliases = dict(settings.aliases)
        self.backends: dict[str, Backend] = backends or {
            d.name: create_backend(d, data_dir=settings.data_dir) for d in settings.deployments
        }

    async def start(self) -> None:
        await asyncio.gather(*(b.start() for b in self.backends.values()))

    async def close(self) -> None:
        results = await asyncio.gather(*(b.close() for b in self.backends.values()), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                log.warning("closing a backend failed: %s", result)

    def names(self) -> list[str]:
        return sorted([*self.deployments, *self.aliases])

    def resolve(self, model: str, capability: str = "chat") -> Target:
        name = self.aliases.get(model, model)
        deployment = self.deployments.get(name)
        if deployment is None:
            raise ModelNotFound(
                f"The model '{model}' does not exist. Known models: {', '.join(self.names())}",
                param="model",
            )
        if not getattr(deployment.capabilities, capability):
            raise UnsupportedCapability(f"model '{model}' does not serve {capability.replace('_', ' ')}", param="model")
        return Target(model, deployment, self.backends[name])

    def check_request(self, target: Target, payload: dict[str, Any]) -> None:
        caps = target.deployment.capabilities
        if payload.get("tools") and not caps.tools:
            raise UnsupportedCapability(f"model '{target.public_name}' does not support tools", param="tools")
        fmt = (payload.get("response_format") or {}).get("type")
        if fmt in ("json_schema", "json_object") and not caps.json_schema:
            raise UnsupportedCapability(
                f"model '{target.public_name}' does not support response_format {fmt}", param="response_format"
            )
        if payload.get("logprobs") and not caps.logprobs:
            raise UnsupportedCapability(f"model '{target.public_name}' does not return logprobs", param="logprobs")

    async def readiness(self) -> dict[str, bool]:
        names = list(self.backends)
        results = await asyncio.gather(*(self.backends[n].health() for n in names), return_exceptions=True)
        return {n: r is True for n, r in zip(names, results, strict=True)}


def data_dir(settings: Settings) -> Path:
    return Path(settings.data_dir).expanduser()
