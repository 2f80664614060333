#include "ref_bridge.h"

#include <stdlib.h>
#include <string.h>

#include "harness.h"

void ref_to_bnorm_config(bnorm_config *b, const ref_config *r) {
  bnorm_config_init(b);
  b->behavior = r->behavior == REF_COMPAT_V1 ? BNORM_BEHAVIOR_COMPAT_V1 : BNORM_BEHAVIOR_KERAS;
  b->axis_count = r->axis_count;
  for (int i = 0; i < r->axis_count; i++) b->axis[i] = r->axis[i];
  b->axis_is_list = r->axis_count > 1;
  b->momentum = r->momentum;
  b->epsilon = r->epsilon;
  b->center = r->center;
  b->scale = r->scale;
  b->renorm = r->renorm;
  b->renorm_clipping_has_rmax = r->has_rmax;
  b->renorm_clipping_has_rmin = r->has_rmin;
  b->renorm_clipping_has_dmax = r->has_dmax;
  b->renorm_clipping_rmax = r->rmax;
  b->renorm_clipping_rmin = r->rmin;
  b->renorm_clipping_dmax = r->dmax;
  b->renorm_momentum = r->renorm_momentum;
  b->fused = r->fused == REF_FUSED_TRUE    ? BNORM_FUSED_TRUE
             : r->fused == REF_FUSED_FALSE ? BNORM_FUSED_FALSE
                                           : BNORM_FUSED_AUTO;
  b->trainable = r->trainable;
  b->virtual_batch_size = r->virtual_batch_size;
  b->fused_epsilon_floor = r->fused_epsilon_floor;
}

float *ref_random_weights(const ref_layer *ref) {
  int kinds[REF_VAR_KINDS];
  int nk = ref_layer_variable_kinds(ref, kinds);
  size_t C = ref->channels;
  float *w = fmalloc((size_t)nk * C);
  for (int i = 0; i < nk; i++)
    for (size_t c = 0; c < C; c++) {
      double v;
      switch (kinds[i]) {
        case REF_GAMMA: v = 1.0 + 0.5 * th_normal(); break;
        case REF_BETA:
        case REF_MOVING_MEAN:
        case REF_RENORM_MEAN: v = 0.5 * th_normal(); break;
        case REF_MOVING_VARIANCE: v = 0.3 + 1.7 * th_uniform(); break;
        default: v = 0.5 + th_uniform(); break; /* standard deviations */
      }
      w[(size_t)i * C + c] = (float)v;
    }
  return w;
}

int adj_cb(const int64_t *shape, int rank, double *scale, double *bias,
           size_t channels, void *user_data) {
  adj_ctx *a = (adj_ctx *)user_data;
  a->calls++;
  a->rank = rank;
  for (int i = 0; i < rank && i < BNORM_MAX_RANK; i++) a->shape[i] = shape[i];
  if (channels != a->channels) {
    a->bad_channels = true;
    return 1;
  }
  for (size_t c = 0; c < channels; c++) {
    scale[c] = a->scale[c];
    bias[c] = a->bias[c];
  }
  return 0;
}

double *to_double(const float *x, size_t n) {
  double *d = dmalloc(n);
  for (size_t i = 0; i < n; i++) d[i] = (double)x[i];
  return d;
}

double *dmalloc(size_t n) { return (double *)calloc(n ? n : 1, sizeof(double)); }
float *fmalloc(size_t n) { return (float *)calloc(n ? n : 1, sizeof(float)); }

int rand_int(int lo, int hi) { return lo + (int)(th_uniform() * (double)(hi - lo + 1)); }

bnorm_status lib_forward(bnorm_layer *bn, const float *x, float *y,
                         const int64_t *shape, int rank, bool training,
                         bnorm_updates *pending) {
  bnorm_forward_args fa = {.x = x, .y = y, .shape = shape, .rank = rank,
                           .training = training, .pending = pending};
  return bnorm_layer_forward(bn, &fa);
}
