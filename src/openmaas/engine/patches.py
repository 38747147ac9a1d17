"""Source patches the engine build applies to llama.cpp: batch-invariant CPU kernels that cost no speed.

``GGML_CPU_BATCH_INVARIANT`` in the engine's environment makes every row of a batch come out exactly as the
same row computed alone, so n-gram speculation (a batch of drafted tokens verified at once), continuous
batching with other requests and the thread count can no longer change an answer at temperature 0.
With it ggml's CPU backend takes its reference paths for matrix products (the per-element dot product: no
llamafile sgemm or tiled kernels, which ggml uses only from two rows up; weight repacking is switched off
by the engine's own ``--no-repack``) and runs flash attention through its tiled kernel for *every* row count,
one query row included. That kernel is invariant by construction: KV tiles start at fixed positions, every
score and every output element is one FMA chain in a fixed order (``simd_gemm``: the same for 1 row or 64),
and the softmax is per row. Two changes make it fit for one row: the products run over the tile's real rows
instead of 64 padded ones, and the transposed K tile is packed 8×8 with F16C instead of element by element
(exact conversions; the scalar loop cost ~35 % of a decode step at 3.5 k cached tokens). Measured
(docs/benchmarks.md §i): a batch token and a decode step cost the same as with the fast kernels; without the
two changes ggml's one-row reference attention made a batch token 1.7–2.5× dearer.

Products of the embedded model's weight types (Q4_1, Q8_0) then run in tiles that share each block's unpacking
across columns with ``vec_dot``'s exact arithmetic (engine.tiles): a batch token at ~0.6 of the reference cost.

Each replacement must match exactly once, or the build stops (a new llama.cpp version that moved the code
must not silently lose a patch); the patches are part of the binary's cache key (``build.machine_key``).
Only the standard library is used.
"""

from __future__ import annotations

from pathlib import Path

from openmaas.engine.tiles import TILES

CPU = "ggml/src/ggml-cpu/"

# ggml's CPU backend: the environment variable turns on its reference paths; no llamafile sgemm then.
KERNEL_SWITCH: tuple[tuple[str, str, str], ...] = (
    (CPU + "ggml-cpu.cpp", "#include <cctype>\n", "#include <cctype>\n#include <cstdlib>\n"),
    (
        CPU + "ggml-cpu.cpp",
        "    ctx->use_ref             = false;",
        '    ctx->use_ref             = getenv("GGML_CPU_BATCH_INVARIANT") != NULL;',
    ),
    (
        CPU + "ggml-cpu.c",
        "    if (src1_cont) {\n        for (int64_t i13 = 0; i13 < ne13; i13++)",
        "    if (src1_cont && !params->use_ref) {\n        for (int64_t i13 = 0; i13 < ne13; i13++)",
    ),
    (
        CPU + "ggml-cpu.c",
        "#if GGML_USE_LLAMAFILE\n    if (src1->type != vec_dot_type) {",
        "#if GGML_USE_LLAMAFILE\n    if (src1->type != vec_dot_type && !params->use_ref) {",
    ),
)

