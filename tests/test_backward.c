/*
 * test_backward.c — gradients (dx, dgamma, dbeta) of the layer against the
 * fp64 reference: the reference's direct formula (spec §11) is first checked
 * against central differences of its own forward, then the library is
 * checked against both the formula and the finite differences, in every mode
 * (training, inference, renorm, ghost batches, adjustment, multi-axis,
 * center/scale off, trainable=false in both behaviours, fused shapes).
 *
 * Tolerances:
 *   formula vs FD, both fp64: 1e-6 relative to the gradient's scale. With a
 *   relative step h = 1e-6 the central difference has truncation error
 *   ~h^2 * |L'''| ~ 1e-12 and cancellation error ~1e-16 * |L| / h ~ 1e-10*|L|
 *   (|L| <= a few hundred here), both far below 1e-6.
 *   library (fp32) vs reference: RTOL = 1e-5 of the gradient's scale plus
 *   KMAG = 64 fp32 roundings of the magnitude of the summed terms (dgamma and
 *   dbeta are sums of up to ~2000 products, dx a difference of three terms of
 *   size |dy|; their cancellation is inherent, not an error of the library).
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
#define FD_STEP 1e-6
#define FD_RTOL 1e-6

/* fp64 vs fp64: |a - b| <= rtol * (|b| + max|b|) + atol */
static bool check_close_d(const double *got, const double *want, size_t n, double rtol,
                          double atol, const char *what) {
  double scale = 0;
  for (size_t i = 0; i < n; i++) scale = fabs(want[i]) > scale ? fabs(want[i]) : scale;
  for (size_t i = 0; i < n; i++) {
    double err = fabs(got[i] - want[i]);
    if (!(err <= rtol * (fabs(want[i]) + scale) + atol))
      return CHECKF(false, "%s: element %zu of %zu is %.12g, expected %.12g", what, i, n, got[i],
                    want[i]);
  }
  return CHECKF(true, "%s", what);
}

/* fp32 library output vs FD, with the fp32 rounding allowance of the formula
 * magnitudes. */
static void check_lib_vs(const float *got, const double *want, const double *mag, size_t n,
                         const char *label, const char *name) {
  char what[700];
  snprintf(what, sizeof what, "%s: %s", label, name);
  REF_CHECK_CLOSE(got, want, mag, n, RTOL, KMAG, what);
}

/* ------------------------------------------------------------------------ */
/* One configuration: forward + backward on the library and the reference.  */
/* ------------------------------------------------------------------------ */

typedef struct bcase {
  ref_config rc;
  int rank;
  int64_t shape[BNORM_MAX_RANK];
  bool training;
  bool check_fd; /* also compare the library with FD of the reference */
  double x_mean, x_sd;
} bcase;

static int cases_run, cases_fd, cases_training, cases_inference;

/* Returns false when the configuration is invalid for the reference (the
 * caller then skips it). */
