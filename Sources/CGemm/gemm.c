// zoo's packed SGEMM. Written for zoo; layouts:
//   packed A: for each KC block (k0, kb rows): for each MR-row panel p: kb × MR floats (row i of the panel at
//             offset kk*MR + i, zero rows past m); the block starts at k0 * Mpad (Mpad = panels × MR).
//   packed B: for each NR-column panel q: k × NR floats (zero columns past n), at q * k * NR.
#include "zoo_gemm.h"
#include <immintrin.h>
#include <math.h>
#include <string.h>

static zoo_gemm_info g_info = {0, 4, 8, 256};
static int g_selected = 0;

zoo_gemm_info zoo_gemm_select(int force_level) {
    int level = 0;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) level = 2;
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) level = 1;
    if (force_level >= 0 && force_level < level) level = force_level;
    zoo_gemm_info info;
    info.level = level;
    if (level == 2) { info.mr = 8; info.nr = 48; info.kc = 256; }
    else if (level == 1) { info.mr = 6; info.nr = 16; info.kc = 256; }
    else { info.mr = 4; info.nr = 8; info.kc = 256; }
    g_info = info;
    g_selected = 1;
    return info;
}

zoo_gemm_info zoo_gemm_current(void) {
    if (!g_selected) zoo_gemm_select(-1);
    return g_info;
}

static inline int panels(int n, int w) { return (n + w - 1) / w; }


