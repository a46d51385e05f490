// 1×1 convolution as a GEMM whose right-hand side is read in place (no packing of the activations):
// Y[m×n] = act(A[m×k] · X[k×n] + bias) (+ R), A packed once into 8-row panels (see zoo_pw_pack), X and Y rows
// strided by the plane. AVX-512F micro-tiles of 8 rows × up to 48 columns, masked column tails, chosen at run time.
#include "CZooKernels.h"
#include <immintrin.h>

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
#define PW_TILE(NV, NAME, ROW)                                                                                        \
    PW_TARGET static void NAME##_##NV(int k, const float *a, const float *x, ptrdiff_t ldx, const ptrdiff_t *offs,    \
                                        __mmask16 mlast,                                                              \
                                        int rows, const float *bias, int clamp, __m512 vlo, __m512 vhi,               \
                                        const float *res, ptrdiff_t ldr, float *y, ptrdiff_t ldy, int prefetch) {     \
        __m512 c[8][NV];                                                                                              \
        for (int i = 0; i < 8; i++)                                                                                   \
            for (int v = 0; v < NV; v++) c[i][v] = _mm512_setzero_ps();                                               \
        const __mmask16 mfull = (__mmask16)0xFFFF;                                                                    \
        for (int kk = 0; kk < k; kk++) {                                                                              \
            const float *xr = ROW;                                                                                    \
            __m512 b[NV];                                                                                             \
            for (int v = 0; v < NV; v++) b[v] = _mm512_maskz_loadu_ps(v == NV - 1 ? mlast : mfull, xr + 16 * v);      \
            if (prefetch) { /* the next tile's columns of this row */                                                 \
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
        for (int i = 0; i < 8; i++) {                                                                                 \
            if (i >= rows) break;                                                                                     \
            const __m512 bi = _mm512_set1_ps(bias ? bias[i] : 0.0f);                                                  \
            for (int v = 0; v < NV; v++) {                                                                            \
                const __mmask16 mv = v == NV - 1 ? mlast : mfull;                                                     \
                __m512 t = _mm512_add_ps(c[i][v], bi);                                                                \
                /* max/min return their second operand when either is NaN: NaN stays NaN. */                         \
                if (clamp) t = _mm512_min_ps(vhi, _mm512_max_ps(vlo, t));                                             \
                if (res) t = _mm512_add_ps(t, _mm512_maskz_loadu_ps(mv, res + i * ldr + 16 * v));                     \
                _mm512_mask_storeu_ps(y + i * ldy + 16 * v, mv, t);                                                   \
            }                                                                                                         \
        }                                                                                                             \
    }
PW_TILE(1, pw_tile, x + kk * ldx)
PW_TILE(2, pw_tile, x + kk * ldx)
PW_TILE(3, pw_tile, x + kk * ldx)
PW_TILE(1, tap_tile, x + offs[kk])
PW_TILE(2, tap_tile, x + offs[kk])
PW_TILE(3, tap_tile, x + offs[kk])

// Narrow tails (≤ 2 columns, e.g. the 49th column of a 7×7 plane; at 4 columns the masked tiles were faster): one
// column at a time with the 8 rows of a panel in one ymm (1 FMA per k instead of 8 masked zmm FMAs); same multiply-add order per element as the tiles, so the
// results are bit-identical to theirs.
PW_TARGET static void pw_narrow(int k, const float *a, const float *x, ptrdiff_t ldx, int w, int rows, const float *bias,
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
    const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
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
            else if (nv == 3) pw_tile_3(k, a, x + j, ldx, 0, mlast, rows, bp, clamp, vlo, vhi, rp, ldr, yp, ldy, pf);
            else if (nv == 2) pw_tile_2(k, a, x + j, ldx, 0, mlast, rows, bp, clamp, vlo, vhi, rp, ldr, yp, ldy, pf);
            else pw_tile_1(k, a, x + j, ldx, 0, mlast, rows, bp, clamp, vlo, vhi, rp, ldr, yp, ldy, pf);
        }
    }
}

int zoo_pw_compute(int m, int k, const float *pa, const float *x, ptrdiff_t ldx, int n0, int n1, int p0, int p1,
                   const float *bias, int clamp, float lo, float hi, const float *res, ptrdiff_t ldr, float *y, ptrdiff_t ldy) {
    if (!zoo_kernels_avx512()) return 0;
    pw_avx512(m, k, pa, x, ldx, n0, n1, p0, p1, bias, clamp, lo, hi, res, ldr, y, ldy);
    return 1;
}

PW_TARGET static void taps_avx512(int m, int k, const float *pa, const float *base, const ptrdiff_t *offs, int n, int p0, int p1,
                                  const float *bias, int clamp, float lo, float hi, float *y, ptrdiff_t ldy) {
    const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
    for (int j = 0; j < n; j += 48) {
        const int w = n - j < 48 ? n - j : 48;
        const int nv = (w + 15) / 16, lastw = w - 16 * (nv - 1);
        const __mmask16 mlast = (__mmask16)(lastw == 16 ? 0xFFFF : (1u << lastw) - 1);
        for (int p = p0; p < p1; p++) {
            const int row0 = p * 8, rows = m - row0 < 8 ? m - row0 : 8;
            const float *a = pa + (size_t)p * k * 8;
            const float *bp = bias ? bias + row0 : 0;
            float *yp = y + row0 * ldy + j;
            if (nv == 3) tap_tile_3(k, a, base + j, 0, offs, mlast, rows, bp, clamp, vlo, vhi, 0, 0, yp, ldy, 0);
            else if (nv == 2) tap_tile_2(k, a, base + j, 0, offs, mlast, rows, bp, clamp, vlo, vhi, 0, 0, yp, ldy, 0);
            else tap_tile_1(k, a, base + j, 0, offs, mlast, rows, bp, clamp, vlo, vhi, 0, 0, yp, ldy, 0);
        }
    }
}

int zoo_conv_taps_row(int m, int k, const float *pa, const float *base, const ptrdiff_t *offs, int n, int p0, int p1,
                      const float *bias, int clamp, float lo, float hi, float *y, ptrdiff_t ldy) {
    if (!zoo_kernels_avx512()) return 0;
    taps_avx512(m, k, pa, base, offs, n, p0, p1, bias, clamp, lo, hi, y, ldy);
    return 1;
}
