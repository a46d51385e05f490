// AVX-512F kernels chosen at run time (function-level target attributes; no CPU flags for the whole target).
#include "CZooKernels.h"
#include <immintrin.h>
#include <math.h>
#include <cpuid.h>
#include "avx2_common.h"
#include <stdlib.h>

int zoo_kernels_avx512(void) {
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx512f") ? 1 : 0;
    }
    return cached;
}

int zoo_kernels_avx2(void) {
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? 1 : 0;
    }
    return cached;
}

static int avx2_on = -1, simd_cap = 2;
void zoo_kernels_set_avx2(int on) { avx2_on = on ? 1 : 0; }
void zoo_kernels_set_simd_cap(int cap) { simd_cap = cap; }

int zoo_cpu_family(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    const int base = (a >> 8) & 0xF, ext = (a >> 20) & 0xFF;
    return base == 0xF ? base + ext : base;
}

int zoo_kernels_simd(void) {
    if (zoo_kernels_avx512() && simd_cap >= 2) return 2;
    if (avx2_on < 0) {
        const char *e = getenv("ZOO_AVX2");
        avx2_on = e && e[0] == '0' ? 0 : 1;
    }
    return zoo_kernels_avx2() && avx2_on && simd_cap >= 1 ? 1 : 0;
}

// Output blocks ("jobs") of 16 columns, numbered row by row; four at a time with independent accumulators
// (hides the FMA latency), the last column block of each row masked.
#define JOB_SETUP(j, col, dst, m)                                                    \
    {                                                                                \
        ptrdiff_t oy_ = (j) / blocks, bi_ = (j) % blocks;                            \
        col = buf + oy_ * rowStep + bi_ * 16;                                        \
        dst = out + oy_ * outW + bi_ * 16;                                           \
        m = bi_ == blocks - 1 ? tail : (__mmask16)0xFFFF;                            \
    }

__attribute__((target("avx512f"), always_inline)) static inline void
dw_impl(const float *buf, const ptrdiff_t *offs, const int taps, const float *wk, float bias, int clamp, float lo, float hi,
        ptrdiff_t outH, ptrdiff_t outW, ptrdiff_t rowStep, float *out) {
    const ptrdiff_t blocks = (outW + 15) / 16, jobs = outH * blocks;
    const __mmask16 tail = (outW % 16) ? (__mmask16)((1u << (outW % 16)) - 1) : (__mmask16)0xFFFF;
    const __m512 vb = _mm512_set1_ps(bias), vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
    __m512 w[taps];
    for (int t = 0; t < taps; t++) w[t] = _mm512_set1_ps(wk[t]);
    ptrdiff_t j = 0;
    for (; j + 4 <= jobs; j += 4) {
        const float *c0, *c1, *c2, *c3;
        float *d0, *d1, *d2, *d3;
        __mmask16 m0, m1, m2, m3;
        JOB_SETUP(j, c0, d0, m0) JOB_SETUP(j + 1, c1, d1, m1) JOB_SETUP(j + 2, c2, d2, m2) JOB_SETUP(j + 3, c3, d3, m3)
        __m512 a0 = vb, a1 = vb, a2 = vb, a3 = vb;
        for (int t = 0; t < taps; t++) {
            const ptrdiff_t o = offs[t];
            a0 = _mm512_fmadd_ps(w[t], _mm512_maskz_loadu_ps(m0, c0 + o), a0);
            a1 = _mm512_fmadd_ps(w[t], _mm512_maskz_loadu_ps(m1, c1 + o), a1);
            a2 = _mm512_fmadd_ps(w[t], _mm512_maskz_loadu_ps(m2, c2 + o), a2);
            a3 = _mm512_fmadd_ps(w[t], _mm512_maskz_loadu_ps(m3, c3 + o), a3);
        }
        if (clamp) {
            // max/min return their second operand when either is NaN: NaN stays NaN.
            a0 = _mm512_min_ps(vhi, _mm512_max_ps(vlo, a0));
            a1 = _mm512_min_ps(vhi, _mm512_max_ps(vlo, a1));
            a2 = _mm512_min_ps(vhi, _mm512_max_ps(vlo, a2));
            a3 = _mm512_min_ps(vhi, _mm512_max_ps(vlo, a3));
        }
        _mm512_mask_storeu_ps(d0, m0, a0);
        _mm512_mask_storeu_ps(d1, m1, a1);
        _mm512_mask_storeu_ps(d2, m2, a2);
        _mm512_mask_storeu_ps(d3, m3, a3);
    }
    for (; j < jobs; j++) {
        const float *c0;
        float *d0;
        __mmask16 m0;
        JOB_SETUP(j, c0, d0, m0)
        __m512 a0 = vb;
        for (int t = 0; t < taps; t++) a0 = _mm512_fmadd_ps(w[t], _mm512_maskz_loadu_ps(m0, c0 + offs[t]), a0);
        if (clamp) a0 = _mm512_min_ps(vhi, _mm512_max_ps(vlo, a0));
        _mm512_mask_storeu_ps(d0, m0, a0);
    }
}

