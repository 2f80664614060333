/* get_config / from_config as JSON, in tf_keras 2.21's exact form.
 *
 * bnorm_config_to_json writes what json.dumps(layer.get_config()) writes:
 *   {"name": ..., "trainable": ..., "dtype": "float32", "axis": ...,
 *    "momentum": ..., "epsilon": ..., "center": ..., "scale": ...,
 *    four initializers, two regularizers, two constraints,
 *    ["renorm": true, "renorm_clipping": {...}, "renorm_momentum": ...,]
 *    ["virtual_batch_size": n]}
 * with objects serialized as {"module", "class_name", "config",
 * "registered_name"} and floats as Python's repr.
 *
 * Python keeps ints and floats apart and bnorm_config holds doubles, so a
 * few values cannot round-trip byte for byte; bnorm writes each field in the
 * form Keras' own default has: floats everywhere, except MaxNorm's max_value
 * (Keras' default is the int 2), which is written as an int when integral.
 * Likewise a constraint axis [0] is written as 0 and renorm_clipping keys come
 * in the order rmax, rmin, dmax. */
#include "json.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const kDefaultName = "batch_normalization";

/* ========================================================================= */
/* Writing                                                                   */
/* ========================================================================= */

/* Callback objects are written as Keras writes an unregistered or registered
 * custom class: {"module": null, "class_name": C, "config": {},
 * "registered_name": R}; a name "Package>Class" is a registered name. */
static bnorm_status write_custom(bn_json_writer *w, const char *name,
                                 const char *what) {
  if (!name)
    return bn_fail(BNORM_ERR_UNSUPPORTED,
                   "%s: a callback without a name cannot be written to a "
                   "config; set its `name` to the class_name Keras should see",
                   what);
  const char *class_name = strrchr(name, '>');
  class_name = class_name ? class_name + 1 : name;
  bn_jw_begin_object(w);
  bn_jw_key(w, "module");
  bn_jw_null(w);
  bn_jw_key(w, "class_name");
  if (!bn_jw_string(w, class_name, strlen(class_name)))
    return bn_fail(BNORM_ERR_UNSUPPORTED, "%s: name is not valid UTF-8", what);
  bn_jw_key(w, "config");
  bn_jw_begin_object(w);
  bn_jw_end_object(w);
  bn_jw_key(w, "registered_name");
  (void)bn_jw_string(w, name, strlen(name));
  bn_jw_end_object(w);
  return BNORM_OK;
}

static void begin_builtin(bn_json_writer *w, const char *module,
                          const char *class_name) {
  bn_jw_begin_object(w);
  bn_jw_key(w, "module");
  (void)bn_jw_string(w, module, strlen(module));
  bn_jw_key(w, "class_name");
  (void)bn_jw_string(w, class_name, strlen(class_name));
  bn_jw_key(w, "config");
  bn_jw_begin_object(w);
}

static void end_builtin(bn_json_writer *w) {
  bn_jw_end_object(w); /* config */
  bn_jw_key(w, "registered_name");
  bn_jw_null(w);
  bn_jw_end_object(w);
}

static void write_seed(bn_json_writer *w, const bnorm_initializer *init) {
  bn_jw_key(w, "seed");
  if (init->has_seed)
    bn_jw_uint(w, init->seed);
  else
    bn_jw_null(w);
}

static bnorm_status write_initializer(bn_json_writer *w,
                                      const bnorm_initializer *init,
                                      const char *what) {
  bnorm_status s = bn_initializer_validate(init, what);
  if (s != BNORM_OK) return s;
  const char *module = "keras.initializers";
  switch (init->kind) {
    case BNORM_INIT_ZEROS:
      begin_builtin(w, module, "Zeros");
      break;
    case BNORM_INIT_ONES:
      begin_builtin(w, module, "Ones");
      break;
    case BNORM_INIT_CONSTANT:
      begin_builtin(w, module, "Constant");
      bn_jw_key(w, "value");
      bn_jw_double(w, init->value);
      break;
    case BNORM_INIT_RANDOM_NORMAL:
    case BNORM_INIT_TRUNCATED_NORMAL:
      begin_builtin(w, module,
                    init->kind == BNORM_INIT_RANDOM_NORMAL ? "RandomNormal"
                                                           : "TruncatedNormal");
      bn_jw_key(w, "mean");
      bn_jw_double(w, init->mean);
      bn_jw_key(w, "stddev");
      bn_jw_double(w, init->stddev);
      write_seed(w, init);
      break;
    case BNORM_INIT_RANDOM_UNIFORM:
      begin_builtin(w, module, "RandomUniform");
      bn_jw_key(w, "minval");
      bn_jw_double(w, init->minval);
      bn_jw_key(w, "maxval");
      bn_jw_double(w, init->maxval);
      write_seed(w, init);
      break;
    case BNORM_INIT_CALLBACK:
      return write_custom(w, init->name, what);
  }
  end_builtin(w);
  return BNORM_OK;
}

/* Keras stores penalties as float32 and get_config returns float(self.l1). */
static void write_penalty(bn_json_writer *w, const char *key, double value) {
  bn_jw_key(w, key);
  bn_jw_double(w, (double)(float)value);
}

static bnorm_status write_regularizer(bn_json_writer *w,
                                      const bnorm_regularizer *reg,
                                      const char *what) {
  bnorm_status s = bn_regularizer_validate(reg, what);
  if (s != BNORM_OK) return s;
  const char *module = "keras.regularizers";
  switch (reg->kind) {
    case BNORM_REG_NONE:
      bn_jw_null(w);
      return BNORM_OK;
    case BNORM_REG_L1:
      begin_builtin(w, module, "L1");
      write_penalty(w, "l1", reg->l1);
      break;
    case BNORM_REG_L2:
      begin_builtin(w, module, "L2");
      write_penalty(w, "l2", reg->l2);
      break;
    case BNORM_REG_L1L2:
      begin_builtin(w, module, "L1L2");
      write_penalty(w, "l1", reg->l1);
      write_penalty(w, "l2", reg->l2);
      break;
    case BNORM_REG_CALLBACK:
      return write_custom(w, reg->name, what);
  }
  end_builtin(w);
  return BNORM_OK;
}