PACK_K = """\
// Packs kv_tile rows of an F16 K tile transposed into K_f32[dk][kv], 8 positions x 8 dims at a time (exact
// conversions and data movement only: the same floats as the scalar loop); returns the positions packed.
static int ggml_fa_pack_k_f16_transposed(float * K_f32, const char * k_rows, size_t nb1, int kv_tile, int64_t DK) {
#if defined(__AVX2__) && defined(__F16C__)
    static constexpr int KV_TILE_SZ = ggml_fa_tile_config::KV;
    if (DK % 8 != 0) {
        return 0;
    }
    int tk = 0;
    for (; tk + 8 <= kv_tile; tk += 8) {
        const char * base = k_rows + tk*nb1;
        for (int64_t dk = 0; dk < DK; dk += 8) {
            __m256 r[8];
            for (int i = 0; i < 8; i++) {
                r[i] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(base + i*nb1 + dk*sizeof(ggml_fp16_t))));
            }
            const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]);
            const __m256 t1 = _mm256_unpackhi_ps(r[0], r[1]);
            const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]);
            const __m256 t3 = _mm256_unpackhi_ps(r[2], r[3]);
            const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]);
            const __m256 t5 = _mm256_unpackhi_ps(r[4], r[5]);
            const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]);
            const __m256 t7 = _mm256_unpackhi_ps(r[6], r[7]);
            const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44);
            const __m256 u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
            const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44);
            const __m256 u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
            const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44);
            const __m256 u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
            const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44);
            const __m256 u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
            float * out = K_f32 + dk*KV_TILE_SZ + tk;
            _mm256_storeu_ps(out + 0*KV_TILE_SZ, _mm256_permute2f128_ps(u0, u4, 0x20));
            _mm256_storeu_ps(out + 1*KV_TILE_SZ, _mm256_permute2f128_ps(u1, u5, 0x20));
            _mm256_storeu_ps(out + 2*KV_TILE_SZ, _mm256_permute2f128_ps(u2, u6, 0x20));
            _mm256_storeu_ps(out + 3*KV_TILE_SZ, _mm256_permute2f128_ps(u3, u7, 0x20));
            _mm256_storeu_ps(out + 4*KV_TILE_SZ, _mm256_permute2f128_ps(u0, u4, 0x31));
            _mm256_storeu_ps(out + 5*KV_TILE_SZ, _mm256_permute2f128_ps(u1, u5, 0x31));
            _mm256_storeu_ps(out + 6*KV_TILE_SZ, _mm256_permute2f128_ps(u2, u6, 0x31));
            _mm256_storeu_ps(out + 7*KV_TILE_SZ, _mm256_permute2f128_ps(u3, u7, 0x31));
        }
    }
    return tk;
#else
    GGML_UNUSED(K_f32); GGML_UNUSED(k_rows); GGML_UNUSED(nb1); GGML_UNUSED(kv_tile); GGML_UNUSED(DK);
    return 0;
#endif
}

"""

TILED = "static void ggml_compute_forward_flash_attn_ext_tiled(\n        const ggml_compute_params * params,"

