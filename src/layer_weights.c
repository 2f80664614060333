/* Regularization losses and constraints of the layer's trainable weights. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

static bnorm_status check_built(const bnorm_layer *layer, const char *what) {
  if (!layer)
    return bn_fail(BNORM_ERR_NULL_ARGUMENT, "%s: layer must not be NULL", what);
  if (!layer->built)
    return bn_fail(BNORM_ERR_STATE,
                   "%s: layer '%s' is not built yet (Keras attaches "
                   "regularizers and constraints at build)",
                   what, layer->name);
  return BNORM_OK;
}

/* A copy of a variable (or of a caller's array of the layer's dtype) in
 * doubles, for the weight functions. */
static void load_doubles(const bnorm_layer *layer, const void *array,
                         double *out) {
  for (size_t i = 0; i < layer->channels; i++)
    out[i] = bn_load(array, layer->dtype, i);
}

bnorm_status bnorm_layer_regularization_losses(const bnorm_layer *layer,
                                               double *losses,
                                               size_t capacity, size_t *count) {
  const char *what = "bnorm_layer_regularization_losses";
  bnorm_status status = check_built(layer, what);
  if (status != BNORM_OK) return status;
  if (!count || (!losses && capacity))
    return bn_fail(BNORM_ERR_NULL_ARGUMENT, "%s: count (and losses when "
                   "capacity > 0) must not be NULL", what);
  const struct { int kind; const bnorm_regularizer *reg; const char *name; }
      order[2] = {{BN_VAR_GAMMA, &layer->config.gamma_regularizer, "gamma_regularizer"},
                  {BN_VAR_BETA, &layer->config.beta_regularizer, "beta_regularizer"}};
  double *weight = malloc((layer->channels ? layer->channels : 1) * sizeof *weight);
  if (!weight) return bn_fail(BNORM_ERR_OUT_OF_MEMORY, "%s: out of memory", what);
  double values[2];
  size_t n = 0;
  for (int i = 0; i < 2 && status == BNORM_OK; i++) {
    const void *w = bn_var(layer, order[i].kind);
    if (!w || order[i].reg->kind == BNORM_REG_NONE) continue;
    load_doubles(layer, w, weight);
    status = bn_regularizer_apply(order[i].reg, layer->dtype, weight,
                                  layer->channels, &values[n], NULL,
                                  order[i].name);
    if (status == BNORM_OK) n++;
  }
  free(weight);
  if (status != BNORM_OK) return status;
  *count = n;
  for (size_t i = 0; i < n && i < capacity; i++) losses[i] = values[i];
  bn_clear_error();
  return BNORM_OK;
}

bnorm_status bnorm_layer_add_regularization_gradients(const bnorm_layer *layer,
                                                      void *dgamma,
                                                      void *dbeta) {
  const char *what = "bnorm_layer_add_regularization_gradients";
  bnorm_status status = check_built(layer, what);
  if (status != BNORM_OK) return status;
  const bnorm_config *c = &layer->config;
  const void *gamma = bn_var(layer, BN_VAR_GAMMA);
  const void *beta = bn_var(layer, BN_VAR_BETA);
  if ((dgamma && !gamma) || (dbeta && !beta))
    return bn_fail(BNORM_ERR_INVALID_ARGUMENT,
                   "%s: a gradient was given for a variable layer '%s' does "
                   "not have (scale/center is false)",
                   what, layer->name);
  size_t n = layer->channels;
  /* The caller's gradients are copied and written back only when every
   * regularizer succeeded, so a callback that fails part-way changes
   * nothing. */
  double *temp = malloc((3 * n + 1) * sizeof *temp);
  if (!temp)
    return bn_fail(BNORM_ERR_OUT_OF_MEMORY, "%s: out of memory", what);
  double *gamma_grad = temp, *beta_grad = temp + n, *weight = temp + 2 * n;
  double loss;
  bool use_gamma = dgamma && c->gamma_regularizer.kind != BNORM_REG_NONE;
  bool use_beta = dbeta && c->beta_regularizer.kind != BNORM_REG_NONE;
  if (use_gamma) {
    load_doubles(layer, dgamma, gamma_grad);
    load_doubles(layer, gamma, weight);
    status = bn_regularizer_apply(&c->gamma_regularizer, layer->dtype, weight,
                                  n, &loss, gamma_grad, "gamma_regularizer");
  }
  if (status == BNORM_OK && use_beta) {
    load_doubles(layer, dbeta, beta_grad);
    load_doubles(layer, beta, weight);
    status = bn_regularizer_apply(&c->beta_regularizer, layer->dtype, weight,
                                  n, &loss, beta_grad, "beta_regularizer");
  }
  if (status == BNORM_OK) {
    for (size_t i = 0; use_gamma && i < n; i++)
      bn_store(dgamma, layer->dtype, i, gamma_grad[i]);
    for (size_t i = 0; use_beta && i < n; i++)
      bn_store(dbeta, layer->dtype, i, beta_grad[i]);
    bn_clear_error();
  }
  free(temp);
  return status;
}

bnorm_status bnorm_layer_apply_constraints(bnorm_layer *layer) {
  const char *what = "bnorm_layer_apply_constraints";
  bnorm_status status = check_built(layer, what);
  if (status != BNORM_OK) return status;
  const bnorm_config *c = &layer->config;
  void *gamma = bn_var(layer, BN_VAR_GAMMA);
  void *beta = bn_var(layer, BN_VAR_BETA);
  bool use_gamma = gamma && c->gamma_constraint.kind != BNORM_CONSTRAINT_NONE;
  bool use_beta = beta && c->beta_constraint.kind != BNORM_CONSTRAINT_NONE;
  size_t n = layer->channels;
  /* Both constraints run on copies, written back only when both succeed. */
  double *temp = malloc((2 * n + 1) * sizeof *temp);
  if (!temp) return bn_fail(BNORM_ERR_OUT_OF_MEMORY, "%s: out of memory", what);
  double *new_gamma = temp, *new_beta = temp + n;
  if (use_gamma) {
    load_doubles(layer, gamma, new_gamma);
    status = bn_constraint_apply(&c->gamma_constraint, layer->dtype, new_gamma,
                                 n, layer->param_shape, layer->param_rank,
                                 "gamma_constraint");
  }
  if (status == BNORM_OK && use_beta) {
    load_doubles(layer, beta, new_beta);
    status = bn_constraint_apply(&c->beta_constraint, layer->dtype, new_beta,
                                 n, layer->param_shape, layer->param_rank,
                                 "beta_constraint");
  }
  if (status == BNORM_OK) {
    for (size_t i = 0; use_gamma && i < n; i++)
      bn_store(gamma, layer->dtype, i, new_gamma[i]);
    for (size_t i = 0; use_beta && i < n; i++)
      bn_store(beta, layer->dtype, i, new_beta[i]);
    bn_clear_error();
  }
  free(temp);
  return status;
}
