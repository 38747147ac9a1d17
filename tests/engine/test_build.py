"""The engine build's cache key: the machine, the cmake flags and the source patches."""

from __future__ import annotations

import pytest

from openmaas.engine import build


def test_the_patches_are_part_of_the_binarys_cache_key(monkeypatch: pytest.MonkeyPatch) -> None:
    key = build.machine_key()
    monkeypatch.setattr(build, "PATCHES", build.PATCHES[:-1])
    assert build.machine_key() != key


def test_the_cmake_flags_are_part_of_the_binarys_cache_key(monkeypatch: pytest.MonkeyPatch) -> None:
    key = build.machine_key()
    monkeypatch.setattr(build, "CMAKE_FLAGS", (*build.CMAKE_FLAGS, "-DGGML_LLAMAFILE=OFF"))
    assert build.machine_key() != key
    assert build.binary_path().parent.name.endswith(build.machine_key())
