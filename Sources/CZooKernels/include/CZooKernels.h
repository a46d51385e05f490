#ifndef CZOOKERNELS_H
#define CZOOKERNELS_H
#include <stddef.h>

/// 1 when the CPU runs the AVX-512F kernels below (checked once with __builtin_cpu_supports), else 0.
int zoo_kernels_avx512(void);
/// 1 when the CPU has AVX2 and FMA (the AVX2 kernels' condition; checked once).
int zoo_kernels_avx2(void);
/// Vector level of every CZooKernels entry point (rows, 1×1 tiles, Winograd transforms, training kernels): 2 = AVX-512F, 1 = AVX2 + FMA (CPUs without
/// AVX-512F; same multiply-add order per element, so results are bit-identical to the AVX-512F kernels), 0 = none
/// (the functions return 0). `ZOO_AVX2=0` in the environment, or zoo_kernels_set_avx2(0), turns the AVX2 level off.
int zoo_kernels_simd(void);
/// The x86 CPU family (base + extended, from CPUID leaf 1; AMD Zen 4: 25, Zen 5: 26), 0 when unknown.
int zoo_cpu_family(void);
/// Mean round trip (ns) of a flag bounced between this thread and a new one (placement.c), `rounds` round trips with
/// the first quarter untimed; -1 when no thread could be started. Two threads spinning: takes two CPUs for that time.
double zoo_core_roundtrip_ns(int rounds);
/// A small number of the calling thread's own, handed out in the order threads first ask (0, 1, 2, ...).
int zoo_thread_slot(void);
void zoo_kernels_set_avx2(int on);
/// Tests: caps zoo_kernels_simd() at `cap` (2 = no cap), so the AVX2 kernels can be compared with the AVX-512F ones.
void zoo_kernels_set_simd_cap(int cap);

/// One output plane of a depthwise convolution over a staged input plane (see Fast.DepthwiseStage in Swift):
/// out[oy*outW + ox] = act(bias + sum_t wk[t] * buf[oy*rowStep + ox + offs[t]]) with fused multiply-adds,
/// act = clamp to [lo, hi] (NaN kept) when clamp != 0. AVX-512F only: returns 0 without writing when unsupported.
int zoo_dw_plane(const float *buf, const ptrdiff_t *offs, int taps, const float *wk, float bias, int clamp, float lo, float hi,
                 ptrdiff_t outH, ptrdiff_t outW, ptrdiff_t rowStep, float *out);

/// Geometry of one call of zoo_dwc (output rows and columns of the call; padTop/padLeft may be negative).
typedef struct {
    int inH, inW, outH, outW, kH, kW, strideH, strideW, dilH, dilW, padTop, padLeft;
} zoo_dwc_geom;
/// Scratch floats one zoo_dwc call needs (padded 8-channel plane, one output row, weights).
size_t zoo_dwc_scratch_floats(const zoo_dwc_geom *g);
/// Depthwise convolution of `nch` (1 ... 8) channels with the channels in the SIMD lanes (dwchannels.c): input plane
/// i at x + i*xcs (rows of inW floats), weights wk[i*kH*kW + t], bias[i] (bias may be NULL), output plane i at
/// y + i*ycs (rows of outW floats). Same FMA chain per element as zoo_dw_plane (bit-identical). Returns 0 without
/// writing when the CPU has no AVX2 (or nch is out of range).
int zoo_dwc(int nch, const float *x, ptrdiff_t xcs, const float *wk, const float *bias, const zoo_dwc_geom *g, int clamp,
            float lo, float hi, float *y, ptrdiff_t ycs, float *scratch);

/// One output plane of max pooling over a staged (-inf padded) plane: taps in order with the rule
/// m = (m >= v || m != m) ? m : v (NaN propagates). AVX-512F only: returns 0 without writing when unsupported.
int zoo_maxpool_plane(const float *buf, const ptrdiff_t *offs, int taps, ptrdiff_t outH, ptrdiff_t outW, ptrdiff_t rowStep,
                      float *out);

