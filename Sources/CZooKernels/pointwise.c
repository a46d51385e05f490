// 1×1 convolution as a GEMM whose right-hand side is read in place (no packing of the activations):
// Y[m×n] = act(A[m×k] · X[k×n] + bias) (+ R), A packed once into 8-row panels (see zoo_pw_pack), X and Y rows
// strided by the plane. AVX-512F micro-tiles of 8 rows × up to 48 columns, masked column tails, chosen at run time.
#include "CZooKernels.h"
#include <immintrin.h>
#include "avx2_common.h"
#include <stdlib.h>

size_t zoo_pw_packed_floats(int m, int k) { return (size_t)((m + 7) / 8) * 8 * (size_t)(k > 0 ? k : 1); }

void zoo_pw_pack(int m, int k, const float *w, float *pa) {
    const int panels = (m + 7) / 8;
    for (int p = 0; p < panels; p++)
        for (int kk = 0; kk < k; kk++)
            for (int i = 0; i < 8; i++) {
                const int row = p * 8 + i;
                pa[((size_t)p * k + kk) * 8 + i] = row < m ? w[(size_t)row * k + kk] : 0.0f;
            }
}

#define PW_TARGET __attribute__((target("avx512f")))

static int pw_narrow_on = 1;
void zoo_pw_set_narrow(int on) { pw_narrow_on = on; }

// One tile: `rows` (≤ 8) output rows × NV vectors of 16 columns (the last masked by `mlast`).
#define PW_TILE_P(NV, NAME, ROW, PREFETCH)                                                                            \
    PW_TARGET static void NAME##_##NV(int k, const float *a, const float *x, ptrdiff_t ldx, const ptrdiff_t *offs,    \
                                        __mmask16 mlast,                                                              \
                                        int rows, const float *bias, int clamp, float lo, float hi,                   \
                                        const float *res, ptrdiff_t ldr, float *y, ptrdiff_t ldy) {                   \
        __m512 c[8][NV];                                                                                              \
        for (int i = 0; i < 8; i++)                                                                                   \
            for (int v = 0; v < NV; v++) c[i][v] = _mm512_setzero_ps();                                               \
        const __mmask16 mfull = (__mmask16)0xFFFF;                                                                    \
        /* One k loop per prefetch setting, not unrolled: with the prefetch test inside and clang's unrolling, the NV = 3 \
           tile kept copies of the loaded rows across iterations and spilled an accumulator to the stack every k. */   \
        _Pragma("clang loop unroll(disable)") for (int kk = 0; kk < k; kk++) {                                       \
            const float *xr = ROW;                                                                                    \
            __m512 b[NV];                                                                                             \
            for (int v = 0; v < NV; v++) b[v] = _mm512_maskz_loadu_ps(v == NV - 1 ? mlast : mfull, xr + 16 * v);      \
            if (PREFETCH) { /* the next tile's columns of this row */                                                 \
                _mm_prefetch((const char *)(xr + 48), _MM_HINT_T0);                                                   \
                _mm_prefetch((const char *)(xr + 64), _MM_HINT_T0);                                                   \
                _mm_prefetch((const char *)(xr + 80), _MM_HINT_T0);                                                   \
            }                                                                                                         \
            const float *av = a + kk * 8;                                                                             \
            for (int i = 0; i < 8; i++) {                                                                             \
                const __m512 ai = _mm512_set1_ps(av[i]);                                                              \
                for (int v = 0; v < NV; v++) c[i][v] = _mm512_fmadd_ps(ai, b[v], c[i][v]);                            \
            }                                                                                                         \
        }                                                                                                             \
        /* A constant trip count with the row test inside: with `break` at `rows`, clang kept c in a stack array (a     \
           memset per tile, the accumulators stored after the k loop and read back here). */                           \
        /* the clamp bounds as vectors only here: live through the k loop they took two of the 32 zmm registers and \
           clang spilled an accumulator to the stack in every iteration (pw_avx512 on Zen 5: a store and a reload per k). */ \
        const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);                                              \
        _Pragma("clang loop unroll(full)") for (int i = 0; i < 8; i++) {                                              \
            if (i < rows) {                                                                                           \
                const __m512 bi = _mm512_set1_ps(bias ? bias[i] : 0.0f);                                              \
                _Pragma("clang loop unroll(full)") for (int v = 0; v < NV; v++) {                                     \
                    const __mmask16 mv = v == NV - 1 ? mlast : mfull;                                                 \
                    __m512 t = _mm512_add_ps(c[i][v], bi);                                                            \
                    /* max/min return their second operand when either is NaN: NaN stays NaN. */                     \
                    if (clamp) t = _mm512_min_ps(vhi, _mm512_max_ps(vlo, t));                                         \
                    if (res) t = _mm512_add_ps(t, _mm512_maskz_loadu_ps(mv, res + i * ldr + 16 * v));                 \
                    _mm512_mask_storeu_ps(y + i * ldy + 16 * v, mv, t);                                               \
                }                                                                                                     \
            }                                                                                                         \
        }                                                                                                             \
    }
