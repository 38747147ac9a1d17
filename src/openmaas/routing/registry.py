"""The model registry: public names and aliases → deployments and their backends.

It owns the backends; which deployment serves a request is decided by
``routing.policy`` and run by ``routing.router``.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openmaas.backends.base import Backend
from openmaas.backends.registry import BackendRegistry
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
        self.aliases = {name: [t.name for t in spec.targets] for name, spec in settings.aliases.items()}
        kinds = BackendRegistry()
        self.backends: dict[str, Backend] = backends or {
            d.name: kinds.create(d, data_dir=Path(settings.data_dir)) for d in settings.deployments
        }

    async def start(self) -> None:
        await asyncio.gather(*(b.start() for b in self.backends.values()))

    async def close(self) -> None:
        results = await asyncio.gather(*(b.close() for b in self.backends.values()), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                log.warning("closing a backend failed: %s", result)

    def resolve_pattern(self, body: dict[str, Any]) -> dict[str, Any]:
        """The body with a model name that only a ``model_patterns`` glob matches replaced by its target
        (e.g. ``claude-*`` → ``default``: an unchanged Claude Code is served by any model we have)."""
        model = body.get("model")
        if not isinstance(model, str) or model in self.deployments or model in self.aliases:
            return body
        for pattern, target in self.settings.model_patterns.items():
            if fnmatch.fnmatchcase(model, pattern):
                return {**body, "model": target}
        return body

    def names(self) -> list[str]:
        return sorted([*self.deployments, *self.aliases])

    def target(self, name: str, public_name: str | None = None) -> Target:
        return Target(public_name or name, self.deployments[name], self.backends[name])

    async def readiness(self) -> dict[str, bool]:
        names = list(self.backends)
        results = await asyncio.gather(*(self.backends[n].health() for n in names), return_exceptions=True)
        return {n: r is True for n, r in zip(names, results, strict=True)}


def data_dir(settings: Settings) -> Path:
    return Path(settings.data_dir).expanduser()
