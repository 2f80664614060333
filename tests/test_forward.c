/*
 * test_forward.c — the layer's forward pass and moving-average updates
 * against the independent fp64 reference (reference.h), over a seeded random
 * sweep of configurations, plus large-mean data, in-place calls and pending
 * updates.
 *
 * Tolerances (see ref_check_close):
 *   RTOL = 1e-5 relative to the tensor's scale (max |reference|). The library
 *   computes in fp32 (unit roundoff u = 2^-24 = 6e-8); y = gamma*(x - mu)*rho
 *   + beta and an EMA step involve a handful of roundings plus reductions over
 *   at most a few thousand elements, i.e. an expected error of ~10-100 u
 *   (~1e-6) of the scale, so 1e-5 leaves about an order of magnitude of margin
 *   while still catching every semantic error we know of (Bessel's N/(N-1)
 *   for N <= 1e5, wrong ghost grouping, wrong epsilon where the variance is
 *   comparable to it, wrong momentum, missing r/d or adjustment).
 *   KMAG = 64 fp32 roundings of the magnitude of the terms y is made of
 *   (|gamma*rho|*(|x| + |mu|) + |offsets|): only matters when x has a large
 *   mean, where float32 x itself carries an error of u*|x| that cancels into
 *   y (TensorFlow's own x*inv + (beta - mu*inv) loses the same digits).
 *   Variables have no magnitude term (the statistics must be computed stably)
 *   except moving_variance = relu(moving_stddev^2 - eps) with renorm, which
 *   cancels when the batch variance is ~0 (ref_variable_magnitude).
 */
#include <bnorm.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "ref_bridge.h"

#define RTOL 1e-5
#define KMAG 64.0

/* Compares every variable of the library layer with the reference. */
static void check_variables(bnorm_layer *bn, const ref_layer *ref, const char *label) {
  int kinds[REF_VAR_KINDS];
  int nk = ref_layer_variable_kinds(ref, kinds);
  if (!CHECKF(bnorm_layer_variable_count(bn) == (size_t)nk, "%s: variable count %zu, expected %d",
              label, bnorm_layer_variable_count(bn), nk))
    return;
  size_t C = ref->channels;
  float *buf = (float *)malloc((C ? C : 1) * sizeof(float));
  double *mag = (double *)malloc((C ? C : 1) * sizeof(double));
  for (int i = 0; i < nk; i++) {
    CHECK_OK(bnorm_layer_get_variable(bn, (size_t)i, buf, C));
    char what[900];
    snprintf(what, sizeof what, "%s: %s", label, ref_var_names[kinds[i]]);
    ref_variable_magnitude(ref, kinds[i], mag);
    REF_CHECK_CLOSE(buf, ref->var[kinds[i]], mag, C, RTOL, KMAG, what);
  }
  free(buf);
  free(mag);
}

/* Variables equal (bitwise) to a snapshot. */
static bool variables_unchanged(bnorm_layer *bn, const float *snapshot, size_t count) {
  float *now = (float *)malloc((count ? count : 1) * sizeof(float));
  bool same = bnorm_layer_get_weights(bn, now, count) == BNORM_OK &&
              memcmp(now, snapshot, count * sizeof(float)) == 0;
  free(now);
  return same;
}

/* ------------------------------------------------------------------------ */
/* The random sweep                                                         */
/* ------------------------------------------------------------------------ */

static int sweep_valid, sweep_invalid, sweep_fused, sweep_steps_train, sweep_steps_pending;

