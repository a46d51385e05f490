// Winograd F(4×4,3×3) and F(2×2,3×3) tile transforms in AVX-512F, one row of tiles at a time (function-level target
// attributes, chosen at run time; the Swift SIMD4 code in Winograd.swift stays as the portable path and reference).
//
// The transforms are separable: V = Bᵀ d B and Y = Aᵀ M A. The stage that combines rows works on contiguous
// vectors. The stage that combines columns needs element j of every tile (stride m floats): 16 tiles are read as
// contiguous vectors and deinterleaved with two-source permutes (and interleaved back the same way on output);
// the two overlap columns of the next tile come from a one-lane shift.
#include "CZooKernels.h"
#include <immintrin.h>

#define ZW_MAX_TILES 512

// Two-source permute indices: even / odd lanes of a:b, and the low / high halves of a and b interleaved.
#define IDX_EVEN _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0)
#define IDX_ODD _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1)
#define IDX_ILO _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0)
#define IDX_IHI _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8)

__attribute__((target("avx512f"), always_inline)) static inline __m512 shift1(__m512 v, float next) {
    // lanes 1..15 of v, then `next`
    return _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512(_mm512_set1_ps(next)), _mm512_castps_si512(v), 1));
}

__attribute__((target("avx512f"), always_inline)) static inline __mmask16 lanes(int n) {
    return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1);
}

// ---------------------------------------------------------------------------------------------------------------
// Input transform