static bool run_case(const bcase *bc, const char *label) {
  ref_layer ref;
  if (ref_layer_build(&ref, &bc->rc, bc->shape, bc->rank) != 0) return false;
  size_t C = ref.channels, n = ref_shape_count(bc->shape, bc->rank);
  bnorm_config cfg;
  ref_to_bnorm_config(&cfg, &bc->rc);
  adj_ctx adj = {.scale = fmalloc(C), .bias = fmalloc(C), .channels = C};
  double *as = dmalloc(C), *ab = dmalloc(C);
  for (size_t c = 0; c < C; c++) {
    adj.scale[c] = (float)(0.8 + 0.4 * th_uniform());
    adj.bias[c] = (float)(-0.2 + 0.4 * th_uniform());
    as[c] = adj.scale[c];
    ab[c] = adj.bias[c];
  }
  if (bc->rc.adjustment) {
    cfg.adjustment = adj_cb;
    cfg.adjustment_user_data = &adj;
  }
  bnorm_layer *bn = NULL;
  bnorm_saved *saved = NULL;
  float *x = fmalloc(n), *y = fmalloc(n), *dy = fmalloc(n), *dx = fmalloc(n);
  float *dg = fmalloc(C), *db = fmalloc(C);
  double *xd = NULL, *dyd = NULL, *yr = dmalloc(n), *dxr = dmalloc(n), *dgr = dmalloc(C),
         *dbr = dmalloc(C), *dxm = dmalloc(n), *dgm = dmalloc(C), *dbm = dmalloc(C);
  double *fdx = dmalloc(n), *fdg = dmalloc(C), *fdb = dmalloc(C);
  ref_saved rs;
  memset(&rs, 0, sizeof rs);
  cases_run++;

  if (!CHECKF(bnorm_layer_create(&cfg, &bn) == BNORM_OK &&
                  bnorm_layer_build(bn, bc->shape, bc->rank) == BNORM_OK,
              "%s: create/build: %s", label, bnorm_last_error()))
    goto done;
  float *w = ref_random_weights(&ref);
  CHECK_OK(bnorm_layer_set_weights(bn, w, ref_layer_weights_count(&ref)));
  ref_layer_set_weights_f(&ref, w);
  free(w);
  CHECK_OK(bnorm_saved_create(&saved));

  th_fill_normal(x, n, bc->x_mean, bc->x_sd);
  th_fill_normal(dy, n, 0.0, 1.0);
  xd = to_double(x, n);
  dyd = to_double(dy, n);

  ref_forward_args ra = {0};
  ra.x = xd;
  ra.shape = bc->shape;
  ra.rank = bc->rank;
  ra.training = bc->training;
  ra.adj_scale = as;
  ra.adj_bias = ab;
  if (!CHECKF(ref_forward(&ref, &ra, yr, NULL, NULL, &rs) == 0, "%s: reference: %s", label,
              ref_error()))
    goto done;
  if (rs.batch_stats)
    cases_training++;
  else
    cases_inference++;
  ref_backward(&rs, &ref, xd, dyd, bc->shape, bc->rank, dxr, dgr, dbr, dxm, dgm, dbm);

  bnorm_forward_args fa = {
      .x = x,
      .y = y,
      .shape = bc->shape,
      .rank = bc->rank,
      .training = bc->training,
      .saved = saved};
  if (!CHECKF(bnorm_layer_forward(bn, &fa) == BNORM_OK, "%s: forward: %s", label,
              bnorm_last_error()))
    goto done;
  bnorm_backward_args ba = {
      .saved = saved,
      .x = x,
      .dy = dy,
      .shape = bc->shape,
      .rank = bc->rank,
      .dx = dx,
      .dgamma = bc->rc.scale ? dg : NULL,
      .dbeta = bc->rc.center ? db : NULL};
  if (!CHECKF(bnorm_layer_backward(bn, &ba) == BNORM_OK, "%s: backward: %s", label,
              bnorm_last_error()))
    goto done;
  check_lib_vs(dx, dxr, dxm, n, label, "dx vs formula");
  if (bc->rc.scale) check_lib_vs(dg, dgr, dgm, C, label, "dgamma vs formula");
  if (bc->rc.center) check_lib_vs(db, dbr, dbm, C, label, "dbeta vs formula");

  if (bc->check_fd) {
    cases_fd++;
    /* the reference's formula against its own central differences */
    if (CHECKF(ref_fd_gradients(&ref, &ra, &rs, dyd, FD_STEP, fdx, bc->rc.scale ? fdg : NULL,
                                bc->rc.center ? fdb : NULL) == 0,
               "%s: FD: %s", label, ref_error())) {
      char what[700];
      snprintf(what, sizeof what, "%s: reference dx formula vs FD", label);
      check_close_d(dxr, fdx, n, FD_RTOL, 1e-9, what);
      if (bc->rc.scale) {
        snprintf(what, sizeof what, "%s: reference dgamma formula vs FD", label);
        check_close_d(dgr, fdg, C, FD_RTOL, 1e-9, what);
        check_lib_vs(dg, fdg, dgm, C, label, "dgamma vs FD");
      }
      if (bc->rc.center) {
        snprintf(what, sizeof what, "%s: reference dbeta formula vs FD", label);
        check_close_d(dbr, fdb, C, FD_RTOL, 1e-9, what);
        check_lib_vs(db, fdb, dbm, C, label, "dbeta vs FD");
      }
      check_lib_vs(dx, fdx, dxm, n, label, "dx vs FD");
    }
  }

done:
  ref_saved_free(&rs);
  bnorm_saved_destroy(saved);
  bnorm_layer_destroy(bn);
  ref_layer_free(&ref);
  free(adj.scale);
  free(adj.bias);
  free(as);
  free(ab);
  free(x);
  free(y);
  free(dy);
  free(dx);
  free(dg);
  free(db);
  free(xd);
  free(dyd);
  free(yr);
  free(dxr);
  free(dgr);
  free(dbr);
  free(dxm);
  free(dgm);
  free(dbm);
  free(fdx);
  free(fdg);
  free(fdb);
  return true;
}

