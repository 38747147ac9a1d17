"""The console in a real browser: Debian's chromium driven by Playwright, against ``openmaas serve`` with its
embedded defaults (llama.cpp + SmolLM2, the MiniLM embedder) as a subprocess."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import RunningServer, start_server
from tests.mcp.conftest import time_server

ADMIN_KEY = "adm-browser-test-key"
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise RuntimeError("Debian's chromium is required for the console tests: apt-get install chromium")
    return found


@pytest.fixture(scope="module")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_server(
        "console",
        tmp_path_factory.mktemp("console-data"),
        {"mcp": {"servers": [time_server()]}},
        env={"OPENMAAS_ADMIN_KEY": ADMIN_KEY},
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()
