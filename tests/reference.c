/*
 * reference.c — independent fp64 reference of Keras BatchNormalization.
 * See reference.h. Sources: spec §1.3-§1.5 (build), §3 (training forward),
 * §4 (moving averages), §5 (inference), §6.1 (fused rules), §7 (renorm),
 * §8 (ghost batches), §9 (adjustment), §10.2 (trainable), §11 (gradients),
 * and tf_keras 2.21 BatchNormalizationBase.__init__/build/call/
 * _fused_batch_norm/_renorm_correction_and_moments.
 */
#include "reference.h"

#include "harness.h"

#include <bnorm.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const ref_var_names[REF_VAR_KINDS] = {
    "gamma", "beta", "moving_mean", "moving_variance",
    "moving_stddev", "renorm_mean", "renorm_stddev"};

static char ref_err_buf[512];

const char *ref_error(void) { return ref_err_buf; }

static int fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(ref_err_buf, sizeof ref_err_buf, fmt, ap);
  va_end(ap);
  return 1;
}

size_t ref_shape_count(const int64_t *shape, int rank) {
  size_t n = 1;
  for (int i = 0; i < rank; i++) n *= (size_t)(shape[i] < 0 ? 0 : shape[i]);
  return n;
}

/* ------------------------------------------------------------------------ */
/* Configuration                                                            */
/* ------------------------------------------------------------------------ */

void ref_config_init(ref_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->behavior = REF_KERAS;
  cfg->axis[0] = -1;
  cfg->axis_count = 1;
  cfg->momentum = 0.99;
  cfg->epsilon = 1e-3;
  cfg->center = true;
  cfg->scale = true;
  cfg->renorm_momentum = 0.99;
  cfg->fused = REF_FUSED_AUTO;
  cfg->trainable = true;
}

void ref_config_from_bnorm(ref_config *out, const struct bnorm_config *c) {
  ref_config_init(out);
  out->behavior = c->behavior == BNORM_BEHAVIOR_COMPAT_V1 ? REF_COMPAT_V1 : REF_KERAS;
  out->axis_count = c->axis_count;
  for (int i = 0; i < c->axis_count && i < REF_MAX_RANK; i++) out->axis[i] = c->axis[i];
  out->momentum = c->momentum;
  out->epsilon = c->epsilon;
  out->center = c->center;
  out->scale = c->scale;
  out->renorm = c->renorm;
  out->has_rmax = c->renorm_clipping_has_rmax;
  out->has_rmin = c->renorm_clipping_has_rmin;
  out->has_dmax = c->renorm_clipping_has_dmax;
  out->rmax = c->renorm_clipping_rmax;
  out->rmin = c->renorm_clipping_rmin;
  out->dmax = c->renorm_clipping_dmax;
  out->renorm_momentum = c->renorm_momentum;
  out->fused = c->fused == BNORM_FUSED_TRUE    ? REF_FUSED_TRUE
               : c->fused == BNORM_FUSED_FALSE ? REF_FUSED_FALSE
                                               : REF_FUSED_AUTO;
  out->trainable = c->trainable;
  out->virtual_batch_size = c->virtual_batch_size;
  out->adjustment = c->adjustment != NULL;
  out->fused_epsilon_floor = c->fused_epsilon_floor;
  out->float64 = c->dtype == BNORM_FLOAT64;
}

/* tf_keras _raise_if_fused_cannot_be_used on a given axis list (the
 * unresolved one at __init__, the resolved one at build in V1). */
static bool fused_can_be_used(const ref_config *cfg, const int *axis, int count) {
  if (cfg->renorm) return false;
  if (count != 1) return false;
  int a = axis[0];
  if (!(a == -4 || a == -3 || a == -1 || a == 1 || a == 3 || a == 4)) return false;
  if (cfg->virtual_batch_size != 0) return false;
  if (cfg->adjustment) return false;
  return !cfg->float64; /* fused kernels are float16/32 only */
}

/* ------------------------------------------------------------------------ */
/* Build                                                                    */
/* ------------------------------------------------------------------------ */

void ref_layer_free(ref_layer *layer) {
  if (!layer) return;
  for (int k = 0; k < REF_VAR_KINDS; k++) free(layer->var[k]);
  memset(layer, 0, sizeof *layer);
}

static bool var_exists(const ref_config *cfg, int kind) {
  switch (kind) {
    case REF_GAMMA: return cfg->scale;
    case REF_BETA: return cfg->center;
    case REF_MOVING_MEAN:
    case REF_MOVING_VARIANCE: return true;
    default: return cfg->renorm;
  }
}