/* ------------------------------------------------------------------------ */
/* Named modes                                                              */
/* ------------------------------------------------------------------------ */

static void base_case(bcase *bc, int rank, const int64_t *shape, int axis) {
  memset(bc, 0, sizeof *bc);
  ref_config_init(&bc->rc);
  bc->rc.axis[0] = axis;
  bc->rc.axis_count = 1;
  bc->rc.momentum = 0.9;
  bc->rank = rank;
  for (int i = 0; i < rank; i++) bc->shape[i] = shape[i];
  bc->training = true;
  bc->check_fd = true;
  bc->x_mean = 0.5;
  bc->x_sd = 1.5;
}

static void test_modes(void) {
  th_seed(31337);
  static const int64_t s2[] = {12, 4}, s3[] = {6, 3, 4}, s4[] = {4, 3, 2, 5}, s5[] = {2, 3, 2, 2, 2},
                       s1[] = {7};
  for (int beh = 0; beh < 2; beh++) {
    for (int training = 0; training < 2; training++) {
      bcase bc;
      char label[200];
#define RUN(name)                                                                              \
  do {                                                                                         \
    bc.rc.behavior = beh ? REF_COMPAT_V1 : REF_KERAS;                                          \
    bc.training = training != 0;                                                               \
    snprintf(label, sizeof label, "mode %s (%s, training %d)", name, beh ? "compat_v1" : "keras", \
             training);                                                                        \
    CHECKF(run_case(&bc, label), "%s: invalid configuration in the test", label);               \
  } while (0)
      base_case(&bc, 2, s2, -1);
      RUN("plain 2-D");
      base_case(&bc, 4, s4, -1);
      RUN("4-D NHWC (fused)");
      base_case(&bc, 4, s4, 1);
      RUN("4-D NCHW (fused)");
      base_case(&bc, 5, s5, -1);
      RUN("5-D NDHWC (fused)");
      base_case(&bc, 4, s4, -1);
      bc.rc.fused = REF_FUSED_FALSE;
      RUN("4-D not fused");
      base_case(&bc, 3, s3, 1);
      RUN("3-D middle axis");
      base_case(&bc, 2, s2, 0);
      RUN("axis 0");
      base_case(&bc, 3, s3, 0);
      bc.rc.axis[1] = 2;
      bc.rc.axis_count = 2;
      RUN("multi-axis [0, 2]");
      base_case(&bc, 4, s4, -1);
      bc.rc.axis[1] = 1;
      bc.rc.axis_count = 2;
      RUN("multi-axis [-1, 1]");
      base_case(&bc, 2, s2, -1);
      bc.rc.renorm = true;
      bc.rc.renorm_momentum = 0.7;
      RUN("renorm, no clipping");
      base_case(&bc, 3, s3, -1);
      bc.rc.renorm = true;
      bc.rc.has_rmax = bc.rc.has_rmin = bc.rc.has_dmax = true;
      bc.rc.rmax = 1.1;
      bc.rc.rmin = 0.9;
      bc.rc.dmax = 0.1;
      bc.x_mean = 2.0; /* d clipped */
      RUN("renorm, clipped");
      base_case(&bc, 3, s3, -1);
      bc.rc.virtual_batch_size = 2;
      RUN("ghost vbs 2");
      base_case(&bc, 3, s3, 1);
      bc.rc.virtual_batch_size = 3;
      bc.rc.renorm = true;
      RUN("ghost vbs 3 + renorm, axis 1");
      base_case(&bc, 2, s2, -1);
      bc.rc.adjustment = true;
      RUN("adjustment");
      base_case(&bc, 3, s3, -1);
      bc.rc.adjustment = true;
      bc.rc.renorm = true;
      bc.rc.has_rmax = true;
      bc.rc.rmax = 1.05;
      RUN("adjustment + renorm");
      base_case(&bc, 4, s4, -1);
      bc.rc.center = false;
      RUN("center off");
      base_case(&bc, 4, s4, 1);
      bc.rc.scale = false;
      RUN("scale off");
      base_case(&bc, 3, s3, -1);
      bc.rc.scale = false;
      bc.rc.center = false;
      bc.rc.renorm = true;
      RUN("center and scale off + renorm");
      base_case(&bc, 3, s3, -1);
      bc.rc.trainable = false;
      RUN("trainable=false");
      base_case(&bc, 3, s3, 2);
      bc.rc.trainable = false;
      bc.rc.renorm = true;
      bc.rc.adjustment = true;
      RUN("trainable=false + renorm + adjustment");
      base_case(&bc, 4, s4, -1);
      bc.rc.epsilon = 1e-6;
      bc.rc.fused_epsilon_floor = true;
      RUN("fused epsilon floor");
      base_case(&bc, 1, s1, -1);
      RUN("rank 1 (N = 1)");
#undef RUN
    }
  }
}