static void run_ref_sweep_case(int id, const ref_sweep_case *sc) {
  char label[512];
  ref_layer ref;
  int ref_rc = ref_layer_build(&ref, &sc->rc, sc->build_shape, sc->rank);

  bnorm_config cfg;
  ref_to_bnorm_config(&cfg, &sc->rc);
  adj_ctx adj;
  memset(&adj, 0, sizeof adj);
  if (sc->rc.adjustment) {
    cfg.adjustment = adj_cb;
    cfg.adjustment_user_data = &adj;
  }
  snprintf(label, sizeof label,
           "case %d (beh %d rank %d axis[0] %d n_axis %d vbs %lld renorm %d adj %d fused-arg %d "
           "center %d scale %d trainable %d mom %g eps %g floor %d)",
           id, (int)sc->rc.behavior, sc->rank, sc->rc.axis[0], sc->rc.axis_count,
           (long long)sc->rc.virtual_batch_size, sc->rc.renorm, sc->rc.adjustment,
           (int)sc->rc.fused, sc->rc.center, sc->rc.scale, sc->rc.trainable, sc->rc.momentum,
           sc->rc.epsilon, sc->rc.fused_epsilon_floor);

  bnorm_layer *bn = NULL;
  bnorm_status st = bnorm_layer_create(&cfg, &bn);
  if (st == BNORM_OK) st = bnorm_layer_build(bn, sc->build_shape, sc->rank);
  if (ref_rc != 0) {
    /* Keras would raise: the library must refuse at create or build. */
    sweep_invalid++;
    CHECKF(st != BNORM_OK, "%s: the reference rejects it (%s) but the library accepted it", label,
           ref_error());
    bnorm_layer_destroy(bn);
    return;
  }
  sweep_valid++;
  if (!CHECKF(st == BNORM_OK, "%s: create/build failed: %s", label, bnorm_last_error())) {
    bnorm_layer_destroy(bn);
    ref_layer_free(&ref);
    return;
  }
  sweep_fused += ref.fused;
  CHECKF(bnorm_layer_is_fused(bn) == ref.fused, "%s: is_fused %d, expected %d", label,
         bnorm_layer_is_fused(bn), ref.fused);
  CHECKF(bnorm_layer_channels(bn) == ref.channels, "%s: channels %zu, expected %zu", label,
         bnorm_layer_channels(bn), ref.channels);
  /* shapes of the variables */
  int kinds[REF_VAR_KINDS];
  int nk = ref_layer_variable_kinds(&ref, kinds);
  if (CHECKF(bnorm_layer_variable_count(bn) == (size_t)nk, "%s: %zu variables, expected %d", label,
             bnorm_layer_variable_count(bn), nk)) {
    for (int i = 0; i < nk; i++) {
      bnorm_variable_info info;
      CHECK_OK(bnorm_layer_variable_info(bn, (size_t)i, &info));
      bool same = info.rank == ref.param_rank && strcmp(info.short_name, ref_var_names[kinds[i]]) == 0;
      for (int k = 0; same && k < info.rank; k++) same = info.shape[k] == ref.param_shape[k];
      CHECKF(same, "%s: variable %d is %s of rank %d, expected %s of rank %d", label, i,
             info.short_name, info.rank, ref_var_names[kinds[i]], ref.param_rank);
    }
  }

  /* random variable values */
  size_t C = ref.channels;
  size_t wcount = ref_layer_weights_count(&ref);
  float *w = ref_random_weights(&ref);
  CHECK_OK(bnorm_layer_set_weights(bn, w, wcount));
  ref_layer_set_weights_f(&ref, w);
  free(w);
  adj.channels = C;
  adj.scale = (float *)malloc((C ? C : 1) * sizeof(float));
  adj.bias = (float *)malloc((C ? C : 1) * sizeof(float));

  bnorm_updates *pending = NULL;
  CHECK_OK(bnorm_updates_create(&pending));
  float *snapshot = (float *)malloc((wcount ? wcount : 1) * sizeof(float));

  int nsteps = rand_int(2, 3);
  for (int step = 0; step < nsteps; step++) {
    bool training = th_uniform() < 0.7;
    bool use_pending = th_uniform() < 0.4;
    bool inplace = th_uniform() < 0.2;
    int64_t shape[BNORM_MAX_RANK];
    for (int a = 0; a < sc->rank; a++) shape[a] = sc->shape[a];
    if (step > 0) shape[0] = ref_next_batch(sc, training);
    size_t n = ref_shape_count(shape, sc->rank);
    float *x = (float *)malloc((n ? n : 1) * sizeof(float));
    float *y = (float *)malloc((n ? n : 1) * sizeof(float));
    double mean = -2.0 + 4.0 * th_uniform(), sd = 0.3 + 2.7 * th_uniform();
    th_fill_normal(x, n, mean, sd);
    double *xd = to_double(x, n);
    double *yr = (double *)malloc((n ? n : 1) * sizeof(double));
    double *ymag = (double *)malloc((n ? n : 1) * sizeof(double));
    double *as = (double *)malloc((C ? C : 1) * sizeof(double));
    double *ab = (double *)malloc((C ? C : 1) * sizeof(double));
    for (size_t c = 0; c < C; c++) {
      adj.scale[c] = (float)(0.9 + 0.2 * th_uniform());
      adj.bias[c] = (float)(-0.1 + 0.2 * th_uniform());
      as[c] = adj.scale[c];
      ab[c] = adj.bias[c];
    }
    adj.calls = 0;

    char slabel[640];
    snprintf(slabel, sizeof slabel, "%s step %d (training %d pending %d inplace %d B %lld)", label,
             step, training, use_pending, inplace, (long long)shape[0]);

    ref_forward_args ra = {0};
    ra.x = xd;
    ra.shape = shape;
    ra.rank = sc->rank;
    ra.training = training;
    ra.adj_scale = as;
    ra.adj_bias = ab;
    ref_update upd;
    int rrc = ref_forward(&ref, &ra, yr, ymag, &upd, NULL);
    CHECKF(rrc == 0, "%s: reference forward failed: %s", slabel, ref_error());

    CHECK_OK(bnorm_layer_get_weights(bn, snapshot, wcount));
    bnorm_forward_args fa;
    memset(&fa, 0, sizeof fa);
    float *out = y;
    if (inplace) {
      memcpy(y, x, n * sizeof(float));
      fa.x = y;
    } else {
      fa.x = x;
    }
    fa.y = out;
    fa.shape = shape;
    fa.rank = sc->rank;
    fa.training = training;
    fa.pending = use_pending ? pending : NULL;
    bnorm_status fst = bnorm_layer_forward(bn, &fa);
    if (CHECKF(fst == BNORM_OK, "%s: forward failed: %s", slabel, bnorm_last_error()) && rrc == 0) {
      char what[700];
      snprintf(what, sizeof what, "%s: y", slabel);
      REF_CHECK_CLOSE(out, yr, ymag, n, RTOL, KMAG, what);
      bool batch = ref_uses_batch_stats(&ref, training);
      int expected_calls = (batch && sc->rc.adjustment) ? 1 : 0;
      CHECKF(adj.calls == expected_calls && !adj.bad_channels,
             "%s: adjustment called %d times (channels ok %d), expected %d", slabel, adj.calls,
             !adj.bad_channels, expected_calls);
      if (adj.calls == 1) {
        bool same = adj.rank == sc->rank;
        for (int a = 0; same && a < sc->rank; a++) same = adj.shape[a] == shape[a];
        CHECKF(same, "%s: adjustment got the wrong input shape", slabel);
      }
      if (batch) sweep_steps_train++;
      if (use_pending) {
        sweep_steps_pending++;
        CHECKF(variables_unchanged(bn, snapshot, wcount),
               "%s: a forward with pending updates changed the variables", slabel);
        CHECK_OK(bnorm_layer_apply_updates(bn, pending));
        CHECKF(bnorm_updates_count(pending) == 0, "%s: apply did not clear the updates", slabel);
      }
      ref_apply_update(&ref, &upd);
      if (!upd.present)
        CHECKF(variables_unchanged(bn, snapshot, wcount),
               "%s: the variables changed although no update is due", slabel);
      snprintf(what, sizeof what, "%s: after the update", slabel);
      check_variables(bn, &ref, what);
    }
    ref_update_free(&upd);
    free(x);
    free(y);
    free(xd);
    free(yr);
    free(ymag);
    free(as);
    free(ab);
  }
  free(snapshot);
  free(adj.scale);
  free(adj.bias);
  bnorm_updates_destroy(pending);
  bnorm_layer_destroy(bn);
  ref_layer_free(&ref);
}