__attribute__((target("avx512f"))) static void
input4(const float *rows, ptrdiff_t rowStride, int tiles, float *out, ptrdiff_t outStride, float *t) {
    const int width = 4 * tiles + 2;                 // columns the tiles read
    const int blocks = (tiles + 15) / 16;
    const ptrdiff_t tStride = (ptrdiff_t)blocks * 64 + 16;
    // Rows: t[i][c] = Σ_k Bᵀ[i][k] d[k][c]; zeros past `width` so the column stage can read whole blocks.
    for (ptrdiff_t c = 0; c < tStride; c += 16) {
        const __mmask16 mk = c >= width ? 0 : lanes(width - (int)c);
        const __m512 d0 = _mm512_maskz_loadu_ps(mk, rows + c), d1 = _mm512_maskz_loadu_ps(mk, rows + rowStride + c);
        const __m512 d2 = _mm512_maskz_loadu_ps(mk, rows + 2 * rowStride + c), d3 = _mm512_maskz_loadu_ps(mk, rows + 3 * rowStride + c);
        const __m512 d4 = _mm512_maskz_loadu_ps(mk, rows + 4 * rowStride + c), d5 = _mm512_maskz_loadu_ps(mk, rows + 5 * rowStride + c);
        const __m512 four = _mm512_set1_ps(4), five = _mm512_set1_ps(5), two = _mm512_set1_ps(2);
        const __m512 t0 = _mm512_fnmadd_ps(four, d2, d4), t1 = _mm512_fnmadd_ps(four, d1, d3);
        const __m512 t2 = _mm512_sub_ps(d4, d2), t3 = _mm512_mul_ps(two, _mm512_sub_ps(d3, d1));
        _mm512_storeu_ps(t + c, _mm512_add_ps(_mm512_fnmadd_ps(five, d2, _mm512_mul_ps(four, d0)), d4));
        _mm512_storeu_ps(t + tStride + c, _mm512_add_ps(t0, t1));
        _mm512_storeu_ps(t + 2 * tStride + c, _mm512_sub_ps(t0, t1));
        _mm512_storeu_ps(t + 3 * tStride + c, _mm512_add_ps(t2, t3));
        _mm512_storeu_ps(t + 4 * tStride + c, _mm512_sub_ps(t2, t3));
        _mm512_storeu_ps(t + 5 * tStride + c, _mm512_add_ps(_mm512_fnmadd_ps(five, d3, _mm512_mul_ps(four, d1)), d5));
    }
    // Columns: V[i][j][tile] = Σ_k t[i][4·tile + k] B[k][j]
    const __m512i ev = IDX_EVEN, od = IDX_ODD;
    const __m512 four = _mm512_set1_ps(4), five = _mm512_set1_ps(5), two = _mm512_set1_ps(2);
    for (int i = 0; i < 6; i++) {
        const float *ti = t + i * tStride;
        float *o = out + (ptrdiff_t)(i * 6) * outStride;
        for (int b = 0; b < blocks; b++) {
            const float *p = ti + b * 64;
            const __m512 v0 = _mm512_loadu_ps(p), v1 = _mm512_loadu_ps(p + 16), v2 = _mm512_loadu_ps(p + 32), v3 = _mm512_loadu_ps(p + 48);
            const __m512 ae = _mm512_permutex2var_ps(v0, ev, v1), ao = _mm512_permutex2var_ps(v0, od, v1);
            const __m512 be = _mm512_permutex2var_ps(v2, ev, v3), bo = _mm512_permutex2var_ps(v2, od, v3);
            const __m512 e0 = _mm512_permutex2var_ps(ae, ev, be), e2 = _mm512_permutex2var_ps(ae, od, be);
            const __m512 e1 = _mm512_permutex2var_ps(ao, ev, bo), e3 = _mm512_permutex2var_ps(ao, od, bo);
            const __m512 e4 = shift1(e0, p[64]), e5 = shift1(e1, p[65]);
            const __m512 t0 = _mm512_fnmadd_ps(four, e2, e4), t1 = _mm512_fnmadd_ps(four, e1, e3);
            const __m512 t2 = _mm512_sub_ps(e4, e2), t3 = _mm512_mul_ps(two, _mm512_sub_ps(e3, e1));
            const __mmask16 mk = lanes(tiles - 16 * b);
            float *ob = o + 16 * b;
            _mm512_mask_storeu_ps(ob, mk, _mm512_add_ps(_mm512_fnmadd_ps(five, e2, _mm512_mul_ps(four, e0)), e4));
            _mm512_mask_storeu_ps(ob + outStride, mk, _mm512_add_ps(t0, t1));
            _mm512_mask_storeu_ps(ob + 2 * outStride, mk, _mm512_sub_ps(t0, t1));
            _mm512_mask_storeu_ps(ob + 3 * outStride, mk, _mm512_add_ps(t2, t3));
            _mm512_mask_storeu_ps(ob + 4 * outStride, mk, _mm512_sub_ps(t2, t3));
            _mm512_mask_storeu_ps(ob + 5 * outStride, mk, _mm512_add_ps(_mm512_fnmadd_ps(five, e3, _mm512_mul_ps(four, e1)), e5));
        }
    }
}

__attribute__((target("avx512f"))) static void
input2(const float *rows, ptrdiff_t rowStride, int tiles, float *out, ptrdiff_t outStride, float *t) {
    const int width = 2 * tiles + 2;
    const int blocks = (tiles + 15) / 16;
    const ptrdiff_t tStride = (ptrdiff_t)blocks * 32 + 16;
    for (ptrdiff_t c = 0; c < tStride; c += 16) {
        const __mmask16 mk = c >= width ? 0 : lanes(width - (int)c);
        const __m512 d0 = _mm512_maskz_loadu_ps(mk, rows + c), d1 = _mm512_maskz_loadu_ps(mk, rows + rowStride + c);
        const __m512 d2 = _mm512_maskz_loadu_ps(mk, rows + 2 * rowStride + c), d3 = _mm512_maskz_loadu_ps(mk, rows + 3 * rowStride + c);
        _mm512_storeu_ps(t + c, _mm512_sub_ps(d0, d2));
        _mm512_storeu_ps(t + tStride + c, _mm512_add_ps(d1, d2));
        _mm512_storeu_ps(t + 2 * tStride + c, _mm512_sub_ps(d2, d1));
        _mm512_storeu_ps(t + 3 * tStride + c, _mm512_sub_ps(d1, d3));
    }
    const __m512i ev = IDX_EVEN, od = IDX_ODD;
    for (int i = 0; i < 4; i++) {
        const float *ti = t + i * tStride;
        float *o = out + (ptrdiff_t)(i * 4) * outStride;
        for (int b = 0; b < blocks; b++) {
            const float *p = ti + b * 32;
            const __m512 v0 = _mm512_loadu_ps(p), v1 = _mm512_loadu_ps(p + 16);
            const __m512 e0 = _mm512_permutex2var_ps(v0, ev, v1), e1 = _mm512_permutex2var_ps(v0, od, v1);
            const __m512 e2 = shift1(e0, p[32]), e3 = shift1(e1, p[33]);
            const __mmask16 mk = lanes(tiles - 16 * b);
            float *ob = o + 16 * b;
            _mm512_mask_storeu_ps(ob, mk, _mm512_sub_ps(e0, e2));
            _mm512_mask_storeu_ps(ob + outStride, mk, _mm512_add_ps(e1, e2));
            _mm512_mask_storeu_ps(ob + 2 * outStride, mk, _mm512_sub_ps(e2, e1));
            _mm512_mask_storeu_ps(ob + 3 * outStride, mk, _mm512_sub_ps(e1, e3));
        }
    }
}