__attribute__((target("avx512f"))) static void
dw_avx512(const float *buf, const ptrdiff_t *offs, int taps, const float *wk, float bias, int clamp, float lo, float hi,
          ptrdiff_t outH, ptrdiff_t outW, ptrdiff_t rowStep, float *out) {
    if (taps == 9) dw_impl(buf, offs, 9, wk, bias, clamp, lo, hi, outH, outW, rowStep, out);
    else dw_impl(buf, offs, taps, wk, bias, clamp, lo, hi, outH, outW, rowStep, out);
}

// AVX2 + FMA twin of dw_impl for CPUs without AVX-512F: blocks of 8 columns (the row's last block masked), four full
// blocks at a time; per element the same bias-then-taps FMA chain, so the results equal dw_impl's bit for bit.
#define AVX2_TARGET __attribute__((target("avx2,fma")))

__attribute__((target("avx2,fma"), always_inline)) static inline void
dw2_impl(const float *buf, const ptrdiff_t *offs, const int taps, const float *wk, float bias, int clamp, float lo, float hi,
         ptrdiff_t outH, ptrdiff_t outW, ptrdiff_t rowStep, float *out) {
    const ptrdiff_t full = outW / 8, tailw = outW % 8;
    const __m256i mt = zk_mask8(tailw);
    const __m256 vb = _mm256_set1_ps(bias), vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
    __m256 w[taps];
    for (int t = 0; t < taps; t++) w[t] = _mm256_set1_ps(wk[t]);
    for (ptrdiff_t oy = 0; oy < outH; oy++) {
        const float *base = buf + oy * rowStep;
        float *dst = out + oy * outW;
        ptrdiff_t bi = 0;
        for (; bi + 4 <= full; bi += 4) {
            const float *c = base + bi * 8;
            __m256 a0 = vb, a1 = vb, a2 = vb, a3 = vb;
            for (int t = 0; t < taps; t++) {
                const float *ct = c + offs[t];
                a0 = _mm256_fmadd_ps(w[t], _mm256_loadu_ps(ct), a0);
                a1 = _mm256_fmadd_ps(w[t], _mm256_loadu_ps(ct + 8), a1);
                a2 = _mm256_fmadd_ps(w[t], _mm256_loadu_ps(ct + 16), a2);
                a3 = _mm256_fmadd_ps(w[t], _mm256_loadu_ps(ct + 24), a3);
            }
            if (clamp) {
                a0 = zk_clamp8(a0, vlo, vhi);
                a1 = zk_clamp8(a1, vlo, vhi);
                a2 = zk_clamp8(a2, vlo, vhi);
                a3 = zk_clamp8(a3, vlo, vhi);
            }
            _mm256_storeu_ps(dst + bi * 8, a0);
            _mm256_storeu_ps(dst + bi * 8 + 8, a1);
            _mm256_storeu_ps(dst + bi * 8 + 16, a2);
            _mm256_storeu_ps(dst + bi * 8 + 24, a3);
        }
        for (; bi < full; bi++) {
            const float *c = base + bi * 8;
            __m256 a0 = vb;
            for (int t = 0; t < taps; t++) a0 = _mm256_fmadd_ps(w[t], _mm256_loadu_ps(c + offs[t]), a0);
            if (clamp) a0 = zk_clamp8(a0, vlo, vhi);
            _mm256_storeu_ps(dst + bi * 8, a0);
        }
        if (tailw) {
            /* Whole-vector loads: the staged row (Fast.DepthwiseStage) holds the block's 8 columns plus the taps'
               reach, and its padding is initialised. vmaskmovps loads made 14-, 28- and 7-column planes run at 8.0,
               10.4 and 5.1 GMAC/s per core; with plain loads 13.1, 15.4 and 8.4 (Zen 3). The lanes past outW spill
               into the following row's first columns, which that row overwrites later; rows whose spill would pass the
               end of the plane (the last row; with outW < 8 a few more) are stored masked. */
            const float *c = base + full * 8;
            __m256 a0 = vb;
            for (int t = 0; t < taps; t++) a0 = _mm256_fmadd_ps(w[t], _mm256_loadu_ps(c + offs[t]), a0);
            if (clamp) a0 = zk_clamp8(a0, vlo, vhi);
            if ((oy + 1) * outW + 8 - tailw <= outH * outW) _mm256_storeu_ps(dst + full * 8, a0);
            else _mm256_maskstore_ps(dst + full * 8, mt, a0);
        }
    }
}

