// Depthwise convolution with 8 channels in the SIMD lanes, for small planes: the NCHW row kernels (zoo_dw_plane)
// keep one channel per call, and on a 7×7 or 14×14 plane each row is one or two 8-column blocks whose 9-tap FMA
// chain is bound by the FMA latency, plus a staging copy and a call per channel. Here 8 channels' planes are
// transposed (8 × 8 blocks) into one zero-padded buffer S[row][col][8 channels], every output position is then
// bias + 9 independent-position FMAs on full vectors (4 positions in flight), and each output row is transposed back
// to the 8 planes. Per element the same bias-then-taps FMA chain in (ky, kx) order as zoo_dw_plane and the
// reference, so the results are bit-identical. Only AVX2 + FMA instructions: used at both SIMD levels.
#include "CZooKernels.h"
#include <immintrin.h>
#include "avx2_common.h"

static void dwc_dims(const zoo_dwc_geom *g, ptrdiff_t *rowsP, ptrdiff_t *colsP) {
    *rowsP = (ptrdiff_t)(g->outH - 1) * g->strideH + (ptrdiff_t)(g->kH - 1) * g->dilH + 1;
    *colsP = (ptrdiff_t)(g->outW - 1) * g->strideW + (ptrdiff_t)(g->kW - 1) * g->dilW + 1;
}

size_t zoo_dwc_scratch_floats(const zoo_dwc_geom *g) {
    ptrdiff_t rowsP, colsP;
    dwc_dims(g, &rowsP, &colsP);
    const ptrdiff_t outCols = (g->outW + 7) / 8 * 8;
    // S, O, the weights W (8 per tap) and the tap offsets (one ptrdiff_t, 2 floats, per tap; not on the stack: the
    // kernel size comes from the model).
    return (size_t)(rowsP * colsP * 8 + outCols * 8 + (ptrdiff_t)g->kH * g->kW * 10 + 8);
}

