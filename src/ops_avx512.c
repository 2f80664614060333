/* The float operators for AVX-512 (F, BW, DQ, VL) with FMA: 16 floats a
 * vector. CMake compiles this file with those instruction sets; isa.c
 * calls it only on a CPU that has them. */
#include "ops_cut.h"
#include "ops_isa.h"

#ifdef BN_HAVE_X86_KERNELS
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "threads.h"

typedef __m512 vf;
typedef __m512d vd;
enum { VW = 16 };

static inline vf vf_load(const float *p) { return _mm512_loadu_ps(p); }
static inline void vf_store(float *p, vf v) { _mm512_storeu_ps(p, v); }
static inline void vf_stream(float *p, vf v) { _mm512_stream_ps(p, v); }
static inline void vf_fence(void) { _mm_sfence(); }
static inline vf vf_set1(float a) { return _mm512_set1_ps(a); }
static inline vf vf_zero(void) { return _mm512_setzero_ps(); }
static inline vf vf_add(vf a, vf b) { return _mm512_add_ps(a, b); }
static inline vf vf_sub(vf a, vf b) { return _mm512_sub_ps(a, b); }
static inline vf vf_mul(vf a, vf b) { return _mm512_mul_ps(a, b); }
/* a * b + c */
static inline vf vf_fma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
/* p[i] - b for i < k (k < VW), 0 in the other lanes; reads nothing past
 * p + k. */
static inline vf vf_sub_partial(const float *p, size_t k, vf b) {
  __mmask16 m = (__mmask16)((1u << k) - 1);
  return _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, p), b);
}
/* p[i] for i < k (k < VW), 0 in the other lanes; reads nothing past
 * p + k. */
static inline vf vf_load_partial(const float *p, size_t k) {
  return _mm512_maskz_loadu_ps((__mmask16)((1u << k) - 1), p);
}
/* Stores lanes i < k (k < VW) of v at p; writes nothing past p + k. */
static inline void vf_store_partial(float *p, vf v, size_t k) {
  _mm512_mask_storeu_ps(p, (__mmask16)((1u << k) - 1), v);
}
static inline vd vd_zero(void) { return _mm512_setzero_pd(); }
static inline vd vd_load(const double *p) { return _mm512_loadu_pd(p); }
static inline void vd_store(double *p, vd v) { _mm512_storeu_pd(p, v); }
static inline vd vd_add(vd a, vd b) { return _mm512_add_pd(a, b); }
static inline double vd_sum(vd v) { return _mm512_reduce_add_pd(v); }
/* The low and the high half of a float vector, as doubles. */
static inline vd vd_lo(vf v) {
  return _mm512_cvtps_pd(_mm512_castps512_ps256(v));
}
static inline vd vd_hi(vf v) {
  return _mm512_cvtps_pd(
      _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}
/* VW doubles at p, rounded to floats. */
static inline vf vf_from_doubles(const double *p) {
  return _mm512_insertf32x8(
      _mm512_castps256_ps512(_mm512_cvtpd_ps(_mm512_loadu_pd(p))),
      _mm512_cvtpd_ps(_mm512_loadu_pd(p + VW / 2)), 1);
}

#define BN_SIMD_OPS bn_float_ops_avx512
#include "ops_simd.inc"
#endif
