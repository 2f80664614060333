/*
 * test_float64.c — float64 layers (bnorm_config.dtype = BNORM_FLOAT64)
 * against the fp64 reference: forward, moving averages (immediate and
 * pending), backward, weight functions and saved files, over a random sweep
 * of configurations; and proof that the checks are tight enough to tell a
 * float64 layer from a float32 one.
 *
 * Tolerances: RTOL = 1e-12 relative to the tensor's scale, plus KMAG = 64
 * float64 roundings (2^-53 each) of the magnitude of the terms a value is
 * made of. The library and the reference compute the same formulas in double
 * but in different orders; their difference is a few hundred ulps of the
 * scale at most for the tensors here (<= a few thousand elements), while a
 * float32 computation is off by ~1e-7 of the scale, 10^5 times more
 * (test_float32_is_distinguishable shows the checks fail then).
 */
#include <bnorm.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "ref_bridge.h"

#define RTOL 1e-12
#define KMAG 64.0

static double *random_doubles(size_t n, double mean, double sd) {
  double *x = dmalloc(n);
  for (size_t i = 0; i < n; i++) x[i] = mean + sd * th_normal();
  return x;
}

static void check_variables(bnorm_layer *bn, const ref_layer *ref, const char *label) {
  int kinds[REF_VAR_KINDS];
  int nk = ref_layer_variable_kinds(ref, kinds);
  size_t C = ref->channels;
  double *buf = dmalloc(C), *mag = dmalloc(C);
  for (int i = 0; i < nk; i++) {
    CHECK_OK(bnorm_layer_get_variable(bn, (size_t)i, buf, C));
    char what[900];
    snprintf(what, sizeof what, "%.800s: %s", label, ref_var_names[kinds[i]]);
    ref_variable_magnitude(ref, kinds[i], mag);
    REF_CHECK_CLOSE64(buf, ref->var[kinds[i]], mag, C, RTOL, KMAG, what);
  }
  free(buf);
  free(mag);
}

/* The reference's weights, as doubles the float64 layer takes exactly. */
static void set_same_weights(bnorm_layer *bn, ref_layer *ref) {
  size_t count = ref_layer_weights_count(ref);
  float *w = ref_random_weights(ref);
  double *wd = to_double(w, count);
  /* Digits beyond float32, so that a layer rounding them would show. */
  for (size_t i = 0; i < count; i++) wd[i] *= 1.0 + 1e-9 * th_uniform();
  CHECK_OK(bnorm_layer_set_weights(bn, wd, count));
  int kinds[REF_VAR_KINDS];
  int nk = ref_layer_variable_kinds(ref, kinds);
  for (int k = 0; k < nk; k++)
    memcpy(ref->var[kinds[k]], wd + (size_t)k * ref->channels, ref->channels * sizeof(double));
  free(w);
  free(wd);
}

static int steps_training, steps_backward, cases_run;

