/* Pending moving-average updates (the page's UPDATE_OPS) and the update rule
 * itself, shared by immediate and deferred application. */
#include "layer_state.h"

#include <stdlib.h>
#include <string.h>

bnorm_status bnorm_updates_create(bnorm_updates **updates) {
  if (!updates)
    return bn_fail(BNORM_ERR_NULL_ARGUMENT,
                   "bnorm_updates_create: updates must not be NULL");
  *updates = calloc(1, sizeof **updates);
  if (!*updates)
    return bn_fail(BNORM_ERR_OUT_OF_MEMORY, "bnorm_updates_create: out of memory");
  bn_clear_error();
  return BNORM_OK;
}

void bnorm_updates_destroy(bnorm_updates *updates) {
  if (!updates) return;
  for (size_t i = 0; i < updates->capacity; i++)
    free(updates->items[i].batch_mean);
  free(updates->items);
  free(updates);
}

size_t bnorm_updates_count(const bnorm_updates *updates) {
  return updates ? updates->count : 0;
}

void bnorm_updates_clear(bnorm_updates *updates) {
  if (updates) updates->count = 0; /* buffers are kept for reuse */
}

bn_update *bn_updates_reserve(bnorm_updates *updates, size_t channels) {
  if (updates->count == updates->capacity) {
    size_t capacity = updates->capacity ? updates->capacity * 2 : 4;
    bn_update *items = realloc(updates->items, capacity * sizeof *items);
    if (!items) return NULL;
    memset(items + updates->capacity, 0,
           (capacity - updates->capacity) * sizeof *items);
    updates->items = items;
    updates->capacity = capacity;
  }
  bn_update *item = &updates->items[updates->count];
  if (item->capacity < channels) {
    double *block = malloc(2 * (channels ? channels : 1) * sizeof(double));
    if (!block) return NULL;
    free(item->batch_mean);
    item->batch_mean = block;
    item->capacity = channels;
  }
  item->batch_second = item->batch_mean + item->capacity;
  item->channels = channels;
  return item;
}

/* Keras _assign_moving_average: v -= (v - value) * decay, each operation
 * rounded to the dtype (bn_round). decay is float32(1 - momentum) for
 * float64 layers too: convert_to_tensor(1.0 - momentum) makes a float32
 * tensor, which is then cast to the variable's dtype. */
BN_VECTORIZED static void moving_average(bnorm_dtype t, void *variable,
                                         const double *value, size_t n,
                                         double decay) {
  if (t == BNORM_FLOAT64) {
    double *v = variable;
    for (size_t i = 0; i < n; i++) v[i] -= (v[i] - value[i]) * decay;
    return;
  }
  /* float32: the same roundings as float arithmetic (value and decay are
   * float32 numbers, and double holds each exact result before it rounds
   * once to float32), which vectorizes on twice the lanes without the
   * conversions to double and back (a dense layer of 4096 features at
   * batch 16 spent 9% of a training call here). */
  float *v = variable, f_decay = (float)decay;
  for (size_t i = 0; i < n; i++) v[i] -= (v[i] - (float)value[i]) * f_decay;
}

/* tf_keras' fused averaging, new = keep * old + f * batch (f * bessel for
 * the variance), in float32. Restrict pointers, so that it vectorizes (the
 * default layer's update: a visible part of a call on a small tensor). */
BN_VECTORIZED static void fused_average(size_t n, float keep, float f,
                                        float f_bessel,
                                        const double *restrict batch_mean,
                                        const double *restrict batch_second,
                                        float *restrict mean,
                                        float *restrict variance) {
  for (size_t i = 0; i < n; i++) {
    mean[i] = keep * mean[i] + f * (float)batch_mean[i];
    variance[i] = keep * variance[i] + f_bessel * (float)batch_second[i];
  }
}

