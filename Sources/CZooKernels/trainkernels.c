// Training kernels for small convolutions and sigmoid (see ZooTrainKernels.h). AVX-512F bodies use function-level
// target attributes and are chosen at run time (zoo_kernels_avx512); AVX2+FMA bodies of the hot ones are in
// trainkernels_avx2.c (zoo_kernels_simd() == 1); the portable bodies are plain C.
#include "CZooKernels.h"
#include <immintrin.h>
#include <math.h>

#define TK_AVX512 __attribute__((target("avx512f")))
#define TK_INLINE __attribute__((always_inline)) static inline

// ---------------------------------------------------------------------------------------------------------------
// Correlation over staged planes: OB outputs × VB vectors of 16 positions per register block.

TK_INLINE TK_AVX512 void corr_block(const float *in, ptrdiff_t S, int cin, const ptrdiff_t *off, int taps, int t0, int t1,
                                    const float *wt, int nOut, const int OB, const int VB, float *out, ptrdiff_t outStride) {
    __m512 acc[8][4];
    for (int b = 0; b < OB; b++)
        for (int v = 0; v < VB; v++) acc[b][v] = _mm512_setzero_ps();
    for (int ci = 0; ci < cin; ci++) {
        const float *ip = in + ci * S;
        const float *wp = wt + (ptrdiff_t)ci * taps * nOut;
        for (int t = t0; t < t1; t++) {
            const float *p = ip + off[t];
            const float *wq = wp + (ptrdiff_t)t * nOut;
            __m512 xv[4];
            for (int v = 0; v < VB; v++) xv[v] = _mm512_loadu_ps(p + 16 * v);
            for (int b = 0; b < OB; b++) {
                const __m512 wb = _mm512_set1_ps(wq[b]);
                for (int v = 0; v < VB; v++) acc[b][v] = _mm512_fmadd_ps(wb, xv[v], acc[b][v]);
            }
        }
    }
    for (int b = 0; b < OB; b++)
        for (int v = 0; v < VB; v++) _mm512_storeu_ps(out + b * outStride + 16 * v, acc[b][v]);
}

#define CORR_CASE(OB, VB)                                                                                          \
    case (OB) * 8 + (VB):                                                                                          \
        corr_block(in + 16 * j, S, cin, off, taps, t0, t1, wt + b0, nOut, OB, VB, out + b0 * outStride + 16 * j, outStride); \
        break;
#define CORR_CASES(OB) CORR_CASE(OB, 1) CORR_CASE(OB, 2) CORR_CASE(OB, 3) CORR_CASE(OB, 4)

static TK_AVX512 void corr_avx512(const float *in, ptrdiff_t S, int cin, const ptrdiff_t *off, int taps, const float *wt,
                                  int nOut, ptrdiff_t nvec, float *out, ptrdiff_t outStride, ptrdiff_t lo, ptrdiff_t hi) {
    for (int b0 = 0; b0 < nOut; b0 += 8) {
        const int ob = nOut - b0 < 8 ? nOut - b0 : 8;
        const ptrdiff_t vbMax = ob <= 6 ? 4 : 3;
        for (ptrdiff_t j = 0; j < nvec;) {
            const int vb = (int)(nvec - j < vbMax ? nvec - j : vbMax);
            int t0, t1;
            zoo_tc_tap_range(off, taps, 16 * j, 16 * vb, lo, hi, &t0, &t1);
            switch (ob * 8 + vb) {
                CORR_CASES(1) CORR_CASES(2) CORR_CASES(3) CORR_CASES(4)
                CORR_CASES(5) CORR_CASES(6) CORR_CASES(7) CORR_CASES(8)
            }
            j += vb;
        }
    }
}

