// Winograd F(4×4,3×3) and F(2×2,3×3) tile transforms for CPUs with AVX2 and FMA but no AVX-512F (e.g. Zen 3), chosen
// at run time by zoo_wino_input_row / zoo_wino_output_row (winograd.c). Plain loops under a function-level
// target("avx2,fma") attribute, written so that the compiler vectorizes them: the row stage is contiguous, the column
// stage reads (or writes) element j of every tile as an interleaved group of stride m. Same formulas as the AVX-512F
// kernels and the Swift SIMD4 reference (Winograd.swift).
#include "CZooKernels.h"
#include "avx2_common.h"

#define AVX2_TARGET __attribute__((target("avx2,fma")))

AVX2_TARGET void zoo_wino_input4_avx2(const float *restrict rows, ptrdiff_t rowStride, int tiles, float *restrict out,
                                      ptrdiff_t outStride, float *restrict t) {
    const int width = 4 * tiles + 2;
    const ptrdiff_t ts = width;
    const float *d0 = rows, *d1 = rows + rowStride, *d2 = rows + 2 * rowStride, *d3 = rows + 3 * rowStride;
    const float *d4 = rows + 4 * rowStride, *d5 = rows + 5 * rowStride;
    // Rows: t[i][c] = Σ_k Bᵀ[i][k] d[k][c]
    for (int c = 0; c < width; c++) {
        const float t0 = d4[c] - 4 * d2[c], t1 = d3[c] - 4 * d1[c], t2 = d4[c] - d2[c], t3 = 2 * (d3[c] - d1[c]);
        t[c] = 4 * d0[c] - 5 * d2[c] + d4[c];
        t[ts + c] = t0 + t1;
        t[2 * ts + c] = t0 - t1;
        t[3 * ts + c] = t2 + t3;
        t[4 * ts + c] = t2 - t3;
        t[5 * ts + c] = 4 * d1[c] - 5 * d3[c] + d5[c];
    }
    // Columns: V[i][j][tile] = Σ_k t[i][4·tile + k] B[k][j]
    for (int i = 0; i < 6; i++) {
        const float *ti = t + i * ts;
        float *o0 = out + (ptrdiff_t)(i * 6) * outStride, *o1 = o0 + outStride, *o2 = o1 + outStride;
        float *o3 = o2 + outStride, *o4 = o3 + outStride, *o5 = o4 + outStride;
        for (int x = 0; x < tiles; x++) {
            const float *q = ti + 4 * x;
            const float e0 = q[0], e1 = q[1], e2 = q[2], e3 = q[3], e4 = q[4], e5 = q[5];
            const float t0 = e4 - 4 * e2, t1 = e3 - 4 * e1, t2 = e4 - e2, t3 = 2 * (e3 - e1);
            o0[x] = 4 * e0 - 5 * e2 + e4;
            o1[x] = t0 + t1;
            o2[x] = t0 - t1;
            o3[x] = t2 + t3;
            o4[x] = t2 - t3;
            o5[x] = 4 * e1 - 5 * e3 + e5;
        }
    }
}

AVX2_TARGET void zoo_wino_input2_avx2(const float *restrict rows, ptrdiff_t rowStride, int tiles, float *restrict out,
                                      ptrdiff_t outStride, float *restrict t) {
    const int width = 2 * tiles + 2;
    const ptrdiff_t ts = width;
    const float *d0 = rows, *d1 = rows + rowStride, *d2 = rows + 2 * rowStride, *d3 = rows + 3 * rowStride;
    for (int c = 0; c < width; c++) {
        t[c] = d0[c] - d2[c];
        t[ts + c] = d1[c] + d2[c];
        t[2 * ts + c] = d2[c] - d1[c];
        t[3 * ts + c] = d1[c] - d3[c];
    }
    for (int i = 0; i < 4; i++) {
        const float *ti = t + i * ts;
        float *o0 = out + (ptrdiff_t)(i * 4) * outStride, *o1 = o0 + outStride, *o2 = o1 + outStride, *o3 = o2 + outStride;
        for (int x = 0; x < tiles; x++) {
            const float *q = ti + 2 * x;
            const float e0 = q[0], e1 = q[1], e2 = q[2], e3 = q[3];
            o0[x] = e0 - e2;
            o1[x] = e1 + e2;
            o2[x] = e2 - e1;
            o3[x] = e1 - e3;
        }
    }
}