// r[0..7] (lanes = 8 consecutive columns of 8 rows) → r[k] = column k across the 8 rows.
ZK_AVX2 static inline void dwc_transpose8(__m256 r[8]) {
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
    r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
    r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

ZK_AVX2 static void dwc_avx2(int nch, const float *x, ptrdiff_t xcs, const float *wk, const float *bias,
                             const zoo_dwc_geom *g, int clamp, float lo, float hi, float *y, ptrdiff_t ycs, float *scratch) {
    ptrdiff_t rowsP, colsP;
    dwc_dims(g, &rowsP, &colsP);
    const int taps = g->kH * g->kW;
    const ptrdiff_t inW = g->inW, inH = g->inH, outW = g->outW, outH = g->outH;
    const ptrdiff_t outCols = (outW + 7) / 8 * 8;
    float *S = scratch, *O = scratch + rowsP * colsP * 8, *W = O + outCols * 8;
    ptrdiff_t *op = (ptrdiff_t *)(W + taps * 8);  // 8-byte aligned: every region above is a multiple of 8 floats
    const float *src[8];
    float *dst[8];
    for (int i = 0; i < 8; i++) {
        src[i] = x + (i < nch ? i : 0) * xcs;
        dst[i] = y + (i < nch ? i : 0) * ycs;
    }
    // Weights per tap and bias with the channels in the lanes (0 past nch).
    for (int t = 0; t < taps; t++)
        for (int i = 0; i < 8; i++) W[t * 8 + i] = i < nch ? wk[(ptrdiff_t)i * taps + t] : 0.0f;
    float bl[8];
    for (int i = 0; i < 8; i++) bl[i] = i < nch && bias ? bias[i] : 0.0f;
    const __m256 vb = _mm256_loadu_ps(bl), zero = _mm256_setzero_ps();

    // Stage: padded rows py = r + padTop, columns px = c + padLeft, zeros elsewhere.
    const ptrdiff_t c0 = g->padLeft < 0 ? -g->padLeft : 0;  // first input column staged
    ptrdiff_t c1 = colsP - g->padLeft;                      // one past the last
    if (c1 > inW) c1 = inW;
    const ptrdiff_t planeEnd = inH * inW;
    for (ptrdiff_t py = 0; py < rowsP; py++) {
        float *srow = S + py * colsP * 8;
        const ptrdiff_t r = py - g->padTop;
        if (r < 0 || r >= inH || c0 >= c1) {
            for (ptrdiff_t px = 0; px < colsP; px++) _mm256_storeu_ps(srow + px * 8, zero);
            continue;
        }
        const ptrdiff_t p0 = c0 + g->padLeft, p1 = c1 + g->padLeft;
        for (ptrdiff_t px = 0; px < p0; px++) _mm256_storeu_ps(srow + px * 8, zero);
        for (ptrdiff_t px = p1; px < colsP; px++) _mm256_storeu_ps(srow + px * 8, zero);
        for (ptrdiff_t c = c0; c < c1; c += 8) {
            const ptrdiff_t cnt = c1 - c < 8 ? c1 - c : 8, at = r * inW + c;
            __m256 v[8];
            if (at + 8 <= planeEnd) {
                for (int i = 0; i < 8; i++) v[i] = _mm256_loadu_ps(src[i] + at);
            } else {
                const __m256i m = zk_mask8(cnt);
                for (int i = 0; i < 8; i++) v[i] = _mm256_maskload_ps(src[i] + at, m);
            }
            dwc_transpose8(v);
            float *d = srow + (c + g->padLeft) * 8;
            for (int k = 0; k < cnt; k++) _mm256_storeu_ps(d + k * 8, v[k]);
        }
    }

    for (int ky = 0; ky < g->kH; ky++)
        for (int kx = 0; kx < g->kW; kx++) op[ky * g->kW + kx] = ((ptrdiff_t)ky * g->dilH * colsP + (ptrdiff_t)kx * g->dilW) * 8;
    const ptrdiff_t sx = (ptrdiff_t)g->strideW * 8;
    const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
    const ptrdiff_t planeOut = outH * outW;
    for (ptrdiff_t oy = 0; oy < outH; oy++) {
        const float *base = S + oy * g->strideH * colsP * 8;
        ptrdiff_t ox = 0;
        for (; ox + 4 <= outW; ox += 4) {
            const float *b0 = base + ox * sx;
            __m256 a0 = vb, a1 = vb, a2 = vb, a3 = vb;
            for (int t = 0; t < taps; t++) {
                const __m256 wt = _mm256_loadu_ps(W + t * 8);
                const float *p = b0 + op[t];
                a0 = _mm256_fmadd_ps(wt, _mm256_loadu_ps(p), a0);
                a1 = _mm256_fmadd_ps(wt, _mm256_loadu_ps(p + sx), a1);
                a2 = _mm256_fmadd_ps(wt, _mm256_loadu_ps(p + 2 * sx), a2);
                a3 = _mm256_fmadd_ps(wt, _mm256_loadu_ps(p + 3 * sx), a3);
            }
            if (clamp) {
                a0 = zk_clamp8(a0, vlo, vhi);
                a1 = zk_clamp8(a1, vlo, vhi);
                a2 = zk_clamp8(a2, vlo, vhi);
                a3 = zk_clamp8(a3, vlo, vhi);
            }
            _mm256_storeu_ps(O + ox * 8, a0);
            _mm256_storeu_ps(O + ox * 8 + 8, a1);
            _mm256_storeu_ps(O + ox * 8 + 16, a2);
            _mm256_storeu_ps(O + ox * 8 + 24, a3);
        }
        for (; ox < outW; ox++) {
            const float *b0 = base + ox * sx;
            __m256 a0 = vb;
            for (int t = 0; t < taps; t++) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(W + t * 8), _mm256_loadu_ps(b0 + op[t]), a0);
            if (clamp) a0 = zk_clamp8(a0, vlo, vhi);
            _mm256_storeu_ps(O + ox * 8, a0);
        }
        // Back to the planes, 8 columns at a time. A partial last block is stored whole when its spill stays inside
        // this call's rows (the following row, written after it), else masked.
        for (ptrdiff_t c = 0; c < outW; c += 8) {
            const ptrdiff_t cnt = outW - c < 8 ? outW - c : 8, at = oy * outW + c;
            __m256 v[8];
            for (int k = 0; k < 8; k++) v[k] = _mm256_loadu_ps(O + (c + k) * 8);  // lanes past cnt: stale, not stored
            dwc_transpose8(v);
            if (cnt == 8 || at + 8 <= planeOut) {
                for (int i = 0; i < nch; i++) _mm256_storeu_ps(dst[i] + at, v[i]);
            } else {
                const __m256i m = zk_mask8(cnt);
                for (int i = 0; i < nch; i++) _mm256_maskstore_ps(dst[i] + at, m, v[i]);
            }
        }
    }
}

int zoo_dwc(int nch, const float *x, ptrdiff_t xcs, const float *wk, const float *bias, const zoo_dwc_geom *g, int clamp,
            float lo, float hi, float *y, ptrdiff_t ycs, float *scratch) {
    if (zoo_kernels_simd() < 1 || nch < 1 || nch > 8) return 0;
    dwc_avx2(nch, x, xcs, wk, bias, g, clamp, lo, hi, y, ycs, scratch);
    return 1;
}
