"""The real agent clients, Claude Code (``claude -p``) and Codex CLI (``codex exec``), against a gateway
process whose deployment is a scripted deterministic agent: it answers with a tool call first and a
final text second, so each client must execute its own tool and print the final text."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import RunningServer, start_server

ROOT = Path(__file__).resolve().parents[2]
MARKER = "tool-output-42"
SCRIPT = {
    "tools": {
        "Bash": {"command": f"echo {MARKER}", "description": "print a marker"},
        "exec_command": {"cmd": f"echo {MARKER}"},
    },
    "final": "The command printed:",
}


@pytest.fixture(scope="module")
def clients() -> Path:
    out = subprocess.run(
        ["bash", str(ROOT / "scripts/agent_clients.sh")], capture_output=True, text=True, timeout=900, check=True
    )
    return Path(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Any:
    data = tmp_path_factory.mktemp("agents")
    config = {
        "deployments": [
            {
                "name": "agent",
                "backend": "fake",
                "locality": "local",
                "context_length": 200_000,
                "params": {"script": SCRIPT},
            }
        ],
        "aliases": {"default": "agent"},
    }
    server: RunningServer = start_server("agents", data, config)
    try:
        yield server
    finally:
        server.stop()


def test_claude_code_runs_its_tool_and_prints_the_final_text(clients: Path, gateway: Any, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **os.environ,
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": gateway.base_url,
        "ANTHROPIC_API_KEY": "sk-ant-placeholder-0000",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }
    out = subprocess.run(
        [str(clients / "claude"), "-p", "Run the marker command.", "--allowedTools", "Bash"],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == f"The command printed: {MARKER}"


def test_codex_exec_runs_its_tool_and_prints_the_final_text(clients: Path, gateway: Any, tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".codex").mkdir(parents=True)
    (home / ".codex/config.toml").write_text(
        'model = "agent"\nmodel_provider = "openmaas"\n\n[model_providers.openmaas]\nname = "OpenMaaS"\n'
        f'base_url = "{gateway.base_url}/v1"\nenv_key = "OPENMAAS_API_KEY"\nwire_api = "responses"\n'
    )
    env = {**os.environ, "HOME": str(home), "OPENMAAS_API_KEY": "placeholder"}
    out = subprocess.run(
        [str(clients / "codex"), "exec", "--skip-git-repo-check", "Run the marker command."],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith("The command printed:") and MARKER in last  # its tool ran: the output came back