/* One random configuration: a few calls, each checked with its backward. */
static void run_case(int id) {
  ref_sweep_case sc;
  ref_random_case(&sc);
  sc.rc.float64 = true;
  /* Keras refuses fused=True for float64 at construction (test_config). */
  if (sc.rc.behavior == REF_KERAS && sc.rc.fused == REF_FUSED_TRUE) sc.rc.fused = REF_FUSED_AUTO;
  char label[256];
  snprintf(label, sizeof label, "case %d (rank %d, %s, renorm %d, vbs %lld)", id, sc.rank,
           sc.rc.behavior == REF_KERAS ? "keras" : "v1", sc.rc.renorm,
           (long long)sc.rc.virtual_batch_size);
  ref_layer ref;
  if (ref_layer_build(&ref, &sc.rc, sc.build_shape, sc.rank) != 0) return; /* invalid */
  bnorm_config cfg;
  ref_to_bnorm_config(&cfg, &sc.rc);
  size_t C = ref.channels;
  adj_ctx adj = {0};
  adj.channels = C;
  adj.scale = fmalloc(C);
  adj.bias = fmalloc(C);
  double *as = dmalloc(C), *ab = dmalloc(C);
  if (sc.rc.adjustment) {
    cfg.adjustment = adj_cb;
    cfg.adjustment_user_data = &adj;
  }
  bnorm_layer *bn = NULL;
  bnorm_saved *saved = NULL;
  bnorm_updates *pending = NULL;
  if (!CHECKF(bnorm_layer_create(&cfg, &bn) == BNORM_OK &&
                  bnorm_layer_build(bn, sc.build_shape, sc.rank) == BNORM_OK,
              "%s: create/build: %s", label, bnorm_last_error()))
    goto done;
  cases_run++;
  CHECKF(!bnorm_layer_is_fused(bn), "%s: a float64 layer took the fused path", label);
  set_same_weights(bn, &ref);
  CHECK_OK(bnorm_saved_create(&saved));
  CHECK_OK(bnorm_updates_create(&pending));

  for (int step = 0; step < 3; step++) {
    int64_t shape[BNORM_MAX_RANK];
    bool training = th_uniform() < 0.7, use_pending = th_uniform() < 0.4;
    for (int a = 0; a < sc.rank; a++) shape[a] = sc.shape[a];
    if (step > 0) shape[0] = ref_next_batch(&sc, training);
    size_t n = ref_shape_count(shape, sc.rank);
    double *x = random_doubles(n, -2.0 + 4.0 * th_uniform(), 0.3 + 2.7 * th_uniform());
    double *dy = random_doubles(n, 0.0, 1.0);
    double *y = dmalloc(n), *dx = dmalloc(n), *dg = dmalloc(C), *db = dmalloc(C);
    double *yr = dmalloc(n), *ymag = dmalloc(n), *dxr = dmalloc(n), *dgr = dmalloc(C),
           *dbr = dmalloc(C), *dxm = dmalloc(n), *dgm = dmalloc(C), *dbm = dmalloc(C);
    for (size_t c = 0; c < C; c++) {
      as[c] = 0.9 + 0.2 * th_uniform();
      ab[c] = -0.1 + 0.2 * th_uniform();
      adj.scale[c] = (float)as[c];
      adj.bias[c] = (float)ab[c];
      as[c] = adj.scale[c];
      ab[c] = adj.bias[c];
    }
    char what[600];
    snprintf(what, sizeof what, "%s step %d (training %d, pending %d, B %lld)", label, step,
             training, use_pending, (long long)shape[0]);

    ref_forward_args ra = {0};
    ra.x = x;
    ra.shape = shape;
    ra.rank = sc.rank;
    ra.training = training;
    ra.adj_scale = as;
    ra.adj_bias = ab;
    ref_update upd = {0};
    ref_saved rs = {0};
    int rrc = ref_forward(&ref, &ra, yr, ymag, &upd, &rs);
    bnorm_forward_args fa = {0};
    fa.x = x;
    fa.y = y;
    fa.shape = shape;
    fa.rank = sc.rank;
    fa.training = training;
    fa.pending = use_pending ? pending : NULL;
    fa.saved = saved;
    bnorm_status st = bnorm_layer_forward(bn, &fa);
    if (CHECKF(st == BNORM_OK && rrc == 0, "%s: forward: %s / %s", what, bnorm_last_error(),
               ref_error())) {
      char sub[700];
      snprintf(sub, sizeof sub, "%s: y", what);
      REF_CHECK_CLOSE64(y, yr, ymag, n, RTOL, KMAG, sub);
      steps_training += rs.batch_stats;

      ref_backward(&rs, &ref, x, dy, shape, sc.rank, dxr, dgr, dbr, dxm, dgm, dbm);
      bnorm_backward_args ba = {0};
      ba.saved = saved;
      ba.x = x;
      ba.dy = dy;
      ba.shape = shape;
      ba.rank = sc.rank;
      ba.dx = dx;
      ba.dgamma = sc.rc.scale ? dg : NULL;
      ba.dbeta = sc.rc.center ? db : NULL;
      if (CHECKF(bnorm_layer_backward(bn, &ba) == BNORM_OK, "%s: backward: %s", what,
                 bnorm_last_error())) {
        steps_backward++;
        snprintf(sub, sizeof sub, "%s: dx", what);
        REF_CHECK_CLOSE64(dx, dxr, dxm, n, RTOL, KMAG, sub);
        snprintf(sub, sizeof sub, "%s: dgamma", what);
        if (sc.rc.scale) REF_CHECK_CLOSE64(dg, dgr, dgm, C, RTOL, KMAG, sub);
        snprintf(sub, sizeof sub, "%s: dbeta", what);
        if (sc.rc.center) REF_CHECK_CLOSE64(db, dbr, dbm, C, RTOL, KMAG, sub);
      }
      if (use_pending) CHECK_OK(bnorm_layer_apply_updates(bn, pending));
      ref_apply_update(&ref, &upd);
      snprintf(sub, sizeof sub, "%s: after the update", what);
      check_variables(bn, &ref, sub);
    }
    ref_update_free(&upd);
    ref_saved_free(&rs);
    free(x); free(dy); free(y); free(dx); free(dg); free(db);
    free(yr); free(ymag); free(dxr); free(dgr); free(dbr); free(dxm); free(dgm); free(dbm);
  }
done:
  bnorm_updates_destroy(pending);
  bnorm_saved_destroy(saved);
  bnorm_layer_destroy(bn);
  ref_layer_free(&ref);
  free(adj.scale);
  free(adj.bias);
  free(as);
  free(ab);
}

