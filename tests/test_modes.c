/*
 * test_modes.c — the layer's rules by exact numbers from the specification
 * and the tf_keras 2.21 source: fused vs non-fused moving variance (Bessel),
 * which configurations take the fused path in each behaviour, the fused
 * epsilon floor option, trainable=false in both behaviours, variable names /
 * order / shapes, renorm (TF's testRenormNoClippingSameMomentumGivesSameTestTrain),
 * renorm + adjustment composition order, virtual_batch_size = B, rank-1
 * inputs and the virtual-batch divisibility rules.
 *
 * Expected values are written out from the spec's formulas (not taken from
 * the reference), with tolerances of a few fp32 roundings unless a TF test's
 * own tolerance is quoted.
 */
#include <bnorm.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "ref_bridge.h"
#include "reference.h"

#define FTOL 1e-6 /* a few fp32 roundings of O(1) values */

static bnorm_layer *make(const bnorm_config *cfg, const int64_t *shape, int rank) {
  bnorm_layer *bn = NULL;
  if (!CHECK_OK(bnorm_layer_create(cfg, &bn))) return NULL;
  if (!CHECK_OK(bnorm_layer_build(bn, shape, rank))) {
    bnorm_layer_destroy(bn);
    return NULL;
  }
  return bn;
}

static bnorm_status forward(bnorm_layer *bn, const float *x, float *y, const int64_t *shape,
                            int rank, bool training, bnorm_updates *pending) {
  return lib_forward(bn, x, y, shape, rank, training, pending);
}

static float var1(bnorm_layer *bn, const char *name, size_t c) {
  size_t i = 0;
  float v[64];
  if (!CHECK_OK(bnorm_layer_find_variable(bn, name, &i))) return NAN;
  size_t C = bnorm_layer_channels(bn);
  if (C > 64 || !CHECK_OK(bnorm_layer_get_variable(bn, i, v, C))) return NAN;
  return v[c];
}

static void set_all(bnorm_layer *bn, const char *name, float value) {
  size_t i = 0, C = bnorm_layer_channels(bn);
  float v[64];
  if (!CHECK_OK(bnorm_layer_find_variable(bn, name, &i)) || C > 64) return;
  for (size_t c = 0; c < C; c++) v[c] = value;
  CHECK_OK(bnorm_layer_set_variable(bn, i, v, C));
}

static const char *beh_name(int beh) { return beh ? "compat_v1" : "keras"; }

/* ------------------------------------------------------------------------ */
/* §4.4 test_bessels_correction and the Bessel factor                        */
/* ------------------------------------------------------------------------ */

static void test_bessel(void) {
  const float x[4] = {0, 2, 4, 6};
  for (int beh = 0; beh < 2; beh++) {
    for (int rank = 3; rank <= 5; rank++) {
      for (int fused_arg = 0; fused_arg < 2; fused_arg++) {
        /* x = [0, 2], moving variance initialized to 0, momentum .5 */
        bnorm_config cfg;
        bnorm_config_init(&cfg);
        cfg.behavior = beh ? BNORM_BEHAVIOR_COMPAT_V1 : BNORM_BEHAVIOR_KERAS;
        cfg.momentum = 0.5;
        cfg.moving_variance_initializer = bnorm_initializer_zeros();
        cfg.fused = fused_arg ? BNORM_FUSED_FALSE : BNORM_FUSED_AUTO;
        int64_t shape[5] = {2, 1, 1, 1, 1};
        bnorm_layer *bn = make(&cfg, shape, rank);
        if (!bn) continue;
        bool fused = rank >= 4 && !fused_arg;
        CHECKF(bnorm_layer_is_fused(bn) == fused, "bessel %s rank %d fused-arg %d: is_fused %d",
               beh_name(beh), rank, fused_arg, bnorm_layer_is_fused(bn));
        float y[2];
        CHECK_OK(forward(bn, x, y, shape, rank, true, NULL));
        float mv = var1(bn, "moving_variance", 0), mm = var1(bn, "moving_mean", 0);
        /* fused: 0.5*0 + 0.5*(1 * 2/1) = 1.0 exactly; non-fused: 0.5 * 1 */
        double want = fused ? 1.0 : 0.5;
        CHECKF(mv == (float)want, "bessel %s rank %d fused %d: moving variance %.9g, expected %g",
               beh_name(beh), rank, fused, (double)mv, want);
        CHECKF(mm == 0.5f, "bessel %s rank %d: moving mean %.9g, expected 0.5", beh_name(beh), rank,
               (double)mm);
        bnorm_layer_destroy(bn);
      }
    }
    /* N = 4, momentum 0: the new value itself. biased var of {0,2,4,6} = 5,
     * fused: 5 * 4/3 */
    for (int fused_arg = 0; fused_arg < 2; fused_arg++) {
      bnorm_config cfg;
      bnorm_config_init(&cfg);
      cfg.behavior = beh ? BNORM_BEHAVIOR_COMPAT_V1 : BNORM_BEHAVIOR_KERAS;
      cfg.momentum = 0.0;
      cfg.fused = fused_arg ? BNORM_FUSED_FALSE : BNORM_FUSED_TRUE;
      int64_t shape[4] = {2, 1, 2, 1};
      bnorm_layer *bn = make(&cfg, shape, 4);
      if (!bn) continue;
      float y[4];
      CHECK_OK(forward(bn, x, y, shape, 4, true, NULL));
      double want = fused_arg ? 5.0 : 20.0 / 3.0;
      float mv = var1(bn, "moving_variance", 0);
      CHECKF(fabs(mv - want) <= 1e-6 * want, "N=4 %s fused %d: moving variance %.9g, expected %.9g",
             beh_name(beh), !fused_arg, (double)mv, want);
      /* the normalization itself uses the biased variance in both paths */
      double want_y0 = (0.0 - 3.0) / sqrt(5.0 + 1e-3);
      CHECKF(fabs(y[0] - want_y0) <= FTOL, "N=4 %s fused %d: y[0] %.9g, expected %.9g",
             beh_name(beh), !fused_arg, (double)y[0], want_y0);
      bnorm_layer_destroy(bn);
    }
    /* N = 1: max(N - 1, 1) = 1, no division by zero */
    {
      bnorm_config cfg;
      bnorm_config_init(&cfg);
      cfg.behavior = beh ? BNORM_BEHAVIOR_COMPAT_V1 : BNORM_BEHAVIOR_KERAS;
      cfg.momentum = 0.5;
      int64_t shape[4] = {1, 1, 1, 2};
      bnorm_layer *bn = make(&cfg, shape, 4);
      if (bn) {
        CHECK(bnorm_layer_is_fused(bn));
        const float x1[2] = {3, -1};
        float y[2];
        CHECK_OK(forward(bn, x1, y, shape, 4, true, NULL));
        CHECK(var1(bn, "moving_variance", 0) == 0.5f && var1(bn, "moving_variance", 1) == 0.5f);
        CHECK(var1(bn, "moving_mean", 0) == 1.5f && var1(bn, "moving_mean", 1) == -0.5f);
        CHECK(y[0] == 0.0f && y[1] == 0.0f);
        bnorm_layer_destroy(bn);
      }
    }
  }
}