int ref_layer_build(ref_layer *layer, const ref_config *cfg,
                    const int64_t *input_shape, int rank) {
  memset(layer, 0, sizeof *layer);
  ref_config c = *cfg;

  /* ---- __init__ ---- */
  if (c.axis_count < 1 || c.axis_count > REF_MAX_RANK) return fail("axis count");
  int fused_mode = c.fused; /* AUTO, TRUE, FALSE; decided below */
  if (c.behavior == REF_KERAS) {
    if (fused_mode == REF_FUSED_TRUE) {
      if (!fused_can_be_used(&c, c.axis, c.axis_count))
        return fail("keras: fused=True cannot be used with this configuration");
    } else if (fused_mode == REF_FUSED_AUTO && !fused_can_be_used(&c, c.axis, c.axis_count)) {
      fused_mode = REF_FUSED_FALSE;
    }
  } else if (fused_mode == REF_FUSED_AUTO) {
    fused_mode = REF_FUSED_TRUE;
  }
  if (c.renorm) {
    /* renorm_clipping keys are a closed set by construction here */
  }

  /* ---- build: validate_axis ---- */
  if (rank < 1 || rank > REF_MAX_RANK) return fail("Input has undefined rank (rank %d)", rank);
  int axes[REF_MAX_RANK];
  for (int i = 0; i < c.axis_count; i++) {
    int a = c.axis[i];
    if (a < 0) a += rank;
    if (a < 0 || a >= rank) return fail("Invalid axis %d for rank %d", c.axis[i], rank);
    axes[i] = a;
  }
  for (int i = 0; i < c.axis_count; i++)
    for (int j = 0; j < i; j++)
      if (axes[i] == axes[j]) return fail("Duplicate axis %d", axes[i]);

  /* ---- virtual batch checks ---- */
  if (c.virtual_batch_size != 0) {
    if (c.virtual_batch_size < 0) return fail("virtual_batch_size must be positive");
    for (int i = 0; i < c.axis_count; i++)
      if (axes[i] == 0) return fail("virtual_batch_size with axis 0");
    if (c.adjustment) return fail("virtual_batch_size with adjustment");
  }

  /* ---- fused decision ---- */
  bool fused = false;
  if (fused_mode == REF_FUSED_AUTO || fused_mode == REF_FUSED_TRUE) {
    if (c.behavior == REF_KERAS) {
      if (fused_mode == REF_FUSED_AUTO) {
        fused = (rank == 4 || rank == 5);
      } else {
        if (!(rank == 4 || rank == 5)) return fail("fused=True only supports 4D or 5D input");
        fused = true;
      }
    } else {
      fused = (rank == 4 || rank == 5) && fused_can_be_used(&c, axes, c.axis_count);
    }
  }
  if (fused) {
    bool single = c.axis_count == 1;
    if (single && axes[0] == 1 && rank == 4) {
      /* NCHW */
    } else if (single && axes[0] == 1 && rank == 5) {
      /* NCDHW */
    } else if (single && axes[0] == 3 && rank == 4) {
      /* NHWC */
    } else if (single && axes[0] == 4 && rank == 5) {
      /* NDHWC */
    } else if (rank == 5) {
      fused = false;
    } else {
      return fail("Unsupported axis for fused=True with a 4D input");
    }
  }

  /* ---- shapes ---- */
  for (int i = 0; i < c.axis_count; i++)
    if (input_shape[axes[i]] < 0) return fail("Input has undefined `axis` dimension");

  layer->cfg = c;
  layer->rank = rank;
  for (int i = 0; i < rank; i++) layer->build_shape[i] = input_shape[i];
  /* resolved axes in increasing order */
  for (int i = 0; i < c.axis_count; i++) layer->is_axis[axes[i]] = true;
  layer->naxes = 0;
  for (int a = 0; a < rank; a++)
    if (layer->is_axis[a]) layer->axes[layer->naxes++] = a;

  size_t channels = 1;
  for (int i = 0; i < layer->naxes; i++) channels *= (size_t)input_shape[layer->axes[i]];
  layer->channels = channels;

  if (layer->naxes == 1 && c.virtual_batch_size == 0) {
    layer->param_rank = 1;
    layer->param_shape[0] = input_shape[layer->axes[0]];
  } else {
    int k = 0;
    for (int a = 0; a < rank; a++) {
      layer->param_shape[k++] = layer->is_axis[a] ? input_shape[a] : 1;
      if (a == 0 && c.virtual_batch_size != 0) layer->param_shape[k++] = 1;
    }
    layer->param_rank = k;
  }
  layer->fused = fused;
  layer->fused_epsilon = c.epsilon;
  if (c.fused_epsilon_floor && !(c.epsilon > 1.001e-5)) layer->fused_epsilon = 1.001e-5;

  /* ---- variables with Keras default initial values ---- */
  for (int k = 0; k < REF_VAR_KINDS; k++) {
    if (!var_exists(&c, k)) continue;
    layer->var[k] = (double *)malloc((channels ? channels : 1) * sizeof(double));
    if (!layer->var[k]) {
      ref_layer_free(layer);
      return fail("out of memory");
    }
    double init = (k == REF_BETA || k == REF_MOVING_MEAN || k == REF_RENORM_MEAN) ? 0.0 : 1.0;
    for (size_t i = 0; i < channels; i++) layer->var[k][i] = init;
  }
  return 0;
}

