// AVX2+FMA bodies of the small-convolution training kernels (trainkernels.c, ZooTrainKernels.h) for CPUs without
// AVX-512F (e.g. Zen 3): the same loops with 8-lane vectors and register blocks sized for 16 ymm registers. Chosen at
// run time by the zoo_tc_* entry points; the portable C bodies stay the reference the tests compare against.
#include "CZooKernels.h"
#include "avx2_common.h"

#define TK_AVX2 __attribute__((target("avx2,fma")))
#define TK_INLINE __attribute__((always_inline)) static inline

// ---------------------------------------------------------------------------------------------------------------
// Correlation over staged planes: OB (≤ 6) outputs × VB (≤ 4) vectors of 8 positions per register block, taps
// t0 ..< t1 (those whose reads meet the planes' nonzero range; zoo_tc_tap_range).

TK_INLINE TK_AVX2 void corr_block8(const float *in, ptrdiff_t S, int cin, const ptrdiff_t *off, int taps, int t0, int t1,
                                   const float *wt, int nOut, const int OB, const int VB, float *out, ptrdiff_t outStride) {
    __m256 acc[6][4];
    for (int b = 0; b < OB; b++)
        for (int v = 0; v < VB; v++) acc[b][v] = _mm256_setzero_ps();
    for (int ci = 0; ci < cin; ci++) {
        const float *ip = in + ci * S;
        const float *wp = wt + (ptrdiff_t)ci * taps * nOut;
        for (int t = t0; t < t1; t++) {
            const float *p = ip + off[t];
            const float *wq = wp + (ptrdiff_t)t * nOut;
            __m256 xv[4];
            for (int v = 0; v < VB; v++) xv[v] = _mm256_loadu_ps(p + 8 * v);
            for (int b = 0; b < OB; b++) {
                const __m256 wb = _mm256_broadcast_ss(wq + b);
                for (int v = 0; v < VB; v++) acc[b][v] = _mm256_fmadd_ps(wb, xv[v], acc[b][v]);
            }
        }
    }
    for (int b = 0; b < OB; b++)
        for (int v = 0; v < VB; v++) _mm256_storeu_ps(out + b * outStride + 8 * v, acc[b][v]);
}

#define CORR8_CASE(OB, VB)                                                                                         \
    case (OB) * 8 + (VB):                                                                                          \
        corr_block8(in + 8 * j, S, cin, off, taps, t0, t1, wt + b0, nOut, OB, VB, out + b0 * outStride + 8 * j,    \
                    outStride);                                                                                    \
        break;
#define CORR8_CASES(OB) CORR8_CASE(OB, 1) CORR8_CASE(OB, 2) CORR8_CASE(OB, 3)

