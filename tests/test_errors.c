/* Bad input gets a status and a message, never a crash, and a failed call
 * changes no state (weights, pending updates, built-ness). */
#include <bnorm.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define CHECK_FAILS(call, expected)                                         \
  do {                                                                      \
    CHECK_STATUS(call, expected);                                           \
    CHECKF(bnorm_last_error()[0] != '\0', "%s: empty error message", #call); \
  } while (0)

static bnorm_layer *make_layer(const bnorm_config *cfg, const int64_t *shape,
                               int rank) {
  bnorm_layer *layer = NULL;
  if (!CHECK_OK(bnorm_layer_create(cfg, &layer))) return NULL;
  if (shape && !CHECK_OK(bnorm_layer_build(layer, shape, rank))) {
    bnorm_layer_destroy(layer);
    return NULL;
  }
  return layer;
}

/* Random but valid weights so that "unchanged" is a real check. */
static void randomize_weights(bnorm_layer *layer) {
  size_t n = bnorm_layer_weights_count(layer);
  float *w = malloc(n * sizeof *w);
  for (size_t i = 0; i < n; i++) w[i] = 0.5f + (float)th_uniform();
  CHECK_OK(bnorm_layer_set_weights(layer, w, n));
  free(w);
}

static float *snapshot(const bnorm_layer *layer) {
  size_t n = bnorm_layer_weights_count(layer);
  float *w = malloc((n ? n : 1) * sizeof *w);
  bnorm_layer_get_weights(layer, w, n);
  return w;
}

static void check_unchanged(const bnorm_layer *layer, float *before,
                            const char *what) {
  size_t n = bnorm_layer_weights_count(layer);
  float *now = snapshot(layer);
  CHECKF(memcmp(now, before, n * sizeof *now) == 0,
         "%s: a failed call changed the layer's weights", what);
  free(now);
  free(before);
}

static void test_null_arguments(void) {
  bnorm_config cfg;
  bnorm_config_init(&cfg);
  bnorm_layer *layer = NULL;
  CHECK_FAILS(bnorm_layer_create(NULL, &layer), BNORM_ERR_NULL_ARGUMENT);
  CHECK_FAILS(bnorm_layer_create(&cfg, NULL), BNORM_ERR_NULL_ARGUMENT);
  CHECK_FAILS(bnorm_layer_build(NULL, (int64_t[]){2, 3}, 2),
              BNORM_ERR_NULL_ARGUMENT);
  CHECK_FAILS(bnorm_layer_forward(NULL, NULL), BNORM_ERR_NULL_ARGUMENT);
  CHECK_FAILS(bnorm_layer_backward(NULL, NULL), BNORM_ERR_NULL_ARGUMENT);
  CHECK_FAILS(bnorm_updates_create(NULL), BNORM_ERR_NULL_ARGUMENT);
  CHECK_FAILS(bnorm_saved_create(NULL), BNORM_ERR_NULL_ARGUMENT);
  CHECK_FAILS(bnorm_layer_apply_updates(NULL, NULL), BNORM_ERR_NULL_ARGUMENT);
  CHECK_FAILS(bnorm_layer_apply_constraints(NULL), BNORM_ERR_NULL_ARGUMENT);
  CHECK_FAILS(bnorm_layer_get_weights(NULL, NULL, 0), BNORM_ERR_NULL_ARGUMENT);
  CHECK_FAILS(bnorm_layer_get_config(NULL, NULL, 0, NULL),
              BNORM_ERR_NULL_ARGUMENT);
  CHECK(bnorm_layer_variable_data(NULL, 0) == NULL);
  CHECK(bnorm_layer_variable_count(NULL) == 0);
  CHECK(!bnorm_layer_is_built(NULL));
  bnorm_layer_destroy(NULL);
  bnorm_updates_destroy(NULL);
  bnorm_saved_destroy(NULL);
  CHECK(strcmp(bnorm_status_name(BNORM_ERR_SHAPE), "BNORM_ERR_SHAPE") == 0);
  CHECK(strcmp(bnorm_status_name((bnorm_status)999), "BNORM_ERR_UNKNOWN") == 0);

  int64_t shape[2] = {4, 3};
  layer = make_layer(&cfg, shape, 2);
  if (!layer) return;
  float x[12] = {0}, y[12];
  bnorm_forward_args fa = {.x = NULL, .y = y, .shape = shape, .rank = 2};
  CHECK_FAILS(bnorm_layer_forward(layer, &fa), BNORM_ERR_NULL_ARGUMENT);
  fa.x = x;
  fa.y = NULL;
  CHECK_FAILS(bnorm_layer_forward(layer, &fa), BNORM_ERR_NULL_ARGUMENT);
  fa.y = y;
  fa.shape = NULL;
  CHECK_FAILS(bnorm_layer_forward(layer, &fa), BNORM_ERR_NULL_ARGUMENT);
  bnorm_backward_args ba = {.x = x, .dy = x, .shape = shape, .rank = 2};
  CHECK_FAILS(bnorm_layer_backward(layer, &ba), BNORM_ERR_NULL_ARGUMENT);
  bnorm_variable_info info;
  CHECK_FAILS(bnorm_layer_variable_info(layer, 0, NULL), BNORM_ERR_NULL_ARGUMENT);
  CHECK_OK(bnorm_layer_variable_info(layer, 0, &info));
  size_t index;
  CHECK_FAILS(bnorm_layer_find_variable(layer, NULL, &index),
              BNORM_ERR_NULL_ARGUMENT);
  CHECK_FAILS(bnorm_layer_regularization_losses(layer, NULL, 0, NULL),
              BNORM_ERR_NULL_ARGUMENT);
  bnorm_layer_destroy(layer);
}

static int failing_adjustment(const int64_t *shape, int rank, double *scale,
                              double *bias, size_t channels, void *user_data);

static void test_build_errors(void) {
  bnorm_config cfg;
  bnorm_config_init(&cfg);
  bnorm_layer *layer = make_layer(&cfg, NULL, 0);
  if (!layer) return;
  int64_t shape[3] = {-1, 5, 4};
  CHECK_FAILS(bnorm_layer_build(layer, shape, 0), BNORM_ERR_SHAPE);
  CHECK_FAILS(bnorm_layer_build(layer, shape, BNORM_MAX_RANK + 1),
              BNORM_ERR_SHAPE);
  int64_t unknown_channel[2] = {8, -1};
  CHECK_FAILS(bnorm_layer_build(layer, unknown_channel, 2), BNORM_ERR_SHAPE);
  int64_t bad_size[2] = {-7, 4};
  CHECK_FAILS(bnorm_layer_build(layer, bad_size, 2), BNORM_ERR_SHAPE);
  CHECK(!bnorm_layer_is_built(layer));
  CHECK(bnorm_layer_variable_count(layer) == 0);
  CHECK_FAILS(bnorm_layer_get_weights(layer, NULL, 0), BNORM_ERR_STATE);
  double loss;
  size_t count;
  CHECK_FAILS(bnorm_layer_regularization_losses(layer, &loss, 1, &count),
              BNORM_ERR_STATE);
  CHECK_FAILS(bnorm_layer_apply_constraints(layer), BNORM_ERR_STATE);
  CHECK_OK(bnorm_layer_build(layer, shape, 3));
  CHECK_FAILS(bnorm_layer_build(layer, shape, 3), BNORM_ERR_STATE);
  bnorm_layer_destroy(layer);

  /* Axis out of range and repeated, after resolving negative values. */
  cfg.axis[0] = 3;
  layer = make_layer(&cfg, NULL, 0);
  if (layer) {
    CHECK_FAILS(bnorm_layer_build(layer, shape, 3), BNORM_ERR_INVALID_CONFIG);
    CHECK(!bnorm_layer_is_built(layer));
    bnorm_layer_destroy(layer);
  }
  cfg.axis[0] = 2;
  cfg.axis[1] = -1;
  cfg.axis_count = 2;
  cfg.axis_is_list = true;
  layer = make_layer(&cfg, NULL, 0);
  if (layer) {
    CHECK_FAILS(bnorm_layer_build(layer, shape, 3), BNORM_ERR_INVALID_CONFIG);
    CHECKF(strstr(bnorm_last_error(), "Duplicate") != NULL, "message: %s",
           bnorm_last_error());
    bnorm_layer_destroy(layer);
  }

  /* Ghost batches may not normalize the batch axis. */
  bnorm_config_init(&cfg);
  cfg.axis[0] = -2;
  cfg.virtual_batch_size = 2;
  layer = make_layer(&cfg, NULL, 0);
  if (layer) {
    CHECK_FAILS(bnorm_layer_build(layer, (int64_t[]){8, 3}, 2),
                BNORM_ERR_INVALID_CONFIG);
    bnorm_layer_destroy(layer);
  }

  /* Keras rejects these ghost-batch options at build, as bnorm does. */
  bnorm_config_init(&cfg);
  cfg.virtual_batch_size = -2;
  layer = make_layer(&cfg, NULL, 0);
  if (layer) {
    CHECK_FAILS(bnorm_layer_build(layer, (int64_t[]){8, 3}, 2),
                BNORM_ERR_INVALID_CONFIG);
    bnorm_layer_destroy(layer);
  }
  cfg.virtual_batch_size = 2;
  cfg.adjustment = failing_adjustment;
  layer = make_layer(&cfg, NULL, 0);
  if (layer) {
    CHECK_FAILS(bnorm_layer_build(layer, (int64_t[]){8, 3}, 2),
                BNORM_ERR_INVALID_CONFIG);
    CHECK(!bnorm_layer_is_built(layer));
    bnorm_layer_destroy(layer);
  }

  /* Keras 2: fused=True needs a 4-D/5-D input; axis -4 resolves to 0. */
  bnorm_config_init(&cfg);
  cfg.fused = BNORM_FUSED_TRUE;
  layer = make_layer(&cfg, NULL, 0);
  if (layer) {
    CHECK_FAILS(bnorm_layer_build(layer, shape, 3), BNORM_ERR_SHAPE);
    bnorm_layer_destroy(layer);
  }
  bnorm_config_init(&cfg);
  cfg.axis[0] = -4;
  layer = make_layer(&cfg, NULL, 0);
  if (layer) {
    CHECK_FAILS(bnorm_layer_build(layer, (int64_t[]){2, 3, 4, 5}, 4),
                BNORM_ERR_INVALID_CONFIG);
    bnorm_layer_destroy(layer);
  }
  /* ... while the TF1 layer silently falls back. */
  cfg.behavior = BNORM_BEHAVIOR_COMPAT_V1;
  layer = make_layer(&cfg, (int64_t[]){2, 3, 4, 5}, 4);
  if (layer) {
    CHECK(!bnorm_layer_is_fused(layer));
    bnorm_layer_destroy(layer);
  }

  /* Parameter counts that overflow. */
  bnorm_config_init(&cfg);
  cfg.axis[0] = 1;
  cfg.axis[1] = 2;
  cfg.axis_count = 2;
  cfg.axis_is_list = true;
  layer = make_layer(&cfg, NULL, 0);
  if (layer) {
    int64_t huge[3] = {1, INT64_C(1) << 40, INT64_C(1) << 40};
    CHECK_FAILS(bnorm_layer_build(layer, huge, 3), BNORM_ERR_OVERFLOW);
    CHECK(!bnorm_layer_is_built(layer));
    bnorm_layer_destroy(layer);
  }
}

static void test_forward_errors(void) {
  bnorm_config cfg;
  bnorm_config_init(&cfg);
  cfg.virtual_batch_size = 2;
  int64_t shape[2] = {-1, 3};
  bnorm_layer *layer = make_layer(&cfg, shape, 2);
  if (!layer) return;
  randomize_weights(layer);
  bnorm_updates *pending;
  bnorm_saved *saved;
  CHECK_OK(bnorm_updates_create(&pending));
  CHECK_OK(bnorm_saved_create(&saved));
  float x[64], y[64];
  th_fill_normal(x, 64, 1.0, 2.0);

  struct {
    int64_t shape[3];
    int rank;
    bnorm_status expected;
  } bad[] = {
      {{4, 3, 1}, 3, BNORM_ERR_SHAPE},             /* rank differs */
      {{4, 5}, 2, BNORM_ERR_SHAPE},                /* normalized size differs */
      {{3, 3}, 2, BNORM_ERR_SHAPE},                /* 2 does not divide 3 */
      {{-4, 3}, 2, BNORM_ERR_SHAPE},               /* negative size */
      {{INT64_MAX / 2, 3}, 2, BNORM_ERR_OVERFLOW}, /* too many elements */
      {{4, 3}, 0, BNORM_ERR_SHAPE},                /* rank 0 */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    float *before = snapshot(layer);
    bnorm_forward_args fa = {x, y, bad[i].shape, bad[i].rank, true, pending,
                             saved};
    CHECK_FAILS(bnorm_layer_forward(layer, &fa), bad[i].expected);
    CHECK(bnorm_updates_count(pending) == 0);
    fa.pending = NULL;
    CHECK_FAILS(bnorm_layer_forward(layer, &fa), bad[i].expected);
    check_unchanged(layer, before, "forward with a bad shape");
  }

  /* A failed forward leaves no usable saved state for backward... */
  bnorm_saved *fresh;
  CHECK_OK(bnorm_saved_create(&fresh));
  float dx[12];
  bnorm_backward_args ba = {fresh, x, x, (int64_t[]){4, 3}, 2, dx, NULL, NULL};
  CHECK_FAILS(bnorm_layer_backward(layer, &ba), BNORM_ERR_INVALID_ARGUMENT);
  bnorm_saved_destroy(fresh);

  /* ...and backward checks what it is given against the forward call. */
  bnorm_forward_args ok = {x, y, (int64_t[]){4, 3}, 2, true, pending, saved};
  CHECK_OK(bnorm_layer_forward(layer, &ok));
  CHECK(bnorm_updates_count(pending) == 1);
  ba.saved = saved;
  ba.shape = (int64_t[]){2, 3};
  CHECK_FAILS(bnorm_layer_backward(layer, &ba), BNORM_ERR_SHAPE);
  bnorm_config plain;
  bnorm_config_init(&plain);
  plain.scale = false;
  plain.center = false;
  bnorm_layer *other = make_layer(&plain, (int64_t[]){-1, 3}, 2);
  if (other) {
    ba.shape = (int64_t[]){4, 3};
    CHECK_FAILS(bnorm_layer_backward(other, &ba), BNORM_ERR_INVALID_ARGUMENT);
    /* Updates recorded by one layer cannot be applied to another. */
    float *before = snapshot(other);
    CHECK_FAILS(bnorm_layer_apply_updates(other, pending),
                BNORM_ERR_INVALID_ARGUMENT);
    CHECK(bnorm_updates_count(pending) == 1);
    check_unchanged(other, before, "apply_updates of another layer");
    /* dgamma/dbeta for variables the layer does not have. */
    bnorm_saved *own;
    CHECK_OK(bnorm_saved_create(&own));
    bnorm_forward_args fo = {x, y, (int64_t[]){4, 3}, 2, true, NULL, own};
    CHECK_OK(bnorm_layer_forward(other, &fo));
    float dgamma[3];
    bnorm_backward_args bo = {own, x, x, (int64_t[]){4, 3}, 2, dx, dgamma, NULL};
    CHECK_FAILS(bnorm_layer_backward(other, &bo), BNORM_ERR_INVALID_ARGUMENT);
    bo.dgamma = NULL;
    bo.dbeta = dgamma;
    CHECK_FAILS(bnorm_layer_backward(other, &bo), BNORM_ERR_INVALID_ARGUMENT);
    CHECK_FAILS(bnorm_layer_add_regularization_gradients(other, dgamma, NULL),
                BNORM_ERR_INVALID_ARGUMENT);
    bnorm_saved_destroy(own);
    bnorm_layer_destroy(other);
  }
  CHECK_OK(bnorm_layer_apply_updates(layer, pending));
  CHECK(bnorm_updates_count(pending) == 0);
  bnorm_updates_destroy(pending);
  bnorm_saved_destroy(saved);
  bnorm_layer_destroy(layer);
}

static int failing_adjustment(const int64_t *shape, int rank, double *scale,
                              double *bias, size_t channels, void *user_data) {
  (void)shape, (void)rank, (void)user_data;
  for (size_t i = 0; i < channels; i++) scale[i] = bias[i] = NAN;
  return -1;
}

static void test_callback_failure_changes_nothing(void) {
  bnorm_config cfg;
  bnorm_config_init(&cfg);
  cfg.adjustment = failing_adjustment;
  bnorm_layer *layer = make_layer(&cfg, (int64_t[]){-1, 4}, 2);
  if (!layer) return;
  randomize_weights(layer);
  float *before = snapshot(layer);
  float x[32], y[32];
  th_fill_normal(x, 32, 0.0, 1.0);
  bnorm_updates *pending;
  CHECK_OK(bnorm_updates_create(&pending));
  bnorm_forward_args fa = {x, y, (int64_t[]){8, 4}, 2, true, pending, NULL};
  CHECK_FAILS(bnorm_layer_forward(layer, &fa), BNORM_ERR_CALLBACK);
  CHECK(bnorm_updates_count(pending) == 0);
  fa.pending = NULL;
  CHECK_FAILS(bnorm_layer_forward(layer, &fa), BNORM_ERR_CALLBACK);
  check_unchanged(layer, before, "failing adjustment");
  /* Inference never calls the adjustment. */
  fa.training = false;
  CHECK_OK(bnorm_layer_forward(layer, &fa));
  bnorm_updates_destroy(pending);
  bnorm_layer_destroy(layer);
}

static int adjustment_fails_when_flagged(const int64_t *shape, int rank,
                                         double *scale, double *bias,
                                         size_t channels, void *user_data) {
  (void)shape, (void)rank;
  for (size_t i = 0; i < channels; i++) {
    scale[i] = 1.5f;
    bias[i] = 0.25f;
  }
  return *(const bool *)user_data ? -1 : 0;
}

/* A failed call keeps the saved record of the last good call intact, so
 * backward still differentiates that call, even when the failing call
 * (another, wider layer sharing the bnorm_saved) would need more room. */
static void test_failed_forward_keeps_saved(void) {
  bool fail = true;
  bnorm_config cfg;
  bnorm_config_init(&cfg);
  bnorm_layer *narrow = make_layer(&cfg, (int64_t[]){-1, 4}, 2);
  cfg.adjustment = adjustment_fails_when_flagged;
  cfg.adjustment_user_data = &fail;
  bnorm_layer *wide = make_layer(&cfg, (int64_t[]){-1, 256}, 2);
  if (!narrow || !wide) {
    bnorm_layer_destroy(narrow);
    bnorm_layer_destroy(wide);
    return;
  }
  int64_t shape[2] = {8, 4};
  float x[32], y[32], dy[32], dx_before[32], dx_after[32];
  th_fill_normal(x, 32, 1.0, 2.0);
  th_fill_normal(dy, 32, 0.0, 1.0);
  bnorm_saved *saved;
  CHECK_OK(bnorm_saved_create(&saved));
  bnorm_forward_args fa = {x, y, shape, 2, true, NULL, saved};
  CHECK_OK(bnorm_layer_forward(narrow, &fa));
  bnorm_backward_args ba = {saved, x, dy, shape, 2, dx_before, NULL, NULL};
  CHECK_OK(bnorm_layer_backward(narrow, &ba));
  static float big_x[2 * 256], big_y[2 * 256];
  th_fill_normal(big_x, 2 * 256, -3.0, 0.5);
  bnorm_forward_args bad = {big_x, big_y, (int64_t[]){2, 256}, 2, true, NULL,
                            saved};
  CHECK_FAILS(bnorm_layer_forward(wide, &bad), BNORM_ERR_CALLBACK);
  ba.dx = dx_after;
  CHECK_OK(bnorm_layer_backward(narrow, &ba));
  CHECK(memcmp(dx_before, dx_after, sizeof dx_before) == 0);
  bnorm_saved_destroy(saved);
  bnorm_layer_destroy(narrow);
  bnorm_layer_destroy(wide);
}

static void test_failed_first_call_leaves_layer_unbuilt(void) {
  bnorm_config cfg;
  bnorm_config_init(&cfg);
  cfg.virtual_batch_size = 4;
  bnorm_layer *layer = make_layer(&cfg, NULL, 0);
  if (!layer) return;
  float x[18] = {0}, y[18];
  bnorm_forward_args fa = {x, y, (int64_t[]){6, 3}, 2, true, NULL, NULL};
  CHECK_FAILS(bnorm_layer_forward(layer, &fa), BNORM_ERR_SHAPE);
  CHECKF(strstr(bnorm_last_error(), "virtual_batch_size") != NULL,
         "message: %s", bnorm_last_error());
  CHECK(!bnorm_layer_is_built(layer));
  CHECK(bnorm_layer_config(layer)->axis[0] == -1);
  /* A good first call builds it, as Keras does. */
  fa.shape = (int64_t[]){4, 3};
  CHECK_OK(bnorm_layer_forward(layer, &fa));
  CHECK(bnorm_layer_is_built(layer));
  bnorm_layer_destroy(layer);
}

static void test_variable_access_errors(void) {
  bnorm_config cfg;
  bnorm_config_init(&cfg);
  bnorm_layer *layer = make_layer(&cfg, (int64_t[]){-1, 5}, 2);
  if (!layer) return;
  float values[10] = {0};
  size_t index;
  CHECK_FAILS(bnorm_layer_get_variable(layer, 9, values, 5),
              BNORM_ERR_INVALID_ARGUMENT);
  CHECK_FAILS(bnorm_layer_set_variable(layer, 0, values, 4), BNORM_ERR_SHAPE);
  CHECK_FAILS(bnorm_layer_set_weights(layer, values, 10), BNORM_ERR_SHAPE);
  CHECK_FAILS(bnorm_layer_find_variable(layer, "renorm_mean", &index),
              BNORM_ERR_NOT_FOUND);
  CHECK_OK(bnorm_layer_find_variable(layer, "batch_normalization/beta", &index));
  CHECK(index == 1);
  CHECK(bnorm_layer_variable_data(layer, 4) == NULL);
  bnorm_layer_destroy(layer);
}

/* create must refuse `cfg`; a layer created by mistake is not leaked. */
static void expect_invalid(const bnorm_config *cfg) {
  bnorm_layer *layer = NULL;
  CHECK_FAILS(bnorm_layer_create(cfg, &layer), BNORM_ERR_INVALID_CONFIG);
  bnorm_layer_destroy(layer);
}

static void test_invalid_configs(void) {
  bnorm_config cfg;
  bnorm_layer *layer = NULL;
  bnorm_config_init(&cfg);
  cfg.momentum = NAN;
  expect_invalid(&cfg);
  bnorm_config_init(&cfg);
  cfg.epsilon = -1e-3;
  expect_invalid(&cfg);
  bnorm_config_init(&cfg);
  cfg.axis_count = 0;
  expect_invalid(&cfg);
  bnorm_config_init(&cfg);
  cfg.fused = BNORM_FUSED_TRUE;
  cfg.renorm = true;
  expect_invalid(&cfg);
  cfg.behavior = BNORM_BEHAVIOR_COMPAT_V1; /* the TF1 layer falls back */
  CHECK_OK(bnorm_layer_create(&cfg, &layer));
  bnorm_layer_destroy(layer);
  bnorm_config_init(&cfg);
  cfg.gamma_initializer.kind = BNORM_INIT_CALLBACK; /* no fn */
  expect_invalid(&cfg);
  bnorm_config_init(&cfg);
  cfg.behavior = (bnorm_behavior)7;
  expect_invalid(&cfg);
}

int main(void) {
  th_seed(7);
  test_null_arguments();
  test_build_errors();
  test_forward_errors();
  test_callback_failure_changes_nothing();
  test_failed_first_call_leaves_layer_unbuilt();
  test_failed_forward_keeps_saved();
  test_variable_access_errors();
  test_invalid_configs();
  return th_finish();
}
