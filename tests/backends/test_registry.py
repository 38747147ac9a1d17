"""The open backend registry: built-ins by name, typed params checked at start-up, plugins by path."""

from __future__ import annotations

from pathlib import Path

import pytest

from openmaas.backends.fake import FakeBackend
from openmaas.backends.registry import BUILTIN, BackendRegistry
from openmaas.routing.registry import Registry
from openmaas.settings import BUILTIN_BACKENDS, Deployment, Settings


def test_every_builtin_backend_loads_and_declares_its_params() -> None:
    assert set(BUILTIN) == set(BUILTIN_BACKENDS)  # the names settings accept are the ones the registry builds
    kinds = BackendRegistry()
    for name in BUILTIN:
        cls = kinds.backend_class(name)
        assert cls.Params is not None and cls.Params.model_config.get("extra") == "forbid"


def test_a_misspelt_param_stops_the_start_up_naming_the_deployment(tmp_path: Path) -> None:
    settings = Settings.model_validate(
        {
            "data_dir": str(tmp_path),
            "deployments": [
                {
                    "name": "cloud-x",
                    "backend": "openai_compat",
                    "params": {"base_url": "http://h/v1", "api_key_enf": "K"},
                }
            ],
            "aliases": {},
        }
    )
    with pytest.raises(
        ValueError, match=r"deployment 'cloud-x' \(openai_compat\): bad params — api_key_enf: extra inputs"
    ):
        Registry(settings)


def test_a_wrong_type_or_a_missing_param_is_refused_too() -> None:
    kinds = BackendRegistry()
    with pytest.raises(ValueError, match="parallel: input should be a valid integer"):
        kinds.create(Deployment(name="local", backend="llamacpp", params={"parallel": "many"}))
    with pytest.raises(ValueError, match="base_url: field required"):
        kinds.create(Deployment(name="up", backend="openai_compat"))


def test_an_unknown_backend_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown backend 'bedrock' \(known: anthropic, encoder, fake"):
        BackendRegistry().create(Deployment.model_construct(name="b", backend="bedrock", params={}))
    with pytest.raises(ValueError, match="unknown backend 'bedrock'"):  # and the settings refuse it first
        Deployment(name="b", backend="bedrock")


def test_a_plugin_backend_is_registered_by_import_path() -> None:
    kinds = BackendRegistry({"my-fake": "openmaas.backends.fake:FakeBackend"})
    backend = kinds.create(Deployment.model_construct(name="p", backend="my-fake", params={"reply": "hi"}))
    assert isinstance(backend, FakeBackend) and backend.reply == "hi"
    with pytest.raises(TypeError, match="not an openmaas Backend"):
        bad = Deployment.model_construct(name="q", backend="bad", params={})
        BackendRegistry({"bad": "openmaas.settings:Settings"}).create(bad)