static void test_random_sweep(void) {
  th_seed(64);
  for (int id = 0; id < 200; id++) run_case(id);
  CHECKF(cases_run >= 150 && steps_training >= 200 && steps_backward >= 400,
         "sweep coverage: %d cases, %d training steps, %d backward steps", cases_run,
         steps_training, steps_backward);
}

/* x = 1e4 + N(0, 1): float64 keeps ~12 digits of the normalized output; a
 * float32 layer keeps ~4 (its input alone is rounded by 1e4 * 2^-24). The
 * same check must pass for one and fail for the other. */
static void test_float32_is_distinguishable(void) {
  const int64_t shape[2] = {256, 3};
  size_t n = 768;
  th_seed(7);
  double *x = random_doubles(n, 1e4, 1.0);
  float *xf = fmalloc(n), *yf = fmalloc(n);
  for (size_t i = 0; i < n; i++) xf[i] = (float)x[i];
  double *y = dmalloc(n), *yr = dmalloc(n), *yf_d = dmalloc(n);
  ref_config rc;
  ref_config_init(&rc);
  rc.float64 = true;
  ref_layer ref;
  CHECK(ref_layer_build(&ref, &rc, shape, 2) == 0);
  ref_forward_args ra = {0};
  ra.x = x;
  ra.shape = shape;
  ra.rank = 2;
  ra.training = true;
  CHECK(ref_forward(&ref, &ra, yr, NULL, NULL, NULL) == 0);

  bnorm_layer *bn64 = NULL, *bn32 = NULL;
  bnorm_config cfg;
  bnorm_config_init(&cfg);
  cfg.dtype = BNORM_FLOAT64;
  CHECK_OK(bnorm_layer_create(&cfg, &bn64));
  cfg.dtype = BNORM_FLOAT32;
  CHECK_OK(bnorm_layer_create(&cfg, &bn32));
  bnorm_forward_args fa = {0};
  fa.x = x;
  fa.y = y;
  fa.shape = shape;
  fa.rank = 2;
  fa.training = true;
  CHECK_OK(bnorm_layer_forward(bn64, &fa));
  fa.x = xf;
  fa.y = yf;
  CHECK_OK(bnorm_layer_forward(bn32, &fa));
  for (size_t i = 0; i < n; i++) yf_d[i] = yf[i];
  CHECK(ref_close_excess64(y, yr, NULL, n, RTOL, 0, NULL) <= 0);
  CHECK(ref_close_excess64(yf_d, yr, NULL, n, RTOL, 0, NULL) > 0);
  /* The moving mean keeps the input's digits too (decay * 1e4 + ...). */
  double mm64_all[3];
  float mm32_all[3];
  CHECK_OK(bnorm_layer_get_variable(bn64, 2, mm64_all, 3));
  CHECK_OK(bnorm_layer_get_variable(bn32, 2, mm32_all, 3));
  double mm64 = mm64_all[0];
  float mm32 = mm32_all[0];
  double mean0 = 0;
  for (size_t i = 0; i < n; i += 3) mean0 += x[i];
  mean0 /= 256;
  /* TensorFlow's decay is float32(1 - momentum) for float64 layers too. */
  double expected = 0.0 - (0.0 - mean0) * (double)(float)(1.0 - 0.99);
  CHECKF(fabs(mm64 - expected) <= 1e-12 * fabs(expected), "float64 moving_mean %.17g, want %.17g",
         mm64, expected);
  CHECKF(fabs((double)mm32 - expected) > 1e-12 * fabs(expected),
         "float32 moving_mean should be rounded: %.17g", (double)mm32);
  bnorm_layer_destroy(bn64);
  bnorm_layer_destroy(bn32);
  ref_layer_free(&ref);
  free(x); free(xf); free(yf); free(y); free(yr); free(yf_d);
}

