#ifndef ZOO_TRAIN_KERNELS_H
#define ZOO_TRAIN_KERNELS_H
#include <stddef.h>

// Direct stride-1 convolutions for few channels (training; LeNet-sized layers), "flat padded rows" formulation:
// an image's channel planes are staged zero-padded with row stride Wp, so output position j = oy*Wp + ox reads
// input j + ky*Wp + kx, and 16 consecutive positions (crossing rows; the columns ox >= ow are discarded) are one
// vector. Each function has an AVX-512F body (chosen at run time) and a portable C body; `portable` != 0 forces
// the portable one (tests).

/// out[b*outStride + j] = sum_ci sum_t wt[(ci*taps + t)*nOut + b] * in[ci*S + j + off[t]] for b < nOut and
/// j < 16*nvec. `in` may be read at in[ci*S + j + off[t]] only (the caller sizes and zero-fills it); only
/// in[ci*S + lo ..< ci*S + hi] may be nonzero, and a block of positions skips the taps whose reads all fall outside
/// that range (zoo_tc_tap_range; the input gradient's dy rows fill about 70% of LeNet conv 2's padded grid).
void zoo_tc_corr(const float *in, ptrdiff_t S, int cin, const ptrdiff_t *off, int taps, const float *wt, int nOut,
                 ptrdiff_t nvec, float *out, ptrdiff_t outStride, ptrdiff_t lo, ptrdiff_t hi, int portable);

/// [*t0, *t1): the smallest tap range holding every t whose reads j + off[t] ..< j + span + off[t] meet lo ..< hi
/// (0 ..< 0 when none does).
void zoo_tc_tap_range(const ptrdiff_t *off, int taps, ptrdiff_t j, ptrdiff_t span, ptrdiff_t lo, ptrdiff_t hi, int *t0, int *t1);

/// dw[(b*cin + ci)*taps + t] += sum_img sum_{j < 16*nvec} dy[img*dyImg + b*S2 + j] * x[img*xImg + ci*S + j + off[t]]
/// for b < nOut, ci < cin, t < taps.
void zoo_tc_dw(const float *x, ptrdiff_t xImg, ptrdiff_t S, int cin, const float *dy, ptrdiff_t dyImg, ptrdiff_t S2, int nOut,
               int nimg, const ptrdiff_t *off, int taps, ptrdiff_t nvec, float *dw, int portable);

/// y[i] = 1 / (1 + exp(-x[i])) (exp by range reduction and a degree-6 polynomial, 2^n by scalef; NaN stays NaN).
void zoo_sigmoid(const float *x, float *y, ptrdiff_t n, int portable);

/// 2×2 stride-2 unpadded average pooling backward over `planes` planes (dy oh×ow, dx h×w with 2·oh <= h, 2·ow <= w):
/// dx[2oy+a][2ox+b] = dy[oy][ox] / 4, 0 in rows/columns the pooling left out.
void zoo_avgpool2_backward(const float *dy, float *dx, ptrdiff_t planes, ptrdiff_t oh, ptrdiff_t ow, ptrdiff_t h, ptrdiff_t w,
                           int portable);

/// The same with the backward of the sigmoid whose output `y` (h×w planes) was pooled: dx = (dy/4) · (y · (1 − y)) inside
/// the windows, 0 · (y · (1 − y)) outside; y == NULL: plain average-pool backward.
void zoo_avgpool2_sigmoid_backward(const float *dy, const float *y, float *dx, ptrdiff_t planes, ptrdiff_t oh, ptrdiff_t ow,
                                   ptrdiff_t h, ptrdiff_t w, int portable);

/// Channel-vectorized forward for one block of 16 output channels: T[(oy*ow + ox)*16 + l] =
/// sum_{k < K} wv[16k + l] * in[koff[k] + oy*wp + ox] (koff[k] = ci*S + ky*wp + kx of the staged planes).
void zoo_tc_cvec_fwd(const float *in, const ptrdiff_t *koff, int K, const float *wv, ptrdiff_t oh, ptrdiff_t ow, ptrdiff_t wp,
                     float *T, int portable);

