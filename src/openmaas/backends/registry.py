"""The open backend registry: backend name → class, validated params, no ``if`` chain.

Built-in backends are listed here by import path (imported only when a deployment uses them); a package
adds its own through the ``openmaas.backends`` entry-point group (``name = "pkg.module:Class"``), the same
way. ``create`` checks a deployment's ``params`` against its backend's ``Params`` model, so an unknown or
misspelt param, or a wrong type, stops the start-up with an error naming the deployment.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from pathlib import Path
from types import MappingProxyType

from pydantic import ValidationError

from openmaas.backends.base import Backend
from openmaas.settings import Deployment

BUILTIN = MappingProxyType(
    {
        "openai_compat": "openmaas.backends.openai_compat:OpenAICompatBackend",
        "anthropic": "openmaas.backends.anthropic:AnthropicBackend",
        "llamacpp": "openmaas.backends.llamacpp:LlamaCppBackend",
        "encoder": "openmaas.backends.encoder:EncoderBackend",
        "fake": "openmaas.backends.fake:FakeBackend",
        "oracle": "openmaas.backends.oracle:OracleBackend",
    }
)
GROUP = "openmaas.backends"


def _load(path: str) -> type[Backend]:
    module, _, name = path.partition(":")
    cls = getattr(importlib.import_module(module), name)
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise TypeError(f"{path} is not an openmaas Backend")
    return cls


class BackendRegistry:
    def __init__(self, paths: dict[str, str] | None = None) -> None:
        self.paths = dict(BUILTIN)
        self.paths.update({ep.name: ep.value for ep in entry_points(group=GROUP)})
        self.paths.update(paths or {})
        self.classes: dict[str, type[Backend]] = {}

    def names(self) -> list[str]:
        return sorted(self.paths)

    def backend_class(self, name: str) -> type[Backend]:
        if name not in self.classes:
            self.classes[name] = _load(self.paths[name])
        return self.classes[name]

    def create(self, deployment: Deployment, data_dir: Path | None = None) -> Backend:
        if deployment.backend not in self.paths:
            known = ", ".join(self.names())
            raise ValueError(f"deployment '{deployment.name}': unknown backend '{deployment.backend}' (known: {known})")
        cls = self.backend_class(deployment.backend)
        try:
            cls.Params.model_validate(deployment.params)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'params'}: {e['msg'].lower()}" for e in exc.errors()
            )
            raise ValueError(
                f"deployment '{deployment.name}' ({deployment.backend}): bad params — {problems}"
            ) from None
        return cls.from_deployment(deployment, data_dir)