PW_TILE_P(1, pw_tile, x + kk * ldx, 0)
PW_TILE_P(2, pw_tile, x + kk * ldx, 0)
PW_TILE_P(3, pw_tile, x + kk * ldx, 0)
PW_TILE_P(1, pw_tilepf, x + kk * ldx, 1)
PW_TILE_P(2, pw_tilepf, x + kk * ldx, 1)
PW_TILE_P(3, pw_tilepf, x + kk * ldx, 1)
PW_TILE_P(1, tap_tile, x + offs[kk], 0)
PW_TILE_P(2, tap_tile, x + offs[kk], 0)
PW_TILE_P(3, tap_tile, x + offs[kk], 0)

// Narrow tails (≤ 2 columns, e.g. the 49th column of a 7×7 plane; at 4 columns the masked tiles were faster): one
// column at a time with the 8 rows of a panel in one ymm (1 FMA per k instead of 8 masked zmm FMAs); same multiply-add order per element as the tiles, so the
// results are bit-identical to theirs. Only ymm operations: the AVX-512F and the AVX2 tiles both call it.
ZK_AVX2 static void pw_narrow(int k, const float *a, const float *x, ptrdiff_t ldx, int w, int rows, const float *bias,
                                int clamp, float lo, float hi, const float *res, ptrdiff_t ldr, float *y, ptrdiff_t ldy) {
    for (int jj = 0; jj < w; jj++) {
        __m256 acc = _mm256_setzero_ps();
        for (int kk = 0; kk < k; kk++)
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + kk * 8), _mm256_set1_ps(x[kk * ldx + jj]), acc);
        float t[8];
        _mm256_storeu_ps(t, acc);
        for (int i = 0; i < rows; i++) {
            float v = t[i] + (bias ? bias[i] : 0.0f);
            if (clamp) {
                v = lo > v ? lo : v;  /* as max/min of the tiles: a NaN v stays NaN */
                v = hi < v ? hi : v;
            }
            if (res) v += res[i * ldr + jj];
            y[i * ldy + jj] = v;
        }
    }
}