int ref_layer_clone(ref_layer *dst, const ref_layer *src) {
  *dst = *src;
  for (int k = 0; k < REF_VAR_KINDS; k++) {
    dst->var[k] = NULL;
    if (!src->var[k]) continue;
    size_t n = src->channels ? src->channels : 1;
    dst->var[k] = (double *)malloc(n * sizeof(double));
    if (!dst->var[k]) {
      ref_layer_free(dst);
      return fail("out of memory");
    }
    memcpy(dst->var[k], src->var[k], n * sizeof(double));
  }
  return 0;
}

int ref_layer_variable_kinds(const ref_layer *layer, int kinds[REF_VAR_KINDS]) {
  int n = 0;
  for (int k = 0; k < REF_VAR_KINDS; k++)
    if (layer->var[k]) kinds[n++] = k;
  return n;
}

size_t ref_layer_weights_count(const ref_layer *layer) {
  int kinds[REF_VAR_KINDS];
  return (size_t)ref_layer_variable_kinds(layer, kinds) * layer->channels;
}

void ref_layer_set_weights_f(ref_layer *layer, const float *values) {
  int kinds[REF_VAR_KINDS];
  int n = ref_layer_variable_kinds(layer, kinds);
  for (int i = 0; i < n; i++)
    for (size_t c = 0; c < layer->channels; c++)
      layer->var[kinds[i]][c] = (double)values[(size_t)i * layer->channels + c];
}

bool ref_layer_gamma_beta_trainable(const ref_layer *layer) {
  /* compat_v1 base.Layer.add_weight: trainable = trainable and self.trainable */
  return layer->cfg.behavior == REF_KERAS || layer->cfg.trainable;
}

double ref_layer_epsilon(const ref_layer *layer) {
  return layer->fused ? layer->fused_epsilon : layer->cfg.epsilon;
}

bool ref_uses_batch_stats(const ref_layer *layer, bool training) {
  /* _get_training_value: V2 forces training=False when not trainable. */
  if (layer->cfg.behavior == REF_KERAS && !layer->cfg.trainable) return false;
  return training;
}

bool ref_makes_updates(const ref_layer *layer, bool training) {
  /* Keras: frozen => inference => no update ops. compat_v1: update ops of a
   * non-trainable layer are dropped (layer.updates == []). */
  return ref_uses_batch_stats(layer, training) && layer->cfg.trainable;
}

/* ------------------------------------------------------------------------ */
/* Updates                                                                  */
/* ------------------------------------------------------------------------ */

void ref_update_free(ref_update *u) {
  if (!u) return;
  free(u->mean_value);
  free(u->var_value);
  memset(u, 0, sizeof *u);
}

/* decay = 1 - momentum computed in double, made a float32 tensor by
 * convert_to_tensor and cast to the variable's dtype (tf_keras
 * _assign_moving_average): float32-rounded for float64 layers too. */
static double decay_of(double momentum) { return (double)(float)(1.0 - momentum); }

/* EMA(v, value, m): v <- v - (v - value) * decay */
static double ema(double v, double value, double momentum) {
  return v - (v - value) * decay_of(momentum);
}