/* 16 × 16 transpose in registers: r[i] holds row i; afterwards r[t] holds column t. */
__attribute__((target("avx512f"))) static inline void transpose16(__m512 r[16]) {
    __m512 t[16], s[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    /* s[4g + c], 128-bit lane L: rows 4g..4g+3 of column 4L + c */
    for (int g = 0; g < 4; g++) {
        const __m512d a = _mm512_castps_pd(t[4 * g]), b = _mm512_castps_pd(t[4 * g + 2]);
        const __m512d c = _mm512_castps_pd(t[4 * g + 1]), d = _mm512_castps_pd(t[4 * g + 3]);
        s[4 * g] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
        s[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
        s[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
        s[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
    }
    /* column 4L + c, lane G = s[4G + c] lane L: a 4 × 4 transpose of 128-bit lanes for each c */
    for (int c = 0; c < 4; c++) {
        const __m512 u0 = _mm512_shuffle_f32x4(s[c], s[4 + c], 0x88), u1 = _mm512_shuffle_f32x4(s[c], s[4 + c], 0xDD);
        const __m512 u2 = _mm512_shuffle_f32x4(s[8 + c], s[12 + c], 0x88), u3 = _mm512_shuffle_f32x4(s[8 + c], s[12 + c], 0xDD);
        r[c] = _mm512_shuffle_f32x4(u0, u2, 0x88);
        r[4 + c] = _mm512_shuffle_f32x4(u1, u3, 0x88);
        r[8 + c] = _mm512_shuffle_f32x4(u0, u2, 0xDD);
        r[12 + c] = _mm512_shuffle_f32x4(u1, u3, 0xDD);
    }
}

/* Packing with AVX-512 transposes (level 2: MR 8, NR 48), for the strided cases the scalar loops handle slowly.
   Panels p and p + 1 of row-major A (cs = 1), K rows [0, kb16) in steps of 16: 16 source rows × 16 K at a time. */
__attribute__((target("avx512f"))) static void pack_a_pair_avx512(const float *src, ptrdiff_t rs, int kb16, float *d0, float *d1) {
    __m512 r[16];
    for (int kk = 0; kk < kb16; kk += 16) {
        for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(src + (ptrdiff_t)i * rs + kk);
        transpose16(r);
        for (int t = 0; t < 16; t++) {
            _mm256_storeu_ps(d0 + (kk + t) * 8, _mm512_castps512_ps256(r[t]));
            _mm256_storeu_ps(d1 + (kk + t) * 8, _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(r[t]), 1)));
        }
    }
}

/* 16 columns of a B panel from B stored transposed (rs = 1: column j is a run at src + j·cs), K rows [0, k16). */
__attribute__((target("avx512f"))) static void pack_bt16_avx512(const float *src, ptrdiff_t cs, int k16, float *dst, int nr) {
    __m512 r[16];
    for (int kk = 0; kk < k16; kk += 16) {
        for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(src + (ptrdiff_t)i * cs + kk);
        transpose16(r);
        for (int t = 0; t < 16; t++) _mm512_storeu_ps(dst + (size_t)(kk + t) * nr, r[t]);
    }
}

size_t zoo_gemm_packed_a_floats(int m, int k) {
    zoo_gemm_info in = zoo_gemm_current();
    return (size_t)panels(m, in.mr) * in.mr * (size_t)k;
}

void zoo_gemm_pack_a(int m, int k, const float *a, int lda, float *pa) {
    zoo_gemm_pack_a_strided(m, k, a, lda, 1, pa, 0, panels(m, zoo_gemm_current().mr));
}

/* Rows kk0 ..< kb of one packed-A panel (rows of A from p·mr on, zero past m), element by element. */
static void pack_a_panel_rows(int m, const float *a, ptrdiff_t rs, ptrdiff_t cs, int k0, int mr, int p, int kk0, int kb, float *dst) {
    for (int kk = kk0; kk < kb; kk++)
        for (int i = 0; i < mr; i++) {
            const int row = p * mr + i;
            dst[kk * mr + i] = row < m ? a[(ptrdiff_t)row * rs + (ptrdiff_t)(k0 + kk) * cs] : 0.0f;
        }
}

void zoo_gemm_pack_a_taps(int m, int k, int taps, const float *a, ptrdiff_t rs, ptrdiff_t cs, float *pa, size_t tap_stride,
                          int panel_lo, int panel_hi) {
    zoo_gemm_info in = zoo_gemm_current();
    const int mr = in.mr, np = panels(m, mr), mpad = np * mr;
    for (int k0 = 0; k0 < k; k0 += in.kc) {
        const int kb = (k - k0 < in.kc) ? k - k0 : in.kc;
        for (int p = panel_lo; p < panel_hi; p++) {
            float *dst = pa + (size_t)k0 * mpad + (size_t)p * kb * mr;
            for (int kk = 0; kk < kb; kk++)
                for (int i = 0; i < mr; i++) {
                    const int row = p * mr + i;
                    float *d = dst + kk * mr + i;
                    if (row < m) {
                        const float *src = a + (ptrdiff_t)row * rs + (ptrdiff_t)(k0 + kk) * cs;
                        for (int t = 0; t < taps; t++) d[(size_t)t * tap_stride] = src[t];
                    } else {
                        for (int t = 0; t < taps; t++) d[(size_t)t * tap_stride] = 0.0f;
                    }
                }
        }
    }
}

void zoo_gemm_pack_a_strided(int m, int k, const float *a, ptrdiff_t rs, ptrdiff_t cs, float *pa, int panel_lo, int panel_hi) {
    zoo_gemm_info in = zoo_gemm_current();
    const int mr = in.mr, np = panels(m, mr), mpad = np * mr;
    for (int k0 = 0; k0 < k; k0 += in.kc) {
        const int kb = (k - k0 < in.kc) ? k - k0 : in.kc;
        float *blk = pa + (size_t)k0 * mpad;
        for (int p = panel_lo; p < panel_hi; p++) {
            float *dst = blk + (size_t)p * kb * mr;
            if (in.level == 2 && cs == 1 && p + 1 < panel_hi && (p + 2) * mr <= m && kb >= 16) {
                /* two full panels at once by 16 × 16 transposes, then their K tails */
                const int kv = kb & ~15;
                float *next = dst + (size_t)kb * mr;
                pack_a_pair_avx512(a + (ptrdiff_t)p * mr * rs + k0, rs, kv, dst, next);
                pack_a_panel_rows(m, a, rs, cs, k0, mr, p, kv, kb, dst);
                pack_a_panel_rows(m, a, rs, cs, k0, mr, p + 1, kv, kb, next);
                p++;
            } else if (rs == 1 && (p + 1) * mr <= m) {
                /* A stored transposed: each K row of a full panel is a run */
                for (int kk = 0; kk < kb; kk++) memcpy(dst + kk * mr, a + (ptrdiff_t)p * mr + (ptrdiff_t)(k0 + kk) * cs, (size_t)mr * sizeof(float));
            } else {
                pack_a_panel_rows(m, a, rs, cs, k0, mr, p, 0, kb, dst);
            }
        }
    }
}

size_t zoo_gemm_packed_b_floats(int k, int n) {
    zoo_gemm_info in = zoo_gemm_current();
    return (size_t)panels(n, in.nr) * in.nr * (size_t)k;
}

void zoo_gemm_pack_b(int k, int n, const float *b, int ldb, float *pb, int panel_lo, int panel_hi) {
    zoo_gemm_pack_b_strided(k, n, b, ldb, 1, pb + (size_t)panel_lo * k * zoo_gemm_current().nr, panel_lo, panel_hi);
}

void zoo_gemm_pack_b_strided(int k, int n, const float *b, ptrdiff_t rs, ptrdiff_t cs, float *pb, int panel_lo, int panel_hi) {
    zoo_gemm_info in = zoo_gemm_current();
    const int nr = in.nr;
    for (int q = panel_lo; q < panel_hi; q++) {
        float *dst = pb + (size_t)(q - panel_lo) * k * nr;
        const int j0 = q * nr, w = (n - j0 < nr) ? n - j0 : nr;
        if (cs == 1) {
            for (int kk = 0; kk < k; kk++) {
                memcpy(dst + (size_t)kk * nr, b + (ptrdiff_t)kk * rs + j0, (size_t)w * sizeof(float));
                if (w < nr) memset(dst + (size_t)kk * nr + w, 0, (size_t)(nr - w) * sizeof(float));
            }
        } else {
            /* Column j of the panel is a run of B (rs == 1: B stored transposed); read runs, write strided. */
            /* groups of 16 columns by 16 × 16 transposes (K rows 0 ..< kv), the rest element by element */
            const int kv = (in.level == 2 && rs == 1) ? k & ~15 : 0, wv = kv > 0 ? w & ~15 : 0;
            for (int j = 0; j < wv; j += 16) pack_bt16_avx512(b + (ptrdiff_t)(j0 + j) * cs, cs, kv, dst + j, nr);
            for (int j = 0; j < w; j++) {
                const float *src = b + (ptrdiff_t)(j0 + j) * cs;
                for (int kk = j < wv ? kv : 0; kk < k; kk++) dst[(size_t)kk * nr + j] = src[(ptrdiff_t)kk * rs];
            }
            if (w < nr)
                for (int kk = 0; kk < k; kk++) memset(dst + (size_t)kk * nr + w, 0, (size_t)(nr - w) * sizeof(float));
        }
    }
}

static inline float epi(float v, int act, float lo, float hi) {
    if (act) { v = v < lo ? lo : v; v = v > hi ? hi : v; }
    return v;
}

/// Stores an accumulator tile (row stride `w`) into C: bias on the first KC block, C added on later ones,
/// activation on the last.
static void store_tile(const float *acc, int w, float *c, int ldc, int mr_eff, int nr_eff, int first, int last,
                       const float *bias, int row0, int act, float lo, float hi) {
    for (int i = 0; i < mr_eff; i++) {
        float *cr = c + (size_t)i * ldc;
        const float bi = (bias && first) ? bias[row0 + i] : 0.0f;
        for (int j = 0; j < nr_eff; j++) {
            float v = acc[i * w + j] + (first ? bi : cr[j]);
            cr[j] = last ? epi(v, act, lo, hi) : v;
        }
    }
}

// ---------------------------------------------------------------- portable 4×8
static void kernel_generic(int kb, const float *pa, const float *pb, float *c, int ldc, int mr_eff, int nr_eff,
                           int first, int last, const float *bias, int row0, int act, float lo, float hi) {
    float acc[4][8];
    memset(acc, 0, sizeof(acc));
    for (int kk = 0; kk < kb; kk++) {
        const float *av = pa + kk * 4, *bv = pb + kk * 8;
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 8; j++) acc[i][j] += av[i] * bv[j];
    }
    store_tile(&acc[0][0], 8, c, ldc, mr_eff, nr_eff, first, last, bias, row0, act, lo, hi);
}

// ---------------------------------------------------------------- AVX2 6×16
__attribute__((target("avx2,fma")))
static void kernel_avx2(int kb, const float *pa, const float *pb, float *c, int ldc, int mr_eff, int nr_eff,
                        int first, int last, const float *bias, int row0, int act, float lo, float hi) {
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00,
           c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    for (int kk = 0; kk < kb; kk++) {
        const __m256 b0 = _mm256_loadu_ps(pb + kk * 16), b1 = _mm256_loadu_ps(pb + kk * 16 + 8);
        const float *av = pa + kk * 6;
        __m256 a;
        a = _mm256_broadcast_ss(av + 0); c00 = _mm256_fmadd_ps(a, b0, c00); c01 = _mm256_fmadd_ps(a, b1, c01);
        a = _mm256_broadcast_ss(av + 1); c10 = _mm256_fmadd_ps(a, b0, c10); c11 = _mm256_fmadd_ps(a, b1, c11);
        a = _mm256_broadcast_ss(av + 2); c20 = _mm256_fmadd_ps(a, b0, c20); c21 = _mm256_fmadd_ps(a, b1, c21);
        a = _mm256_broadcast_ss(av + 3); c30 = _mm256_fmadd_ps(a, b0, c30); c31 = _mm256_fmadd_ps(a, b1, c31);
        a = _mm256_broadcast_ss(av + 4); c40 = _mm256_fmadd_ps(a, b0, c40); c41 = _mm256_fmadd_ps(a, b1, c41);
        a = _mm256_broadcast_ss(av + 5); c50 = _mm256_fmadd_ps(a, b0, c50); c51 = _mm256_fmadd_ps(a, b1, c51);
    }
    float acc[6][16];
    _mm256_storeu_ps(acc[0], c00); _mm256_storeu_ps(acc[0] + 8, c01);
    _mm256_storeu_ps(acc[1], c10); _mm256_storeu_ps(acc[1] + 8, c11);
    _mm256_storeu_ps(acc[2], c20); _mm256_storeu_ps(acc[2] + 8, c21);
    _mm256_storeu_ps(acc[3], c30); _mm256_storeu_ps(acc[3] + 8, c31);
    _mm256_storeu_ps(acc[4], c40); _mm256_storeu_ps(acc[4] + 8, c41);
    _mm256_storeu_ps(acc[5], c50); _mm256_storeu_ps(acc[5] + 8, c51);
    store_tile(&acc[0][0], 16, c, ldc, mr_eff, nr_eff, first, last, bias, row0, act, lo, hi);
}

// ---------------------------------------------------------------- AVX-512 8×48
#define ZOO_AVX512 __attribute__((target("avx512f")))

ZOO_AVX512 static inline void store_row512(float *cr, __m512 v0, __m512 v1, __m512 v2, __mmask16 m0, __mmask16 m1,
                                           __mmask16 m2, int first, int last, float bi, int act, __m512 lo, __m512 hi) {
    if (first) {
        const __m512 b = _mm512_set1_ps(bi);
        v0 = _mm512_add_ps(v0, b); v1 = _mm512_add_ps(v1, b); v2 = _mm512_add_ps(v2, b);
    } else {
        v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, cr));
        v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, cr + 16));
        v2 = _mm512_add_ps(v2, _mm512_maskz_loadu_ps(m2, cr + 32));
    }
    if (last && act) {
        v0 = _mm512_min_ps(_mm512_max_ps(v0, lo), hi);
        v1 = _mm512_min_ps(_mm512_max_ps(v1, lo), hi);
        v2 = _mm512_min_ps(_mm512_max_ps(v2, lo), hi);
    }
    _mm512_mask_storeu_ps(cr, m0, v0);
    _mm512_mask_storeu_ps(cr + 16, m1, v1);
    _mm512_mask_storeu_ps(cr + 32, m2, v2);
}