static void test_random_sweep(void) {
  /* BNORM_SWEEP_SEED=<n> explores another sweep (the default is fixed) */
  const char *env = getenv("BNORM_SWEEP_SEED");
  th_seed(env ? strtoull(env, NULL, 10) : 20240601);
  int id = 0;
  while (sweep_valid < 240 && id < 2000) {
    ref_sweep_case sc;
    ref_random_case(&sc);
    run_ref_sweep_case(id++, &sc);
  }
  printf("sweep: %d valid configurations (%d fused), %d rejected as Keras does, %d training steps, "
         "%d pending steps\n",
         sweep_valid, sweep_fused, sweep_invalid, sweep_steps_train, sweep_steps_pending);
  CHECK(sweep_valid >= 200);
  CHECK(sweep_fused >= 20);
  CHECK(sweep_invalid >= 5);
}

/* ------------------------------------------------------------------------ */
/* Targeted tests                                                           */
/* ------------------------------------------------------------------------ */

/* Builds a library layer and a reference layer for `rc` with shape. */
static bool make_pair(const ref_config *rc, const int64_t *shape, int rank, bnorm_layer **bn,
                      ref_layer *ref, adj_ctx *adj) {
  bnorm_config cfg;
  ref_to_bnorm_config(&cfg, rc);
  if (rc->adjustment) {
    cfg.adjustment = adj_cb;
    cfg.adjustment_user_data = adj;
  }
  *bn = NULL;
  if (ref_layer_build(ref, rc, shape, rank) != 0) {
    CHECKF(false, "reference build failed: %s", ref_error());
    return false;
  }
  if (!CHECK_OK(bnorm_layer_create(&cfg, bn)) || !CHECK_OK(bnorm_layer_build(*bn, shape, rank))) {
    bnorm_layer_destroy(*bn);
    *bn = NULL;
    ref_layer_free(ref);
    return false;
  }
  return true;
}

static void set_random_weights(bnorm_layer *bn, ref_layer *ref) {
  float *w = ref_random_weights(ref);
  CHECK_OK(bnorm_layer_set_weights(bn, w, ref_layer_weights_count(ref)));
  ref_layer_set_weights_f(ref, w);
  free(w);
}

/* One forward (immediate updates) on both, compare y (with kmag) and vars. */
static void step_both(bnorm_layer *bn, ref_layer *ref, const float *x, const int64_t *shape,
                      int rank, bool training, double kmag, const char *label) {
  size_t n = ref_shape_count(shape, rank);
  float *y = (float *)malloc(n * sizeof(float));
  double *xd = to_double(x, n), *yr = (double *)malloc(n * sizeof(double)),
         *ym = (double *)malloc(n * sizeof(double));
  ref_forward_args ra = {0};
  ra.x = xd;
  ra.shape = shape;
  ra.rank = rank;
  ra.training = training;
  CHECKF(ref_forward_immediate(ref, &ra, yr, ym, NULL) == 0, "%s: reference: %s", label, ref_error());
  bnorm_forward_args fa = {
      .x = x,
      .y = y,
      .shape = shape,
      .rank = rank,
      .training = training};
  if (CHECK_OK(bnorm_layer_forward(bn, &fa))) {
    char what[300];
    snprintf(what, sizeof what, "%s: y", label);
    REF_CHECK_CLOSE(y, yr, ym, n, RTOL, kmag, what);
    check_variables(bn, ref, label);
  }
  free(y);
  free(xd);
  free(yr);
  free(ym);
}

/* x = 1e4 + N(0,1): the statistics must be computed stably (a one-pass
 * E[x^2] - E[x]^2 in float32 loses every digit of the variance). */
typedef struct fixed_case {
  ref_behavior beh;
  int rank;
  int64_t shape[5];
  int axis[3];
  int naxis;
  int64_t vbs;
  bool renorm;
  ref_fused fused;
} fixed_case;

static void fixed_config(ref_config *rc, const fixed_case *fc) {
  ref_config_init(rc);
  rc->behavior = fc->beh;
  rc->axis_count = fc->naxis;
  for (int i = 0; i < fc->naxis; i++) rc->axis[i] = fc->axis[i];
  rc->virtual_batch_size = fc->vbs;
  rc->renorm = fc->renorm;
  rc->fused = fc->fused;
  rc->momentum = 0.9;
  rc->renorm_momentum = 0.8;
}