PW_TARGET static void pw_avx512(int m, int k, const float *pa, const float *x, ptrdiff_t ldx, int n0, int n1, int p0, int p1,
                                const float *bias, int clamp, float lo, float hi, const float *res, ptrdiff_t ldr, float *y,
                                ptrdiff_t ldy) {
    for (int j = n0; j < n1; j += 48) {
        const int w = n1 - j < 48 ? n1 - j : 48;
        const int nv = (w + 15) / 16, lastw = w - 16 * (nv - 1);
        const __mmask16 mlast = (__mmask16)(lastw == 16 ? 0xFFFF : (1u << lastw) - 1);
        const int more = j + 48 < n1;
        for (int p = p0; p < p1; p++) {
            const int row0 = p * 8, rows = m - row0 < 8 ? m - row0 : 8;
            const float *a = pa + (size_t)p * k * 8;
            const float *bp = bias ? bias + row0 : 0;
            const float *rp = res ? res + row0 * ldr + j : 0;
            float *yp = y + row0 * ldy + j;
            const int pf = more && p == p0;
            if (w <= 2 && pw_narrow_on) pw_narrow(k, a, x + j, ldx, w, rows, bp, clamp, lo, hi, rp, ldr, yp, ldy);
            else if (nv == 3 && pf) pw_tilepf_3(k, a, x + j, ldx, 0, mlast, rows, bp, clamp, lo, hi, rp, ldr, yp, ldy);
            else if (nv == 3) pw_tile_3(k, a, x + j, ldx, 0, mlast, rows, bp, clamp, lo, hi, rp, ldr, yp, ldy);
            else if (nv == 2 && pf) pw_tilepf_2(k, a, x + j, ldx, 0, mlast, rows, bp, clamp, lo, hi, rp, ldr, yp, ldy);
            else if (nv == 2) pw_tile_2(k, a, x + j, ldx, 0, mlast, rows, bp, clamp, lo, hi, rp, ldr, yp, ldy);
            else if (pf) pw_tilepf_1(k, a, x + j, ldx, 0, mlast, rows, bp, clamp, lo, hi, rp, ldr, yp, ldy);
            else pw_tile_1(k, a, x + j, ldx, 0, mlast, rows, bp, clamp, lo, hi, rp, ldr, yp, ldy);
        }
    }
}

// AVX2 + FMA twins for CPUs without AVX-512F: tiles of 4 rows (half of an 8-row panel) × up to 2 ymm vectors of 8
// columns the last vector masked, and the 4 × 24 assembly tile below. Per element the same
// FMA chain over k from zero, then + bias, clamp, + residual, as the AVX-512F tiles: bit-identical results.
#define AVX2_TARGET __attribute__((target("avx2,fma")))

#define PW2_TILE(NV, M, NAME, ROW)                                                                                    \
    __attribute__((target("avx2,fma"), noinline)) static void NAME(int k, const float *a, const float *x, ptrdiff_t ldx,  \
                                 const ptrdiff_t *offs, __m256i mlast, int rows, const float *bias, int clamp, float lo, float hi, \
                                 const float *res, ptrdiff_t ldr, float *y, ptrdiff_t ldy) {                          \
        __m256 c[4][NV];                                                                                              \
        for (int i = 0; i < 4; i++)                                                                                   \
            for (int v = 0; v < NV; v++) c[i][v] = _mm256_setzero_ps();                                               \
        for (int kk = 0; kk < k; kk++) {                                                                              \
            const float *xr = ROW;                                                                                    \
            __m256 b[NV];                                                                                             \
            for (int v = 0; v < NV; v++) b[v] = M ? _mm256_maskload_ps(xr, mlast) : _mm256_loadu_ps(xr + 8 * v);     \
            const float *av = a + kk * 8;                                                                             \
            for (int i = 0; i < 4; i++) {                                                                             \
                const __m256 ai = _mm256_broadcast_ss(av + i);                                                        \
                for (int v = 0; v < NV; v++) c[i][v] = _mm256_fmadd_ps(ai, b[v], c[i][v]);                            \
            }                                                                                                         \
        }                                                                                                             \
        const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);                                              \
        for (int i = 0; i < 4; i++) {                                                                                 \
            if (i >= rows) break;                                                                                     \
            const __m256 bi = _mm256_set1_ps(bias ? bias[i] : 0.0f);                                                  \
            for (int v = 0; v < NV; v++) {                                                                            \
                __m256 t = _mm256_add_ps(c[i][v], bi);                                                                \
                if (clamp) t = zk_clamp8(t, vlo, vhi);                                             \
                if (M) {                                                                                              \
                    if (res) t = _mm256_add_ps(t, _mm256_maskload_ps(res + i * ldr, mlast));                          \
                    _mm256_maskstore_ps(y + i * ldy, mlast, t);                                                       \
                } else {                                                                                              \
                    if (res) t = _mm256_add_ps(t, _mm256_loadu_ps(res + i * ldr + 8 * v));                            \
                    _mm256_storeu_ps(y + i * ldy + 8 * v, t);                                                         \
                }                                                                                                     \
            }                                                                                                         \
        }                                                                                                             \
    }