/* ------------------------------------------------------------------------ */
/* Which configurations take the fused path                                  */
/* ------------------------------------------------------------------------ */

enum { NOT_FUSED = 0, FUSED = 1, ERROR = 2 };

typedef struct fused_case {
  int beh;
  int rank;
  int axis[2];
  int naxis;
  bnorm_fused fused;
  bool renorm;
  int64_t vbs;
  bool adjustment;
  int expect;
  const char *why;
} fused_case;

static int adj_unit(const int64_t *shape, int rank, double *scale, double *bias, size_t channels,
                    void *user_data) {
  (void)shape;
  (void)rank;
  int *calls = (int *)user_data;
  if (calls) (*calls)++;
  for (size_t c = 0; c < channels; c++) {
    scale[c] = 1.0f;
    bias[c] = 0.0f;
  }
  return 0;
}

static void test_fused_rules(void) {
  static const fused_case cases[] = {
      /* Keras (tf_keras BatchNormalizationBase, _USE_V2_BEHAVIOR) */
      {0, 4, {-1}, 1, BNORM_FUSED_AUTO, false, 0, false, FUSED, "4-D NHWC"},
      {0, 4, {3}, 1, BNORM_FUSED_AUTO, false, 0, false, FUSED, "4-D axis 3"},
      {0, 4, {1}, 1, BNORM_FUSED_AUTO, false, 0, false, FUSED, "4-D NCHW"},
      {0, 4, {-3}, 1, BNORM_FUSED_AUTO, false, 0, false, FUSED, "4-D axis -3 = 1"},
      {0, 4, {2}, 1, BNORM_FUSED_AUTO, false, 0, false, NOT_FUSED, "axis 2 not in the init list"},
      {0, 4, {-2}, 1, BNORM_FUSED_AUTO, false, 0, false, NOT_FUSED, "axis -2"},
      {0, 4, {0}, 1, BNORM_FUSED_AUTO, false, 0, false, NOT_FUSED, "axis 0"},
      {0, 4, {-4}, 1, BNORM_FUSED_AUTO, false, 0, false, ERROR, "axis -4 resolves to 0: Unsupported axis"},
      {0, 5, {-1}, 1, BNORM_FUSED_AUTO, false, 0, false, FUSED, "5-D NDHWC"},
      {0, 5, {4}, 1, BNORM_FUSED_AUTO, false, 0, false, FUSED, "5-D axis 4"},
      {0, 5, {1}, 1, BNORM_FUSED_AUTO, false, 0, false, FUSED, "5-D NCDHW"},
      {0, 5, {-4}, 1, BNORM_FUSED_AUTO, false, 0, false, FUSED, "5-D axis -4 = 1"},
      {0, 5, {3}, 1, BNORM_FUSED_AUTO, false, 0, false, NOT_FUSED, "5-D axis 3: silent fallback"},
      {0, 5, {-3}, 1, BNORM_FUSED_AUTO, false, 0, false, NOT_FUSED, "5-D axis -3 = 2"},
      {0, 3, {-1}, 1, BNORM_FUSED_AUTO, false, 0, false, NOT_FUSED, "3-D"},
      {0, 2, {-1}, 1, BNORM_FUSED_AUTO, false, 0, false, NOT_FUSED, "2-D"},
      {0, 6, {-1}, 1, BNORM_FUSED_AUTO, false, 0, false, NOT_FUSED, "6-D"},
      {0, 4, {-1}, 1, BNORM_FUSED_FALSE, false, 0, false, NOT_FUSED, "fused=False"},
      {0, 4, {-1}, 1, BNORM_FUSED_TRUE, false, 0, false, FUSED, "fused=True 4-D"},
      {0, 5, {1}, 1, BNORM_FUSED_TRUE, false, 0, false, FUSED, "fused=True 5-D"},
      {0, 3, {-1}, 1, BNORM_FUSED_TRUE, false, 0, false, ERROR, "fused=True 3-D"},
      {0, 5, {3}, 1, BNORM_FUSED_TRUE, false, 0, false, NOT_FUSED, "fused=True 5-D axis 3: silent"},
      {0, 4, {-4}, 1, BNORM_FUSED_TRUE, false, 0, false, ERROR, "fused=True axis -4"},
      {0, 4, {2}, 1, BNORM_FUSED_TRUE, false, 0, false, ERROR, "fused=True axis 2"},
      {0, 4, {1, 3}, 2, BNORM_FUSED_TRUE, false, 0, false, ERROR, "fused=True multi-axis"},
      {0, 4, {1, 3}, 2, BNORM_FUSED_AUTO, false, 0, false, NOT_FUSED, "multi-axis"},
      {0, 4, {-1}, 1, BNORM_FUSED_TRUE, true, 0, false, ERROR, "fused=True renorm"},
      {0, 4, {-1}, 1, BNORM_FUSED_AUTO, true, 0, false, NOT_FUSED, "renorm"},
      {0, 4, {-1}, 1, BNORM_FUSED_TRUE, false, 2, false, ERROR, "fused=True virtual batch"},
      {0, 4, {-1}, 1, BNORM_FUSED_AUTO, false, 2, false, NOT_FUSED, "virtual batch"},
      {0, 4, {-1}, 1, BNORM_FUSED_TRUE, false, 0, true, ERROR, "fused=True adjustment"},
      {0, 4, {-1}, 1, BNORM_FUSED_AUTO, false, 0, true, NOT_FUSED, "adjustment"},
      /* compat_v1 (legacy layer, _USE_V2_BEHAVIOR = False): never an error */
      {1, 4, {-1}, 1, BNORM_FUSED_AUTO, false, 0, false, FUSED, "4-D NHWC"},
      {1, 4, {1}, 1, BNORM_FUSED_AUTO, false, 0, false, FUSED, "4-D NCHW"},
      {1, 4, {-1}, 1, BNORM_FUSED_TRUE, false, 0, false, FUSED, "fused=True"},
      {1, 4, {-1}, 1, BNORM_FUSED_FALSE, false, 0, false, NOT_FUSED, "fused=False"},
      {1, 4, {2}, 1, BNORM_FUSED_AUTO, false, 0, false, NOT_FUSED, "axis 2"},
      {1, 4, {-4}, 1, BNORM_FUSED_AUTO, false, 0, false, NOT_FUSED, "axis -4 = 0: silent"},
      {1, 4, {-4}, 1, BNORM_FUSED_TRUE, false, 0, false, NOT_FUSED, "fused=True axis -4: silent"},
      {1, 5, {1}, 1, BNORM_FUSED_AUTO, false, 0, false, FUSED, "5-D NCDHW"},
      {1, 5, {-1}, 1, BNORM_FUSED_AUTO, false, 0, false, FUSED, "5-D NDHWC"},
      {1, 5, {3}, 1, BNORM_FUSED_AUTO, false, 0, false, NOT_FUSED, "5-D axis 3"},
      {1, 3, {-1}, 1, BNORM_FUSED_TRUE, false, 0, false, NOT_FUSED, "fused=True 3-D: silent"},
      {1, 4, {-1}, 1, BNORM_FUSED_TRUE, true, 0, false, NOT_FUSED, "fused=True renorm: silent"},
      {1, 4, {-1}, 1, BNORM_FUSED_TRUE, false, 2, false, NOT_FUSED, "fused=True vbs: silent"},
      {1, 4, {-1}, 1, BNORM_FUSED_TRUE, false, 0, true, NOT_FUSED, "fused=True adjustment: silent"},
      {1, 4, {1, 3}, 2, BNORM_FUSED_TRUE, false, 0, false, NOT_FUSED, "fused=True multi-axis"},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    const fused_case *fc = &cases[k];
    bnorm_config cfg;
    bnorm_config_init(&cfg);
    cfg.behavior = fc->beh ? BNORM_BEHAVIOR_COMPAT_V1 : BNORM_BEHAVIOR_KERAS;
    cfg.axis_count = fc->naxis;
    cfg.axis_is_list = fc->naxis > 1;
    for (int i = 0; i < fc->naxis; i++) cfg.axis[i] = fc->axis[i];
    cfg.fused = fc->fused;
    cfg.renorm = fc->renorm;
    cfg.virtual_batch_size = fc->vbs;
    if (fc->adjustment) cfg.adjustment = adj_unit;
    int64_t shape[6] = {4, 2, 3, 2, 2, 2};
    bnorm_layer *bn = NULL;
    bnorm_status st = bnorm_layer_create(&cfg, &bn);
    if (st == BNORM_OK) st = bnorm_layer_build(bn, shape, fc->rank);
    int got = st != BNORM_OK ? ERROR : bnorm_layer_is_fused(bn) ? FUSED : NOT_FUSED;
    CHECKF(got == fc->expect, "fused rule %s %s: got %d, expected %d (%s)", beh_name(fc->beh),
           fc->why, got, fc->expect, st != BNORM_OK ? bnorm_last_error() : "built");
    bnorm_layer_destroy(bn);
    /* the reference follows the same rules */
    ref_config rc;
    ref_config_from_bnorm(&rc, &cfg);
    ref_layer ref;
    int rrc = ref_layer_build(&ref, &rc, shape, fc->rank);
    int rgot = rrc ? ERROR : ref.fused ? FUSED : NOT_FUSED;
    CHECKF(rgot == fc->expect, "reference fused rule %s %s: got %d", beh_name(fc->beh), fc->why,
           rgot);
    if (!rrc) ref_layer_free(&ref);
  }
}

