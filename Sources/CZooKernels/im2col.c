// im2col straight into zoo's packed-B panels, and the stride-deinterleaved staging of input rows it reads for strided
// convolutions, in AVX-512F (function-level target, chosen at run time). The Swift versions (Fast.im2colPanels,
// Fast.stageRows in PackedGemm.swift) are the portable path and the reference; these write the same floats.
//
// A column matrix row segment is a run of at most NR floats: copied and zero-filled with masked 16-lane moves instead
// of a memmove/memset call per run (resnet18's strided convolutions: 16k runs of 28 floats per call).
#include "CZooKernels.h"
#include <immintrin.h>

__attribute__((target("avx512f"), always_inline)) static inline __mmask16 run_mask(ptrdiff_t n) {
    return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1);
}

__attribute__((target("avx512f"), always_inline)) static inline void copy_run(float *d, const float *s, ptrdiff_t n) {
    ptrdiff_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(d + i, _mm512_loadu_ps(s + i));
    if (i < n) {
        const __mmask16 m = run_mask(n - i);
        _mm512_mask_storeu_ps(d + i, m, _mm512_maskz_loadu_ps(m, s + i));
    }
}

__attribute__((target("avx512f"), always_inline)) static inline void zero_run(float *d, ptrdiff_t n) {
    const __m512 z = _mm512_setzero_ps();
    ptrdiff_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(d + i, z);
    if (i < n) _mm512_mask_storeu_ps(d + i, run_mask(n - i), z);
}

static inline ptrdiff_t floor_div(ptrdiff_t a, ptrdiff_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

__attribute__((target("avx512f"))) static void
im2col_panels_avx512(const zoo_im2col_geom *g, const float *x, const float *staged, float *pb, int p0, int p1) {
    const ptrdiff_t kk = (ptrdiff_t)g->kH * g->kW, k = g->inC * kk, nr = g->nr, n = g->n;
    const ptrdiff_t np = (n + nr - 1) / nr, outW = g->outW, sW = g->strideW, inW = g->inW, inH = g->inH;
    const ptrdiff_t inPlane = inH * inW, rowFloats = sW * (ptrdiff_t)g->runLen;
    const ptrdiff_t j0 = (ptrdiff_t)p0 * nr, j1 = (ptrdiff_t)p1 * nr < n ? (ptrdiff_t)p1 * nr : n;
    for (ptrdiff_t r = 0; r < k; r++) {
        const ptrdiff_t icg = r / kk, ky = (r % kk) / g->kW, kx = r % g->kW;
        float *base = pb + r * nr;
        const ptrdiff_t offX = kx * g->dilW - g->padLeft;
        // output columns whose input column ox·sW + offX lies inside the row
        ptrdiff_t xlo = -floor_div(offX, sW), xhi = floor_div(inW - 1 - offX, sW) + 1;
        if (xlo < 0) xlo = 0;
        if (xhi > outW) xhi = outW;
        if (xhi < xlo) xhi = xlo;
        const ptrdiff_t q = (kx * g->dilW) % sW, u0 = (kx * g->dilW) / sW;
        // runs: position (oy, ox) and panel (p, within) advance together, no division per run
        ptrdiff_t j = j0, oy = j0 / outW, ox = j0 - (j0 / outW) * outW, p = j0 / nr, within = j0 - (j0 / nr) * nr;
        while (j < j1) {
            ptrdiff_t len = outW - ox;
            if (nr - within < len) len = nr - within;
            if (j1 - j < len) len = j1 - j;
            float *d = base + p * k * nr + within;
            const ptrdiff_t iy = oy * g->strideH - g->padTop + ky * g->dilH;
            if (iy < 0 || iy >= inH) {
                zero_run(d, len);
            } else if (staged) {
                copy_run(d, staged + (icg * inH + iy) * rowFloats + q * g->runLen + u0 + ox, len);
            } else {
                const float *src = x + icg * inPlane + iy * inW + offX;
                ptrdiff_t v0 = xlo > ox ? xlo : ox, v1 = xhi < ox + len ? xhi : ox + len;
                if (v0 > ox + len) v0 = ox + len;
                if (v1 < v0) v1 = v0;
                zero_run(d, v0 - ox);
                if (sW == 1) copy_run(d + (v0 - ox), src + v0, v1 - v0);
                else for (ptrdiff_t o = v0; o < v1; o++) d[o - ox] = src[o * sW];
                zero_run(d + (v1 - ox), ox + len - v1);
            }
            j += len;
            ox += len;
            if (ox == outW) { ox = 0; oy++; }
            within += len;
            if (within == nr) { within = 0; p++; }
        }
        const ptrdiff_t tail = n - (np - 1) * nr;
        if (p1 == np && tail < nr) zero_run(base + (np - 1) * k * nr + tail, nr - tail);
    }
}

int zoo_im2col_panels(const zoo_im2col_geom *g, const float *x, const float *staged, float *pb, int p0, int p1) {
    if (zoo_kernels_simd() != 2) return 0;
    im2col_panels_avx512(g, x, staged, pb, p0, p1);
    return 1;
}

// staged[item·s·runLen + q·runLen + u] = row[u·s + q − padLeft] (zero outside the row), s = strideW; stride 2 by
// even-lane permutes of two 16-float loads (masked at the row's end), other strides element by element.
__attribute__((target("avx512f"))) static void
stage_rows_avx512(const zoo_im2col_geom *g, const float *x, float *staged, int item0, int item1) {
    const ptrdiff_t sW = g->strideW, runLen = g->runLen, inW = g->inW, pad = g->padLeft;
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    for (ptrdiff_t item = item0; item < item1; item++) {
        const float *src = x + item * inW;
        float *dst = staged + item * sW * runLen;
        for (ptrdiff_t q = 0; q < sW; q++) {
            float *d = dst + q * runLen;
            ptrdiff_t u = 0;
            // leading columns left of the row
            for (; u < runLen && u * sW + q - pad < 0; u++) d[u] = 0;
            if (sW == 2) {
                // 16 outputs read src[2u + q − pad ... + 31]; every output's own element must be inside the row
                for (; u + 16 <= runLen && (u + 15) * 2 + q - pad < inW; u += 16) {
                    const ptrdiff_t s0 = u * 2 + q - pad;
                    const ptrdiff_t rest = inW - s0 - 16;
                    const __m512 a = _mm512_loadu_ps(src + s0);
                    const __m512 b = _mm512_maskz_loadu_ps(run_mask(rest < 0 ? 0 : rest), src + s0 + 16);
                    _mm512_storeu_ps(d + u, _mm512_permutex2var_ps(a, even, b));
                }
            }
            for (; u < runLen; u++) {
                const ptrdiff_t ix = u * sW + q - pad;
                d[u] = ix >= 0 && ix < inW ? src[ix] : 0;
            }
        }
    }
}

int zoo_stage_rows(const zoo_im2col_geom *g, const float *x, float *staged, int item0, int item1) {
    if (zoo_kernels_simd() != 2) return 0;
    stage_rows_avx512(g, x, staged, item0, item1);
    return 1;
}