// bias, then the clamp as max/min (a NaN stays NaN, as in the AVX-512F kernels' max_ps/min_ps operand order)
AVX2_TARGET static inline float finish(float v, float bias, int clamp, float lo, float hi) {
    v += bias;
    if (clamp) {
        v = lo > v ? lo : v;
        v = hi < v ? hi : v;
    }
    return v;
}

AVX2_TARGET void zoo_wino_output4_avx2(const float *restrict M, ptrdiff_t mStride, int tiles, float bias, int clamp, float lo,
                                       float hi, float *restrict y, ptrdiff_t yStride, int outW, int rows, float *restrict s) {
    // Rows: s[r][j][tile] = Σ_i Aᵀ[r][i] M[i][j][tile]
    const ptrdiff_t ss = tiles;
    for (int j = 0; j < 6; j++) {
        const float *q0 = M + (ptrdiff_t)j * mStride, *q1 = q0 + 6 * mStride, *q2 = q0 + 12 * mStride;
        const float *q3 = q0 + 18 * mStride, *q4 = q0 + 24 * mStride, *q5 = q0 + 30 * mStride;
        float *s0 = s + j * ss, *s1 = s + (6 + j) * ss, *s2 = s + (12 + j) * ss, *s3 = s + (18 + j) * ss;
        for (int x = 0; x < tiles; x++) {
            const float p12 = q1[x] + q2[x], d12 = q1[x] - q2[x], p34 = q3[x] + q4[x], d34 = q3[x] - q4[x];
            s0[x] = q0[x] + p12 + p34;
            s1[x] = d12 + 2 * d34;
            s2[x] = p12 + 4 * p34;
            s3[x] = d12 + 8 * d34 + q5[x];
        }
    }
    // Columns: y[r][4·tile + c] = Σ_j s[r][j] A[j][c]; whole tiles first (interleaved stores), then the ragged one
    const int full = outW / 4 < tiles ? outW / 4 : tiles;
    for (int r = 0; r < rows; r++) {
        const float *s0 = s + (6 * r) * ss, *s1 = s0 + ss, *s2 = s1 + ss, *s3 = s2 + ss, *s4 = s3 + ss, *s5 = s4 + ss;
        float *yr = y + r * yStride;
        for (int x = 0; x < full; x++) {
            const float p12 = s1[x] + s2[x], d12 = s1[x] - s2[x], p34 = s3[x] + s4[x], d34 = s3[x] - s4[x];
            yr[4 * x] = finish(s0[x] + p12 + p34, bias, clamp, lo, hi);
            yr[4 * x + 1] = finish(d12 + 2 * d34, bias, clamp, lo, hi);
            yr[4 * x + 2] = finish(p12 + 4 * p34, bias, clamp, lo, hi);
            yr[4 * x + 3] = finish(d12 + 8 * d34 + s5[x], bias, clamp, lo, hi);
        }
        for (int x = full; x < tiles; x++) {
            const float p12 = s1[x] + s2[x], d12 = s1[x] - s2[x], p34 = s3[x] + s4[x], d34 = s3[x] - s4[x];
            const float o[4] = {s0[x] + p12 + p34, d12 + 2 * d34, p12 + 4 * p34, d12 + 8 * d34 + s5[x]};
            for (int c = 0; c < 4 && 4 * x + c < outW; c++) yr[4 * x + c] = finish(o[c], bias, clamp, lo, hi);
        }
    }
}