static void test_large_mean(void) {
  th_seed(77);
  static const fixed_case cases[] = {
      {REF_KERAS, 2, {256, 3}, {-1}, 1, 0, false, REF_FUSED_AUTO},
      {REF_KERAS, 4, {8, 6, 6, 2}, {-1}, 1, 0, false, REF_FUSED_AUTO},   /* fused NHWC */
      {REF_COMPAT_V1, 4, {8, 2, 6, 6}, {1}, 1, 0, false, REF_FUSED_AUTO}, /* fused NCHW */
      /* NCHW at 7x7: 16 runs of 49 per statistic, summed with one pivot */
      {REF_KERAS, 4, {16, 3, 7, 7}, {1}, 1, 0, false, REF_FUSED_AUTO},
      {REF_KERAS, 3, {16, 4, 3}, {1, 2}, 2, 0, false, REF_FUSED_AUTO},
      {REF_KERAS, 3, {32, 5, 2}, {-1}, 1, 4, false, REF_FUSED_AUTO},
      /* ghost batches of NHWC: 2 runs of 49 rows per statistic, summed with
       * one pivot; 40 channels are vectors and a tail (AVX-512) or wide
       * rows (AVX2) */
      {REF_KERAS, 4, {8, 7, 7, 40}, {-1}, 1, 2, false, REF_FUSED_AUTO},
      {REF_COMPAT_V1, 2, {128, 3}, {-1}, 1, 0, true, REF_FUSED_AUTO},
      {REF_KERAS, 4, {8, 6, 6, 2}, {-1}, 1, 0, false, REF_FUSED_FALSE},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    ref_config rc;
    fixed_config(&rc, &cases[k]);
    bnorm_layer *bn;
    ref_layer ref;
    if (!make_pair(&rc, cases[k].shape, cases[k].rank, &bn, &ref, NULL)) continue;
    size_t n = ref_shape_count(cases[k].shape, cases[k].rank);
    float *x = (float *)malloc(n * sizeof(float));
    for (int step = 0; step < 3; step++) {
      th_fill_normal(x, n, 1e4, 1.0);
      char label[128];
      snprintf(label, sizeof label, "large mean case %zu step %d", k, step);
      step_both(bn, &ref, x, cases[k].shape, cases[k].rank, step < 2, KMAG, label);
    }
    /* the moving variance has moved towards ~1, far from the 1e8 of E[x^2] */
    float mv[64];
    size_t C = ref.channels;
    size_t iv = 0;
    CHECK_OK(bnorm_layer_find_variable(bn, "moving_variance", &iv));
    if (C <= 64 && CHECK_OK(bnorm_layer_get_variable(bn, iv, mv, C)))
      for (size_t c = 0; c < C; c++)
        CHECKF(mv[c] > 0.0f && mv[c] < 2.0f, "large mean case %zu: moving variance %g", k,
               (double)mv[c]);
    free(x);
    bnorm_layer_destroy(bn);
    ref_layer_free(&ref);
  }
}

static int identity_adjustment(const int64_t *shape, int rank, double *scale,
                               double *bias, size_t channels, void *data) {
  (void)shape;
  (void)rank;
  (void)data;
  for (size_t c = 0; c < channels; c++) {
    scale[c] = 1.0;
    bias[c] = 0.0;
  }
  return 0;
}

/* Where the mean is large beside the standard deviation (x = 1e4 + N(0, 1))
 * the layer keeps x - center exact instead of folding the center into the
 * offset, which would cost y about 1e4 * 2^-24 = 6e-4 against the 1e-5
 * allowed here: in inference (the moving statistics at the data's), and in
 * training through the plain path and, with an identity adjustment, the
 * general one (the reference centers on the float32 batch mean, as the
 * layer does). Dense and NHWC shapes. */
static void test_large_mean_keeps_center(void) {
  th_seed(91);
  static const int64_t shapes[][4] = {{16, 512, 0, 0}, {4, 3, 3, 40}};
  static const int ranks[] = {2, 4};
  static const char *modes[] = {"inference", "training", "training with an "
                                                         "adjustment"};
  for (size_t k = 0; k < 2; k++)
    for (int mode = 0; mode < 3; mode++) {
      const int64_t *shape = shapes[k];
      int rank = ranks[k];
      size_t C = (size_t)shape[rank - 1], n = 1;
      for (int i = 0; i < rank; i++) n *= (size_t)shape[i];
      bnorm_config cfg;
      bnorm_config_init(&cfg);
      cfg.fused = BNORM_FUSED_FALSE;
      if (mode == 2) cfg.adjustment = identity_adjustment;
      bnorm_layer *bn = NULL;
      if (!CHECK_OK(bnorm_layer_create(&cfg, &bn)) ||
          !CHECK_OK(bnorm_layer_build(bn, shape, rank))) {
        bnorm_layer_destroy(bn);
        continue;
      }
      float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
      float *mean = malloc(C * sizeof *mean), *var = malloc(C * sizeof *var);
      th_fill_normal(x, n, 1e4, 1.0);
      size_t rows = n / C;
      for (size_t c = 0; c < C; c++) {
        double sum = 0.0, sq = 0.0;
        for (size_t r = 0; r < rows; r++) sum += x[r * C + c];
        double m = sum / (double)rows;
        for (size_t r = 0; r < rows; r++)
          sq += (x[r * C + c] - m) * (x[r * C + c] - m);
        mean[c] = mode ? (float)m : 1e4f + (float)(c % 7) * 0.25f;
        var[c] = mode ? (float)(sq / (double)rows)
                      : 1.0f + (float)(c % 3) * 0.5f;
      }
      size_t im = 0, iv = 0;
      CHECK_OK(bnorm_layer_find_variable(bn, "moving_mean", &im));
      CHECK_OK(bnorm_layer_find_variable(bn, "moving_variance", &iv));
      CHECK_OK(bnorm_layer_set_variable(bn, im, mean, C));
      CHECK_OK(bnorm_layer_set_variable(bn, iv, var, C));
      bnorm_forward_args fa = {x, y, shape, rank, mode != 0, NULL, NULL};
      if (CHECK_OK(bnorm_layer_forward(bn, &fa))) {
        double worst = 0.0;
        for (size_t i = 0; i < n; i++) {
          size_t c = i % C;
          double want =
              ((double)x[i] - mean[c]) / sqrt((double)var[c] + 1e-3);
          double err = fabs((double)y[i] - want);
          if (!(err <= worst)) worst = err;
        }
        CHECKF(worst <= 1e-5,
               "%s with means of 1e4, shape %zu: |y - exact| up to %g",
               modes[mode], k, worst);
      }
      free(x);
      free(y);
      free(mean);
      free(var);
      bnorm_layer_destroy(bn);
    }
}