ZOO_AVX512 static void kernel_avx512(int kb, const float *pa, const float *pb, float *c, int ldc, int mr_eff, int nr_eff,
                                     int first, int last, const float *bias, int row0, int act, float lo, float hi) {
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c02 = c00, c10 = c00, c11 = c00, c12 = c00,
           c20 = c00, c21 = c00, c22 = c00, c30 = c00, c31 = c00, c32 = c00,
           c40 = c00, c41 = c00, c42 = c00, c50 = c00, c51 = c00, c52 = c00,
           c60 = c00, c61 = c00, c62 = c00, c70 = c00, c71 = c00, c72 = c00;
    if (nr_eff > 32) {
        for (int kk = 0; kk < kb; kk++) {
            const float *bv = pb + kk * 48, *av = pa + kk * 8;
            const __m512 b0 = _mm512_loadu_ps(bv), b1 = _mm512_loadu_ps(bv + 16), b2 = _mm512_loadu_ps(bv + 32);
            __m512 a;
#define ZROW(i) a = _mm512_set1_ps(av[i]); \
            c##i##0 = _mm512_fmadd_ps(a, b0, c##i##0); c##i##1 = _mm512_fmadd_ps(a, b1, c##i##1); c##i##2 = _mm512_fmadd_ps(a, b2, c##i##2);
            ZROW(0) ZROW(1) ZROW(2) ZROW(3) ZROW(4) ZROW(5) ZROW(6) ZROW(7)
#undef ZROW
        }
    } else if (nr_eff > 16) {
        for (int kk = 0; kk < kb; kk++) {
            const float *bv = pb + kk * 48, *av = pa + kk * 8;
            const __m512 b0 = _mm512_loadu_ps(bv), b1 = _mm512_loadu_ps(bv + 16);
            __m512 a;
#define ZROW(i) a = _mm512_set1_ps(av[i]); \
            c##i##0 = _mm512_fmadd_ps(a, b0, c##i##0); c##i##1 = _mm512_fmadd_ps(a, b1, c##i##1);
            ZROW(0) ZROW(1) ZROW(2) ZROW(3) ZROW(4) ZROW(5) ZROW(6) ZROW(7)
#undef ZROW
        }
    } else {
        for (int kk = 0; kk < kb; kk++) {
            const float *bv = pb + kk * 48, *av = pa + kk * 8;
            const __m512 b0 = _mm512_loadu_ps(bv);
#define ZROW(i) c##i##0 = _mm512_fmadd_ps(_mm512_set1_ps(av[i]), b0, c##i##0);
            ZROW(0) ZROW(1) ZROW(2) ZROW(3) ZROW(4) ZROW(5) ZROW(6) ZROW(7)
#undef ZROW
        }
    }
    const int w0 = nr_eff < 16 ? nr_eff : 16, w1 = nr_eff - 16 < 0 ? 0 : (nr_eff - 16 < 16 ? nr_eff - 16 : 16),
              w2 = nr_eff - 32 < 0 ? 0 : nr_eff - 32;
    const __mmask16 m0 = (__mmask16)((1u << w0) - 1), m1 = (__mmask16)((1u << w1) - 1), m2 = (__mmask16)((1u << w2) - 1);
    const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
#define ZSTORE(i) if (i < mr_eff) store_row512(c + (size_t)i * ldc, c##i##0, c##i##1, c##i##2, m0, m1, m2, first, last, \
                                               (bias && first) ? bias[row0 + i] : 0.0f, act, vlo, vhi);
    ZSTORE(0) ZSTORE(1) ZSTORE(2) ZSTORE(3) ZSTORE(4) ZSTORE(5) ZSTORE(6) ZSTORE(7)
