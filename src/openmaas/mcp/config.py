"""MCP servers and the agent loop in the settings (``mcp:`` and ``agents:``).

```yaml
mcp:
  servers:
    - name: time
      command: mcp-server-time          # stdio: started and supervised by the gateway
      args: ["--local-timezone", "UTC"]
      locality: local
      price_per_call_usd: 0.0001
    - name: search
      url: https://mcp.example.com/mcp  # streamable HTTP
      token_env: SEARCH_MCP_TOKEN       # sent as "Authorization: Bearer …"
      locality: cloud                   # arguments leave the company
      deny: ["delete_*"]
```
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SERVER_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]{0,31}$")
SEPARATOR = "__"  # a tool's public name: ``server__tool``


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class McpServer(_Strict):
    name: str = Field(pattern=SERVER_NAME.pattern)
    # stdio
    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    # streamable HTTP
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    token_env: str | None = None  # the name of an environment variable holding a bearer token (never the token)
    # policy
    allow: list[str] = Field(default_factory=lambda: ["*"])  # tool name patterns (fnmatch) served from this server
    deny: list[str] = Field(default_factory=list)
    locality: Literal["local", "cloud"] = "local"
    price_per_call_usd: float = Field(default=0.0, ge=0)
    tool_prices_usd: dict[str, float] = Field(default_factory=dict)  # per tool, overrides the per-call price
    call_timeout_s: float = Field(default=30.0, gt=0)
    connect_timeout_s: float = Field(default=20.0, gt=0)
    restart_backoff_s: float = Field(default=1.0, gt=0)  # doubles per failed (re)start, up to 30 s

    @model_validator(mode="after")
    def _one_transport(self) -> McpServer:
        if (self.command is None) == (self.url is None):
            raise ValueError(f"MCP server '{self.name}': give either 'command' (stdio) or 'url' (streamable HTTP)")
        if SEPARATOR in self.name:
            raise ValueError(f"MCP server '{self.name}': the name may not contain '{SEPARATOR}'")
        return self

    @property
    def transport(self) -> str:
        return "stdio" if self.command is not None else "http"


class McpSettings(_Strict):
    servers: list[McpServer] = Field(default_factory=list)
    endpoint: bool = True  # serve the aggregated tools at /mcp
    builtin_tools: bool = True  # ``python`` (the TTC sandbox) and ``file_search`` (the caller's knowledge bases)
    # A client with a tool-count cap lists at most this many tools; past it, /mcp lists ``search_tools`` and
    # ``call_tool`` instead (documented in docs/agents.md).
    max_listed_tools: int = Field(default=128, ge=2)
    ready_timeout_s: float = Field(default=20.0, ge=0)  # start-up waits this long, at most, for servers to connect

    @model_validator(mode="after")
    def _unique(self) -> McpSettings:
        names = [s.name for s in self.servers]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate MCP server names: {duplicates}")
        if "builtin" in names:
            raise ValueError("the MCP server name 'builtin' is reserved for the gateway's own tools")
        return self


class AgentSettings(_Strict):
    """Defaults and ceilings of the server-side agent loop (a request may lower them)."""

    max_steps: int = Field(default=8, ge=1, le=100)  # model calls per run
    max_tool_calls: int = Field(default=16, ge=0, le=1000)
    max_seconds: float = Field(default=120.0, gt=0, le=3600)
    max_cost_usd: float | None = Field(default=None, ge=0)  # None: only the key's budget bounds a run
    parallel_tools: int = Field(default=4, ge=1, le=64)  # tool calls of one step run at once, at most