// Full vectors (no mask; 8 accumulators: with 3 vectors, 12 accumulators + 3 loads + 1 broadcast, clang spilled an
// accumulator in the k loop) and one masked vector.
PW2_TILE(1, 0, pw2_tile_1, x + kk * ldx)
PW2_TILE(2, 0, pw2_tile_2, x + kk * ldx)
PW2_TILE(1, 1, pw2_tile_m, x + kk * ldx)
PW2_TILE(1, 0, tap2_tile_1, x + offs[kk])
PW2_TILE(2, 0, tap2_tile_2, x + offs[kk])
PW2_TILE(1, 1, tap2_tile_m, x + offs[kk])


// 4 rows × 24 columns (12 accumulators + 3 inputs + 1 broadcast = all 16 ymm registers) with the k loop in inline
// assembly: clang spilled an accumulator of the C version of this tile in the loop. Same vfmadd231ps per element and k
// order as the other tiles: bit-identical results.
__attribute__((target("avx2,fma"), noinline)) static void pw2_tile_3(int k, const float *a, const float *x, ptrdiff_t ldx,
                                                                     int rows, const float *bias, int clamp, float lo,
                                                                     float hi, const float *res, ptrdiff_t ldr, float *y,
                                                                     ptrdiff_t ldy) {
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps(), c02 = _mm256_setzero_ps();
    __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps(), c12 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps(), c22 = _mm256_setzero_ps();
    __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps(), c32 = _mm256_setzero_ps();
    if (k > 0) {
        long kk = k;
        const float *xp = x, *ap = a;
        const long ldxb = (long)ldx * 4;
        __asm__ volatile(
            "1:\n\t"
            "vmovups (%[x]), %%ymm12\n\t"
            "vmovups 32(%[x]), %%ymm13\n\t"
            "vmovups 64(%[x]), %%ymm14\n\t"
            "vbroadcastss 0(%[a]), %%ymm15\n\t"
            "vfmadd231ps %%ymm12, %%ymm15, %[c00]\n\t"
            "vfmadd231ps %%ymm13, %%ymm15, %[c01]\n\t"
            "vfmadd231ps %%ymm14, %%ymm15, %[c02]\n\t"
            "vbroadcastss 4(%[a]), %%ymm15\n\t"
            "vfmadd231ps %%ymm12, %%ymm15, %[c10]\n\t"
            "vfmadd231ps %%ymm13, %%ymm15, %[c11]\n\t"
            "vfmadd231ps %%ymm14, %%ymm15, %[c12]\n\t"
            "vbroadcastss 8(%[a]), %%ymm15\n\t"
            "vfmadd231ps %%ymm12, %%ymm15, %[c20]\n\t"
            "vfmadd231ps %%ymm13, %%ymm15, %[c21]\n\t"
            "vfmadd231ps %%ymm14, %%ymm15, %[c22]\n\t"
            "vbroadcastss 12(%[a]), %%ymm15\n\t"
            "vfmadd231ps %%ymm12, %%ymm15, %[c30]\n\t"
            "vfmadd231ps %%ymm13, %%ymm15, %[c31]\n\t"
            "vfmadd231ps %%ymm14, %%ymm15, %[c32]\n\t"
            "add %[ldx], %[x]\n\t"
            "add $32, %[a]\n\t"
            "dec %[k]\n\t"
            "jnz 1b\n\t"
            : [c00] "+x"(c00), [c01] "+x"(c01), [c02] "+x"(c02), [c10] "+x"(c10), [c11] "+x"(c11), [c12] "+x"(c12), [c20] "+x"(c20), [c21] "+x"(c21), [c22] "+x"(c22), [c30] "+x"(c30), [c31] "+x"(c31), [c32] "+x"(c32), [x] "+r"(xp), [a] "+r"(ap), [k] "+r"(kk)
            : [ldx] "r"(ldxb)
            : "ymm12", "ymm13", "ymm14", "ymm15", "cc", "memory");
    }
    __m256 c[4][3] = {{c00, c01, c02}, {c10, c11, c12}, {c20, c21, c22}, {c30, c31, c32}};
    const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
    for (int i = 0; i < 4; i++) {
        if (i >= rows) break;
        const __m256 bi = _mm256_set1_ps(bias ? bias[i] : 0.0f);
        for (int v = 0; v < 3; v++) {
            __m256 t = _mm256_add_ps(c[i][v], bi);
            if (clamp) t = zk_clamp8(t, vlo, vhi);
            if (res) t = _mm256_add_ps(t, _mm256_loadu_ps(res + i * ldr + 8 * v));
            _mm256_storeu_ps(y + i * ldy + 8 * v, t);
        }
    }
}

