"""Every tool the gateway serves, behind one call path: permissions → privacy → admission → call → ledger.

Tools come from providers: each configured MCP server (``upstream.Upstream``) and the gateway's own
(``builtin.Builtins``). Their public names are ``server__tool``. ``McpHub.call`` is the only way a tool
is called — from ``/mcp``, from the agent loop and from the CLI — so every call is checked, privacy-routed,
metered once and audited the same way.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Protocol

import mcp_types as types
import orjson

from openmaas.auth.principal import Principal
from openmaas.errors import (
    InvalidRequest,
    NotFound,
    PermissionDenied,
    PrivacyPolicyViolation,
    ServiceUnavailable,
    UpstreamTimeout,
)
from openmaas.lifecycle import Observer, ToolCallEvent
from openmaas.mcp.config import SEPARATOR, McpServer, McpSettings
from openmaas.mcp.upstream import ToolOutput, ToolTimeout, ToolUnavailable, Upstream
from openmaas.metering.meter import Metering, Outcome, failure
from openmaas.routing.router import Router
from openmaas.settings import Deployment


class ToolProvider(Protocol):
    name: str
    spec: McpServer
    tools: list[types.Tool]

    def start(self) -> None: ...

    async def close(self) -> None: ...

    async def call(self, tool: str, arguments: dict[str, Any], timeout: float | None = None) -> ToolOutput: ...

    def status(self) -> dict[str, Any]: ...


class CallerAware(Protocol):
    """A provider whose tools act for the caller (``file_search`` reads the caller's knowledge bases)."""

    async def call_as(
        self, principal: Principal, request_id: str, tool: str, arguments: dict[str, Any], timeout: float | None
    ) -> ToolOutput: ...


@dataclass(frozen=True)
class ToolEntry:
    name: str  # public: server__tool
    server: str
    tool: str
    description: str
    input_schema: dict[str, Any]
    locality: str
    price_nanos: int

    def as_mcp(self) -> types.Tool:
        return types.Tool(name=self.name, description=self.description, input_schema=self.input_schema)


@dataclass
class ToolRecord:
    """What the ledger keeps of one tool call (the row's ``route``): where its arguments went and why."""

    tool: str
    server: str
    locality: str
    surface: str
    privacy: str = "public"
    categories: tuple[str, ...] = ()
    policy: str = "allow"
    result_privacy: str | None = None
    step: int | None = None
    agent_call_id: str | None = None
    ms: float = 0.0
    sent: bool = False
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    request_id: str = ""  # the ledger row has it in its own column

    def to_json(self, cached_tokens: int | None = None) -> str:
        body = {
            "kind": "tool_call",
            "tool": self.tool,
            "server": self.server,
            "locality": self.locality,
            "surface": self.surface,
            "privacy": {"class": self.privacy, "categories": list(self.categories)},
            "policy": self.policy,
            "arguments_went_to": ([f"{self.server} ({self.locality})"] if self.sent else []),
            "result_privacy": self.result_privacy,
            "step": self.step,
            "call_id": self.agent_call_id,
            "ms": self.ms,
            "error": self.error,
            **self.extra,
        }
        return orjson.dumps(body).decode()


def price_nanos(spec: McpServer, tool: str) -> int:
    return round(spec.tool_prices_usd.get(tool, spec.price_per_call_usd) * 1e9)


def argument_texts(arguments: Any) -> list[str]:
    """Every string in the arguments (keys too: a key can carry data), for privacy classification."""
    out: list[str] = []
    stack = [arguments]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, dict):
            out.extend(str(k) for k in value)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return out


