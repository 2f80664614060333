/* Core-to-core latency: two threads pass a cache line back and forth. On
 * a shared virtual machine it changes with where the hypervisor puts the
 * virtual CPUs (100-500 ns round trips within one session here), and it
 * sets what a fork and a join of two threads cost, the larger part of a
 * two-thread call on a tensor of tens of kilobytes. */
#include "bench.h"

#include <pthread.h>
#include <stdatomic.h>

enum { ROUND_TRIPS = 20000, CACHE_LINE = 64 };

static struct {
  _Alignas(CACHE_LINE) atomic_long ping;
  _Alignas(CACHE_LINE) atomic_long pong;
} lines;

static void relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

static void *answer(void *arg) {
  (void)arg;
  for (long i = 1; i <= ROUND_TRIPS; i++) {
    while (atomic_load_explicit(&lines.ping, memory_order_acquire) != i)
      relax();
    atomic_store_explicit(&lines.pong, i, memory_order_release);
  }
  return NULL;
}

double bench_round_trip_ns(void) {
  atomic_store(&lines.ping, 0);
  atomic_store(&lines.pong, 0);
  pthread_t other;
  if (pthread_create(&other, NULL, answer, NULL) != 0) return -1;
  double t0 = bench_now();
  for (long i = 1; i <= ROUND_TRIPS; i++) {
    atomic_store_explicit(&lines.ping, i, memory_order_release);
    while (atomic_load_explicit(&lines.pong, memory_order_acquire) != i)
      relax();
  }
  double seconds = bench_now() - t0;
  pthread_join(other, NULL);
  return seconds / ROUND_TRIPS * 1e9;
}
