"""The engine build's source patches: applied exactly once, or the build stops; part of the cache key."""

from __future__ import annotations

from pathlib import Path

import pytest

from openmaas.engine import build


def tree(root: Path) -> Path:
    for relative, old, _ in build.PATCHES:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        before = path.read_text() if path.exists() else ""
        path.write_text(f"{before}// before\n{old}\n// after\n")
    return root


def test_every_patch_replaces_its_snippet(tmp_path: Path) -> None:
    src = tree(tmp_path)
    build.patch(src)
    for relative, old, new in build.PATCHES:
        text = (src / relative).read_text()
        assert new in text
        assert "GGML_CPU_BATCH_INVARIANT" in (src / "ggml/src/ggml-cpu/ggml-cpu.cpp").read_text()
        if old not in new:
            assert old not in text


def test_a_snippet_that_moved_stops_the_build(tmp_path: Path) -> None:
    src = tree(tmp_path)
    relative, old, _ = build.PATCHES[-1]
    (src / relative).write_text((src / relative).read_text().replace(old, "something else"))
    with pytest.raises(RuntimeError, match="does not apply"):
        build.patch(src)


def test_a_snippet_found_twice_stops_the_build(tmp_path: Path) -> None:
    src = tree(tmp_path)
    relative, old, _ = build.PATCHES[-1]
    (src / relative).write_text((src / relative).read_text() + old)
    with pytest.raises(RuntimeError, match="does not apply"):
        build.patch(src)


def test_the_patches_are_part_of_the_binarys_cache_key(monkeypatch: pytest.MonkeyPatch) -> None:
    key = build.machine_key()
    monkeypatch.setattr(build, "PATCHES", build.PATCHES[:-1])
    assert build.machine_key() != key
