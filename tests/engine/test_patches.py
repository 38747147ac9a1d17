"""The engine build's source patches: each applied exactly once, or the build stops."""

from __future__ import annotations

from pathlib import Path

import pytest

from openmaas.engine import patches


def tree(root: Path) -> Path:
    for relative, old, _ in patches.PATCHES:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        before = path.read_text() if path.exists() else ""
        path.write_text(f"{before}// before\n{old}\n// after\n")
    return root


def test_every_patch_replaces_its_snippet(tmp_path: Path) -> None:
    src = tree(tmp_path)
    patches.patch(src)
    for relative, old, new in patches.PATCHES:
        text = (src / relative).read_text()
        assert new in text
        if old not in new:
            assert old not in text
    cpu = src / "ggml/src/ggml-cpu"
    assert 'getenv("GGML_CPU_BATCH_INVARIANT")' in (cpu / "ggml-cpu.cpp").read_text()
    ops = (cpu / "ops.cpp").read_text()
    # the tiled attention for every row count under the switch, its products over the real rows only
    assert "(use_ref || neq1 >= Q_TILE_SZ)" in ops
    assert "simd_gemm(KQ, (const float *)Q_q, K_f32, tile_rows, DK, KV_TILE_SZ)" in ops
    assert "simd_gemm(VKQ32, KQ, V32, tile_rows, KV_TILE_SZ, DV)" in ops
    # the packing helper is defined before the kernel that calls it
    assert ops.index("static int ggml_fa_pack_k_f16_transposed") < ops.index("? ggml_fa_pack_k_f16_transposed(")
    # grouped-query attention: a tile's rows are the heads sharing a K/V head, each row with its own q, mask, output
    assert "row_q2[tq] = iq2 + (in_g + tq)%G;" in ops and "const int i2 = row_q2[tq];" in ops
    assert "chunk_size = (chunk_size + G - 1)/G*G;" in ops  # whole groups to a thread
    # the tiled products: defined beside vec_dot, declared before the product that takes them, under the switch
    quants = (cpu / "arch/x86/quants.c").read_text()
    products = (cpu / "ggml-cpu.c").read_text()
    assert "bool ggml_gemm_invariant(" in quants and "ggml_inv_tile_q4_1" in quants and "ggml_inv_tile_q8_0" in quants
    assert products.index("bool ggml_gemm_invariant(") < products.index("params->use_ref && ne02 == 1")
    # vec_dot's m × s term as an explicit fused multiply-add, the tile's own arithmetic for it
    assert "summs = fmaf(" in quants and "summs += " not in quants


@pytest.mark.parametrize("index", range(len(patches.PATCHES)))
def test_a_snippet_that_moved_stops_the_build(tmp_path: Path, index: int) -> None:
    src = tree(tmp_path)
    relative, old, _ = patches.PATCHES[index]
    (src / relative).write_text((src / relative).read_text().replace(old, "something else"))
    with pytest.raises(RuntimeError, match="does not apply"):
        patches.patch(src)


def test_a_snippet_found_twice_stops_the_build(tmp_path: Path) -> None:
    src = tree(tmp_path)
    relative, old, _ = patches.PATCHES[-1]
    (src / relative).write_text((src / relative).read_text() + old)
    with pytest.raises(RuntimeError, match="does not apply"):
        patches.patch(src)