int zoo_wino_scratch_floats(int m, int tiles) {
    const int blocks = (tiles + 15) / 16;
    return (m + 2) * (blocks * 16 * m + 16);
}

int zoo_wino_input_row(int m, const float *rows, ptrdiff_t rowStride, int tiles, float *out, ptrdiff_t outStride, float *scratch) {
    if (!zoo_kernels_simd() || tiles < 1 || tiles > ZW_MAX_TILES || (m != 2 && m != 4)) return 0;
    if (zoo_kernels_simd() != 2) {
        if (m == 4) zoo_wino_input4_avx2(rows, rowStride, tiles, out, outStride, scratch);
        else zoo_wino_input2_avx2(rows, rowStride, tiles, out, outStride, scratch);
        return 1;
    }
    if (m == 4) input4(rows, rowStride, tiles, out, outStride, scratch);
    else input2(rows, rowStride, tiles, out, outStride, scratch);
    return 1;
}

// ---------------------------------------------------------------------------------------------------------------
// Output transform

__attribute__((target("avx512f"), always_inline)) static inline void
finish_store(float *y, int count, __m512 v, __m512 vb, int clamp, __m512 vlo, __m512 vhi) {
    if (count <= 0) return;
    v = _mm512_add_ps(v, vb);
    // max/min return their second operand when either is NaN: NaN stays NaN.
    if (clamp) v = _mm512_min_ps(vhi, _mm512_max_ps(vlo, v));
    _mm512_mask_storeu_ps(y, lanes(count), v);
}