TK_AVX2 void zoo_tc_corr_avx2(const float *in, ptrdiff_t S, int cin, const ptrdiff_t *off, int taps, const float *wt, int nOut,
                              ptrdiff_t nvec, float *out, ptrdiff_t outStride, ptrdiff_t lo, ptrdiff_t hi) {
    const ptrdiff_t n8 = 2 * nvec;
    // Output blocks of 6 × 2 vectors when 6 divides the outputs (lenet's 6: 6 broadcasts and 2 loads per 12 FMAs ran
    // about 1.4× faster than 3 × 4 on the Zen 3), else 3 × 4 when 3 divides them and 4 does not, else 4 × 3.
    const int obMax = nOut % 6 == 0 ? 6 : (nOut % 4 != 0 && nOut % 3 == 0) ? 3 : 4;
    for (int b0 = 0; b0 < nOut; b0 += obMax) {
        const int ob = nOut - b0 < obMax ? nOut - b0 : obMax;
        const ptrdiff_t vbMax = ob == 6 ? 2 : ob == 4 ? 3 : 4;
        for (ptrdiff_t j = 0; j < n8;) {
            const int vb = (int)(n8 - j < vbMax ? n8 - j : vbMax);
            int t0, t1;
            zoo_tc_tap_range(off, taps, 8 * j, 8 * vb, lo, hi, &t0, &t1);
            switch (ob * 8 + vb) {
                CORR8_CASES(1) CORR8_CASE(1, 4) CORR8_CASES(2) CORR8_CASE(2, 4) CORR8_CASES(3) CORR8_CASE(3, 4) CORR8_CASES(4)
                CORR8_CASE(6, 1) CORR8_CASE(6, 2)
            }
            j += vb;
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Weight gradient: OB (≤ 3) outputs × TB (≤ 4) taps of one input channel per register block.

TK_INLINE TK_AVX2 void dw_block8(const float *x, ptrdiff_t xImg, const float *dy, ptrdiff_t dyImg, ptrdiff_t S2, int nimg,
                                 const ptrdiff_t *off, ptrdiff_t nvec, const int OB, const int TB, float *dw, ptrdiff_t dwStride) {
    __m256 acc[3][4];
    for (int b = 0; b < OB; b++)
        for (int t = 0; t < TB; t++) acc[b][t] = _mm256_setzero_ps();
    for (int img = 0; img < nimg; img++) {
        const float *xp = x + img * xImg, *dp = dy + img * dyImg;
        for (ptrdiff_t j = 0; j < 16 * nvec; j += 8) {
            __m256 dv[3];
            for (int b = 0; b < OB; b++) dv[b] = _mm256_loadu_ps(dp + b * S2 + j);
            for (int t = 0; t < TB; t++) {
                const __m256 xv = _mm256_loadu_ps(xp + off[t] + j);
                for (int b = 0; b < OB; b++) acc[b][t] = _mm256_fmadd_ps(dv[b], xv, acc[b][t]);
            }
        }
    }
    for (int b = 0; b < OB; b++)
        for (int t = 0; t < TB; t++) dw[b * dwStride + t] += zk_hsum8(acc[b][t]);
}

#define DW8_CASE(OB, TB)                                                                                           \
    case (OB) * 8 + (TB):                                                                                          \
        dw_block8(x + ci * S, xImg, dy + b0 * S2, dyImg, S2, nimg, off + t0, nvec, OB, TB,                         \
                  dw + ((ptrdiff_t)b0 * cin + ci) * taps + t0, (ptrdiff_t)cin * taps);                             \
        break;
#define DW8_CASES(OB) DW8_CASE(OB, 1) DW8_CASE(OB, 2) DW8_CASE(OB, 3) DW8_CASE(OB, 4)

TK_AVX2 void zoo_tc_dw_avx2(const float *x, ptrdiff_t xImg, ptrdiff_t S, int cin, const float *dy, ptrdiff_t dyImg, ptrdiff_t S2,
                            int nOut, int nimg, const ptrdiff_t *off, int taps, ptrdiff_t nvec, float *dw) {
    for (int b0 = 0; b0 < nOut; b0 += 3) {
        const int ob = nOut - b0 < 3 ? nOut - b0 : 3;
        for (int ci = 0; ci < cin; ci++)
            for (int t0 = 0; t0 < taps;) {
                const int tb = taps - t0 < 4 ? taps - t0 : 4;
                switch (ob * 8 + tb) { DW8_CASES(1) DW8_CASES(2) DW8_CASES(3) }
                t0 += tb;
            }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Channel-vectorized forward: 16 output channels as two ymm halves, PB (≤ 6) pixels of a row per block.

TK_INLINE TK_AVX2 void cvec_fwd_block8(const float *in, const ptrdiff_t *koff, int K, const float *wv, const int PB, float *T) {
    __m256 acc[6][2];
    for (int p = 0; p < PB; p++) acc[p][0] = acc[p][1] = _mm256_setzero_ps();
    for (int k = 0; k < K; k++) {
        const __m256 w0 = _mm256_loadu_ps(wv + 16 * k), w1 = _mm256_loadu_ps(wv + 16 * k + 8);
        const float *r = in + koff[k];
        for (int p = 0; p < PB; p++) {
            const __m256 v = _mm256_broadcast_ss(r + p);
            acc[p][0] = _mm256_fmadd_ps(w0, v, acc[p][0]);
            acc[p][1] = _mm256_fmadd_ps(w1, v, acc[p][1]);
        }
    }
    for (int p = 0; p < PB; p++) {
        _mm256_storeu_ps(T + 16 * p, acc[p][0]);
        _mm256_storeu_ps(T + 16 * p + 8, acc[p][1]);
    }
}

#define CF8_CASE(PB) case PB: cvec_fwd_block8(in + oy * wp + ox, koff, K, wv, PB, T + 16 * (oy * ow + ox)); break;

TK_AVX2 void zoo_tc_cvec_fwd_avx2(const float *in, const ptrdiff_t *koff, int K, const float *wv, ptrdiff_t oh, ptrdiff_t ow,
                                  ptrdiff_t wp, float *T) {
    const ptrdiff_t nb = (ow + 5) / 6, pbMax = (ow + nb - 1) / nb;
    for (ptrdiff_t oy = 0; oy < oh; oy++)
        for (ptrdiff_t ox = 0; ox < ow;) {
            const int pb = (int)(ow - ox < pbMax ? ow - ox : pbMax);
            switch (pb) { CF8_CASE(1) CF8_CASE(2) CF8_CASE(3) CF8_CASE(4) CF8_CASE(5) CF8_CASE(6) }
            ox += pb;
        }
}

// ---------------------------------------------------------------------------------------------------------------
// Channel-vectorized weight gradient: KB (≤ 6) taps × both 8-channel halves per register block, one pixel at a time
// (2 dy loads and KB broadcasts per 2·KB FMAs; the previous one-half × 10 taps × 5 pixels block did one broadcast per
// FMA and ran about 1.3× slower on the Zen 3).

TK_INLINE TK_AVX2 void cvec_dw_block8(const float *x, ptrdiff_t xImg, const ptrdiff_t *koff, const float *dyT, ptrdiff_t dyTImg,
                                      int nimg, ptrdiff_t oh, ptrdiff_t ow, ptrdiff_t wp, const int KB, float *acc) {
    __m256 a[6][2];
    for (int k = 0; k < KB; k++) a[k][0] = a[k][1] = _mm256_setzero_ps();
    for (int img = 0; img < nimg; img++) {
        const float *xi = x + img * xImg, *d = dyT + img * dyTImg;
        for (ptrdiff_t oy = 0; oy < oh; oy++) {
            const float *xr = xi + oy * wp;
            for (ptrdiff_t ox = 0; ox < ow; ox++, d += 16) {
                const __m256 d0 = _mm256_loadu_ps(d), d1 = _mm256_loadu_ps(d + 8);
                for (int k = 0; k < KB; k++) {
                    const __m256 v = _mm256_broadcast_ss(xr + koff[k] + ox);
                    a[k][0] = _mm256_fmadd_ps(d0, v, a[k][0]);
                    a[k][1] = _mm256_fmadd_ps(d1, v, a[k][1]);
                }
            }
        }
    }
    for (int k = 0; k < KB; k++) {
        float *o = acc + 16 * k;
        _mm256_storeu_ps(o, _mm256_add_ps(_mm256_loadu_ps(o), a[k][0]));
        _mm256_storeu_ps(o + 8, _mm256_add_ps(_mm256_loadu_ps(o + 8), a[k][1]));
    }
}

#define CD8_CASE(KB) case KB: cvec_dw_block8(x, xImg, koff + k0, dyT, dyTImg, nimg, oh, ow, wp, KB, acc + 16 * k0); break;

TK_AVX2 void zoo_tc_cvec_dw_avx2(const float *x, ptrdiff_t xImg, const ptrdiff_t *koff, int K, const float *dyT, ptrdiff_t dyTImg,
                                 int nimg, ptrdiff_t oh, ptrdiff_t ow, ptrdiff_t wp, float *acc) {
    for (int k0 = 0; k0 < K;) {
        const int kb = K - k0 < 6 ? K - k0 : 6;
        switch (kb) { CD8_CASE(1) CD8_CASE(2) CD8_CASE(3) CD8_CASE(4) CD8_CASE(5) CD8_CASE(6) }
        k0 += kb;
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Sigmoid, copies and sums (the AVX-512F bodies' formulas with 8 lanes).

TK_INLINE TK_AVX2 __m256 sigmoid8(__m256 x) {
    // e = exp(-x) with -x clamped to [-104, 104] (NaN kept: min/max return their second operand on NaN);
    // 2^n applied in two halves so that every factor stays a normal float.
    __m256 t = _mm256_max_ps(_mm256_set1_ps(-104.0f), _mm256_min_ps(_mm256_set1_ps(104.0f), _mm256_sub_ps(_mm256_setzero_ps(), x)));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(t, _mm256_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), t);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187045e-06f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256i ni = _mm256_cvtps_epi32(n), n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
    const __m256i bias = _mm256_set1_epi32(127);
    const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    __m256 e = _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
    // a NaN x: n converts to INT_MIN; keep the NaN (t is NaN there, and so is r and p)
    e = _mm256_blendv_ps(e, t, _mm256_cmp_ps(t, t, _CMP_UNORD_Q));
    return _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

TK_AVX2 void zoo_sigmoid_avx2(const float *x, float *y, ptrdiff_t n) {
    ptrdiff_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256 a = sigmoid8(_mm256_loadu_ps(x + i)), b = sigmoid8(_mm256_loadu_ps(x + i + 8));
        _mm256_storeu_ps(y + i, a);
        _mm256_storeu_ps(y + i + 8, b);
    }
    for (; i < n; i += 8) {
        const __m256i m = zk_mask8(n - i);
        _mm256_maskstore_ps(y + i, m, sigmoid8(_mm256_maskload_ps(x + i, m)));
    }
}

TK_AVX2 void zoo_copy_rows_avx2(const float *src, ptrdiff_t srcRow, ptrdiff_t srcPlane, float *dst, ptrdiff_t dstRow,
                                ptrdiff_t dstPlane, ptrdiff_t planes, ptrdiff_t rows, ptrdiff_t cols, const float *bias) {
    for (ptrdiff_t p = 0; p < planes; p++) {
        const __m256 b = _mm256_set1_ps(bias ? bias[p] : 0.0f);
        for (ptrdiff_t r = 0; r < rows; r++) {
            const float *s = src + p * srcPlane + r * srcRow;
            float *d = dst + p * dstPlane + r * dstRow;
            ptrdiff_t c = 0;
            for (; c + 8 <= cols; c += 8) {
                __m256 v = _mm256_loadu_ps(s + c);
                if (bias) v = _mm256_add_ps(v, b);
                _mm256_storeu_ps(d + c, v);
            }
            if (c < cols) {
                const __m256i m = zk_mask8(cols - c);
                __m256 v = _mm256_maskload_ps(s + c, m);
                if (bias) v = _mm256_add_ps(v, b);
                _mm256_maskstore_ps(d + c, m, v);
            }
        }
    }
}

TK_AVX2 float zoo_sum_avx2(const float *x, ptrdiff_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    ptrdiff_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_add_ps(a0, _mm256_loadu_ps(x + i));
        a1 = _mm256_add_ps(a1, _mm256_loadu_ps(x + i + 8));
        a2 = _mm256_add_ps(a2, _mm256_loadu_ps(x + i + 16));
        a3 = _mm256_add_ps(a3, _mm256_loadu_ps(x + i + 24));
    }
    for (; i < n; i += 8) a0 = _mm256_add_ps(a0, _mm256_maskload_ps(x + i, zk_mask8(n - i)));
    return zk_hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
}

// ---------------------------------------------------------------------------------------------------------------
// 2×2 stride-2 average pooling, forward and backward (with the sigmoid's backward fused when y is given): the same
// operations in the same order as the portable loops, 8 outputs at a time, the rest by the scalar expressions.

TK_AVX2 void zoo_avgpool2_avx2(const float *x, float *y, ptrdiff_t planes, ptrdiff_t h, ptrdiff_t w, ptrdiff_t oh, ptrdiff_t ow) {
    const __m256 q = _mm256_set1_ps(0.25f);
    for (ptrdiff_t p = 0; p < planes; p++)
        for (ptrdiff_t oy = 0; oy < oh; oy++) {
            const float *r0 = x + (p * h + 2 * oy) * w, *r1 = r0 + w;
            float *d = y + (p * oh + oy) * ow;
            ptrdiff_t ox = 0;
            for (; ox + 8 <= ow; ox += 8) {
                const __m256 a0 = _mm256_loadu_ps(r0 + 2 * ox), a1 = _mm256_loadu_ps(r0 + 2 * ox + 8);
                const __m256 b0 = _mm256_loadu_ps(r1 + 2 * ox), b1 = _mm256_loadu_ps(r1 + 2 * ox + 8);
                __m256 ae, ao, be, bo;
                zk_deinterleave8(a0, a1, &ae, &ao);
                zk_deinterleave8(b0, b1, &be, &bo);
                _mm256_storeu_ps(d + ox, _mm256_mul_ps(_mm256_add_ps(_mm256_add_ps(_mm256_add_ps(ae, ao), be), bo), q));
            }
            for (; ox < ow; ox++) {
                const float *s0 = r0 + 2 * ox, *s1 = r1 + 2 * ox;
                d[ox] = (((s0[0] + s0[1]) + s1[0]) + s1[1]) / 4;
            }
        }
}

TK_AVX2 void zoo_avgpool2_backward_avx2(const float *dy, const float *y, float *dx, ptrdiff_t planes, ptrdiff_t oh, ptrdiff_t ow,
                                        ptrdiff_t h, ptrdiff_t w) {
    const __m256i lo = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3), hi = _mm256_setr_epi32(4, 4, 5, 5, 6, 6, 7, 7);
    const __m256 q = _mm256_set1_ps(0.25f), one = _mm256_set1_ps(1.0f);
    for (ptrdiff_t p = 0; p < planes; p++) {
        const float *d = dy + p * oh * ow;
        float *x = dx + p * h * w;
        const float *yp = y ? y + p * h * w : 0;
        for (ptrdiff_t oy = 0; oy < oh; oy++) {
            const float *dr = d + oy * ow;
            float *r0 = x + 2 * oy * w, *r1 = r0 + w;
            ptrdiff_t ox = 0;
            for (; ox + 8 <= ow; ox += 8) {
                const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(dr + ox), q);
                __m256 a0 = _mm256_permutevar8x32_ps(v, lo), b0 = _mm256_permutevar8x32_ps(v, hi), a1 = a0, b1 = b0;
                if (yp) {
                    const float *y0 = yp + 2 * oy * w + 2 * ox, *y1 = y0 + w;
                    __m256 t;
                    t = _mm256_loadu_ps(y0);     a0 = _mm256_mul_ps(a0, _mm256_mul_ps(t, _mm256_sub_ps(one, t)));
                    t = _mm256_loadu_ps(y0 + 8); b0 = _mm256_mul_ps(b0, _mm256_mul_ps(t, _mm256_sub_ps(one, t)));
                    t = _mm256_loadu_ps(y1);     a1 = _mm256_mul_ps(a1, _mm256_mul_ps(t, _mm256_sub_ps(one, t)));
                    t = _mm256_loadu_ps(y1 + 8); b1 = _mm256_mul_ps(b1, _mm256_mul_ps(t, _mm256_sub_ps(one, t)));
                }
                _mm256_storeu_ps(r0 + 2 * ox, a0);
                _mm256_storeu_ps(r0 + 2 * ox + 8, b0);
                _mm256_storeu_ps(r1 + 2 * ox, a1);
                _mm256_storeu_ps(r1 + 2 * ox + 8, b1);
            }
            for (; ox < ow; ox++) {
                const float v = dr[ox] / 4;
                for (int a = 0; a < 2; a++)
                    for (int b = 0; b < 2; b++) {
                        const ptrdiff_t i = (2 * oy + a) * w + 2 * ox + b;
                        x[i] = yp ? v * (yp[i] * (1 - yp[i])) : v;
                    }
            }
            for (ptrdiff_t c = 2 * ow; c < w; c++) {
                r0[c] = yp ? 0.0f * (yp[2 * oy * w + c] * (1 - yp[2 * oy * w + c])) : 0;
                r1[c] = yp ? 0.0f * (yp[(2 * oy + 1) * w + c] * (1 - yp[(2 * oy + 1) * w + c])) : 0;
            }
        }
        for (ptrdiff_t r = 2 * oh; r < h; r++)
            for (ptrdiff_t c = 0; c < w; c++) x[r * w + c] = yp ? 0.0f * (yp[r * w + c] * (1 - yp[r * w + c])) : 0;
    }
}
