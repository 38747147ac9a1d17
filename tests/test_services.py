"""Wiring from settings to the long-lived parts."""

from __future__ import annotations

from pathlib import Path

import pytest

from openmaas.services import Services
from openmaas.settings import Settings
from openmaas.store.ledger_spool import SpoolSink

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("fsync", [False, True])
async def test_metering_ledger_fsync_reaches_the_ledger_sink(tmp_path: Path, fsync: bool) -> None:
    settings = Settings.model_validate(
        {
            "data_dir": str(tmp_path),
            "store": {"url": f"sqlite:///{tmp_path / 'o.db'}"},
            "metering": {"ledger_fsync": fsync},
        }
    )
    services = Services(settings)
    try:
        assert isinstance(services.ledger.sink, SpoolSink) and services.ledger.sink.fsync is fsync
    finally:
        await services.db.close()