void bn_update_apply(bnorm_layer *layer, const bn_update *update) {
  const bnorm_config *c = &layer->config;
  bnorm_dtype t = layer->dtype;
  size_t n = update->channels;
  void *moving_mean = bn_var(layer, BN_VAR_MOVING_MEAN);
  void *moving_variance = bn_var(layer, BN_VAR_MOVING_VARIANCE);
  double decay = (float)(1.0 - c->momentum);
  if (c->renorm) {
    void *moving_stddev = bn_var(layer, BN_VAR_MOVING_STDDEV);
    double renorm_decay = (float)(1.0 - c->renorm_momentum);
    /* The renorm averages first (they are control dependencies of the
     * moving-statistics updates in TensorFlow). */
    moving_average(t, bn_var(layer, BN_VAR_RENORM_MEAN), update->batch_mean, n,
                   renorm_decay);
    moving_average(t, bn_var(layer, BN_VAR_RENORM_STDDEV),
                   update->batch_second, n, renorm_decay);
    moving_average(t, moving_mean, update->batch_mean, n, decay);
    moving_average(t, moving_stddev, update->batch_second, n, decay);
    for (size_t i = 0; i < n; i++) {
      double stddev = bn_load(moving_stddev, t, i);
      double v = bn_round(t, bn_round(t, stddev * stddev) - layer->epsilon);
      bn_store(moving_variance, t, i, v > 0.0 ? v : 0.0);
    }
    return;
  }
  /* The fused paths are float32 only. */
  float *fused_mean = moving_mean, *fused_variance = moving_variance;
  float bessel = (float)update->bessel;
  if (layer->fused && c->behavior == BNORM_BEHAVIOR_KERAS) {
    /* tf_keras in TF2 lets the fused kernel average (exponential_avg_factor
     * f = 1 - momentum): new = (1 - f) * old + (f * bessel) * batch_var. */
    float f = (float)(1.0 - c->momentum), keep = 1.0f - f;
    float f_bessel = f * bessel;
    if (f == 1.0f) { /* the kernel ignores the old values (even NaN) here */
      for (size_t i = 0; i < n; i++) {
        fused_mean[i] = (float)update->batch_mean[i];
        fused_variance[i] = bessel * (float)update->batch_second[i];
      }
      return;
    }
    fused_average(n, keep, f, f_bessel, update->batch_mean,
                  update->batch_second, fused_mean, fused_variance);
    return;
  }
  if (layer->fused) {
    /* TF1 fused: the op returns the Bessel-corrected variance, then the
     * layer averages it. This path turns momentum into a float32 tensor
     * first, so the decay is 1 - float32(momentum) computed in float32. */
    float fused_decay = 1.0f - (float)c->momentum;
    for (size_t i = 0; i < n; i++) {
      float value = (float)update->batch_second[i] * bessel;
      fused_mean[i] -= (fused_mean[i] - (float)update->batch_mean[i]) * fused_decay;
      fused_variance[i] -= (fused_variance[i] - value) * fused_decay;
    }
    return;
  }
  moving_average(t, moving_mean, update->batch_mean, n, decay);
  moving_average(t, moving_variance, update->batch_second, n, decay);
}

bnorm_status bnorm_layer_apply_updates(bnorm_layer *layer,
                                       bnorm_updates *updates) {
  if (!layer || !updates)
    return bn_fail(BNORM_ERR_NULL_ARGUMENT,
                   "bnorm_layer_apply_updates: layer and updates must not be "
                   "NULL");
  for (size_t i = 0; i < updates->count; i++)
    if (updates->items[i].layer_id != layer->id ||
        updates->items[i].channels != layer->channels)
      return bn_fail(BNORM_ERR_INVALID_ARGUMENT,
                     "bnorm_layer_apply_updates: update %zu was recorded by "
                     "another layer than '%s'; apply each layer's updates to "
                     "that layer",
                     i, layer->name);
  for (size_t i = 0; i < updates->count; i++)
    bn_update_apply(layer, &updates->items[i]);
  updates->count = 0;
  bn_clear_error();
  return BNORM_OK;
}