#undef ZSTORE
}

/* The AVX-512 tile for panels of MR ≤ 8 rows (A packed kb × MR), 48 columns: rows past MR are not computed at all, so a
   7-wide output row costs 7/8 of an 8-row tile rather than a whole one. The row count is a compile-time constant in each
   caller below, so the loops unroll and the accumulators stay in registers. */
ZOO_AVX512 static inline __attribute__((always_inline)) void
kernel_avx512_rows(const int MR, int kb, const float *pa, const float *pb, float *c, int ldc, int nr_eff, int first) {
    __m512 acc[8][3];
    for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = acc[i][2] = _mm512_setzero_ps();
    const int nv = nr_eff > 32 ? 3 : nr_eff > 16 ? 2 : 1;
    if (nv == 3) {
        for (int kk = 0; kk < kb; kk++) {
            const float *bv = pb + kk * 48, *av = pa + kk * MR;
            const __m512 b0 = _mm512_loadu_ps(bv), b1 = _mm512_loadu_ps(bv + 16), b2 = _mm512_loadu_ps(bv + 32);
            for (int i = 0; i < MR; i++) {
                const __m512 a = _mm512_set1_ps(av[i]);
                acc[i][0] = _mm512_fmadd_ps(a, b0, acc[i][0]);
                acc[i][1] = _mm512_fmadd_ps(a, b1, acc[i][1]);
                acc[i][2] = _mm512_fmadd_ps(a, b2, acc[i][2]);
            }
        }
    } else if (nv == 2) {
        for (int kk = 0; kk < kb; kk++) {
            const float *bv = pb + kk * 48, *av = pa + kk * MR;
            const __m512 b0 = _mm512_loadu_ps(bv), b1 = _mm512_loadu_ps(bv + 16);
            for (int i = 0; i < MR; i++) {
                const __m512 a = _mm512_set1_ps(av[i]);
                acc[i][0] = _mm512_fmadd_ps(a, b0, acc[i][0]);
                acc[i][1] = _mm512_fmadd_ps(a, b1, acc[i][1]);
            }
        }
    } else {
        for (int kk = 0; kk < kb; kk++) {
            const __m512 b0 = _mm512_loadu_ps(pb + kk * 48);
            const float *av = pa + kk * MR;
            for (int i = 0; i < MR; i++) acc[i][0] = _mm512_fmadd_ps(_mm512_set1_ps(av[i]), b0, acc[i][0]);
        }
    }
    const int w0 = nr_eff < 16 ? nr_eff : 16, w1 = nr_eff - 16 < 0 ? 0 : (nr_eff - 16 < 16 ? nr_eff - 16 : 16),
              w2 = nr_eff - 32 < 0 ? 0 : nr_eff - 32;
    const __mmask16 m0 = (__mmask16)((1u << w0) - 1), m1 = (__mmask16)((1u << w1) - 1), m2 = (__mmask16)((1u << w2) - 1);
    const __m512 z = _mm512_setzero_ps();
    for (int i = 0; i < MR; i++)
        store_row512(c + (size_t)i * ldc, acc[i][0], acc[i][1], acc[i][2], m0, m1, m2, first, 0, 0.0f, 0, z, z);
}