# Flash attention: the tiled kernel for every row count under the switch, over a tile's real rows only.
ATTENTION: tuple[tuple[str, str, str], ...] = (
    (CPU + "ops.cpp", TILED, PACK_K + TILED),
    (
        CPU + "ops.cpp",
        """\
        bool use_tiled = !use_ref &&
                               (q->type == GGML_TYPE_F32 &&
                                kv_is_f32_or_f16 &&
                                k->type == v->type &&
                                neq1 >= Q_TILE_SZ);""",
        """\
        bool use_tiled = (q->type == GGML_TYPE_F32 &&
                                kv_is_f32_or_f16 &&
                                k->type == v->type &&
                                (use_ref || neq1 >= Q_TILE_SZ));""",
    ),
    (
        CPU + "ops.cpp",
        """\
        memset(VKQ32, 0, Q_TILE_SZ * DV * sizeof(float));
        memset(mask32, 0, Q_TILE_SZ * KV_TILE_SZ * sizeof(float));""",
        """\
        memset(VKQ32, 0, tile_rows * DV * sizeof(float));
        memset(mask32, 0, tile_rows * KV_TILE_SZ * sizeof(float));""",
    ),
    (
        CPU + "ops.cpp",
        """\
            for (int tq = tile_rows; tq < Q_TILE_SZ; tq++) {
                memset(Q_f32 + tq * DK, 0, DK * sizeof(float));
            }
        }

        memset(K_f32, 0, DK * KV_TILE_SZ * sizeof(float));
        memset(V32,   0, KV_TILE_SZ * DV * sizeof(float));""",
        """\
        }

        if (nek1 % KV_TILE_SZ != 0) {  // a partial last tile: its padding must be zeros
            memset(K_f32, 0, DK * KV_TILE_SZ * sizeof(float));
            memset(V32,   0, KV_TILE_SZ * DV * sizeof(float));
        }""",
    ),
    (
        CPU + "ops.cpp",
        """\
            for (int tk = 0; tk < kv_tile; tk++) {
                const char * k_data = (const char *)k->data + (ic + tk)*nbk1 + ik2*nbk2 + ik3*nbk3;
                if (kv_type == GGML_TYPE_F16) {""",
        """\
            const int packed = kv_type == GGML_TYPE_F16 ? ggml_fa_pack_k_f16_transposed(
                K_f32, (const char *)k->data + ic*nbk1 + ik2*nbk2 + ik3*nbk3, nbk1, kv_tile, DK) : 0;
            for (int tk = packed; tk < kv_tile; tk++) {
                const char * k_data = (const char *)k->data + (ic + tk)*nbk1 + ik2*nbk2 + ik3*nbk3;
                if (kv_type == GGML_TYPE_F16) {""",
    ),
    (
        CPU + "ops.cpp",
        """\
            memset(KQ, 0, Q_TILE_SZ * KV_TILE_SZ * sizeof(float));
            simd_gemm(KQ, (const float *)Q_q, K_f32, Q_TILE_SZ, DK, KV_TILE_SZ);
            ggml_vec_scale_f32(Q_TILE_SZ * KV_TILE_SZ, KQ, scale);

            if (logit_softcap != 0.0f) {
                ggml_vec_tanh_f32(Q_TILE_SZ * KV_TILE_SZ, KQ, KQ);
                ggml_vec_scale_f32(Q_TILE_SZ * KV_TILE_SZ, KQ, logit_softcap);
            }

            // Set padded KQ entries to -inf so softmax gives them zero weight
            if (kv_tile < KV_TILE_SZ) {
                for (int tq = 0; tq < Q_TILE_SZ; tq++) {""",
        """\
            memset(KQ, 0, tile_rows * KV_TILE_SZ * sizeof(float));
            simd_gemm(KQ, (const float *)Q_q, K_f32, tile_rows, DK, KV_TILE_SZ);
            ggml_vec_scale_f32(tile_rows * KV_TILE_SZ, KQ, scale);

            if (logit_softcap != 0.0f) {
                ggml_vec_tanh_f32(tile_rows * KV_TILE_SZ, KQ, KQ);
                ggml_vec_scale_f32(tile_rows * KV_TILE_SZ, KQ, logit_softcap);
            }

            // Set padded KQ entries to -inf so softmax gives them zero weight
            if (kv_tile < KV_TILE_SZ) {
                for (int tq = 0; tq < tile_rows; tq++) {""",
    ),
    (
        CPU + "ops.cpp",
        "            bool skip[Q_TILE_SZ] = {};\n\n            for (int tq = 0; tq < Q_TILE_SZ; tq++) {",
        "            bool skip[Q_TILE_SZ] = {};\n\n            for (int tq = 0; tq < tile_rows; tq++) {",
    ),
    (
        CPU + "ops.cpp",
        """\
            for (int tq = 0; tq < Q_TILE_SZ; tq++) {
                if (skip[tq]) {
                    memset(KQ + tq * KV_TILE_SZ, 0, KV_TILE_SZ * sizeof(float));
                }
            }
            simd_gemm(VKQ32, KQ, V32, Q_TILE_SZ, KV_TILE_SZ, DV);""",
        """\
            for (int tq = 0; tq < tile_rows; tq++) {
                if (skip[tq]) {
                    memset(KQ + tq * KV_TILE_SZ, 0, KV_TILE_SZ * sizeof(float));
                }
            }
            simd_gemm(VKQ32, KQ, V32, tile_rows, KV_TILE_SZ, DV);""",
    ),
)