AVX2_TARGET static void dw_avx2(const float *buf, const ptrdiff_t *offs, int taps, const float *wk, float bias, int clamp,
                                float lo, float hi, ptrdiff_t outH, ptrdiff_t outW, ptrdiff_t rowStep, float *out) {
    if (taps == 9) dw2_impl(buf, offs, 9, wk, bias, clamp, lo, hi, outH, outW, rowStep, out);
    else dw2_impl(buf, offs, taps, wk, bias, clamp, lo, hi, outH, outW, rowStep, out);
}

int zoo_dw_plane(const float *buf, const ptrdiff_t *offs, int taps, const float *wk, float bias, int clamp, float lo, float hi,
                 ptrdiff_t outH, ptrdiff_t outW, ptrdiff_t rowStep, float *out) {
    const int level = zoo_kernels_simd();
    if (level == 2) dw_avx512(buf, offs, taps, wk, bias, clamp, lo, hi, outH, outW, rowStep, out);
    else if (level == 1) dw_avx2(buf, offs, taps, wk, bias, clamp, lo, hi, outH, outW, rowStep, out);
    else return 0;
    return 1;
}

__attribute__((target("avx512f"), always_inline)) static inline __m512 max_nan(__m512 m, __m512 v) {
    // keep m where m >= v or m is NaN, else take v
    __mmask16 keep = _mm512_cmp_ps_mask(m, v, _CMP_GE_OQ) | _mm512_cmp_ps_mask(m, m, _CMP_UNORD_Q);
    return _mm512_mask_blend_ps(keep, v, m);
}

__attribute__((target("avx512f"), always_inline)) static inline void
maxpool_impl(const float *buf, const ptrdiff_t *offs, const int taps, ptrdiff_t outH, ptrdiff_t outW, ptrdiff_t rowStep, float *out) {
    const ptrdiff_t blocks = (outW + 15) / 16, jobs = outH * blocks;
    const __mmask16 tail = (outW % 16) ? (__mmask16)((1u << (outW % 16)) - 1) : (__mmask16)0xFFFF;
    ptrdiff_t j = 0;
    for (; j + 2 <= jobs; j += 2) {
        const float *c0, *c1;
        float *d0, *d1;
        __mmask16 m0, m1;
        JOB_SETUP(j, c0, d0, m0) JOB_SETUP(j + 1, c1, d1, m1)
        __m512 a0 = _mm512_maskz_loadu_ps(m0, c0 + offs[0]), a1 = _mm512_maskz_loadu_ps(m1, c1 + offs[0]);
        for (int t = 1; t < taps; t++) {
            a0 = max_nan(a0, _mm512_maskz_loadu_ps(m0, c0 + offs[t]));
            a1 = max_nan(a1, _mm512_maskz_loadu_ps(m1, c1 + offs[t]));
        }
        _mm512_mask_storeu_ps(d0, m0, a0);
        _mm512_mask_storeu_ps(d1, m1, a1);
    }
    for (; j < jobs; j++) {
        const float *c0;
        float *d0;
        __mmask16 m0;
        JOB_SETUP(j, c0, d0, m0)
        __m512 a0 = _mm512_maskz_loadu_ps(m0, c0 + offs[0]);
        for (int t = 1; t < taps; t++) a0 = max_nan(a0, _mm512_maskz_loadu_ps(m0, c0 + offs[t]));
        _mm512_mask_storeu_ps(d0, m0, a0);
    }
}