/* Weight functions in float64: initializers, regularizer losses and
 * gradients, constraints, with values that float32 cannot hold. */
static void test_weight_functions(void) {
  const double g[3] = {0.1234567890123, -2.5, 3.000000001};
  bnorm_config cfg;
  bnorm_config_init(&cfg);
  cfg.dtype = BNORM_FLOAT64;
  cfg.gamma_initializer = bnorm_initializer_constant(0.1);
  cfg.gamma_regularizer = bnorm_regularizer_l2(0.01);
  cfg.beta_regularizer = bnorm_regularizer_l1(0.5);
  cfg.gamma_constraint = bnorm_constraint_unit_norm();
  bnorm_layer *bn = NULL;
  CHECK_OK(bnorm_layer_create(&cfg, &bn));
  const int64_t shape[2] = {-1, 3};
  CHECK_OK(bnorm_layer_build(bn, shape, 2));
  const double *gamma = bnorm_layer_variable_data(bn, 0);
  CHECKF(gamma && gamma[0] == 0.1, "Constant(0.1) in float64 is 0.1 exactly: %.17g",
         gamma ? gamma[0] : NAN);
  CHECK_OK(bnorm_layer_set_variable(bn, 0, g, 3));
  double losses[2];
  size_t count = 0;
  CHECK_OK(bnorm_layer_regularization_losses(bn, losses, 2, &count));
  /* Keras' L2 factor is float32(0.01); the sum of squares is float64. */
  double l2 = (double)(float)0.01;
  double sq = g[0] * g[0] + g[1] * g[1] + g[2] * g[2];
  CHECKF(count == 2 && fabs(losses[0] - 2.0 * l2 * (0.5 * sq)) <= 1e-15 * losses[0],
         "L2 loss %.17g, want %.17g", losses[0], 2.0 * l2 * 0.5 * sq);
  double dg[3] = {1, 1, 1}, db[3] = {0, 0, 0};
  CHECK_OK(bnorm_layer_add_regularization_gradients(bn, dg, db));
  for (int i = 0; i < 3; i++)
    CHECKF(dg[i] == 1.0 + 2.0 * l2 * g[i], "L2 gradient %d: %.17g", i, dg[i]);
  CHECK(db[0] == 0.0 && db[1] == 0.0 && db[2] == 0.0); /* beta is 0: sign 0 */
  CHECK_OK(bnorm_layer_apply_constraints(bn));
  double norm = sqrt(sq), got[3];
  CHECK_OK(bnorm_layer_get_variable(bn, 0, got, 3));
  for (int i = 0; i < 3; i++)
    CHECKF(fabs(got[i] - g[i] / (1e-7 + norm)) <= 1e-16 * fabs(got[i]),
           "UnitNorm %d: %.17g, want %.17g", i, got[i], g[i] / (1e-7 + norm));
  bnorm_layer_destroy(bn);
}

/* Saved files: a float64 layer round-trips bit for bit (version 2); its
 * file loads into a float32 layer rounded, and a float32 file into a float64
 * layer exactly. */
