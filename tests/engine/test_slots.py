"""The slot store against an in-process engine API that writes and reads slot files as llama-server does
(the real engine is in tests/real/test_engine_pool.py)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from openmaas.engine.slots import SlotStore, fingerprint

pytestmark = pytest.mark.anyio


class Engine:
    def __init__(self, folder: Path, prompts: dict[int, int], busy: tuple[int, ...] = ()) -> None:
        self.folder, self.prompts, self.busy = folder, prompts, busy
        self.restored: dict[int, int] = {}

    async def get_json(self, path: str) -> Any:
        assert path == "/slots"
        return [{"id": i, "is_processing": i in self.busy, "n_prompt_tokens": n} for i, n in self.prompts.items()]

    async def post_json(self, path: str, body: dict[str, Any], timeout: float = 60.0) -> tuple[int, Any]:
        sid = int(path.split("/")[2].split("?")[0])
        file = self.folder / body["filename"]
        if path.endswith("action=save"):
            file.write_bytes(b"kv" * 1000 * self.prompts[sid])
            return 200, {"n_saved": self.prompts[sid]}
        tokens = file.stat().st_size // 2000
        self.restored[sid] = tokens
        return 200, {"n_restored": tokens}


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.bin"))


def store(folder: Path, **kw: Any) -> SlotStore:
    return SlotStore(folder, "dep-e0", "fp1", 4, min_tokens=100, **kw)


async def test_long_idle_slots_are_saved_and_restored_short_and_busy_ones_are_not(tmp_path: Path) -> None:
    engine = Engine(tmp_path, {0: 500, 1: 20, 2: 800}, busy=(2,))
    assert await store(tmp_path).save(engine) == 1
    assert names(tmp_path) == ["dep-e0-s0.bin"]
    fresh = Engine(tmp_path, {})
    assert await store(tmp_path).restore(fresh) == 500 and fresh.restored == {0: 500}


async def test_a_torn_changed_or_foreign_file_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "openmaas.engine")
    engine = Engine(tmp_path, {0: 500, 1: 300})
    await store(tmp_path).save(engine)
    (tmp_path / "dep-e0-s0.bin").write_bytes(b"kv" * 100)  # torn
    data = bytearray((tmp_path / "dep-e0-s1.bin").read_bytes())
    data[10] ^= 0xFF  # same size, other content
    (tmp_path / "dep-e0-s1.bin").write_bytes(bytes(data))
    fresh = Engine(tmp_path, {})
    assert await store(tmp_path).restore(fresh) == 0 and fresh.restored == {}
    assert caplog.text.count("missing or corrupt; skipped") == 2
    await store(tmp_path).save(Engine(tmp_path, {0: 500}))
    other = SlotStore(tmp_path, "dep-e0", "another-model", 4, min_tokens=100)
    assert await other.restore(Engine(tmp_path, {})) == 0 and "another model" in caplog.text
    (tmp_path / "dep-e0.json").write_text("{not json")
    assert await store(tmp_path).restore(Engine(tmp_path, {})) == 0


async def test_the_folder_stays_within_its_budget_oldest_first(tmp_path: Path) -> None:
    small = store(tmp_path, budget_bytes=1_500_000)  # each 500-token file is 1 MB
    await small.save(Engine(tmp_path, {0: 500}))
    second = SlotStore(tmp_path, "dep-e1", "fp1", 4, min_tokens=100, budget_bytes=1_500_000)
    await second.save(Engine(tmp_path, {0: 500}))
    assert names(tmp_path) == ["dep-e1-s0.bin"]
    (tmp_path / "stray.bin").write_bytes(b"x")  # a file no manifest names
    second.enforce_budget()
    assert not (tmp_path / "stray.bin").exists()
    assert json.loads((tmp_path / "dep-e1.json").read_text())["fingerprint"] == "fp1"


def test_a_hot_prefix_marks_the_store_due_after_its_interval(tmp_path: Path) -> None:
    s = store(tmp_path, interval=0.0)
    s.note_cached(50)
    assert not s.due()
    s.note_cached(400)
    assert s.due()


def test_a_slot_saved_by_other_kernels_has_another_fingerprint(tmp_path: Path) -> None:
    model, binary = tmp_path / "m.gguf", tmp_path / "llama-server"
    model.write_bytes(b"weights")
    binary.write_bytes(b"engine")
    fast = fingerprint(model, binary, 4096)
    assert fingerprint(model, binary, 4096, batch_invariant=False) == fast
    assert fingerprint(model, binary, 4096, batch_invariant=True) != fast
    assert fingerprint(model, binary, 8192) != fast
    invariant = fingerprint(model, binary, 4096, batch_invariant=True)
    assert fingerprint(model, binary, 4096, True, attention="off") not in (fast, invariant)  # V cache transposed