static void write_constraint_axis(bn_json_writer *w, const bnorm_constraint *c) {
  bn_jw_key(w, "axis");
  if (c->axis_count == 1) {
    bn_jw_int(w, c->axis[0]);
    return;
  }
  bn_jw_begin_array(w);
  for (int i = 0; i < c->axis_count; i++) bn_jw_int(w, c->axis[i]);
  bn_jw_end_array(w);
}

static bnorm_status write_constraint(bn_json_writer *w,
                                     const bnorm_constraint *c,
                                     const char *what) {
  bnorm_status s = bn_constraint_validate(c, what);
  if (s != BNORM_OK) return s;
  const char *module = "keras.constraints";
  switch (c->kind) {
    case BNORM_CONSTRAINT_NONE:
      bn_jw_null(w);
      return BNORM_OK;
    case BNORM_CONSTRAINT_NON_NEG:
      begin_builtin(w, module, "NonNeg");
      break;
    case BNORM_CONSTRAINT_UNIT_NORM:
      begin_builtin(w, module, "UnitNorm");
      write_constraint_axis(w, c);
      break;
    case BNORM_CONSTRAINT_MAX_NORM:
      begin_builtin(w, module, "MaxNorm");
      bn_jw_key(w, "max_value");
      /* Keras' default max_value is the int 2 and is written "2". */
      if (c->max_value == floor(c->max_value) && fabs(c->max_value) < 9.0e15)
        bn_jw_int(w, (int64_t)c->max_value);
      else
        bn_jw_double(w, c->max_value);
      write_constraint_axis(w, c);
      break;
    case BNORM_CONSTRAINT_MIN_MAX_NORM:
      begin_builtin(w, module, "MinMaxNorm");
      bn_jw_key(w, "min_value");
      bn_jw_double(w, c->min_value);
      bn_jw_key(w, "max_value");
      bn_jw_double(w, c->max_value);
      bn_jw_key(w, "rate");
      bn_jw_double(w, c->rate);
      write_constraint_axis(w, c);
      break;
    case BNORM_CONSTRAINT_CALLBACK:
      return write_custom(w, c->name, what);
  }
  end_builtin(w);
  return BNORM_OK;
}

static bnorm_status write_config(bn_json_writer *w, const bnorm_config *config) {
  if (config->axis_count < 1 || config->axis_count > BNORM_MAX_RANK)
    return bn_fail(BNORM_ERR_INVALID_CONFIG,
                   "axis_count: %d axes given; between 1 and %d are allowed",
                   config->axis_count, BNORM_MAX_RANK);
  const char *name_end = memchr(config->name, '\0', sizeof config->name);
  if (!name_end)
    return bn_fail(BNORM_ERR_INVALID_CONFIG,
                   "name: not NUL-terminated within its %d bytes",
                   BNORM_MAX_NAME + 1);
  size_t name_length = (size_t)(name_end - config->name);
  bn_jw_begin_object(w);
  bn_jw_key(w, "name");
  if (name_length == 0) {
    (void)bn_jw_string(w, kDefaultName, strlen(kDefaultName));
  } else if (!bn_jw_string(w, config->name, name_length)) {
    return bn_fail(BNORM_ERR_UNSUPPORTED,
                   "name: \"%s\" is not valid UTF-8, which JSON requires",
                   config->name);
  }
  bn_jw_key(w, "trainable");
  bn_jw_bool(w, config->trainable);
  bn_jw_key(w, "dtype");
  if (config->dtype == BNORM_FLOAT64)
    (void)bn_jw_string(w, "float64", 7);
  else
    (void)bn_jw_string(w, "float32", 7);
  bn_jw_key(w, "axis");
  if (config->axis_is_list || config->axis_count != 1) {
    bn_jw_begin_array(w);
    for (int i = 0; i < config->axis_count; i++) bn_jw_int(w, config->axis[i]);
    bn_jw_end_array(w);
  } else {
    bn_jw_int(w, config->axis[0]);
  }
  bn_jw_key(w, "momentum");
  bn_jw_double(w, config->momentum);
  bn_jw_key(w, "epsilon");
  bn_jw_double(w, config->epsilon);
  bn_jw_key(w, "center");
  bn_jw_bool(w, config->center);
  bn_jw_key(w, "scale");
  bn_jw_bool(w, config->scale);

  bnorm_status s;
  bn_jw_key(w, "beta_initializer");
  if ((s = write_initializer(w, &config->beta_initializer, "beta_initializer")))
    return s;
  bn_jw_key(w, "gamma_initializer");
  if ((s = write_initializer(w, &config->gamma_initializer, "gamma_initializer")))
    return s;
  bn_jw_key(w, "moving_mean_initializer");
  if ((s = write_initializer(w, &config->moving_mean_initializer,
                             "moving_mean_initializer")))
    return s;
  bn_jw_key(w, "moving_variance_initializer");
  if ((s = write_initializer(w, &config->moving_variance_initializer,
                             "moving_variance_initializer")))
    return s;
  bn_jw_key(w, "beta_regularizer");
  if ((s = write_regularizer(w, &config->beta_regularizer, "beta_regularizer")))
    return s;
  bn_jw_key(w, "gamma_regularizer");
  if ((s = write_regularizer(w, &config->gamma_regularizer, "gamma_regularizer")))
    return s;
  bn_jw_key(w, "beta_constraint");
  if ((s = write_constraint(w, &config->beta_constraint, "beta_constraint")))
    return s;
  bn_jw_key(w, "gamma_constraint");
  if ((s = write_constraint(w, &config->gamma_constraint, "gamma_constraint")))
    return s;

  if (config->renorm) {
    bn_jw_key(w, "renorm");
    bn_jw_bool(w, true);
    bn_jw_key(w, "renorm_clipping");
    bn_jw_begin_object(w);
    if (config->renorm_clipping_has_rmax) {
      bn_jw_key(w, "rmax");
      bn_jw_double(w, config->renorm_clipping_rmax);
    }
    if (config->renorm_clipping_has_rmin) {
      bn_jw_key(w, "rmin");
      bn_jw_double(w, config->renorm_clipping_rmin);
    }
    if (config->renorm_clipping_has_dmax) {
      bn_jw_key(w, "dmax");
      bn_jw_double(w, config->renorm_clipping_dmax);
    }
    bn_jw_end_object(w);
    bn_jw_key(w, "renorm_momentum");
    bn_jw_double(w, config->renorm_momentum);
  }
  if (config->virtual_batch_size != 0) {
    bn_jw_key(w, "virtual_batch_size");
    bn_jw_int(w, config->virtual_batch_size);
  }
  bn_jw_end_object(w);
  return BNORM_OK;
}