AVX2_TARGET void zoo_wino_output2_avx2(const float *restrict M, ptrdiff_t mStride, int tiles, float bias, int clamp, float lo,
                                       float hi, float *restrict y, ptrdiff_t yStride, int outW, int rows, float *restrict s) {
    const ptrdiff_t ss = tiles;
    for (int j = 0; j < 4; j++) {
        const float *q0 = M + (ptrdiff_t)j * mStride, *q1 = q0 + 4 * mStride, *q2 = q0 + 8 * mStride, *q3 = q0 + 12 * mStride;
        float *s0 = s + j * ss, *s1 = s + (4 + j) * ss;
        for (int x = 0; x < tiles; x++) {
            s0[x] = q0[x] + q1[x] + q2[x];
            s1[x] = q1[x] - q2[x] - q3[x];
        }
    }
    const int full = outW / 2 < tiles ? outW / 2 : tiles;
    for (int r = 0; r < rows; r++) {
        const float *s0 = s + (4 * r) * ss, *s1 = s0 + ss, *s2 = s1 + ss, *s3 = s2 + ss;
        float *yr = y + r * yStride;
        for (int x = 0; x < full; x++) {
            yr[2 * x] = finish(s0[x] + s1[x] + s2[x], bias, clamp, lo, hi);
            yr[2 * x + 1] = finish(s1[x] - s2[x] - s3[x], bias, clamp, lo, hi);
        }
        for (int x = full; x < tiles; x++) {
            const float o0 = s0[x] + s1[x] + s2[x], o1 = s1[x] - s2[x] - s3[x];
            if (2 * x < outW) yr[2 * x] = finish(o0, bias, clamp, lo, hi);
            if (2 * x + 1 < outW) yr[2 * x + 1] = finish(o1, bias, clamp, lo, hi);
        }
    }
}

// Weight gradient by F(2×2,3×3) (WinogradWeightGradient.swift): P of one row of tiles of dy, out[(i·4 + j)·stride + x] =
// (A dY_x Aᵀ)[i][j] with A = [[1,0],[1,1],[1,−1],[0,−1]]; dY_x is columns 2x, 2x + 1 of rows `first` and `second`
// (`second` NULL past the plane), zero past `width`. Every pair (p, q) becomes (p, p + q, p − q, −q).
static inline void grad_tile2(float a, float b, float c, float d, float *out, ptrdiff_t stride, int x) {
    const float r[4][2] = {{a, b}, {a + c, b + d}, {a - c, b - d}, {-c, -d}};
    for (int i = 0; i < 4; i++) {
        const float p = r[i][0], q = r[i][1];
        out[(4 * i) * stride + x] = p;
        out[(4 * i + 1) * stride + x] = p + q;
        out[(4 * i + 2) * stride + x] = p - q;
        out[(4 * i + 3) * stride + x] = -q;
    }
}

// Tiles x0 ..< tiles one at a time (the portable body, and the AVX2 body's ragged end).
static void grad_row2_plain(const float *first, const float *second, int width, int x0, int tiles, float *out, ptrdiff_t stride) {
    for (int x = x0; x < tiles; x++) {
        const float a = 2 * x < width ? first[2 * x] : 0, b = 2 * x + 1 < width ? first[2 * x + 1] : 0;
        const float c = second && 2 * x < width ? second[2 * x] : 0, d = second && 2 * x + 1 < width ? second[2 * x + 1] : 0;
        grad_tile2(a, b, c, d, out, stride, x);
    }
}

