/* The stateful Keras layer: creation, build (axis resolution, the fused
 * decision, parameter shape, variables) and access to the variables. */
#include "internal.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const variable_short_names[BN_VAR_KINDS] = {
    "gamma", "beta", "moving_mean", "moving_variance",
    "moving_stddev", "renorm_mean", "renorm_stddev"};

static uint64_t next_layer_id(void) {
  static atomic_uint_fast64_t counter = 1;
  return (uint64_t)atomic_fetch_add(&counter, 1);
}

bnorm_status bnorm_layer_create(const bnorm_config *config,
                                bnorm_layer **layer) {
  if (!config || !layer)
    return bn_fail(BNORM_ERR_NULL_ARGUMENT,
                   "bnorm_layer_create: config and layer must not be NULL");
  bnorm_status status = bnorm_config_validate(config);
  if (status != BNORM_OK) return status;
  bnorm_layer *l = calloc(1, sizeof *l);
  if (!l)
    return bn_fail(BNORM_ERR_OUT_OF_MEMORY,
                   "bnorm_layer_create: out of memory");
  l->config = *config;
  snprintf(l->name, sizeof l->name, "%s",
           config->name[0] ? config->name : "batch_normalization");
  snprintf(l->config.name, sizeof l->config.name, "%s", l->name);
  l->id = next_layer_id();
  *layer = l;
  bn_clear_error();
  return BNORM_OK;
}

void bnorm_layer_destroy(bnorm_layer *layer) {
  if (!layer) return;
  bn_scratch_free(&layer->scratch);
  free(layer->storage);
  free(layer);
}

const bnorm_config *bnorm_layer_config(const bnorm_layer *layer) {
  return layer ? &layer->config : NULL;
}

bnorm_status bnorm_layer_get_config(const bnorm_layer *layer, char *out,
                                    size_t capacity, size_t *length) {
  if (!layer)
    return bn_fail(BNORM_ERR_NULL_ARGUMENT,
                   "bnorm_layer_get_config: layer must not be NULL");
  return bnorm_config_to_json(&layer->config, out, capacity, length);
}

bool bnorm_layer_is_built(const bnorm_layer *layer) {
  return layer && layer->built;
}

bool bnorm_layer_is_fused(const bnorm_layer *layer) {
  return layer && layer->built && layer->fused;
}

size_t bnorm_layer_channels(const bnorm_layer *layer) {
  return layer && layer->built ? layer->channels : 0;
}

/* Keras' _raise_if_fused_cannot_be_used, as a predicate over an axis list. */
static bool fused_can_be_used(const bnorm_config *c, const int *axis,
                              int axis_count) {
  if (c->renorm || c->virtual_batch_size > 0 || c->adjustment) return false;
  if (c->dtype != BNORM_FLOAT32) return false;
  if (axis_count != 1) return false;
  switch (axis[0]) {
    case -4: case -3: case -1: case 1: case 3: case 4: return true;
    default: return false;
  }
}

/* Decides `fused` at build, per behaviour (tf_keras build()). `axis` is the
 * resolved list. */
static bnorm_status decide_fused(const bnorm_config *c, const int *axis,
                                 int axis_count, int rank, bool *fused) {
  bool rank_ok = rank == 4 || rank == 5;
  if (c->fused == BNORM_FUSED_FALSE) {
    *fused = false;
    return BNORM_OK;
  }
  if (c->behavior == BNORM_BEHAVIOR_COMPAT_V1) {
    /* fused=None means True, and anything fused cannot run falls back. */
    *fused = rank_ok && fused_can_be_used(c, axis, axis_count);
  } else if (c->fused == BNORM_FUSED_AUTO) {
    /* The constructor already turned None into False when the raw axis or
     * the options exclude fused; otherwise the rank decides. */
    *fused = rank_ok && fused_can_be_used(c, c->axis, c->axis_count);
  } else {
    if (!rank_ok)
      return bn_fail(BNORM_ERR_SHAPE,
                     "Batch normalization layers with fused=true only "
                     "support 4D or 5D input tensors; received rank %d",
                     rank);
    *fused = true;
  }
  if (!*fused) return BNORM_OK;
  bool channel_axis = axis_count == 1 &&
                      (axis[0] == 1 || axis[0] == rank - 1);
  if (channel_axis) return BNORM_OK;
  if (rank == 5 || c->behavior == BNORM_BEHAVIOR_COMPAT_V1) {
    *fused = false; /* Keras silently takes the non-fused path here */
    return BNORM_OK;
  }
  return bn_fail(BNORM_ERR_INVALID_CONFIG,
                 "Unsupported axis: fused batch norm on a 4D input needs "
                 "axis 1 or 3 (resolved axis %d); pass fused=false or another "
                 "axis",
                 axis[0]);
}