#define ZOO_ROWS_KERNEL(R) \
    ZOO_AVX512 static void kernel_avx512_rows##R(int kb, const float *pa, const float *pb, float *c, int ldc, int nr_eff, \
                                                int first) { kernel_avx512_rows(R, kb, pa, pb, c, ldc, nr_eff, first); }
ZOO_ROWS_KERNEL(1) ZOO_ROWS_KERNEL(2) ZOO_ROWS_KERNEL(3) ZOO_ROWS_KERNEL(4)
ZOO_ROWS_KERNEL(5) ZOO_ROWS_KERNEL(6) ZOO_ROWS_KERNEL(7) ZOO_ROWS_KERNEL(8)
#undef ZOO_ROWS_KERNEL

int zoo_gemm_rows_acc(int mr, int panels_m, int n, int kb, const float *pa, const float *pb, float *c, int ldc,
                      int accumulate) {
    typedef void (*rows_fn)(int, const float *, const float *, float *, int, int, int);
    static const rows_fn fns[9] = {0, kernel_avx512_rows1, kernel_avx512_rows2, kernel_avx512_rows3, kernel_avx512_rows4,
                                   kernel_avx512_rows5, kernel_avx512_rows6, kernel_avx512_rows7, kernel_avx512_rows8};
    zoo_gemm_info in = zoo_gemm_current();
    if (in.level != 2 || mr < 1 || mr > 8 || kb <= 0) return 0;
    const rows_fn kern = fns[mr];
    for (int q = 0; q < panels(n, 48); q++) {
        const int j0 = q * 48, nr_eff = n - j0 < 48 ? n - j0 : 48;
        for (int p = 0; p < panels_m; p++)
            kern(kb, pa + (size_t)p * kb * mr, pb + (size_t)q * kb * 48, c + (size_t)p * mr * ldc + j0, ldc, nr_eff, !accumulate);
    }
    return 1;
}

