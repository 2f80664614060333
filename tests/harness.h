/* Minimal test harness: every test program ends by printing
 * "N passed, N failed" and returns non-zero if anything failed. */
#ifndef BNORM_TEST_HARNESS_H
#define BNORM_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Atomic: tests may check from several threads at once. */
extern _Atomic int th_passed, th_failed;

/* Records one check; prints the location and message when it fails. */
bool th_check(bool ok, const char *file, int line, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
#define CHECK(cond) th_check((cond), __FILE__, __LINE__, "%s", #cond)
#define CHECKF(cond, ...) th_check((cond), __FILE__, __LINE__, __VA_ARGS__)
/* Checks a bnorm call returned `expected`; prints bnorm_last_error() if not. */
#define CHECK_STATUS(call, expected) th_check_status((call), (expected), __FILE__, __LINE__, #call)
#define CHECK_OK(call) CHECK_STATUS(call, BNORM_OK)
bool th_check_status(int got, int expected, const char *file, int line, const char *what);

/* |got - want| <= atol + rtol * |want| elementwise; reports the worst index.
 * `got` holds doubles when got_is_double, else floats. */
bool th_close_typed(const void *got, bool got_is_double, const double *want, size_t n,
                    double rtol, double atol, const char *file, int line, const char *what);
static inline bool th_close(const float *got, const double *want, size_t n, double rtol,
                            double atol, const char *file, int line, const char *what) {
  return th_close_typed(got, false, want, n, rtol, atol, file, line, what);
}
static inline bool th_close64(const double *got, const double *want, size_t n, double rtol,
                              double atol, const char *file, int line, const char *what) {
  return th_close_typed(got, true, want, n, rtol, atol, file, line, what);
}
#define CHECK_CLOSE(got, want, n, rtol, atol) th_close((got), (want), (n), (rtol), (atol), __FILE__, __LINE__, #got)

/* Deterministic test data. */
void th_seed(uint64_t seed);
double th_uniform(void);          /* [0, 1) */
double th_normal(void);           /* N(0, 1) */
void th_fill_normal(float *x, size_t n, double mean, double stddev);

/* Prints the summary line and returns the process exit code. */
int th_finish(void);

#endif