__attribute__((target("avx512f"))) static void
maxpool_avx512(const float *buf, const ptrdiff_t *offs, int taps, ptrdiff_t outH, ptrdiff_t outW, ptrdiff_t rowStep, float *out) {
    if (taps == 9) maxpool_impl(buf, offs, 9, outH, outW, rowStep, out);
    else maxpool_impl(buf, offs, taps, outH, outW, rowStep, out);
}

/* 3×3 stride-2 max pooling straight from the plane, separably: each input row's window maxima h[ox] over
   x[2ox − padL + 0, 1, 2] (taps in kx order, −∞ outside the row), then each output row the maximum of its (up to) three
   h rows in ky order, the row shared by two output rows computed once. The same rule as maxpool_impl at each step keeps
   the first of tied values and the first NaN in (ky, kx) order, so results match it bit for bit. */
__attribute__((target("avx512f"), always_inline)) static inline __m512 mp3_load(const float *row, ptrdiff_t s, ptrdiff_t inW) {
    ptrdiff_t lo = -s, hi = inW - s;
    if (lo < 0) lo = 0;
    if (hi > 16) hi = 16;
    const __mmask16 m = hi > lo ? (__mmask16)(((1u << hi) - 1) & ~((1u << lo) - 1)) : 0;
    return _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), m, row + s);
}

__attribute__((target("avx512f"))) static void mp3_hrow(const float *row, ptrdiff_t inW, ptrdiff_t outW, int padL, float *h) {
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i odd = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    for (ptrdiff_t ox = 0; ox < outW; ox += 16) {
        const ptrdiff_t s = 2 * ox - padL;
        const __m512 a0 = mp3_load(row, s, inW), a1 = mp3_load(row, s + 16, inW);
        const __m512 b0 = mp3_load(row, s + 1, inW), b1 = mp3_load(row, s + 17, inW);
        const __m512 e = _mm512_permutex2var_ps(a0, even, a1), o = _mm512_permutex2var_ps(a0, odd, a1);
        const __m512 o2 = _mm512_permutex2var_ps(b0, odd, b1);
        _mm512_storeu_ps(h + ox, max_nan(max_nan(e, o), o2));
    }
}

__attribute__((target("avx512f"))) static void mp3_rows(const float *x, ptrdiff_t inH, ptrdiff_t inW, ptrdiff_t outW, int padT,
                                                         int padL, ptrdiff_t oy0, ptrdiff_t oy1, float *y, float *work) {
    const ptrdiff_t wpad = (outW + 15) / 16 * 16;
    float *slot[3] = {work, work + wpad, work + 2 * wpad};
    ptrdiff_t cachedRow = -1000; /* input row whose h is in slot[2] */
    const __mmask16 tail = (outW % 16) ? (__mmask16)((1u << (outW % 16)) - 1) : (__mmask16)0xFFFF;
    for (ptrdiff_t oy = oy0; oy < oy1; oy++) {
        const ptrdiff_t r0 = 2 * oy - padT;
        const float *hr[3];
        int n = 0;
        if (r0 == cachedRow) { float *t = slot[0]; slot[0] = slot[2]; slot[2] = t; }
        for (int ky = 0; ky < 3; ky++) {
            const ptrdiff_t r = r0 + ky;
            if (r < 0 || r >= inH) continue;
            if (!(ky == 0 && r == cachedRow)) mp3_hrow(x + r * inW, inW, outW, padL, slot[ky]);
            hr[n++] = slot[ky];
        }
        cachedRow = r0 + 2;
        if (r0 + 2 < 0 || r0 + 2 >= inH) cachedRow = -1000;
        float *dst = y + oy * outW;
        for (ptrdiff_t ox = 0; ox < outW; ox += 16) {
            __m512 m = n > 0 ? _mm512_loadu_ps(hr[0] + ox) : _mm512_set1_ps(-INFINITY);
            for (int i = 1; i < n; i++) m = max_nan(m, _mm512_loadu_ps(hr[i] + ox));
            _mm512_mask_storeu_ps(dst + ox, ox + 16 <= outW ? (__mmask16)0xFFFF : tail, m);
        }
    }
}