/* ------------------------------------------------------------------------ */
/* Epsilon floor (old TF, only with fused_epsilon_floor, only when fused)     */
/* ------------------------------------------------------------------------ */

static void test_epsilon_floor(void) {
  const float x[2] = {0.0f, 0.002f}; /* mean .001, biased variance 1e-6 */
  struct {
    int rank;
    bnorm_fused fused;
    bool floor;
    double eps;
    bool floored;
  } cases[] = {
      {4, BNORM_FUSED_AUTO, false, 1e-6, false}, /* TF 2.21: no floor */
      {4, BNORM_FUSED_AUTO, true, 1e-6, true},
      {5, BNORM_FUSED_AUTO, true, 1e-6, true},
      {4, BNORM_FUSED_FALSE, true, 1e-6, false}, /* not fused: never */
      {3, BNORM_FUSED_AUTO, true, 1e-6, false},
      {4, BNORM_FUSED_AUTO, true, 2e-5, false}, /* above the floor */
      {4, BNORM_FUSED_AUTO, true, 0.0, true},
  };
  for (int beh = 0; beh < 2; beh++) {
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
      bnorm_config cfg;
      bnorm_config_init(&cfg);
      cfg.behavior = beh ? BNORM_BEHAVIOR_COMPAT_V1 : BNORM_BEHAVIOR_KERAS;
      cfg.fused = cases[k].fused;
      cfg.fused_epsilon_floor = cases[k].floor;
      cfg.epsilon = cases[k].eps;
      int64_t shape[5] = {2, 1, 1, 1, 1};
      bnorm_layer *bn = make(&cfg, shape, cases[k].rank);
      if (!bn) continue;
      double eps = cases[k].floored ? 1.001e-5 : cases[k].eps;
      float y[2];
      CHECK_OK(forward(bn, x, y, shape, cases[k].rank, true, NULL));
      double want = 0.001 / sqrt(1e-6 + eps);
      CHECKF(fabs(y[1] - want) <= 1e-5 * want && fabs(y[0] + want) <= 1e-5 * want,
             "epsilon floor %s case %zu training: y = [%.7g, %.7g], expected +-%.7g", beh_name(beh),
             k, (double)y[0], (double)y[1], want);
      /* inference: (x - mm) / sqrt(mv + eps) */
      set_all(bn, "moving_mean", 0.0f);
      set_all(bn, "moving_variance", 1e-6f);
      const float xi[2] = {0.001f, -0.001f};
      CHECK_OK(forward(bn, xi, y, shape, cases[k].rank, false, NULL));
      want = 0.001 / sqrt((double)1e-6f + eps);
      CHECKF(fabs(y[0] - want) <= 1e-5 * want && fabs(y[1] + want) <= 1e-5 * want,
             "epsilon floor %s case %zu inference: y = [%.7g, %.7g], expected +-%.7g",
             beh_name(beh), k, (double)y[0], (double)y[1], want);
      bnorm_layer_destroy(bn);
    }
  }
}

/* ------------------------------------------------------------------------ */
/* trainable = false                                                         */
/* ------------------------------------------------------------------------ */