bnorm_status bnorm_config_to_json(const bnorm_config *config, char *out,
                                  size_t capacity, size_t *length) {
  if (!config)
    return bn_fail(BNORM_ERR_NULL_ARGUMENT, "bnorm_config_to_json: config is NULL");
  if (!out && capacity > 0)
    return bn_fail(BNORM_ERR_NULL_ARGUMENT,
                   "bnorm_config_to_json: out is NULL but capacity is %zu",
                   capacity);
  bn_json_writer w;
  bn_jw_init(&w);
  bnorm_status s = write_config(&w, config);
  if (s == BNORM_OK && w.out_of_memory)
    s = bn_fail(BNORM_ERR_OUT_OF_MEMORY,
                "bnorm_config_to_json: out of memory building the JSON text");
  if (s != BNORM_OK) {
    bn_jw_free(&w);
    return s;
  }
  if (length) *length = w.length;
  if (capacity <= w.length) {
    if (capacity > 0) out[0] = '\0';
    s = bn_fail(BNORM_ERR_INVALID_ARGUMENT,
                "bnorm_config_to_json: the text needs %zu bytes with its NUL; "
                "capacity is %zu",
                w.length + 1, capacity);
    bn_jw_free(&w);
    return s;
  }
  memcpy(out, w.data, w.length + 1);
  bn_jw_free(&w);
  bn_clear_error();
  return BNORM_OK;
}

/* ========================================================================= */
/* Reading                                                                   */
/* ========================================================================= */

static bool is_number(const bn_json_value *v) {
  return v && v->type == BN_JSON_NUMBER;
}

static bnorm_status expect_number(const bn_json_value *v, const char *what,
                                  const char *key, double *out) {
  if (!is_number(v))
    return bn_fail(BNORM_ERR_INVALID_CONFIG,
                   "%s%s%s: expected a number, got %s (at byte %zu)", what,
                   key ? "." : "", key ? key : "", bn_json_type_name(v),
                   v ? v->offset : 0);
  *out = v->number;
  return BNORM_OK;
}

static bnorm_status expect_bool(const bn_json_value *v, const char *what,
                                bool *out) {
  if (!v || v->type != BN_JSON_BOOL)
    return bn_fail(BNORM_ERR_INVALID_CONFIG,
                   "%s: expected true or false, got %s (at byte %zu)", what,
                   bn_json_type_name(v), v ? v->offset : 0);
  *out = v->boolean;
  return BNORM_OK;
}

static bnorm_status expect_int(const bn_json_value *v, const char *what,
                               int *out) {
  int64_t value;
  if (!bn_json_get_int64(v, &value) || value < -1000000 || value > 1000000)
    return bn_fail(BNORM_ERR_INVALID_CONFIG,
                   "%s: expected a small integer, got %s (at byte %zu)", what,
                   bn_json_type_name(v), v ? v->offset : 0);
  *out = (int)value;
  return BNORM_OK;
}

/* An int or a list of ints (Keras `axis`). */
static bnorm_status read_axes(const bn_json_value *v, const char *what,
                              int max_count, int *axes, int *count,
                              bool *is_list) {
  if (v && v->type == BN_JSON_NUMBER && v->is_integer) {
    *is_list = false;
    *count = 1;
    return expect_int(v, what, &axes[0]);
  }
  if (!v || v->type != BN_JSON_ARRAY)
    return bn_fail(BNORM_ERR_INVALID_CONFIG,
                   "%s: Expected an int or a list/tuple of ints for the "
                   "argument 'axis', but received %s (at byte %zu)",
                   what, bn_json_type_name(v), v ? v->offset : 0);
  if (v->count < 1 || v->count > (size_t)max_count)
    return bn_fail(BNORM_ERR_INVALID_CONFIG,
                   "%s: a list of %zu axes; between 1 and %d are allowed", what,
                   v->count, max_count);
  for (size_t i = 0; i < v->count; i++) {
    if (!(v->items[i].type == BN_JSON_NUMBER && v->items[i].is_integer))
      return bn_fail(BNORM_ERR_INVALID_CONFIG,
                     "%s: Expected an int or a list/tuple of ints for the "
                     "argument 'axis', but item %zu is %s (at byte %zu)",
                     what, i, bn_json_type_name(&v->items[i]),
                     v->items[i].offset);
    bnorm_status s = expect_int(&v->items[i], what, &axes[i]);
    if (s != BNORM_OK) return s;
  }
  *is_list = true;
  *count = (int)v->count;
  return BNORM_OK;
}