# Grouped-query attention: the q heads that share a K/V head become rows of one tile, position by position, and
# whole groups go to one thread — a K/V tile is converted to F32 once for all of them instead of once per head (one
# row per head when decoding: SmolLM2's 9 heads read 3 K/V heads). Each row is computed exactly as before (its own
# Q, mask row, slope, sink and output; the products and the softmax are per row), so the bits do not change; a
# decode step over 3.5 k cached tokens 1.9 → 1.5× the fast kernels' (docs/benchmarks.md §i).
GQA_ROWS_OLD = """\
        // q indices for the start of this tile
        const int iq3 = ir/(neq2*neq1);
        const int iq2 = (ir - iq3*neq2*neq1)/neq1;
        const int iq1 = (ir - iq3*neq2*neq1 - iq2*neq1);

        // Number of valid rows in this tile:
        // - limited by tile size (Q_TILE_SZ)
        // - limited by chunk boundary (ir1 - ir)
        // - limited by head boundary (neq1 - iq1) to avoid crossing into next head
        const int tile_rows = MIN(Q_TILE_SZ, MIN((int)(ir1 - ir), (int)(neq1 - iq1)));
        GGML_ASSERT(tile_rows > 0);

        const uint32_t h = iq2; // head index
"""
GQA_ROWS_OLD += (  # one line upstream
    "        const float slope = (max_bias > 0.0f) ? h < n_head_log2 ? powf(m0, h + 1) : "
    "powf(m1, 2*(h - n_head_log2) + 1) : 1.0f;\n"
)
GQA_ROWS_NEW = """\
        // the q heads that share a K/V head (GQA) are rows of one tile, position by position: a K/V tile is
        // converted once for all of them (one row per head when decoding); each row is computed as before
        const int G    = rk2 == rv2 ? (int) rk2 : 1;
        const int iq3  = ir/(neq2*neq1);
        const int rest = ir - iq3*neq2*neq1;
        const int grp  = rest/(neq1*G);
        const int in_g = rest - grp*neq1*G;
        const int iq2  = grp*G;  // the group's first q head, for its K/V head below

        // Number of valid rows in this tile: tile size, chunk boundary, group boundary
        const int tile_rows = MIN(Q_TILE_SZ, MIN((int)(ir1 - ir), (int)(neq1*G - in_g)));
        GGML_ASSERT(tile_rows > 0);

        int   row_q1[Q_TILE_SZ];
        int   row_q2[Q_TILE_SZ];
        float row_slope[Q_TILE_SZ];
        for (int tq = 0; tq < tile_rows; tq++) {
            row_q1[tq] = (in_g + tq)/G;
            row_q2[tq] = iq2 + (in_g + tq)%G;
            const uint32_t h = row_q2[tq];
            row_slope[tq] = (max_bias > 0.0f) ?
                h < n_head_log2 ? powf(m0, h + 1) : powf(m1, 2*(h - n_head_log2) + 1) : 1.0f;
        }
"""
GQA_GROUPS: tuple[tuple[str, str, str], ...] = (
    (CPU + "ops.cpp", GQA_ROWS_OLD, GQA_ROWS_NEW),
    (
        CPU + "ops.cpp",
        "((iq1 + tq)*nbq1 + iq2*nbq2 + iq3*nbq3)",
        "(row_q1[tq]*nbq1 + row_q2[tq]*nbq2 + iq3*nbq3)",
    ),
    (
        CPU + "ops.cpp",
        "(iq1 + tq)*mask->nb[1] + (iq2%mask->ne[2])*mask->nb[2]",
        "row_q1[tq]*mask->nb[1] + (row_q2[tq]%mask->ne[2])*mask->nb[2]",
    ),
    (
        CPU + "ops.cpp",
        "mask32[tq * KV_TILE_SZ + tk] = slope * GGML_CPU_FP16_TO_FP32(mp_row[ic + tk]);",
        "mask32[tq * KV_TILE_SZ + tk] = row_slope[tq] * GGML_CPU_FP16_TO_FP32(mp_row[ic + tk]);",
    ),
    (
        CPU + "ops.cpp",
        """\
        if (sinks) {
            const float s = ((float *)((char *) sinks->data))[h];

            for (int tq = 0; tq < tile_rows; tq++) {
""",
        """\
        if (sinks) {
            for (int tq = 0; tq < tile_rows; tq++) {
                const float s = ((float *)((char *) sinks->data))[row_q2[tq]];
""",
    ),
    (
        CPU + "ops.cpp",
        "            const int i1 = iq1 + tq;\n            const int i2 = iq2;\n",
        "            const int i1 = row_q1[tq];\n            const int i2 = row_q2[tq];\n",
    ),
    (
        CPU + "ops.cpp",
        """\
        int nth_scaled = nth * 4;
        int64_t chunk_size = (nr + nth_scaled - 1) / nth_scaled;
""",
        """\
        int nth_scaled = nth * 4;
        int64_t chunk_size = (nr + nth_scaled - 1) / nth_scaled;
        if (use_ref && nek2 > 0 && neq2 % nek2 == 0 && nev2 == nek2) {  // whole GQA groups: K/V converted once
            const int64_t G = neq2/nek2;
            chunk_size = (chunk_size + G - 1)/G*G;
        }
""",
    ),
)

PATCHES: tuple[tuple[str, str, str], ...] = KERNEL_SWITCH + ATTENTION + GQA_GROUPS + TILES


def patch(src: Path) -> None:
    """Apply ``PATCHES`` to an extracted llama.cpp tree; each must match exactly once (a new version that moved
    the code fails the build instead of silently losing the patch)."""
    for relative, old, new in PATCHES:
        path = src / relative
        text = path.read_text()
        if text.count(old) != 1:
            raise RuntimeError(f"patch does not apply to {relative}: {old!r}")
        path.write_text(text.replace(old, new))