static void corr_portable(const float *in, ptrdiff_t S, int cin, const ptrdiff_t *off, int taps, const float *wt, int nOut,
                          ptrdiff_t nvec, float *out, ptrdiff_t outStride, ptrdiff_t lo, ptrdiff_t hi) {
    // per 16-position vector, the taps of zoo_tc_tap_range (as the SIMD bodies' blocks, which only add zeros less)
    for (ptrdiff_t v = 0; v < nvec; v++) {
        int t0, t1;
        zoo_tc_tap_range(off, taps, 16 * v, 16, lo, hi, &t0, &t1);
        for (int b = 0; b < nOut; b++) {
            float *o = out + b * outStride + 16 * v;
            for (ptrdiff_t j = 0; j < 16; j++) o[j] = 0;
            for (int ci = 0; ci < cin; ci++)
                for (int t = t0; t < t1; t++) {
                    const float w = wt[((ptrdiff_t)ci * taps + t) * nOut + b];
                    const float *p = in + ci * S + off[t] + 16 * v;
                    for (ptrdiff_t j = 0; j < 16; j++) o[j] += w * p[j];
                }
        }
    }
}

void zoo_tc_tap_range(const ptrdiff_t *off, int taps, ptrdiff_t j, ptrdiff_t span, ptrdiff_t lo, ptrdiff_t hi, int *t0, int *t1) {
    int first = taps, last = -1;
    for (int t = 0; t < taps; t++)
        if (j + off[t] < hi && j + span + off[t] > lo) {
            if (first == taps) first = t;
            last = t;
        }
    *t0 = last < 0 ? 0 : first;
    *t1 = last < 0 ? 0 : last + 1;
}

void zoo_tc_corr(const float *in, ptrdiff_t S, int cin, const ptrdiff_t *off, int taps, const float *wt, int nOut,
                 ptrdiff_t nvec, float *out, ptrdiff_t outStride, ptrdiff_t lo, ptrdiff_t hi, int portable) {
    if (!portable && (zoo_kernels_simd() == 2)) corr_avx512(in, S, cin, off, taps, wt, nOut, nvec, out, outStride, lo, hi);
    else if (!portable && (zoo_kernels_simd() == 1)) zoo_tc_corr_avx2(in, S, cin, off, taps, wt, nOut, nvec, out, outStride, lo, hi);
    else corr_portable(in, S, cin, off, taps, wt, nOut, nvec, out, outStride, lo, hi);
}

// ---------------------------------------------------------------------------------------------------------------
// Weight gradient: OB outputs × TB taps of one input channel per register block, summed over images and positions.

TK_INLINE TK_AVX512 void dw_block(const float *x, ptrdiff_t xImg, const float *dy, ptrdiff_t dyImg, ptrdiff_t S2, int nimg,
                                  const ptrdiff_t *off, ptrdiff_t nvec, const int OB, const int TB, float *dw, ptrdiff_t dwStride) {
    __m512 acc[4][8];
    for (int b = 0; b < OB; b++)
        for (int t = 0; t < TB; t++) acc[b][t] = _mm512_setzero_ps();
    for (int img = 0; img < nimg; img++) {
        const float *xp = x + img * xImg, *dp = dy + img * dyImg;
        for (ptrdiff_t j = 0; j < 16 * nvec; j += 16) {
            __m512 dv[4];
            for (int b = 0; b < OB; b++) dv[b] = _mm512_loadu_ps(dp + b * S2 + j);
            for (int t = 0; t < TB; t++) {
                const __m512 xv = _mm512_loadu_ps(xp + off[t] + j);
                for (int b = 0; b < OB; b++) acc[b][t] = _mm512_fmadd_ps(dv[b], xv, acc[b][t]);
            }
        }
    }
    for (int b = 0; b < OB; b++)
        for (int t = 0; t < TB; t++) dw[b * dwStride + t] += _mm512_reduce_add_ps(acc[b][t]);
}

#define DW_CASE(OB, TB)                                                                                            \
    case (OB) * 16 + (TB):                                                                                         \
        dw_block(x + ci * S, xImg, dy + b0 * S2, dyImg, S2, nimg, off + t0, nvec, OB, TB,                          \
                 dw + ((ptrdiff_t)b0 * cin + ci) * taps + t0, (ptrdiff_t)cin * taps);                              \
        break;
#define DW_CASES(OB) DW_CASE(OB, 1) DW_CASE(OB, 2) DW_CASE(OB, 3) DW_CASE(OB, 4) DW_CASE(OB, 5) DW_CASE(OB, 6) \
    DW_CASE(OB, 7) DW_CASE(OB, 8)