__attribute__((target("avx512f"))) static void
output4(const float *M, ptrdiff_t mStride, int tiles, float bias, int clamp, float lo, float hi, float *y, ptrdiff_t yStride,
        int outW, int rows) {
    const int blocks = (tiles + 15) / 16;
    const __m512 vb = _mm512_set1_ps(bias), vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
    const __m512 two = _mm512_set1_ps(2), four = _mm512_set1_ps(4), eight = _mm512_set1_ps(8);
    const __m512i il = IDX_ILO, ih = IDX_IHI;
    for (int b = 0; b < blocks; b++) {
        const __mmask16 mk = lanes(tiles - 16 * b);
        // Rows: s[r][j] = Σ_i Aᵀ[r][i] M[i][j] for this block of 16 tiles
        __m512 s[4][6];
        for (int j = 0; j < 6; j++) {
            const float *mj = M + (ptrdiff_t)j * mStride + 16 * b;
            const __m512 q0 = _mm512_maskz_loadu_ps(mk, mj), q1 = _mm512_maskz_loadu_ps(mk, mj + 6 * mStride);
            const __m512 q2 = _mm512_maskz_loadu_ps(mk, mj + 12 * mStride), q3 = _mm512_maskz_loadu_ps(mk, mj + 18 * mStride);
            const __m512 q4 = _mm512_maskz_loadu_ps(mk, mj + 24 * mStride), q5 = _mm512_maskz_loadu_ps(mk, mj + 30 * mStride);
            const __m512 p12 = _mm512_add_ps(q1, q2), d12 = _mm512_sub_ps(q1, q2), p34 = _mm512_add_ps(q3, q4), d34 = _mm512_sub_ps(q3, q4);
            s[0][j] = _mm512_add_ps(_mm512_add_ps(q0, p12), p34);
            s[1][j] = _mm512_fmadd_ps(two, d34, d12);
            s[2][j] = _mm512_fmadd_ps(four, p34, p12);
            s[3][j] = _mm512_add_ps(_mm512_fmadd_ps(eight, d34, d12), q5);
        }
        // Columns: out[r][4·tile + c] = Σ_j s[r][j] A[j][c], interleaved back to 64 contiguous columns
        for (int r = 0; r < rows; r++) {
            const __m512 p12 = _mm512_add_ps(s[r][1], s[r][2]), d12 = _mm512_sub_ps(s[r][1], s[r][2]);
            const __m512 p34 = _mm512_add_ps(s[r][3], s[r][4]), d34 = _mm512_sub_ps(s[r][3], s[r][4]);
            const __m512 o0 = _mm512_add_ps(_mm512_add_ps(s[r][0], p12), p34);
            const __m512 o1 = _mm512_fmadd_ps(two, d34, d12);
            const __m512 o2 = _mm512_fmadd_ps(four, p34, p12);
            const __m512 o3 = _mm512_add_ps(_mm512_fmadd_ps(eight, d34, d12), s[r][5]);
            const __m512 pl = _mm512_permutex2var_ps(o0, il, o2), ph = _mm512_permutex2var_ps(o0, ih, o2);
            const __m512 ql = _mm512_permutex2var_ps(o1, il, o3), qh = _mm512_permutex2var_ps(o1, ih, o3);
            float *yr = y + r * yStride + 64 * b;
            const int left = outW - 64 * b;
            finish_store(yr, left, _mm512_permutex2var_ps(pl, il, ql), vb, clamp, vlo, vhi);
            finish_store(yr + 16, left - 16, _mm512_permutex2var_ps(pl, ih, ql), vb, clamp, vlo, vhi);
            finish_store(yr + 32, left - 32, _mm512_permutex2var_ps(ph, il, qh), vb, clamp, vlo, vhi);
            finish_store(yr + 48, left - 48, _mm512_permutex2var_ps(ph, ih, qh), vb, clamp, vlo, vhi);
        }
    }
}

__attribute__((target("avx512f"))) static void
output2(const float *M, ptrdiff_t mStride, int tiles, float bias, int clamp, float lo, float hi, float *y, ptrdiff_t yStride,
        int outW, int rows) {
    const int blocks = (tiles + 15) / 16;
    const __m512 vb = _mm512_set1_ps(bias), vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
    const __m512i il = IDX_ILO, ih = IDX_IHI;
    for (int b = 0; b < blocks; b++) {
        const __mmask16 mk = lanes(tiles - 16 * b);
        __m512 s[2][4];
        for (int j = 0; j < 4; j++) {
            const float *mj = M + (ptrdiff_t)j * mStride + 16 * b;
            const __m512 q0 = _mm512_maskz_loadu_ps(mk, mj), q1 = _mm512_maskz_loadu_ps(mk, mj + 4 * mStride);
            const __m512 q2 = _mm512_maskz_loadu_ps(mk, mj + 8 * mStride), q3 = _mm512_maskz_loadu_ps(mk, mj + 12 * mStride);
            s[0][j] = _mm512_add_ps(_mm512_add_ps(q0, q1), q2);
            s[1][j] = _mm512_sub_ps(_mm512_sub_ps(q1, q2), q3);
        }
        for (int r = 0; r < rows; r++) {
            const __m512 o0 = _mm512_add_ps(_mm512_add_ps(s[r][0], s[r][1]), s[r][2]);
            const __m512 o1 = _mm512_sub_ps(_mm512_sub_ps(s[r][1], s[r][2]), s[r][3]);
            float *yr = y + r * yStride + 32 * b;
            const int left = outW - 32 * b;
            finish_store(yr, left, _mm512_permutex2var_ps(o0, il, o1), vb, clamp, vlo, vhi);
            finish_store(yr + 16, left - 16, _mm512_permutex2var_ps(o0, ih, o1), vb, clamp, vlo, vhi);
        }
    }
}

