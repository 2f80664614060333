/* Configuration defaults, the built-in initializer / regularizer /
 * constraint constructors, and the checks of Keras' constructor. */
#include "internal.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- built-in objects with Keras' default parameters ---- */

static bnorm_initializer initializer_of_kind(bnorm_initializer_kind kind) {
  bnorm_initializer init;
  memset(&init, 0, sizeof init);
  init.kind = kind;
  return init;
}

bnorm_initializer bnorm_initializer_zeros(void) {
  return initializer_of_kind(BNORM_INIT_ZEROS);
}

bnorm_initializer bnorm_initializer_ones(void) {
  return initializer_of_kind(BNORM_INIT_ONES);
}

bnorm_initializer bnorm_initializer_constant(double value) {
  bnorm_initializer init = initializer_of_kind(BNORM_INIT_CONSTANT);
  init.value = value;
  return init;
}

bnorm_initializer bnorm_initializer_random_normal(double mean, double stddev) {
  bnorm_initializer init = initializer_of_kind(BNORM_INIT_RANDOM_NORMAL);
  init.mean = mean;
  init.stddev = stddev;
  return init;
}

bnorm_initializer bnorm_initializer_random_uniform(double minval,
                                                   double maxval) {
  bnorm_initializer init = initializer_of_kind(BNORM_INIT_RANDOM_UNIFORM);
  init.minval = minval;
  init.maxval = maxval;
  return init;
}

bnorm_initializer bnorm_initializer_truncated_normal(double mean,
                                                     double stddev) {
  bnorm_initializer init = initializer_of_kind(BNORM_INIT_TRUNCATED_NORMAL);
  init.mean = mean;
  init.stddev = stddev;
  return init;
}

bnorm_initializer bnorm_initializer_seeded(bnorm_initializer init,
                                           uint64_t seed) {
  init.has_seed = true;
  init.seed = seed;
  return init;
}

static bnorm_regularizer regularizer_of_kind(bnorm_regularizer_kind kind) {
  bnorm_regularizer reg;
  memset(&reg, 0, sizeof reg);
  reg.kind = kind;
  return reg;
}

bnorm_regularizer bnorm_regularizer_none(void) {
  return regularizer_of_kind(BNORM_REG_NONE);
}

bnorm_regularizer bnorm_regularizer_l1(double l1) {
  bnorm_regularizer reg = regularizer_of_kind(BNORM_REG_L1);
  reg.l1 = l1;
  return reg;
}

bnorm_regularizer bnorm_regularizer_l2(double l2) {
  bnorm_regularizer reg = regularizer_of_kind(BNORM_REG_L2);
  reg.l2 = l2;
  return reg;
}

bnorm_regularizer bnorm_regularizer_l1_l2(double l1, double l2) {
  bnorm_regularizer reg = regularizer_of_kind(BNORM_REG_L1L2);
  reg.l1 = l1;
  reg.l2 = l2;
  return reg;
}

/* Keras' norm constraints default to axis=0. */
static bnorm_constraint constraint_of_kind(bnorm_constraint_kind kind) {
  bnorm_constraint c;
  memset(&c, 0, sizeof c);
  c.kind = kind;
  c.axis[0] = 0;
  c.axis_count = 1;
  return c;
}

bnorm_constraint bnorm_constraint_none(void) {
  return constraint_of_kind(BNORM_CONSTRAINT_NONE);
}

bnorm_constraint bnorm_constraint_non_neg(void) {
  return constraint_of_kind(BNORM_CONSTRAINT_NON_NEG);
}

bnorm_constraint bnorm_constraint_unit_norm(void) {
  return constraint_of_kind(BNORM_CONSTRAINT_UNIT_NORM);
}

bnorm_constraint bnorm_constraint_max_norm(double max_value) {
  bnorm_constraint c = constraint_of_kind(BNORM_CONSTRAINT_MAX_NORM);
  c.max_value = max_value;
  return c;
}

bnorm_constraint bnorm_constraint_min_max_norm(double min_value,
                                               double max_value, double rate) {
  bnorm_constraint c = constraint_of_kind(BNORM_CONSTRAINT_MIN_MAX_NORM);
  c.min_value = min_value;
  c.max_value = max_value;
  c.rate = rate;
  return c;
}

/* ---- configuration ---- */

