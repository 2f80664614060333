/* The double operators of ops.h, for float64 layers. */
#include "ops_cut.h"

#include <math.h>
#include <string.h>

#include "internal.h"
#include "threads.h"

#define BN_KERNEL BN_VECTORIZED

#define BN_T double
#define BN_OP(name) name##_f64
#include "ops_kernels.inc"
