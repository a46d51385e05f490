// Core-to-core round trip: how far apart the scheduler (or a VM's host) has put two threads. On the 2-vCPU EPYC VM of
// 2026-12-06 it was 55–75 ns most of the time and 355–380 ns in phases when the two vCPUs sat on distant cores; in
// those phases zoo's 2-thread resnet18 b8 ran 155–175 ms instead of 92–100 (threads exchange every layer's output),
// while one thread ran 174–179 ms throughout. `zoo-tool bench` reports it so such runs can be told apart.
#include "CZooKernels.h"
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

typedef struct { _Atomic int flag; int rounds; char pad[56]; } zoo_pingpong;

static void *pong(void *arg) {
    zoo_pingpong *p = arg;
    for (int i = 0; i < p->rounds; i++) {
        while (atomic_load_explicit(&p->flag, memory_order_acquire) != 1) { }
        atomic_store_explicit(&p->flag, 0, memory_order_release);
    }
    return 0;
}

double zoo_core_roundtrip_ns(int rounds) {
    static zoo_pingpong p __attribute__((aligned(64)));
    if (rounds < 1) return -1;
    atomic_store(&p.flag, 0);
    p.rounds = rounds;
    pthread_t t;
    if (pthread_create(&t, 0, pong, &p) != 0) return -1;
    // A few untimed rounds first, so that the partner thread is running on its CPU.
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < rounds; i++) {
        atomic_store_explicit(&p.flag, 1, memory_order_release);
        while (atomic_load_explicit(&p.flag, memory_order_acquire) != 0) { }
        if (i == rounds / 4) clock_gettime(CLOCK_MONOTONIC, &a);
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    pthread_join(t, 0);
    const double ns = (double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec);
    return ns / (rounds - rounds / 4 - 1 > 0 ? rounds - rounds / 4 - 1 : 1);
}

int zoo_thread_slot(void) {
    static _Atomic int next = 0;
    static _Thread_local int slot = -1;
    if (slot < 0) slot = atomic_fetch_add(&next, 1);
    return slot;
}