/// Output rows [oy0, oy1) of one plane of 3×3 stride-2 max pooling (dilation 1, padding padT/padL ≤ 1 before, any
/// after: windows past the plane take only its elements), straight from the plane x (inH × inW) into y (outW per row),
/// separably, with zoo_maxpool_plane's rule and results. `work`: 3 · ⌈outW/16⌉·16 floats. AVX-512F only: returns 0
/// without writing when unsupported.
int zoo_maxpool3s2_rows(const float *x, ptrdiff_t inH, ptrdiff_t inW, ptrdiff_t outW, int padT, int padL, ptrdiff_t oy0,
                        ptrdiff_t oy1, float *y, float *work);

/// 1×1 convolution weights packed for zoo_pw_compute: 8-row panels, panel p holding k × 8 floats (row i of the panel
/// at kk*8 + i; zero rows past m).
size_t zoo_pw_packed_floats(int m, int k);
void zoo_pw_pack(int m, int k, const float *w, float *pa);

/// y[i*ldy + j] = act(sum_kk A[i][kk] * x[kk*ldx + j] + bias[i]) (+ res[i*ldr + j] when res is not NULL) for rows of
/// 8-row panels [p0, p1) (rows ≥ m skipped) and columns [n0, n1); A packed by zoo_pw_pack, act = clamp to [lo, hi]
/// (NaN kept) when clamp != 0; bias may be NULL. X is read in place (no packing). AVX-512F only: returns 0 without
/// writing when unsupported.
int zoo_pw_compute(int m, int k, const float *pa, const float *x, ptrdiff_t ldx, int n0, int n1, int p0, int p1,
                   const float *bias, int clamp, float lo, float hi, const float *res, ptrdiff_t ldr, float *y, ptrdiff_t ldy);
/// Column tails of ≤ 2 in zoo_pw_compute: 1 = one column at a time on 8-row ymm vectors (default), 0 = masked tiles
/// (A/B and tests; both give identical results).
void zoo_pw_set_narrow(int on);

/// One output row of a convolution over staged input planes (implicit GEMM): y[i*ldy + j] = act(sum_t A[i][t] *
/// base[offs[t] + j] + bias[i]) for j in [0, n) and rows of 8-row panels [p0, p1); A (m × k taps) packed by zoo_pw_pack.
/// AVX-512F only: returns 0 without writing when unsupported.
int zoo_conv_taps_row(int m, int k, const float *pa, const float *base, const ptrdiff_t *offs, int n, int p0, int p1,
                      const float *bias, int clamp, float lo, float hi, float *y, ptrdiff_t ldy);

/// Winograd F(m×m,3×3), m = 4 or 2, input transform of one row of `tiles` tiles of one channel (winograd.c):
/// rows = α = m+2 zero-padded input rows (rowStride apart, each at least m·tiles + 2 floats); writes
/// V[i][j][t] = (Bᵀ d_t B)[i][j] to out[(i·α + j)·outStride + t]. scratch: zoo_wino_scratch_floats(m, tiles) floats.
/// AVX-512F only (and tiles ≤ 512): returns 0 without writing when unsupported.
int zoo_wino_input_row(int m, const float *rows, ptrdiff_t rowStride, int tiles, float *out, ptrdiff_t outStride, float *scratch);
int zoo_wino_scratch_floats(int m, int tiles);
/// Winograd weight transform U = G g Gᵀ (m = 2: F(2×2,3×3), 4: F(4×4,3×3)) of the 3×3 kernels w[oc][ic] for oc in
/// [oc0, oc1): element (i·α + j) of kernel (oc, ic) to u[(i·α + j)·cStride + oc·ocStride + ic·icStride]. Double
/// arithmetic in the order of Fast.winogradTransformWeights (bit-identical); portable = 1 forces the plain build.
void zoo_wino_weights(const float *w, int inC, int m, float *u, ptrdiff_t cStride, ptrdiff_t ocStride, ptrdiff_t icStride,
                      int oc0, int oc1, int portable);
