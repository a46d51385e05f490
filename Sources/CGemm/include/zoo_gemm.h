#ifndef ZOO_GEMM_H
#define ZOO_GEMM_H
#include <stddef.h>

/// zoo's packed single-precision GEMM: C[m×n] = act(A[m×k] · B[k×n] + bias[m]), row-major.
/// A (the weights) is packed once into MR-row panels blocked by KC; B is packed per call into NR-column panels.
/// The micro-kernel is picked once at run time: AVX-512 (8×48), AVX2+FMA (6×16) or portable C (4×8).

typedef struct {
    int level;  /* 2 = AVX-512F, 1 = AVX2+FMA, 0 = portable */
    int mr, nr, kc;
} zoo_gemm_info;

/// The kernel in use. `force_level` < 0 picks the best the CPU supports; 0..2 forces a lower one (tests).
zoo_gemm_info zoo_gemm_select(int force_level);
zoo_gemm_info zoo_gemm_current(void);

size_t zoo_gemm_packed_a_floats(int m, int k);
void zoo_gemm_pack_a(int m, int k, const float *a, int lda, float *pa);
/// Packs MR-row panels [panel_lo, panel_hi) of A where element (i, kk) is a[i·rs + kk·cs] (cs = 1: row-major with
/// row stride rs; rs = 1: A stored transposed). Panels land at their places in the full packed layout.
void zoo_gemm_pack_a_strided(int m, int k, const float *a, ptrdiff_t rs, ptrdiff_t cs, float *pa, int panel_lo, int panel_hi);

/// Packs panels [panel_lo, panel_hi) of `taps` matrices in one pass: matrix t's element (i, kk) is a[i·rs + kk·cs + t]
/// (a convolution's weights, t its kernel tap); matrix t lands at pa + t·tap_stride in the full packed layout.
void zoo_gemm_pack_a_taps(int m, int k, int taps, const float *a, ptrdiff_t rs, ptrdiff_t cs, float *pa, size_t tap_stride,
                          int panel_lo, int panel_hi);
size_t zoo_gemm_packed_b_floats(int k, int n);
/// Packs column panels [panel_lo, panel_hi) of B (k×n, row stride ldb).
void zoo_gemm_pack_b(int k, int n, const float *b, int ldb, float *pb, int panel_lo, int panel_hi);
/// Packs column panels [panel_lo, panel_hi) of B (k×n, element (kk, j) at b[kk·rs + j·cs]) into pb starting at
/// pb + (q − panel_lo)·k·NR (panel_lo = 0 gives the full layout; otherwise a block of panels of its own).
void zoo_gemm_pack_b_strided(int k, int n, const float *b, ptrdiff_t rs, ptrdiff_t cs, float *pb, int panel_lo, int panel_hi);

/// Activation applied after the bias: 0 none, 1 clamp to [lo, hi] (ReLU: lo = 0, hi = +inf).
/// Computes the C tiles of A panels [mp_lo, mp_hi) × B panels [np_lo, np_hi).
void zoo_gemm_compute(int m, int n, int k, const float *pa, const float *pb, float *c, int ldc,
                      const float *bias, int act, float lo, float hi,
                      int mp_lo, int mp_hi, int np_lo, int np_hi);
/// As `zoo_gemm_compute`, with `accumulate` != 0 adding the product to C (C += A·B; no bias, activation on the last
/// K block as usual).
void zoo_gemm_compute_acc(int m, int n, int k, const float *pa, const float *pb, float *c, int ldc,
                          const float *bias, int act, float lo, float hi,
                          int mp_lo, int mp_hi, int np_lo, int np_hi, int accumulate);
/// One K block (kb ≤ KC) on the AVX-512 tiles with `mr` (1…8) rows per A panel: C[p·mr + i][j] = (or += when
/// `accumulate`) Σ_kk A_p[kk][i] · B_q[kk][j] for panels_m A panels (kb × mr each, consecutive) and the NR-column
/// panels of B covering n columns (kb × 48 each, consecutive). No bias or activation. Returns 0 (nothing written)
/// unless the AVX-512 kernel is selected.
int zoo_gemm_rows_acc(int mr, int panels_m, int n, int kb, const float *pa, const float *pb, float *c, int ldc,
                      int accumulate);
/// y[i] = Σ a[i·lda + kk] · x[kk] for i < m (one row of a Linear layer), on the selected kernel level.
void zoo_gemv(int m, int k, const float *a, int lda, const float *x, float *y);

/// Row-panel convolution of one image whose output rows are at most 8 wide (resnet18's 7×7 layer4 at batch 1): the
/// output pixels are the GEMM's MR side, one panel per output row of exactly outW slots on the tiles of that many rows
/// (`zoo_gemm_rows_acc`; slot oy·outW + ox), or with `zoo_rowconv_set_exact(0)` of 8 slots on the 8-row tile (slot
/// oy·8 + ox, ox ≥ outW computed and dropped), the output channels its NR side, so Cᵀ[slot][oc] = Σ_r A[slot][r] · Wᵀ[r][oc] with the raw weights
/// (no Winograd transform: 7×7 layers stream 1.8× fewer weight bytes) packed once per worker's channel range.
typedef struct {
    int inC, inH, inW, outC, outH, outW, kH, kW, sH, sW, padT, padL, dH, dW;
} zoo_rowconv_geom;

/// Floats of Wᵀ packed for output channels [col0, col0 + n): K blocks of KC rows, each kb × (NR-padded n).
size_t zoo_rowconv_packed_floats(const zoo_rowconv_geom *g, int n);
void zoo_rowconv_pack(const zoo_rowconv_geom *g, const float *w, int col0, int n, float *pb);
/// Work floats one worker needs (staged input rows of a K block's channels, the block's A panels).
size_t zoo_rowconv_work_floats(const zoo_rowconv_geom *g);
/// Output channels [col0, col0 + n) of y (outC × outH × outW): the products into ct (at most outH·8 × outC, columns
/// [col0, col0 + n) only), then bias and activation (0 none, 1 clamp to [lo, hi]) while transposing into y.
/// Returns 0 (nothing written) unless the AVX-512 kernel is selected and outW ≤ 8.
/// 1 (default): each output row is a panel of exactly outW slots (`zoo_gemm_rows_acc`); 0: 8-slot panels (A/B).
void zoo_rowconv_set_exact(int on);
int zoo_rowconv_part(const zoo_rowconv_geom *g, const float *x, const float *pb, int col0, int n, const float *bias,
                     int act, float lo, float hi, float *ct, float *y, float *work);
#endif