AVX2_TARGET static void grad_row2_avx2(const float *restrict first, const float *restrict second, int width, int tiles,
                                       float *restrict out, ptrdiff_t stride) {
    const int full = width / 2 < tiles ? width / 2 : tiles;
    const __m256 zero = _mm256_setzero_ps();
    int x = 0;
    for (; x + 8 <= full; x += 8) {
        __m256 a, b, c = zero, d = zero;
        zk_deinterleave8(_mm256_loadu_ps(first + 2 * x), _mm256_loadu_ps(first + 2 * x + 8), &a, &b);
        if (second) zk_deinterleave8(_mm256_loadu_ps(second + 2 * x), _mm256_loadu_ps(second + 2 * x + 8), &c, &d);
        const __m256 p[4] = {a, _mm256_add_ps(a, c), _mm256_sub_ps(a, c), _mm256_sub_ps(zero, c)};
        const __m256 q[4] = {b, _mm256_add_ps(b, d), _mm256_sub_ps(b, d), _mm256_sub_ps(zero, d)};
        for (int i = 0; i < 4; i++) {
            float *o = out + (4 * i) * stride + x;
            _mm256_storeu_ps(o, p[i]);
            _mm256_storeu_ps(o + stride, _mm256_add_ps(p[i], q[i]));
            _mm256_storeu_ps(o + 2 * stride, _mm256_sub_ps(p[i], q[i]));
            _mm256_storeu_ps(o + 3 * stride, _mm256_sub_ps(zero, q[i]));
        }
    }
    grad_row2_plain(first, second, width, x, tiles, out, stride);
}


// AVX-512F: 16 tiles per step, the last step masked (ResNet at 96² has rows of 12, 6, 3 and 2 tiles, which the AVX2
// body's 8-tile steps left almost entirely to the plain loop). Columns past `width` are masked out of the loads (zero).
__attribute__((target("avx512f"))) static void grad_row2_avx512(const float *restrict first, const float *restrict second,
                                                                int width, int tiles, float *restrict out, ptrdiff_t stride) {
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i odd = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    const __m512 zero = _mm512_setzero_ps();
    for (int x = 0; x < tiles; x += 16) {
        const int n = tiles - x < 16 ? tiles - x : 16;
        int avail = width - 2 * x;
        if (avail > 2 * n) avail = 2 * n;
        if (avail < 0) avail = 0;
        const __mmask16 m0 = (__mmask16)(avail >= 16 ? 0xFFFF : (1u << avail) - 1);
        const __mmask16 m1 = (__mmask16)(avail >= 32 ? 0xFFFF : avail > 16 ? (1u << (avail - 16)) - 1 : 0);
        const __mmask16 mo = (__mmask16)(n >= 16 ? 0xFFFF : (1u << n) - 1);
        const __m512 f0 = _mm512_maskz_loadu_ps(m0, first + 2 * x), f1 = _mm512_maskz_loadu_ps(m1, first + 2 * x + 16);
        const __m512 a = _mm512_permutex2var_ps(f0, even, f1), b = _mm512_permutex2var_ps(f0, odd, f1);
        __m512 c = zero, d = zero;
        if (second) {
            const __m512 s0 = _mm512_maskz_loadu_ps(m0, second + 2 * x), s1 = _mm512_maskz_loadu_ps(m1, second + 2 * x + 16);
            c = _mm512_permutex2var_ps(s0, even, s1);
            d = _mm512_permutex2var_ps(s0, odd, s1);
        }
        const __m512 p[4] = {a, _mm512_add_ps(a, c), _mm512_sub_ps(a, c), _mm512_sub_ps(zero, c)};
        const __m512 q[4] = {b, _mm512_add_ps(b, d), _mm512_sub_ps(b, d), _mm512_sub_ps(zero, d)};
        for (int i = 0; i < 4; i++) {
            float *o = out + (4 * i) * stride + x;
            _mm512_mask_storeu_ps(o, mo, p[i]);
            _mm512_mask_storeu_ps(o + stride, mo, _mm512_add_ps(p[i], q[i]));
            _mm512_mask_storeu_ps(o + 2 * stride, mo, _mm512_sub_ps(p[i], q[i]));
            _mm512_mask_storeu_ps(o + 3 * stride, mo, _mm512_sub_ps(zero, q[i]));
        }
    }
}

void zoo_wino_grad_row2(const float *first, const float *second, int width, int tiles, float *out, ptrdiff_t stride, int portable) {
    if (!portable && zoo_kernels_simd() >= 2) grad_row2_avx512(first, second, width, tiles, out, stride);
    else if (!portable && (zoo_kernels_simd() >= 1)) grad_row2_avx2(first, second, width, tiles, out, stride);
    else grad_row2_plain(first, second, width, 0, tiles, out, stride);
}