static bnorm_status resolve_axes(const bnorm_config *c, int rank,
                                 int *resolved) {
  for (int i = 0; i < c->axis_count; i++) {
    int a = c->axis[i] < 0 ? c->axis[i] + rank : c->axis[i];
    if (a < 0 || a >= rank)
      return bn_fail(BNORM_ERR_INVALID_CONFIG,
                     "Invalid value for axis: %d; expected -%d <= axis < %d "
                     "for an input of rank %d",
                     c->axis[i], rank, rank, rank);
    for (int j = 0; j < i; j++)
      if (resolved[j] == a)
        return bn_fail(BNORM_ERR_INVALID_CONFIG,
                       "Duplicate axis: axis %d appears twice (after "
                       "resolving negative values against rank %d)",
                       a, rank);
    resolved[i] = a;
  }
  return BNORM_OK;
}

bnorm_status bnorm_layer_build(bnorm_layer *layer, const int64_t *input_shape,
                               int rank) {
  if (!layer || !input_shape)
    return bn_fail(BNORM_ERR_NULL_ARGUMENT,
                   "bnorm_layer_build: layer and input_shape must not be NULL");
  if (layer->built)
    return bn_fail(BNORM_ERR_STATE,
                   "bnorm_layer_build: layer '%s' is already built",
                   layer->name);
  if (rank < 1 || rank > BNORM_MAX_RANK)
    return bn_fail(BNORM_ERR_SHAPE,
                   "Input has undefined or unsupported rank %d: bnorm accepts "
                   "ranks 1 to %d",
                   rank, BNORM_MAX_RANK);
  const bnorm_config *c = &layer->config;
  int axis[BNORM_MAX_RANK];
  bnorm_status status = resolve_axes(c, rank, axis);
  if (status != BNORM_OK) return status;

  bool normalized[BNORM_MAX_RANK] = {false};
  for (int i = 0; i < c->axis_count; i++) normalized[axis[i]] = true;
  for (int i = 0; i < rank; i++) {
    if (input_shape[i] < -1)
      return bn_fail(BNORM_ERR_SHAPE,
                     "bnorm_layer_build: dimension %d has invalid size %lld "
                     "(use -1 for unknown)",
                     i, (long long)input_shape[i]);
    if (normalized[i] && input_shape[i] < 0)
      return bn_fail(BNORM_ERR_SHAPE,
                     "Input has undefined axis dimension: normalized axis %d "
                     "must have a known size",
                     i);
  }
  /* Keras checks the ghost-batch options at build, not in the constructor. */
  if (c->virtual_batch_size < 0)
    return bn_fail(BNORM_ERR_INVALID_CONFIG,
                   "`virtual_batch_size` must be a positive integer that "
                   "divides the true batch size of the input tensor. "
                   "Received: virtual_batch_size=%lld (0 means None)",
                   (long long)c->virtual_batch_size);
  if (c->virtual_batch_size > 0 && c->adjustment)
    return bn_fail(BNORM_ERR_INVALID_CONFIG,
                   "When using `virtual_batch_size`, adjustment cannot be "
                   "specified");
  if (c->virtual_batch_size > 0 && normalized[0])
    return bn_fail(BNORM_ERR_INVALID_CONFIG,
                   "When using virtual_batch_size, the batch dimension must "
                   "be 0 and thus axis cannot include 0");

  bool fused;
  status = decide_fused(c, axis, c->axis_count, rank, &fused);
  if (status != BNORM_OK) return status;

  /* Parameter shape: (C,) for one axis without ghosts; else rank R (+1 with
   * ghosts) with 1 on every reduced axis. */
  int64_t param_shape[BNORM_MAX_RANK + 1];
  int param_rank = 0;
  size_t channels = 1;
  bool single = c->axis_count == 1 && c->virtual_batch_size == 0;
  for (int i = 0; i < rank; i++) {
    int64_t size = normalized[i] ? input_shape[i] : 1;
    if (normalized[i] &&
        ((uint64_t)size > SIZE_MAX || !bn_mul_size(channels, (size_t)size,
                                                   &channels)))
      return bn_fail(BNORM_ERR_OVERFLOW,
                     "bnorm_layer_build: the parameter count overflows");
    if (single && !normalized[i]) continue;
    param_shape[param_rank++] = size;
    if (i == 0 && c->virtual_batch_size > 0) param_shape[param_rank++] = 1;
  }

  bool renorm = c->renorm;
  int kinds[BN_VAR_KINDS], count = 0;
  if (c->scale) kinds[count++] = BN_VAR_GAMMA;
  if (c->center) kinds[count++] = BN_VAR_BETA;
  kinds[count++] = BN_VAR_MOVING_MEAN;
  kinds[count++] = BN_VAR_MOVING_VARIANCE;
  if (renorm) {
    kinds[count++] = BN_VAR_MOVING_STDDEV;
    kinds[count++] = BN_VAR_RENORM_MEAN;
    kinds[count++] = BN_VAR_RENORM_STDDEV;
  }
  bnorm_dtype dtype = c->dtype;
  size_t elements, element_size = bn_dtype_size(dtype);
  if (!bn_mul_size(channels, (size_t)count, &elements) ||
      elements > SIZE_MAX / sizeof(double))
    return bn_fail(BNORM_ERR_OVERFLOW,
                   "bnorm_layer_build: the variables' size overflows");
  char *storage = malloc(elements * element_size + 1);
  double *initial = malloc(channels * sizeof *initial + 1);
  if (!storage || !initial) {
    free(storage);
    free(initial);
    return bn_fail(BNORM_ERR_OUT_OF_MEMORY,
                   "bnorm_layer_build: out of memory for %zu parameters",
                   elements);
  }

  /* Initial values; random initializers without a seed get one per layer
   * and variable so that gamma and beta differ. */
  bn_variable variables[BN_VAR_KINDS];
  for (int v = 0; v < count; v++) {
    bn_variable *var = &variables[v];
    var->kind = kinds[v];
    var->data = storage + (size_t)v * channels * element_size;
    var->trainable = (kinds[v] == BN_VAR_GAMMA || kinds[v] == BN_VAR_BETA) &&
                     !(c->behavior == BNORM_BEHAVIOR_COMPAT_V1 && !c->trainable);
    snprintf(var->full_name, sizeof var->full_name, "%s/%s", layer->name,
             variable_short_names[kinds[v]]);
    const bnorm_initializer *init = NULL;
    switch (kinds[v]) {
      case BN_VAR_GAMMA: init = &c->gamma_initializer; break;
      case BN_VAR_BETA: init = &c->beta_initializer; break;
      case BN_VAR_MOVING_MEAN:
      case BN_VAR_RENORM_MEAN: init = &c->moving_mean_initializer; break;
      default: init = &c->moving_variance_initializer; break;
    }
    status = bn_initializer_fill(init, dtype, initial, channels, param_shape,
                                 param_rank, layer->id * 16 + (uint64_t)v,
                                 variable_short_names[kinds[v]]);
    if (status != BNORM_OK) {
      free(storage);
      free(initial);
      return status;
    }
    /* moving_stddev and renorm_stddev start at sqrt(moving_variance_init). */
    bool root = kinds[v] == BN_VAR_MOVING_STDDEV ||
                kinds[v] == BN_VAR_RENORM_STDDEV;
    for (size_t i = 0; i < channels; i++)
      bn_store(var->data, dtype, i, root ? sqrt(initial[i]) : initial[i]);
  }

  free(initial);

  /* Commit. */
  free(layer->storage);
  layer->storage = storage;
  layer->variable_count = (size_t)count;
  memset(layer->by_kind, 0, sizeof layer->by_kind);
  for (int v = 0; v < count; v++) {
    layer->variables[v] = variables[v];
    layer->by_kind[kinds[v]] = &layer->variables[v];
  }
  layer->rank = rank;
  memcpy(layer->build_shape, input_shape, (size_t)rank * sizeof *input_shape);
  memcpy(layer->normalized, normalized, sizeof normalized);
  layer->channels = channels;
  memcpy(layer->param_shape, param_shape, (size_t)param_rank * sizeof(int64_t));
  layer->param_rank = param_rank;
  layer->fused = fused;
  layer->dtype = dtype;
  layer->epsilon = bn_round(dtype, c->epsilon);
  if (fused && c->fused_epsilon_floor && layer->epsilon <= (double)1.001e-5f)
    layer->epsilon = (double)1.001e-5f;
  /* Keras rewrites self.axis with the resolved list (shifted past the ghost
   * dimension); get_config reports it. */
  for (int i = 0; i < c->axis_count; i++)
    layer->config.axis[i] = axis[i] + (c->virtual_batch_size > 0 ? 1 : 0);
  layer->config.axis_is_list = true;
  layer->built = true;
  bn_clear_error();
  return BNORM_OK;
}