/* A float32 layer without adjustment or renorm takes its own per-channel
 * loop (plain_training_coefficients); with an adjustment of scale 1 and
 * bias 0 the general one, whose arithmetic is then the same: outputs,
 * moving statistics and gradients must agree bit for bit. Random gamma
 * and beta, one with a NaN; dense and NHWC shapes. */
static void test_plain_path_matches_general(void) {
  th_seed(123);
  static const int64_t shapes[][4] = {{16, 300, 0, 0}, {4, 5, 5, 24}};
  static const int ranks[] = {2, 4};
  for (size_t k = 0; k < 2; k++) {
    const int64_t *shape = shapes[k];
    int rank = ranks[k];
    size_t C = (size_t)shape[rank - 1], n = 1;
    for (int i = 0; i < rank; i++) n *= (size_t)shape[i];
    float *x = malloc(n * sizeof *x), *dy = malloc(n * sizeof *dy);
    float *gamma = malloc(C * sizeof *gamma), *beta = malloc(C * sizeof *beta);
    float *out[2][5];
    th_fill_normal(x, n, 2.0, 3.0);
    th_fill_normal(dy, n, 0.0, 1.0);
    th_fill_normal(gamma, C, 1.0, 0.5);
    th_fill_normal(beta, C, 0.0, 0.5);
    gamma[3] = NAN;
    beta[5] = -0.0f;
    for (int general = 0; general < 2; general++) {
      bnorm_config cfg;
      bnorm_config_init(&cfg);
      cfg.fused = BNORM_FUSED_FALSE; /* an adjustment is never fused */
      if (general) cfg.adjustment = identity_adjustment;
      float **o = out[general];
      o[0] = calloc(n, sizeof(float));     /* y */
      o[1] = calloc(n, sizeof(float));     /* dx */
      o[2] = calloc(C, sizeof(float));     /* dgamma */
      o[3] = calloc(C, sizeof(float));     /* dbeta */
      o[4] = calloc(4 * C, sizeof(float)); /* the variables */
      bnorm_layer *bn = NULL;
      bnorm_saved *saved = NULL;
      size_t ig = 0, ib = 0;
      if (CHECK_OK(bnorm_layer_create(&cfg, &bn)) &&
          CHECK_OK(bnorm_layer_build(bn, shape, rank)) &&
          CHECK_OK(bnorm_saved_create(&saved)) &&
          CHECK_OK(bnorm_layer_find_variable(bn, "gamma", &ig)) &&
          CHECK_OK(bnorm_layer_find_variable(bn, "beta", &ib)) &&
          CHECK_OK(bnorm_layer_set_variable(bn, ig, gamma, C)) &&
          CHECK_OK(bnorm_layer_set_variable(bn, ib, beta, C))) {
        bnorm_forward_args fa = {x, o[0], shape, rank, true, NULL, saved};
        bnorm_backward_args ba = {saved, x, dy, shape, rank, o[1], o[2], o[3]};
        CHECK_OK(bnorm_layer_forward(bn, &fa));
        CHECK_OK(bnorm_layer_backward(bn, &ba));
        CHECK_OK(bnorm_layer_get_weights(bn, o[4], 4 * C));
      }
      bnorm_saved_destroy(saved);
      bnorm_layer_destroy(bn);
    }
    const size_t sizes[5] = {n, n, C, C, 4 * C};
    const char *names[5] = {"y", "dx", "dgamma", "dbeta", "variables"};
    for (int i = 0; i < 5; i++)
      CHECKF(memcmp(out[0][i], out[1][i], sizes[i] * sizeof(float)) == 0,
             "shape %zu: %s of the plain path differs from the general "
             "path's with an identity adjustment",
             k, names[i]);
    for (int general = 0; general < 2; general++)
      for (int i = 0; i < 5; i++) free(out[general][i]);
    free(x);
    free(dy);
    free(gamma);
    free(beta);
  }
}

/* The non-fused moving averages round as TensorFlow's float32 ops do, each
 * operation once: v - (float)((float)(v - m) * decay), decay =
 * float32(1 - momentum); float64 layers do the same in double with that
 * float32 decay. Bit for bit, on a batch whose mean and biased variance are
 * exact (rows a - d and a + d): a fused multiply-add, or a step kept in
 * double, changes the last bits of some of the 4096 channels. */