/* ------------------------------------------------------------------------ */
/* Random sweep                                                             */
/* ------------------------------------------------------------------------ */

static void test_random(void) {
  const char *env = getenv("BNORM_SWEEP_SEED"); /* explore another sweep */
  th_seed(env ? strtoull(env, NULL, 10) : 8086);
  int done = 0, tries = 0;
  while (done < 150 && tries < 2000) {
    tries++;
    bcase bc;
    memset(&bc, 0, sizeof bc);
    ref_config *c = &bc.rc;
    ref_config_init(c);
    c->behavior = th_uniform() < 0.5 ? REF_KERAS : REF_COMPAT_V1;
    int R = rand_int(1, 5);
    bc.rank = R;
    if (th_uniform() < 0.6 || R == 1) {
      c->axis[0] = rand_int(-R, R - 1);
      c->axis_count = 1;
    } else {
      int k = 0;
      while (k == 0)
        for (int a = 0; a < R; a++)
          if (th_uniform() < 0.5) c->axis[k++] = th_uniform() < 0.3 ? a - R : a;
      c->axis_count = k;
    }
    bool axis0 = false;
    for (int i = 0; i < c->axis_count; i++)
      if (c->axis[i] == 0 || c->axis[i] == -R) axis0 = true;
    bc.shape[0] = rand_int(1, 6);
    for (int a = 1; a < R; a++) bc.shape[a] = rand_int(1, 4);
    if (!axis0 && th_uniform() < 0.3) {
      c->virtual_batch_size = rand_int(1, 3);
      bc.shape[0] = c->virtual_batch_size * rand_int(1, 3);
    }
    if (th_uniform() < 0.3) {
      c->renorm = true;
      c->renorm_momentum = 0.5 + 0.49 * th_uniform();
      if (th_uniform() < 0.5) { c->has_rmax = true; c->rmax = 1.0 + 0.5 * th_uniform(); }
      if (th_uniform() < 0.5) { c->has_rmin = true; c->rmin = 0.6 + 0.4 * th_uniform(); }
      if (th_uniform() < 0.5) { c->has_dmax = true; c->dmax = 0.5 * th_uniform(); }
    }
    c->adjustment = c->virtual_batch_size == 0 && th_uniform() < 0.25;
    double f = th_uniform();
    c->fused = f < 0.5 ? REF_FUSED_AUTO : f < 0.75 ? REF_FUSED_TRUE : REF_FUSED_FALSE;
    c->center = th_uniform() < 0.8;
    c->scale = th_uniform() < 0.8;
    c->trainable = th_uniform() < 0.8;
    c->epsilon = th_uniform() < 0.5 ? 1e-3 : 1e-4 + 0.3 * th_uniform();
    bc.training = th_uniform() < 0.7;
    bc.x_mean = -2.0 + 4.0 * th_uniform();
    bc.x_sd = 0.3 + 2.7 * th_uniform();
    bc.check_fd = ref_shape_count(bc.shape, R) <= 200;
    char label[300];
    snprintf(label, sizeof label,
             "random %d (beh %d rank %d axis[0] %d n_axis %d vbs %lld renorm %d adj %d center %d "
             "scale %d trainable %d training %d)",
             done, (int)c->behavior, R, c->axis[0], c->axis_count,
             (long long)c->virtual_batch_size, c->renorm, c->adjustment, c->center, c->scale,
             c->trainable, bc.training);
    if (run_case(&bc, label)) done++;
  }
  CHECK(done >= 150);
}

