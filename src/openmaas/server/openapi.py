"""``GET /openapi.json``: one OpenAPI 3.1 document for every public route, built from the same pydantic
types the routes validate with (request bodies) and the envelopes they answer with.

Each operation names its dialect (the error envelope it answers in), its auth (``key``: an API key or
the open loopback mode; ``admin``: the admin key; ``public``) and whether it can stream. CI fuzzes the
whole document with schemathesis (tests/server/test_openapi_fuzz.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from openmaas.dialects.anthropic.wire import CountTokensRequest, MessagesRequest
from openmaas.dialects.responses.wire import ResponsesRequest
from openmaas.protocol.admin import KeyCreate, KeyFields, PlanCreate, PlanFields, TenantCreate, TenantFields
from openmaas.protocol.chat import ChatCompletionRequest
from openmaas.protocol.completions import CompletionRequest, EmbeddingRequest
from openmaas.protocol.knowledge import KnowledgeBaseCreate, SearchRequest

Schema = dict[str, Any]
OBJECT: Schema = {"type": "object"}
LIST: Schema = {
    "type": "object",
    "required": ["object", "data"],
    "properties": {"object": {"const": "list"}, "data": {"type": "array"}},
}
OPENAI_ERROR: Schema = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}
ANTHROPIC_ERROR: Schema = {
    "type": "object",
    "required": ["type", "error"],
    "properties": {
        "type": {"const": "error"},
        "error": {
            "type": "object",
            "required": ["type", "message"],
            "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
        },
        "request_id": {"type": "string"},
    },
}
CHAT_COMPLETION: Schema = {
    "type": "object",
    "required": ["object", "choices", "model"],
    "properties": {"object": {"const": "chat.completion"}, "choices": {"type": "array"}, "model": {"type": "string"}},
}
MESSAGE: Schema = {
    "type": "object",
    "required": ["id", "type", "role", "content", "stop_reason", "usage"],
    "properties": {
        "type": {"const": "message"},
        "role": {"const": "assistant"},
        "content": {"type": "array"},
        "usage": {"type": "object", "required": ["input_tokens", "output_tokens"]},
    },
}
RESPONSE: Schema = {
    "type": "object",
    "required": ["id", "object", "status", "output", "model"],
    "properties": {
        "object": {"const": "response"},
        "status": {"enum": ["queued", "in_progress", "completed", "incomplete", "failed", "cancelled"]},
        "output": {"type": "array"},
    },
}
PATH_ID: Schema = {"type": "string", "minLength": 1}
JSONRPC: Schema = {  # /mcp speaks JSON-RPC 2.0 (the MCP SDK's streamable HTTP transport), errors included
    "type": "object",
    "required": ["jsonrpc"],
    "properties": {"jsonrpc": {"const": "2.0"}, "id": {}, "result": {"type": "object"}, "error": {"type": "object"}},
}


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    body: type[BaseModel] | None = None
    ok: Schema = field(default_factory=lambda: OBJECT)
    status: int = 200
    dialect: Literal["openai", "anthropic", "jsonrpc"] = "openai"
    # key: an API key (or a console session); admin: the admin key (or an admin console session);
    # reader: the admin key, or a tenant's key or console session (then only that tenant's rows)
    auth: Literal["key", "admin", "reader", "public"] = "key"
    streams: bool = False
    multipart: bool = False
    query: tuple[tuple[str, Schema], ...] = ()


def operations() -> list[Operation]:
    responses = "/v1/responses/{response_id}"
    day = {"type": "string", "format": "date"}
    when = {"type": "string", "description": "epoch seconds or an ISO date/time"}
    filters = tuple((name, {"type": "string"}) for name in ("tenant", "key", "model", "deployment"))
    return [
        Operation(
            "post", "/v1/chat/completions", "Chat completion", ChatCompletionRequest, CHAT_COMPLETION, streams=True
        ),
        Operation("post", "/v1/completions", "Legacy text completion", CompletionRequest, streams=True),
        Operation("post", "/v1/embeddings", "Embeddings", EmbeddingRequest, LIST),
        Operation("get", "/v1/models", "Models", ok=LIST),
        Operation("get", "/v1/models/{model_id}", "One model"),
        Operation(
            "get",
            "/v1/usage",
            "The calling key's usage",
            ok=LIST,
            query=(("start", day), ("end", day), ("group_by", {"type": "string"})),
        ),
        Operation(
            "post", "/v1/messages", "Anthropic Messages", MessagesRequest, MESSAGE, dialect="anthropic", streams=True
        ),
        Operation(
            "post",
            "/v1/messages/count_tokens",
            "Anthropic token count",
            CountTokensRequest,
            {"type": "object", "required": ["input_tokens"]},
            dialect="anthropic",
        ),
        Operation("post", "/v1/responses", "Create a response", ResponsesRequest, RESPONSE, streams=True),
        Operation("get", responses, "A stored response", ok=RESPONSE),
        Operation(
            "delete", responses, "Delete a stored response", ok={"type": "object", "required": ["id", "deleted"]}
        ),
        Operation(
            "get",
            responses + "/input_items",
            "A stored response's input items",
            ok=LIST,
            query=(("limit", {"type": "integer"}), ("order", {"enum": ["asc", "desc"]}), ("after", {"type": "string"})),
        ),
        Operation("post", responses + "/cancel", "Cancel a background response", ok=RESPONSE),
        Operation("post", "/v1/knowledge_bases", "Create a knowledge base", KnowledgeBaseCreate, status=201),
        Operation("get", "/v1/knowledge_bases", "Knowledge bases", ok=LIST),
        Operation("get", "/v1/knowledge_bases/{kb_id}", "A knowledge base"),
        Operation("delete", "/v1/knowledge_bases/{kb_id}", "Delete a knowledge base"),
        Operation("post", "/v1/knowledge_bases/{kb_id}/documents", "Upload documents", multipart=True),
        Operation("get", "/v1/knowledge_bases/{kb_id}/documents", "Documents", ok=LIST),
        Operation("delete", "/v1/knowledge_bases/{kb_id}/documents/{document_id}", "Delete a document"),
        Operation("post", "/v1/knowledge_bases/{kb_id}/search", "Search a knowledge base", SearchRequest),
        Operation("post", "/admin/plans", "Create a plan", PlanCreate, status=201, auth="admin"),
        Operation("get", "/admin/plans", "Plans", ok=LIST, auth="reader"),
        Operation("patch", "/admin/plans/{id}", "Update a plan", PlanFields, auth="admin"),
        Operation("post", "/admin/tenants", "Create a tenant", TenantCreate, status=201, auth="admin"),
        Operation("get", "/admin/tenants", "Tenants", ok=LIST, auth="reader"),
        Operation("get", "/admin/tenants/{ref}", "A tenant", auth="reader"),
        Operation("patch", "/admin/tenants/{ref}", "Update a tenant", TenantFields, auth="admin"),
        Operation("post", "/admin/keys", "Create a key", KeyCreate, status=201, auth="admin"),
        Operation("get", "/admin/keys", "Keys", ok=LIST, auth="reader"),
        Operation("get", "/admin/keys/{id}", "A key", auth="reader"),
        Operation("patch", "/admin/keys/{id}", "Update a key", KeyFields, auth="admin"),
        Operation("post", "/admin/keys/{id}/revoke", "Revoke a key", auth="admin"),
        Operation("post", "/admin/keys/{id}/rotate", "Rotate a key", auth="admin"),
        Operation(
            "get",
            "/admin/usage",
            "Usage report (from the daily rollup)",
            auth="reader",
            query=(
                ("start", day),
                ("end", day),
                ("group_by", {"type": "string"}),
                ("format", {"enum": ["json", "csv"]}),
                *filters,
            ),
        ),
        Operation(
            "get",
            "/admin/overview",
            "Series, totals and top-10 breakdowns for the console (from the rollups)",
            auth="reader",
            query=(("start", when), ("end", when), *filters),
        ),
        Operation(
            "get",
            "/admin/requests",
            "Ledger rows newest first (keyset pagination)",
            ok=LIST,
            auth="reader",
            query=(
                ("start", when),
                ("end", when),
                ("status", {"type": "string"}),
                ("cursor", {"type": "string"}),
                ("limit", {"type": "integer", "minimum": 1, "maximum": 200}),
                ("endpoint", {"type": "string"}),
                *filters,
            ),
        ),
        Operation("get", "/admin/models", "Deployments, aliases, health and engine slots", ok=LIST, auth="reader"),
        Operation("get", "/admin/audit/{request_id}", "A request's audit trail", auth="reader"),
        Operation("get", "/admin/routing", "Routing state", auth="admin"),
        Operation("get", "/healthz", "Process up", auth="public"),
        Operation(
            "get",
            "/metrics",
            "Prometheus metrics (text exposition; metrics.access: admin or public)",
            ok={"type": "string"},
            auth="admin",
        ),
        Operation("get", "/v1/mcp/servers", "MCP servers, their health and the caller's tools", ok=LIST),
        Operation(
            "post", "/mcp", "MCP over streamable HTTP (JSON-RPC 2.0; docs/agents.md)", ok=JSONRPC, dialect="jsonrpc"
        ),
        Operation(
            "get", "/mcp", "MCP server-to-client stream (not offered: the endpoint is stateless)", dialect="jsonrpc"
        ),
        Operation("delete", "/mcp", "MCP session end (no sessions: the endpoint is stateless)", dialect="jsonrpc"),
        Operation("get", "/readyz", "Every deployment ready", auth="public"),
        Operation("get", "/console", "The web console (redirects to /console/)", auth="public"),
        Operation("post", "/console/session", "Console sign-in: a key for a session cookie", auth="public"),
        Operation("get", "/console/session", "The console session, or how to sign in", auth="public"),
        Operation("delete", "/console/session", "Console sign-out (cookie and CSRF header)", auth="public"),
        Operation("get", "/openapi.json", "This document", auth="public"),
    ]


def _operation(op: Operation, refs: Mapping[tuple[Any, Any], Schema]) -> Schema:
    error = {"anthropic": ANTHROPIC_ERROR, "jsonrpc": JSONRPC}.get(op.dialect, OPENAI_ERROR)
    ok: dict[str, Any] = {"application/json": {"schema": op.ok}}
    if op.path == "/metrics":
        ok = {"text/plain": {"schema": op.ok}}
    if op.streams:
        ok["text/event-stream"] = {"schema": {"type": "string"}}
    if op.path == "/admin/usage":
        ok["text/csv"] = {"schema": {"type": "string"}}
    failures = {
        "description": "An error, in the dialect's envelope",
        "content": {"application/json": {"schema": error}},
    }
    out: Schema = {
        "summary": op.summary,
        "operationId": f"{op.method}_{op.path.strip('/').replace('/', '_').replace('{', '').replace('}', '')}",
        "responses": {str(op.status): {"description": "Success", "content": ok}, "4XX": failures, "5XX": failures},
        "x-openmaas-auth": op.auth,
    }
    if op.auth == "key":
        out["security"] = [{"bearer": []}, {"apiKey": []}, {}]
    elif op.auth in ("admin", "reader"):
        out["security"] = [{"bearer": []}]
    params = [
        {"name": name[1:-1], "in": "path", "required": True, "schema": PATH_ID}
        for name in op.path.split("/")
        if name.startswith("{")
    ]
    params += [{"name": name, "in": "query", "required": False, "schema": schema} for name, schema in op.query]
    if params:
        out["parameters"] = params
    if op.body is not None:
        out["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": refs[(op.body, "validation")]}},
        }
    elif op.multipart:
        files = {"type": "array", "items": {"type": "string", "format": "binary"}}
        form = {"type": "object", "properties": {"files": files}, "required": ["files"]}
        out["requestBody"] = {"required": True, "content": {"multipart/form-data": {"schema": form}}}
    return out


def document() -> Schema:
    ops = operations()
    models = sorted({op.body for op in ops if op.body is not None}, key=lambda m: m.__name__)
    refs, defs = models_json_schema([(m, "validation") for m in models], ref_template="#/components/schemas/{model}")
    paths: dict[str, Schema] = {}
    for op in ops:
        paths.setdefault(op.path, {})[op.method] = _operation(op, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "OpenMaaS",
            "version": "0.1.0",
            "description": "OpenAI-compatible, Anthropic Messages and Responses APIs over local and cloud models.",
        },
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            },
        },
    }