/* How an initializer/regularizer/constraint was named in the config. */
typedef struct object_ref {
  const char *class_name;      /* never NULL after read_object_ref */
  const char *registered_name; /* may be NULL */
  const char *function_name;   /* {"class_name": "function", "config": "f"} */
  const bn_json_value *config; /* an object, or NULL for none */
  bool shorthand;              /* given as a bare string ("l2") */
} object_ref;

static bool string_is_clean(const bn_json_value *v) {
  return v->type == BN_JSON_STRING && strlen(v->string) == v->string_length;
}

/* The {"module", "class_name", "config", "registered_name"} form, the older
 * {"class_name", "config"} form, and Keras' string shorthands. */
static bnorm_status read_object_ref(const bn_json_value *v, const char *what,
                                    const char *kind, object_ref *ref) {
  memset(ref, 0, sizeof *ref);
  if (v->type == BN_JSON_STRING && string_is_clean(v)) {
    ref->class_name = v->string;
    ref->shorthand = true;
    return BNORM_OK;
  }
  if (v->type != BN_JSON_OBJECT)
    return bn_fail(BNORM_ERR_INVALID_CONFIG,
                   "%s: Could not interpret %s identifier: expected null, a "
                   "string or an object with \"class_name\", got %s (at byte "
                   "%zu)",
                   what, kind, bn_json_type_name(v), v->offset);
  const bn_json_value *class_name = bn_json_get(v, "class_name");
  if (!class_name || !string_is_clean(class_name))
    return bn_fail(BNORM_ERR_INVALID_CONFIG,
                   "%s: the %s object needs a string \"class_name\" (at byte "
                   "%zu)",
                   what, kind, v->offset);
  ref->class_name = class_name->string;
  const bn_json_value *registered = bn_json_get(v, "registered_name");
  if (registered && string_is_clean(registered))
    ref->registered_name = registered->string;
  const bn_json_value *config = bn_json_get(v, "config");
  if (config && config->type == BN_JSON_OBJECT) {
    ref->config = config;
  } else if (config && string_is_clean(config) &&
             strcmp(ref->class_name, "function") == 0) {
    ref->function_name = config->string;
  } else if (config && config->type != BN_JSON_NULL) {
    return bn_fail(BNORM_ERR_INVALID_CONFIG,
                   "%s: \"config\" of %s '%s' must be an object, got %s (at "
                   "byte %zu)",
                   what, kind, ref->class_name, bn_json_type_name(config),
                   config->offset);
  }
  return BNORM_OK;
}

static bool name_in(const char *name, const char *const *list) {
  for (; *list; list++)
    if (strcmp(name, *list) == 0) return true;
  return false;
}

static bool custom_name_matches(const char *custom_name, const object_ref *ref) {
  if (!custom_name) return false;
  if (ref->registered_name && strcmp(custom_name, ref->registered_name) == 0)
    return true;
  if (ref->function_name) return strcmp(custom_name, ref->function_name) == 0;
  return strcmp(custom_name, ref->class_name) == 0;
}

/* Rejects config keys the Keras class's constructor does not take (Keras
 * raises TypeError for them); "dtype" is dropped as Keras' from_config does
 * for initializers. */
static bnorm_status check_keys(const object_ref *ref, const char *what,
                               const char *const *allowed, bool allow_dtype) {
  if (!ref->config) return BNORM_OK;
  for (size_t i = 0; i < ref->config->count; i++) {
    const char *key = ref->config->members[i].key;
    if (allow_dtype && strcmp(key, "dtype") == 0) continue;
    if (strlen(key) != ref->config->members[i].key_length ||
        !name_in(key, allowed))
      return bn_fail(BNORM_ERR_INVALID_CONFIG,
                     "%s: %s got an unexpected argument '%s' (at byte %zu)",
                     what, ref->class_name, key,
                     ref->config->members[i].value.offset);
  }
  return BNORM_OK;
}

/* A config number that may be absent (keeps *out) or, when `null_default`
 * is given, null (takes it). */
static bnorm_status read_param(const object_ref *ref, const char *key,
                               const char *what, const double *null_default,
                               double *out) {
  const bn_json_value *v = bn_json_get(ref->config, key);
  if (!v) return BNORM_OK;
  if (v->type == BN_JSON_NULL && null_default) {
    *out = *null_default;
    return BNORM_OK;
  }
  return expect_number(v, what, key, out);
}

/* ---- initializers ---- */

static const char *const kZeros[] = {"Zeros", "ZerosV2", "zeros", "zero", NULL};
static const char *const kOnes[] = {"Ones", "OnesV2", "ones", "one", NULL};
static const char *const kConstant[] = {"Constant", "ConstantV2", "constant",
                                        NULL};
static const char *const kRandomNormal[] = {"RandomNormal", "RandomNormalV2",
                                            "random_normal", "normal", NULL};
static const char *const kRandomUniform[] = {
    "RandomUniform", "RandomUniformV2", "random_uniform", "uniform", NULL};
static const char *const kTruncatedNormal[] = {
    "TruncatedNormal", "TruncatedNormalV2", "truncated_normal", NULL};
static const char *const kUnsupportedInitializers[] = {
    "GlorotNormal", "GlorotNormalV2", "glorot_normal", "glorot_normalV2",
    "GlorotUniform", "GlorotUniformV2", "glorot_uniform", "glorot_uniformV2",
    "HeNormal", "HeNormalV2", "he_normal", "he_normalV2",
    "HeUniform", "HeUniformV2", "he_uniform", "he_uniformV2",
    "LecunNormal", "LecunNormalV2", "lecun_normal", "lecun_normalV2",
    "LecunUniform", "LecunUniformV2", "lecun_uniform", "lecun_uniformV2",
    "Identity", "IdentityV2", "identity", "Orthogonal", "OrthogonalV2",
    "orthogonal", "VarianceScaling", "VarianceScalingV2", "variance_scaling",
    "Initializer", "initializer", NULL};

