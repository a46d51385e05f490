// Strided row copies for the training engine's im2col / col2im (stride-2 convolutions). AVX-512F chosen at run
// time (function-level target attribute), AVX2 on CPUs without it, portable loops otherwise; all give bit-identical results.
#include "CZooKernels.h"
#include <immintrin.h>
#include "avx2_common.h"

__attribute__((target("avx512f"))) static void gather2_avx512(const float *src, float *dst, ptrdiff_t n) {
    const __m512i idx = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    ptrdiff_t i = 0;
    for (; i + 16 <= n; i += 16) {
        // Reads src[2i .. 2i+30] only (the second load is masked to 15 lanes).
        const __m512 a = _mm512_loadu_ps(src + 2 * i);
        const __m512 b = _mm512_maskz_loadu_ps((__mmask16)0x7FFF, src + 2 * i + 16);
        _mm512_storeu_ps(dst + i, _mm512_permutex2var_ps(a, idx, b));
    }
    const ptrdiff_t r = n - i;
    if (r > 0) {
        const ptrdiff_t need = 2 * r - 1;  // src[2i .. 2i + 2r - 2]
        const __mmask16 ma = (__mmask16)(need >= 16 ? 0xFFFF : (1u << need) - 1);
        const __mmask16 mb = (__mmask16)(need > 16 ? (1u << (need - 16)) - 1 : 0);
        const __m512 a = _mm512_maskz_loadu_ps(ma, src + 2 * i);
        const __m512 b = _mm512_maskz_loadu_ps(mb, src + 2 * i + 16);
        _mm512_mask_storeu_ps(dst + i, (__mmask16)((1u << r) - 1), _mm512_permutex2var_ps(a, idx, b));
    }
}

__attribute__((target("avx512f"))) static void scatter_add2_avx512(const float *src, float *dst, ptrdiff_t n) {
    const __m512i lo = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    const __m512i hi = _mm512_setr_epi32(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15);
    const __mmask16 even = (__mmask16)0x5555;
    ptrdiff_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 v = _mm512_loadu_ps(src + i);
        float *d = dst + 2 * i;
        const __m512 d0 = _mm512_maskz_loadu_ps(even, d), d1 = _mm512_maskz_loadu_ps(even, d + 16);
        _mm512_mask_storeu_ps(d, even, _mm512_add_ps(d0, _mm512_permutexvar_ps(lo, v)));
        _mm512_mask_storeu_ps(d + 16, even, _mm512_add_ps(d1, _mm512_permutexvar_ps(hi, v)));
    }
    const ptrdiff_t r = n - i;
    if (r > 0) {
        const __m512 v = _mm512_maskz_loadu_ps((__mmask16)((1u << r) - 1), src + i);
        float *d = dst + 2 * i;
        // Even lanes 2j with j < r.
        const ptrdiff_t r0 = r < 8 ? r : 8, r1 = r - r0;
        const __mmask16 m0 = (__mmask16)(even & ((1u << (2 * r0)) - 1));
        const __mmask16 m1 = (__mmask16)(even & ((1u << (2 * r1)) - 1));
        const __m512 d0 = _mm512_maskz_loadu_ps(m0, d), d1 = _mm512_maskz_loadu_ps(m1, d + 16);
        _mm512_mask_storeu_ps(d, m0, _mm512_add_ps(d0, _mm512_permutexvar_ps(lo, v)));
        _mm512_mask_storeu_ps(d + 16, m1, _mm512_add_ps(d1, _mm512_permutexvar_ps(hi, v)));
    }
}


// AVX2 bodies (CPUs without AVX-512F): the same results bit for bit; masked loads and stores keep every access inside
// the range the scalar loop touches.
#define TR_AVX2 __attribute__((target("avx2,fma")))

TR_AVX2 static inline __m256 even8(const float *p) {
    // p[0], p[2], ..., p[14]; reads p[0 .. 14] only
    __m256 even, odd;
    zk_deinterleave8(_mm256_loadu_ps(p), _mm256_maskload_ps(p + 8, zk_mask8(7)), &even, &odd);
    return even;
}

TR_AVX2 static void gather2_avx2(const float *src, float *dst, ptrdiff_t n) {
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, even8(src + 2 * i));
    for (; i < n; i++) dst[i] = src[2 * i];
}

TR_AVX2 static void scatter_add2_avx2(const float *src, float *dst, ptrdiff_t n) {
    const __m256i lo = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3), hi = _mm256_setr_epi32(4, 4, 5, 5, 6, 6, 7, 7);
    const __m256i even = _mm256_setr_epi32(-1, 0, -1, 0, -1, 0, -1, 0);
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(src + i);
        float *d = dst + 2 * i;
        _mm256_maskstore_ps(d, even, _mm256_add_ps(_mm256_maskload_ps(d, even), _mm256_permutevar8x32_ps(v, lo)));
        _mm256_maskstore_ps(d + 8, even, _mm256_add_ps(_mm256_maskload_ps(d + 8, even), _mm256_permutevar8x32_ps(v, hi)));
    }
    for (; i < n; i++) dst[2 * i] += src[i];
}

void zoo_gather2(const float *src, float *dst, ptrdiff_t n, int allow_simd) {
    if (allow_simd && (zoo_kernels_simd() == 2)) { gather2_avx512(src, dst, n); return; }
    if (allow_simd && (zoo_kernels_simd() == 1)) { gather2_avx2(src, dst, n); return; }
    for (ptrdiff_t i = 0; i < n; i++) dst[i] = src[2 * i];
}