static void test_moving_average_rounding(void) {
  th_seed(91);
  enum { C = 4096 };
  for (int f64 = 0; f64 < 2; f64++) {
    bnorm_config cfg;
    bnorm_config_init(&cfg);
    cfg.momentum = 0.97;
    cfg.dtype = f64 ? BNORM_FLOAT64 : BNORM_FLOAT32;
    bnorm_layer *bn;
    int64_t shape[2] = {2, C};
    if (!CHECK_OK(bnorm_layer_create(&cfg, &bn))) return;
    CHECK_OK(bnorm_layer_build(bn, shape, 2));
    size_t im, iv;
    CHECK_OK(bnorm_layer_find_variable(bn, "moving_mean", &im));
    CHECK_OK(bnorm_layer_find_variable(bn, "moving_variance", &iv));
    size_t esize = f64 ? sizeof(double) : sizeof(float);
    unsigned char *x = malloc(2 * C * esize), *y = malloc(2 * C * esize);
    unsigned char *mean0 = malloc(C * esize), *var0 = malloc(C * esize);
    unsigned char *mean1 = malloc(C * esize), *var1 = malloc(C * esize);
    float decay = (float)(1.0 - 0.97);
    double a[C], d[C];
    for (size_t c = 0; c < C; c++) {
      a[c] = ldexp(floor(th_uniform() * 256.0) - 128.0, -4); /* 2^-4 steps */
      d[c] = ldexp((double)(1 + (int)(th_uniform() * 63.0)), -5);
      double m = 3.0 * th_normal(), v = 0.5 + 2.0 * th_uniform();
      if (f64) {
        ((double *)x)[c] = a[c] - d[c];
        ((double *)x)[C + c] = a[c] + d[c];
        ((double *)mean0)[c] = m;
        ((double *)var0)[c] = v;
      } else {
        ((float *)x)[c] = (float)(a[c] - d[c]);
        ((float *)x)[C + c] = (float)(a[c] + d[c]);
        ((float *)mean0)[c] = (float)m;
        ((float *)var0)[c] = (float)v;
      }
    }
    CHECK_OK(bnorm_layer_set_variable(bn, im, mean0, C));
    CHECK_OK(bnorm_layer_set_variable(bn, iv, var0, C));
    bnorm_forward_args fa = {.x = x, .y = y, .shape = shape, .rank = 2, .training = true};
    CHECK_OK(bnorm_layer_forward(bn, &fa));
    CHECK_OK(bnorm_layer_get_variable(bn, im, mean1, C));
    CHECK_OK(bnorm_layer_get_variable(bn, iv, var1, C));
    size_t wrong = 0;
    for (size_t c = 0; c < C; c++) {
      double second = d[c] * d[c];
      if (f64) {
        volatile double m = ((double *)mean0)[c], v = ((double *)var0)[c];
        volatile double sm = (m - a[c]) * (double)decay, sv = (v - second) * (double)decay;
        wrong += ((double *)mean1)[c] != m - sm || ((double *)var1)[c] != v - sv;
      } else {
        volatile float m = ((float *)mean0)[c], v = ((float *)var0)[c];
        volatile float dm = m - (float)a[c], dv = v - (float)second;
        volatile float sm = dm * decay, sv = dv * decay;
        wrong += ((float *)mean1)[c] != m - sm || ((float *)var1)[c] != v - sv;
      }
    }
    CHECKF(wrong == 0, "%s moving averages: %zu of %d channels differ from one rounding per op",
           f64 ? "float64" : "float32", wrong, C);
    free(x);
    free(y);
    free(mean0);
    free(var0);
    free(mean1);
    free(var1);
    bnorm_layer_destroy(bn);
  }
}

/* y may be x. */
static void test_in_place(void) {
  th_seed(5);
  static const fixed_case cases[] = {
      {REF_KERAS, 4, {4, 3, 3, 5}, {-1}, 1, 0, false, REF_FUSED_AUTO},
      {REF_KERAS, 3, {6, 4, 3}, {1}, 1, 3, false, REF_FUSED_AUTO},
      {REF_COMPAT_V1, 3, {6, 4, 3}, {0, 2}, 2, 0, true, REF_FUSED_AUTO},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    ref_config rc;
    fixed_config(&rc, &cases[k]);
    for (int training = 0; training < 2; training++) {
      bnorm_layer *bn;
      ref_layer ref;
      if (!make_pair(&rc, cases[k].shape, cases[k].rank, &bn, &ref, NULL)) continue;
      set_random_weights(bn, &ref);
      size_t n = ref_shape_count(cases[k].shape, cases[k].rank);
      float *buf = (float *)malloc(n * sizeof(float));
      th_fill_normal(buf, n, 0.5, 2.0);
      double *xd = to_double(buf, n), *yr = (double *)malloc(n * sizeof(double));
      ref_forward_args ra = {0};
      ra.x = xd;
      ra.shape = cases[k].shape;
      ra.rank = cases[k].rank;
      ra.training = training != 0;
      CHECK(ref_forward_immediate(&ref, &ra, yr, NULL, NULL) == 0);
      bnorm_forward_args fa = {
          .x = buf,
          .y = buf,
          .shape = cases[k].shape,
          .rank = cases[k].rank,
          .training = training != 0};
      if (CHECK_OK(bnorm_layer_forward(bn, &fa))) {
        char what[96];
        snprintf(what, sizeof what, "in place case %zu training %d: y", k, training);
        REF_CHECK_CLOSE(buf, yr, NULL, n, RTOL, 0.0, what);
        check_variables(bn, &ref, what);
      }
      free(buf);
      free(xd);
      free(yr);
      bnorm_layer_destroy(bn);
      ref_layer_free(&ref);
    }
  }
}

static void forward_lib(bnorm_layer *bn, const float *x, float *y, const int64_t *shape, int rank,
                        bool training, bnorm_updates *pending) {
  CHECK_OK(lib_forward(bn, x, y, shape, rank, training, pending));
}

/* Pending updates applied later equal immediate updates; clear drops them;
 * an update applied after the variables changed uses the values at apply
 * time (TensorFlow UPDATE_OPS: assign_sub reads the variable when it runs). */
