/* Deterministic inputs. torch_bench.py implements the same recipe with
 * numpy; every value is an exact binary fraction, so both get equal bits. */
#define _DEFAULT_SOURCE /* madvise */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

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

static bool huge_pages;

void bench_set_huge_pages(bool on) { huge_pages = on; }

void *bench_alloc_pages(size_t bytes) {
  size_t page = huge_pages ? (size_t)2 << 20 : 4096;
  bytes = bytes ? (bytes + page - 1) & ~(page - 1) : page;
  void *p = aligned_alloc(page, bytes);
  if (!p) return NULL;
  /* Before the first touch: the kernel picks a page's size when it
   * faults it in. */
  if (huge_pages) madvise(p, bytes, MADV_HUGEPAGE);
  memset(p, 0, bytes);
  return p;
}

size_t bench_huge_page_bytes(void) {
  FILE *f = fopen("/proc/self/smaps_rollup", "r");
  if (!f) return 0;
  char line[256];
  unsigned long long kib = 0;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "AnonHugePages: %llu kB", &kib) == 1) break;
  fclose(f);
  return (size_t)kib << 10;
}

float *bench_alloc_tensor(size_t n) {
  return bench_alloc_pages(n * sizeof(float));
}