void bnorm_config_init(bnorm_config *config) {
  if (!config) return;
  memset(config, 0, sizeof *config);
  config->behavior = BNORM_BEHAVIOR_KERAS;
  config->axis[0] = -1;
  config->axis_count = 1;
  config->axis_is_list = false;
  config->momentum = 0.99;
  config->epsilon = 1e-3;
  config->center = true;
  config->scale = true;
  config->beta_initializer = bnorm_initializer_zeros();
  config->gamma_initializer = bnorm_initializer_ones();
  config->moving_mean_initializer = bnorm_initializer_zeros();
  config->moving_variance_initializer = bnorm_initializer_ones();
  config->beta_regularizer = bnorm_regularizer_none();
  config->gamma_regularizer = bnorm_regularizer_none();
  config->beta_constraint = bnorm_constraint_none();
  config->gamma_constraint = bnorm_constraint_none();
  config->renorm = false;
  config->renorm_momentum = 0.99;
  config->fused = BNORM_FUSED_AUTO;
  config->trainable = true;
  config->virtual_batch_size = 0;
  config->adjustment = NULL;
  config->adjustment_user_data = NULL;
  config->name[0] = '\0';
  config->fused_epsilon_floor = false;
  config->dtype = BNORM_FLOAT32;
}

/* Writes the axis list as Keras prints it ("-1" or "[1, 2]") for messages. */
static const char *axis_text(const bnorm_config *config, char *buf,
                             size_t size) {
  size_t n = 0;
  bool list = config->axis_is_list || config->axis_count != 1;
  if (list) n += (size_t)snprintf(buf + n, size - n, "[");
  for (int i = 0; i < config->axis_count && n < size; i++)
    n += (size_t)snprintf(buf + n, size - n, "%s%d", i ? ", " : "",
                          config->axis[i]);
  if (list && n < size) snprintf(buf + n, size - n, "]");
  return buf;
}

/* tf_keras' _raise_if_fused_cannot_be_used, in its order. Only the Keras
 * behaviour raises; compat.v1 falls back silently at build. */
static bnorm_status check_fused_can_be_used(const bnorm_config *config) {
  if (config->renorm)
    return bn_fail(BNORM_ERR_INVALID_CONFIG,
                   "fused: Passing both `fused=True` and `renorm=True` is not "
                   "supported (set fused to BNORM_FUSED_AUTO or "
                   "BNORM_FUSED_FALSE, or renorm to false)");
  static const int fused_axes[] = {-4, -3, -1, 1, 3, 4};
  bool axis_ok = false;
  if (config->axis_count == 1)
    for (size_t i = 0; i < sizeof fused_axes / sizeof fused_axes[0]; i++)
      if (config->axis[0] == fused_axes[i]) axis_ok = true;
  if (!axis_ok) {
    char buf[128];
    return bn_fail(BNORM_ERR_INVALID_CONFIG,
                   "fused: Passing `fused=True` is only supported when axis is "
                   "1 or 3 for input rank = 4 or 1 or 4 for input rank = 5. "
                   "Got axis %s (allowed: one axis among -4, -3, -1, 1, 3, 4)",
                   axis_text(config, buf, sizeof buf));
  }
  if (config->virtual_batch_size != 0)
    return bn_fail(BNORM_ERR_INVALID_CONFIG,
                   "fused: Passing `fused=True` is not supported when "
                   "`virtual_batch_size` is specified (virtual_batch_size=%lld)",
                   (long long)config->virtual_batch_size);
  if (config->adjustment)
    return bn_fail(BNORM_ERR_INVALID_CONFIG,
                   "fused: Passing `fused=True` is not supported when "
                   "`adjustment` is specified");
  if (config->dtype != BNORM_FLOAT32)
    return bn_fail(BNORM_ERR_INVALID_CONFIG,
                   "fused: Passing `fused=True` is only supported when the "
                   "compute dtype is float16, bfloat16, or float32. Got "
                   "dtype: float64");
  return BNORM_OK;
}