// One 8-row panel over columns [j, j + w) (w ≤ 24; taps ≤ 16) as two 4-row halves: the full 8-column vectors in one tile, a
// partial last vector in a masked one; taps (offs != NULL) or in-place rows.
AVX2_TARGET static void pw2_panel(int k, const float *a, const float *x, ptrdiff_t ldx, const ptrdiff_t *offs, int w, int rows,
                                  const float *bias, int clamp, float lo, float hi, const float *res, ptrdiff_t ldr, float *y,
                                  ptrdiff_t ldy) {
    const int nf = w / 8, tw = w % 8;
    const __m256i mlast = zk_mask8(tw);
    for (int h = 0; h < 2; h++) {
        const int r = rows - 4 * h;
        if (r <= 0) break;
        const int rr = r < 4 ? r : 4;
        const float *ah = a + 4 * h, *bh = bias ? bias + 4 * h : 0, *rh = res ? res + 4 * h * ldr : 0;
        float *yh = y + 4 * h * ldy;
        if (offs) {
            if (nf == 2) tap2_tile_2(k, ah, x, 0, offs, mlast, rr, bh, clamp, lo, hi, 0, 0, yh, ldy);
            else if (nf == 1) tap2_tile_1(k, ah, x, 0, offs, mlast, rr, bh, clamp, lo, hi, 0, 0, yh, ldy);
            if (tw) tap2_tile_m(k, ah, x + 8 * nf, 0, offs, mlast, rr, bh, clamp, lo, hi, 0, 0, yh + 8 * nf, ldy);
        } else {
            if (nf == 3) pw2_tile_3(k, ah, x, ldx, rr, bh, clamp, lo, hi, rh, ldr, yh, ldy);
            else if (nf == 2) pw2_tile_2(k, ah, x, ldx, 0, mlast, rr, bh, clamp, lo, hi, rh, ldr, yh, ldy);
            else if (nf == 1) pw2_tile_1(k, ah, x, ldx, 0, mlast, rr, bh, clamp, lo, hi, rh, ldr, yh, ldy);
            if (tw) pw2_tile_m(k, ah, x + 8 * nf, ldx, 0, mlast, rr, bh, clamp, lo, hi, rh ? rh + 8 * nf : 0, ldr, yh + 8 * nf, ldy);
        }
    }
}

AVX2_TARGET static void pw2_strip(int m, int k, const float *pa, const float *x, ptrdiff_t ldx, int j, int w, int p,
                                  const float *bias, int clamp, float lo, float hi, const float *res, ptrdiff_t ldr, float *y,
                                  ptrdiff_t ldy) {
    const int row0 = p * 8, rows = m - row0 < 8 ? m - row0 : 8;
    const float *a = pa + (size_t)p * k * 8;
    const float *bp = bias ? bias + row0 : 0;
    const float *rp = res ? res + row0 * ldr + j : 0;
    float *yp = y + row0 * ldy + j;
    if (w <= 2 && pw_narrow_on) pw_narrow(k, a, x + j, ldx, w, rows, bp, clamp, lo, hi, rp, ldr, yp, ldy);
    else pw2_panel(k, a, x + j, ldx, 0, w, rows, bp, clamp, lo, hi, rp, ldr, yp, ldy);
}

