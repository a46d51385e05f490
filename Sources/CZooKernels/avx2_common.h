// Small AVX2 helpers shared by the AVX2 bodies of CZooKernels (private header; every function carries the
// avx2,fma target attribute, so it can be called from those bodies and from AVX-512F ones, which imply both).
#ifndef ZOO_AVX2_COMMON_H
#define ZOO_AVX2_COMMON_H
#include <immintrin.h>
#include <stddef.h>

#define ZK_AVX2 __attribute__((target("avx2,fma")))

/// Lanes 0 ..< n set (n clamped to 0 ... 8), for _mm256_maskload_ps / _mm256_maskstore_ps.
ZK_AVX2 static inline __m256i zk_mask8(ptrdiff_t n) {
    const int k = n < 0 ? 0 : n > 8 ? 8 : (int)n;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(k), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/// Even and odd elements of a:b (16 consecutive floats): in-lane shuffles, then the 64-bit quarters reordered.
ZK_AVX2 static inline void zk_deinterleave8(__m256 a, __m256 b, __m256 *even, __m256 *odd) {
    *even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0))), 0xD8));
    *odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1))), 0xD8));
}

/// Clamp to [lo, hi] as the kernels' activations: max/min return their second operand when either is NaN, so a NaN
/// stays NaN.
ZK_AVX2 static inline __m256 zk_clamp8(__m256 a, __m256 lo, __m256 hi) { return _mm256_min_ps(hi, _mm256_max_ps(lo, a)); }

/// Sum of the 8 lanes.
ZK_AVX2 static inline float zk_hsum8(__m256 v) {
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}
#endif