void ref_apply_update(ref_layer *layer, const ref_update *u) {
  if (!u || !u->present) return;
  const ref_config *c = &layer->cfg;
  double *mm = layer->var[REF_MOVING_MEAN], *mv = layer->var[REF_MOVING_VARIANCE];
  for (size_t ch = 0; ch < u->channels; ch++) {
    double mean = u->mean_value[ch], var = u->var_value[ch];
    if (c->renorm) {
      /* _renorm_correction_and_moments: renorm vars with renorm_momentum,
       * then moving_mean / moving_stddev with momentum, moving_variance
       * assigned relu(ms^2 - eps). */
      double stddev = sqrt(var + c->epsilon);
      double *rm = layer->var[REF_RENORM_MEAN], *rs = layer->var[REF_RENORM_STDDEV];
      double *ms = layer->var[REF_MOVING_STDDEV];
      rm[ch] = ema(rm[ch], mean, c->renorm_momentum);
      rs[ch] = ema(rs[ch], stddev, c->renorm_momentum);
      mm[ch] = ema(mm[ch], mean, c->momentum);
      ms[ch] = ema(ms[ch], stddev, c->momentum);
      double v = ms[ch] * ms[ch] - c->epsilon;
      mv[ch] = v > 0.0 ? v : 0.0;
    } else if (layer->fused && c->behavior == REF_KERAS) {
      /* in-kernel exponential_avg_factor form: (1-f)*old + f*mean,
       * (1-f)*old + (f*adj)*var_biased, f = float32(1 - momentum),
       * 1 - f computed in float32. */
      float f32 = (float)(1.0 - c->momentum);
      double f = (double)f32;
      double omf = (double)(1.0f - f32);
      mm[ch] = omf * mm[ch] + f * mean;
      mv[ch] = omf * mv[ch] + (f * u->bessel) * var;
    } else if (layer->fused) {
      /* compat_v1 (graph) fused: EMA of the Bessel-corrected batch
       * variance; tf_keras converts momentum to a float32 tensor first, so
       * decay = 1.0f - float32(momentum), computed in float32. */
      double decay = (double)(1.0f - (float)c->momentum);
      mm[ch] = mm[ch] - (mm[ch] - mean) * decay;
      mv[ch] = mv[ch] - (mv[ch] - var * u->bessel) * decay;
    } else {
      /* non-fused EMA (Python float momentum) */
      mm[ch] = ema(mm[ch], mean, c->momentum);
      mv[ch] = ema(mv[ch], var, c->momentum);
    }
  }
}

void ref_variable_magnitude(const ref_layer *layer, int kind, double *mag) {
  for (size_t c = 0; c < layer->channels; c++) {
    mag[c] = 0.0;
    if (kind == REF_MOVING_VARIANCE && layer->cfg.renorm) {
      double ms = layer->var[REF_MOVING_STDDEV][c];
      mag[c] = ms * ms + layer->cfg.epsilon;
    }
  }
}

void ref_saved_free(ref_saved *s) {
  if (!s) return;
  free(s->mean);
  free(s->var);
  free(s->rho);
  free(s->r);
  free(s->d);
  free(s->adj_scale);
  free(s->adj_bias);
  free(s->gamma);
  free(s->beta);
  memset(s, 0, sizeof *s);
}

/* ------------------------------------------------------------------------ */
/* The work tensor: the input after the (explicit) ghost-batch reshape.     */
/* ------------------------------------------------------------------------ */

enum { ROLE_REDUCE = 0, ROLE_CHANNEL = 1, ROLE_GROUP = 2 };

typedef struct geom {
  int wrank;
  int64_t wshape[REF_MAX_RANK + 1];
  int role[REF_MAX_RANK + 1];
  int64_t groups;
  size_t channels;
  size_t total;
  int64_t n_per_stat; /* elements reduced into one (group, channel) statistic */
} geom;

static int make_geom(const ref_layer *layer, const int64_t *shape, int rank,
                     bool batch_stats, geom *g) {
  memset(g, 0, sizeof *g);
  if (rank != layer->rank) return fail("rank %d differs from the built rank %d", rank, layer->rank);
  for (int a = 0; a < rank; a++) {
    if (shape[a] < 0) return fail("negative size");
    if (layer->is_axis[a] && shape[a] != layer->build_shape[a])
      return fail("axis %d has size %lld, built with %lld", a, (long long)shape[a],
                  (long long)layer->build_shape[a]);
  }
  g->total = ref_shape_count(shape, rank);
  g->channels = layer->channels;
  int64_t vbs = layer->cfg.virtual_batch_size;
  if (vbs == 0) {
    g->wrank = rank;
    for (int a = 0; a < rank; a++) {
      g->wshape[a] = shape[a];
      g->role[a] = layer->is_axis[a] ? ROLE_CHANNEL : ROLE_REDUCE;
    }
    g->groups = 1;
  } else {
    /* tf.reshape(x, [vbs, -1, d1, ...]) in training (and in compat_v1
     * inference); [-1, 1, d1, ...] in Keras (TF2) inference. */
    int64_t B = shape[0];
    int64_t outer, inner;
    if (batch_stats || layer->cfg.behavior == REF_COMPAT_V1) {
      if (B % vbs != 0) return fail("virtual_batch_size %lld does not divide the batch %lld",
                                    (long long)vbs, (long long)B);
      outer = vbs;
      inner = B / vbs;
    } else {
      outer = B;
      inner = 1;
    }
    g->wrank = rank + 1;
    g->wshape[0] = outer;
    g->role[0] = ROLE_REDUCE;
    g->wshape[1] = inner;
    g->role[1] = ROLE_GROUP;
    for (int a = 1; a < rank; a++) {
      g->wshape[a + 1] = shape[a];
      g->role[a + 1] = layer->is_axis[a] ? ROLE_CHANNEL : ROLE_REDUCE;
    }
    g->groups = inner;
  }
  size_t denom = (size_t)g->groups * g->channels;
  g->n_per_stat = denom ? (int64_t)(g->total / denom) : 0;
  return 0;
}