/* ---- variables ---- */

static bnorm_status check_index(const bnorm_layer *layer, size_t index,
                                const char *what) {
  if (!layer)
    return bn_fail(BNORM_ERR_NULL_ARGUMENT, "%s: layer must not be NULL",
                   what);
  if (!layer->built)
    return bn_fail(BNORM_ERR_STATE,
                   "%s: layer '%s' is not built yet; call bnorm_layer_build "
                   "or run a forward call first",
                   what, layer->name);
  if (index >= layer->variable_count)
    return bn_fail(BNORM_ERR_INVALID_ARGUMENT,
                   "%s: variable index %zu is out of range (layer '%s' has "
                   "%zu variables)",
                   what, index, layer->name, layer->variable_count);
  return BNORM_OK;
}

size_t bnorm_layer_variable_count(const bnorm_layer *layer) {
  return layer && layer->built ? layer->variable_count : 0;
}

bnorm_status bnorm_layer_variable_info(const bnorm_layer *layer, size_t index,
                                       bnorm_variable_info *info) {
  bnorm_status status = check_index(layer, index, "bnorm_layer_variable_info");
  if (status != BNORM_OK) return status;
  if (!info)
    return bn_fail(BNORM_ERR_NULL_ARGUMENT,
                   "bnorm_layer_variable_info: info must not be NULL");
  const bn_variable *var = &layer->variables[index];
  memset(info, 0, sizeof *info);
  info->name = var->full_name;
  info->short_name = variable_short_names[var->kind];
  info->rank = layer->param_rank;
  memcpy(info->shape, layer->param_shape,
         (size_t)layer->param_rank * sizeof(int64_t));
  info->count = layer->channels;
  info->trainable = var->trainable;
  bn_clear_error();
  return BNORM_OK;
}

