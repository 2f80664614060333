/* Variable initializers.
 *
 * The random kinds are deterministic functions of (seed, element index):
 * element i is drawn from Philox4x32-10 (Salmon et al., SC'11) with key =
 * seed and counter = (i, attempt), so a variable's values do not depend on
 * how many elements precede it in memory, on threads, or on the platform.
 * They are NOT TensorFlow's streams: TF's stateless ops use Philox too, but
 * with their own key derivation and normal transform, and reproducing those
 * bit for bit is not a goal. Keras' seeds give reproducible values within
 * bnorm, not TensorFlow's values.
 *
 * Normals use Marsaglia's polar method with a logarithm built from +, -, *,
 * / and frexp only, because libm's log may differ in the last bit between
 * platforms and that could flip a float32 rounding. */
#include "internal.h"

#include <math.h>
#include <string.h>

#if defined(__clang__)
/* A fused multiply-add rounds differently; the log below must not use one. */
#pragma STDC FP_CONTRACT OFF
#endif

/* ---- Philox4x32-10 ---- */

static void philox4x32_10(const uint32_t counter[4], const uint32_t key[2],
                          uint32_t out[4]) {
  uint32_t c0 = counter[0], c1 = counter[1], c2 = counter[2], c3 = counter[3];
  uint32_t k0 = key[0], k1 = key[1];
  for (int round = 0; round < 10; round++) {
    if (round > 0) {
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    uint64_t p0 = (uint64_t)0xD2511F53u * c0;
    uint64_t p1 = (uint64_t)0xCD9E8D57u * c2;
    uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
    uint32_t n1 = (uint32_t)p1;
    uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
    uint32_t n3 = (uint32_t)p0;
    c0 = n0; c1 = n1; c2 = n2; c3 = n3;
  }
  out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

/* Exposed for the known-answer test; not part of the public API. */
void bn_philox4x32_10_for_test(const uint32_t counter[4],
                               const uint32_t key[2], uint32_t out[4]);
void bn_philox4x32_10_for_test(const uint32_t counter[4],
                               const uint32_t key[2], uint32_t out[4]) {
  philox4x32_10(counter, key, out);
}

/* Four random words for element `index`, try number `attempt`. */
static void draw(uint64_t seed, uint64_t index, uint32_t attempt,
                 uint32_t out[4]) {
  const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
  const uint32_t counter[4] = {(uint32_t)index, (uint32_t)(index >> 32),
                               attempt, 0};
  philox4x32_10(counter, key, out);
}

/* A double in [0, 1) with 53 random bits. */
static double unit_double(uint32_t high, uint32_t low) {
  uint64_t bits = ((uint64_t)(high >> 5) << 26) | (uint64_t)(low >> 6);
  return (double)bits * (1.0 / 9007199254740992.0);
}

/* ln(x) for 0 < x < 1 to about 1 ulp, identical on every IEEE-754 platform:
 * x = m * 2^e with m in [sqrt(1/2), sqrt(2)), ln m = 2 atanh(t),
 * t = (m - 1) / (m + 1), |t| <= 0.172, summed to t^25. */
static double portable_log(double x) {
  int e;
  double m = frexp(x, &e);
  if (m < 0.70710678118654752440) {
    m = m * 2.0;
    e = e - 1;
  }
  double t = (m - 1.0) / (m + 1.0);
  double t2 = t * t;
  double sum = 2.0 / 25.0;
  static const double odd_inverse_twice[] = {
      2.0 / 23.0, 2.0 / 21.0, 2.0 / 19.0, 2.0 / 17.0, 2.0 / 15.0, 2.0 / 13.0,
      2.0 / 11.0, 2.0 / 9.0,  2.0 / 7.0,  2.0 / 5.0,  2.0 / 3.0,  2.0};
  for (size_t i = 0; i < sizeof odd_inverse_twice / sizeof odd_inverse_twice[0];
       i++) {
    double scaled = sum * t2;
    sum = scaled + odd_inverse_twice[i];
  }
  double log_m = sum * t;
  /* ln 2 split so that e * ln2_high is exact for |e| < 2^11. */
  const double ln2_high = 6.93147180369123816490e-01;
  const double ln2_low = 1.90821492927058770002e-10;
  double de = (double)e;
  double low_part = de * ln2_low;
  double high_part = de * ln2_high;
  return high_part + (low_part + log_m);
}

/* A standard normal for element `index`; with `truncate`, draws beyond two
 * standard deviations are rejected as Keras' TruncatedNormal does. */
static double normal_draw(uint64_t seed, uint64_t index, bool truncate) {
  for (uint32_t attempt = 0;; attempt++) {
    uint32_t w[4];
    draw(seed, index, attempt, w);
    double v1 = 2.0 * unit_double(w[0], w[1]) - 1.0;
    double v2 = 2.0 * unit_double(w[2], w[3]) - 1.0;
    double a = v1 * v1;
    double b = v2 * v2;
    double s = a + b;
    if (s >= 1.0 || s == 0.0) continue;
    double ratio = -2.0 * portable_log(s) / s;
    double z = v1 * sqrt(ratio);
    if (truncate && fabs(z) > 2.0) continue;
    return z;
  }
}

/* ---- validation and fill ---- */

bnorm_status bn_initializer_validate(const bnorm_initializer *init,
                                     const char *what) {
  bnorm_status s = BNORM_OK;
  switch (init->kind) {
    case BNORM_INIT_ZEROS:
    case BNORM_INIT_ONES:
      return BNORM_OK;
    case BNORM_INIT_CONSTANT:
      return bn_check_finite(init->value, what, "Constant", "value");
    case BNORM_INIT_RANDOM_NORMAL:
    case BNORM_INIT_TRUNCATED_NORMAL: {
      const char *kind = init->kind == BNORM_INIT_RANDOM_NORMAL
                             ? "RandomNormal"
                             : "TruncatedNormal";
      s = bn_check_finite(init->mean, what, kind, "mean");
      if (s == BNORM_OK) s = bn_check_finite(init->stddev, what, kind, "stddev");
      return s;
    }
    case BNORM_INIT_RANDOM_UNIFORM:
      s = bn_check_finite(init->minval, what, "RandomUniform", "minval");
      if (s == BNORM_OK)
        s = bn_check_finite(init->maxval, what, "RandomUniform", "maxval");
      return s;
    case BNORM_INIT_CALLBACK:
      if (!init->fn)
        return bn_fail(BNORM_ERR_INVALID_CONFIG,
                       "%s: kind is BNORM_INIT_CALLBACK but fn is NULL", what);
      return BNORM_OK;
  }
  return bn_fail(BNORM_ERR_INVALID_CONFIG,
                 "%s: kind %d is not a bnorm_initializer_kind (0 to %d)", what,
                 (int)init->kind, (int)BNORM_INIT_CALLBACK);
}

bnorm_status bn_initializer_fill(const bnorm_initializer *init,
                                 bnorm_dtype dtype, double *values,
                                 size_t count, const int64_t *shape, int rank,
                                 uint64_t fallback_seed, const char *what) {
  bnorm_status s = bn_initializer_validate(init, what);
  if (s != BNORM_OK) return s;
  uint64_t seed = init->has_seed ? init->seed : fallback_seed;
  switch (init->kind) {
    case BNORM_INIT_ZEROS:
      for (size_t i = 0; i < count; i++) values[i] = 0.0;
      break;
    case BNORM_INIT_ONES:
      for (size_t i = 0; i < count; i++) values[i] = 1.0;
      break;
    case BNORM_INIT_CONSTANT:
      for (size_t i = 0; i < count; i++)
        values[i] = bn_round(dtype, init->value);
      break;
    case BNORM_INIT_RANDOM_NORMAL:
    case BNORM_INIT_TRUNCATED_NORMAL: {
      bool truncate = init->kind == BNORM_INIT_TRUNCATED_NORMAL;
      for (size_t i = 0; i < count; i++) {
        double z = normal_draw(seed, (uint64_t)i, truncate);
        values[i] = bn_round(dtype, z * init->stddev + init->mean);
      }
      break;
    }
    case BNORM_INIT_RANDOM_UNIFORM: {
      double span = init->maxval - init->minval;
      double high = bn_round(dtype, init->maxval);
      double low = bn_round(dtype, init->minval);
      for (size_t i = 0; i < count; i++) {
        uint32_t w[4];
        draw(seed, (uint64_t)i, 0, w);
        double v = bn_round(dtype, init->minval + unit_double(w[0], w[1]) * span);
        /* Rounding can reach maxval; Keras' range is half-open. */
        if (span > 0 && v >= high && v > low)
          v = dtype == BNORM_FLOAT64 ? nextafter(high, low)
                                     : (double)nextafterf((float)high, (float)low);
        values[i] = v;
      }
      break;
    }
    case BNORM_INIT_CALLBACK: {
      int rc = init->fn(values, count, shape, rank, init->user_data);
      if (rc != 0)
        return bn_fail(BNORM_ERR_CALLBACK,
                       "%s: the initializer callback%s%s%s returned %d",
                       what, init->name ? " '" : "",
                       init->name ? init->name : "", init->name ? "'" : "",
                       rc);
      for (size_t i = 0; i < count; i++) values[i] = bn_round(dtype, values[i]);
      break;
    }
  }
  return BNORM_OK;
}