typedef void (*kernel_fn)(int, const float *, const float *, float *, int, int, int, int, int, const float *, int, int, float, float);

void zoo_gemm_compute(int m, int n, int k, const float *pa, const float *pb, float *c, int ldc,
                      const float *bias, int act, float lo, float hi,
                      int mp_lo, int mp_hi, int np_lo, int np_hi) {
    zoo_gemm_compute_acc(m, n, k, pa, pb, c, ldc, bias, act, lo, hi, mp_lo, mp_hi, np_lo, np_hi, 0);
}

void zoo_gemm_compute_acc(int m, int n, int k, const float *pa, const float *pb, float *c, int ldc,
                          const float *bias, int act, float lo, float hi,
                          int mp_lo, int mp_hi, int np_lo, int np_hi, int accumulate) {
    zoo_gemm_info in = zoo_gemm_current();
    const int mr = in.mr, nr = in.nr, mpad = panels(m, mr) * mr;
    kernel_fn kern = in.level == 2 ? kernel_avx512 : in.level == 1 ? kernel_avx2 : kernel_generic;
    if (k <= 0) {
        if (accumulate) return;
        for (int i = mp_lo * mr; i < m && i < mp_hi * mr; i++)
            for (int j = np_lo * nr; j < n && j < np_hi * nr; j++)
                c[(size_t)i * ldc + j] = epi(bias ? bias[i] : 0.0f, act, lo, hi);
        return;
    }
    for (int k0 = 0; k0 < k; k0 += in.kc) {
        const int kb = (k - k0 < in.kc) ? k - k0 : in.kc;
        const int first = k0 == 0 && !accumulate, last = k0 + kb == k;
        const float *blk = pa + (size_t)k0 * mpad;
        for (int q = np_lo; q < np_hi; q++) {
            const int j0 = q * nr, nr_eff = (n - j0 < nr) ? n - j0 : nr;
            const float *bp = pb + (size_t)q * k * nr + (size_t)k0 * nr;
            for (int p = mp_lo; p < mp_hi; p++) {
                const int i0 = p * mr, mr_eff = (m - i0 < mr) ? m - i0 : mr;
                kern(kb, blk + (size_t)p * kb * mr, bp, c + (size_t)i0 * ldc + j0, ldc, mr_eff, nr_eff, first, last,
                     bias, i0, act, lo, hi);
            }
        }
    }
}

