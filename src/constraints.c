/* Weight constraints, with tf_keras.constraints' formulas in the weight's
 * dtype (float32 results rounded after each operation, see bn_round):
 *   NonNeg:     w * cast(w >= 0)
 *   UnitNorm:   w / (epsilon + sqrt(sum(w^2, axis)))
 *   MaxNorm:    w * (clip(norms, 0, max_value) / (epsilon + norms))
 *   MinMaxNorm: w * ((rate * clip(norms, min, max) + (1 - rate) * norms)
 *                    / (epsilon + norms))
 * with epsilon = backend.epsilon() = 1e-7 and norms kept per slice along the
 * non-reduced axes (keepdims). Sums of squares run in double from exact
 * products, then are rounded to the dtype as TF's norms are. */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* backend.epsilon(), a Python float: rounded to the weight's dtype where it
 * meets it. */
#define KERAS_EPSILON 1e-7

static bool uses_axes(bnorm_constraint_kind kind) {
  return kind == BNORM_CONSTRAINT_UNIT_NORM ||
         kind == BNORM_CONSTRAINT_MAX_NORM ||
         kind == BNORM_CONSTRAINT_MIN_MAX_NORM;
}

bnorm_status bn_constraint_validate(const bnorm_constraint *c,
                                    const char *what) {
  bnorm_status s = BNORM_OK;
  switch (c->kind) {
    case BNORM_CONSTRAINT_NONE:
    case BNORM_CONSTRAINT_NON_NEG:
    case BNORM_CONSTRAINT_UNIT_NORM:
      break;
    case BNORM_CONSTRAINT_MAX_NORM:
      s = bn_check_finite(c->max_value, what, "MaxNorm", "max_value");
      break;
    case BNORM_CONSTRAINT_MIN_MAX_NORM:
      s = bn_check_finite(c->min_value, what, "MinMaxNorm", "min_value");
      if (s == BNORM_OK)
        s = bn_check_finite(c->max_value, what, "MinMaxNorm", "max_value");
      if (s == BNORM_OK) s = bn_check_finite(c->rate, what, "MinMaxNorm", "rate");
      break;
    case BNORM_CONSTRAINT_CALLBACK:
      if (!c->fn)
        return bn_fail(BNORM_ERR_INVALID_CONFIG,
                       "%s: kind is BNORM_CONSTRAINT_CALLBACK but fn is NULL",
                       what);
      break;
    default:
      return bn_fail(BNORM_ERR_INVALID_CONFIG,
                     "%s: kind %d is not a bnorm_constraint_kind (0 to %d)",
                     what, (int)c->kind, (int)BNORM_CONSTRAINT_CALLBACK);
  }
  if (s != BNORM_OK || !uses_axes(c->kind)) return s;
  if (c->axis_count < 1 || c->axis_count > BNORM_MAX_RANK + 1)
    return bn_fail(BNORM_ERR_INVALID_CONFIG,
                   "%s: axis_count %d is not allowed; a norm constraint needs "
                   "1 to %d axes",
                   what, c->axis_count, BNORM_MAX_RANK + 1);
  for (int i = 0; i < c->axis_count; i++) {
    if (c->axis[i] < -(BNORM_MAX_RANK + 1) || c->axis[i] > BNORM_MAX_RANK)
      return bn_fail(BNORM_ERR_INVALID_CONFIG,
                     "%s: axis %d is outside -%d..%d (weights have rank <= %d)",
                     what, c->axis[i], BNORM_MAX_RANK + 1, BNORM_MAX_RANK,
                     BNORM_MAX_RANK + 1);
    for (int j = 0; j < i; j++)
      if (c->axis[j] == c->axis[i])
        return bn_fail(BNORM_ERR_INVALID_CONFIG,
                       "%s: axis %d is listed twice (TensorFlow's reduce_sum "
                       "rejects duplicate axes)",
                       what, c->axis[i]);
  }
  return BNORM_OK;
}

/* Resolves the constraint's axes against the weight's shape and checks that
 * the shape describes `count` elements. */
