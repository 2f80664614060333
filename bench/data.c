/* Deterministic inputs. torch_bench.py implements the same recipe with
 * numpy; every value is an exact binary fraction, so both get equal bits. */
#include "bench.h"

#include <stdlib.h>
#include <string.h>

uint64_t bench_seed(size_t shape_index, int what) {
  return 1000u * (uint64_t)(shape_index + 1) + (uint64_t)what;
}

/* splitmix64 of element i (counting from 1). */
static uint64_t mix(uint64_t seed, uint64_t i) {
  uint64_t z = seed + (i + 1) * UINT64_C(0x9E3779B97F4A7C15);
  z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
  return z ^ (z >> 31);
}

void bench_fill_tensor(float *x, size_t n, uint64_t seed) {
  for (size_t i = 0; i < n; i++) {
    int32_t k = (int32_t)(mix(seed, i) >> 40) - (1 << 23); /* 24 bits */
    x[i] = (float)k * 0x1p-22f + 1.0f;
  }
}

void bench_fill_param(float *p, size_t n, uint64_t seed, float base) {
  for (size_t i = 0; i < n; i++)
    p[i] = (float)(mix(seed, i) >> 41) * 0x1p-23f + base; /* 23 bits */
}

size_t bench_sample_stride(size_t total) { return (total / 65536) | 1; }

size_t bench_sample_count(size_t total) {
  size_t stride = bench_sample_stride(total);
  return (total + stride - 1) / stride;
}

float *bench_alloc_tensor(size_t n) {
  size_t bytes = (n * sizeof(float) + 4095) & ~(size_t)4095;
  float *p = aligned_alloc(4096, bytes ? bytes : 4096);
  if (p) memset(p, 0, bytes);
  return p;
}
