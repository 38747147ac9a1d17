"""The gateway's own tools, served through the same aggregation as configured MCP servers (``builtin__*``).

* ``python`` — runs a script in the test-time-compute sandbox (no network, CPU, memory, file and process
  limits, a wall-clock timeout) and returns what it printed.
* ``file_search`` — searches the caller's knowledge bases (hybrid BM25 + vectors), only its tenant's.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import mcp_types as types
import orjson

from openmaas.auth.principal import Principal
from openmaas.errors import OpenMaaSError
from openmaas.gateway import Call
from openmaas.mcp.config import McpServer
from openmaas.mcp.upstream import ToolOutput
from openmaas.settings import TtcSettings
from openmaas.ttc.sandbox import run_script

if TYPE_CHECKING:
    from openmaas.rag.service import KnowledgeBases

PYTHON = types.Tool(
    name="python",
    description="Run a Python 3 script in a sandbox (no network, no files outside a scratch folder, a few seconds "
    "of CPU) and return what it printed. Use print() to show results.",
    input_schema={
        "type": "object",
        "properties": {"code": {"type": "string", "description": "the script"}},
        "required": ["code"],
    },
)
FILE_SEARCH = types.Tool(
    name="file_search",
    description="Search the caller's knowledge bases and return the most relevant passages with their sources.",
    input_schema={
        "type": "object",
        "properties": {
            "query": {"type": "string"},
            "knowledge_base_ids": {"type": "array", "items": {"type": "string"}, "description": "default: all"},
            "top_k": {"type": "integer", "minimum": 1, "maximum": 20, "default": 5},
        },
        "required": ["query"],
    },
)


class Builtins:
    name = "builtin"

    def __init__(self, ttc: TtcSettings, knowledge: KnowledgeBases | None) -> None:
        self.spec = McpServer(name="builtin", command="(in process)", locality="local")
        self.ttc = ttc
        self.knowledge = knowledge
        self.tools = [PYTHON] + ([FILE_SEARCH] if knowledge is not None else [])

    def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "transport": "in-process",
            "locality": "local",
            "state": "ready",
            "tools": len(self.tools),
            "starts": 1,
            "error": None,
        }

    async def call(self, tool: str, arguments: dict[str, Any], timeout: float | None = None) -> ToolOutput:
        raise NotImplementedError("builtin tools are called with call_as")

    async def call_as(
        self, principal: Principal, request_id: str, tool: str, arguments: dict[str, Any], timeout: float | None
    ) -> ToolOutput:
        if tool == "python":
            code = arguments.get("code")
            if not isinstance(code, str) or not code.strip():
                return ToolOutput("python: 'code' must be a non-empty string", is_error=True)
            limit = min(timeout or self.ttc.sandbox_timeout_s, self.ttc.sandbox_timeout_s)
            result = await run_script(code, limit, self.ttc.sandbox_memory_mb)
            return ToolOutput(result.output or "(no output)", is_error=not result.ok)
        if tool == "file_search" and self.knowledge is not None:
            return await self._file_search(principal, request_id, arguments)
        return ToolOutput(f"unknown built-in tool '{tool}'", is_error=True)

    async def _file_search(self, principal: Principal, request_id: str, arguments: dict[str, Any]) -> ToolOutput:
        from openmaas.protocol.knowledge import Retrieval

        assert self.knowledge is not None
        query = arguments.get("query")
        if not isinstance(query, str) or not query.strip():
            return ToolOutput("file_search: 'query' must be a non-empty string", is_error=True)
        top_k = arguments.get("top_k", 5)
        top_k = top_k if isinstance(top_k, int) and 1 <= top_k <= 20 else 5
        call = Call(request_id, principal, surface="tool")
        wanted = arguments.get("knowledge_base_ids")
        if isinstance(wanted, list) and wanted:
            ids = [str(i) for i in wanted]
        else:
            ids = [kb["id"] for kb in await self.knowledge.store.all(principal.tenant_id)]
        found: list[dict[str, Any]] = []
        try:
            results = await asyncio.gather(
                *(self.knowledge.search(call, kb_id, query, Retrieval(top_k=top_k)) for kb_id in ids)
            )
        except OpenMaaSError as exc:  # an unknown or foreign knowledge base: the same answer (no existence leak)
            return ToolOutput(f"file_search: {exc.message}", is_error=True)
        for kb_id, result in zip(ids, results, strict=True):
            found += [{**r, "knowledge_base_id": kb_id} for r in result.results]
        found.sort(key=lambda r: -float(r["score"]))
        keep = [
            {k: r[k] for k in ("knowledge_base_id", "filename", "title", "heading", "text", "score")}
            for r in found[:top_k]
        ]
        return ToolOutput(orjson.dumps({"results": keep}).decode(), structured={"results": keep})