static bnorm_status read_seed(const object_ref *ref, const char *what,
                              bnorm_initializer *init) {
  const bn_json_value *v = bn_json_get(ref->config, "seed");
  if (!v || v->type == BN_JSON_NULL) return BNORM_OK;
  if (v->type != BN_JSON_NUMBER || !v->is_integer)
    return bn_fail(BNORM_ERR_INVALID_CONFIG,
                   "%s: seed must be an integer or null, got %s (at byte %zu)",
                   what, bn_json_type_name(v), v->offset);
  if ((v->integer_negative && v->integer_magnitude != 0) || v->integer_overflow)
    return bn_fail(BNORM_ERR_UNSUPPORTED,
                   "%s: seed at byte %zu is outside 0..2^64-1, the seeds "
                   "bnorm supports",
                   what, v->offset);
  init->has_seed = true;
  init->seed = v->integer_magnitude;
  return BNORM_OK;
}

static bnorm_status read_initializer(const bn_json_value *v, const char *what,
                                     const bnorm_custom_objects *custom,
                                     bnorm_initializer *out) {
  if (v->type == BN_JSON_NULL)
    return bn_fail(BNORM_ERR_INVALID_CONFIG,
                   "%s: null is not an initializer (bnorm needs one to create "
                   "the variable)",
                   what);
  object_ref ref;
  bnorm_status s = read_object_ref(v, what, "initializer", &ref);
  if (s != BNORM_OK) return s;
  if (custom && custom->initializers)
    for (size_t i = 0; i < custom->initializer_count; i++)
      if (custom_name_matches(custom->initializers[i].name, &ref)) {
        *out = custom->initializers[i];
        return BNORM_OK;
      }
  const char *cls = ref.class_name;
  bnorm_initializer init;
  if (name_in(cls, kZeros) || name_in(cls, kOnes)) {
    static const char *const none[] = {NULL};
    init = name_in(cls, kZeros) ? bnorm_initializer_zeros()
                                : bnorm_initializer_ones();
    s = check_keys(&ref, what, none, true);
  } else if (name_in(cls, kConstant)) {
    static const char *const keys[] = {"value", NULL};
    init = bnorm_initializer_constant(0.0);
    s = check_keys(&ref, what, keys, true);
    if (s == BNORM_OK) s = read_param(&ref, "value", what, NULL, &init.value);
  } else if (name_in(cls, kRandomNormal) || name_in(cls, kTruncatedNormal)) {
    static const char *const keys[] = {"mean", "stddev", "seed", NULL};
    init = name_in(cls, kRandomNormal)
               ? bnorm_initializer_random_normal(0.0, 0.05)
               : bnorm_initializer_truncated_normal(0.0, 0.05);
    s = check_keys(&ref, what, keys, true);
    if (s == BNORM_OK) s = read_param(&ref, "mean", what, NULL, &init.mean);
    if (s == BNORM_OK) s = read_param(&ref, "stddev", what, NULL, &init.stddev);
    if (s == BNORM_OK) s = read_seed(&ref, what, &init);
  } else if (name_in(cls, kRandomUniform)) {
    static const char *const keys[] = {"minval", "maxval", "seed", NULL};
    init = bnorm_initializer_random_uniform(-0.05, 0.05);
    s = check_keys(&ref, what, keys, true);
    if (s == BNORM_OK) s = read_param(&ref, "minval", what, NULL, &init.minval);
    if (s == BNORM_OK) s = read_param(&ref, "maxval", what, NULL, &init.maxval);
    if (s == BNORM_OK) s = read_seed(&ref, what, &init);
  } else if (name_in(cls, kUnsupportedInitializers)) {
    return bn_fail(BNORM_ERR_UNSUPPORTED,
                   "%s: the Keras initializer '%s' is not implemented by bnorm "
                   "(built in: Zeros, Ones, Constant, RandomNormal, "
                   "RandomUniform, TruncatedNormal); pass a callback with that "
                   "name in bnorm_custom_objects",
                   what, cls);
  } else {
    return bn_fail(BNORM_ERR_NOT_FOUND,
                   "%s: unknown initializer '%s'; pass a callback initializer "
                   "named '%s' in bnorm_custom_objects",
                   what, ref.function_name ? ref.function_name : cls,
                   ref.registered_name ? ref.registered_name
                   : ref.function_name ? ref.function_name : cls);
  }
  if (s != BNORM_OK) return s;
  *out = init;
  return BNORM_OK;
}

/* ---- regularizers ---- */

static const char *const kL1[] = {"L1", "l1", NULL};
static const char *const kL2[] = {"L2", "l2", NULL};
static const char *const kL1L2[] = {"L1L2", NULL};
static const char *const kUnsupportedRegularizers[] = {
    "OrthogonalRegularizer", "orthogonal_regularizer", "Regularizer", NULL};

