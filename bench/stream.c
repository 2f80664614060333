/* STREAM-like memory bandwidth with `threads` OpenMP threads over arrays
 * several times the LLC: read (sum), copy and triad, copy and triad both
 * with regular (write-allocate) stores and with non-temporal stores, which
 * skip the read-for-ownership of the destination and are faster for large
 * arrays. Bytes are counted as STREAM counts them (no write-allocate
 * traffic). Compiled with -fno-tree-loop-distribute-patterns so that the
 * regular copy stays a loop (glibc's memcpy switches to non-temporal stores
 * on large sizes). */
#include "bench.h"

#include <omp.h>
#include <stdlib.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define BENCH_HAVE_NT 1
#else
#define BENCH_HAVE_NT 0
#endif

static volatile float stream_sink;

const char *bench_stream_name(bench_stream_kind kind) {
  static const char *names[] = {"read", "copy", "copy-nt", "triad", "triad-nt"};
  return names[kind];
}

static double stream_tensors(bench_stream_kind kind) {
  return kind == BENCH_STREAM_READ ? 1
         : kind == BENCH_STREAM_COPY || kind == BENCH_STREAM_COPY_NT ? 2 : 3;
}

#if BENCH_HAVE_NT
/* 16 floats (64 bytes, one line) from p, stored non-temporally at q. */
static inline void nt_line(float *q, const float *p, float scale,
                           const float *add) {
#if defined(__AVX512F__)
  __m512 v = _mm512_load_ps(p);
  if (add) v = _mm512_add_ps(_mm512_load_ps(add), _mm512_mul_ps(_mm512_set1_ps(scale), v));
  _mm512_stream_ps(q, v);
#elif defined(__AVX__)
  for (int h = 0; h < 16; h += 8) {
    __m256 v = _mm256_load_ps(p + h);
    if (add) v = _mm256_add_ps(_mm256_load_ps(add + h), _mm256_mul_ps(_mm256_set1_ps(scale), v));
    _mm256_stream_ps(q + h, v);
  }
#else
  for (int h = 0; h < 16; h += 4) {
    __m128 v = _mm_load_ps(p + h);
    if (add) v = _mm_add_ps(_mm_load_ps(add + h), _mm_mul_ps(_mm_set1_ps(scale), v));
    _mm_stream_ps(q + h, v);
  }
#endif
}
#endif

static double run_kernel(bench_stream_kind kind, float *restrict a,
                         float *restrict b, float *restrict c, size_t n,
                         int threads) {
  double t0 = bench_now();
  long long m = (long long)n, lines = m / 16;
  const float q = 3.0f;
  switch (kind) {
  case BENCH_STREAM_READ: {
    float s = 0.0f;
#pragma omp parallel for simd num_threads(threads) schedule(static) reduction(+ : s)
    for (long long i = 0; i < m; i++) s += a[i];
    stream_sink = s;
    break;
  }
  case BENCH_STREAM_COPY:
#pragma omp parallel for simd num_threads(threads) schedule(static)
    for (long long i = 0; i < m; i++) b[i] = a[i];
    break;
  case BENCH_STREAM_TRIAD:
#pragma omp parallel for simd num_threads(threads) schedule(static)
    for (long long i = 0; i < m; i++) a[i] = b[i] + q * c[i];
    break;
#if BENCH_HAVE_NT
  case BENCH_STREAM_COPY_NT:
#pragma omp parallel for num_threads(threads) schedule(static)
    for (long long l = 0; l < lines; l++) nt_line(b + 16 * l, a + 16 * l, 0, NULL);
    _mm_sfence();
    break;
  case BENCH_STREAM_TRIAD_NT:
#pragma omp parallel for num_threads(threads) schedule(static)
    for (long long l = 0; l < lines; l++)
      nt_line(a + 16 * l, c + 16 * l, q, b + 16 * l);
    _mm_sfence();
    break;
#endif
  default:
    (void)lines;
    return -1;
  }
  return bench_now() - t0;
}

int bench_stream_measure(int threads, size_t array_bytes, int reps,
                         bench_bandwidth *out) {
  size_t n = array_bytes / sizeof(float);
  n &= ~(size_t)1023;
  size_t bytes = n * sizeof(float);
  float *a = bench_alloc_pages(bytes), *b = bench_alloc_pages(bytes),
        *c = bench_alloc_pages(bytes);
  double *samples = malloc((size_t)(reps > 0 ? reps : 1) * sizeof *samples);
  if (!a || !b || !c || !samples || reps < 1) {
    free(a); free(b); free(c); free(samples);
    return -1;
  }
  long long m = (long long)n;
  /* The pages are in (bench_alloc_pages touched them); this warms them
   * for the threads that use them. */
#pragma omp parallel for num_threads(threads) schedule(static)
  for (long long i = 0; i < m; i++) {
    a[i] = 1.0f;
    b[i] = 2.0f;
    c[i] = 0.5f;
  }
  out->threads = threads;
  out->array_bytes = bytes;
  for (int k = 0; k < BENCH_STREAM_COUNT; k++) {
    double moved = (double)bytes * stream_tensors((bench_stream_kind)k);
    out->gbps[k] = out->gbps_min[k] = out->gbps_max[k] = 0;
    if (run_kernel((bench_stream_kind)k, a, b, c, n, threads) < 0) /* warm-up */
      continue; /* no non-temporal stores on this machine */
    for (int r = 0; r < reps; r++)
      samples[r] = run_kernel((bench_stream_kind)k, a, b, c, n, threads);
    bench_stats st;
    bench_stats_of(samples, reps, &st);
    out->gbps[k] = moved / st.median * 1e-9;
    out->gbps_min[k] = moved / st.max * 1e-9;
    out->gbps_max[k] = moved / st.min * 1e-9;
  }
  free(a); free(b); free(c); free(samples);
  return 0;
}