// ---------------------------------------------------------------- matrix × vector
/* y[i] = Σ_kk a[i·lda + kk] · x[kk], i < m: four rows at a time (each x vector loaded once for four rows). */
static void gemv_generic(int m, int k, const float *a, int lda, const float *x, float *y) {
    for (int i = 0; i < m; i++) {
        const float *r = a + (size_t)i * lda;
        float s = 0;
        for (int kk = 0; kk < k; kk++) s += r[kk] * x[kk];
        y[i] = s;
    }
}

__attribute__((target("avx2,fma"))) static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

__attribute__((target("avx2,fma"))) static void gemv_avx2(int m, int k, const float *a, int lda, const float *x, float *y) {
    int i = 0;
    const int k8 = k & ~7;
    for (; i + 4 <= m; i += 4) {
        const float *r0 = a + (size_t)i * lda, *r1 = r0 + lda, *r2 = r1 + lda, *r3 = r2 + lda;
        __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
        for (int kk = 0; kk < k8; kk += 8) {
            const __m256 xv = _mm256_loadu_ps(x + kk);
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(r0 + kk), xv, s0);
            s1 = _mm256_fmadd_ps(_mm256_loadu_ps(r1 + kk), xv, s1);
            s2 = _mm256_fmadd_ps(_mm256_loadu_ps(r2 + kk), xv, s2);
            s3 = _mm256_fmadd_ps(_mm256_loadu_ps(r3 + kk), xv, s3);
        }
        float t0 = hsum256(s0), t1 = hsum256(s1), t2 = hsum256(s2), t3 = hsum256(s3);
        for (int kk = k8; kk < k; kk++) { t0 += r0[kk] * x[kk]; t1 += r1[kk] * x[kk]; t2 += r2[kk] * x[kk]; t3 += r3[kk] * x[kk]; }
        y[i] = t0; y[i + 1] = t1; y[i + 2] = t2; y[i + 3] = t3;
    }
    if (i < m) gemv_generic(m - i, k, a + (size_t)i * lda, lda, x, y + i);
}

