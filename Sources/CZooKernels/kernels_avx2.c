// AVX2 bodies of kernels.c's row kernels for CPUs without AVX-512F (e.g. Zen 3), chosen at run time by the zoo_*_plane
// entry points: the same jobs of output columns, 8 at a time, masked loads and stores on each row's last block.
#include "CZooKernels.h"
#include <immintrin.h>

#define K_AVX2 __attribute__((target("avx2,fma")))

K_AVX2 static inline __m256i mask8(ptrdiff_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n < 8 ? n : 8)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

K_AVX2 static inline __m256 max_nan8(__m256 m, __m256 v) {
    // keep m where m >= v or m is NaN, else take v (as the AVX-512F kernel and the Swift rows)
    const __m256 keep = _mm256_or_ps(_mm256_cmp_ps(m, v, _CMP_GE_OQ), _mm256_cmp_ps(m, m, _CMP_UNORD_Q));
    return _mm256_blendv_ps(v, m, keep);
}

K_AVX2 static inline void maxpool_impl8(const float *buf, const ptrdiff_t *offs, const int taps, ptrdiff_t outH, ptrdiff_t outW,
                                        ptrdiff_t rowStep, float *out) {
    const ptrdiff_t full = outW / 8, rem = outW % 8;
    const __m256i tail = mask8(rem);
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

K_AVX2 void zoo_maxpool_plane_avx2(const float *buf, const ptrdiff_t *offs, int taps, ptrdiff_t outH, ptrdiff_t outW, ptrdiff_t rowStep,
                                   float *out) {
    if (taps == 9) maxpool_impl8(buf, offs, 9, outH, outW, rowStep, out);
    else maxpool_impl8(buf, offs, taps, outH, outW, rowStep, out);
}
