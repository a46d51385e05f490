// Cache-line handoff between the two cores: what a write costs when the other core read the lines last.
//
//   gcc -O2 -mavx512f -pthread bench/handoff.c -o /tmp/handoff && /tmp/handoff 600000
//
// Thread A on CPU 0 and thread B on CPU 1 take turns on one buffer (BYTES, default 600 000: a resnet18 layer's
// Winograd V), 60 turns, the first 10 untimed. Patterns:
//   same writer    A writes, B reads, A writes again, ...: every A write finds the lines held by B
//   alternating    A reads + writes, then B reads + writes: each core writes what it read last
//   private        A writes a buffer B never touches, B reads another one
//   non-temporal   as "same writer" with streaming stores (the lines go to memory and leave every cache)
// Printed: each phase's mean µs, and the core-to-core round trip (ns) measured before, which tells whether the two
// vCPUs share an L3 ("near") or not ("distant"); see bench/README.md, session 15.
#define _GNU_SOURCE
#include <immintrin.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { ROUNDS = 60, SKIP = 10 };
static _Atomic int turn = 0;
static float *buf, *other;
static size_t n;
static int pattern;
static double tAw[ROUNDS], tAr[ROUNDS], tBw[ROUNDS], tBr[ROUNDS];
static volatile float sink;

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}
static void pin(int cpu) {
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(cpu, &s);
    pthread_setaffinity_np(pthread_self(), sizeof s, &s);
}
__attribute__((target("avx512f"))) static float readAll(const float *p) {
    __m512 s = _mm512_setzero_ps();
    for (size_t j = 0; j < n; j += 16) s = _mm512_add_ps(s, _mm512_load_ps(p + j));
    return _mm512_reduce_add_ps(s);
}
__attribute__((target("avx512f"))) static void writeAll(float *p, float v, int streaming) {
    const __m512 x = _mm512_set1_ps(v);
    if (streaming) {
        for (size_t j = 0; j < n; j += 16) _mm512_stream_ps(p + j, x);
        _mm_sfence();
    } else {
        for (size_t j = 0; j < n; j += 16) _mm512_store_ps(p + j, x);
    }
}
static void *threadB(void *arg) {
    (void)arg;
    pin(1);
    for (int i = 0; i < ROUNDS; i++) {
        while (atomic_load(&turn) != 1) { }
        double t = now_us();
        sink = readAll(pattern == 2 ? other : buf);
        tBr[i] = now_us() - t;
        if (pattern == 1) { t = now_us(); writeAll(buf, (float)i, 0); tBw[i] = now_us() - t; }
        atomic_store(&turn, 0);
    }
    return 0;
}
static double roundtrip_ns(void);
static void run(int p, const char *name) {
    pattern = p;
    memset(buf, 0, n * 4);
    memset(other, 0, n * 4);
    const double rt = roundtrip_ns();
    pthread_t t;
    pthread_create(&t, 0, threadB, 0);
    for (int i = 0; i < ROUNDS; i++) {
        double t0 = now_us();
        if (p == 1) { sink = readAll(buf); tAr[i] = now_us() - t0; t0 = now_us(); }
        writeAll(buf, (float)i, p == 3);
        tAw[i] = now_us() - t0;
        atomic_store(&turn, 1);
        while (atomic_load(&turn) != 0) { }
    }
    pthread_join(t, 0);
    double aw = 0, ar = 0, bw = 0, br = 0;
    for (int i = SKIP; i < ROUNDS; i++) { aw += tAw[i]; ar += tAr[i]; bw += tBw[i]; br += tBr[i]; }
    const double k = ROUNDS - SKIP;
    printf("%-13s (round trip %4.0f ns)  A write %7.1f us  B read %6.1f us", name, rt, aw / k, br / k);
    if (p == 1) printf("  A read %6.1f us  B write %6.1f us", ar / k, bw / k);
    printf("\n");
}

static _Atomic int flag = 0;
static void *pong(void *arg) {
    (void)arg;
    pin(1);
    for (int i = 0; i < 100000; i++) {
        while (atomic_load_explicit(&flag, memory_order_acquire) != 1) { }
        atomic_store_explicit(&flag, 0, memory_order_release);
    }
    return 0;
}
static double roundtrip_ns(void) {
    pthread_t t;
    pin(0);
    pthread_create(&t, 0, pong, 0);
    double a = now_us();
    for (int i = 0; i < 100000; i++) {
        atomic_store_explicit(&flag, 1, memory_order_release);
        while (atomic_load_explicit(&flag, memory_order_acquire) != 0) { }
    }
    double b = now_us();
    pthread_join(t, 0);
    return (b - a) * 1e3 / 100000;
}

int main(int argc, char **argv) {
    const long bytes = argc > 1 ? atol(argv[1]) : 600000;
    if (bytes < 64 || bytes > (1L << 30)) { fprintf(stderr, "handoff: BYTES must be 64 B to 1 GiB, got %ld\n", bytes); return 2; }
    if (!__builtin_cpu_supports("avx512f")) { fprintf(stderr, "handoff: needs AVX-512F\n"); return 2; }
    n = (size_t)(bytes + 63) / 64 * 16;
    buf = aligned_alloc(64, n * 4);
    other = aligned_alloc(64, n * 4);
    if (!buf || !other) { fprintf(stderr, "handoff: out of memory\n"); return 1; }
    pin(0);
    run(0, "same writer");
    run(1, "alternating");
    run(2, "private");
    run(3, "non-temporal");
    return 0;
}