static bnorm_status read_regularizer(const bn_json_value *v, const char *what,
                                     const bnorm_custom_objects *custom,
                                     bnorm_regularizer *out) {
  if (v->type == BN_JSON_NULL) {
    *out = bnorm_regularizer_none();
    return BNORM_OK;
  }
  object_ref ref;
  bnorm_status s = read_object_ref(v, what, "regularizer", &ref);
  if (s != BNORM_OK) return s;
  if (custom && custom->regularizers)
    for (size_t i = 0; i < custom->regularizer_count; i++)
      if (custom_name_matches(custom->regularizers[i].name, &ref)) {
        *out = custom->regularizers[i];
        return BNORM_OK;
      }
  const char *cls = ref.class_name;
  bnorm_regularizer reg;
  if (name_in(cls, kL1) || name_in(cls, kL2)) {
    /* "l" is the old keyword both classes still accept and prefer. */
    bool is_l1 = name_in(cls, kL1);
    static const char *const l1_keys[] = {"l1", "l", NULL};
    static const char *const l2_keys[] = {"l2", "l", NULL};
    const double keras_default = 0.01;
    double value = keras_default;
    s = check_keys(&ref, what, is_l1 ? l1_keys : l2_keys, false);
    if (s == BNORM_OK)
      s = read_param(&ref, is_l1 ? "l1" : "l2", what, &keras_default, &value);
    if (s == BNORM_OK) s = read_param(&ref, "l", what, &keras_default, &value);
    reg = is_l1 ? bnorm_regularizer_l1(value) : bnorm_regularizer_l2(value);
  } else if (name_in(cls, kL1L2) || strcmp(cls, "l1_l2") == 0) {
    /* regularizers.deserialize("l1_l2") is L1L2(0.01, 0.01); the class
     * itself defaults to (0, 0) and reads None as 0. */
    static const char *const keys[] = {"l1", "l2", NULL};
    const double zero = 0.0;
    bool function_form = strcmp(cls, "l1_l2") == 0;
    reg = function_form ? bnorm_regularizer_l1_l2(0.01, 0.01)
                        : bnorm_regularizer_l1_l2(0.0, 0.0);
    s = check_keys(&ref, what, keys, false);
    if (s == BNORM_OK) s = read_param(&ref, "l1", what, &zero, &reg.l1);
    if (s == BNORM_OK) s = read_param(&ref, "l2", what, &zero, &reg.l2);
  } else if (name_in(cls, kUnsupportedRegularizers)) {
    return bn_fail(BNORM_ERR_UNSUPPORTED,
                   "%s: the Keras regularizer '%s' is not implemented by bnorm "
                   "(built in: L1, L2, L1L2); pass a callback with that name "
                   "in bnorm_custom_objects",
                   what, cls);
  } else {
    return bn_fail(BNORM_ERR_NOT_FOUND,
                   "%s: unknown regularizer '%s'; pass a callback regularizer "
                   "named '%s' in bnorm_custom_objects",
                   what, ref.function_name ? ref.function_name : cls,
                   ref.registered_name ? ref.registered_name
                   : ref.function_name ? ref.function_name : cls);
  }
  if (s != BNORM_OK) return s;
  s = bn_regularizer_validate(&reg, what);
  if (s != BNORM_OK) return s;
  *out = reg;
  return BNORM_OK;
}

/* ---- constraints ---- */

static const char *const kNonNeg[] = {"NonNeg", "non_neg", "nonneg", NULL};
static const char *const kUnitNorm[] = {"UnitNorm", "unit_norm", "unitnorm",
                                        NULL};
static const char *const kMaxNorm[] = {"MaxNorm", "max_norm", "maxnorm", NULL};
static const char *const kMinMaxNorm[] = {"MinMaxNorm", "min_max_norm", NULL};
static const char *const kUnsupportedConstraints[] = {
    "RadialConstraint", "radial_constraint", "Constraint", NULL};

static bnorm_status read_constraint_axis(const object_ref *ref,
                                         const char *what,
                                         bnorm_constraint *c) {
  const bn_json_value *v = bn_json_get(ref->config, "axis");
  if (!v) return BNORM_OK;
  bool is_list;
  return read_axes(v, what, BNORM_MAX_RANK + 1, c->axis, &c->axis_count,
                   &is_list);
}

static bnorm_status read_constraint(const bn_json_value *v, const char *what,
                                    const bnorm_custom_objects *custom,
                                    bnorm_constraint *out) {
  if (v->type == BN_JSON_NULL) {
    *out = bnorm_constraint_none();
    return BNORM_OK;
  }
  object_ref ref;
  bnorm_status s = read_object_ref(v, what, "constraint", &ref);
  if (s != BNORM_OK) return s;
  if (custom && custom->constraints)
    for (size_t i = 0; i < custom->constraint_count; i++)
      if (custom_name_matches(custom->constraints[i].name, &ref)) {
        *out = custom->constraints[i];
        return BNORM_OK;
      }
  const char *cls = ref.class_name;
  bnorm_constraint c;
  if (name_in(cls, kNonNeg)) {
    static const char *const none[] = {NULL};
    c = bnorm_constraint_non_neg();
    s = check_keys(&ref, what, none, false);
  } else if (name_in(cls, kUnitNorm)) {
    static const char *const keys[] = {"axis", NULL};
    c = bnorm_constraint_unit_norm();
    s = check_keys(&ref, what, keys, false);
    if (s == BNORM_OK) s = read_constraint_axis(&ref, what, &c);
  } else if (name_in(cls, kMaxNorm)) {
    static const char *const keys[] = {"max_value", "axis", NULL};
    c = bnorm_constraint_max_norm(2.0);
    s = check_keys(&ref, what, keys, false);
    if (s == BNORM_OK)
      s = read_param(&ref, "max_value", what, NULL, &c.max_value);
    if (s == BNORM_OK) s = read_constraint_axis(&ref, what, &c);
  } else if (name_in(cls, kMinMaxNorm)) {
    static const char *const keys[] = {"min_value", "max_value", "rate", "axis",
                                       NULL};
    c = bnorm_constraint_min_max_norm(0.0, 1.0, 1.0);
    s = check_keys(&ref, what, keys, false);
    if (s == BNORM_OK)
      s = read_param(&ref, "min_value", what, NULL, &c.min_value);
    if (s == BNORM_OK)
      s = read_param(&ref, "max_value", what, NULL, &c.max_value);
    if (s == BNORM_OK) s = read_param(&ref, "rate", what, NULL, &c.rate);
    if (s == BNORM_OK) s = read_constraint_axis(&ref, what, &c);
  } else if (name_in(cls, kUnsupportedConstraints)) {
    return bn_fail(BNORM_ERR_UNSUPPORTED,
                   "%s: the Keras constraint '%s' is not implemented by bnorm "
                   "(built in: NonNeg, UnitNorm, MaxNorm, MinMaxNorm); pass a "
                   "callback with that name in bnorm_custom_objects",
                   what, cls);
  } else {
    return bn_fail(BNORM_ERR_NOT_FOUND,
                   "%s: unknown constraint '%s'; pass a callback constraint "
                   "named '%s' in bnorm_custom_objects",
                   what, ref.function_name ? ref.function_name : cls,
                   ref.registered_name ? ref.registered_name
                   : ref.function_name ? ref.function_name : cls);
  }
  if (s != BNORM_OK) return s;
  s = bn_constraint_validate(&c, what);
  if (s != BNORM_OK) return s;
  *out = c;
  return BNORM_OK;
}

