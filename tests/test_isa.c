/* The instruction-set cap: $BNORM_MAX_ISA and bnorm_set_max_isa lower the
 * level, never raise it above what the CPU runs; bad values are refused.
 * Whether each level computes correctly is the whole suite's job: ctest
 * runs it once per level (tests/CMakeLists.txt). */
#include <bnorm.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* The best level this CPU and OS run, as the compiler's runtime sees it. */
static bnorm_isa cpu_best(void) {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") &&
      __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma"))
    return BNORM_ISA_AVX512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    return BNORM_ISA_AVX2;
#endif
  return BNORM_ISA_SCALAR;
}

static bnorm_isa lower(bnorm_isa a, bnorm_isa b) { return a < b ? a : b; }

/* The first level the process sees follows $BNORM_MAX_ISA; a name that is
 * not a level caps nothing. */
static void test_environment(bnorm_isa best) {
  const char *env = getenv("BNORM_MAX_ISA");
  bnorm_isa cap = BNORM_ISA_AVX512;
  for (int i = BNORM_ISA_SCALAR; i <= BNORM_ISA_AVX512; i++)
    if (env && strcmp(env, bnorm_isa_name((bnorm_isa)i)) == 0)
      cap = (bnorm_isa)i;
  CHECKF(bnorm_get_isa() == lower(cap, best),
         "BNORM_MAX_ISA=%s: level %s, expected %s", env ? env : "(unset)",
         bnorm_isa_name(bnorm_get_isa()), bnorm_isa_name(lower(cap, best)));
}

static void test_cap(bnorm_isa best) {
  for (int i = BNORM_ISA_AVX512; i >= BNORM_ISA_SCALAR; i--) {
    CHECK_OK(bnorm_set_max_isa((bnorm_isa)i));
    CHECKF(bnorm_get_isa() == lower((bnorm_isa)i, best), "cap %s: level %s",
           bnorm_isa_name((bnorm_isa)i), bnorm_isa_name(bnorm_get_isa()));
  }
  /* Raising the cap again restores the CPU's best. */
  CHECK_OK(bnorm_set_max_isa(BNORM_ISA_AVX512));
  CHECK(bnorm_get_isa() == best);
}

static void test_invalid(void) {
  CHECK_OK(bnorm_set_max_isa(BNORM_ISA_SCALAR));
  CHECK_STATUS(bnorm_set_max_isa((bnorm_isa)3), BNORM_ERR_INVALID_ARGUMENT);
  CHECK(bnorm_last_error()[0] != '\0');
  CHECK_STATUS(bnorm_set_max_isa((bnorm_isa)-1), BNORM_ERR_INVALID_ARGUMENT);
  /* A refused call changes nothing. */
  CHECK(bnorm_get_isa() == BNORM_ISA_SCALAR);
}

static void test_names(void) {
  CHECK(strcmp(bnorm_isa_name(BNORM_ISA_SCALAR), "scalar") == 0);
  CHECK(strcmp(bnorm_isa_name(BNORM_ISA_AVX2), "avx2") == 0);
  CHECK(strcmp(bnorm_isa_name(BNORM_ISA_AVX512), "avx512") == 0);
  CHECK(strcmp(bnorm_isa_name((bnorm_isa)7), "unknown") == 0);
}

int main(void) {
  bnorm_isa best = cpu_best();
  test_environment(best);
  test_cap(best);
  test_invalid();
  test_names();
  return th_finish();
}
