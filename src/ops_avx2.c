/* The float operators for AVX2 with FMA: 8 floats a vector. CMake compiles
 * this file with those instruction sets; isa.c calls it only on a CPU that
 * has them. */
#include "ops_cut.h"
#include "ops_isa.h"

#ifdef BN_HAVE_X86_KERNELS
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "threads.h"

typedef __m256 vf;
typedef __m256d vd;
enum { VW = 8 };

static inline vf vf_load(const float *p) { return _mm256_loadu_ps(p); }
static inline void vf_store(float *p, vf v) { _mm256_storeu_ps(p, v); }
static inline void vf_stream(float *p, vf v) { _mm256_stream_ps(p, v); }
static inline void vf_fence(void) { _mm_sfence(); }
static inline vf vf_set1(float a) { return _mm256_set1_ps(a); }
static inline vf vf_zero(void) { return _mm256_setzero_ps(); }
static inline vf vf_add(vf a, vf b) { return _mm256_add_ps(a, b); }
static inline vf vf_sub(vf a, vf b) { return _mm256_sub_ps(a, b); }
static inline vf vf_mul(vf a, vf b) { return _mm256_mul_ps(a, b); }
/* a * b + c */
static inline vf vf_fma(vf a, vf b, vf c) {
  return _mm256_fmadd_ps(a, b, c);
}
/* A mask of the lanes below k. */
static inline __m256i lanes_below(size_t k) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)k),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
/* p[i] - b for i < k (k < VW), 0 in the other lanes; reads nothing past
 * p + k. */
static inline vf vf_sub_partial(const float *p, size_t k, vf b) {
  __m256i m = lanes_below(k);
  return _mm256_and_ps(_mm256_sub_ps(_mm256_maskload_ps(p, m), b),
                       _mm256_castsi256_ps(m));
}
/* p[i] for i < k (k < VW), 0 in the other lanes; reads nothing past
 * p + k. */
static inline vf vf_load_partial(const float *p, size_t k) {
  return _mm256_maskload_ps(p, lanes_below(k));
}
/* Stores lanes i < k (k < VW) of v at p; writes nothing past p + k. In
 * pieces of 4, 2 and 1 lanes: a masked store (vmaskmovps) cost NHWC
 * 8x7x7x36 inference a third of its time on the AMD CPU of the
 * benchmark. */
static inline void vf_store_partial(float *p, vf v, size_t k) {
  __m128 part = _mm256_castps256_ps128(v);
  if (k & 4) {
    _mm_storeu_ps(p, part);
    p += 4;
    part = _mm256_extractf128_ps(v, 1);
  }
  if (k & 2) {
    _mm_storel_pi((__m64 *)p, part);
    p += 2;
    part = _mm_movehl_ps(part, part);
  }
  if (k & 1) _mm_store_ss(p, part);
}
static inline vd vd_zero(void) { return _mm256_setzero_pd(); }
static inline vd vd_load(const double *p) { return _mm256_loadu_pd(p); }
static inline void vd_store(double *p, vd v) { _mm256_storeu_pd(p, v); }
static inline vd vd_add(vd a, vd b) { return _mm256_add_pd(a, b); }
static inline double vd_sum(vd v) {
  __m128d s =
      _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
  return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}
/* The low and the high half of a float vector, as doubles. */
static inline vd vd_lo(vf v) {
  return _mm256_cvtps_pd(_mm256_castps256_ps128(v));
}
static inline vd vd_hi(vf v) {
  return _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
}
/* VW doubles at p, rounded to floats. */
static inline vf vf_from_doubles(const double *p) {
  return _mm256_insertf128_ps(
      _mm256_castps128_ps256(_mm256_cvtpd_ps(_mm256_loadu_pd(p))),
      _mm256_cvtpd_ps(_mm256_loadu_pd(p + VW / 2)), 1);
}

#define BN_SIMD_OPS bn_float_ops_avx2
#include "ops_simd.inc"
#endif