int zoo_maxpool3s2_rows(const float *x, ptrdiff_t inH, ptrdiff_t inW, ptrdiff_t outW, int padT, int padL, ptrdiff_t oy0,
                        ptrdiff_t oy1, float *y, float *work) {
    if (zoo_kernels_simd() != 2) return 0;
    mp3_rows(x, inH, inW, outW, padT, padL, oy0, oy1, y, work);
    return 1;
}

// AVX2 twin of maxpool_impl (CPUs without AVX-512F): 8 columns at a time, each row's last block masked.
ZK_AVX2 static inline __m256 max_nan8(__m256 m, __m256 v) {
    // keep m where m >= v or m is NaN, else take v (as the AVX-512F kernel and the Swift rows)
    const __m256 keep = _mm256_or_ps(_mm256_cmp_ps(m, v, _CMP_GE_OQ), _mm256_cmp_ps(m, m, _CMP_UNORD_Q));
    return _mm256_blendv_ps(v, m, keep);
}

ZK_AVX2 static inline void maxpool_impl8(const float *buf, const ptrdiff_t *offs, const int taps, ptrdiff_t outH, ptrdiff_t outW,
                                        ptrdiff_t rowStep, float *out) {
    const ptrdiff_t full = outW / 8, rem = outW % 8;
    const __m256i tail = zk_mask8(rem);
    for (ptrdiff_t oy = 0; oy < outH; oy++) {
        const float *row = buf + oy * rowStep;
        float *dst = out + oy * outW;
        ptrdiff_t b = 0;
        for (; b + 2 <= full; b += 2) {
            const float *c0 = row + 8 * b, *c1 = c0 + 8;
            __m256 a0 = _mm256_loadu_ps(c0 + offs[0]), a1 = _mm256_loadu_ps(c1 + offs[0]);
            for (int t = 1; t < taps; t++) {
                a0 = max_nan8(a0, _mm256_loadu_ps(c0 + offs[t]));
                a1 = max_nan8(a1, _mm256_loadu_ps(c1 + offs[t]));
            }
            _mm256_storeu_ps(dst + 8 * b, a0);
            _mm256_storeu_ps(dst + 8 * b + 8, a1);
        }
        for (; b < full; b++) {
            const float *c0 = row + 8 * b;
            __m256 a0 = _mm256_loadu_ps(c0 + offs[0]);
            for (int t = 1; t < taps; t++) a0 = max_nan8(a0, _mm256_loadu_ps(c0 + offs[t]));
            _mm256_storeu_ps(dst + 8 * b, a0);
        }
        if (rem) {
            const float *c0 = row + 8 * full;
            __m256 a0 = _mm256_maskload_ps(c0 + offs[0], tail);
            for (int t = 1; t < taps; t++) a0 = max_nan8(a0, _mm256_maskload_ps(c0 + offs[t], tail));
            _mm256_maskstore_ps(dst + 8 * full, tail, a0);
        }
    }
}

ZK_AVX2 static void maxpool_avx2(const float *buf, const ptrdiff_t *offs, int taps, ptrdiff_t outH, ptrdiff_t outW, ptrdiff_t rowStep,
                                   float *out) {
    if (taps == 9) maxpool_impl8(buf, offs, 9, outH, outW, rowStep, out);
    else maxpool_impl8(buf, offs, taps, outH, outW, rowStep, out);
}

int zoo_maxpool_plane(const float *buf, const ptrdiff_t *offs, int taps, ptrdiff_t outH, ptrdiff_t outW, ptrdiff_t rowStep,
                      float *out) {
    const int level = zoo_kernels_simd();
    if (level != 2) {
        if (level != 1) return 0;
        maxpool_avx2(buf, offs, taps, outH, outW, rowStep, out);
        return 1;
    }
    maxpool_avx512(buf, offs, taps, outH, outW, rowStep, out);
    return 1;
}