static bnorm_status resolve_axes(const bnorm_constraint *c, size_t count,
                                 const int64_t *shape, int rank,
                                 bool reduced[BNORM_MAX_RANK + 1],
                                 const char *what) {
  if (rank < 0 || rank > BNORM_MAX_RANK + 1)
    return bn_fail(BNORM_ERR_SHAPE, "%s: weight rank %d is outside 0..%d", what,
                   rank, BNORM_MAX_RANK + 1);
  if (rank > 0 && !shape)
    return bn_fail(BNORM_ERR_NULL_ARGUMENT, "%s: weight shape is NULL", what);
  size_t elements;
  bnorm_status s = bn_shape_count(shape, rank, what, &elements);
  if (s != BNORM_OK) return s;
  if (elements != count)
    return bn_fail(BNORM_ERR_SHAPE,
                   "%s: the weight's shape holds %zu elements but count is %zu",
                   what, elements, count);
  for (int d = 0; d < rank; d++) reduced[d] = false;
  for (int i = 0; i < c->axis_count; i++) {
    int a = c->axis[i] < 0 ? c->axis[i] + rank : c->axis[i];
    if (a < 0 || a >= rank)
      return bn_fail(BNORM_ERR_SHAPE,
                     "%s: axis %d is out of range for a weight of rank %d "
                     "(allowed: -%d..%d)",
                     what, c->axis[i], rank, rank, rank - 1);
    if (reduced[a])
      return bn_fail(BNORM_ERR_SHAPE,
                     "%s: axes resolve to dimension %d twice for a weight of "
                     "rank %d",
                     what, a, rank);
    reduced[a] = true;
  }
  return BNORM_OK;
}

/* Visits the weight in row-major order, giving each element the index of its
 * norm slice (the row-major index over the non-reduced dimensions). */
typedef struct slice_walk {
  int rank;
  int64_t shape[BNORM_MAX_RANK + 1];
  int64_t index[BNORM_MAX_RANK + 1];
  size_t slice_stride[BNORM_MAX_RANK + 1]; /* 0 on reduced dimensions */
  size_t slice;
} slice_walk;

static size_t slice_walk_init(slice_walk *walk, const int64_t *shape, int rank,
                              const bool *reduced) {
  walk->rank = rank;
  walk->slice = 0;
  size_t slices = 1;
  for (int d = rank - 1; d >= 0; d--) {
    walk->shape[d] = shape[d];
    walk->index[d] = 0;
    walk->slice_stride[d] = reduced[d] ? 0 : slices;
    if (!reduced[d]) slices *= (size_t)shape[d];
  }
  return slices;
}

static void slice_walk_next(slice_walk *walk) {
  for (int d = walk->rank - 1; d >= 0; d--) {
    walk->index[d]++;
    walk->slice += walk->slice_stride[d];
    if (walk->index[d] < walk->shape[d]) return;
    walk->slice -= walk->slice_stride[d] * (size_t)walk->shape[d];
    walk->index[d] = 0;
  }
}

/* The factor each slice's elements are multiplied by (UnitNorm divides, which
 * rounds differently, so it is handled by the caller). */
static double norm_factor(const bnorm_constraint *c, bnorm_dtype dtype,
                          double norm) {
  double denominator = bn_round(dtype, bn_round(dtype, KERAS_EPSILON) + norm);
  double desired;
  if (c->kind == BNORM_CONSTRAINT_MAX_NORM) {
    /* backend.clip raises max_value to min_value (0) when it is below. */
    double high = c->max_value < 0 ? 0.0 : bn_round(dtype, c->max_value);
    desired = fmin(fmax(norm, 0.0), high);
  } else {
    double low = bn_round(dtype, c->min_value);
    double high =
        c->max_value < c->min_value ? low : bn_round(dtype, c->max_value);
    double clipped = fmin(fmax(norm, low), high);
    double rate = bn_round(dtype, c->rate);
    double keep = bn_round(dtype, 1.0 - c->rate);
    desired = bn_round(dtype, bn_round(dtype, rate * clipped) +
                                  bn_round(dtype, keep * norm));
  }
  return bn_round(dtype, desired / denominator);
}