int zoo_wino_output_row(int m, const float *M, ptrdiff_t mStride, int tiles, float bias, int clamp, float lo, float hi,
                        float *y, ptrdiff_t yStride, int outW, int rows) {
    if (!zoo_kernels_simd() || tiles < 1 || tiles > ZW_MAX_TILES || (m != 2 && m != 4) || rows < 1 || rows > m) return 0;
    if (zoo_kernels_simd() != 2) {
        float s[24 * ZW_MAX_TILES];
        if (m == 4) zoo_wino_output4_avx2(M, mStride, tiles, bias, clamp, lo, hi, y, yStride, outW, rows, s);
        else zoo_wino_output2_avx2(M, mStride, tiles, bias, clamp, lo, hi, y, yStride, outW, rows, s);
        return 1;
    }
    if (m == 4) output4(M, mStride, tiles, bias, clamp, lo, hi, y, yStride, outW, rows);
    else output2(M, mStride, tiles, bias, clamp, lo, hi, y, yStride, outW, rows);
    return 1;
}

// ---------------------------------------------------------------------------------------------------------------
// Weight transform U = G g Gᵀ of 3×3 kernels (Fast.winogradTransformWeights is the Swift reference): computed in double
// with the reference's operation order and no contraction into FMAs, so the results are bit-identical to it. Output
// element (i·α + j, oc, ic) at u[(i·α + j)·cStride + oc·ocStride + ic·icStride]; kernels oc0 ..< oc1. AVX-512F takes
// 8 kernels per step (below); elsewhere one kernel at a time (clang left the double loops scalar).
static const double ZW_G2[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
static const double ZW_G4[6][3] = {{1.0 / 4, 0, 0}, {-1.0 / 6, -1.0 / 6, -1.0 / 6}, {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                   {1.0 / 24, 1.0 / 12, 1.0 / 6}, {1.0 / 24, -1.0 / 12, 1.0 / 6}, {0, 0, 1}};

// One kernel g (9 floats) to out[(i·α + j)·cStride].
static void wino_weight_one(const float *g, int A, const double (*G)[3], float *out, ptrdiff_t cStride) {
#pragma clang fp contract(off)
    double t[6][3];
    for (int i = 0; i < A; i++)
        for (int j = 0; j < 3; j++)
            t[i][j] = G[i][0] * (double)g[j] + G[i][1] * (double)g[3 + j] + G[i][2] * (double)g[6 + j];
    for (int i = 0; i < A; i++)
        for (int j = 0; j < A; j++)
            out[(ptrdiff_t)(i * A + j) * cStride] = (float)(t[i][0] * G[j][0] + t[i][1] * G[j][1] + t[i][2] * G[j][2]);
}

static void wino_weights_plain(const float *w, int inC, int m, float *u, ptrdiff_t cStride, ptrdiff_t ocStride,
                               ptrdiff_t icStride, int oc0, int oc1) {
    const int A = m + 2;
    const double (*G)[3] = m == 4 ? ZW_G4 : ZW_G2;
    for (int oc = oc0; oc < oc1; oc++)
        for (int ic = 0; ic < inC; ic++)
            wino_weight_one(w + ((ptrdiff_t)oc * inC + ic) * 9, A, G, u + oc * ocStride + ic * icStride, cStride);
}

// AVX-512F: 8 kernels at a time in double lanes, along whichever of ic / oc has unit output stride (U: ic, Uᵀ: oc),
// their 9 taps gathered (lane stride `ls` floats); same operations per lane as wino_weight_one, so bit-identical.
__attribute__((target("avx512f"))) static void wino_weights8(const float *g, __m256i idx, int A, const double (*G)[3],
                                                             float *out, ptrdiff_t cStride) {
#pragma clang fp contract(off)
    __m512d gv[9], t[6][3];
    for (int k = 0; k < 9; k++) gv[k] = _mm512_cvtps_pd(_mm256_i32gather_ps(g + k, idx, 4));
    for (int i = 0; i < A; i++)
        for (int j = 0; j < 3; j++)
            t[i][j] = _mm512_add_pd(_mm512_add_pd(_mm512_mul_pd(_mm512_set1_pd(G[i][0]), gv[j]),
                                                  _mm512_mul_pd(_mm512_set1_pd(G[i][1]), gv[3 + j])),
                                    _mm512_mul_pd(_mm512_set1_pd(G[i][2]), gv[6 + j]));
    for (int i = 0; i < A; i++)
        for (int j = 0; j < A; j++) {
            const __m512d v = _mm512_add_pd(_mm512_add_pd(_mm512_mul_pd(t[i][0], _mm512_set1_pd(G[j][0])),
                                                          _mm512_mul_pd(t[i][1], _mm512_set1_pd(G[j][1]))),
                                            _mm512_mul_pd(t[i][2], _mm512_set1_pd(G[j][2])));
            _mm256_storeu_ps(out + (ptrdiff_t)(i * A + j) * cStride, _mm512_cvtpd_ps(v));
        }
}

__attribute__((target("avx512f"))) static void wino_weights_avx512(const float *w, int inC, int m, float *u, ptrdiff_t cStride,
                                                                   ptrdiff_t ocStride, ptrdiff_t icStride, int oc0, int oc1) {
    const int A = m + 2;
    const double (*G)[3] = m == 4 ? ZW_G4 : ZW_G2;
    const __m256i lane = _mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0);
    if (icStride == 1) {
        const __m256i idx = _mm256_mullo_epi32(lane, _mm256_set1_epi32(9));
        for (int oc = oc0; oc < oc1; oc++) {
            int ic = 0;
            for (; ic + 8 <= inC; ic += 8)
                wino_weights8(w + ((ptrdiff_t)oc * inC + ic) * 9, idx, A, G, u + oc * ocStride + ic, cStride);
            for (; ic < inC; ic++) wino_weight_one(w + ((ptrdiff_t)oc * inC + ic) * 9, A, G, u + oc * ocStride + ic, cStride);
        }
    } else if (ocStride == 1 && (ptrdiff_t)inC * 9 * 8 < ((ptrdiff_t)1 << 31)) {
        const __m256i idx = _mm256_mullo_epi32(lane, _mm256_set1_epi32(inC * 9));
        int oc = oc0;
        for (; oc + 8 <= oc1; oc += 8)
            for (int ic = 0; ic < inC; ic++)
                wino_weights8(w + ((ptrdiff_t)oc * inC + ic) * 9, idx, A, G, u + oc + ic * icStride, cStride);
        wino_weights_plain(w, inC, m, u, cStride, ocStride, icStride, oc, oc1);
    } else {
        wino_weights_plain(w, inC, m, u, cStride, ocStride, icStride, oc0, oc1);
    }
}

void zoo_wino_weights(const float *w, int inC, int m, float *u, ptrdiff_t cStride, ptrdiff_t ocStride, ptrdiff_t icStride,
                      int oc0, int oc1, int portable) {
    if (!portable && zoo_kernels_simd() == 2) wino_weights_avx512(w, inC, m, u, cStride, ocStride, icStride, oc0, oc1);
    else wino_weights_plain(w, inC, m, u, cStride, ocStride, icStride, oc0, oc1);
}