/* ------------------------------------------------------------------------ */
/* Spec §11 test vector: FusedBatchNormGradOpTest.Simple                     */
/* ------------------------------------------------------------------------ */

static void test_fused_grad_vector(void) {
  const float x[6] = {1, 7, 4, -3, -11, 13}, dy[6] = {2, 9, -4, 5, 8, 7};
  const double want_dx[6] = {-1.34, 2.47, -4.44, 0.17, 1.60, 1.53};
  int64_t shape[4] = {1, 1, 6, 1}; /* NHWC, one channel */
  for (int beh = 0; beh < 2; beh++) {
    bnorm_config cfg;
    bnorm_config_init(&cfg);
    cfg.behavior = beh ? BNORM_BEHAVIOR_COMPAT_V1 : BNORM_BEHAVIOR_KERAS;
    cfg.epsilon = 1e-3;
    bnorm_layer *bn = NULL;
    bnorm_saved *saved = NULL;
    if (!CHECK_OK(bnorm_layer_create(&cfg, &bn)) || !CHECK_OK(bnorm_layer_build(bn, shape, 4)) ||
        !CHECK_OK(bnorm_saved_create(&saved))) {
      bnorm_layer_destroy(bn);
      bnorm_saved_destroy(saved);
      continue;
    }
    CHECK(bnorm_layer_is_fused(bn));
    size_t ig = 0, ib = 0;
    float four = 4.0f, three = 3.0f;
    CHECK_OK(bnorm_layer_find_variable(bn, "gamma", &ig));
    CHECK_OK(bnorm_layer_find_variable(bn, "beta", &ib));
    CHECK_OK(bnorm_layer_set_variable(bn, ig, &four, 1));
    CHECK_OK(bnorm_layer_set_variable(bn, ib, &three, 1));
    float y[6], dx[6], dg, db;
    bnorm_forward_args fa = {
        .x = x,
        .y = y,
        .shape = shape,
        .rank = 4,
        .training = true,
        .saved = saved};
    CHECK_OK(bnorm_layer_forward(bn, &fa));
    bnorm_backward_args ba = {
        .saved = saved,
        .x = x,
        .dy = dy,
        .shape = shape,
        .rank = 4,
        .dx = dx,
        .dgamma = &dg,
        .dbeta = &db};
    if (CHECK_OK(bnorm_layer_backward(bn, &ba))) {
      for (int i = 0; i < 6; i++)
        CHECKF(fabs(dx[i] - want_dx[i]) <= 0.01, "FusedBatchNormGradOpTest.Simple dx[%d] = %g, want %g",
               i, (double)dx[i], want_dx[i]);
      CHECKF(fabs(dg - -1.6488) <= 0.01, "FusedBatchNormGradOpTest.Simple dscale %g", (double)dg);
      CHECKF(fabs(db - 27.0) <= 0.01, "FusedBatchNormGradOpTest.Simple doffset %g", (double)db);
    }
    /* the reference reproduces it tightly */
    ref_config rc;
    ref_config_init(&rc);
    rc.behavior = beh ? REF_COMPAT_V1 : REF_KERAS;
    ref_layer ref;
    if (CHECK(ref_layer_build(&ref, &rc, shape, 4) == 0)) {
      ref.var[REF_GAMMA][0] = 4.0;
      ref.var[REF_BETA][0] = 3.0;
      double xd[6], dyd[6], yr[6], dxr[6], dgr, dbr;
      for (int i = 0; i < 6; i++) {
        xd[i] = x[i];
        dyd[i] = dy[i];
      }
      ref_forward_args ra = {0};
      ra.x = xd;
      ra.shape = shape;
      ra.rank = 4;
      ra.training = true;
      ref_saved rs;
      CHECK(ref_forward(&ref, &ra, yr, NULL, NULL, &rs) == 0);
      CHECK(fabs(rs.mean[0] - 1.8333333333) < 1e-6 && fabs(rs.var[0] - 57.4722222) < 1e-5);
      ref_backward(&rs, &ref, xd, dyd, shape, 4, dxr, &dgr, &dbr, NULL, NULL, NULL);
      for (int i = 0; i < 6; i++) CHECK(fabs(dxr[i] - want_dx[i]) <= 0.01);
      CHECK(fabs(dgr - -1.6488) <= 1e-4 && dbr == 27.0);
      REF_CHECK_CLOSE(dx, dxr, NULL, 6, RTOL, 0, "Simple: library dx vs reference");
      ref_saved_free(&rs);
      ref_layer_free(&ref);
    }
    bnorm_saved_destroy(saved);
    bnorm_layer_destroy(bn);
  }
}