/// Channel-vectorized weight gradient for one block of 16 output channels: acc[16k + l] += sum_img sum_{oy,ox}
/// dyT[img*dyTImg + (oy*ow + ox)*16 + l] * x[img*xImg + koff[k] + oy*wp + ox]; K a multiple of 25.
void zoo_tc_cvec_dw(const float *x, ptrdiff_t xImg, const ptrdiff_t *koff, int K, const float *dyT, ptrdiff_t dyTImg, int nimg,
                    ptrdiff_t oh, ptrdiff_t ow, ptrdiff_t wp, float *acc, int portable);

/// dst[p*dstPlane + r*dstRow + c] = src[p*srcPlane + r*srcRow + c] (+ bias[p] when bias != NULL), c < cols, r < rows.
void zoo_copy_rows(const float *src, ptrdiff_t srcRow, ptrdiff_t srcPlane, float *dst, ptrdiff_t dstRow, ptrdiff_t dstPlane,
                   ptrdiff_t planes, ptrdiff_t rows, ptrdiff_t cols, const float *bias, int portable);

/// T[16i + l] = src[l*srcPlane + i] for l < lanes, 0 for lanes <= l < 16; i < n.
void zoo_to_lanes(const float *src, ptrdiff_t srcPlane, int lanes, ptrdiff_t n, float *T, int portable);

/// dst[l*dstPlane + i] = T[16i + l] (+ bias[l] when bias != NULL), l < lanes, i < n.
void zoo_from_lanes(const float *T, int lanes, ptrdiff_t n, const float *bias, float *dst, ptrdiff_t dstPlane, int portable);

/// Sum of x[0..<n] (AVX-512F: 64 partial sums).
float zoo_sum(const float *x, ptrdiff_t n, int portable);

/// 2×2 stride-2 unpadded average pooling of `planes` h×w planes to oh×ow (2·oh <= h, 2·ow <= w):
/// y = (((x00 + x01) + x10) + x11) / 4.
void zoo_avgpool2(const float *x, float *y, ptrdiff_t planes, ptrdiff_t h, ptrdiff_t w, ptrdiff_t oh, ptrdiff_t ow, int portable);

/// AVX2+FMA bodies (trainkernels_avx2.c) behind zoo_tc_corr, zoo_tc_dw, zoo_tc_cvec_fwd and zoo_tc_cvec_dw on CPUs without
/// AVX-512F; same arguments. Call only when zoo_kernels_avx2().
void zoo_tc_corr_avx2(const float *in, ptrdiff_t S, int cin, const ptrdiff_t *off, int taps, const float *wt, int nOut,
                      ptrdiff_t nvec, float *out, ptrdiff_t outStride, ptrdiff_t lo, ptrdiff_t hi);
void zoo_tc_dw_avx2(const float *x, ptrdiff_t xImg, ptrdiff_t S, int cin, const float *dy, ptrdiff_t dyImg, ptrdiff_t S2,
                    int nOut, int nimg, const ptrdiff_t *off, int taps, ptrdiff_t nvec, float *dw);
void zoo_tc_cvec_fwd_avx2(const float *in, const ptrdiff_t *koff, int K, const float *wv, ptrdiff_t oh, ptrdiff_t ow,
                          ptrdiff_t wp, float *T);
void zoo_tc_cvec_dw_avx2(const float *x, ptrdiff_t xImg, const ptrdiff_t *koff, int K, const float *dyT, ptrdiff_t dyTImg,
                         int nimg, ptrdiff_t oh, ptrdiff_t ow, ptrdiff_t wp, float *acc);

void zoo_sigmoid_avx2(const float *x, float *y, ptrdiff_t n);
void zoo_copy_rows_avx2(const float *src, ptrdiff_t srcRow, ptrdiff_t srcPlane, float *dst, ptrdiff_t dstRow, ptrdiff_t dstPlane,
                        ptrdiff_t planes, ptrdiff_t rows, ptrdiff_t cols, const float *bias);
float zoo_sum_avx2(const float *x, ptrdiff_t n);

void zoo_avgpool2_avx2(const float *x, float *y, ptrdiff_t planes, ptrdiff_t h, ptrdiff_t w, ptrdiff_t oh, ptrdiff_t ow);
void zoo_avgpool2_backward_avx2(const float *dy, const float *y, float *dx, ptrdiff_t planes, ptrdiff_t oh, ptrdiff_t ow,
                                ptrdiff_t h, ptrdiff_t w);

#endif
