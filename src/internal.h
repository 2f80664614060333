/* Internal declarations shared by the library's source files. Not installed. */
#ifndef BNORM_INTERNAL_H
#define BNORM_INTERNAL_H

#include "bnorm.h"

#include <stdarg.h>
#include <string.h>

#if defined(__GNUC__)
#define BN_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define BN_PRINTF(fmt, args)
#endif

/* ---- errors (status.c) ---- */

/* Records a message for bnorm_last_error() and returns `status`. */
bnorm_status bn_fail(bnorm_status status, const char *format, ...)
    BN_PRINTF(2, 3);
/* Clears the thread's message (called by entry points that succeed). */
void bn_clear_error(void);

/* BNORM_ERR_INVALID_CONFIG naming "<what>: <kind> <param>" unless `value`
 * is finite (e.g. what="gamma_initializer", kind="RandomNormal"). */
bnorm_status bn_check_finite(double value, const char *what, const char *kind,
                             const char *param);

/* ---- overflow-checked size arithmetic ---- */

/* *out = a * b; returns false (and leaves *out alone) on overflow. */
static inline bool bn_mul_size(size_t a, size_t b, size_t *out) {
  if (a != 0 && b > SIZE_MAX / a) return false;
  *out = a * b;
  return true;
}

/* Product of shape[0..rank) into *count; BNORM_ERR_SHAPE for a negative size,
 * BNORM_ERR_OVERFLOW if the element count or its byte size overflows. `what`
 * names the tensor in the message. */
bnorm_status bn_shape_count(const int64_t *shape, int rank, const char *what,
                            size_t *count);

/* ---- element types ---- */

static inline size_t bn_dtype_size(bnorm_dtype dtype) {
  return dtype == BNORM_FLOAT64 ? sizeof(double) : sizeof(float);
}

/* Element i of an array of `dtype`, as a double. */
static inline double bn_load(const void *array, bnorm_dtype dtype, size_t i) {
  return dtype == BNORM_FLOAT64 ? ((const double *)array)[i]
                                : (double)((const float *)array)[i];
}

static inline void bn_store(void *array, bnorm_dtype dtype, size_t i,
                            double value) {
  if (dtype == BNORM_FLOAT64)
    ((double *)array)[i] = value;
  else
    ((float *)array)[i] = (float)value;
}

/* `value` rounded to `dtype`. Per-channel math is written once in double and
 * rounds each operation's result with this: for float32 that is exactly
 * float32 arithmetic, because double carries more than 2*24+2 bits, enough
 * for + - * / and sqrt of float32 operands to round once to the float32
 * result. */
static inline double bn_round(bnorm_dtype dtype, double value) {
  return dtype == BNORM_FLOAT64 ? value : (double)(float)value;
}

/* ---- initializers, regularizers, constraints (initializers.c,
 *      regularizers.c, constraints.c) ---- */

/* Checks an initializer's parameters; `what` names it ("gamma_initializer"). */
bnorm_status bn_initializer_validate(const bnorm_initializer *init,
                                     const char *what);
/* Fills values[0..count) of a variable of `shape`, rounded to `dtype`.
 * Random kinds without a seed use `fallback_seed`. Fails only when a
 * callback fails. */
bnorm_status bn_initializer_fill(const bnorm_initializer *init,
                                 bnorm_dtype dtype, double *values,
                                 size_t count, const int64_t *shape, int rank,
                                 uint64_t fallback_seed, const char *what);

bnorm_status bn_regularizer_validate(const bnorm_regularizer *reg,
                                     const char *what);
/* Loss of `weight` (values of `dtype`); when gradient != NULL its derivative
 * is ADDED there, rounded to `dtype`. */
bnorm_status bn_regularizer_apply(const bnorm_regularizer *reg,
                                  bnorm_dtype dtype, const double *weight,
                                  size_t count, double *loss, double *gradient,
                                  const char *what);

bnorm_status bn_constraint_validate(const bnorm_constraint *c,
                                    const char *what);
/* Projects weight[0..count) (row-major `shape`, values of `dtype`) in place,
 * in `dtype` arithmetic; on failure the weight is unchanged. */