// Narrow tails of up to 4 panels at once: the same per-panel chains as pw2_narrow, interleaved (one chain alone is
// bound by the FMA latency: 1280 × 320 at 7×7 spent 40% of its time in the 49th column).
AVX2_TARGET static void pw2_narrow4(int m, int k, const float *pa, const float *x, ptrdiff_t ldx, int w, int p0, int np,
                                    const float *bias, int clamp, float lo, float hi, const float *res, ptrdiff_t ldr, float *y,
                                    ptrdiff_t ldy) {
    const float *a = pa + (size_t)p0 * k * 8;
    const size_t ps = (size_t)k * 8;
    for (int jj = 0; jj < w; jj++) {
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
        if (np == 4) {
            for (int kk = 0; kk < k; kk++) {
                const __m256 xv = _mm256_set1_ps(x[kk * ldx + jj]);
                acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(a + kk * 8), xv, acc[0]);
                acc[1] = _mm256_fmadd_ps(_mm256_loadu_ps(a + ps + kk * 8), xv, acc[1]);
                acc[2] = _mm256_fmadd_ps(_mm256_loadu_ps(a + 2 * ps + kk * 8), xv, acc[2]);
                acc[3] = _mm256_fmadd_ps(_mm256_loadu_ps(a + 3 * ps + kk * 8), xv, acc[3]);
            }
        } else {
            for (int q = 0; q < np; q++)
                for (int kk = 0; kk < k; kk++)
                    acc[q] = _mm256_fmadd_ps(_mm256_loadu_ps(a + q * ps + kk * 8), _mm256_set1_ps(x[kk * ldx + jj]), acc[q]);
        }
        for (int q = 0; q < np; q++) {
            float t[8];
            _mm256_storeu_ps(t, acc[q]);
            const int row0 = (p0 + q) * 8, rows = m - row0 < 8 ? m - row0 : 8;
            for (int i = 0; i < rows; i++) {
                float v = t[i] + (bias ? bias[row0 + i] : 0.0f);
                if (clamp) {
                    v = lo > v ? lo : v;
                    v = hi < v ? hi : v;
                }
                if (res) v += res[(row0 + i) * ldr + jj];
                y[(row0 + i) * ldy + jj] = v;
            }
        }
    }
}

// Column strips of 24 (k ≥ 16; 16 below; the assembly 4 × 24 tile runs 96 × 16 × 1344 at 31.7 GMAC/s per core against
// 27.4 with 16-column strips, 144 × 24 × 1120 at 36.1 against 31.9, Zen 3) outside, panels
// inside (the strip's inputs stay in L1); for narrow column ranges (small
// planes) panels outside, so that weights larger than L2 (1280 × 320 at 7×7) are read once instead of once per strip,
// and a narrow tail (≤ 2 columns) for 4 panels at a time.
AVX2_TARGET static void pw_avx2(int m, int k, const float *pa, const float *x, ptrdiff_t ldx, int n0, int n1, int p0, int p1,
                                const float *bias, int clamp, float lo, float hi, const float *res, ptrdiff_t ldr, float *y,
                                ptrdiff_t ldy) {
    static int swk = -1;  /* ZOO_PW_SWK=K: 16-column strips below K (A/B switch; default 16) */
    if (swk < 0) { const char *e = getenv("ZOO_PW_SWK"); swk = e ? atoi(e) : 16; }
    const int sw = k >= swk ? 24 : 16;  /* 24-column strips (the 12-accumulator tile) unless k is tiny */
    if (n1 - n0 <= 256) {
        const int tail = (n1 - n0) % sw, narrow = tail > 0 && tail <= 2 && pw_narrow_on, nb = narrow ? n1 - tail : n1;
        for (int p = p0; p < p1; p++)
            for (int j = n0; j < nb; j += sw)
                pw2_strip(m, k, pa, x, ldx, j, nb - j < sw ? nb - j : sw, p, bias, clamp, lo, hi, res, ldr, y, ldy);
        if (narrow)
            for (int p = p0; p < p1; p += 4)
                pw2_narrow4(m, k, pa, x + nb, ldx, tail, p, p1 - p < 4 ? p1 - p : 4, bias, clamp, lo, hi, res ? res + nb : 0, ldr,
                            y + nb, ldy);
    } else {
        for (int j = n0; j < n1; j += sw)
            for (int p = p0; p < p1; p++)
                pw2_strip(m, k, pa, x, ldx, j, n1 - j < sw ? n1 - j : sw, p, bias, clamp, lo, hi, res, ldr, y, ldy);
    }
}

