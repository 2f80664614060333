/* What the tests that hold the library to the fp64 reference share: the
 * reference configuration as a bnorm_config, random variable values, a
 * test-controlled adjustment callback and small helpers. */
#ifndef BNORM_TEST_REF_BRIDGE_H
#define BNORM_TEST_REF_BRIDGE_H

#include <bnorm.h>

#include "reference.h"

/* bnorm_config with the same meaning as the reference configuration. */
void ref_to_bnorm_config(bnorm_config *out, const ref_config *in);

/* Random values for every variable of `ref`, in get_weights() order
 * (positive variances and standard deviations). Caller frees. */
float *ref_random_weights(const ref_layer *ref);

/* An adjustment that hands out the test's arrays and records its calls.
 * Fails (returns 1) when asked for another channel count. */
typedef struct adj_ctx {
  float *scale, *bias;
  size_t channels;
  int calls;
  int64_t shape[BNORM_MAX_RANK];
  int rank;
  bool bad_channels;
} adj_ctx;
int adj_cb(const int64_t *shape, int rank, double *scale, double *bias,
           size_t channels, void *user_data);

/* One forward call of the library with the given mode and pending list. */
bnorm_status lib_forward(bnorm_layer *bn, const float *x, float *y,
                         const int64_t *shape, int rank, bool training,
                         bnorm_updates *pending);

/* A random configuration and first call for sweeps: any behaviour, rank 1
 * to 5, single/negative/multi axes, ghost batches, renorm with clipping
 * keys, adjustment, fused choices (a third of the cases fused-eligible). */
typedef struct ref_sweep_case {
  ref_config rc;
  int rank;
  int64_t shape[BNORM_MAX_RANK];       /* first call's shape */
  int64_t build_shape[BNORM_MAX_RANK]; /* batch may be -1 */
  bool batch_normalized;
} ref_sweep_case;
void ref_random_case(ref_sweep_case *sc);
/* Batch size for a later call of the case (any size its rules allow). */
int64_t ref_next_batch(const ref_sweep_case *sc, bool training);

double *to_double(const float *x, size_t n); /* caller frees */
double *dmalloc(size_t n);                   /* zeroed, never size 0 */
float *fmalloc(size_t n);                    /* zeroed, never size 0 */
int rand_int(int lo, int hi);                /* inclusive, harness RNG */

#endif
