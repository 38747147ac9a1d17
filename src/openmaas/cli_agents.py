"""``openmaas mcp`` and ``openmaas agent``: tools and agent runs through a running gateway (any key it accepts).

``mcp list`` reads ``/v1/mcp/servers``; ``mcp call`` is an MCP client of the gateway's ``/mcp`` (the official
SDK), so it is checked, metered and audited like any client's call; ``agent run`` streams a Responses
request with hosted MCP tools and prints each step as it happens.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import click

from openmaas.cli_admin import _table
from openmaas.cli_kb import Api, api_key_option, base_url_option


def _root(base_url: str) -> str:
    base = base_url.rstrip("/")
    return base[: -len("/v1")] if base.endswith("/v1") else base


async def _mcp_call(base_url: str, api_key: str, name: str, arguments: dict[str, Any]) -> tuple[bool, str]:
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client
    from mcp.shared.exceptions import MCPError

    headers = {"authorization": f"Bearer {api_key}"}
    async with (
        create_mcp_http_client(headers=headers) as http,
        streamable_http_client(_root(base_url) + "/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        try:
            result = await session.call_tool(name, arguments)
        except MCPError as exc:
            return True, f"refused: {exc.error.message}"
    text = "\n".join(getattr(block, "text", f"[{block.type}]") for block in getattr(result, "content", []))
    return bool(getattr(result, "is_error", False)), text


def _event_line(event: dict[str, Any], shown: dict[str, str]) -> str | None:
    kind = event.get("type", "")
    if kind == "response.output_item.added":
        item = event["item"]
        if item["type"] == "mcp_list_tools":
            return None
        if item["type"] == "message":
            return "\n[answer] "
    if kind == "response.output_item.done":
        item = event["item"]
        if item["type"] == "mcp_list_tools":
            names = ", ".join(t["name"] for t in item.get("tools") or [])
            return f"[tools] {item['server_label']}: {names or '(none)'}" + (
                f"  ({item['error']})" if item.get("error") else ""
            )
        if item["type"] == "mcp_call":
            where = f"{item['server_label']}.{item['name']}({item['arguments']})"
            if item.get("error"):
                error = item["error"]
                text = error.get("message") or json.dumps(error.get("content"))
                return f"[tool]  {where} -> ERROR {text}"
            output = (item.get("output") or "").replace("\n", " ")
            return f"[tool]  {where} -> {output[:300]}"
        if item["type"] == "mcp_approval_request":
            return f"[approval needed] {item['server_label']}.{item['name']}({item['arguments']})  id {item['id']}"
        if item["type"] == "message":
            return "\n"
    if kind == "response.output_text.delta":
        return "\0" + str(event["delta"])  # no newline
    if kind in ("response.completed", "response.incomplete", "response.failed"):
        response = event["response"]
        agent = (response.get("openmaas") or {}).get("agent") or {}
        usage = response.get("usage") or {}
        end = agent.get("end") or (response.get("error") or {}).get("message") or response["status"]
        return (
            f"[done] {response['status']} ({end}): {agent.get('steps', '?')} model steps, "
            f"{agent.get('tool_calls', 0)} tool calls, {usage.get('input_tokens', 0)}+{usage.get('output_tokens', 0)} "
            f"tokens, ${agent.get('cost_usd', 0):.6f}"
        )
    if kind == "error":
        return f"[error] {event.get('message')}"
    return None


async def _agent_run(base_url: str, api_key: str, body: dict[str, Any]) -> str | None:
    import aiohttp

    url = base_url.rstrip("/") + "/responses"
    headers = {"authorization": f"Bearer {api_key}"}
    request_id = None
    shown: dict[str, str] = {}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3600)) as session,
        session.post(url, json=body, headers=headers) as resp,
    ):
        request_id = resp.headers.get("x-request-id")
        if resp.status >= 400:
            error = (await resp.json(content_type=None)).get("error", {})
            raise click.ClickException(f"HTTP {resp.status}: {error.get('message')}")
        async for raw in resp.content:
            line = raw.decode().strip()
            if not line.startswith("data: "):
                continue
            out = _event_line(json.loads(line[6:]), shown)
            if out is None:
                continue
            if out.startswith("\0"):
                click.echo(out[1:], nl=False)
            else:
                click.echo(out)
    return request_id


def register(main: click.Group) -> None:
    @main.group()
    def mcp() -> None:
        """MCP servers the gateway serves: list them, call a tool."""

    @mcp.command("list")
    @click.option("--json", "as_json", is_flag=True)
    @base_url_option
    @api_key_option
    def list_(as_json: bool, base_url: str, api_key: str) -> None:
        """Servers, their health, and the tools your key may use."""
        listed = asyncio.run(Api(base_url, api_key).call("GET", "/mcp/servers"))["data"]
        if as_json:
            click.echo(json.dumps(listed, indent=2))
            return
        _table(listed, ["name", "transport", "locality", "state", "tools_served", "starts", "error"])
        for server in listed:
            for tool in server["tools"]:
                click.echo(f"  {tool['name']:<40} ${tool['price_usd']:<10g} {tool['description'][:70]}")

    @mcp.command("call")
    @click.argument("server")
    @click.argument("tool")
    @click.argument("arguments", default="{}")
    @base_url_option
    @api_key_option
    def call(server: str, tool: str, arguments: str, base_url: str, api_key: str) -> None:
        """Call SERVER's TOOL with ARGUMENTS (a JSON object) through the gateway's /mcp."""
        try:
            parsed = json.loads(arguments)
        except ValueError as exc:
            raise click.ClickException(f"ARGUMENTS is not JSON: {exc}") from None
        if not isinstance(parsed, dict):
            raise click.ClickException("ARGUMENTS must be a JSON object")
        failed, text = asyncio.run(_mcp_call(base_url, api_key, f"{server}__{tool}", parsed))
        click.echo(text, err=failed)
        if failed:
            raise SystemExit(1)

    @main.group()
    def agent() -> None:
        """Server-side agent runs: a model with MCP tools, until an answer."""

    @agent.command("run")
    @click.argument("task")
    @click.option("--model", default="default", show_default=True)
    @click.option("--tools", default="time", show_default=True, help="comma-separated MCP servers (or 'builtin')")
    @click.option("--max-steps", type=int, default=None)
    @click.option("--max-tool-calls", type=int, default=None)
    @click.option("--instructions", default=None)
    @base_url_option
    @api_key_option
    def run(
        task: str,
        model: str,
        tools: str,
        max_steps: int | None,
        max_tool_calls: int | None,
        instructions: str | None,
        base_url: str,
        api_key: str,
    ) -> None:
        """Run TASK with the tools of the named MCP servers, streaming each step."""
        body: dict[str, Any] = {
            "model": model,
            "input": task,
            "stream": True,
            "store": False,
            "tools": [
                {"type": "mcp", "server_label": s.strip(), "require_approval": "never"}
                for s in tools.split(",")
                if s.strip()
            ],
        }
        if instructions:
            body["instructions"] = instructions
        limits = {"max_steps": max_steps, "max_tool_calls": max_tool_calls}
        if any(v is not None for v in limits.values()):
            body["agent"] = {k: v for k, v in limits.items() if v is not None}
        request_id = asyncio.run(_agent_run(base_url, api_key, body))
        if request_id:
            click.echo(f"(request {request_id}: `openmaas audit {request_id}` shows every step and tool call)")