static void test_trainable_false(void) {
  const float x[4] = {0.0f, 4.0f, 2.0f, 6.0f}; /* shape (2, 2): channel means 1, 5 */
  int64_t shape[2] = {2, 2};
  for (int beh = 0; beh < 2; beh++) {
    for (int renorm = 0; renorm < 2; renorm++) {
      for (int use_pending = 0; use_pending < 2; use_pending++) {
        int calls = 0;
        bnorm_config cfg;
        bnorm_config_init(&cfg);
        cfg.behavior = beh ? BNORM_BEHAVIOR_COMPAT_V1 : BNORM_BEHAVIOR_KERAS;
        cfg.trainable = false;
        cfg.renorm = renorm != 0;
        cfg.adjustment = adj_unit;
        cfg.adjustment_user_data = &calls;
        cfg.gamma_initializer = bnorm_initializer_constant(2.0);
        cfg.beta_initializer = bnorm_initializer_constant(0.5);
        cfg.moving_mean_initializer = bnorm_initializer_constant(1.0);
        cfg.moving_variance_initializer = bnorm_initializer_constant(4.0);
        bnorm_layer *bn = make(&cfg, shape, 2);
        if (!bn) continue;
        size_t wc = bnorm_layer_weights_count(bn);
        float before[16], after[16], y[4];
        CHECK(wc <= 16);
        CHECK_OK(bnorm_layer_get_weights(bn, before, wc));
        bnorm_updates *up = NULL;
        CHECK_OK(bnorm_updates_create(&up));
        CHECK_OK(forward(bn, x, y, shape, 2, true, use_pending ? up : NULL));
        if (use_pending) CHECK_OK(bnorm_layer_apply_updates(bn, up));
        CHECK_OK(bnorm_layer_get_weights(bn, after, wc));
        CHECKF(memcmp(before, after, wc * sizeof(float)) == 0,
               "trainable=false %s renorm %d pending %d: the variables changed", beh_name(beh),
               renorm, use_pending);
        if (beh == 0) {
          /* Keras: inference mode whatever `training` says; no adjustment */
          for (int i = 0; i < 4; i++) {
            double want = 2.0 * (x[i] - 1.0) / sqrt(4.0 + 1e-3) + 0.5;
            CHECKF(fabs(y[i] - want) <= FTOL * 4, "keras trainable=false renorm %d: y[%d] %.7g, expected %.7g",
                   renorm, i, (double)y[i], want);
          }
          CHECKF(calls == 0, "keras trainable=false: adjustment called %d times", calls);
        } else {
          /* compat_v1: batch statistics (biased variance 1 per channel) */
          double r = 1.0, d = 0.0;
          if (renorm) {
            /* renorm_mean 1 (moving_mean_initializer), renorm_stddev 2 */
            r = sqrt(1.0 + 1e-3) / 2.0;
          }
          for (int i = 0; i < 4; i++) {
            int c = i % 2;
            double mu = c ? 5.0 : 1.0;
            if (renorm) d = (mu - 1.0) / 2.0;
            double want = 2.0 * (r * (x[i] - mu) / sqrt(1.0 + 1e-3) + d) + 0.5;
            CHECKF(fabs(y[i] - want) <= FTOL * 4, "compat trainable=false renorm %d: y[%d] %.7g, expected %.7g",
                   renorm, i, (double)y[i], want);
          }
          CHECKF(calls == 1, "compat trainable=false: adjustment called %d times, expected 1", calls);
        }
        /* trainable flags: compat_v1 creates gamma/beta non-trainable */
        size_t nv = bnorm_layer_variable_count(bn);
        for (size_t i = 0; i < nv; i++) {
          bnorm_variable_info info;
          if (!CHECK_OK(bnorm_layer_variable_info(bn, i, &info))) continue;
          bool gb = strcmp(info.short_name, "gamma") == 0 || strcmp(info.short_name, "beta") == 0;
          if (!gb)
            CHECKF(!info.trainable, "%s is trainable", info.short_name);
          else if (beh == 1)
            CHECKF(!info.trainable, "compat_v1 trainable=false: %s is trainable", info.short_name);
        }
        bnorm_updates_destroy(up);
        bnorm_layer_destroy(bn);
      }
    }
    /* trainable=true: gamma and beta trainable in both behaviours */
    bnorm_config cfg;
    bnorm_config_init(&cfg);
    cfg.behavior = beh ? BNORM_BEHAVIOR_COMPAT_V1 : BNORM_BEHAVIOR_KERAS;
    bnorm_layer *bn = make(&cfg, shape, 2);
    if (bn) {
      bnorm_variable_info info;
      CHECK_OK(bnorm_layer_variable_info(bn, 0, &info));
      CHECK(info.trainable && strcmp(info.short_name, "gamma") == 0);
      CHECK_OK(bnorm_layer_variable_info(bn, 1, &info));
      CHECK(info.trainable && strcmp(info.short_name, "beta") == 0);
      bnorm_layer_destroy(bn);
    }
  }
}

/* ------------------------------------------------------------------------ */
/* Variables: names, order, shapes (spec §1.4, §1.5)                          */
/* ------------------------------------------------------------------------ */

typedef struct var_case {
  int rank;
  int64_t shape[6];
  int axis[3];
  int naxis;
  int64_t vbs;
  bool renorm, center, scale;
  int pshape_rank;
  int64_t pshape[7];
  int resolved[3]; /* layer config axis after build */
  size_t channels;
  const char *names[7];
} var_case;

