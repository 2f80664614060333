#include "harness.h"

#include <bnorm.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>

_Atomic int th_passed, th_failed;

bool th_check(bool ok, const char *file, int line, const char *fmt, ...) {
  if (ok) {
    th_passed++;
    return true;
  }
  th_failed++;
  fprintf(stderr, "FAIL %s:%d: ", file, line);
  va_list args;
  va_start(args, fmt);
  vfprintf(stderr, fmt, args);
  va_end(args);
  fputc('\n', stderr);
  return false;
}

bool th_check_status(int got, int expected, const char *file, int line, const char *what) {
  return th_check(got == expected, file, line, "%s returned %s, expected %s (message: %s)", what,
                  bnorm_status_name((bnorm_status)got), bnorm_status_name((bnorm_status)expected),
                  bnorm_last_error());
}

static double element(const void *array, bool is_double, size_t i) {
  return is_double ? ((const double *)array)[i] : (double)((const float *)array)[i];
}

bool th_close_typed(const void *got, bool got_is_double, const double *want, size_t n,
                    double rtol, double atol, const char *file, int line, const char *what) {
  size_t worst = 0;
  double worst_excess = 0.0;
  bool ok = true;
  for (size_t i = 0; i < n; i++) {
    double err = fabs(element(got, got_is_double, i) - want[i]);
    double allowed = atol + rtol * fabs(want[i]);
    if (!(err <= allowed)) { /* also catches NaN */
      double excess = isnan(err) ? INFINITY : err - allowed;
      if (ok || excess > worst_excess) {
        worst = i;
        worst_excess = excess;
      }
      ok = false;
    }
  }
  if (!ok)
    return th_check(false, file, line, "%s: element %zu is %.9g, expected %.9g (rtol %g, atol %g)",
                    what, worst, element(got, got_is_double, worst), want[worst], rtol, atol);
  return th_check(true, file, line, "%s", what);
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

void th_seed(uint64_t seed) { rng_state = seed * 0x9E3779B97F4A7C15ull + 1; }

static uint64_t next_u64(void) { /* splitmix64 */
  uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

double th_uniform(void) { return (double)(next_u64() >> 11) * 0x1.0p-53; }

double th_normal(void) {
  double u1 = th_uniform(), u2 = th_uniform();
  if (u1 < 1e-300) u1 = 1e-300;
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void th_fill_normal(float *x, size_t n, double mean, double stddev) {
  for (size_t i = 0; i < n; i++) x[i] = (float)(mean + stddev * th_normal());
}

int th_finish(void) {
  printf("%d passed, %d failed\n", th_passed, th_failed);
  return th_failed == 0 ? 0 : 1;
}
