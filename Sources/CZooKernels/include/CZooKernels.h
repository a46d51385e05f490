#ifndef CZOOKERNELS_H
#define CZOOKERNELS_H
#include <stddef.h>

/// 1 when the CPU runs the AVX-512F kernels below (checked once with __builtin_cpu_supports), else 0.
int zoo_kernels_avx512(void);

/// One output plane of a depthwise convolution over a staged input plane (see Fast.DepthwiseStage in Swift):
/// out[oy*outW + ox] = act(bias + sum_t wk[t] * buf[oy*rowStep + ox + offs[t]]) with fused multiply-adds,
/// act = clamp to [lo, hi] (NaN kept) when clamp != 0. AVX-512F only: returns 0 without writing when unsupported.
int zoo_dw_plane(const float *buf, const ptrdiff_t *offs, int taps, const float *wk, float bias, int clamp, float lo, float hi,
                 ptrdiff_t outH, ptrdiff_t outW, ptrdiff_t rowStep, float *out);

/// One output plane of max pooling over a staged (-inf padded) plane: taps in order with the rule
/// m = (m >= v || m != m) ? m : v (NaN propagates). AVX-512F only: returns 0 without writing when unsupported.
int zoo_maxpool_plane(const float *buf, const ptrdiff_t *offs, int taps, ptrdiff_t outH, ptrdiff_t outW, ptrdiff_t rowStep,
                      float *out);

#include "ZooTrainKernels.h"

#endif