static void test_variables(void) {
  static const var_case cases[] = {
      {4, {-1, 5, 5, 3}, {-1}, 1, 0, false, true, true, 1, {3}, {3}, 3,
       {"gamma", "beta", "moving_mean", "moving_variance"}},
      {4, {-1, 5, 5, 3}, {-1}, 1, 0, true, true, true, 1, {3}, {3}, 3,
       {"gamma", "beta", "moving_mean", "moving_variance", "moving_stddev", "renorm_mean",
        "renorm_stddev"}},
      {2, {-1, 6}, {1}, 1, 0, false, false, true, 1, {6}, {1}, 6,
       {"gamma", "moving_mean", "moving_variance"}},
      {2, {-1, 6}, {1}, 1, 0, true, true, false, 1, {6}, {1}, 6,
       {"beta", "moving_mean", "moving_variance", "moving_stddev", "renorm_mean", "renorm_stddev"}},
      {2, {-1, 6}, {1}, 1, 0, false, false, false, 1, {6}, {1}, 6,
       {"moving_mean", "moving_variance"}},
      /* §1.4 examples */
      {2, {-1, 7}, {-1}, 1, 2, false, true, true, 3, {1, 1, 7}, {2}, 7,
       {"gamma", "beta", "moving_mean", "moving_variance"}},
      {4, {-1, 5, 5, 3}, {3}, 1, 2, false, true, true, 5, {1, 1, 1, 1, 3}, {4}, 3,
       {"gamma", "beta", "moving_mean", "moving_variance"}},
      {5, {-1, 3, 10, 10, 4}, {1, 4}, 2, 2, false, true, true, 6, {1, 1, 3, 1, 1, 4}, {2, 5}, 12,
       {"gamma", "beta", "moving_mean", "moving_variance"}},
      {3, {-1, 4, 3}, {1, 2}, 2, 0, false, true, true, 3, {1, 4, 3}, {1, 2}, 12,
       {"gamma", "beta", "moving_mean", "moving_variance"}},
      {3, {-1, 4, 3}, {-1, -2}, 2, 0, false, true, true, 3, {1, 4, 3}, {2, 1}, 12,
       {"gamma", "beta", "moving_mean", "moving_variance"}},
      {3, {5, 4, 3}, {0}, 1, 0, false, true, true, 1, {5}, {0}, 5,
       {"gamma", "beta", "moving_mean", "moving_variance"}},
      {3, {-1, 4, 3}, {1}, 1, 0, false, true, true, 1, {4}, {1}, 4,
       {"gamma", "beta", "moving_mean", "moving_variance"}},
  };
  for (int beh = 0; beh < 2; beh++) {
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
      const var_case *vc = &cases[k];
      bnorm_config cfg;
      bnorm_config_init(&cfg);
      cfg.behavior = beh ? BNORM_BEHAVIOR_COMPAT_V1 : BNORM_BEHAVIOR_KERAS;
      cfg.axis_count = vc->naxis;
      cfg.axis_is_list = vc->naxis > 1;
      for (int i = 0; i < vc->naxis; i++) cfg.axis[i] = vc->axis[i];
      cfg.virtual_batch_size = vc->vbs;
      cfg.renorm = vc->renorm;
      cfg.center = vc->center;
      cfg.scale = vc->scale;
      snprintf(cfg.name, sizeof cfg.name, "bn%zu", k);
      bnorm_layer *bn = make(&cfg, vc->shape, vc->rank);
      if (!bn) continue;
      size_t nv = 0;
      while (nv < 7 && vc->names[nv]) nv++;
      CHECKF(bnorm_layer_variable_count(bn) == nv, "variables case %zu: %zu variables, expected %zu",
             k, bnorm_layer_variable_count(bn), nv);
      CHECKF(bnorm_layer_channels(bn) == vc->channels, "variables case %zu: channels %zu", k,
             bnorm_layer_channels(bn));
      CHECKF(bnorm_layer_weights_count(bn) == nv * vc->channels, "variables case %zu: weights count",
             k);
      for (size_t i = 0; i < nv && i < bnorm_layer_variable_count(bn); i++) {
        bnorm_variable_info info;
        if (!CHECK_OK(bnorm_layer_variable_info(bn, i, &info))) continue;
        char full[64];
        snprintf(full, sizeof full, "bn%zu/%s", k, vc->names[i]);
        CHECKF(strcmp(info.short_name, vc->names[i]) == 0 && strcmp(info.name, full) == 0,
               "variables case %zu: variable %zu is %s (%s), expected %s", k, i, info.short_name,
               info.name, full);
        bool same = info.rank == vc->pshape_rank && info.count == vc->channels;
        for (int a = 0; same && a < info.rank; a++) same = info.shape[a] == vc->pshape[a];
        CHECKF(same, "variables case %zu: %s has the wrong shape (rank %d)", k, info.short_name,
               info.rank);
        size_t idx = 99;
        CHECK_OK(bnorm_layer_find_variable(bn, vc->names[i], &idx));
        CHECK(idx == i);
        idx = 99;
        CHECK_OK(bnorm_layer_find_variable(bn, full, &idx));
        CHECK(idx == i);
      }
      const bnorm_config *held = bnorm_layer_config(bn);
      bool axes_ok = held && held->axis_count == vc->naxis;
      for (int i = 0; axes_ok && i < vc->naxis; i++) axes_ok = held->axis[i] == vc->resolved[i];
      CHECKF(axes_ok, "variables case %zu: the layer's axis after build is not the resolved one%s", k,
             vc->vbs ? " shifted by one" : "");
      /* the reference agrees */
      ref_config rc;
      ref_config_from_bnorm(&rc, &cfg);
      ref_layer ref;
      if (CHECK(ref_layer_build(&ref, &rc, vc->shape, vc->rank) == 0)) {
        bool rs = ref.param_rank == vc->pshape_rank && ref.channels == vc->channels;
        for (int a = 0; rs && a < ref.param_rank; a++) rs = ref.param_shape[a] == vc->pshape[a];
        CHECKF(rs, "variables case %zu: reference param shape", k);
        ref_layer_free(&ref);
      }
      bnorm_layer_destroy(bn);
    }
  }
}

/* ------------------------------------------------------------------------ */
/* TF testRenormNoClippingSameMomentumGivesSameTestTrain                      */
/* ------------------------------------------------------------------------ */

static void test_renorm_same_momentum(void) {
  th_seed(11);
  for (int beh = 0; beh < 2; beh++) {
    const double momentum = 0.9, gamma = 2.0, beta = 3.0, epsilon = 0.001;
    bnorm_config cfg;
    bnorm_config_init(&cfg);
    cfg.behavior = beh ? BNORM_BEHAVIOR_COMPAT_V1 : BNORM_BEHAVIOR_KERAS;
    cfg.axis[0] = 1;
    cfg.gamma_initializer = bnorm_initializer_constant(gamma);
    cfg.beta_initializer = bnorm_initializer_constant(beta);
    cfg.epsilon = epsilon;
    cfg.momentum = momentum;
    cfg.renorm = true;
    cfg.renorm_momentum = momentum; /* renorm_clipping None */
    int64_t shape[2] = {4, 3};
    bnorm_layer *bn = make(&cfg, shape, 2);
    if (!bn) continue;
    /* the TF test's numpy state (scalars that broadcast to per-channel) */
    double moving_mean[3] = {0, 0, 0}, moving_stddev[3] = {1, 1, 1};
    double renorm_mean[3] = {0, 0, 0}, renorm_stddev[3] = {1, 1, 1};
    for (int step = 0; step < 6; step++) {
      float x[12], ytest[12], ytrain[12];
      double want_train[12], want_test[12];
      for (int i = 0; i < 12; i++) x[i] = (float)th_uniform();
      for (int c = 0; c < 3; c++) {
        double mean = 0, var = 0;
        for (int b = 0; b < 4; b++) mean += x[b * 3 + c] / 4.0;
        for (int b = 0; b < 4; b++) var += (x[b * 3 + c] - mean) * (x[b * 3 + c] - mean) / 4.0;
        double stddev = sqrt(var + epsilon);
        double r = stddev / renorm_stddev[c], d = (mean - renorm_mean[c]) / renorm_stddev[c];
        for (int b = 0; b < 4; b++) {
          double xv = x[b * 3 + c];
          want_test[b * 3 + c] =
              (xv - moving_mean[c]) / sqrt(moving_stddev[c] * moving_stddev[c]) * gamma + beta;
          want_train[b * 3 + c] = ((xv - mean) / stddev * r + d) * gamma + beta;
        }
        renorm_mean[c] += (mean - renorm_mean[c]) * (1 - momentum);
        renorm_stddev[c] += (stddev - renorm_stddev[c]) * (1 - momentum);
        moving_mean[c] += (mean - moving_mean[c]) * (1 - momentum);
        moving_stddev[c] += (stddev - moving_stddev[c]) * (1 - momentum);
      }
      /* test values first, before the train-mode updates */
      CHECK_OK(forward(bn, x, ytest, shape, 2, false, NULL));
      CHECK_OK(forward(bn, x, ytrain, shape, 2, true, NULL));
      /* "values may not be identical on the first iteration (but shouldn't
       * be different by much more than epsilon)" */
      double atol = step == 0 ? epsilon * 1.5 : 1e-5;
      for (int i = 0; i < 12; i++) {
        CHECKF(fabs(ytrain[i] - want_train[i]) <= atol,
               "renorm same momentum %s step %d: y_train[%d] %.7g, expected %.7g", beh_name(beh),
               step, i, (double)ytrain[i], want_train[i]);
        CHECKF(fabs(ytest[i] - want_test[i]) <= atol,
               "renorm same momentum %s step %d: y_test[%d] %.7g, expected %.7g", beh_name(beh),
               step, i, (double)ytest[i], want_test[i]);
        CHECKF(fabs(ytrain[i] - ytest[i]) <= atol,
               "renorm same momentum %s step %d: train %.7g vs test %.7g", beh_name(beh), step,
               (double)ytrain[i], (double)ytest[i]);
      }
    }
    bnorm_layer_destroy(bn);
  }
}

