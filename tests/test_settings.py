from pathlib import Path

import pytest
from pydantic import ValidationError

from openmaas.settings import Settings, load_settings


def test_the_built_in_default_serves_the_embedded_model() -> None:
    settings = load_settings(environ={})
    # the embedding model joins when its package is installed (the rag extra; the test environment has it)
    assert [d.name for d in settings.deployments] == ["smollm2-135m", "all-minilm-l6-v2"]
    assert settings.deployments[0].backend == "llamacpp" and settings.deployments[0].locality == "local"
    encoder = settings.deployments[1]
    assert encoder.backend == "encoder" and encoder.locality == "local"
    assert encoder.capabilities.embeddings and not encoder.capabilities.chat
    assert {k: [t.name for t in v.targets] for k, v in settings.aliases.items()} == {"default": ["smollm2-135m"]}
    assert settings.server.host == "127.0.0.1" and settings.server.port == 8000


def test_yaml_then_environment_overrides(tmp_path: Path) -> None:
    config = tmp_path / "openmaas.yaml"
    config.write_text(
        "server: {port: 9001}\n"
        "deployments:\n"
        "  - name: gpt-4o-mini\n"
        "    backend: openai_compat\n"
        "    params: {base_url: 'https://api.openai.com/v1', api_key_env: OPENAI_API_KEY}\n"
        "    pricing: {input_per_mtok: 0.15, output_per_mtok: 0.6}\n"
        "aliases: {strong: gpt-4o-mini}\n"
    )
    settings = load_settings(
        config,
        environ={
            "OPENMAAS_SERVER__PORT": "9002",
            "OPENMAAS_SERVER__HOST": "0.0.0.0",
            "OPENMAAS_DATA_DIR": str(tmp_path),
        },
    )
    assert settings.server.port == 9002 and settings.server.host == "0.0.0.0"
    assert settings.data_dir == tmp_path
    assert settings.deployments[0].pricing.output_per_mtok == 0.6
    assert [t.name for t in settings.aliases["strong"].targets] == ["gpt-4o-mini"]


def test_config_path_can_come_from_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("server: {max_body_bytes: 2048}\n")
    assert load_settings(environ={"OPENMAAS_CONFIG": str(config)}).server.max_body_bytes == 2048


@pytest.mark.parametrize(
    "data, message",
    [
        ({"aliases": {"x": "nowhere"}}, "unknown deployment"),
        (
            {"deployments": [{"name": "a", "backend": "fake"}, {"name": "a", "backend": "fake"}], "aliases": {}},
            "duplicate",
        ),
        ({"deployments": [{"name": "a", "backend": "fake"}], "aliases": {"a": "a"}}, "shadows"),
        ({"deployments": [{"name": "a", "backend": "nonsense"}], "aliases": {}}, "backend"),
        ({"server": {"prot": 1}}, "prot"),
    ],
)
def test_inconsistent_configs_are_refused_with_a_reason(data: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings.model_validate(data)


def test_a_non_mapping_yaml_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match="mapping"):
        load_settings(config, environ={})


def test_the_example_config_in_the_repository_loads() -> None:
    settings = load_settings(Path(__file__).parents[1] / "examples" / "openmaas.yaml", environ={})
    backends = {d.backend for d in settings.deployments}
    assert backends == {"llamacpp", "openai_compat", "anthropic"}
    assert [t.name for t in settings.aliases["strong"].targets] == ["gpt-4o-mini"]