AVX2_TARGET static void taps_avx2(int m, int k, const float *pa, const float *base, const ptrdiff_t *offs, int n, int p0, int p1,
                                  const float *bias, int clamp, float lo, float hi, float *y, ptrdiff_t ldy) {
    for (int j = 0; j < n; j += 16) {
        const int w = n - j < 16 ? n - j : 16;
        for (int p = p0; p < p1; p++) {
            const int row0 = p * 8, rows = m - row0 < 8 ? m - row0 : 8;
            pw2_panel(k, pa + (size_t)p * k * 8, base + j, 0, offs, w, rows, bias ? bias + row0 : 0, clamp, lo, hi, 0, 0,
                      y + row0 * ldy + j, ldy);
        }
    }
}

int zoo_pw_compute(int m, int k, const float *pa, const float *x, ptrdiff_t ldx, int n0, int n1, int p0, int p1,
                   const float *bias, int clamp, float lo, float hi, const float *res, ptrdiff_t ldr, float *y, ptrdiff_t ldy) {
    const int level = zoo_kernels_simd();
    if (level == 2) pw_avx512(m, k, pa, x, ldx, n0, n1, p0, p1, bias, clamp, lo, hi, res, ldr, y, ldy);
    else if (level == 1) pw_avx2(m, k, pa, x, ldx, n0, n1, p0, p1, bias, clamp, lo, hi, res, ldr, y, ldy);
    else return 0;
    return 1;
}

PW_TARGET static void taps_avx512(int m, int k, const float *pa, const float *base, const ptrdiff_t *offs, int n, int p0, int p1,
                                  const float *bias, int clamp, float lo, float hi, float *y, ptrdiff_t ldy) {
    for (int j = 0; j < n; j += 48) {
        const int w = n - j < 48 ? n - j : 48;
        const int nv = (w + 15) / 16, lastw = w - 16 * (nv - 1);
        const __mmask16 mlast = (__mmask16)(lastw == 16 ? 0xFFFF : (1u << lastw) - 1);
        for (int p = p0; p < p1; p++) {
            const int row0 = p * 8, rows = m - row0 < 8 ? m - row0 : 8;
            const float *a = pa + (size_t)p * k * 8;
            const float *bp = bias ? bias + row0 : 0;
            float *yp = y + row0 * ldy + j;
            if (nv == 3) tap_tile_3(k, a, base + j, 0, offs, mlast, rows, bp, clamp, lo, hi, 0, 0, yp, ldy);
            else if (nv == 2) tap_tile_2(k, a, base + j, 0, offs, mlast, rows, bp, clamp, lo, hi, 0, 0, yp, ldy);
            else tap_tile_1(k, a, base + j, 0, offs, mlast, rows, bp, clamp, lo, hi, 0, 0, yp, ldy);
        }
    }
}

int zoo_conv_taps_row(int m, int k, const float *pa, const float *base, const ptrdiff_t *offs, int n, int p0, int p1,
                      const float *bias, int clamp, float lo, float hi, float *y, ptrdiff_t ldy) {
    const int level = zoo_kernels_simd();
    if (level == 2) taps_avx512(m, k, pa, base, offs, n, p0, p1, bias, clamp, lo, hi, y, ldy);
    else if (level == 1) taps_avx2(m, k, pa, base, offs, n, p0, p1, bias, clamp, lo, hi, y, ldy);
    else return 0;
    return 1;
}