/* ---- the layer config ---- */

static bnorm_status read_dtype(const bn_json_value *v, bnorm_dtype *dtype) {
  const bn_json_value *name = v;
  if (v->type == BN_JSON_OBJECT) {
    /* A DTypePolicy: {"class_name": "Policy", "config": {"name": ...}}. */
    name = bn_json_get(bn_json_get(v, "config"), "name");
  }
  if (v->type == BN_JSON_NULL || bn_json_is_string(name, "float32")) {
    *dtype = BNORM_FLOAT32;
    return BNORM_OK;
  }
  if (bn_json_is_string(name, "float64")) {
    *dtype = BNORM_FLOAT64;
    return BNORM_OK;
  }
  if (name && name->type == BN_JSON_STRING)
    return bn_fail(BNORM_ERR_UNSUPPORTED,
                   "dtype: '%s' is not supported; the C layer computes in "
                   "float32 or float64 (for a float16 policy, run a float32 "
                   "layer on inputs cast to float32, as the Python binding "
                   "does)",
                   name->string);
  return bn_fail(BNORM_ERR_INVALID_CONFIG,
                 "dtype: expected a dtype name or a Policy object, got %s (at "
                 "byte %zu)",
                 bn_json_type_name(v), v->offset);
}

static bnorm_status read_renorm_clipping(const bn_json_value *v,
                                         bnorm_config *c) {
  if (v->type == BN_JSON_NULL) return BNORM_OK; /* renorm_clipping or {} */
  if (v->type != BN_JSON_OBJECT)
    return bn_fail(BNORM_ERR_INVALID_CONFIG,
                   "renorm_clipping: expected an object or null, got %s (at "
                   "byte %zu)",
                   bn_json_type_name(v), v->offset);
  for (size_t i = 0; i < v->count; i++) {
    const bn_json_member *m = &v->members[i];
    static const char *const keys[] = {"rmax", "rmin", "dmax", NULL};
    if (strlen(m->key) != m->key_length || !name_in(m->key, keys))
      return bn_fail(BNORM_ERR_INVALID_CONFIG,
                     "renorm_clipping: Received invalid keys for "
                     "`renorm_clipping` argument: '%s' (at byte %zu). "
                     "Supported values: ['rmax', 'rmin', 'dmax'].",
                     m->key, m->value.offset);
  }
  struct {
    const char *key;
    bool *has;
    double *value;
  } fields[] = {{"rmax", &c->renorm_clipping_has_rmax, &c->renorm_clipping_rmax},
                {"rmin", &c->renorm_clipping_has_rmin, &c->renorm_clipping_rmin},
                {"dmax", &c->renorm_clipping_has_dmax, &c->renorm_clipping_dmax}};
  for (int i = 0; i < 3; i++) {
    const bn_json_value *f = bn_json_get(v, fields[i].key);
    /* Keras looks the keys up with .get(), so null is no clipping. */
    if (!f || f->type == BN_JSON_NULL) continue;
    bnorm_status s = expect_number(f, "renorm_clipping", fields[i].key,
                                   fields[i].value);
    if (s != BNORM_OK) return s;
    *fields[i].has = true;
  }
  return BNORM_OK;
}

static const bn_json_value *unwrap_layer(const bn_json_value *root,
                                         bnorm_status *status) {
  *status = BNORM_OK;
  const bn_json_value *class_name = bn_json_get(root, "class_name");
  const bn_json_value *inner = bn_json_get(root, "config");
  if (!class_name || !inner || inner->type != BN_JSON_OBJECT ||
      bn_json_get(root, "axis"))
    return root;
  static const char *const classes[] = {"BatchNormalization",
                                        "BatchNormalizationV1",
                                        "BatchNormalizationV2", NULL};
  if (!string_is_clean(class_name) || !name_in(class_name->string, classes)) {
    *status = bn_fail(BNORM_ERR_INVALID_CONFIG,
                      "expected a BatchNormalization layer config, got "
                      "class_name %s",
                      class_name->type == BN_JSON_STRING ? class_name->string
                                                         : "(not a string)");
    return NULL;
  }
  return inner;
}