bnorm_status bnorm_layer_find_variable(const bnorm_layer *layer,
                                       const char *name, size_t *index) {
  if (!layer || !name || !index)
    return bn_fail(BNORM_ERR_NULL_ARGUMENT,
                   "bnorm_layer_find_variable: arguments must not be NULL");
  for (size_t i = 0; i < bnorm_layer_variable_count(layer); i++) {
    const bn_variable *var = &layer->variables[i];
    if (strcmp(name, var->full_name) == 0 ||
        strcmp(name, variable_short_names[var->kind]) == 0) {
      *index = i;
      bn_clear_error();
      return BNORM_OK;
    }
  }
  return bn_fail(BNORM_ERR_NOT_FOUND,
                 "bnorm_layer_find_variable: layer '%s' has no variable '%s'%s",
                 layer->name, name, layer->built ? "" : " (it is not built)");
}

void *bnorm_layer_variable_data(bnorm_layer *layer, size_t index) {
  if (check_index(layer, index, "bnorm_layer_variable_data") != BNORM_OK)
    return NULL;
  return layer->variables[index].data;
}

bnorm_status bnorm_layer_get_variable(const bnorm_layer *layer, size_t index,
                                      void *out, size_t count) {
  bnorm_status status = check_index(layer, index, "bnorm_layer_get_variable");
  if (status != BNORM_OK) return status;
  if (!out && count)
    return bn_fail(BNORM_ERR_NULL_ARGUMENT,
                   "bnorm_layer_get_variable: out must not be NULL");
  if (count != layer->channels)
    return bn_fail(BNORM_ERR_SHAPE,
                   "bnorm_layer_get_variable: '%s' has %zu elements, the "
                   "buffer %zu",
                   layer->variables[index].full_name, layer->channels, count);
  if (count)
    memcpy(out, layer->variables[index].data, count * bn_dtype_size(layer->dtype));
  bn_clear_error();
  return BNORM_OK;
}