static bnorm_status apply_norm(const bnorm_constraint *c, bnorm_dtype dtype,
                               double *weight, size_t count,
                               const int64_t *shape, int rank,
                               const char *what) {
  bool reduced[BNORM_MAX_RANK + 1];
  bnorm_status s = resolve_axes(c, count, shape, rank, reduced, what);
  if (s != BNORM_OK) return s;
  if (count == 0) return BNORM_OK;
  slice_walk walk;
  size_t slices = slice_walk_init(&walk, shape, rank, reduced);
  /* Sums of squares, then each slice's factor, in place. */
  double *factors = calloc(slices, sizeof *factors);
  if (!factors)
    return bn_fail(BNORM_ERR_OUT_OF_MEMORY,
                   "%s: out of memory for %zu norms", what, slices);
  for (size_t i = 0; i < count; i++) {
    factors[walk.slice] += weight[i] * weight[i];
    slice_walk_next(&walk);
  }
  for (size_t k = 0; k < slices; k++) {
    double norm = bn_round(dtype, sqrt(bn_round(dtype, factors[k])));
    factors[k] = c->kind == BNORM_CONSTRAINT_UNIT_NORM
                     ? bn_round(dtype, bn_round(dtype, KERAS_EPSILON) + norm)
                     : norm_factor(c, dtype, norm);
  }
  /* Nothing can fail from here on, so the weight is only written now. */
  slice_walk_init(&walk, shape, rank, reduced);
  for (size_t i = 0; i < count; i++) {
    if (c->kind == BNORM_CONSTRAINT_UNIT_NORM)
      weight[i] = bn_round(dtype, weight[i] / factors[walk.slice]);
    else
      weight[i] = bn_round(dtype, weight[i] * factors[walk.slice]);
    slice_walk_next(&walk);
  }
  free(factors);
  return BNORM_OK;
}

bnorm_status bn_constraint_apply(const bnorm_constraint *c, bnorm_dtype dtype,
                                 double *weight, size_t count,
                                 const int64_t *shape, int rank,
                                 const char *what) {
  bnorm_status s = bn_constraint_validate(c, what);
  if (s != BNORM_OK) return s;
  switch (c->kind) {
    case BNORM_CONSTRAINT_NONE:
      return BNORM_OK;
    case BNORM_CONSTRAINT_NON_NEG:
      /* w * 0 rather than 0, as Keras: -inf becomes NaN, NaN stays NaN. */
      for (size_t i = 0; i < count; i++)
        weight[i] = weight[i] * (weight[i] >= 0.0 ? 1.0 : 0.0);
      return BNORM_OK;
    case BNORM_CONSTRAINT_UNIT_NORM:
    case BNORM_CONSTRAINT_MAX_NORM:
    case BNORM_CONSTRAINT_MIN_MAX_NORM:
      return apply_norm(c, dtype, weight, count, shape, rank, what);
    case BNORM_CONSTRAINT_CALLBACK: {
      /* The callback works on a copy so that a failure leaves the weight as
       * it was. */
      double *copy = malloc(count ? count * sizeof *copy : 1);
      if (!copy)
        return bn_fail(BNORM_ERR_OUT_OF_MEMORY,
                       "%s: out of memory copying %zu weights", what, count);
      if (count) memcpy(copy, weight, count * sizeof *copy);
      int rc = c->fn(copy, count, shape, rank, c->user_data);
      if (rc != 0) {
        free(copy);
        return bn_fail(BNORM_ERR_CALLBACK,
                       "%s: the constraint callback%s%s%s returned %d", what,
                       c->name ? " '" : "", c->name ? c->name : "",
                       c->name ? "'" : "", rc);
      }
      for (size_t i = 0; i < count; i++) weight[i] = bn_round(dtype, copy[i]);
      free(copy);
      return BNORM_OK;
    }
  }
  return BNORM_OK;
}
