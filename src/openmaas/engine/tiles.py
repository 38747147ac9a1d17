"""Tiled batch products for the batch-invariant switch: a verified draft at ~0.6 of the cost, the same bits.

Under ``GGML_CPU_BATCH_INVARIANT`` ggml's CPU backend computes every matrix product with its per-element
``vec_dot`` (engine.patches): invariant, but a batch of n columns then costs n single-column passes — each one
unpacks the same 4-bit weights and converts the same scales again. For the two weight types with no faster
batch kernel in ggml's CPU backend that the embedded model uses (Q4_1 layers, a Q8_0 output matrix; Q8_0's
llamafile sgemm is off under the switch), these patches add tiles of 4 rows × up to 3 columns that unpack a
block once per row and a column's scales once per block, and compute each output element with exactly
``vec_dot``'s arithmetic: the same integer dot product (exact), the same ``d0 × d1`` product, the same FMA
chain over the blocks in order, the same horizontal sum, and for Q4_1 the same ``m × s`` term — which
``vec_dot`` now also writes as an explicit ``fmaf`` (GCC fused it already; explicit, no compiler can differ).
A single column (decode) stays on ``vec_dot`` itself: nothing to share, and the tile was measured no faster.

So a batch gives the bits one column gets (checked against the unpatched build's probabilities: identical,
``tests/real/test_engine_kernels.py``), and a batch token costs ~0.63 of what it did (``bench/kernel_cost.py``,
docs/benchmarks.md §i): verifying an n-gram draft gets that much cheaper, and so does prompt processing on the
invariant kernels. AVX2 only (the tile uses its integer dot products); other CPUs keep ``vec_dot``.
"""

from __future__ import annotations

CPU = "ggml/src/ggml-cpu/"