/* Decodes linear index n (row-major over the work shape) into the channel
 * index (row-major over the channel axes) and the ghost group. */
static void locate(const geom *g, size_t n, size_t *channel, size_t *group) {
  int64_t idx[REF_MAX_RANK + 1];
  size_t rem = n;
  for (int a = g->wrank - 1; a >= 0; a--) {
    idx[a] = (int64_t)(rem % (size_t)g->wshape[a]);
    rem /= (size_t)g->wshape[a];
  }
  size_t c = 0, grp = 0;
  for (int a = 0; a < g->wrank; a++) {
    if (g->role[a] == ROLE_CHANNEL) c = c * (size_t)g->wshape[a] + (size_t)idx[a];
    if (g->role[a] == ROLE_GROUP) grp = (size_t)idx[a];
  }
  *channel = c;
  *group = grp;
}

/* ------------------------------------------------------------------------ */
/* Forward                                                                  */
/* ------------------------------------------------------------------------ */

static double *dalloc(size_t n) { return (double *)calloc(n ? n : 1, sizeof(double)); }

int ref_forward(const ref_layer *layer, const ref_forward_args *args, double *y,
                double *y_mag, ref_update *upd, ref_saved *saved) {
  if (upd) memset(upd, 0, sizeof *upd);
  if (saved) memset(saved, 0, sizeof *saved);
  const ref_config *cfg = &layer->cfg;
  bool batch = ref_uses_batch_stats(layer, args->training);
  geom g;
  if (make_geom(layer, args->shape, args->rank, batch, &g)) return 1;
  size_t C = g.channels, G = (size_t)g.groups, GC = G * C;
  double eps = ref_layer_epsilon(layer);

  double *mean = dalloc(GC), *var = dalloc(GC), *rho = dalloc(GC);
  double *r = dalloc(C), *d = dalloc(C), *as = dalloc(C), *ab = dalloc(C);
  double *gam = dalloc(C), *bet = dalloc(C), *mean_avg = dalloc(C), *var_avg = dalloc(C);
  if (!mean || !var || !rho || !r || !d || !as || !ab || !gam || !bet || !mean_avg || !var_avg) {
    free(mean); free(var); free(rho); free(r); free(d); free(as); free(ab);
    free(gam); free(bet); free(mean_avg); free(var_avg);
    return fail("out of memory");
  }
  for (size_t c = 0; c < C; c++) {
    r[c] = 1.0;
    d[c] = 0.0;
    as[c] = 1.0;
    ab[c] = 0.0;
    gam[c] = layer->var[REF_GAMMA] ? layer->var[REF_GAMMA][c] : 1.0;
    bet[c] = layer->var[REF_BETA] ? layer->var[REF_BETA][c] : 0.0;
  }

  if (batch) {
    /* nn.moments: two-pass mean and biased variance per (group, channel). */
    for (size_t n = 0; n < g.total; n++) {
      size_t c, grp;
      locate(&g, n, &c, &grp);
      mean[grp * C + c] += args->x[n];
    }
    for (size_t k = 0; k < GC; k++) mean[k] /= (double)g.n_per_stat;
    for (size_t n = 0; n < g.total; n++) {
      size_t c, grp;
      locate(&g, n, &c, &grp);
      double dev = args->x[n] - mean[grp * C + c];
      var[grp * C + c] += dev * dev;
    }
    for (size_t k = 0; k < GC; k++) var[k] /= (double)g.n_per_stat;
    for (size_t k = 0; k < GC; k++) rho[k] = 1.0 / sqrt(var[k] + eps);

    /* Values fed to the moving averages: mean over the ghost groups. */
    for (size_t c = 0; c < C; c++) {
      double sm = 0.0, sv = 0.0;
      for (size_t grp = 0; grp < G; grp++) {
        sm += mean[grp * C + c];
        sv += var[grp * C + c];
      }
      mean_avg[c] = sm / (double)G;
      var_avg[c] = sv / (double)G;
    }

    if (cfg->adjustment) {
      if (!args->adj_scale || !args->adj_bias) {
        free(mean); free(var); free(rho); free(r); free(d); free(as); free(ab);
        free(gam); free(bet); free(mean_avg); free(var_avg);
        return fail("adjustment values missing");
      }
      for (size_t c = 0; c < C; c++) {
        as[c] = args->adj_scale[c];
        ab[c] = args->adj_bias[c];
      }
    }

    if (cfg->renorm) {
      const double *rm = layer->var[REF_RENORM_MEAN], *rs = layer->var[REF_RENORM_STDDEV];
      for (size_t c = 0; c < C; c++) {
        double stddev = sqrt(var_avg[c] + cfg->epsilon);
        double sr = rs[c] > sqrt(cfg->epsilon) ? rs[c] : sqrt(cfg->epsilon);
        double rc = stddev / sr;
        double dc = (mean_avg[c] - rm[c]) / sr;
        if (cfg->has_rmin) rc = rc > cfg->rmin ? rc : cfg->rmin;
        if (cfg->has_rmax) rc = rc < cfg->rmax ? rc : cfg->rmax;
        if (cfg->has_dmax) {
          dc = dc > -cfg->dmax ? dc : -cfg->dmax;
          dc = dc < cfg->dmax ? dc : cfg->dmax;
        }
        r[c] = rc;
        d[c] = dc;
      }
      if (args->fixed_r)
        for (size_t c = 0; c < C; c++) r[c] = args->fixed_r[c];
      if (args->fixed_d)
        for (size_t c = 0; c < C; c++) d[c] = args->fixed_d[c];
    }
  } else {
    /* Inference: the moving statistics (grouping irrelevant, G may be > 1
     * only in compat_v1 where the reshape is still done). */
    for (size_t grp = 0; grp < G; grp++)
      for (size_t c = 0; c < C; c++) {
        mean[grp * C + c] = layer->var[REF_MOVING_MEAN][c];
        var[grp * C + c] = layer->var[REF_MOVING_VARIANCE][c];
        rho[grp * C + c] = 1.0 / sqrt(var[grp * C + c] + eps);
      }
  }

  /* y = gamma * (a_s * (r * xhat + d) + a_b) + beta */
  for (size_t n = 0; n < g.total; n++) {
    size_t c, grp;
    locate(&g, n, &c, &grp);
    size_t k = grp * C + c;
    double xhat = (args->x[n] - mean[k]) * rho[k];
    y[n] = gam[c] * (as[c] * (r[c] * xhat + d[c]) + ab[c]) + bet[c];
    if (y_mag)
      y_mag[n] = fabs(gam[c] * as[c] * r[c] * rho[k]) * (fabs(args->x[n]) + fabs(mean[k])) +
                 fabs(gam[c] * as[c] * d[c]) + fabs(gam[c] * ab[c]) + fabs(bet[c]);
  }

  if (upd && batch && ref_makes_updates(layer, args->training)) {
    upd->present = true;
    upd->channels = C;
    upd->mean_value = dalloc(C);
    upd->var_value = dalloc(C);
    if (!upd->mean_value || !upd->var_value) {
      ref_update_free(upd);
      free(mean); free(var); free(rho); free(r); free(d); free(as); free(ab);
      free(gam); free(bet); free(mean_avg); free(var_avg);
      return fail("out of memory");
    }
    memcpy(upd->mean_value, mean_avg, C * sizeof(double));
    memcpy(upd->var_value, var_avg, C * sizeof(double));
    upd->bessel = 1.0;
    if (layer->fused) {
      /* FusedBatchNorm: batch_var = var * N / max(N - 1, 1), N = elements
       * per channel. */
      double N = C ? (double)(g.total / C) : 0.0;
      upd->bessel = N / (N - 1.0 > 1.0 ? N - 1.0 : 1.0);
    }
  }

  if (saved) {
    saved->batch_stats = batch;
    saved->channels = C;
    saved->groups = g.groups;
    saved->n_per_stat = g.n_per_stat;
    saved->epsilon = eps;
    saved->mean = mean;
    saved->var = var;
    saved->rho = rho;
    saved->r = r;
    saved->d = d;
    saved->adj_scale = as;
    saved->adj_bias = ab;
    saved->gamma = gam;
    saved->beta = bet;
  } else {
    free(mean); free(var); free(rho); free(r); free(d); free(as); free(ab);
    free(gam); free(bet);
  }
  free(mean_avg);
  free(var_avg);
  return 0;
}