void zoo_scatter_add2(const float *src, float *dst, ptrdiff_t n, int allow_simd) {
    if (allow_simd && (zoo_kernels_simd() == 2)) { scatter_add2_avx512(src, dst, n); return; }
    if (allow_simd && (zoo_kernels_simd() == 1)) { scatter_add2_avx2(src, dst, n); return; }
    for (ptrdiff_t i = 0; i < n; i++) dst[2 * i] += src[i];
}

// Max-pool backward, one output row's interior run: output j's window starts at in + j*sw (kh rows `rs` apart, kw
// columns `dw` apart); the gradient g[j] goes to the first window element (row-major) equal to y[j] (NaN: the first
// NaN). Lanes are resolved in output order, so sums equal the scalar loop's bit for bit.
static void maxpool_back_row_portable(const float *in, float *dx, const float *y, const float *g, ptrdiff_t n, int sw, int kh,
                                      int kw, ptrdiff_t rs, int dw) {
    for (ptrdiff_t j = 0; j < n; j++) {
        const float t = y[j];
        const int tnan = t != t;
        const float *w = in + j * sw;
        ptrdiff_t idx = -1;
        for (int ky = 0; ky < kh && idx < 0; ky++)
            for (int kx = 0; kx < kw; kx++) {
                const float v = w[ky * rs + kx * dw];
                if (v == t || (tnan && v != v)) { idx = ky * rs + kx * dw; break; }
            }
        if (idx >= 0) dx[j * sw + idx] += g[j];
    }
}

__attribute__((target("avx512f"))) static void maxpool_back_row_avx512(const float *in, float *dx, const float *y, const float *g,
                                                                       ptrdiff_t n, int sw, int kh, int kw, ptrdiff_t rs, int dw) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    ptrdiff_t j = 0;
    int idx[16];
    for (; j + 16 <= n; j += 16) {
        const __m512 t = _mm512_loadu_ps(y + j);
        const __mmask16 tnan = _mm512_cmp_ps_mask(t, t, _CMP_UNORD_Q);
        __m512i best = _mm512_set1_epi32(-1);
        const float *w = in + j * sw;
        for (int ky = kh - 1; ky >= 0; ky--)
            for (int kx = kw - 1; kx >= 0; kx--) {
                const ptrdiff_t off = ky * rs + (ptrdiff_t)kx * dw;
                __m512 v;
                if (sw == 1) v = _mm512_loadu_ps(w + off);
                else v = _mm512_permutex2var_ps(_mm512_loadu_ps(w + off), even, _mm512_maskz_loadu_ps((__mmask16)0x7FFF, w + off + 16));
                const __mmask16 m = _mm512_cmp_ps_mask(v, t, _CMP_EQ_OQ) | (_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q) & tnan);
                best = _mm512_mask_mov_epi32(best, m, _mm512_set1_epi32((int)off));
            }
        _mm512_storeu_si512((void *)idx, best);
        for (int l = 0; l < 16; l++)
            if (idx[l] >= 0) dx[(j + l) * sw + idx[l]] += g[j + l];
    }
    if (j < n) maxpool_back_row_portable(in + j * sw, dx + j * sw, y + j, g + j, n - j, sw, kh, kw, rs, dw);
}

TR_AVX2 static void maxpool_back_row_avx2(const float *in, float *dx, const float *y, const float *g, ptrdiff_t n, int sw, int kh,
                                          int kw, ptrdiff_t rs, int dw) {
    ptrdiff_t j = 0;
    int idx[8];
    for (; j + 8 <= n; j += 8) {
        const __m256 t = _mm256_loadu_ps(y + j);
        const __m256 tnan = _mm256_cmp_ps(t, t, _CMP_UNORD_Q);
        __m256i best = _mm256_set1_epi32(-1);
        const float *w = in + j * sw;
        for (int ky = kh - 1; ky >= 0; ky--)
            for (int kx = kw - 1; kx >= 0; kx--) {
                const ptrdiff_t off = ky * rs + (ptrdiff_t)kx * dw;
                const __m256 v = sw == 1 ? _mm256_loadu_ps(w + off) : even8(w + off);
                const __m256 m = _mm256_or_ps(_mm256_cmp_ps(v, t, _CMP_EQ_OQ), _mm256_and_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q), tnan));
                best = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(best), _mm256_castsi256_ps(_mm256_set1_epi32((int)off)), m));
            }
        _mm256_storeu_si256((__m256i *)idx, best);
        for (int l = 0; l < 8; l++)
            if (idx[l] >= 0) dx[(j + l) * sw + idx[l]] += g[j + l];
    }
    if (j < n) maxpool_back_row_portable(in + j * sw, dx + j * sw, y + j, g + j, n - j, sw, kh, kw, rs, dw);
}

void zoo_maxpool_back_row(const float *in, float *dx, const float *y, const float *g, ptrdiff_t n, int sw, int kh, int kw,
                          ptrdiff_t rs, int dw, int allow_simd) {
    if (allow_simd && (sw == 1 || sw == 2) && (zoo_kernels_simd() == 2)) {
        maxpool_back_row_avx512(in, dx, y, g, n, sw, kh, kw, rs, dw);
        return;
    }
    if (allow_simd && (sw == 1 || sw == 2) && (zoo_kernels_simd() == 1)) {
        maxpool_back_row_avx2(in, dx, y, g, n, sw, kh, kw, rs, dw);
        return;
    }
    maxpool_back_row_portable(in, dx, y, g, n, sw, kh, kw, rs, dw);
}