/* ------------------------------------------------------------------------ */
/* The saved state and the argument variants                                */
/* ------------------------------------------------------------------------ */

static void test_saved_and_variants(void) {
  th_seed(2718);
  static const int64_t shape[3] = {8, 3, 4};
  for (int renorm = 0; renorm < 2; renorm++) {
    for (int training = 0; training < 2; training++) {
      ref_config rc;
      ref_config_init(&rc);
      rc.renorm = renorm != 0;
      rc.momentum = 0.5;
      rc.renorm_momentum = 0.5;
      ref_layer ref;
      if (!CHECK(ref_layer_build(&ref, &rc, shape, 3) == 0)) continue;
      bnorm_config cfg;
      ref_to_bnorm_config(&cfg, &rc);
      bnorm_layer *bn = NULL;
      bnorm_saved *saved = NULL;
      CHECK_OK(bnorm_layer_create(&cfg, &bn));
      CHECK_OK(bnorm_layer_build(bn, shape, 3));
      CHECK_OK(bnorm_saved_create(&saved));
      float *w = ref_random_weights(&ref);
      size_t wc = ref_layer_weights_count(&ref);
      CHECK_OK(bnorm_layer_set_weights(bn, w, wc));
      ref_layer_set_weights_f(&ref, w);
      size_t n = 96, C = 4;
      float x[96], x2[96], y[96], dy[96], dx[96], dx2[96], dg[4], db[4];
      double xd[96], dyd[96], yr[96], dxr[96], dgr[4], dbr[4], dxm[96], dgm[4], dbm[4];
      th_fill_normal(x, n, 1.0, 2.0);
      th_fill_normal(x2, n, -3.0, 0.5);
      th_fill_normal(dy, n, 0.0, 1.0);
      for (size_t i = 0; i < n; i++) {
        xd[i] = x[i];
        dyd[i] = dy[i];
      }
      ref_forward_args ra = {0};
      ra.x = xd;
      ra.shape = shape;
      ra.rank = 3;
      ra.training = training != 0;
      ref_saved rs;
      CHECK(ref_forward(&ref, &ra, yr, NULL, NULL, &rs) == 0);
      ref_backward(&rs, &ref, xd, dyd, shape, 3, dxr, dgr, dbr, dxm, dgm, dbm);

      bnorm_forward_args fa = {
          .x = x,
          .y = y,
          .shape = shape,
          .rank = 3,
          .training = training != 0,
          .saved = saved};
      CHECK_OK(bnorm_layer_forward(bn, &fa));
      /* the variables change after the call: gamma (an optimizer step) and
       * the moving statistics (another training call without `saved`) */
      float g2[4] = {-1.0f, 0.5f, 3.0f, 2.0f};
      CHECK_OK(bnorm_layer_set_variable(bn, 0, g2, C));
      fa.x = x2;
      fa.saved = NULL;
      fa.training = true;
      CHECK_OK(bnorm_layer_forward(bn, &fa));

      char label[96];
      snprintf(label, sizeof label, "saved (renorm %d, training %d)", renorm, training);
      bnorm_backward_args ba = {
          .saved = saved,
          .x = x,
          .dy = dy,
          .shape = shape,
          .rank = 3,
          .dx = dx,
          .dgamma = dg,
          .dbeta = db};
      if (CHECK_OK(bnorm_layer_backward(bn, &ba))) {
        check_lib_vs(dx, dxr, dxm, n, label, "dx after the variables changed");
        check_lib_vs(dg, dgr, dgm, C, label, "dgamma after the variables changed");
        check_lib_vs(db, dbr, dbm, C, label, "dbeta after the variables changed");
      }
      /* dx may be NULL, dgamma/dbeta may be NULL */
      ba.dx = NULL;
      memset(dg, 0, sizeof dg);
      ba.dbeta = NULL;
      if (CHECK_OK(bnorm_layer_backward(bn, &ba)))
        check_lib_vs(dg, dgr, dgm, C, label, "dgamma with dx and dbeta NULL");
      ba.dx = dx2;
      ba.dgamma = NULL;
      ba.dbeta = NULL;
      if (CHECK_OK(bnorm_layer_backward(bn, &ba)))
        CHECKF(memcmp(dx, dx2, sizeof dx) == 0, "%s: dx depends on which outputs are asked for",
               label);
      /* dx may equal dy */
      float inout[96];
      memcpy(inout, dy, sizeof inout);
      ba.dy = inout;
      ba.dx = inout;
      if (CHECK_OK(bnorm_layer_backward(bn, &ba)))
        CHECKF(memcmp(dx, inout, sizeof dx) == 0, "%s: in-place dx (dx == dy) differs", label);
      ref_saved_free(&rs);
      free(w);
      bnorm_saved_destroy(saved);
      bnorm_layer_destroy(bn);
      ref_layer_free(&ref);
    }
  }
  /* dgamma must be NULL without gamma, dbeta without beta */
  bnorm_config cfg;
  bnorm_config_init(&cfg);
  cfg.scale = false;
  cfg.center = false;
  bnorm_layer *bn = NULL;
  bnorm_saved *saved = NULL;
  int64_t shape2[2] = {4, 2};
  float x[8] = {1, 2, 3, 4, 5, 6, 7, 9}, y[8], dy[8] = {1, -1, 2, 0, 1, 1, -2, 3}, dx[8], g[2];
  CHECK_OK(bnorm_layer_create(&cfg, &bn));
  CHECK_OK(bnorm_layer_build(bn, shape2, 2));
  CHECK_OK(bnorm_saved_create(&saved));
  bnorm_forward_args fa = {
      .x = x,
      .y = y,
      .shape = shape2,
      .rank = 2,
      .training = true,
      .saved = saved};
  CHECK_OK(bnorm_layer_forward(bn, &fa));
  bnorm_backward_args ba = {
      .saved = saved,
      .x = x,
      .dy = dy,
      .shape = shape2,
      .rank = 2,
      .dx = dx,
      .dgamma = g};
  CHECK(bnorm_layer_backward(bn, &ba) != BNORM_OK);
  ba.dgamma = NULL;
  ba.dbeta = g;
  CHECK(bnorm_layer_backward(bn, &ba) != BNORM_OK);
  ba.dbeta = NULL;
  CHECK_OK(bnorm_layer_backward(bn, &ba));
  bnorm_saved_destroy(saved);
  bnorm_layer_destroy(bn);
}