int ref_forward_immediate(ref_layer *layer, const ref_forward_args *args,
                          double *y, double *y_mag, ref_saved *saved) {
  ref_update u;
  if (ref_forward(layer, args, y, y_mag, &u, saved)) return 1;
  ref_apply_update(layer, &u);
  ref_update_free(&u);
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Backward                                                                 */
/* ------------------------------------------------------------------------ */

int ref_backward(const ref_saved *s, const ref_layer *layer,
                 const double *x, const double *dy, const int64_t *shape,
                 int rank, double *dx, double *dgamma, double *dbeta,
                 double *dx_mag, double *dgamma_mag, double *dbeta_mag) {
  geom g;
  if (make_geom(layer, shape, rank, s->batch_stats, &g)) return 1;
  size_t C = g.channels, G = (size_t)g.groups, GC = G * C;
  if (C != s->channels || g.groups != s->groups) return fail("saved does not match the shape");
  double *mdy = dalloc(GC), *mdyx = dalloc(GC), *mady = dalloc(GC), *madyx = dalloc(GC);
  if (!mdy || !mdyx || !mady || !madyx) {
    free(mdy); free(mdyx); free(mady); free(madyx);
    return fail("out of memory");
  }
  if (dgamma) memset(dgamma, 0, C * sizeof(double));
  if (dbeta) memset(dbeta, 0, C * sizeof(double));
  if (dgamma_mag) memset(dgamma_mag, 0, C * sizeof(double));
  if (dbeta_mag) memset(dbeta_mag, 0, C * sizeof(double));

  /* group means of dy and dy * xhat */
  for (size_t n = 0; n < g.total; n++) {
    size_t c, grp;
    locate(&g, n, &c, &grp);
    size_t k = grp * C + c;
    double xhat = (x[n] - s->mean[k]) * s->rho[k];
    mdy[k] += dy[n];
    mdyx[k] += dy[n] * xhat;
    mady[k] += fabs(dy[n]);
    madyx[k] += fabs(dy[n] * xhat);
  }
  for (size_t k = 0; k < GC; k++) {
    mdy[k] /= (double)s->n_per_stat;
    mdyx[k] /= (double)s->n_per_stat;
    mady[k] /= (double)s->n_per_stat;
    madyx[k] /= (double)s->n_per_stat;
  }

  for (size_t n = 0; n < g.total; n++) {
    size_t c, grp;
    locate(&g, n, &c, &grp);
    size_t k = grp * C + c;
    double xhat = (x[n] - s->mean[k]) * s->rho[k];
    if (s->batch_stats) {
      /* s = gamma * a_s * r (r, d, adjustment are constants) */
      double sc = s->gamma[c] * s->adj_scale[c] * s->r[c];
      if (dx) dx[n] = sc * s->rho[k] * (dy[n] - mdy[k] - xhat * mdyx[k]);
      if (dx_mag)
        dx_mag[n] = fabs(sc * s->rho[k]) * (fabs(dy[n]) + mady[k] + fabs(xhat) * madyx[k]);
      double t = s->adj_scale[c] * (s->r[c] * xhat + s->d[c]) + s->adj_bias[c];
      if (dgamma) dgamma[c] += dy[n] * t;
      if (dgamma_mag)
        dgamma_mag[c] += fabs(dy[n]) * (fabs(s->adj_scale[c]) * (fabs(s->r[c] * xhat) + fabs(s->d[c])) +
                                        fabs(s->adj_bias[c]));
    } else {
      if (dx) dx[n] = dy[n] * s->gamma[c] * s->rho[k];
      if (dx_mag) dx_mag[n] = fabs(dy[n] * s->gamma[c] * s->rho[k]);
      if (dgamma) dgamma[c] += dy[n] * xhat;
      if (dgamma_mag) dgamma_mag[c] += fabs(dy[n] * xhat);
    }
    if (dbeta) dbeta[c] += dy[n];
    if (dbeta_mag) dbeta_mag[c] += fabs(dy[n]);
  }
  free(mdy);
  free(mdyx);
  free(mady);
  free(madyx);
  return 0;
}

/* L = sum(dy * y) with r, d, adjustment fixed to the saved values. */
static int fd_loss(const ref_layer *layer, const ref_forward_args *args,
                   const ref_saved *s, const double *dy, double *y, double *loss) {
  ref_forward_args a = *args;
  if (s->batch_stats && layer->cfg.renorm) {
    a.fixed_r = s->r;
    a.fixed_d = s->d;
  }
  if (s->batch_stats && layer->cfg.adjustment) {
    a.adj_scale = s->adj_scale;
    a.adj_bias = s->adj_bias;
  }
  if (ref_forward(layer, &a, y, NULL, NULL, NULL)) return 1;
  size_t n = ref_shape_count(args->shape, args->rank);
  double L = 0.0;
  for (size_t i = 0; i < n; i++) L += dy[i] * y[i];
  *loss = L;
  return 0;
}

int ref_fd_gradients(const ref_layer *layer, const ref_forward_args *args,
                     const ref_saved *s, const double *dy, double step,
                     double *dx, double *dgamma, double *dbeta) {
  size_t n = ref_shape_count(args->shape, args->rank);
  double *xw = dalloc(n), *y = dalloc(n);
  ref_layer work;
  if (!xw || !y || ref_layer_clone(&work, layer)) {
    free(xw);
    free(y);
    return fail("out of memory");
  }
  int rc = 0;
  memcpy(xw, args->x, n * sizeof(double));
  ref_forward_args a = *args;
  a.x = xw;
  double lp, lm;
  if (dx) {
    for (size_t i = 0; i < n && !rc; i++) {
      double h = step * (fabs(xw[i]) > 1.0 ? fabs(xw[i]) : 1.0);
      double x0 = xw[i];
      xw[i] = x0 + h;
      rc |= fd_loss(&work, &a, s, dy, y, &lp);
      xw[i] = x0 - h;
      rc |= fd_loss(&work, &a, s, dy, y, &lm);
      xw[i] = x0;
      dx[i] = (lp - lm) / (2.0 * h);
    }
  }
  for (int which = 0; which < 2 && !rc; which++) {
    double *out = which == 0 ? dgamma : dbeta;
    double *v = work.var[which == 0 ? REF_GAMMA : REF_BETA];
    if (!out || !v) continue;
    for (size_t c = 0; c < work.channels && !rc; c++) {
      double h = step * (fabs(v[c]) > 1.0 ? fabs(v[c]) : 1.0);
      double v0 = v[c];
      v[c] = v0 + h;
      rc |= fd_loss(&work, &a, s, dy, y, &lp);
      v[c] = v0 - h;
      rc |= fd_loss(&work, &a, s, dy, y, &lm);
      v[c] = v0;
      out[c] = (lp - lm) / (2.0 * h);
    }
  }
  ref_layer_free(&work);
  free(xw);
  free(y);
  return rc;
}

/* ------------------------------------------------------------------------ */
/* Comparison                                                               */
/* ------------------------------------------------------------------------ */

static double close_excess(const void *got, bool got_is_double, const double *want,
                           const double *mag, size_t n, double rtol, double rounding,
                           size_t *worst) {
  double scale = 0.0;
  for (size_t i = 0; i < n; i++)
    if (fabs(want[i]) > scale) scale = fabs(want[i]);
  double worst_excess = -INFINITY;
  size_t wi = 0;
  for (size_t i = 0; i < n; i++) {
    double g = got_is_double ? ((const double *)got)[i] : (double)((const float *)got)[i];
    double err = fabs(g - want[i]);
    double allowed = rtol * (fabs(want[i]) + scale) + (mag ? rounding * mag[i] : 0.0);
    double excess = (isnan(err) || isnan(want[i])) ? INFINITY : err - allowed;
    if (excess > worst_excess || i == 0) {
      worst_excess = excess;
      wi = i;
    }
  }
  if (worst) *worst = wi;
  return n ? worst_excess : -INFINITY;
}

double ref_close_excess(const float *got, const double *want, const double *mag,
                        size_t n, double rtol, double kmag, size_t *worst) {
  return close_excess(got, false, want, mag, n, rtol, kmag * 0x1.0p-24, worst);
}

double ref_close_excess64(const double *got, const double *want, const double *mag,
                          size_t n, double rtol, double kmag, size_t *worst) {
  return close_excess(got, true, want, mag, n, rtol, kmag * 0x1.0p-53, worst);
}

static bool check_close(const void *got, bool got_is_double, const double *want,
                        const double *mag, size_t n, double rtol, double kmag,
                        const char *file, int line, const char *what) {
  size_t w = 0;
  double ex = got_is_double ? ref_close_excess64(got, want, mag, n, rtol, kmag, &w)
                            : ref_close_excess(got, want, mag, n, rtol, kmag, &w);
  if (!(ex <= 0.0)) {
    double g = got_is_double ? ((const double *)got)[w] : (double)((const float *)got)[w];
    return th_check(false, file, line, "%s: element %zu of %zu is %.17g, expected %.17g (excess %.3g)",
                    what, w, n, g, want[w], ex);
  }
  return th_check(true, file, line, "%s", what);
}

bool ref_check_close(const float *got, const double *want, const double *mag,
                     size_t n, double rtol, double kmag, const char *file,
                     int line, const char *what) {
  return check_close(got, false, want, mag, n, rtol, kmag, file, line, what);
}

bool ref_check_close64(const double *got, const double *want, const double *mag,
                       size_t n, double rtol, double kmag, const char *file,
                       int line, const char *what) {
  return check_close(got, true, want, mag, n, rtol, kmag, file, line, what);
}
