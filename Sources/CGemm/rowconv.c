// Row-panel convolution (see zoo_gemm.h): for one K block of KC rows (r = (ic·kH + ky)·kW + kx), the block's input
// channels are staged as zero-padded, stride-deinterleaved rows (staged[c][row][phase][u] = x[c][row − padT]
// [u·sW + phase − padL], 0 outside), so that the 8 slots of output row oy for tap r are 8 consecutive floats:
// staged[c][oy·sH + ky·dH][(kx·dH) % sW][(kx·dW) / sW + ox]. The first outW of them, kb times, form one packed-A panel of
// an outW-row AVX-512 tile (zoo_gemm_rows_acc; all 8 on the 8-row tile with exact rows off); the worker's range of Wᵀ
// was packed once per K block as NR-column panels.
#include "zoo_gemm.h"
#include <immintrin.h>
#include <string.h>

static inline int rc_kk(const zoo_rowconv_geom *g) { return g->kH * g->kW; }
static inline int rc_k(const zoo_rowconv_geom *g) { return g->inC * rc_kk(g); }
static inline int rc_rows(const zoo_rowconv_geom *g) { return (g->outH - 1) * g->sH + (g->kH - 1) * g->dH + 1; }
static inline int rc_run(const zoo_rowconv_geom *g) { return 8 + ((g->kW - 1) * g->dW) / g->sW + 1; }
static inline int rc_npad(int n, int nr) { return (n + nr - 1) / nr * nr; }

size_t zoo_rowconv_packed_floats(const zoo_rowconv_geom *g, int n) {
    zoo_gemm_info in = zoo_gemm_current();
    return (size_t)rc_k(g) * (size_t)rc_npad(n, in.nr) + 1;
}

void zoo_rowconv_pack(const zoo_rowconv_geom *g, const float *w, int col0, int n, float *pb) {
    zoo_gemm_info in = zoo_gemm_current();
    const int k = rc_k(g), npad = rc_npad(n, in.nr), np = npad / in.nr;
    for (int k0 = 0; k0 < k; k0 += in.kc) {
        const int kb = k - k0 < in.kc ? k - k0 : in.kc;
        /* element (kk, j) of this block = w[(col0 + j)·K + k0 + kk] */
        zoo_gemm_pack_b_strided(kb, n, w + (size_t)col0 * k + k0, 1, k, pb + (size_t)k0 * npad, 0, np);
    }
}

size_t zoo_rowconv_work_floats(const zoo_rowconv_geom *g) {
    zoo_gemm_info in = zoo_gemm_current();
    const int chans = in.kc / rc_kk(g) + 2;
    return (size_t)chans * rc_rows(g) * g->sW * rc_run(g) + (size_t)g->outH * in.kc * 8 + 16;
}

/* Channels [c0, c1) into staged rows (layout above). */
static void rc_stage(const zoo_rowconv_geom *g, const float *x, int c0, int c1, float *st) {
    const int rows = rc_rows(g), run = rc_run(g), s = g->sW;
    for (int c = c0; c < c1; c++) {
        const float *plane = x + (size_t)c * g->inH * g->inW;
        for (int r = 0; r < rows; r++) {
            float *dst = st + ((size_t)(c - c0) * rows + r) * s * run;
            const int iy = r - g->padT;
            if (iy < 0 || iy >= g->inH) { memset(dst, 0, sizeof(float) * (size_t)s * run); continue; }
            const float *src = plane + (size_t)iy * g->inW;
            if (s == 1) {
                /* u − padL in [0, inW): one copy between zero edges */
                const int lo = g->padL < run ? g->padL : run;
                int hi = g->padL + g->inW;
                if (hi > run) hi = run;
                if (lo > 0) memset(dst, 0, sizeof(float) * (size_t)lo);
                if (hi > lo) memcpy(dst + lo, src, sizeof(float) * (size_t)(hi - lo));
                if (hi < run) memset(dst + (hi > lo ? hi : lo), 0, sizeof(float) * (size_t)(run - (hi > lo ? hi : lo)));
                continue;
            }
            for (int q = 0; q < s; q++)
                for (int u = 0; u < run; u++) {
                    const int ix = u * s + q - g->padL;
                    dst[q * run + u] = ix >= 0 && ix < g->inW ? src[ix] : 0.0f;
                }
        }
    }
}

static inline __mmask16 rc_bits(int lo, int hi) {
    if (lo < 0) lo = 0;
    if (hi > 16) hi = 16;
    return hi > lo ? (__mmask16)(((1u << hi) - 1) & ~((1u << lo) - 1)) : 0;
}

/* rc_stage for runs of at most 16 floats and strides 1 and 2 with masked loads (a libc call per 10-float run cost more
   than the products at 7×7); others by rc_stage. */
