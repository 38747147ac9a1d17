"""The OpenAI Agents SDK (``openai-agents``) against the gateway: a hosted MCP tool the gateway runs (the real
mcp-server-time) and a local function tool the SDK runs, in one agent, with a scripted model."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest
from agents import Agent, HostedMCPTool, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled

from tests.agents.test_loop import TOKYO, agent_settings
from tests.mcp.conftest import gateway, time_server

pytestmark = pytest.mark.anyio
ran: list[tuple[int, int]] = []


@function_tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    ran.append((a, b))
    return a + b


async def test_agents_sdk_uses_a_hosted_mcp_tool_and_its_own_function_tool(tmp_path: Path) -> None:
    set_tracing_disabled(True)
    ran.clear()
    steps = [
        {"tool_calls": [TOKYO, {"name": "add", "arguments": {"a": 2, "b": 40}}]},
        {"text": "Results: {results}"},
        {"text": "Results: {results}"},
    ]
    config = agent_settings(tmp_path, steps, [time_server()])
    async with gateway(config) as (_, url), openai.AsyncOpenAI(base_url=url + "/v1", api_key="x") as client:
        agent = Agent(
            name="clock",
            instructions="Answer with the tools.",
            model=OpenAIResponsesModel("agent", client),
            tools=[
                HostedMCPTool(tool_config={"type": "mcp", "server_label": "time", "require_approval": "never"}),
                add,
            ],
        )
        result = await Runner.run(agent, "What time is it in Tokyo, and what is 2 + 40?")
    assert ran == [(2, 40)]  # the SDK ran its own function tool
    assert result.final_output.startswith("Results: ")
    answer = result.final_output
    assert "Asia/Tokyo" in answer and "42" in answer  # both tools' results reached the model
    calls = [getattr(item.raw_item, "type", None) for item in result.new_items if item.type == "tool_call_item"]
    assert calls == ["function_call", "mcp_call"]  # the SDK got the function call; the gateway ran the hosted one
    first = [o.type for o in result.raw_responses[0].output]
    assert first == ["mcp_list_tools", "function_call", "mcp_call"] and len(result.raw_responses) == 2