static bnorm_status read_config(const bn_json_value *root, bnorm_config *c,
                                const bnorm_custom_objects *custom) {
  if (root->type != BN_JSON_OBJECT)
    return bn_fail(BNORM_ERR_INVALID_CONFIG,
                   "a BatchNormalization config is a JSON object; got %s",
                   bn_json_type_name(root));
  bnorm_status s;
  const bn_json_value *o = unwrap_layer(root, &s);
  if (!o) return s;
  const bn_json_value *v;

  if ((v = bn_json_get(o, "name")) && v->type != BN_JSON_NULL) {
    if (!string_is_clean(v))
      return bn_fail(BNORM_ERR_INVALID_CONFIG,
                     "name: expected a string without NUL characters, got %s "
                     "(at byte %zu)",
                     bn_json_type_name(v), v->offset);
    if (v->string_length > BNORM_MAX_NAME)
      return bn_fail(BNORM_ERR_INVALID_CONFIG,
                     "name: %zu bytes long; bnorm allows at most %d",
                     v->string_length, BNORM_MAX_NAME);
    memcpy(c->name, v->string, v->string_length + 1);
  }
  if ((v = bn_json_get(o, "trainable")) &&
      (s = expect_bool(v, "trainable", &c->trainable)))
    return s;
  if ((v = bn_json_get(o, "dtype")) && (s = read_dtype(v, &c->dtype)))
    return s;
  if ((v = bn_json_get(o, "axis")) &&
      (s = read_axes(v, "axis", BNORM_MAX_RANK, c->axis, &c->axis_count,
                     &c->axis_is_list)))
    return s;
  if ((v = bn_json_get(o, "momentum")) &&
      (s = expect_number(v, "momentum", NULL, &c->momentum)))
    return s;
  if ((v = bn_json_get(o, "epsilon")) &&
      (s = expect_number(v, "epsilon", NULL, &c->epsilon)))
    return s;
  if ((v = bn_json_get(o, "center")) && (s = expect_bool(v, "center", &c->center)))
    return s;
  if ((v = bn_json_get(o, "scale")) && (s = expect_bool(v, "scale", &c->scale)))
    return s;

  static const char *const init_keys[] = {
      "beta_initializer", "gamma_initializer", "moving_mean_initializer",
      "moving_variance_initializer"};
  bnorm_initializer *inits[] = {&c->beta_initializer, &c->gamma_initializer,
                                &c->moving_mean_initializer,
                                &c->moving_variance_initializer};
  for (int i = 0; i < 4; i++)
    if ((v = bn_json_get(o, init_keys[i])) &&
        (s = read_initializer(v, init_keys[i], custom, inits[i])))
      return s;
  if ((v = bn_json_get(o, "beta_regularizer")) &&
      (s = read_regularizer(v, "beta_regularizer", custom, &c->beta_regularizer)))
    return s;
  if ((v = bn_json_get(o, "gamma_regularizer")) &&
      (s = read_regularizer(v, "gamma_regularizer", custom,
                            &c->gamma_regularizer)))
    return s;
  if ((v = bn_json_get(o, "beta_constraint")) &&
      (s = read_constraint(v, "beta_constraint", custom, &c->beta_constraint)))
    return s;
  if ((v = bn_json_get(o, "gamma_constraint")) &&
      (s = read_constraint(v, "gamma_constraint", custom, &c->gamma_constraint)))
    return s;

  if ((v = bn_json_get(o, "renorm")) && (s = expect_bool(v, "renorm", &c->renorm)))
    return s;
  /* Keras reads renorm_clipping and renorm_momentum only with renorm. */
  if (c->renorm) {
    if ((v = bn_json_get(o, "renorm_clipping")) &&
        (s = read_renorm_clipping(v, c)))
      return s;
    if ((v = bn_json_get(o, "renorm_momentum")) &&
        (s = expect_number(v, "renorm_momentum", NULL, &c->renorm_momentum)))
      return s;
  }
  if ((v = bn_json_get(o, "virtual_batch_size")) && v->type != BN_JSON_NULL) {
    int64_t vbs;
    if (!bn_json_get_int64(v, &vbs))
      return bn_fail(BNORM_ERR_INVALID_CONFIG,
                     "virtual_batch_size: expected an integer or null, got %s "
                     "(at byte %zu)",
                     bn_json_type_name(v), v->offset);
    /* Negative sizes are left for build to reject, as Keras does; 0 must
     * be refused here because bnorm_config uses 0 for None. */
    if (vbs == 0)
      return bn_fail(BNORM_ERR_INVALID_CONFIG,
                     "virtual_batch_size: `virtual_batch_size` must be a "
                     "positive integer that divides the true batch size of the "
                     "input tensor. Received: virtual_batch_size=0");
    c->virtual_batch_size = vbs;
  }
  bool synchronized = false;
  if ((v = bn_json_get(o, "synchronized")) && v->type != BN_JSON_NULL &&
      (s = expect_bool(v, "synchronized", &synchronized)))
    return s;
  if (synchronized)
    return bn_fail(BNORM_ERR_UNSUPPORTED,
                   "synchronized: true (cross-replica statistics) is not "
                   "supported by bnorm");
  return BNORM_OK;
}

bnorm_status bnorm_config_from_json(const char *json, bnorm_config *config,
                                    const bnorm_custom_objects *custom) {
  if (!json)
    return bn_fail(BNORM_ERR_NULL_ARGUMENT, "bnorm_config_from_json: json is NULL");
  if (!config)
    return bn_fail(BNORM_ERR_NULL_ARGUMENT,
                   "bnorm_config_from_json: config is NULL");
  bn_json_value *root;
  bnorm_status s = bn_json_parse(json, strlen(json), &root);
  if (s != BNORM_OK) return s;
  bnorm_config parsed;
  bnorm_config_init(&parsed);
  s = read_config(root, &parsed, custom);
  bn_json_free(root);
  if (s == BNORM_OK) s = bnorm_config_validate(&parsed);
  if (s != BNORM_OK) return s;
  *config = parsed;
  bn_clear_error();
  return BNORM_OK;
}