__attribute__((target("avx512f"))) static void rc_stage_avx512(const zoo_rowconv_geom *g, const float *x, int c0, int c1, float *st) {
    const int rows = rc_rows(g), run = rc_run(g), s = g->sW;
    if (run > 16 || s > 2) { rc_stage(g, x, c0, c1, st); return; }
    const __mmask16 keep = rc_bits(0, run);
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i odd = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    /* element e of the 32 floats from src − padL is x[e − padL] */
    const __mmask16 ma = rc_bits(g->padL, g->padL + g->inW), mb = rc_bits(g->padL - 16, g->padL + g->inW - 16);
    const __m512 z = _mm512_setzero_ps();
    for (int c = c0; c < c1; c++) {
        const float *plane = x + (size_t)c * g->inH * g->inW;
        for (int r = 0; r < rows; r++) {
            float *dst = st + ((size_t)(c - c0) * rows + r) * s * run;
            const int iy = r - g->padT;
            if (iy < 0 || iy >= g->inH) {
                for (int q = 0; q < s; q++) _mm512_mask_storeu_ps(dst + q * run, keep, z);
                continue;
            }
            const float *src = plane + (size_t)iy * g->inW - g->padL;
            const __m512 a = _mm512_maskz_loadu_ps(ma, src);
            if (s == 1) { _mm512_mask_storeu_ps(dst, keep, a); continue; }
            const __m512 b = _mm512_maskz_loadu_ps(mb, src + 16);
            _mm512_mask_storeu_ps(dst, keep, _mm512_permutex2var_ps(a, even, b));
            _mm512_mask_storeu_ps(dst + run, keep, _mm512_permutex2var_ps(a, odd, b));
        }
    }
}

static int rc_exact_rows = 1;
void zoo_rowconv_set_exact(int on) { rc_exact_rows = on; }

__attribute__((target("avx512f"))) static void
rc_part_avx512(const zoo_rowconv_geom *g, const float *x, const float *pb, int col0, int n, const float *bias, int act,
               float lo, float hi, float *ct, float *y, float *work) {
    zoo_gemm_info in = zoo_gemm_current();
    const int kk = rc_kk(g), k = rc_k(g), rows = rc_rows(g), run = rc_run(g), s = g->sW;
    const int npad = rc_npad(n, in.nr), np = npad / in.nr;
    /* Exact rows: a panel of outW slots per output row, on the tiles of that many rows (no slot computed and dropped);
       else 8-slot panels on the 8-row tile. Slot (oy, ox) is row oy·mr + ox of Cᵀ. */
    const int mr = rc_exact_rows ? g->outW : 8, slots = g->outH * mr;
    const __m256i keep = _mm256_cmpgt_epi32(_mm256_set1_epi32(mr), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    float *st = work + (size_t)g->outH * in.kc * 8;
    float *a = work;
    for (int k0 = 0; k0 < k; k0 += in.kc) {
        const int kb = k - k0 < in.kc ? k - k0 : in.kc;
        const int c0 = k0 / kk, c1 = (k0 + kb - 1) / kk + 1;
        rc_stage_avx512(g, x, c0, c1, st);
        for (int rr = 0; rr < kb; rr++) {
            const int r = k0 + rr, c = r / kk, ky = (r % kk) / g->kW, kx = r % g->kW;
            const int q = (kx * g->dW) % s, u0 = (kx * g->dW) / s;
            const float *src = st + (((size_t)(c - c0) * rows + ky * g->dH) * s + q) * run + u0;
            for (int oy = 0; oy < g->outH; oy++)
                _mm256_maskstore_ps(a + ((size_t)oy * kb + rr) * mr, keep, _mm256_loadu_ps(src + (size_t)oy * g->sH * s * run));
        }
        if (mr == 8 || !zoo_gemm_rows_acc(mr, g->outH, n, kb, a, pb + (size_t)k0 * npad, ct + col0, g->outC, k0 > 0))
            zoo_gemm_compute_acc(slots, n, kb, a, pb + (size_t)k0 * npad, ct + col0, g->outC, 0, 0, 0, 0, 0, g->outH, 0, np,
                                 k0 > 0);
    }
    const int plane = g->outH * g->outW;
    for (int j = 0; j < n; j++) {
        const int oc = col0 + j;
        const float b = bias ? bias[oc] : 0.0f;
        float *yo = y + (size_t)oc * plane;
        for (int oy = 0; oy < g->outH; oy++)
            for (int ox = 0; ox < g->outW; ox++) {
                float v = ct[(size_t)(oy * mr + ox) * g->outC + oc] + b;
                if (act) { v = v < lo ? lo : v; v = v > hi ? hi : v; }
                yo[oy * g->outW + ox] = v;
            }
    }
}

int zoo_rowconv_part(const zoo_rowconv_geom *g, const float *x, const float *pb, int col0, int n, const float *bias,
                     int act, float lo, float hi, float *ct, float *y, float *work) {
    zoo_gemm_info in = zoo_gemm_current();
    if (in.level != 2 || in.mr != 8 || g->outW > 8 || g->outW < 1 || n <= 0) return 0;
    rc_part_avx512(g, x, pb, col0, n, bias, act, lo, hi, ct, y, work);
    return 1;
}