/* ------------------------------------------------------------------------ */
/* Composition order: y = gamma * (a_s * (r * xhat + d) + a_b) + beta         */
/* ------------------------------------------------------------------------ */

static int adj_fixed(const int64_t *shape, int rank, double *scale, double *bias, size_t channels,
                     void *user_data) {
  (void)shape;
  (void)rank;
  (void)user_data;
  for (size_t c = 0; c < channels; c++) {
    scale[c] = 2.0f;
    bias[c] = 0.5f;
  }
  return 0;
}

static void test_renorm_adjustment_order(void) {
  const float x[2] = {0.0f, 2.0f}; /* mean 1, biased variance 1 */
  for (int beh = 0; beh < 2; beh++) {
    for (int clip = 0; clip < 2; clip++) {
      bnorm_config cfg;
      bnorm_config_init(&cfg);
      cfg.behavior = beh ? BNORM_BEHAVIOR_COMPAT_V1 : BNORM_BEHAVIOR_KERAS;
      cfg.epsilon = 1e-3;
      cfg.momentum = 0.5;
      cfg.renorm = true;
      cfg.renorm_momentum = 0.5;
      cfg.adjustment = adj_fixed;
      cfg.gamma_initializer = bnorm_initializer_constant(3.0);
      cfg.beta_initializer = bnorm_initializer_constant(1.0);
      if (clip) {
        cfg.renorm_clipping_has_rmax = true;
        cfg.renorm_clipping_rmax = 0.4;
        cfg.renorm_clipping_has_dmax = true;
        cfg.renorm_clipping_dmax = 0.1;
      }
      int64_t shape[2] = {2, 1};
      bnorm_layer *bn = make(&cfg, shape, 2);
      if (!bn) continue;
      set_all(bn, "renorm_mean", 0.5f);
      set_all(bn, "renorm_stddev", 2.0f);
      float y[2];
      CHECK_OK(forward(bn, x, y, shape, 2, true, NULL));
      double sb = sqrt(1.0 + 1e-3);
      double r = clip ? 0.4 : sb / 2.0, d = clip ? 0.1 : 0.25;
      for (int i = 0; i < 2; i++) {
        double xhat = (x[i] - 1.0) / sb;
        double want = 3.0 * (2.0 * (r * xhat + d) + 0.5) + 1.0;
        CHECKF(fabs(y[i] - want) <= 4 * FTOL, "renorm+adjustment %s clip %d: y[%d] %.7g, expected %.7g",
               beh_name(beh), clip, i, (double)y[i], want);
      }
      if (!clip) CHECK(fabs(y[0] - 1.0) <= 4 * FTOL && fabs(y[1] - 7.0) <= 4 * FTOL);
      /* updates: renorm vars with renorm_momentum, moving stats with
       * momentum from the batch (unclipped sigma_B), moving_variance =
       * relu(moving_stddev^2 - eps) */
      double rm = 0.5 - (0.5 - 1.0) * 0.5, rs = 2.0 - (2.0 - sb) * 0.5;
      double mm = 0.0 - (0.0 - 1.0) * 0.5, ms = 1.0 - (1.0 - sb) * 0.5;
      double mv = ms * ms - 1e-3;
      CHECKF(fabs(var1(bn, "renorm_mean", 0) - rm) <= FTOL, "renorm_mean %.7g", (double)var1(bn, "renorm_mean", 0));
      CHECKF(fabs(var1(bn, "renorm_stddev", 0) - rs) <= FTOL, "renorm_stddev %.7g", (double)var1(bn, "renorm_stddev", 0));
      CHECKF(fabs(var1(bn, "moving_mean", 0) - mm) <= FTOL, "moving_mean %.7g", (double)var1(bn, "moving_mean", 0));
      CHECKF(fabs(var1(bn, "moving_stddev", 0) - ms) <= FTOL, "moving_stddev %.7g", (double)var1(bn, "moving_stddev", 0));
      CHECKF(fabs(var1(bn, "moving_variance", 0) - mv) <= FTOL, "moving_variance %.7g", (double)var1(bn, "moving_variance", 0));
      /* inference: no adjustment, no renorm: gamma (x - mm) / sqrt(mv + eps) + beta */
      CHECK_OK(forward(bn, x, y, shape, 2, false, NULL));
      for (int i = 0; i < 2; i++) {
        double want = 3.0 * (x[i] - mm) / sqrt(mv + 1e-3) + 1.0;
        CHECKF(fabs(y[i] - want) <= 4 * FTOL, "renorm+adjustment inference: y[%d] %.7g, expected %.7g",
               i, (double)y[i], want);
      }
      bnorm_layer_destroy(bn);
    }
  }
}

/* ------------------------------------------------------------------------ */
/* virtual_batch_size = B is plain batch normalization                        */
/* ------------------------------------------------------------------------ */

static void test_vbs_equals_batch(void) {
  th_seed(6);
  int64_t shape[4] = {6, 5, 4, 3};
  size_t n = 360;
  for (int beh = 0; beh < 2; beh++) {
    bnorm_config cfg;
    bnorm_config_init(&cfg);
    cfg.behavior = beh ? BNORM_BEHAVIOR_COMPAT_V1 : BNORM_BEHAVIOR_KERAS;
    cfg.momentum = 0.8;
    cfg.fused = BNORM_FUSED_FALSE; /* same moving-variance rule on both sides */
    bnorm_layer *plain = make(&cfg, shape, 4);
    cfg.virtual_batch_size = 6;
    bnorm_layer *ghost = make(&cfg, shape, 4);
    if (!plain || !ghost) {
      bnorm_layer_destroy(plain);
      bnorm_layer_destroy(ghost);
      continue;
    }
    float *x = (float *)malloc(n * sizeof(float)), *y1 = (float *)malloc(n * sizeof(float)),
          *y2 = (float *)malloc(n * sizeof(float));
    for (int step = 0; step < 3; step++) {
      th_fill_normal(x, n, 0.5, 2.0);
      bool training = step < 2;
      CHECK_OK(forward(plain, x, y1, shape, 4, training, NULL));
      CHECK_OK(forward(ghost, x, y2, shape, 4, training, NULL));
      double worst = 0;
      for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs((double)y1[i] - y2[i]));
      CHECKF(worst <= 1e-5, "vbs = B %s step %d: y differs by %g", beh_name(beh), step, worst);
      for (int c = 0; c < 3; c++) {
        CHECK(fabs(var1(plain, "moving_mean", (size_t)c) - var1(ghost, "moving_mean", (size_t)c)) <= 1e-6);
        CHECK(fabs(var1(plain, "moving_variance", (size_t)c) -
                   var1(ghost, "moving_variance", (size_t)c)) <= 1e-6);
      }
    }
    free(x);
    free(y1);
    free(y2);
    bnorm_layer_destroy(plain);
    bnorm_layer_destroy(ghost);
  }
}

