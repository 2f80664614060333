/* Weight regularizers, as tf_keras.regularizers computes them:
 *   L1:   l1 * reduce_sum(abs(w))
 *   L2:   2 * l2 * l2_loss(w),  l2_loss(w) = sum(w^2) / 2
 *   L1L2: 0 + (l1 * sum|w| if l1) + (2 * l2 * l2_loss(w) if l2)
 * Keras casts the coefficients to float32 (backend.cast_to_floatx) in the
 * constructor, so the factor applied is (float)l1, not l1; L1L2 skips a term
 * whose float32 coefficient is 0 (which matters for inf weights, 0 * inf).
 * The sums run in double, so the loss is at least as accurate as TF's
 * float32 reduction, whose summation order we do not reproduce. */
#include "internal.h"

#include <float.h>
#include <math.h>

/* tf_keras' _check_penalty_number; the float32 range check is bnorm's,
 * because the cast would otherwise turn the coefficient into inf. */
static bnorm_status check_penalty_number(double value, const char *what,
                                         const char *kind, const char *param) {
  if (isinf(value) || isnan(value))
    return bn_fail(BNORM_ERR_INVALID_CONFIG,
                   "%s: %s %s: Value %g is not a valid regularization penalty "
                   "number, an infinite number or NaN are not valid values.",
                   what, kind, param, value);
  if (fabs(value) > FLT_MAX)
    return bn_fail(BNORM_ERR_INVALID_CONFIG,
                   "%s: %s %s: Value %g is outside the float32 range Keras "
                   "casts penalties to (|value| <= %g)",
                   what, kind, param, value, (double)FLT_MAX);
  return BNORM_OK;
}

bnorm_status bn_regularizer_validate(const bnorm_regularizer *reg,
                                     const char *what) {
  bnorm_status s;
  switch (reg->kind) {
    case BNORM_REG_NONE:
      return BNORM_OK;
    case BNORM_REG_L1:
      return check_penalty_number(reg->l1, what, "L1", "l1");
    case BNORM_REG_L2:
      return check_penalty_number(reg->l2, what, "L2", "l2");
    case BNORM_REG_L1L2:
      s = check_penalty_number(reg->l1, what, "L1L2", "l1");
      if (s == BNORM_OK) s = check_penalty_number(reg->l2, what, "L1L2", "l2");
      return s;
    case BNORM_REG_CALLBACK:
      if (!reg->fn)
        return bn_fail(BNORM_ERR_INVALID_CONFIG,
                       "%s: kind is BNORM_REG_CALLBACK but fn is NULL", what);
      return BNORM_OK;
  }
  return bn_fail(BNORM_ERR_INVALID_CONFIG,
                 "%s: kind %d is not a bnorm_regularizer_kind (0 to %d)", what,
                 (int)reg->kind, (int)BNORM_REG_CALLBACK);
}

/* tf.sign: -1, 0 or 1, and NaN for NaN. */
static double sign_of(double w) {
  if (w > 0.0) return 1.0;
  if (w < 0.0) return -1.0;
  return w;
}

static double l1_term(bnorm_dtype dtype, double l1, const double *w,
                      size_t count, double *gradient) {
  double sum = 0.0;
  for (size_t i = 0; i < count; i++) sum += fabs(w[i]);
  if (gradient)
    for (size_t i = 0; i < count; i++)
      gradient[i] = bn_round(dtype, gradient[i] + l1 * sign_of(w[i]));
  return l1 * sum;
}

static double l2_term(bnorm_dtype dtype, double l2, const double *w,
                      size_t count, double *gradient) {
  double sum_squares = 0.0;
  for (size_t i = 0; i < count; i++) sum_squares += w[i] * w[i];
  /* Keras multiplies the coefficient by the Python float 2.0 first; the
   * doubling is exact, as is the halving inside l2_loss. */
  double twice_l2 = 2.0 * l2;
  if (gradient)
    for (size_t i = 0; i < count; i++)
      gradient[i] =
          bn_round(dtype, gradient[i] + bn_round(dtype, twice_l2 * w[i]));
  return twice_l2 * (0.5 * sum_squares);
}

bnorm_status bn_regularizer_apply(const bnorm_regularizer *reg,
                                  bnorm_dtype dtype, const double *weight,
                                  size_t count, double *loss, double *gradient,
                                  const char *what) {
  bnorm_status s = bn_regularizer_validate(reg, what);
  if (s != BNORM_OK) return s;
  /* The float32 coefficients of Keras' constructor. */
  double l1 = (float)reg->l1, l2 = (float)reg->l2;
  double total = 0.0;
  switch (reg->kind) {
    case BNORM_REG_NONE:
      break;
    case BNORM_REG_L1:
      total = l1_term(dtype, l1, weight, count, gradient);
      break;
    case BNORM_REG_L2:
      total = l2_term(dtype, l2, weight, count, gradient);
      break;
    case BNORM_REG_L1L2:
      if (l1 != 0.0) total += l1_term(dtype, l1, weight, count, gradient);
      if (l2 != 0.0) total += l2_term(dtype, l2, weight, count, gradient);
      break;
    case BNORM_REG_CALLBACK: {
      double value = 0.0;
      int rc = reg->fn(weight, count, &value, gradient, reg->user_data);
      if (rc == 0 && gradient)
        for (size_t i = 0; i < count; i++)
          gradient[i] = bn_round(dtype, gradient[i]);
      if (rc != 0)
        return bn_fail(BNORM_ERR_CALLBACK,
                       "%s: the regularizer callback%s%s%s returned %d", what,
                       reg->name ? " '" : "", reg->name ? reg->name : "",
                       reg->name ? "'" : "", rc);
      total = value;
      break;
    }
  }
  if (loss) *loss = total;
  return BNORM_OK;
}
