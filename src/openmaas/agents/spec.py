"""What a request asks of the agent loop, dialect-neutral: hosted MCP tools, limits, approvals.

The Responses API asks in OpenAI's shape — ``tools: [{"type": "mcp", "server_label": "time",
"allowed_tools": [...], "require_approval": "never"}]`` — and chat completions through the ``agent``
extension field (``{"tools": [same objects], "max_steps": …}``, docs/agents.md). ``server_label`` names an
MCP server configured in the gateway (or ``builtin``); ``server_url`` is not followed: the gateway only
calls servers its operator configured.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from openmaas.errors import InvalidRequest
from openmaas.mcp.config import AgentSettings


@dataclass
class HostedMcp:
    server_label: str
    allowed_tools: list[str] | None = None  # tool names (or patterns) of that server; None: all it serves
    always: list[str] | None = None  # tool names that need approval; None with ``every`` False: none
    never: list[str] | None = None  # tool names that need no approval (the rest do)
    every: bool = False  # "always": every call needs approval

    def needs_approval(self, tool: str) -> bool:
        if self.every:
            return True
        if self.always is not None and tool in self.always:
            return True
        if self.never is not None:
            return tool not in self.never
        return False

    def allows(self, tool: str) -> bool:
        return self.allowed_tools is None or any(fnmatchcase(tool, p) for p in self.allowed_tools)


@dataclass
class Limits:
    max_steps: int
    max_tool_calls: int
    max_seconds: float
    max_cost_nanos: int | None


@dataclass
class Pending:
    """A call from an earlier turn that waited for approval, with the client's answer."""

    item_id: str  # the mcp_approval_request item's id
    server_label: str
    name: str  # the tool's own name on its server
    arguments: str
    approve: bool
    reason: str | None = None


@dataclass
class AgentSpec:
    mcp: list[HostedMcp] = field(default_factory=list)
    asked: dict[str, Any] = field(default_factory=dict)  # limits the request asked for (lowered to the server's)
    pending: list[Pending] = field(default_factory=list)


def _names(value: Any, at: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, dict):  # {"tool_names": [...], "read_only": …}
        value = value.get("tool_names")
        if value is None:
            return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidRequest(f"{at} must be a list of tool names", param=at)
    return list(value)


def hosted_mcp(tool: dict[str, Any], at: str) -> HostedMcp:
    label = tool.get("server_label")
    if not isinstance(label, str) or not label:
        raise InvalidRequest(f"{at}: an mcp tool needs 'server_label' (an MCP server configured here)", param=at)
    spec = HostedMcp(label, _names(tool.get("allowed_tools"), f"{at}.allowed_tools"))
    approval = tool.get("require_approval", "always")  # OpenAI's default: every call is approved
    if approval == "always":
        spec.every = True
    elif approval == "never":
        pass
    elif isinstance(approval, dict):
        spec.always = _names(approval.get("always"), f"{at}.require_approval.always")
        spec.never = _names(approval.get("never"), f"{at}.require_approval.never")
    else:
        raise InvalidRequest(f"{at}.require_approval must be 'always', 'never' or an object", param=at)
    return spec


def limits(defaults: AgentSettings, asked: dict[str, Any] | None) -> Limits:
    """The run's limits: the request may lower the server's, never raise them."""
    asked = asked or {}

    def pick(key: str, ceiling: float | None, kind: type) -> Any:
        value = asked.get(key)
        if value is None:
            return ceiling
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise InvalidRequest(f"agent.{key} must be a non-negative number", param=f"agent.{key}")
        return kind(value if ceiling is None else min(value, ceiling))

    cost = pick("max_cost_usd", defaults.max_cost_usd, float)
    return Limits(
        max(1, pick("max_steps", defaults.max_steps, int)),
        pick("max_tool_calls", defaults.max_tool_calls, int),
        pick("max_seconds", defaults.max_seconds, float),
        None if cost is None else round(cost * 1e9),
    )