static TK_AVX512 void dw_avx512(const float *x, ptrdiff_t xImg, ptrdiff_t S, int cin, const float *dy, ptrdiff_t dyImg,
                                ptrdiff_t S2, int nOut, int nimg, const ptrdiff_t *off, int taps, ptrdiff_t nvec, float *dw) {
    // Output blocks of 4 (3 when that divides the outputs evenly and 4 does not); as many taps as fit 24 registers.
    const int obMax = (nOut % 4 != 0 && nOut % 3 == 0) ? 3 : 4;
    for (int b0 = 0; b0 < nOut; b0 += obMax) {
        const int ob = nOut - b0 < obMax ? nOut - b0 : obMax;
        const int tbMax = 24 / ob < 8 ? 24 / ob : 8;
        for (int ci = 0; ci < cin; ci++)
            for (int t0 = 0; t0 < taps;) {
                const int tb = taps - t0 < tbMax ? taps - t0 : tbMax;
                switch (ob * 16 + tb) { DW_CASES(1) DW_CASES(2) DW_CASES(3) DW_CASES(4) }
                t0 += tb;
            }
    }
}

static void dw_portable(const float *x, ptrdiff_t xImg, ptrdiff_t S, int cin, const float *dy, ptrdiff_t dyImg, ptrdiff_t S2,
                        int nOut, int nimg, const ptrdiff_t *off, int taps, ptrdiff_t nvec, float *dw) {
    for (int b = 0; b < nOut; b++)
        for (int ci = 0; ci < cin; ci++)
            for (int t = 0; t < taps; t++) {
                float acc = 0;
                for (int img = 0; img < nimg; img++) {
                    const float *d = dy + img * dyImg + b * S2, *p = x + img * xImg + ci * S + off[t];
                    for (ptrdiff_t j = 0; j < 16 * nvec; j++) acc += d[j] * p[j];
                }
                dw[((ptrdiff_t)b * cin + ci) * taps + t] += acc;
            }
}

void zoo_tc_dw(const float *x, ptrdiff_t xImg, ptrdiff_t S, int cin, const float *dy, ptrdiff_t dyImg, ptrdiff_t S2, int nOut,
               int nimg, const ptrdiff_t *off, int taps, ptrdiff_t nvec, float *dw, int portable) {
    if (!portable && (zoo_kernels_simd() == 2)) dw_avx512(x, xImg, S, cin, dy, dyImg, S2, nOut, nimg, off, taps, nvec, dw);
    else if (!portable && (zoo_kernels_simd() == 1)) zoo_tc_dw_avx2(x, xImg, S, cin, dy, dyImg, S2, nOut, nimg, off, taps, nvec, dw);
    else dw_portable(x, xImg, S, cin, dy, dyImg, S2, nOut, nimg, off, taps, nvec, dw);
}

// ---------------------------------------------------------------------------------------------------------------
// Sigmoid.

TK_INLINE TK_AVX512 __m512 sigmoid16(__m512 x) {
    // e = exp(-x) with -x clamped to [-104, 104] (NaN kept: min/max return their second operand on NaN).
    __m512 t = _mm512_max_ps(_mm512_set1_ps(-104.0f), _mm512_min_ps(_mm512_set1_ps(104.0f), _mm512_sub_ps(_mm512_setzero_ps(), x)));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(t, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), t);      // ln2 high part (exact product)
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187045e-06f), r);      // ln2 low part
    __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    const __m512 e = _mm512_scalef_ps(p, n);
    return _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

