/* The float operators of ops.h. */
#include "ops_cut.h"

#include <math.h>
#include <string.h>

#include "threads.h"

/* One build carries AVX-512, AVX2 and baseline versions of each kernel; the
 * loader picks one for this CPU. */
#if defined(__x86_64__) && defined(__GNUC__) && defined(__linux__)
#define BN_KERNEL                                                              \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define BN_KERNEL
#endif

#define BN_T float
#define BN_OP(name) name
#include "ops_kernels.inc"
