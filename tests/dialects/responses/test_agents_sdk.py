"""The OpenAI Agents SDK (``openai-agents``) runs an agent with a function tool against the gateway's
Responses API: the model (a scripted fake) calls the tool, the SDK runs it, the model answers with it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2
import openai
import pytest
from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled
from starlette.applications import Starlette

from tests.conftest import fake_settings, running_app

pytestmark = pytest.mark.anyio
CALLED: list[str] = []


@function_tool
def lookup_marker(name: str) -> str:
    """Look up the marker with this name."""
    CALLED.append(name)
    return f"marker-{name}-77"


@pytest.fixture
async def app(tmp_path: Any) -> AsyncIterator[Starlette]:
    script = {"tools": {"lookup_marker": {"name": "blue"}}, "final": "The marker is"}
    deployments = [{"name": "agent", "backend": "fake", "locality": "local", "params": {"script": script}}]
    async with running_app(fake_settings(tmp_path, deployments=deployments, aliases={})) as (application, _):
        yield application


async def test_an_agent_calls_its_function_tool_through_the_responses_api(app: Starlette) -> None:
    set_tracing_disabled(True)  # no trace export to a cloud
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://test")
    client = openai.AsyncOpenAI(base_url="http://test/v1", api_key="placeholder", http_client=http, max_retries=0)
    agent = Agent(
        name="marker agent",
        instructions="Use the tool to find the marker, then say it.",
        tools=[lookup_marker],
        model=OpenAIResponsesModel(model="agent", openai_client=client),
    )
    CALLED.clear()
    result = await Runner.run(agent, "What is the blue marker?")
    assert CALLED == ["blue"]  # the SDK ran the tool the model called, with its arguments
    assert result.final_output == "The marker is marker-blue-77"
    await client.close()
