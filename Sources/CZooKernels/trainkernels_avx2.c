// AVX2+FMA bodies of the small-convolution training kernels (trainkernels.c, ZooTrainKernels.h) for CPUs without
// AVX-512F (e.g. Zen 3): the same loops with 8-lane vectors and register blocks sized for 16 ymm registers. Chosen at
// run time by the zoo_tc_* entry points; the portable C bodies stay the reference the tests compare against.
#include "CZooKernels.h"
#include <immintrin.h>

#define TK_AVX2 __attribute__((target("avx2,fma")))
#define TK_INLINE __attribute__((always_inline)) static inline

TK_INLINE TK_AVX2 float hsum8(__m256 v) {
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}

// ---------------------------------------------------------------------------------------------------------------
// Correlation over staged planes: OB (≤ 4) outputs × VB (≤ 3) vectors of 8 positions per register block.

TK_INLINE TK_AVX2 void corr_block8(const float *in, ptrdiff_t S, int cin, const ptrdiff_t *off, int taps, const float *wt,
                                   int nOut, const int OB, const int VB, float *out, ptrdiff_t outStride) {
    __m256 acc[4][3];
    for (int b = 0; b < OB; b++)
        for (int v = 0; v < VB; v++) acc[b][v] = _mm256_setzero_ps();
    for (int ci = 0; ci < cin; ci++) {
        const float *ip = in + ci * S;
        const float *wp = wt + (ptrdiff_t)ci * taps * nOut;
        for (int t = 0; t < taps; t++) {
            const float *p = ip + off[t];
            const float *wq = wp + (ptrdiff_t)t * nOut;
            __m256 xv[3];
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
    case (OB) * 4 + (VB):                                                                                          \
        corr_block8(in + 8 * j, S, cin, off, taps, wt + b0, nOut, OB, VB, out + b0 * outStride + 8 * j, outStride); \
        break;
#define CORR8_CASES(OB) CORR8_CASE(OB, 1) CORR8_CASE(OB, 2) CORR8_CASE(OB, 3)

TK_AVX2 void zoo_tc_corr_avx2(const float *in, ptrdiff_t S, int cin, const ptrdiff_t *off, int taps, const float *wt, int nOut,
                              ptrdiff_t nvec, float *out, ptrdiff_t outStride) {
    const ptrdiff_t n8 = 2 * nvec;
    for (int b0 = 0; b0 < nOut; b0 += 4) {
        const int ob = nOut - b0 < 4 ? nOut - b0 : 4;
        for (ptrdiff_t j = 0; j < n8;) {
            const int vb = (int)(n8 - j < 3 ? n8 - j : 3);
            switch (ob * 4 + vb) { CORR8_CASES(1) CORR8_CASES(2) CORR8_CASES(3) CORR8_CASES(4) }
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
        for (int t = 0; t < TB; t++) dw[b * dwStride + t] += hsum8(acc[b][t]);
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
// Channel-vectorized weight gradient: one 8-channel half × KB (10 or 5) taps × PB (≤ 5) pixels per register block.
// K is a multiple of 25 (the caller pads it), so the tap blocks are 10, 10, 5.

TK_INLINE TK_AVX2 void cvec_dw_block8(const float *x, ptrdiff_t xImg, const ptrdiff_t *koff, const float *dyT, ptrdiff_t dyTImg,
                                      int nimg, ptrdiff_t oh, ptrdiff_t ow, ptrdiff_t wp, const int KB, const int PB, int half,
                                      float *acc) {
    __m256 a[10];
    for (int k = 0; k < KB; k++) a[k] = _mm256_setzero_ps();
    for (int img = 0; img < nimg; img++) {
        const float *xi = x + img * xImg, *di = dyT + img * dyTImg + 8 * half;
        for (ptrdiff_t oy = 0; oy < oh; oy++)
            for (ptrdiff_t ox = 0; ox + PB <= ow; ox += PB) {
                __m256 dv[5];
                const float *d = di + 16 * (oy * ow + ox), *xr = xi + oy * wp + ox;
                for (int p = 0; p < PB; p++) dv[p] = _mm256_loadu_ps(d + 16 * p);
                for (int k = 0; k < KB; k++) {
                    const float *r = xr + koff[k];
                    for (int p = 0; p < PB; p++) a[k] = _mm256_fmadd_ps(dv[p], _mm256_broadcast_ss(r + p), a[k]);
                }
            }
    }
    for (int k = 0; k < KB; k++) {
        float *o = acc + 16 * k + 8 * half;
        _mm256_storeu_ps(o, _mm256_add_ps(_mm256_loadu_ps(o), a[k]));
    }
}

#define CD8_CASE(KB, PB)                                                                                          \
    case (KB) * 8 + (PB):                                                                                         \
        cvec_dw_block8(x, xImg, koff + k0, dyT, dyTImg, nimg, oh, ow, wp, KB, PB, half, acc + 16 * k0);          \
        break;
#define CD8_CASES(KB) CD8_CASE(KB, 1) CD8_CASE(KB, 2) CD8_CASE(KB, 3) CD8_CASE(KB, 4) CD8_CASE(KB, 5)

TK_AVX2 void zoo_tc_cvec_dw_avx2(const float *x, ptrdiff_t xImg, const ptrdiff_t *koff, int K, const float *dyT, ptrdiff_t dyTImg,
                                 int nimg, ptrdiff_t oh, ptrdiff_t ow, ptrdiff_t wp, float *acc) {
    int pb = 5;
    while (ow % pb != 0) pb--;
    for (int half = 0; half < 2; half++)
        for (int k0 = 0; k0 < K;) {
            const int kb = K - k0 >= 10 ? 10 : 5;
            if (K - k0 < kb) break;   // K is a multiple of 5
            switch (kb * 8 + pb) { CD8_CASES(5) CD8_CASES(10) }
            k0 += kb;
        }
}