/* ------------------------------------------------------------------------ */
/* Rank-1 input: axis -1 is the batch axis, nothing is reduced: y = beta      */
/* ------------------------------------------------------------------------ */

static void test_rank1(void) {
  const float x[5] = {3.0f, -1.0f, 0.25f, 10.0f, -7.5f};
  const float beta[5] = {0.5f, -2.0f, 1.0f, 0.0f, 3.25f};
  const float gamma[5] = {2.0f, -1.0f, 0.5f, 1.5f, 4.0f};
  int64_t shape[1] = {5};
  for (int beh = 0; beh < 2; beh++) {
    bnorm_config cfg;
    bnorm_config_init(&cfg);
    cfg.behavior = beh ? BNORM_BEHAVIOR_COMPAT_V1 : BNORM_BEHAVIOR_KERAS;
    cfg.momentum = 0.5;
    bnorm_layer *bn = make(&cfg, shape, 1);
    if (!bn) continue;
    CHECK(bnorm_layer_channels(bn) == 5 && !bnorm_layer_is_fused(bn));
    CHECK_OK(bnorm_layer_set_variable(bn, 0, gamma, 5));
    CHECK_OK(bnorm_layer_set_variable(bn, 1, beta, 5));
    float y[5];
    CHECK_OK(forward(bn, x, y, shape, 1, true, NULL));
    for (int i = 0; i < 5; i++) {
      /* (x - x) * rho = 0 exactly; y = beta up to the rounding of x * rho
       * terms if the library folds beta - mean * inv */
      double tol = 1e-6 * fabs(beta[i]) + 16 * 0x1.0p-24 * fabs(gamma[i] * x[i]) / sqrt(1e-3);
      CHECKF(fabs(y[i] - beta[i]) <= tol, "rank 1 %s: y[%d] = %.9g, expected beta %.9g",
             beh_name(beh), i, (double)y[i], (double)beta[i]);
      /* mean = x, biased variance 0 */
      CHECKF(fabs(var1(bn, "moving_mean", (size_t)i) - 0.5 * x[i]) <= 1e-6 * fabs(x[i]),
             "rank 1: moving mean");
      CHECKF(var1(bn, "moving_variance", (size_t)i) == 0.5f, "rank 1: moving variance %g",
             (double)var1(bn, "moving_variance", (size_t)i));
    }
    /* inference: gamma (x - mm) / sqrt(mv + eps) + beta */
    CHECK_OK(forward(bn, x, y, shape, 1, false, NULL));
    for (int i = 0; i < 5; i++) {
      double want = gamma[i] * (x[i] - 0.5 * x[i]) / sqrt(0.5 + 1e-3) + beta[i];
      CHECKF(fabs(y[i] - want) <= 1e-5 * (fabs(want) + 1), "rank 1 inference %s: y[%d]",
             beh_name(beh), i);
    }
    /* the batch axis is normalized: its size is fixed by the build */
    int64_t other[1] = {4};
    CHECK(forward(bn, x, y, other, 1, false, NULL) != BNORM_OK);
    bnorm_layer_destroy(bn);
  }
}

/* ------------------------------------------------------------------------ */
/* Virtual batches: divisibility                                              */
/* ------------------------------------------------------------------------ */

static void test_vbs_divisibility(void) {
  int64_t build[3] = {-1, 2, 3};
  int64_t b6[3] = {6, 2, 3}, b5[3] = {5, 2, 3};
  float x[36], y[36];
  for (int i = 0; i < 36; i++) x[i] = (float)((i * 7) % 11) - 5.0f;
  for (int beh = 0; beh < 2; beh++) {
    bnorm_config cfg;
    bnorm_config_init(&cfg);
    cfg.behavior = beh ? BNORM_BEHAVIOR_COMPAT_V1 : BNORM_BEHAVIOR_KERAS;
    cfg.virtual_batch_size = 3;
    bnorm_layer *bn = make(&cfg, build, 3);
    if (!bn) continue;
    CHECK_OK(forward(bn, x, y, b6, 3, true, NULL));
    float before[12], after[12];
    size_t wc = bnorm_layer_weights_count(bn);
    CHECK(wc == 12);
    CHECK_OK(bnorm_layer_get_weights(bn, before, wc));
    /* training: the batch must be divisible, nothing changes on failure */
    CHECK(forward(bn, x, y, b5, 3, true, NULL) != BNORM_OK);
    CHECK_OK(bnorm_layer_get_weights(bn, after, wc));
    CHECK(memcmp(before, after, sizeof before) == 0);
    /* inference: any batch in Keras (TF2 reshapes to [-1, 1]); compat_v1
     * keeps the [vbs, -1] reshape */
    bnorm_status st = forward(bn, x, y, b5, 3, false, NULL);
    if (beh == 0)
      CHECKF(st == BNORM_OK, "keras vbs inference with batch 5: %s", bnorm_last_error());
    else
      CHECKF(st != BNORM_OK, "compat_v1 vbs inference with batch 5 succeeded");
    if (beh == 0 && st == BNORM_OK) {
      /* the moving statistics, whatever the grouping */
      float mm[3], mv[3], g[3], b[3];
      CHECK_OK(bnorm_layer_get_variable(bn, 0, g, 3));
      CHECK_OK(bnorm_layer_get_variable(bn, 1, b, 3));
      CHECK_OK(bnorm_layer_get_variable(bn, 2, mm, 3));
      CHECK_OK(bnorm_layer_get_variable(bn, 3, mv, 3));
      for (int i = 0; i < 30; i++) {
        int c = i % 3;
        double want = g[c] * (x[i] - mm[c]) / sqrt((double)mv[c] + 1e-3) + b[c];
        CHECKF(fabs(y[i] - want) <= 1e-5 * (1 + fabs(want)), "keras vbs inference y[%d]", i);
      }
    }
    bnorm_layer_destroy(bn);
  }
}

/* ------------------------------------------------------------------------ */
/* Moving-average arithmetic to the last bit (values from TF 2.21)            */
/* ------------------------------------------------------------------------ */

/* x = [0, 2] (mean 1, biased variance 1, fused batch variance 2: all exact),
 * so only the update arithmetic decides the last bit:
 * - Keras fused (eager, exponential_avg_factor): (1-f)*old + f*mean and
 *   (1-f)*old + (f*adj)*var, f = float32(1 - momentum), 1-f in float32;
 * - non-fused (both behaviours): old - (old - value) * float32(1 - momentum);
 * - compat_v1 fused (graph mode, tf_keras _fused_batch_norm: `momentum =
 *   tf.convert_to_tensor(self.momentum)` before _assign_moving_average
 *   computes `1.0 - momentum`): old - (old - value) * (1.0f - float32(momentum)).
 * Expected values printed by tf_keras 2.21 / TensorFlow 2.21 (CPU): Keras
 * layers called eagerly, tf.compat.v1 legacy layers in a graph session running
 * layer.updates. Columns: behaviour, fused, momentum, old moving mean, old
 * moving variance, new moving mean, new moving variance. */