bnorm_status bnorm_layer_set_variable(bnorm_layer *layer, size_t index,
                                      const void *values, size_t count) {
  bnorm_status status = check_index(layer, index, "bnorm_layer_set_variable");
  if (status != BNORM_OK) return status;
  if (!values && count)
    return bn_fail(BNORM_ERR_NULL_ARGUMENT,
                   "bnorm_layer_set_variable: values must not be NULL");
  if (count != layer->channels)
    return bn_fail(BNORM_ERR_SHAPE,
                   "bnorm_layer_set_variable: '%s' has %zu elements, %zu "
                   "values were given",
                   layer->variables[index].full_name, layer->channels, count);
  if (count)
    memmove(layer->variables[index].data, values,
            count * bn_dtype_size(layer->dtype));
  bn_clear_error();
  return BNORM_OK;
}

size_t bnorm_layer_weights_count(const bnorm_layer *layer) {
  return bnorm_layer_variable_count(layer) * (layer ? layer->channels : 0);
}

static bnorm_status check_weights(const bnorm_layer *layer, const void *data,
                                  size_t count, const char *what) {
  if (!layer)
    return bn_fail(BNORM_ERR_NULL_ARGUMENT, "%s: layer must not be NULL", what);
  if (!layer->built)
    return bn_fail(BNORM_ERR_STATE, "%s: layer '%s' is not built yet", what,
                   layer->name);
  size_t expected = bnorm_layer_weights_count(layer);
  if (!data && expected)
    return bn_fail(BNORM_ERR_NULL_ARGUMENT, "%s: array must not be NULL",
                   what);
  if (count != expected)
    return bn_fail(BNORM_ERR_SHAPE,
                   "%s: layer '%s' has %zu weight values (%zu variables x "
                   "%zu), %zu were given",
                   what, layer->name, expected, layer->variable_count,
                   layer->channels, count);
  return BNORM_OK;
}

bnorm_status bnorm_layer_get_weights(const bnorm_layer *layer, void *out,
                                     size_t count) {
  bnorm_status status = check_weights(layer, out, count, "bnorm_layer_get_weights");
  if (status != BNORM_OK) return status;
  if (count) memcpy(out, layer->storage, count * bn_dtype_size(layer->dtype));
  bn_clear_error();
  return BNORM_OK;
}

bnorm_status bnorm_layer_set_weights(bnorm_layer *layer, const void *values,
                                     size_t count) {
  bnorm_status status = check_weights(layer, values, count, "bnorm_layer_set_weights");
  if (status != BNORM_OK) return status;
  if (count)
    memmove(layer->storage, values, count * bn_dtype_size(layer->dtype));
  bn_clear_error();
  return BNORM_OK;
}

bnorm_status bnorm_layer_set_trainable(bnorm_layer *layer, bool trainable) {
  if (!layer)
    return bn_fail(BNORM_ERR_NULL_ARGUMENT,
                   "bnorm_layer_set_trainable: layer must not be NULL");
  layer->config.trainable = trainable;
  bn_clear_error();
  return BNORM_OK;
}
