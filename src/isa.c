/* Which instruction set the float kernels use: the best this CPU and its
 * operating system support, capped by $BNORM_MAX_ISA and
 * bnorm_set_max_isa. */
#include "internal.h"
#include "ops_isa.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static bnorm_isa cpu_isa;     /* the best level this machine runs */
static bnorm_isa current_isa; /* min(cap, cpu_isa) */
static const bn_float_ops *current_ops = &bn_float_ops_scalar;

#ifdef BN_HAVE_X86_KERNELS
#include <cpuid.h>

/* The AVX state (ymm, and for AVX-512 opmask and zmm) must be enabled by the
 * OS in XCR0, not only present in the CPU. */
static unsigned long long xcr0(void) {
  unsigned int lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return ((unsigned long long)hi << 32) | lo;
}

static bnorm_isa detect_cpu(void) {
  unsigned int a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return BNORM_ISA_SCALAR;
  bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28);
  if (!(fma && osxsave && avx)) return BNORM_ISA_SCALAR;
  unsigned long long xcr = xcr0();
  if ((xcr & 0x6) != 0x6) return BNORM_ISA_SCALAR; /* xmm, ymm */
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return BNORM_ISA_SCALAR;
  bool avx2 = b & (1u << 5);
  if (!avx2) return BNORM_ISA_SCALAR;
  bool avx512 = (b & (1u << 16)) && (b & (1u << 17)) && (b & (1u << 30)) &&
                (b & (1u << 31)); /* F, DQ, BW, VL */
  if (avx512 && (xcr & 0xe6) == 0xe6) return BNORM_ISA_AVX512;
  return BNORM_ISA_AVX2;
}

static const bn_float_ops *ops_of(bnorm_isa isa) {
  switch (isa) {
  case BNORM_ISA_AVX512: return &bn_float_ops_avx512;
  case BNORM_ISA_AVX2: return &bn_float_ops_avx2;
  default: return &bn_float_ops_scalar;
  }
}
#else
static bnorm_isa detect_cpu(void) { return BNORM_ISA_SCALAR; }
static const bn_float_ops *ops_of(bnorm_isa isa) {
  (void)isa;
  return &bn_float_ops_scalar;
}
#endif

static void apply_cap(bnorm_isa cap) {
  current_isa = cap < cpu_isa ? cap : cpu_isa;
  current_ops = ops_of(current_isa);
}

static void init(void) {
  cpu_isa = detect_cpu();
  bnorm_isa cap = BNORM_ISA_AVX512;
  const char *env = getenv("BNORM_MAX_ISA");
  /* An unknown name leaves no cap: the variable can only lower the level. */
  if (env)
    for (int i = BNORM_ISA_SCALAR; i <= BNORM_ISA_AVX512; i++)
      if (strcmp(env, bnorm_isa_name((bnorm_isa)i)) == 0) cap = (bnorm_isa)i;
  apply_cap(cap);
}

const bn_float_ops *bn_float_ops_current(void) {
  pthread_once(&init_once, init);
  return current_ops;
}

bnorm_status bnorm_set_max_isa(bnorm_isa isa) {
  if ((int)isa < BNORM_ISA_SCALAR || (int)isa > BNORM_ISA_AVX512)
    return bn_fail(BNORM_ERR_INVALID_ARGUMENT,
                   "bnorm_set_max_isa: %d is not a bnorm_isa (0 scalar, 1 "
                   "avx2, 2 avx512)",
                   (int)isa);
  pthread_once(&init_once, init);
  apply_cap(isa);
  bn_clear_error();
  return BNORM_OK;
}

bnorm_isa bnorm_get_isa(void) {
  pthread_once(&init_once, init);
  return current_isa;
}

const char *bnorm_isa_name(bnorm_isa isa) {
  switch (isa) {
  case BNORM_ISA_SCALAR: return "scalar";
  case BNORM_ISA_AVX2: return "avx2";
  case BNORM_ISA_AVX512: return "avx512";
  }
  return "unknown";
}