static void test_moving_average_rounding(void) {
  static const struct {
    int beh, fused;
    double momentum;
    float old_mean, old_var, new_mean, new_var;
  } rows[] = {
      {0, 1, 0.99, 0.300000012f, 3.29999995f, 0.307000011f, 3.28699994f},
      {0, 0, 0.99, 0.300000012f, 3.29999995f, 0.307000011f, 3.27699995f},
      {1, 1, 0.99, 0.300000012f, 3.29999995f, 0.307000011f, 3.28699994f},
      {1, 0, 0.99, 0.300000012f, 3.29999995f, 0.307000011f, 3.27699995f},
      {0, 1, 0.99, 7.12300014f, 10.1230001f, 7.06177044f, 10.0417709f},
      {0, 0, 0.99, 7.12300014f, 10.1230001f, 7.06176996f, 10.0317698f},
      {1, 1, 0.99, 7.12300014f, 10.1230001f, 7.06177044f, 10.04177f},
      {1, 0, 0.99, 7.12300014f, 10.1230001f, 7.06176996f, 10.0317698f},
      {0, 1, 0.99, -2.71828175f, 0.281718254f, -2.68109894f, 0.298901081f},
      {0, 0, 0.99, -2.71828175f, 0.281718254f, -2.68109894f, 0.288901061f},
      {1, 1, 0.99, -2.71828175f, 0.281718254f, -2.68109894f, 0.298901051f},
      {1, 0, 0.99, -2.71828175f, 0.281718254f, -2.68109894f, 0.288901061f},
      {0, 1, 0.9, 0.300000012f, 3.29999995f, 0.370000005f, 3.16999984f},
      {0, 0, 0.9, 0.300000012f, 3.29999995f, 0.370000005f, 3.06999993f},
      {1, 1, 0.9, 0.300000012f, 3.29999995f, 0.370000035f, 3.16999984f},
      {1, 0, 0.9, 0.300000012f, 3.29999995f, 0.370000005f, 3.06999993f},
      {0, 1, 0.9, 7.12300014f, 10.1230001f, 6.51069975f, 9.31069946f},
      {0, 0, 0.9, 7.12300014f, 10.1230001f, 6.51070023f, 9.21070004f},
      {1, 1, 0.9, 7.12300014f, 10.1230001f, 6.51070023f, 9.31069946f},
      {1, 0, 0.9, 7.12300014f, 10.1230001f, 6.51070023f, 9.21070004f},
      {0, 1, 0.9, -2.71828175f, 0.281718254f, -2.34645367f, 0.453546405f},
      {0, 0, 0.9, -2.71828175f, 0.281718254f, -2.34645367f, 0.353546441f},
      {1, 1, 0.9, -2.71828175f, 0.281718254f, -2.34645343f, 0.453546464f},
      {1, 0, 0.9, -2.71828175f, 0.281718254f, -2.34645367f, 0.353546441f},
  };
  const float x[2] = {0.0f, 2.0f};
  int64_t shape[4] = {2, 1, 1, 1};
  for (size_t k = 0; k < sizeof rows / sizeof rows[0]; k++) {
    bnorm_config cfg;
    bnorm_config_init(&cfg);
    cfg.behavior = rows[k].beh ? BNORM_BEHAVIOR_COMPAT_V1 : BNORM_BEHAVIOR_KERAS;
    cfg.momentum = rows[k].momentum;
    cfg.fused = rows[k].fused ? BNORM_FUSED_AUTO : BNORM_FUSED_FALSE;
    bnorm_layer *bn = make(&cfg, shape, 4);
    if (!bn) continue;
    CHECK(bnorm_layer_is_fused(bn) == (rows[k].fused != 0));
    set_all(bn, "moving_mean", rows[k].old_mean);
    set_all(bn, "moving_variance", rows[k].old_var);
    float y[2];
    CHECK_OK(forward(bn, x, y, shape, 4, true, NULL));
    float m = var1(bn, "moving_mean", 0), v = var1(bn, "moving_variance", 0);
    CHECKF(m == rows[k].new_mean && v == rows[k].new_var,
           "moving-average rounding %s fused %d momentum %g old (%.9g, %.9g): got (%.9g, %.9g), "
           "TF 2.21 gives (%.9g, %.9g)",
           beh_name(rows[k].beh), rows[k].fused, rows[k].momentum, (double)rows[k].old_mean,
           (double)rows[k].old_var, (double)m, (double)v, (double)rows[k].new_mean,
           (double)rows[k].new_var);
    bnorm_layer_destroy(bn);
  }
}

/* tf_keras' fused kernel with exponential_avg_factor 1 (momentum 0) assigns
 * the batch statistics and ignores the old values, so even NaN moving
 * statistics recover; the assign_sub form of the other paths keeps NaN
 * (probe in tests/golden/README.md). */
static void test_momentum_zero_recovers_from_nan(void) {
  for (int behavior = 0; behavior < 2; behavior++) {
    for (int fused = 0; fused < 2; fused++) {
      bnorm_config cfg;
      bnorm_config_init(&cfg);
      cfg.behavior = behavior ? BNORM_BEHAVIOR_COMPAT_V1 : BNORM_BEHAVIOR_KERAS;
      cfg.fused = fused ? BNORM_FUSED_TRUE : BNORM_FUSED_FALSE;
      cfg.momentum = 0.0;
      int64_t shape[4] = {2, 1, 1, 1};
      bnorm_layer *layer = make(&cfg, shape, 4);
      if (!layer) continue;
      float w[4] = {1.0f, 0.0f, NAN, NAN}, x[2] = {0.0f, 2.0f}, y[2];
      CHECK_OK(bnorm_layer_set_weights(layer, w, 4));
      bnorm_forward_args fa = {x, y, shape, 4, true, NULL, NULL};
      CHECK_OK(bnorm_layer_forward(layer, &fa));
      CHECK_OK(bnorm_layer_get_weights(layer, w, 4));
      bool recovers = fused && !behavior;
      CHECKF(recovers ? (w[2] == 1.0f && w[3] == 2.0f) : (isnan(w[2]) && isnan(w[3])),
             "behavior %d fused %d: moving stats (%g, %g)", behavior, fused, w[2], w[3]);
      bnorm_layer_destroy(layer);
    }
  }
}

int main(void) {
  test_bessel();
  test_fused_rules();
  test_epsilon_floor();
  test_trainable_false();
  test_variables();
  test_renorm_same_momentum();
  test_renorm_adjustment_order();
  test_vbs_equals_batch();
  test_rank1();
  test_vbs_divisibility();
  test_moving_average_rounding();
  test_momentum_zero_recovers_from_nan();
  return th_finish();
}