static TK_AVX512 void sigmoid_avx512(const float *x, float *y, ptrdiff_t n) {
    ptrdiff_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m512 a = sigmoid16(_mm512_loadu_ps(x + i)), b = sigmoid16(_mm512_loadu_ps(x + i + 16));
        _mm512_storeu_ps(y + i, a);
        _mm512_storeu_ps(y + i + 16, b);
    }
    for (; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(y + i, m, sigmoid16(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

void zoo_sigmoid(const float *x, float *y, ptrdiff_t n, int portable) {
    if (!portable && (zoo_kernels_simd() == 2)) { sigmoid_avx512(x, y, n); return; }
    if (!portable && (zoo_kernels_simd() == 1)) { zoo_sigmoid_avx2(x, y, n); return; }
    for (ptrdiff_t i = 0; i < n; i++) y[i] = 1.0f / (1.0f + expf(-x[i]));
}

// ---------------------------------------------------------------------------------------------------------------
// 2×2 stride-2 unpadded average pooling backward: dx[2oy + a][2ox + b] = dy[oy][ox] / 4; rows and columns left out
// by odd sizes get 0.

// With y (the pooled sigmoid's output): dx = (dy / 4) * (y * (1 - y)), the sigmoid's backward fused (same operations
// in the same order as the two passes).
static TK_AVX512 void avgpool2_backward_avx512(const float *dy, const float *y, float *dx, ptrdiff_t planes, ptrdiff_t oh,
                                               ptrdiff_t ow, ptrdiff_t h, ptrdiff_t w) {
    const __m512i lo = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
    const __m512i hi = _mm512_set_epi32(15, 15, 14, 14, 13, 13, 12, 12, 11, 11, 10, 10, 9, 9, 8, 8);
    const __m512 q = _mm512_set1_ps(0.25f), one = _mm512_set1_ps(1.0f);
    for (ptrdiff_t p = 0; p < planes; p++) {
        const float *d = dy + p * oh * ow;
        float *x = dx + p * h * w;
        const float *yp = y ? y + p * h * w : 0;
        for (ptrdiff_t oy = 0; oy < oh; oy++) {
            const float *dr = d + oy * ow;
            float *r0 = x + 2 * oy * w, *r1 = r0 + w;
            ptrdiff_t ox = 0;
            for (; ox < ow; ox += 16) {
                const ptrdiff_t left = ow - ox;
                const __mmask16 m = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
                const __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, dr + ox), q);
                __m512 a0 = _mm512_permutexvar_ps(lo, v), b0 = _mm512_permutexvar_ps(hi, v);
                __m512 a1 = a0, b1 = b0;
                const ptrdiff_t n2 = 2 * (left >= 16 ? 16 : left);
                const __mmask16 ma = n2 >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n2) - 1);
                const __mmask16 mb = n2 >= 32 ? (__mmask16)0xFFFF : n2 <= 16 ? (__mmask16)0 : (__mmask16)((1u << (n2 - 16)) - 1);
                if (yp) {
                    const float *y0 = yp + 2 * oy * w + 2 * ox, *y1 = y0 + w;
                    __m512 t;
                    t = _mm512_maskz_loadu_ps(ma, y0);      a0 = _mm512_mul_ps(a0, _mm512_mul_ps(t, _mm512_sub_ps(one, t)));
                    t = _mm512_maskz_loadu_ps(mb, y0 + 16); b0 = _mm512_mul_ps(b0, _mm512_mul_ps(t, _mm512_sub_ps(one, t)));
                    t = _mm512_maskz_loadu_ps(ma, y1);      a1 = _mm512_mul_ps(a1, _mm512_mul_ps(t, _mm512_sub_ps(one, t)));
                    t = _mm512_maskz_loadu_ps(mb, y1 + 16); b1 = _mm512_mul_ps(b1, _mm512_mul_ps(t, _mm512_sub_ps(one, t)));
                }
                _mm512_mask_storeu_ps(r0 + 2 * ox, ma, a0);
                _mm512_mask_storeu_ps(r0 + 2 * ox + 16, mb, b0);
                _mm512_mask_storeu_ps(r1 + 2 * ox, ma, a1);
                _mm512_mask_storeu_ps(r1 + 2 * ox + 16, mb, b1);
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

static void avgpool2_backward_portable(const float *dy, const float *y, float *dx, ptrdiff_t planes, ptrdiff_t oh, ptrdiff_t ow,
                                       ptrdiff_t h, ptrdiff_t w) {
    for (ptrdiff_t p = 0; p < planes; p++) {
        float *x = dx + p * h * w;
        for (ptrdiff_t i = 0; i < h * w; i++) x[i] = 0;
        for (ptrdiff_t oy = 0; oy < oh; oy++)
            for (ptrdiff_t ox = 0; ox < ow; ox++) {
                const float v = dy[(p * oh + oy) * ow + ox] / 4;
                x[2 * oy * w + 2 * ox] = v; x[2 * oy * w + 2 * ox + 1] = v;
                x[(2 * oy + 1) * w + 2 * ox] = v; x[(2 * oy + 1) * w + 2 * ox + 1] = v;
            }
        if (y) {
            const float *yp = y + p * h * w;
            for (ptrdiff_t i = 0; i < h * w; i++) x[i] = x[i] * (yp[i] * (1 - yp[i]));
        }
    }
}

void zoo_avgpool2_sigmoid_backward(const float *dy, const float *y, float *dx, ptrdiff_t planes, ptrdiff_t oh, ptrdiff_t ow,
                                   ptrdiff_t h, ptrdiff_t w, int portable) {
    if (!portable && (zoo_kernels_simd() == 2)) avgpool2_backward_avx512(dy, y, dx, planes, oh, ow, h, w);
    else if (!portable && (zoo_kernels_simd() == 1)) zoo_avgpool2_backward_avx2(dy, y, dx, planes, oh, ow, h, w);
    else avgpool2_backward_portable(dy, y, dx, planes, oh, ow, h, w);
}

void zoo_avgpool2_backward(const float *dy, float *dx, ptrdiff_t planes, ptrdiff_t oh, ptrdiff_t ow, ptrdiff_t h, ptrdiff_t w,
                           int portable) {
    zoo_avgpool2_sigmoid_backward(dy, 0, dx, planes, oh, ow, h, w, portable);
}

// ---------------------------------------------------------------------------------------------------------------
// Channel-vectorized forms (16 output channels per vector; for layers with >= 12 output channels): no dropped
// columns and no horizontal sums. Pixel (oy, ox) sits at oy*wp + ox of the staged planes; koff[k] = ci*S + ky*wp + kx.

TK_INLINE TK_AVX512 void cvec_fwd_block(const float *in, const ptrdiff_t *koff, int K, const float *wv, const int PB, float *T) {
    __m512 acc[12];
    for (int p = 0; p < PB; p++) acc[p] = _mm512_setzero_ps();
    for (int k = 0; k < K; k++) {
        const __m512 w = _mm512_loadu_ps(wv + 16 * k);
        const float *r = in + koff[k];
        for (int p = 0; p < PB; p++) acc[p] = _mm512_fmadd_ps(w, _mm512_set1_ps(r[p]), acc[p]);
    }
    for (int p = 0; p < PB; p++) _mm512_storeu_ps(T + 16 * p, acc[p]);
}

#define CF_CASE(PB) case PB: cvec_fwd_block(in + oy * wp + ox, koff, K, wv, PB, T + 16 * (oy * ow + ox)); break;

static TK_AVX512 void cvec_fwd_avx512(const float *in, const ptrdiff_t *koff, int K, const float *wv, ptrdiff_t oh, ptrdiff_t ow,
                                      ptrdiff_t wp, float *T) {
    const ptrdiff_t nb = (ow + 11) / 12, pbMax = (ow + nb - 1) / nb;
    for (ptrdiff_t oy = 0; oy < oh; oy++)
        for (ptrdiff_t ox = 0; ox < ow;) {
            const int pb = (int)(ow - ox < pbMax ? ow - ox : pbMax);
            switch (pb) {
                CF_CASE(1) CF_CASE(2) CF_CASE(3) CF_CASE(4) CF_CASE(5) CF_CASE(6)
                CF_CASE(7) CF_CASE(8) CF_CASE(9) CF_CASE(10) CF_CASE(11) CF_CASE(12)
            }
            ox += pb;
        }
}

void zoo_tc_cvec_fwd(const float *in, const ptrdiff_t *koff, int K, const float *wv, ptrdiff_t oh, ptrdiff_t ow, ptrdiff_t wp,
                     float *T, int portable) {
    if (!portable && (zoo_kernels_simd() == 2)) { cvec_fwd_avx512(in, koff, K, wv, oh, ow, wp, T); return; }
    if (!portable && (zoo_kernels_simd() == 1)) { zoo_tc_cvec_fwd_avx2(in, koff, K, wv, oh, ow, wp, T); return; }
    for (ptrdiff_t oy = 0; oy < oh; oy++)
        for (ptrdiff_t ox = 0; ox < ow; ox++) {
            float *t = T + 16 * (oy * ow + ox);
            for (int l = 0; l < 16; l++) t[l] = 0;
            for (int k = 0; k < K; k++) {
                const float v = in[koff[k] + oy * wp + ox];
                for (int l = 0; l < 16; l++) t[l] += wv[16 * k + l] * v;
            }
        }
}

// Weight gradient: 25 taps (koff entries; the caller pads K to a multiple of 25) × PB pixels of a row per block.
#define CV_TB 25

TK_INLINE TK_AVX512 void cvec_dw_block(const float *x, ptrdiff_t xImg, const ptrdiff_t *koff, const float *dyT, ptrdiff_t dyTImg,
                                       int nimg, ptrdiff_t oh, ptrdiff_t ow, ptrdiff_t wp, const int PB, float *acc) {
    __m512 a[CV_TB];
    for (int k = 0; k < CV_TB; k++) a[k] = _mm512_setzero_ps();
    for (int img = 0; img < nimg; img++) {
        const float *xi = x + img * xImg, *di = dyT + img * dyTImg;
        for (ptrdiff_t oy = 0; oy < oh; oy++)
            for (ptrdiff_t ox = 0; ox + PB <= ow; ox += PB) {
                __m512 dv[5];
                const float *d = di + 16 * (oy * ow + ox), *xr = xi + oy * wp + ox;
                for (int p = 0; p < PB; p++) dv[p] = _mm512_loadu_ps(d + 16 * p);
                for (int k = 0; k < CV_TB; k++) {
                    const float *r = xr + koff[k];
                    for (int p = 0; p < PB; p++) a[k] = _mm512_fmadd_ps(dv[p], _mm512_set1_ps(r[p]), a[k]);
                }
            }
    }
    for (int k = 0; k < CV_TB; k++) _mm512_storeu_ps(acc + 16 * k, _mm512_add_ps(_mm512_loadu_ps(acc + 16 * k), a[k]));
}

#define CD_CASE(PB) case PB: cvec_dw_block(x, xImg, koff + k0, dyT, dyTImg, nimg, oh, ow, wp, PB, acc + 16 * k0); break;

static TK_AVX512 void cvec_dw_avx512(const float *x, ptrdiff_t xImg, const ptrdiff_t *koff, int K, const float *dyT, ptrdiff_t dyTImg,
                                     int nimg, ptrdiff_t oh, ptrdiff_t ow, ptrdiff_t wp, float *acc) {
    // pixels per block: the largest of 5..1 dividing the row (every block of a row the same size)
    int pb = 5;
    while (ow % pb != 0) pb--;
    for (int k0 = 0; k0 < K; k0 += CV_TB) {
        switch (pb) { CD_CASE(1) CD_CASE(2) CD_CASE(3) CD_CASE(4) CD_CASE(5) }
    }
}

void zoo_tc_cvec_dw(const float *x, ptrdiff_t xImg, const ptrdiff_t *koff, int K, const float *dyT, ptrdiff_t dyTImg, int nimg,
                    ptrdiff_t oh, ptrdiff_t ow, ptrdiff_t wp, float *acc, int portable) {
    if (!portable && (zoo_kernels_simd() == 2)) { cvec_dw_avx512(x, xImg, koff, K, dyT, dyTImg, nimg, oh, ow, wp, acc); return; }
    if (!portable && (zoo_kernels_simd() == 1)) { zoo_tc_cvec_dw_avx2(x, xImg, koff, K, dyT, dyTImg, nimg, oh, ow, wp, acc); return; }
    for (int k = 0; k < K; k++)
        for (int img = 0; img < nimg; img++)
            for (ptrdiff_t oy = 0; oy < oh; oy++)
                for (ptrdiff_t ox = 0; ox < ow; ox++) {
                    const float v = x[img * xImg + koff[k] + oy * wp + ox];
                    const float *d = dyT + img * dyTImg + 16 * (oy * ow + ox);
                    for (int l = 0; l < 16; l++) acc[16 * k + l] += d[l] * v;
                }
}

// ---------------------------------------------------------------------------------------------------------------
// Data movement around the small-convolution kernels.

static TK_AVX512 void copy_rows_avx512(const float *src, ptrdiff_t srcRow, ptrdiff_t srcPlane, float *dst, ptrdiff_t dstRow,
                                       ptrdiff_t dstPlane, ptrdiff_t planes, ptrdiff_t rows, ptrdiff_t cols, const float *bias) {
    for (ptrdiff_t p = 0; p < planes; p++) {
        const __m512 b = _mm512_set1_ps(bias ? bias[p] : 0.0f);
        for (ptrdiff_t r = 0; r < rows; r++) {
            const float *s = src + p * srcPlane + r * srcRow;
            float *d = dst + p * dstPlane + r * dstRow;
            for (ptrdiff_t c = 0; c < cols; c += 16) {
                const ptrdiff_t left = cols - c;
                const __mmask16 m = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
                __m512 v = _mm512_maskz_loadu_ps(m, s + c);
                if (bias) v = _mm512_add_ps(v, b);
                _mm512_mask_storeu_ps(d + c, m, v);
            }
        }
    }
}

void zoo_copy_rows(const float *src, ptrdiff_t srcRow, ptrdiff_t srcPlane, float *dst, ptrdiff_t dstRow, ptrdiff_t dstPlane,
                   ptrdiff_t planes, ptrdiff_t rows, ptrdiff_t cols, const float *bias, int portable) {
    if (!portable && (zoo_kernels_simd() == 2)) { copy_rows_avx512(src, srcRow, srcPlane, dst, dstRow, dstPlane, planes, rows, cols, bias); return; }
    if (!portable && (zoo_kernels_simd() == 1)) { zoo_copy_rows_avx2(src, srcRow, srcPlane, dst, dstRow, dstPlane, planes, rows, cols, bias); return; }
    for (ptrdiff_t p = 0; p < planes; p++)
        for (ptrdiff_t r = 0; r < rows; r++)
            for (ptrdiff_t c = 0; c < cols; c++) {
                const float v = src[p * srcPlane + r * srcRow + c];
                dst[p * dstPlane + r * dstRow + c] = bias ? v + bias[p] : v;
            }
}

static TK_AVX512 void to_lanes_avx512(const float *src, ptrdiff_t srcPlane, int lanes, ptrdiff_t n, float *T) {
    const __m512i idx = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                           _mm512_set1_epi32((int)srcPlane));
    const __mmask16 m = lanes >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << lanes) - 1);
    for (ptrdiff_t i = 0; i < n; i++)
        _mm512_storeu_ps(T + 16 * i, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, src + i, 4));
}

