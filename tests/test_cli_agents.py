"""``openmaas mcp list|call`` and ``openmaas agent run`` against a running gateway (a subprocess), and
``openmaas audit`` on the run they made."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import RunningServer, start_server
from tests.mcp.conftest import time_server

STEPS = [
    {"tool_calls": [{"name": "time__get_current_time", "arguments": {"timezone": "Asia/Tokyo"}}]},
    {"text": "It is {results}"},
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    data = tmp_path_factory.mktemp("cli-agents")
    config = {
        "deployments": [
            {"name": "agent", "backend": "fake", "locality": "local", "params": {"script": {"steps": STEPS}}}
        ],
        "aliases": {"default": "agent"},
        "mcp": {"servers": [time_server(price_per_call_usd=0.0001)]},
    }
    running: RunningServer = start_server("cli-agents", data, config)
    try:
        yield running
    finally:
        running.stop()


def cli(server: RunningServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OPENMAAS_DATA_DIR": str(server.data_dir)}
    argv = [sys.executable, "-m", "openmaas", *args]
    if args[0] in ("mcp", "agent"):
        argv += ["--base-url", server.base_url + "/v1"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)


def test_mcp_list_and_call(server: RunningServer) -> None:
    listed = cli(server, "mcp", "list")
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"time\s+stdio\s+local\s+ready\s+2", listed.stdout)
    assert "time__get_current_time" in listed.stdout and "builtin__python" in listed.stdout
    called = cli(server, "mcp", "call", "time", "get_current_time", '{"timezone": "Asia/Tokyo"}')
    assert called.returncode == 0 and '"timezone": "Asia/Tokyo"' in called.stdout
    missing = cli(server, "mcp", "call", "time", "nope", "{}")
    assert missing.returncode == 1 and "no tool 'time__nope'" in missing.stderr
    bad = cli(server, "mcp", "call", "time", "get_current_time", "not json")
    assert bad.returncode != 0 and "ARGUMENTS is not JSON" in bad.stderr


def test_agent_run_streams_the_steps_and_audit_shows_them(server: RunningServer, tmp_path: Path) -> None:
    run = cli(server, "agent", "run", "What time is it in Tokyo?", "--tools", "time")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "[tools] time: get_current_time, convert_time"
    assert lines[1].startswith('[tool]  time.get_current_time({"timezone": "Asia/Tokyo"}) -> {')
    assert any(line.startswith("It is {") for line in lines)
    assert any(line.startswith("[done] completed (completed): 2 model steps, 1 tool calls") for line in lines)
    request_id = re.search(r"openmaas audit (\S+)`", run.stdout)
    assert request_id is not None
    for _ in range(20):  # the gateway imports its ledger spool into the database every 0.5 s
        trail = cli(server, "audit", request_id.group(1))
        if "tool call(s)" in trail.stdout:
            break
        time.sleep(0.5)
    assert trail.returncode == 0, trail.stderr
    assert "tool call    time__get_current_time via agent:responses, status 200" in trail.stdout
    assert "went to      time (local)" in trail.stdout
    assert "2 model call(s), 1 tool call(s), total $0.000100" in trail.stdout