GEMM = r"""
// Batch-invariant tiled products (OpenMaaS engine build, under GGML_CPU_BATCH_INVARIANT): tiles of 4 rows x up
// to 3 columns share each block's unpacked weights and scales; every output element is computed with exactly
// the arithmetic of ggml_vec_dot_q4_1_q8_1 / ggml_vec_dot_q8_0_q8_0 above (the same products, the same FMA
// chain in block order, the same horizontal sum), so a batch gives the bits a single column gets from vec_dot.
#if defined(__AVX2__)
#define GGML_INV_R 4
#define GGML_INV_C 3

static inline __attribute__((always_inline)) void ggml_inv_tile_q4_1(const int nb, const int R, const int C,
        const char * GGML_RESTRICT x, const size_t bx, const char * GGML_RESTRICT y, const size_t by,
        float * GGML_RESTRICT s, const size_t bs) {
    __m256 acc[GGML_INV_R][GGML_INV_C];
    __m128 summs[GGML_INV_C];
    for (int c = 0; c < C; c++) {
        summs[c] = _mm_setzero_ps();
        for (int r = 0; r < R; r++) {
            acc[r][c] = _mm256_setzero_ps();
        }
    }
    for (int ib = 0; ib < nb; ++ib) {
        const block_q8_1 * yb[GGML_INV_C];
        __m256 d1[GGML_INV_C];
#define GGML_INV_M(r) (R > (r) ? GGML_CPU_FP16_TO_FP32(((const block_q4_1 *)(x + (r)*bx) + ib)->m) : 0.0f)
        const __m128 mv = _mm_setr_ps(GGML_INV_M(0), GGML_INV_M(1), GGML_INV_M(2), GGML_INV_M(3));
#undef GGML_INV_M
        for (int c = 0; c < C; c++) {
            yb[c] = (const block_q8_1 *)(y + c*by) + ib;
            d1[c] = _mm256_set1_ps(GGML_CPU_FP16_TO_FP32(yb[c]->d));
            summs[c] = _mm_fmadd_ps(mv, _mm_set1_ps(GGML_CPU_FP16_TO_FP32(yb[c]->s)), summs[c]);
        }
        for (int r = 0; r < R; r++) {
            const block_q4_1 * xb = (const block_q4_1 *)(x + r*bx) + ib;
            const __m256 d0 = _mm256_set1_ps(GGML_CPU_FP16_TO_FP32(xb->d));
            const __m256i qx = bytes_from_nibbles_32(xb->qs);
            for (int c = 0; c < C; c++) {
                const __m256 xy = mul_sum_us8_pairs_float(qx, _mm256_loadu_si256((const __m256i *)yb[c]->qs));
                acc[r][c] = _mm256_fmadd_ps(_mm256_mul_ps(d0, d1[c]), xy, acc[r][c]);
            }
        }
    }
    for (int c = 0; c < C; c++) {
        float sm[4];
        _mm_storeu_ps(sm, summs[c]);
        for (int r = 0; r < R; r++) {
            s[c*bs + r] = hsum_float_8(acc[r][c]) + sm[r];
        }
    }
}

static inline __attribute__((always_inline)) void ggml_inv_tile_q8_0(const int nb, const int R, const int C,
        const char * GGML_RESTRICT x, const size_t bx, const char * GGML_RESTRICT y, const size_t by,
        float * GGML_RESTRICT s, const size_t bs) {
    __m256 acc[GGML_INV_R][GGML_INV_C];
    for (int c = 0; c < C; c++) {
        for (int r = 0; r < R; r++) {
            acc[r][c] = _mm256_setzero_ps();
        }
    }
    for (int ib = 0; ib < nb; ++ib) {
        const block_q8_0 * yb[GGML_INV_C];
        float d1[GGML_INV_C];
        for (int c = 0; c < C; c++) {
            yb[c] = (const block_q8_0 *)(y + c*by) + ib;
            d1[c] = GGML_CPU_FP16_TO_FP32(yb[c]->d);
        }
        for (int r = 0; r < R; r++) {
            const block_q8_0 * xb = (const block_q8_0 *)(x + r*bx) + ib;
            const float d0 = GGML_CPU_FP16_TO_FP32(xb->d);
            const __m256i qx = _mm256_loadu_si256((const __m256i *)xb->qs);
            for (int c = 0; c < C; c++) {
                const __m256 q = mul_sum_i8_pairs_float(qx, _mm256_loadu_si256((const __m256i *)yb[c]->qs));
                acc[r][c] = _mm256_fmadd_ps(_mm256_set1_ps(d0 * d1[c]), q, acc[r][c]);
            }
        }
    }
    for (int c = 0; c < C; c++) {
        for (int r = 0; r < R; r++) {
            s[c*bs + r] = hsum_float_8(acc[r][c]);
        }
    }
}

#define GGML_INV_SWEEP(tile)                                                                             \
    for (int64_t c0 = 0; c0 < nc; c0 += GGML_INV_C) {                                                  \
        const int C = nc - c0 < GGML_INV_C ? (int)(nc - c0) : GGML_INV_C;                              \
        const char * yc = y + c0*by;                                                                   \
        float * sc = s + c0*bs;                                                                        \
        int64_t r0 = 0;                                                                                \
        for (; r0 + GGML_INV_R <= nr; r0 += GGML_INV_R) {                                              \
            if (C == 3) tile(nb, GGML_INV_R, 3, x + r0*bx, bx, yc, by, sc + r0, bs);                   \
            else if (C == 2) tile(nb, GGML_INV_R, 2, x + r0*bx, bx, yc, by, sc + r0, bs);              \
            else tile(nb, GGML_INV_R, 1, x + r0*bx, bx, yc, by, sc + r0, bs);                          \
        }                                                                                              \
        for (; r0 < nr; r0++) {                                                                        \
            if (C == 3) tile(nb, 1, 3, x + r0*bx, bx, yc, by, sc + r0, bs);                            \
            else if (C == 2) tile(nb, 1, 2, x + r0*bx, bx, yc, by, sc + r0, bs);                       \
            else tile(nb, 1, 1, x + r0*bx, bx, yc, by, sc + r0, bs);                                   \
        }                                                                                              \
    }

bool ggml_gemm_invariant(enum ggml_type type, int n, int64_t nr, int64_t nc, const char * x, size_t bx,
                         const char * y, size_t by, float * s, size_t bs);

// s[c*bs + r] = row r of x (stride bx) . column c of y (stride by), for nr rows and nc columns of n values;
// false for a type without an invariant tile here (the caller takes the per-element vec_dot then).
bool ggml_gemm_invariant(enum ggml_type type, int n, int64_t nr, int64_t nc, const char * x, size_t bx,
                         const char * y, size_t by, float * s, size_t bs) {
    const int nb = n / QK8_0;
    if (n % QK8_0 != 0 || nc < 2) {  // one column: the vec_dot itself (the same bits, no tile to share)
        return false;
    }
    if (type == GGML_TYPE_Q4_1) {
        GGML_INV_SWEEP(ggml_inv_tile_q4_1)
        return true;
    }
    if (type == GGML_TYPE_Q8_0) {
        GGML_INV_SWEEP(ggml_inv_tile_q8_0)
        return true;
    }
    return false;
}
#endif

"""