void zoo_to_lanes(const float *src, ptrdiff_t srcPlane, int lanes, ptrdiff_t n, float *T, int portable) {
    if (!portable && (zoo_kernels_simd() == 2) && (ptrdiff_t)lanes * srcPlane < (1L << 31)) { to_lanes_avx512(src, srcPlane, lanes, n, T); return; }
    for (ptrdiff_t i = 0; i < n; i++)
        for (int l = 0; l < 16; l++) T[16 * i + l] = l < lanes ? src[l * srcPlane + i] : 0;
}

static TK_AVX512 void from_lanes_avx512(const float *T, int lanes, ptrdiff_t n, const float *bias, float *dst, ptrdiff_t dstPlane) {
    const __m512i idx = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), _mm512_set1_epi32(16));
    for (int l = 0; l < lanes; l++) {
        const __m512 b = _mm512_set1_ps(bias ? bias[l] : 0.0f);
        float *d = dst + l * dstPlane;
        for (ptrdiff_t i = 0; i < n; i += 16) {
            const ptrdiff_t left = n - i;
            const __mmask16 m = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
            __m512 v = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, T + 16 * i + l, 4);
            if (bias) v = _mm512_add_ps(v, b);
            _mm512_mask_storeu_ps(d + i, m, v);
        }
    }
}