/* The checks can fail: a gradient that ignores one rule is rejected. */
static void test_checks_can_fail(void) {
  th_seed(1);
  int64_t shape[2] = {10, 3};
  ref_config rc;
  ref_config_init(&rc);
  rc.renorm = true;
  ref_layer ref;
  if (!CHECK(ref_layer_build(&ref, &rc, shape, 2) == 0)) return;
  for (size_t c = 0; c < 3; c++) {
    ref.var[REF_GAMMA][c] = 1.5 + (double)c;
    ref.var[REF_RENORM_STDDEV][c] = 0.5;
    ref.var[REF_RENORM_MEAN][c] = 0.3;
  }
  double x[30], dy[30], y[30], dx[30], dxm[30], dg[3], dgm[3], db[3], fd[30];
  for (int i = 0; i < 30; i++) {
    x[i] = th_normal();
    dy[i] = th_normal();
  }
  ref_forward_args ra = {0};
  ra.x = x;
  ra.shape = shape;
  ra.rank = 2;
  ra.training = true;
  ref_saved rs;
  CHECK(ref_forward(&ref, &ra, y, NULL, NULL, &rs) == 0);
  ref_backward(&rs, &ref, x, dy, shape, 2, dx, dg, db, dxm, dgm, NULL);
  float f[30];
  /* dx without the factor r */
  for (int i = 0; i < 30; i++) f[i] = (float)(dx[i] / rs.r[i % 3]);
  size_t w;
  CHECK(ref_close_excess(f, dx, dxm, 30, RTOL, KMAG, &w) > 0);
  /* dx without the mean(dy * xhat) term */
  double mdyx[3] = {0, 0, 0};
  for (int i = 0; i < 30; i++) mdyx[i % 3] += dy[i] * (x[i] - rs.mean[i % 3]) * rs.rho[i % 3] / 10.0;
  for (int i = 0; i < 30; i++) {
    int c = i % 3;
    f[i] = (float)(dx[i] + ref.var[REF_GAMMA][c] * rs.r[c] * rs.rho[c] *
                               ((x[i] - rs.mean[c]) * rs.rho[c]) * mdyx[c]);
  }
  CHECK(ref_close_excess(f, dx, dxm, 30, RTOL, KMAG, &w) > 0);
  /* the FD helper holds r, d constant: it agrees with the formula, while
   * differences through r and d (no stop_gradient) do not */
  CHECK(ref_fd_gradients(&ref, &ra, &rs, dy, FD_STEP, fd, NULL, NULL) == 0);
  for (int i = 0; i < 30; i++) f[i] = (float)fd[i];
  CHECK(ref_close_excess(f, dx, dxm, 30, RTOL, KMAG, &w) <= 0);
  double xp[30];
  memcpy(xp, x, sizeof xp);
  ref_forward_args moving = ra;
  moving.x = xp;
  for (int i = 0; i < 30; i++) {
    double lp = 0, lm = 0, h = 1e-6;
    xp[i] = x[i] + h;
    CHECK(ref_forward(&ref, &moving, y, NULL, NULL, NULL) == 0);
    for (int k = 0; k < 30; k++) lp += dy[k] * y[k];
    xp[i] = x[i] - h;
    CHECK(ref_forward(&ref, &moving, y, NULL, NULL, NULL) == 0);
    for (int k = 0; k < 30; k++) lm += dy[k] * y[k];
    xp[i] = x[i];
    f[i] = (float)((lp - lm) / (2 * h));
  }
  CHECK(ref_close_excess(f, dx, dxm, 30, RTOL, KMAG, &w) > 0);
  ref_saved_free(&rs);
  ref_layer_free(&ref);
}

int main(void) {
  test_modes();
  test_random();
  test_fused_grad_vector();
  test_saved_and_variants();
  test_checks_can_fail();
  printf("backward: %d cases (%d training, %d inference), %d also against finite differences\n",
         cases_run, cases_training, cases_inference, cases_fd);
  return th_finish();
}