class McpHub:
    def __init__(
        self, settings: McpSettings, router: Router, metering: Metering | None, log_dir: str | None = None
    ) -> None:
        self.settings = settings
        self.router = router
        self.metering = metering
        self.providers: dict[str, ToolProvider] = {s.name: Upstream(s, log_dir) for s in settings.servers}
        self.observer: Observer | None = None  # told of every tool call as it ends (metrics, traces)
        self._deployments: dict[str, Deployment] = {}
        self._catalog: tuple[tuple[int, ...], dict[str, ToolEntry]] = ((), {})

    def add(self, provider: ToolProvider) -> None:
        self.providers[provider.name] = provider

    async def start(self) -> None:
        for provider in self.providers.values():
            provider.start()

    async def wait_ready(self, timeout: float) -> None:
        """Until every provider has connected once, or ``timeout`` (a down server does not block start-up)."""
        waits = [p.ready.wait() for p in self.providers.values() if isinstance(p, Upstream)]
        if waits:
            await asyncio.wait([asyncio.ensure_future(w) for w in waits], timeout=timeout)

    async def close(self) -> None:
        await asyncio.gather(*(p.close() for p in self.providers.values()), return_exceptions=True)

    # --- the catalog ---------------------------------------------------------------------------------------

    def entries(self) -> dict[str, ToolEntry]:
        """Every tool served, by public name (rebuilt when a provider's tool list changed)."""
        version = tuple(id(p.tools) for p in self.providers.values())
        if version != self._catalog[0]:
            catalog: dict[str, ToolEntry] = {}
            for provider in self.providers.values():
                spec = provider.spec
                for tool in provider.tools:
                    if not any(fnmatchcase(tool.name, p) for p in spec.allow):
                        continue
                    if any(fnmatchcase(tool.name, p) for p in spec.deny):
                        continue
                    name = f"{provider.name}{SEPARATOR}{tool.name}"
                    catalog[name] = ToolEntry(
                        name,
                        provider.name,
                        tool.name,
                        tool.description or "",
                        dict(tool.input_schema),
                        spec.locality,
                        price_nanos(spec, tool.name),
                    )
            self._catalog = (version, catalog)
        return self._catalog[1]

    def catalog(self, principal: Principal, servers: list[str] | None = None) -> list[ToolEntry]:
        """The tools ``principal`` may use (optionally of some servers only)."""
        return [
            e
            for e in self.entries().values()
            if principal.may_use_tool(e.name) and (servers is None or e.server in servers)
        ]

    def status(self) -> list[dict[str, Any]]:
        return [p.status() for p in self.providers.values()]

    def _deployment(self, entry: ToolEntry) -> Deployment:
        found = self._deployments.get(entry.server)
        if found is None:
            found = self._deployments[entry.server] = _tool_deployment(entry.server, entry.locality)
        return found

    # --- the call path -------------------------------------------------------------------------------------

    def resolve(self, principal: Principal, name: str) -> ToolEntry:
        entry = self.entries().get(name)
        if entry is None:
            server = name.split(SEPARATOR, 1)[0]
            if server not in self.providers:
                raise NotFound(f"No MCP server serves the tool '{name}' (names are server{SEPARATOR}tool).")
            raise NotFound(f"The MCP server '{server}' has no tool '{name}' it may serve (or it is not connected).")
        if not principal.may_use_tool(name):
            raise PermissionDenied(
                f"The API key {principal.key_prefix} may not use the tool '{name}'.", code="tool_not_allowed"
            )
        return entry

    async def call(
        self,
        principal: Principal,
        request_id: str,
        name: str,
        arguments: dict[str, Any],
        *,
        surface: str = "mcp",
        step: int | None = None,
        call_id: str | None = None,
        timeout: float | None = None,
        classify_result: bool = False,
    ) -> ToolOutput:
        """Call a tool for ``principal`` under ``request_id``. Refusals raise (and are recorded); a tool's own
        failure comes back as ``ToolOutput(is_error=True)``; a call that times out or cannot reach its server
        raises ``OpenMaaSError`` 504/503 (recorded, not charged). ``classify_result``: record the result's privacy
        class in the audit (the agent loop asks; its next model step is routed on it anyway, since the router
        classifies every text it sends — a result returned to an MCP client goes nowhere else)."""
        if not isinstance(arguments, dict):
            raise InvalidRequest("tool arguments must be a JSON object", param="arguments")
        server = name.split(SEPARATOR, 1)[0]
        provider = self.providers.get(server)
        record = ToolRecord(name, server, provider.spec.locality if provider else "-", surface, step=step)
        record.agent_call_id, record.request_id = call_id, request_id
        started = time.perf_counter()
        entry: ToolEntry | None = None
        ticket = None
        try:
            entry = self.resolve(principal, name)
            texts = argument_texts(arguments)
            privacy, applied = self.router.classify(texts, principal) if texts else (None, None)
            if privacy is not None and applied is not None:
                record.privacy, record.categories, record.policy = privacy.label, privacy.categories, applied.policy
                if applied.policy == "refuse" or (
                    privacy.sensitive and entry.locality == "cloud" and applied.policy != "allow"
                ):
                    raise PrivacyPolicyViolation(
                        f"The arguments of '{name}' disclose {privacy.found()} information, which this key's privacy "
                        f"policy ({applied.rule}) does not allow to leave for the cloud tool server '{server}'.",
                        code="privacy_refused",
                    )
            if self.metering is not None:
                ticket = await self.metering.admit_fixed(
                    principal, request_id, "tool", name, self._deployment(entry), entry.price_nanos
                )
                ticket.route = record
            assert provider is not None
            record.sent = True
            if hasattr(provider, "call_as"):
                output: ToolOutput = await provider.call_as(principal, request_id, entry.tool, arguments, timeout)
            else:
                output = await provider.call(entry.tool, arguments, timeout)
        except ToolTimeout as exc:
            await self._settle(record, ticket, started, 504, "tool_timeout", 0, str(exc))
            raise UpstreamTimeout(str(exc), code="tool_timeout") from None
        except ToolUnavailable as exc:
            await self._settle(record, ticket, started, 503, "tool_unavailable", 0, str(exc))
            raise ServiceUnavailable(str(exc), code="tool_unavailable") from None
        except BaseException as exc:
            status, code, _ = failure(exc)
            if entry is None or ticket is None or status != 500:  # refused before the call: recorded, not charged
                await self._record_refusal(principal, request_id, record, entry, ticket, started, status, code, exc)
            else:
                await self._settle(record, ticket, started, status, code, 0, type(exc).__name__)
            raise
        if output.text and classify_result:
            result_class, _ = self.router.classify([output.text], principal)
            record.result_privacy = result_class.label
        output.sensitive = record.result_privacy == "sensitive"
        code = "tool_error" if output.is_error else None
        await self._settle(record, ticket, started, 200, code, entry.price_nanos, output.text[:200] if code else None)
        return output

    async def _settle(
        self,
        record: ToolRecord,
        ticket: Any,
        started: float,
        status: int,
        code: str | None,
        nanos: int,
        error: str | None,
    ) -> None:
        record.ms = round((time.perf_counter() - started) * 1000, 3)
        record.error = error
        if ticket is not None and self.metering is not None:
            outcome = Outcome(source="tool", status=status, error_code=code, cost_nanos=nanos)
            await self.metering.finish(ticket, outcome)
        self._tell(record, status, code)

    async def _record_refusal(
        self,
        principal: Principal,
        request_id: str,
        record: ToolRecord,
        entry: ToolEntry | None,
        ticket: Any,
        started: float,
        status: int,
        code: str | None,
        exc: BaseException,
    ) -> None:
        """A call refused (no such tool, not allowed, privacy, over a limit): one row, status and code, no cost."""
        if self.metering is None:
            self._tell(record, status, code)
            return
        record.error = str(getattr(exc, "message", exc))[:300]
        record.ms = round((time.perf_counter() - started) * 1000, 3)
        if ticket is None:
            deployment = self._deployment(entry) if entry is not None else _tool_deployment("-", "local")
            ticket = self.metering.unreserved(principal, request_id, "tool", record.tool, deployment)
            ticket.route = record
        outcome = Outcome(source="tool", status=status, error_code=code, cost_nanos=0)
        await self.metering.finish(ticket, outcome)
        self._tell(record, status, code)

    def _tell(self, record: ToolRecord, status: int, code: str | None) -> None:
        if self.observer is not None:
            seconds = record.ms / 1000
            self.observer.tool_called(
                ToolCallEvent(
                    record.request_id,
                    record.tool,
                    record.server,
                    record.locality,
                    record.surface,
                    status,
                    code,
                    time.time() - seconds,
                    seconds,
                    record.agent_call_id,
                )
            )


def _tool_deployment(server: str, locality: str) -> Deployment:
    """What a tool call's ledger row names as its deployment (``mcp:server``); not a model backend, so built
    without the backend registry's check."""
    return Deployment.model_construct(name=f"mcp:{server}", backend="mcp", locality=locality)
