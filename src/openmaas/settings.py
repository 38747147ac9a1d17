"""One typed settings object, from a YAML file with environment overrides.

Order: built-in defaults < YAML file (``--config`` or ``OPENMAAS_CONFIG``) <
environment variables ``OPENMAAS_<SECTION>__<KEY>=value`` (value parsed as
YAML, e.g. ``OPENMAAS_SERVER__PORT=9000``) and ``OPENMAAS_DATA_DIR``. Secrets are never stored here:
deployments name the environment variable that holds their API key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerSettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    log_level: str = "info"


class StoreSettings(_Strict):
    """Where keys, plans and the ledger live, and where shared counters live.

    ``url``: ``sqlite:///path`` (default: ``<data_dir>/openmaas.db``) or ``postgresql://user:pw@host/db``.
    ``redis_url``: unset → counters in this process; set → rate limits and budgets hold across replicas.
    """

    url: str | None = None
    redis_url: str | None = None


class AuthSettings(_Strict):
    admin_key_env: str = "OPENMAAS_ADMIN_KEY"
    # None: open (no key needed) only while the server binds to loopback and no API key exists.
    required: bool | None = None
    refresh_seconds: float = Field(default=2.0, gt=0)


class MeteringSettings(_Strict):
    enabled: bool = True
    max_batch: int = Field(default=1024, ge=1)


class Capabilities(_Strict):
    chat: bool = True
    completions: bool = True
    embeddings: bool = False
    tools: bool = True
    json_schema: bool = True
    vision: bool = False
    logprobs: bool = True


class Pricing(_Strict):
    input_per_mtok: float = Field(default=0.0, ge=0)
    output_per_mtok: float = Field(default=0.0, ge=0)


class Timeouts(_Strict):
    connect: float = Field(default=5.0, gt=0)
    first_token: float = Field(default=60.0, gt=0)
    total: float = Field(default=600.0, gt=0)


class Deployment(_Strict):
    """One model deployment: a public name served by one backend."""

    name: str = Field(min_length=1)
    backend: Literal["llamacpp", "openai_compat", "anthropic", "fake"]
    locality: Literal["local", "cloud"] = "cloud"
    model: str | None = None  # the upstream's own model id; defaults to ``name``
    params: dict[str, Any] = Field(default_factory=dict)
    context_length: int = Field(default=8192, ge=16)
    capabilities: Capabilities = Field(default_factory=Capabilities)
    pricing: Pricing = Field(default_factory=Pricing)
    timeouts: Timeouts = Field(default_factory=Timeouts)

    @property
    def upstream_model(self) -> str:
        return self.model or self.name


def _default_deployments() -> list[Deployment]:
    return [
        Deployment(
            name="smollm2-135m",
            backend="llamacpp",
            locality="local",
            model="smollm2-135m",
            params={"model_path": "builtin:smollm2-135m", "parallel": 4},
            context_length=8192,
            capabilities=Capabilities(embeddings=False, vision=False),
        )
    ]


class Settings(_Strict):
    server: ServerSettings = Field(default_factory=ServerSettings)
    data_dir: Path = Field(
        default_factory=lambda: (
            Path(os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")) / "openmaas"
        )
    )
    store: StoreSettings = Field(default_factory=StoreSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    metering: MeteringSettings = Field(default_factory=MeteringSettings)
    deployments: list[Deployment] = Field(default_factory=_default_deployments)
    aliases: dict[str, str] = Field(default_factory=lambda: {"default": "smollm2-135m"})

    @model_validator(mode="after")
    def _names_resolve(self) -> Settings:
        names = [d.name for d in self.deployments]
        duplicates = {n for n in names if names.count(n) > 1}
        if duplicates:
            raise ValueError(f"duplicate deployment names: {sorted(duplicates)}")
        for alias, target in self.aliases.items():
            if alias in names:
                raise ValueError(f"alias '{alias}' shadows a deployment of the same name")
            if target not in names:
                raise ValueError(f"alias '{alias}' points to unknown deployment '{target}'")
        return self

    def database_url(self) -> str:
        return self.store.url or f"sqlite:///{Path(self.data_dir).expanduser() / 'openmaas.db'}"


def _apply_env(data: dict[str, Any], environ: dict[str, str]) -> dict[str, Any]:
    if environ.get("OPENMAAS_DATA_DIR"):
        data["data_dir"] = environ["OPENMAAS_DATA_DIR"]
    for key, raw in environ.items():
        if not key.startswith("OPENMAAS_") or "__" not in key:
            continue
        path = key[len("OPENMAAS_") :].lower().split("__")
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"{key} does not name a settings section")
        node[path[-1]] = yaml.safe_load(raw)
    return data


def load_settings(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if environ is None else environ)
    path = path or env.get("OPENMAAS_CONFIG")
    data: dict[str, Any] = {}
    if path:
        loaded = yaml.safe_load(Path(path).read_text())
        if loaded is not None and not isinstance(loaded, dict):
            raise ValueError(f"{path}: the top level must be a mapping")
        data = loaded or {}
    return Settings.model_validate(_apply_env(data, env))