bnorm_status bn_constraint_apply(const bnorm_constraint *c, bnorm_dtype dtype,
                                 double *weight,
                                 size_t count, const int64_t *shape, int rank,
                                 const char *what);

/* ---- growable scratch memory (scratch.c) ---- */

typedef struct bn_scratch {
  void *data;
  size_t bytes;
} bn_scratch;

/* Ensures `bytes` of scratch (64-byte aligned); NULL on failure, keeping the
 * old block. Contents are not preserved across growth. */
void *bn_scratch_reserve(bn_scratch *scratch, size_t bytes);
void bn_scratch_free(bn_scratch *scratch);

/* ---- the layer (layer.c) ---- */

enum { BN_VAR_GAMMA, BN_VAR_BETA, BN_VAR_MOVING_MEAN, BN_VAR_MOVING_VARIANCE,
       BN_VAR_MOVING_STDDEV, BN_VAR_RENORM_MEAN, BN_VAR_RENORM_STDDEV,
       BN_VAR_KINDS };

typedef struct bn_variable {
  int kind;                      /* BN_VAR_* */
  char full_name[BNORM_MAX_NAME + 32];
  bool trainable;
  void *data;                    /* `channels` elements of the dtype */
} bn_variable;

struct bnorm_layer {
  bnorm_config config;  /* axis rewritten at build as Keras does */
  char name[BNORM_MAX_NAME + 1];
  uint64_t id;          /* identifies the layer's pending updates */
  bool built;
  bool fused;
  bnorm_dtype dtype;    /* config.dtype */
  double epsilon;       /* epsilon in the dtype, as the math uses it (floor
                           applied) */
  /* Input as built; -1 = unknown size. */
  int rank;
  int64_t build_shape[BNORM_MAX_RANK];
  bool normalized[BNORM_MAX_RANK]; /* per input axis (unshifted) */
  size_t channels;
  int64_t param_shape[BNORM_MAX_RANK + 1];
  int param_rank;
  size_t variable_count;
  bn_variable variables[BN_VAR_KINDS]; /* in get_weights() order */
  bn_variable *by_kind[BN_VAR_KINDS];  /* NULL when absent */
  void *storage;
  bn_scratch scratch;   /* forward-pass workspace, reused across calls */
};

/* The variable of a kind, or NULL. */
static inline void *bn_var(const bnorm_layer *layer, int kind) {
  return layer->by_kind[kind] ? layer->by_kind[kind]->data : NULL;
}

/* Compiled again for AVX2 and AVX-512, chosen when the program loads: for
 * the per-channel loops of the layer, which dominate calls on tensors of
 * few elements per channel, and for the float64 kernels. The library is
 * built with -std=c11, so no clone contracts a * b + c into an FMA and all
 * round alike. */
/* ThreadSanitizer's runtime is not up yet when the clones' resolvers run
 * at load time. */
#if defined(__x86_64__) && defined(__GNUC__) && defined(__linux__) &&       \
    !defined(__SANITIZE_THREAD__)
#define BN_VECTORIZED                                                         \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define BN_VECTORIZED
#endif

/* A variable's values as doubles, out[0..channels), or `fallback` in each
 * when the layer has none. One loop per dtype, so that it vectorizes: the
 * per-channel work of a call on a tensor of few elements per channel costs
 * as much as its kernels. */
static inline void bn_var_doubles(const bnorm_layer *layer, int kind,
                                  double fallback, double *out) {
  const void *data = bn_var(layer, kind);
  size_t n = layer->channels;
  if (!data) {
    for (size_t i = 0; i < n; i++) out[i] = fallback;
  } else if (layer->dtype == BNORM_FLOAT64) {
    memcpy(out, data, n * sizeof *out);
  } else {
    const float *f = data;
    for (size_t i = 0; i < n; i++) out[i] = f[i];
  }
}

/* Element i of a variable as a double; `fallback` when the layer has none
 * (gamma 1 without scale, beta 0 without center). */
static inline double bn_var_at(const bnorm_layer *layer, int kind, size_t i,
                               double fallback) {
  const void *data = bn_var(layer, kind);
  return data ? bn_load(data, layer->dtype, i) : fallback;
}

#endif
