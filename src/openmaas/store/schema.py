"""The tables, as SQLAlchemy Core metadata (the migrations create them; this describes them).

Money is stored as integer nano-dollars (1e-9 USD) so sums never drift; times are
UTC epoch seconds; ``day`` is the UTC date of an event, for portable grouping.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

plans = Table(
    "plans",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("monthly_token_quota", BigInteger),
    Column("monthly_cost_quota_nanos", BigInteger),
    Column("models", JSON),  # null: every model
    Column("features", JSON, nullable=False, default=dict),
    Column("rpm", Integer),
    Column("tpm", Integer),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False, index=True),
)

tenants = Table(
    "tenants",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("plan_id", String(64), ForeignKey("plans.id")),
    Column("budget_nanos", BigInteger),
    Column("budget_period", String(16), nullable=False, default="month"),
    Column("rpm", Integer),
    Column("tpm", Integer),
    Column("privacy", String(200), nullable=False, default="allow"),  # a policy spec (privacy.policy)
    Column("tools", JSON),  # MCP tool patterns its keys may use (server__tool, fnmatch); null: every tool
    Column("enabled", Boolean, nullable=False, default=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False, index=True),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id"), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("prefix", String(32), nullable=False),  # shown in lists and logs; not enough to authenticate
    Column("hash", String(64), nullable=False, unique=True),  # sha256 of the whole key
    Column("models", JSON),  # null: every model the tenant's plan allows
    Column("privacy", String(200)),  # null: the tenant's policy
    Column("tools", JSON),  # MCP tool patterns (server__tool, fnmatch); null: what the tenant allows
    Column("rpm", Integer),
    Column("tpm", Integer),
    Column("budget_nanos", BigInteger),
    Column("budget_period", String(16), nullable=False, default="month"),
    Column("expires_at", Float),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False, index=True),
)

usage_events = Table(
    "usage_events",
    metadata,
    Column("id", String(64), primary_key=True),  # server-generated per request: the idempotency key
    Column("request_id", String(128), nullable=False, index=True),  # x-request-id as the client saw it
    Column("tenant_id", String(64)),
    Column("key_id", String(64)),
    Column("endpoint", String(32), nullable=False),
    Column("model", String(200), nullable=False),  # as requested
    Column("deployment", String(200)),  # as served
    Column("route_reason", String(500), nullable=False, default=""),
    Column("prompt_tokens", Integer, nullable=False, default=0),
    Column("completion_tokens", Integer, nullable=False, default=0),
    Column("cost_nanos", BigInteger, nullable=False, default=0),
    Column("usage_source", String(16), nullable=False, default="upstream"),
    Column("latency_ms", Float, nullable=False, default=0),
    Column("ttft_ms", Float),
    Column("status", Integer, nullable=False),
    Column("error_code", String(64)),
    Column("interrupted", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
    Column("day", String(10), nullable=False),  # UTC date of created_at (reports filter on created_at)
    Column("degraded", Boolean, nullable=False, default=False),  # served by a local stand-in for the cloud
    Column("route", Text),  # the route decision as JSON: candidates, reasons, attempts, privacy class
    # of prompt_tokens, those the upstream served from its prompt cache (null: rows from before 0008)
    Column("cached_tokens", Integer),
    Index("ix_usage_events_key_created", "key_id", "created_at"),
    Index("ix_usage_events_tenant_created", "tenant_id", "created_at"),
    Index("ix_usage_events_created", "created_at"),  # the console's newest-first request log (0010)
)

# Knowledge bases (RAG). A knowledge base belongs to a tenant (null: the open, keyless mode);
# ``revision`` increases on every document change so each replica knows when to rebuild its index.
knowledge_bases = Table(
    "knowledge_bases",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant_id", String(64), index=True),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("embedding_model", String(200), nullable=False),
    Column("chunk_tokens", Integer, nullable=False),
    Column("chunk_overlap", Integer, nullable=False),
    Column("revision", BigInteger, nullable=False, default=0),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

kb_documents = Table(
    "kb_documents",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("kb_id", String(64), ForeignKey("knowledge_bases.id", ondelete="CASCADE"), nullable=False),
    Column("filename", String(500), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("title", String(300), nullable=False, default=""),
    Column("sha256", String(64), nullable=False),  # of the bytes: re-ingesting an unchanged file is a no-op
    Column("bytes", BigInteger, nullable=False),
    Column("chunks", Integer, nullable=False),
    Column("tokens", BigInteger, nullable=False),  # embedding tokens spent
    Column("created_at", Float, nullable=False),
    Index("ux_kb_documents_kb_sha", "kb_id", "sha256", unique=True),
)

kb_chunks = Table(
    "kb_chunks",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("kb_id", String(64), ForeignKey("knowledge_bases.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("document_id", String(64), ForeignKey("kb_documents.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("position", Integer, nullable=False),
    Column("heading", Text, nullable=False, default=""),
    Column("text", Text, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("tokens", Integer, nullable=False),
    Column("embedding", LargeBinary, nullable=False),  # float32, little-endian, unit length
)

responses = Table(
    "responses",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant_id", String(64)),  # null: the anonymous caller of an open (loopback) server
    Column("key_id", String(64)),
    Column("created_at", Float, nullable=False),
    Column("status", String(16), nullable=False),  # queued | in_progress | completed | failed | cancelled | incomplete
    Column("model", String(200), nullable=False),
    Column("previous_response_id", String(64)),
    Column("privacy", String(16)),
    Column("content_stored", Boolean, nullable=False),  # false: a sensitive request under store_sensitive: none
    Column("background", Boolean, nullable=False),
    Column("response", JSON, nullable=False),  # the response object as the API returns it
    Column("input_items", JSON),  # this turn's input items, as given (with ids)
    Column("conversation", JSON),  # the whole conversation after this response, as input items
    Index("ix_responses_tenant_created", "tenant_id", "created_at"),
    Index("ix_responses_created", "created_at"),
)

# Console sign-ins (server side: the cookie holds a random token, this row its hash). ``key_hash`` is the
# SHA-256 of the key signed in with (the admin key's too): a revoked key or a changed admin key ends the session.
console_sessions = Table(
    "console_sessions",
    metadata,
    Column("id", String(64), primary_key=True),  # sha256 of the cookie's token
    Column("scope", String(16), nullable=False),  # admin | tenant | open
    Column("key_hash", String(64)),
    Column("tenant_id", String(64)),
    Column("csrf", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False, index=True),
)
