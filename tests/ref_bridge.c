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
  b->dtype = r->float64 ? BNORM_FLOAT64 : BNORM_FLOAT32;
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

void ref_random_case(ref_sweep_case *sc) {
  memset(sc, 0, sizeof *sc);
  ref_config *c = &sc->rc;
  ref_config_init(c);
  c->behavior = th_uniform() < 0.5 ? REF_KERAS : REF_COMPAT_V1;
  int R;
  double pick = th_uniform();
  bool want_fused = pick < 0.35 && th_uniform() < 0.6;
  if (pick < 0.35) {
    /* fused-eligible shapes: rank 4/5 with a single axis */
    R = rand_int(4, 5);
    static const int cand[] = {1, -1, 3, 4, -3, -4, -2, 2};
    int a = cand[rand_int(0, 7)];
    if (a >= R || a < -R) a = -1;
    c->axis[0] = a;
    c->axis_count = 1;
  } else {
    R = rand_int(1, 5);
    if (th_uniform() < 0.6 || R == 1) {
      c->axis[0] = rand_int(-R, R - 1);
      c->axis_count = 1;
    } else {
      int k = 0;
      while (k == 0) {
        k = 0;
        for (int a = 0; a < R; a++)
          if (th_uniform() < 0.5) c->axis[k++] = th_uniform() < 0.3 ? a - R : a;
      }
      /* shuffle: the order given must not matter */
      for (int i = k - 1; i > 0; i--) {
        int j = rand_int(0, i);
        int t = c->axis[i];
        c->axis[i] = c->axis[j];
        c->axis[j] = t;
      }
      c->axis_count = k;
    }
  }
  sc->rank = R;
  bool axis0 = false;
  for (int i = 0; i < c->axis_count; i++)
    if (c->axis[i] == 0 || c->axis[i] == -R) axis0 = true;
  sc->batch_normalized = axis0;
  sc->shape[0] = rand_int(1, 8);
  for (int a = 1; a < R; a++) sc->shape[a] = rand_int(1, 4);
  if (!axis0 && th_uniform() < 0.3) {
    c->virtual_batch_size = rand_int(1, 4);
    sc->shape[0] = c->virtual_batch_size * rand_int(1, 3);
  }
  if (th_uniform() < 0.3) {
    c->renorm = true;
    c->renorm_momentum = th_uniform() < 0.3 ? 0.99 : 0.5 + 0.49 * th_uniform();
    if (th_uniform() < 0.5) { c->has_rmax = true; c->rmax = 1.0 + 0.5 * th_uniform(); }
    if (th_uniform() < 0.5) { c->has_rmin = true; c->rmin = 0.6 + 0.4 * th_uniform(); }
    if (th_uniform() < 0.5) { c->has_dmax = true; c->dmax = 0.5 * th_uniform(); }
  }
  c->adjustment = c->virtual_batch_size == 0 && th_uniform() < 0.25;
  double f = th_uniform();
  c->fused = f < 0.4 ? REF_FUSED_AUTO : f < 0.7 ? REF_FUSED_TRUE : REF_FUSED_FALSE;
  c->center = th_uniform() < 0.8;
  c->scale = th_uniform() < 0.8;
  c->trainable = th_uniform() < 0.8;
  double m = th_uniform();
  c->momentum = m < 0.25 ? 0.99 : m < 0.5 ? 0.9 : m < 0.6 ? 0.5 : th_uniform();
  double e = th_uniform();
  c->epsilon = e < 0.3 ? 1e-3 : e < 0.5 ? 1e-5 : e < 0.6 ? 0.1 : 1e-4 + 0.5 * th_uniform();
  c->fused_epsilon_floor = th_uniform() < 0.2;
  if (want_fused) { /* nothing that rules the fused path out */
    c->renorm = false;
    c->has_rmax = c->has_rmin = c->has_dmax = false;
    c->adjustment = false;
    c->virtual_batch_size = 0;
    if (c->fused == REF_FUSED_FALSE) c->fused = REF_FUSED_AUTO;
  }
  for (int a = 0; a < R; a++) sc->build_shape[a] = sc->shape[a];
  if (!axis0 && th_uniform() < 0.5) sc->build_shape[0] = -1;
}

/* Batch size for a later call. */
int64_t ref_next_batch(const ref_sweep_case *sc, bool training) {
  if (sc->batch_normalized) return sc->shape[0];
  int64_t vbs = sc->rc.virtual_batch_size;
  if (vbs == 0) return rand_int(1, 8);
  /* Keras inference accepts any batch with a virtual batch size */
  bool keras_inference = sc->rc.behavior == REF_KERAS && (!training || !sc->rc.trainable);
  if (keras_inference && th_uniform() < 0.5) return rand_int(1, 8);
  return vbs * rand_int(1, 3);
}