/// The AVX2+FMA transforms (winograd_avx2.c) behind zoo_wino_input_row / zoo_wino_output_row on CPUs without AVX-512F;
/// call only when zoo_kernels_avx2(). The output ones take scratch of (m + 2)·m·tiles floats.
void zoo_wino_input4_avx2(const float *rows, ptrdiff_t rowStride, int tiles, float *out, ptrdiff_t outStride, float *t);
void zoo_wino_input2_avx2(const float *rows, ptrdiff_t rowStride, int tiles, float *out, ptrdiff_t outStride, float *t);
void zoo_wino_output4_avx2(const float *M, ptrdiff_t mStride, int tiles, float bias, int clamp, float lo, float hi, float *y,
                           ptrdiff_t yStride, int outW, int rows, float *s);
/// P of one row of F(2×2) tiles of dy for the Winograd weight gradient: out[(i·4 + j)·stride + x] = (A dY_x Aᵀ)[i][j],
/// dY_x = columns 2x, 2x + 1 of rows `first` and `second` (NULL: zeros), zero past `width`. `portable`: plain C loop.
void zoo_wino_grad_row2(const float *first, const float *second, int width, int tiles, float *out, ptrdiff_t stride, int portable);
void zoo_wino_output2_avx2(const float *M, ptrdiff_t mStride, int tiles, float bias, int clamp, float lo, float hi, float *y,
                           ptrdiff_t yStride, int outW, int rows, float *s);

/// Winograd output transform of one row of tiles of one output channel: M[(i·α + j)·mStride + t] → the first `rows`
/// (≤ m) output rows y[r·yStride + c], c < outW, each Aᵀ M_t A + bias, clamped to [lo, hi] (NaN kept) when clamp.
/// AVX-512F only: returns 0 without writing when unsupported.
int zoo_wino_output_row(int m, const float *M, ptrdiff_t mStride, int tiles, float bias, int clamp, float lo, float hi,
                        float *y, ptrdiff_t yStride, int outW, int rows);
#include "ZooTrainKernels.h"

/// dst[i] = src[2*i] for i < n (reads src[0 ... 2n-2] only). `allow_simd` 0 runs the portable loop (tests, A/B).
void zoo_gather2(const float *src, float *dst, ptrdiff_t n, int allow_simd);
/// dst[2*i] += src[i] for i < n (odd elements untouched). `allow_simd` 0 runs the portable loop.
void zoo_scatter_add2(const float *src, float *dst, ptrdiff_t n, int allow_simd);
/// Max-pool backward over n outputs of one row whose windows lie inside the input: output j's window starts at
/// in + j*sw (kh rows rs apart, kw columns dw apart); g[j] is added to dx at the first window element equal to y[j]
/// (NaN: the first NaN), in output order. AVX-512 for sw 1 or 2 when allow_simd, else the portable loop.
void zoo_maxpool_back_row(const float *in, float *dx, const float *y, const float *g, ptrdiff_t n, int sw, int kh, int kw,
                          ptrdiff_t rs, int dw, int allow_simd);

/// Geometry of zoo_im2col_panels / zoo_stage_rows (one image and group): input channels of the group, kernel, stride,
/// padding, dilation, output width, output plane n = outH·outW, zoo's GEMM NR, and the staged run length.
typedef struct {
    int inC, inH, inW, kH, kW, strideH, strideW, padTop, padLeft, dilH, dilW, outW, n, nr, runLen;
} zoo_im2col_geom;
/// im2col of packed-B panels [p0, p1) into pb: element (r, j) of the k × n column matrix at
/// pb[(j / nr)·k·nr + r·nr + j % nr], columns past n zero (Fast.im2colPanels; `staged` from zoo_stage_rows or NULL).
/// AVX-512F only: returns 0 without writing when unsupported.
int zoo_im2col_panels(const zoo_im2col_geom *g, const float *x, const float *staged, float *pb, int p0, int p1);
/// Input rows item0..<item1 (channel·inH + row) deinterleaved by strideW (Fast.stageRows). AVX-512F only: returns 0.
int zoo_stage_rows(const zoo_im2col_geom *g, const float *x, float *staged, int item0, int item1);

#endif
