/* The double operators of ops.h, for float64 layers. */
#include "ops_cut.h"

#include <math.h>
#include <string.h>

#include "threads.h"

#if defined(__x86_64__) && defined(__GNUC__) && defined(__linux__)
#define BN_KERNEL                                                              \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define BN_KERNEL
#endif

#define BN_T double
#define BN_OP(name) name##_f64
#include "ops_kernels.inc"
