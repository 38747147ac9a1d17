import json
from pathlib import Path

from click.testing import CliRunner

from openmaas.cli import main


def test_models_lists_deployments_and_aliases(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "deployments:\n  - {name: up, backend: openai_compat, params: {base_url: 'http://x'}}\naliases: {best: up}\n"
    )
    result = CliRunner().invoke(main, ["models", "--config", str(config), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [(r["name"], r["alias_of"]) for r in rows] == [("up", ""), ("best", "up")]


def test_a_broken_config_is_a_clear_cli_error(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("aliases: {x: missing}\n")
    result = CliRunner().invoke(main, ["models", "--config", str(config)])
    assert result.exit_code != 0 and "cannot load settings" in result.output


def test_chat_without_a_server_says_so() -> None:
    result = CliRunner().invoke(main, ["chat", "hi", "--base-url", "http://127.0.0.1:9/v1"])
    assert result.exit_code != 0 and "is `openmaas serve` running?" in result.output