ZOO_AVX512 static void gemv_avx512(int m, int k, const float *a, int lda, const float *x, float *y) {
    int i = 0;
    const int k16 = k & ~15;
    const __mmask16 tail = (__mmask16)((1u << (k - k16)) - 1);
    for (; i < m; i += 4) {
        const int rows = m - i < 4 ? m - i : 4;
        const float *r[4];
        for (int j = 0; j < 4; j++) r[j] = a + (size_t)(i + (j < rows ? j : 0)) * lda;
        __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
        for (int kk = 0; kk < k16; kk += 16) {
            const __m512 xv = _mm512_loadu_ps(x + kk);
            s0 = _mm512_fmadd_ps(_mm512_loadu_ps(r[0] + kk), xv, s0);
            s1 = _mm512_fmadd_ps(_mm512_loadu_ps(r[1] + kk), xv, s1);
            s2 = _mm512_fmadd_ps(_mm512_loadu_ps(r[2] + kk), xv, s2);
            s3 = _mm512_fmadd_ps(_mm512_loadu_ps(r[3] + kk), xv, s3);
        }
        if (tail) {
            const __m512 xv = _mm512_maskz_loadu_ps(tail, x + k16);
            s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, r[0] + k16), xv, s0);
            s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, r[1] + k16), xv, s1);
            s2 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, r[2] + k16), xv, s2);
            s3 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, r[3] + k16), xv, s3);
        }
        const float t[4] = {_mm512_reduce_add_ps(s0), _mm512_reduce_add_ps(s1), _mm512_reduce_add_ps(s2), _mm512_reduce_add_ps(s3)};
        for (int j = 0; j < rows; j++) y[i + j] = t[j];
    }
}

void zoo_gemv(int m, int k, const float *a, int lda, const float *x, float *y) {
    zoo_gemm_info in = zoo_gemm_current();
    if (m <= 0) return;
    if (k <= 0) { for (int i = 0; i < m; i++) y[i] = 0; return; }
    if (in.level == 2) gemv_avx512(m, k, a, lda, x, y);
    else if (in.level == 1) gemv_avx2(m, k, a, lda, x, y);
    else gemv_generic(m, k, a, lda, x, y);
}