static void test_pending_updates(void) {
  th_seed(99);
  static const fixed_case cases[] = {
      {REF_KERAS, 2, {16, 5}, {-1}, 1, 0, false, REF_FUSED_AUTO},
      {REF_KERAS, 4, {4, 3, 3, 5}, {-1}, 1, 0, false, REF_FUSED_AUTO},     /* Keras fused form */
      {REF_COMPAT_V1, 4, {4, 3, 3, 5}, {-1}, 1, 0, false, REF_FUSED_AUTO}, /* compat fused EMA */
      {REF_COMPAT_V1, 3, {6, 4, 3}, {1}, 1, 3, false, REF_FUSED_AUTO},
      {REF_KERAS, 2, {16, 5}, {-1}, 1, 0, true, REF_FUSED_AUTO},            /* renorm */
      {REF_COMPAT_V1, 3, {8, 2, 3}, {1, 2}, 2, 2, true, REF_FUSED_AUTO},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    ref_config rc;
    fixed_config(&rc, &cases[k]);
    const int64_t *shape = cases[k].shape;
    int rank = cases[k].rank;
    size_t n = ref_shape_count(shape, rank);
    bnorm_layer *a, *b;
    ref_layer ra, rb;
    if (!make_pair(&rc, shape, rank, &a, &ra, NULL)) continue;
    if (!make_pair(&rc, shape, rank, &b, &rb, NULL)) {
      bnorm_layer_destroy(a);
      ref_layer_free(&ra);
      continue;
    }
    float *w = ref_random_weights(&ra);
    size_t wc = ref_layer_weights_count(&ra);
    CHECK_OK(bnorm_layer_set_weights(a, w, wc));
    CHECK_OK(bnorm_layer_set_weights(b, w, wc));
    ref_layer_set_weights_f(&ra, w);
    ref_layer_set_weights_f(&rb, w);
    float *x1 = (float *)malloc(n * sizeof(float)), *x2 = (float *)malloc(n * sizeof(float));
    float *y = (float *)malloc(n * sizeof(float));
    float *wa = (float *)malloc(wc * sizeof(float)), *wb = (float *)malloc(wc * sizeof(float));
    th_fill_normal(x1, n, 1.0, 2.0);
    th_fill_normal(x2, n, -1.0, 0.5);
    char what[128];

    /* (1) one call: pending + apply == immediate (bitwise: same values, same
     * arithmetic) and == reference */
    bnorm_updates *up;
    CHECK_OK(bnorm_updates_create(&up));
    forward_lib(a, x1, y, shape, rank, true, NULL);
    forward_lib(b, x1, y, shape, rank, true, up);
    CHECKF(bnorm_updates_count(up) == 1, "pending case %zu: %zu recorded calls, expected 1", k,
           bnorm_updates_count(up));
    CHECK_OK(bnorm_layer_get_weights(b, wb, wc));
    CHECKF(memcmp(wb, w, wc * sizeof(float)) == 0, "pending case %zu: pending call changed variables",
           k);
    CHECK_OK(bnorm_layer_apply_updates(b, up));
    CHECK_OK(bnorm_layer_get_weights(a, wa, wc));
    CHECK_OK(bnorm_layer_get_weights(b, wb, wc));
    CHECKF(memcmp(wa, wb, wc * sizeof(float)) == 0,
           "pending case %zu: pending then apply differs from immediate", k);
    double *xd1 = to_double(x1, n), *xd2 = to_double(x2, n), *yr = (double *)malloc(n * sizeof(double));
    ref_forward_args fa = {0};
    fa.x = xd1;
    fa.shape = shape;
    fa.rank = rank;
    fa.training = true;
    CHECK(ref_forward_immediate(&ra, &fa, yr, NULL, NULL) == 0);
    snprintf(what, sizeof what, "pending case %zu (1)", k);
    check_variables(b, &ra, what);
    ref_layer_free(&rb);
    ref_layer_clone(&rb, &ra);

    /* (2) clear drops the updates */
    forward_lib(b, x2, y, shape, rank, true, up);
    bnorm_updates_clear(up);
    CHECK(bnorm_updates_count(up) == 0);
    CHECK_OK(bnorm_layer_apply_updates(b, up));
    CHECK_OK(bnorm_layer_get_weights(b, wb, wc));
    CHECKF(memcmp(wa, wb, wc * sizeof(float)) == 0, "pending case %zu: cleared updates were applied",
           k);

    /* (3) two calls recorded, the variables then changed by the user, then
     * applied: each update runs against the values at apply time. */
    ref_update u1, u2;
    fa.x = xd1;
    CHECK(ref_forward(&rb, &fa, yr, NULL, &u1, NULL) == 0);
    forward_lib(b, x1, y, shape, rank, true, up);
    fa.x = xd2;
    CHECK(ref_forward(&rb, &fa, yr, NULL, &u2, NULL) == 0); /* sees unchanged renorm vars */
    forward_lib(b, x2, y, shape, rank, true, up);
    snprintf(what, sizeof what, "pending case %zu (3) second call's y", k);
    REF_CHECK_CLOSE(y, yr, NULL, n, RTOL, 0.0, what);
    CHECK(bnorm_updates_count(up) == 2);
    /* the user overwrites every non-trainable variable */
    int kinds[REF_VAR_KINDS];
    int nk = ref_layer_variable_kinds(&rb, kinds);
    size_t C = rb.channels;
    float *v = (float *)malloc(C * sizeof(float));
    for (int i = 0; i < nk; i++) {
      if (kinds[i] == REF_GAMMA || kinds[i] == REF_BETA) continue;
      for (size_t c = 0; c < C; c++) {
        v[c] = (float)(kinds[i] == REF_MOVING_MEAN || kinds[i] == REF_RENORM_MEAN
                           ? 3.0 * th_normal()
                           : 2.0 + th_uniform());
        rb.var[kinds[i]][c] = v[c];
      }
      CHECK_OK(bnorm_layer_set_variable(b, (size_t)i, v, C));
    }
    ref_apply_update(&rb, &u1);
    ref_apply_update(&rb, &u2);
    CHECK_OK(bnorm_layer_apply_updates(b, up));
    CHECK(bnorm_updates_count(up) == 0);
    snprintf(what, sizeof what, "pending case %zu (3) applied after set_variable", k);
    check_variables(b, &rb, what);
    ref_update_free(&u1);
    ref_update_free(&u2);

    /* (4) updates recorded by another layer are refused */
    forward_lib(a, x1, y, shape, rank, true, up);
    CHECK_STATUS(bnorm_layer_apply_updates(b, up), BNORM_ERR_INVALID_ARGUMENT);
    bnorm_updates_clear(up);

    free(v);
    bnorm_updates_destroy(up);
    free(x1);
    free(x2);
    free(y);
    free(w);
    free(wa);
    free(wb);
    free(xd1);
    free(xd2);
    free(yr);
    bnorm_layer_destroy(a);
    bnorm_layer_destroy(b);
    ref_layer_free(&ra);
    ref_layer_free(&rb);
  }
}