static bnorm_status check_config(const bnorm_config *config) {
  if ((int)config->behavior != BNORM_BEHAVIOR_KERAS &&
      (int)config->behavior != BNORM_BEHAVIOR_COMPAT_V1)
    return bn_fail(BNORM_ERR_INVALID_CONFIG,
                   "behavior: %d is not a bnorm_behavior (use "
                   "BNORM_BEHAVIOR_KERAS or BNORM_BEHAVIOR_COMPAT_V1)",
                   (int)config->behavior);
  if ((int)config->dtype != BNORM_FLOAT32 &&
      (int)config->dtype != BNORM_FLOAT64)
    return bn_fail(BNORM_ERR_INVALID_CONFIG,
                   "dtype: %d is not a bnorm_dtype (use BNORM_FLOAT32 or "
                   "BNORM_FLOAT64)",
                   (int)config->dtype);
  if ((int)config->fused < BNORM_FUSED_AUTO ||
      (int)config->fused > BNORM_FUSED_FALSE)
    return bn_fail(BNORM_ERR_INVALID_CONFIG,
                   "fused: %d is not a bnorm_fused (use BNORM_FUSED_AUTO, "
                   "BNORM_FUSED_TRUE or BNORM_FUSED_FALSE)",
                   (int)config->fused);
  if (config->axis_count < 1 || config->axis_count > BNORM_MAX_RANK)
    return bn_fail(BNORM_ERR_INVALID_CONFIG,
                   "axis_count: %d axes given; between 1 and %d are allowed",
                   config->axis_count, BNORM_MAX_RANK);
  if (!memchr(config->name, '\0', sizeof config->name))
    return bn_fail(BNORM_ERR_INVALID_CONFIG,
                   "name: not NUL-terminated within its %d bytes (names are at "
                   "most %d bytes)",
                   BNORM_MAX_NAME + 1, BNORM_MAX_NAME);
  if (!isfinite(config->momentum))
    return bn_fail(BNORM_ERR_INVALID_CONFIG,
                   "momentum: %g is not a finite number", config->momentum);
  if (!isfinite(config->epsilon) || config->epsilon < 0 ||
      config->epsilon > FLT_MAX)
    return bn_fail(BNORM_ERR_INVALID_CONFIG,
                   "epsilon: %g is not allowed; epsilon must be a finite "
                   "float32 number >= 0",
                   config->epsilon);

  static const char *const init_names[] = {
      "beta_initializer", "gamma_initializer", "moving_mean_initializer",
      "moving_variance_initializer"};
  const bnorm_initializer *inits[] = {
      &config->beta_initializer, &config->gamma_initializer,
      &config->moving_mean_initializer, &config->moving_variance_initializer};
  for (int i = 0; i < 4; i++) {
    bnorm_status s = bn_initializer_validate(inits[i], init_names[i]);
    if (s != BNORM_OK) return s;
  }
  bnorm_status s = bn_regularizer_validate(&config->beta_regularizer,
                                           "beta_regularizer");
  if (s == BNORM_OK)
    s = bn_regularizer_validate(&config->gamma_regularizer,
                                "gamma_regularizer");
  if (s == BNORM_OK)
    s = bn_constraint_validate(&config->beta_constraint, "beta_constraint");
  if (s == BNORM_OK)
    s = bn_constraint_validate(&config->gamma_constraint, "gamma_constraint");
  if (s != BNORM_OK) return s;

  /* Keras neither checks nor stores renorm_clipping / renorm_momentum
   * without renorm, so neither do we. */
  if (config->renorm) {
    if (!isfinite(config->renorm_momentum))
      return bn_fail(BNORM_ERR_INVALID_CONFIG,
                     "renorm_momentum: %g is not a finite number",
                     config->renorm_momentum);
    struct {
      bool has;
      double value;
      const char *key;
    } clip[] = {{config->renorm_clipping_has_rmax, config->renorm_clipping_rmax, "rmax"},
                {config->renorm_clipping_has_rmin, config->renorm_clipping_rmin, "rmin"},
                {config->renorm_clipping_has_dmax, config->renorm_clipping_dmax, "dmax"}};
    for (int i = 0; i < 3; i++)
      if (clip[i].has && isnan(clip[i].value))
        return bn_fail(BNORM_ERR_INVALID_CONFIG,
                       "renorm_clipping: '%s' is NaN; it must be a number "
                       "(infinity allowed), or leave the key out",
                       clip[i].key);
  }

  /* virtual_batch_size <= 0 and virtual_batch_size with adjustment are
   * build-time errors in Keras; bnorm_layer_build reports them. */

  if (config->behavior == BNORM_BEHAVIOR_KERAS &&
      config->fused == BNORM_FUSED_TRUE)
    return check_fused_can_be_used(config);
  return BNORM_OK;
}

bnorm_status bnorm_config_validate(const bnorm_config *config) {
  if (!config)
    return bn_fail(BNORM_ERR_NULL_ARGUMENT,
                   "bnorm_config_validate: config is NULL");
  bnorm_status s = check_config(config);
  if (s == BNORM_OK) bn_clear_error();
  return s;
}