void zoo_from_lanes(const float *T, int lanes, ptrdiff_t n, const float *bias, float *dst, ptrdiff_t dstPlane, int portable) {
    if (!portable && (zoo_kernels_simd() == 2) && 16 * n < (1L << 31)) { from_lanes_avx512(T, lanes, n, bias, dst, dstPlane); return; }
    for (int l = 0; l < lanes; l++)
        for (ptrdiff_t i = 0; i < n; i++) dst[l * dstPlane + i] = bias ? T[16 * i + l] + bias[l] : T[16 * i + l];
}

static TK_AVX512 float sum_avx512(const float *x, ptrdiff_t n) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    ptrdiff_t i = 0;
    for (; i + 64 <= n; i += 64) {
        a0 = _mm512_add_ps(a0, _mm512_loadu_ps(x + i));
        a1 = _mm512_add_ps(a1, _mm512_loadu_ps(x + i + 16));
        a2 = _mm512_add_ps(a2, _mm512_loadu_ps(x + i + 32));
        a3 = _mm512_add_ps(a3, _mm512_loadu_ps(x + i + 48));
    }
    for (; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        a0 = _mm512_add_ps(a0, _mm512_maskz_loadu_ps(m, x + i));
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

float zoo_sum(const float *x, ptrdiff_t n, int portable) {
    if (!portable && (zoo_kernels_simd() == 2)) return sum_avx512(x, n);
    if (!portable && (zoo_kernels_simd() == 1)) return zoo_sum_avx2(x, n);
    float s = 0;
    for (ptrdiff_t i = 0; i < n; i++) s += x[i];
    return s;
}

// ---------------------------------------------------------------------------------------------------------------
// 2×2 stride-2 unpadded average pooling forward: y = (((x00 + x01) + x10) + x11) / 4 (the inference kernel's order).

static TK_AVX512 void avgpool2_avx512(const float *x, float *y, ptrdiff_t planes, ptrdiff_t h, ptrdiff_t w, ptrdiff_t oh, ptrdiff_t ow) {
    const __m512i ev = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i od = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    const __m512 q = _mm512_set1_ps(0.25f);
    for (ptrdiff_t p = 0; p < planes; p++)
        for (ptrdiff_t oy = 0; oy < oh; oy++) {
            const float *r0 = x + (p * h + 2 * oy) * w, *r1 = r0 + w;
            float *d = y + (p * oh + oy) * ow;
            for (ptrdiff_t ox = 0; ox < ow; ox += 16) {
                const ptrdiff_t left = ow - ox, n2 = 2 * (left >= 16 ? 16 : left);
                const __mmask16 m = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
                const __mmask16 ma = n2 >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n2) - 1);
                const __mmask16 mb = n2 >= 32 ? (__mmask16)0xFFFF : n2 <= 16 ? (__mmask16)0 : (__mmask16)((1u << (n2 - 16)) - 1);
                const __m512 a0 = _mm512_maskz_loadu_ps(ma, r0 + 2 * ox), a1 = _mm512_maskz_loadu_ps(mb, r0 + 2 * ox + 16);
                const __m512 b0 = _mm512_maskz_loadu_ps(ma, r1 + 2 * ox), b1 = _mm512_maskz_loadu_ps(mb, r1 + 2 * ox + 16);
                __m512 s = _mm512_add_ps(_mm512_permutex2var_ps(a0, ev, a1), _mm512_permutex2var_ps(a0, od, a1));
                s = _mm512_add_ps(s, _mm512_permutex2var_ps(b0, ev, b1));
                s = _mm512_add_ps(s, _mm512_permutex2var_ps(b0, od, b1));
                _mm512_mask_storeu_ps(d + ox, m, _mm512_mul_ps(s, q));
            }
        }
}

void zoo_avgpool2(const float *x, float *y, ptrdiff_t planes, ptrdiff_t h, ptrdiff_t w, ptrdiff_t oh, ptrdiff_t ow, int portable) {
    if (!portable && (zoo_kernels_simd() == 2)) { avgpool2_avx512(x, y, planes, h, w, oh, ow); return; }
    if (!portable && (zoo_kernels_simd() == 1)) { zoo_avgpool2_avx2(x, y, planes, h, w, oh, ow); return; }
    for (ptrdiff_t p = 0; p < planes; p++)
        for (ptrdiff_t oy = 0; oy < oh; oy++)
            for (ptrdiff_t ox = 0; ox < ow; ox++) {
                const float *r0 = x + (p * h + 2 * oy) * w + 2 * ox, *r1 = r0 + w;
                y[(p * oh + oy) * ow + ox] = (((r0[0] + r0[1]) + r1[0]) + r1[1]) / 4;
            }
}
