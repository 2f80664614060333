/* The bare loop of a case: the floor's traffic moved by the plainest loops
 * there are, on the case's own tensors, with the case's thread count and
 * under the case's conditions (caches scrubbed before each call), timed in
 * the same rounds as bnorm and the peers. The floor is STREAM's best rate
 * on arrays of 128 MiB and more, streamed back to back; a cold call of a
 * 16-26 MB tensor starts from caches full of other lines and runs for about
 * a millisecond. The bare loop shows what that traffic costs under the
 * case's own conditions: how much of the gap to the floor any
 * implementation must leave. Its output is not compared; it does no batch
 * normalization, only the memory traffic of one. */
#include "bench.h"

#include <omp.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

/* out = a * p + b * q (q NULL: out = a * p + b), for i in [0, n); p, q, out
 * aligned to 64 bytes. Non-temporal stores where the machine has AVX-512,
 * as bnorm and STREAM's copy-nt use them for outputs this large. */
static void bare_write(float *out, const float *p, const float *q, float a,
                       float b, long long n, int threads) {
  long long lines = n / 16;
#if defined(__AVX512F__)
#pragma omp parallel for num_threads(threads) schedule(static)
  for (long long l = 0; l < lines; l++) {
    __m512 v = _mm512_fmadd_ps(_mm512_set1_ps(a), _mm512_load_ps(p + 16 * l),
                               q ? _mm512_mul_ps(_mm512_set1_ps(b),
                                                 _mm512_load_ps(q + 16 * l))
                                 : _mm512_set1_ps(b));
    _mm512_stream_ps(out + 16 * l, v);
  }
  _mm_sfence();
#else
#pragma omp parallel for simd num_threads(threads) schedule(static)
  for (long long i = 0; i < 16 * lines; i++)
    out[i] = a * p[i] + (q ? b * q[i] : b);
#endif
  for (long long i = 16 * lines; i < n; i++)
    out[i] = a * p[i] + (q ? b * q[i] : b);
}

/* The sum of p[i] (+ q[i]) over [0, n): one read of each tensor. */
static float bare_read(const float *p, const float *q, long long n,
                       int threads) {
  float s = 0.0f;
  if (q) {
#pragma omp parallel for simd num_threads(threads) schedule(static) reduction(+ : s)
    for (long long i = 0; i < n; i++) s += p[i] + q[i];
  } else {
#pragma omp parallel for simd num_threads(threads) schedule(static) reduction(+ : s)
    for (long long i = 0; i < n; i++) s += p[i];
  }
  return s;
}

int bench_bare_run(const bench_bare *b) {
  long long n = (long long)b->n;
  switch (b->pass) {
  case BENCH_INFER:
    bare_write(b->out, b->x, NULL, 1.5f, 0.25f, n, b->threads);
    return 0;
  case BENCH_TRAIN: {
    float s = bare_read(b->x, NULL, n, b->threads);
    bare_write(b->out, b->x, NULL, 1.5f, s * 1e-9f, n, b->threads);
    return 0;
  }
  case BENCH_BACKWARD: {
    float s = bare_read(b->x, b->dy, n, b->threads);
    bare_write(b->out, b->dy, b->x, 1.5f, s * 1e-9f, n, b->threads);
    return 0;
  }
  default:
    return -1;
  }
}
