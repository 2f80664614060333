/* bnorm, timed through its public layer API: bnorm_layer_forward (training
 * and inference) and bnorm_layer_backward, as a user's training loop calls
 * them. */
#define _GNU_SOURCE /* RTLD_DEFAULT */
#include "bench.h"

#include <bnorm.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct bench_bnorm {
  const bench_io *io;
  bnorm_layer *layer;
  bnorm_saved *saved;
  bnorm_updates *pending;
  int64_t shape[BENCH_MAX_RANK];
  float *y, *dx, *dgamma, *dbeta;
};

static int fail(const char *what) {
  fprintf(stderr, "bnorm-bench: %s: %s\n", what, bnorm_last_error());
  return -1;
}

static int set_variables(bench_bnorm *b) {
  const bench_io *io = b->io;
  const char *names[] = {"gamma", "beta", "moving_mean", "moving_variance"};
  const float *values[] = {io->gamma, io->beta, io->moving_mean,
                           io->moving_variance};
  for (int i = 0; i < 4; i++) {
    size_t index;
    if (bnorm_layer_find_variable(b->layer, names[i], &index) != BNORM_OK ||
        bnorm_layer_set_variable(b->layer, index, values[i],
                                 io->shape->channels) != BNORM_OK)
      return fail("setting the variables");
  }
  return 0;
}

int bench_bnorm_create(const bench_io *io, bench_bnorm **out) {
  const bench_shape *s = io->shape;
  bench_bnorm *b = calloc(1, sizeof *b);
  if (!b) return -1;
  b->io = io;
  bnorm_config cfg;
  bnorm_config_init(&cfg);
  /* Keras axis: -1 for channels last, the positive axis otherwise. */
  cfg.axis[0] = s->channel_axis == s->rank - 1 ? -1 : s->channel_axis;
  cfg.axis_count = 1;
  cfg.epsilon = io->epsilon;
  cfg.momentum = io->momentum;
  for (int i = 0; i < s->rank; i++) b->shape[i] = s->dims[i];
  b->y = bench_alloc_tensor(s->total);
  b->dx = bench_alloc_tensor(s->total);
  b->dgamma = calloc(s->channels, sizeof(float));
  b->dbeta = calloc(s->channels, sizeof(float));
  if (!b->y || !b->dx || !b->dgamma || !b->dbeta) {
    bench_bnorm_destroy(b);
    return -1;
  }
  if (bnorm_layer_create(&cfg, &b->layer) != BNORM_OK ||
      bnorm_layer_build(b->layer, b->shape, s->rank) != BNORM_OK ||
      bnorm_saved_create(&b->saved) != BNORM_OK ||
      bnorm_updates_create(&b->pending) != BNORM_OK || set_variables(b)) {
    fail("creating the layer");
    bench_bnorm_destroy(b);
    return -1;
  }
  *out = b;
  return 0;
}

void bench_bnorm_destroy(bench_bnorm *b) {
  if (!b) return;
  bnorm_layer_destroy(b->layer);
  bnorm_saved_destroy(b->saved);
  bnorm_updates_destroy(b->pending);
  free(b->y);
  free(b->dx);
  free(b->dgamma);
  free(b->dbeta);
  free(b);
}

static int forward(bench_bnorm *b, bool training, bool pending) {
  bnorm_forward_args fa = {
      .x = b->io->x,
      .y = b->y,
      .shape = b->shape,
      .rank = b->io->shape->rank,
      .training = training};
  fa.saved = training ? b->saved : NULL; /* a training step keeps them */
  fa.pending = pending ? b->pending : NULL;
  if (bnorm_layer_forward(b->layer, &fa) != BNORM_OK)
    return fail("bnorm_layer_forward");
  /* A custom training loop applies the recorded updates with its step. */
  if (pending && bnorm_layer_apply_updates(b->layer, b->pending) != BNORM_OK)
    return fail("bnorm_layer_apply_updates");
  return 0;
}

int bench_bnorm_prepare(bench_bnorm *b, bench_pass pass) {
  if (set_variables(b)) return -1;
  if (pass == BENCH_BACKWARD) return forward(b, true, false);
  return 0;
}

int bench_bnorm_run(bench_bnorm *b, bench_pass pass, bool pending) {
  if (pass != BENCH_BACKWARD) return forward(b, pass == BENCH_TRAIN, pending);
  bnorm_backward_args ba = {
      .saved = b->saved,
      .x = b->io->x,
      .dy = b->io->dy,
      .shape = b->shape,
      .rank = b->io->shape->rank,
      .dx = b->dx,
      .dgamma = b->dgamma,
      .dbeta = b->dbeta};
  if (bnorm_layer_backward(b->layer, &ba) != BNORM_OK)
    return fail("bnorm_layer_backward");
  return 0;
}

void bench_bnorm_result(const bench_bnorm *b, bench_result *out) {
  out->y = b->y;
  out->dx = b->dx;
  out->dgamma = b->dgamma;
  out->dbeta = b->dbeta;
  out->dgamma_scale = out->dbeta_scale = NULL;
}

/* A later bnorm adds bnorm_set_num_threads; until then bnorm runs on one
 * thread whatever the column says. Looked up at run time so that this file
 * compiles against either header. */
typedef int (*set_threads_fn)(int);

static set_threads_fn threads_hook(void) {
  static int looked;
  static set_threads_fn fn;
  if (!looked) {
    void *p = dlsym(RTLD_DEFAULT, "bnorm_set_num_threads");
    memcpy(&fn, &p, sizeof fn);
    looked = 1;
  }
  return fn;
}

bool bench_bnorm_has_threads(void) { return threads_hook() != NULL; }

int bench_bnorm_set_threads(int threads) {
  set_threads_fn fn = threads_hook();
  if (!fn) return 1;
  fn(threads);
  return threads;
}