/* The checks can fail: a library result compared with a deliberately wrong
 * reference (one semantic rule changed) must be rejected at these
 * tolerances. */
static void test_checks_can_fail(void) {
  th_seed(4242);
  static const fixed_case cases[] = {
      {REF_KERAS, 4, {8, 5, 5, 3}, {-1}, 1, 0, false, REF_FUSED_AUTO}, /* fused: Bessel */
      {REF_KERAS, 3, {12, 4, 3}, {-1}, 1, 3, false, REF_FUSED_AUTO},   /* ghost grouping */
      {REF_COMPAT_V1, 2, {64, 4}, {-1}, 1, 0, true, REF_FUSED_AUTO},   /* renorm r, d */
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    ref_config rc;
    fixed_config(&rc, &cases[k]);
    bnorm_layer *bn;
    ref_layer ref;
    if (!make_pair(&rc, cases[k].shape, cases[k].rank, &bn, &ref, NULL)) continue;
    set_random_weights(bn, &ref);
    size_t n = ref_shape_count(cases[k].shape, cases[k].rank);
    float *x = (float *)malloc(n * sizeof(float)), *y = (float *)malloc(n * sizeof(float));
    th_fill_normal(x, n, 0.3, 1.5);
    double *xd = to_double(x, n), *yr = (double *)malloc(n * sizeof(double));
    ref_layer wrong;
    ref_layer_clone(&wrong, &ref);
    forward_lib(bn, x, y, cases[k].shape, cases[k].rank, true, NULL);
    ref_forward_args fa = {0};
    fa.x = xd;
    fa.shape = cases[k].shape;
    fa.rank = cases[k].rank;
    fa.training = true;
    size_t C = ref.channels, iw;
    float *v = (float *)malloc(C * sizeof(float));
    if (k == 0) {
      /* non-fused rule for the moving variance (no Bessel correction) */
      CHECK(ref.fused);
      wrong.fused = false;
      CHECK(ref_forward_immediate(&wrong, &fa, yr, NULL, NULL) == 0);
      CHECK_OK(bnorm_layer_get_variable(bn, 3, v, C));
      CHECK(ref_close_excess(v, wrong.var[REF_MOVING_VARIANCE], NULL, C, RTOL, 0, &iw) > 0);
      CHECK(ref_forward_immediate(&ref, &fa, yr, NULL, NULL) == 0);
      CHECK(ref_close_excess(v, ref.var[REF_MOVING_VARIANCE], NULL, C, RTOL, 0, &iw) <= 0);
    } else if (k == 1) {
      /* contiguous ghost batches instead of strided ones: transpose the
       * batch as [B/vbs, vbs] -> [vbs, B/vbs] before the reference */
      int64_t B = cases[k].shape[0], vbs = cases[k].vbs, G = B / vbs;
      size_t inner = n / (size_t)B;
      double *xp = (double *)malloc(n * sizeof(double)), *yp = (double *)malloc(n * sizeof(double));
      for (int64_t b = 0; b < B; b++) {
        int64_t grp = b / vbs, i = b % vbs; /* contiguous: sample b in group b / vbs */
        int64_t pos = i * G + grp;          /* strided position with the same group */
        memcpy(xp + (size_t)pos * inner, xd + (size_t)b * inner, inner * sizeof(double));
      }
      fa.x = xp;
      CHECK(ref_forward(&wrong, &fa, yp, NULL, NULL, NULL) == 0);
      for (int64_t b = 0; b < B; b++) {
        int64_t pos = (b % vbs) * G + b / vbs;
        memcpy(yr + (size_t)b * inner, yp + (size_t)pos * inner, inner * sizeof(double));
      }
      CHECK(ref_close_excess(y, yr, NULL, n, RTOL, KMAG, &iw) > 0);
      fa.x = xd;
      CHECK(ref_forward(&ref, &fa, yr, NULL, NULL, NULL) == 0);
      CHECK(ref_close_excess(y, yr, NULL, n, RTOL, KMAG, &iw) <= 0);
      free(xp);
      free(yp);
    } else {
      /* renorm ignored (r = 1, d = 0) */
      wrong.cfg.renorm = false;
      CHECK(ref_forward(&wrong, &fa, yr, NULL, NULL, NULL) == 0);
      CHECK(ref_close_excess(y, yr, NULL, n, RTOL, KMAG, &iw) > 0);
      CHECK(ref_forward(&ref, &fa, yr, NULL, NULL, NULL) == 0);
      CHECK(ref_close_excess(y, yr, NULL, n, RTOL, KMAG, &iw) <= 0);
    }
    /* one element off by 2e-5 of the scale is caught */
    double *yc = (double *)malloc(n * sizeof(double));
    fa.x = xd;
    CHECK(ref_forward(&ref, &fa, yc, NULL, NULL, NULL) == 0);
    double scale = 0;
    for (size_t i = 0; i < n; i++) scale = fabs(yc[i]) > scale ? fabs(yc[i]) : scale;
    yc[n / 2] += 2.5e-5 * scale + 2.5e-5 * fabs(yc[n / 2]);
    CHECK(ref_close_excess(y, yc, NULL, n, RTOL, 0, &iw) > 0 && iw == n / 2);
    free(yc);
    free(v);
    ref_layer_free(&wrong);
    free(x);
    free(y);
    free(xd);
    free(yr);
    bnorm_layer_destroy(bn);
    ref_layer_free(&ref);
  }
}

int main(void) {
  test_random_sweep();
  test_large_mean();
  test_large_mean_keeps_center();
  test_plain_path_matches_general();
  test_in_place();
  test_pending_updates();
  test_checks_can_fail();
  test_moving_average_rounding();
  return th_finish();
}