static void test_files(void) {
  bnorm_config cfg;
  bnorm_config_init(&cfg);
  cfg.dtype = BNORM_FLOAT64;
  bnorm_layer *a = NULL, *b = NULL, *f32 = NULL;
  CHECK_OK(bnorm_layer_create(&cfg, &a));
  CHECK_OK(bnorm_layer_create(&cfg, &b));
  cfg.dtype = BNORM_FLOAT32;
  CHECK_OK(bnorm_layer_create(&cfg, &f32));
  const int64_t shape[2] = {-1, 2};
  CHECK_OK(bnorm_layer_build(a, shape, 2));
  CHECK_OK(bnorm_layer_build(b, shape, 2));
  CHECK_OK(bnorm_layer_build(f32, shape, 2));
  const double w[8] = {0.1, -0.2, 1e-300, NAN, -0.0, 1.0 / 3.0, INFINITY, 12345.678901234};
  CHECK_OK(bnorm_layer_set_weights(a, w, 8));
  size_t size = 0;
  CHECK_STATUS(bnorm_layer_save_to_buffer(a, NULL, 0, &size), BNORM_ERR_INVALID_ARGUMENT);
  unsigned char *buf = malloc(size);
  CHECK_OK(bnorm_layer_save_to_buffer(a, buf, size, &size));
  CHECK(buf[8] == 2); /* version 2 */
  CHECK_OK(bnorm_layer_load_from_buffer(b, buf, size));
  double back[8];
  CHECK_OK(bnorm_layer_get_weights(b, back, 8));
  CHECK(memcmp(back, w, sizeof w) == 0);
  CHECK_OK(bnorm_layer_load_from_buffer(f32, buf, size));
  float rounded[8];
  CHECK_OK(bnorm_layer_get_weights(f32, rounded, 8));
  bool all = true;
  for (int i = 0; i < 8; i++)
    all = all && (isnan(w[i]) ? isnan(rounded[i])
                              : memcmp(&rounded[i], &(float){(float)w[i]}, sizeof(float)) == 0);
  CHECKF(all, "float64 file into a float32 layer: values rounded to float32");
  free(buf);
  CHECK_STATUS(bnorm_layer_save_to_buffer(f32, NULL, 0, &size), BNORM_ERR_INVALID_ARGUMENT);
  buf = malloc(size);
  CHECK_OK(bnorm_layer_save_to_buffer(f32, buf, size, &size));
  CHECK(buf[8] == 1); /* float32 layers keep writing version 1 */
  CHECK_OK(bnorm_layer_load_from_buffer(b, buf, size));
  CHECK_OK(bnorm_layer_get_weights(b, back, 8));
  all = true;
  for (int i = 0; i < 8; i++)
    all = all && (isnan(back[i]) ? isnan(rounded[i]) : back[i] == (double)rounded[i]);
  CHECKF(all, "float32 file into a float64 layer: exact");
  free(buf);
  bnorm_layer_destroy(a);
  bnorm_layer_destroy(b);
  bnorm_layer_destroy(f32);
}

/* A bnorm_saved filled by a float32 layer is refused by a float64 one. */
static void test_saved_dtype_checked(void) {
  bnorm_config cfg;
  bnorm_config_init(&cfg);
  bnorm_layer *l32 = NULL;
  CHECK_OK(bnorm_layer_create(&cfg, &l32));
  bnorm_saved *saved = NULL;
  CHECK_OK(bnorm_saved_create(&saved));
  const int64_t shape[2] = {2, 1};
  float x[2] = {1, 2}, y[2];
  bnorm_forward_args fa = {x, y, shape, 2, true, NULL, saved};
  CHECK_OK(bnorm_layer_forward(l32, &fa));
  double xd[2] = {1, 2}, dyd[2] = {1, 1}, dxd[2];
  cfg.dtype = BNORM_FLOAT64;
  bnorm_layer *l64 = NULL;
  CHECK_OK(bnorm_layer_create(&cfg, &l64));
  CHECK_OK(bnorm_layer_build(l64, shape, 2));
  bnorm_backward_args ba = {saved, xd, dyd, shape, 2, dxd, NULL, NULL};
  CHECK_STATUS(bnorm_layer_backward(l64, &ba), BNORM_ERR_INVALID_ARGUMENT);
  bnorm_saved_destroy(saved);
  bnorm_layer_destroy(l32);
  bnorm_layer_destroy(l64);
}

int main(void) {
  test_random_sweep();
  test_float32_is_distinguishable();
  test_weight_functions();
  test_files();
  test_saved_dtype_checked();
  return th_finish();
}