HOOK_AFTER = """\
    if (ir0_start >= ir0_end || ir1_start >= ir1_end) {
        return;
    }

    const void * wdata = (src1->type == vec_dot_type) ? src1->data : params->wdata;
    const size_t row_size = ggml_row_size(vec_dot_type, ne10);
"""

HOOK = """
#if defined(__AVX2__)
    // batch-invariant tiles: each element with vec_dot's own arithmetic (arch/x86/quants.c)
    if (params->use_ref && ne02 == 1 && ne03 == 1 && ne12 == 1 && ne13 == 1 &&
        (src1_cont || src1->type != vec_dot_type) &&
        ggml_gemm_invariant(type, ne00, ir0_end - ir0_start, ir1_end - ir1_start,
                            (const char *)src0->data + ir0_start*nb01, nb01, (const char *)wdata + ir1_start*row_size,
                            row_size, (float *)((char *)dst->data + ir1_start*nb1) + ir0_start, nb1/sizeof(float))) {
        return;
    }
#endif
"""

DECLARATION = (
    "\n#if defined(__AVX2__)\nbool ggml_gemm_invariant(enum ggml_type type, int n, int64_t nr, int64_t nc, "
    "const char * x, size_t bx, const char * y, size_t by, float * s, size_t bs);\n#endif\n"
)

SUMMS = """\
        const float d1 = GGML_CPU_FP16_TO_FP32(y[ib].d);

        summs += GGML_CPU_FP16_TO_FP32(x[ib].m) * GGML_CPU_FP16_TO_FP32(y[ib].s);
"""

TILES: tuple[tuple[str, str, str], ...] = (
    (
        CPU + "arch/x86/quants.c",
        SUMMS,
        SUMMS.replace(
            "summs += GGML_CPU_FP16_TO_FP32(x[ib].m) * GGML_CPU_FP16_TO_FP32(y[ib].s);",
            "summs = fmaf(GGML_CPU_FP16_TO_FP32(x[ib].m), GGML_CPU_FP16_TO_FP32(y[ib].s), summs);",
        ),
    ),
    (CPU + "arch/x86/quants.c", "void ggml_vec_dot_mxfp4_q8_0(int n,", GEMM + "void ggml_vec_dot_mxfp4_q8_0(int n,"),
    (CPU + "ggml-cpu.c", '#include "tiled/tiled.h"\n', '#include "tiled/tiled.h"\n' + DECLARATION),
    (CPU + "ggml-cpu.c", HOOK_AFTER, HOOK_AFTER + HOOK),
)
