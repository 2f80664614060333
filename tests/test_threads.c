/* Results are bit-identical for any number of threads: the operators cut
 * work independently of the thread count and combine it in a fixed order. */
#include <bnorm.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "ops.h"

typedef struct outputs {
  float *y, *dx, *dgamma, *dbeta, *weights;
} outputs;

typedef struct layout_case {
  const char *name;
  int64_t shape[5];
  int rank;
  int axis[2];
  int axis_count;
  int64_t virtual_batch_size;
} layout_case;

/* One training step and its backward at the current thread count. */
static bool run(const layout_case *lc, const float *x, const float *dy,
                size_t n, outputs *out) {
  bnorm_config cfg;
  bnorm_config_init(&cfg);
  memcpy(cfg.axis, lc->axis, sizeof lc->axis);
  cfg.axis_count = lc->axis_count;
  cfg.axis_is_list = lc->axis_count > 1;
  cfg.virtual_batch_size = lc->virtual_batch_size;
  cfg.momentum = 0.9;
  bnorm_layer *layer = NULL;
  bnorm_saved *saved = NULL;
  bool ok = CHECK_OK(bnorm_layer_create(&cfg, &layer)) &&
            CHECK_OK(bnorm_layer_build(layer, lc->shape, lc->rank)) &&
            CHECK_OK(bnorm_saved_create(&saved));
  if (ok) {
    size_t channels = bnorm_layer_channels(layer);
    size_t weights = bnorm_layer_weights_count(layer);
    out->y = malloc(n * sizeof(float));
    out->dx = malloc(n * sizeof(float));
    out->dgamma = malloc(channels * sizeof(float));
    out->dbeta = malloc(channels * sizeof(float));
    out->weights = malloc(weights * sizeof(float));
    bnorm_forward_args fa = {x, out->y, lc->shape, lc->rank, true, NULL, saved};
    bnorm_backward_args ba = {saved, x, dy, lc->shape, lc->rank, out->dx,
                              out->dgamma, out->dbeta};
    ok = CHECK_OK(bnorm_layer_forward(layer, &fa)) &&
         CHECK_OK(bnorm_layer_backward(layer, &ba)) &&
         CHECK_OK(bnorm_layer_get_weights(layer, out->weights, weights));
    /* Inference too, into dx's buffer's twin: reuse y. */
    fa.training = false;
    ok = ok && CHECK_OK(bnorm_layer_forward(layer, &fa));
  }
  bnorm_saved_destroy(saved);
  bnorm_layer_destroy(layer);
  return ok;
}

static void free_outputs(outputs *o) {
  free(o->y), free(o->dx), free(o->dgamma), free(o->dbeta), free(o->weights);
}

/* The operators' double-precision results themselves, not just the float
 * outputs they round to, must not depend on the thread count. */
static void check_ops_bitwise(const layout_case *lc, const float *x,
                              const float *dy) {
  bool normalized[BNORM_MAX_RANK] = {false};
  for (int i = 0; i < lc->axis_count; i++)
    normalized[lc->axis[i] < 0 ? lc->axis[i] + lc->rank : lc->axis[i]] = true;
  size_t groups = lc->virtual_batch_size
                      ? (size_t)(lc->shape[0] / lc->virtual_batch_size)
                      : 0;
  bn_layout layout;
  bn_layout_init(&layout, lc->shape, lc->rank, normalized, groups);
  size_t stats = layout.stats;
  size_t ws = bn_op_moments_workspace(&layout);
  if (bn_op_grad_sums_workspace(&layout) > ws) ws = bn_op_grad_sums_workspace(&layout);
  double *work = malloc(ws * sizeof *work);
  double *base = malloc(4 * stats * sizeof *base), *got = malloc(4 * stats * sizeof *got);
  float *center = malloc(stats * sizeof *center);
  for (size_t s = 0; s < stats; s++) center[s] = 1e3f;
  const int counts[] = {1, 2, 5};
  for (size_t t = 0; t < 3; t++) {
    CHECK_OK(bnorm_set_num_threads(counts[t]));
    double *out = t == 0 ? base : got;
    bn_op_moments(&layout, x, out, out + stats, work);
    bn_op_grad_sums(&layout, x, dy, center, out + 2 * stats, out + 3 * stats, work);
    if (t > 0)
      CHECKF(memcmp(base, got, 4 * stats * sizeof *base) == 0,
             "%s: operator sums with %d threads differ from 1 thread", lc->name,
             counts[t]);
  }
  free(work), free(base), free(got), free(center);
}

/* Two threads of the program call bnorm at once, each on its own layer
 * and shape: the pool runs one job at a time, and each calling thread
 * keeps its own job contexts (bn_keep_lines), so each must see its own
 * results, bit for bit, call after call. */
typedef struct caller {
  layout_case lc;
  float *x, *dy;
  size_t n;
  outputs expected;
  bool same; /* every call's outputs equal `expected` */
} caller;

static bool same_outputs(const outputs *a, const outputs *b, size_t n,
                         size_t channels) {
  return memcmp(a->y, b->y, n * sizeof(float)) == 0 &&
         memcmp(a->dx, b->dx, n * sizeof(float)) == 0 &&
         memcmp(a->dgamma, b->dgamma, channels * sizeof(float)) == 0 &&
         memcmp(a->dbeta, b->dbeta, channels * sizeof(float)) == 0;
}

/* `steps` training steps (forward and backward) on a new layer, into
 * `out`, without the harness's checks; with `compare`, until one differs
 * from c->expected. False where a call failed or differed. */
static bool train_steps(const caller *c, outputs *out, int steps,
                        bool compare) {
  const layout_case *lc = &c->lc;
  size_t channels = (size_t)lc->shape[lc->rank - 1];
  bnorm_config cfg;
  bnorm_config_init(&cfg);
  bnorm_layer *layer = NULL;
  bnorm_saved *saved = NULL;
  *out = (outputs){malloc(c->n * sizeof(float)), malloc(c->n * sizeof(float)),
                   malloc(channels * sizeof(float)),
                   malloc(channels * sizeof(float)), NULL};
  bool ok = out->y && out->dx && out->dgamma && out->dbeta &&
            bnorm_layer_create(&cfg, &layer) == BNORM_OK &&
            bnorm_layer_build(layer, lc->shape, lc->rank) == BNORM_OK &&
            bnorm_saved_create(&saved) == BNORM_OK;
  bnorm_forward_args fa = {c->x, out->y, lc->shape, lc->rank, true, NULL,
                           saved};
  bnorm_backward_args ba = {saved,    c->x,   c->dy,       lc->shape,
                            lc->rank, out->dx, out->dgamma, out->dbeta};
  /* The moving statistics change from step to step; y, dx, dgamma and
   * dbeta do not. */
  for (int i = 0; i < steps && ok; i++)
    ok = bnorm_layer_forward(layer, &fa) == BNORM_OK &&
         bnorm_layer_backward(layer, &ba) == BNORM_OK &&
         (!compare || same_outputs(&c->expected, out, c->n, channels));
  bnorm_saved_destroy(saved);
  bnorm_layer_destroy(layer);
  return ok;
}

/* Steps per calling thread: the plain build needs thousands to meet a
 * mix-up of the two threads' jobs in most runs; ThreadSanitizer reports
 * the race itself, from far fewer, and runs each step 20 times slower. */
#if defined(__SANITIZE_THREAD__)
enum { CONCURRENT_STEPS = 500 };
#else
enum { CONCURRENT_STEPS = 6000 };
#endif

static void *call_repeatedly(void *arg) {
  caller *c = arg;
  outputs got;
  c->same = train_steps(c, &got, CONCURRENT_STEPS, true);
  free_outputs(&got);
  return NULL;
}

static void check_concurrent_callers(void) {
  caller callers[2] = {
      {.lc = {"NHWC small", {8, 7, 7, 32}, 4, {-1, 0}, 1, 0}},
      {.lc = {"NHWC small, 48", {8, 7, 7, 48}, 4, {-1, 0}, 1, 0}}};
  CHECK_OK(bnorm_set_num_threads(2));
  for (int k = 0; k < 2; k++) {
    caller *c = &callers[k];
    c->n = 8 * 7 * 7 * (size_t)c->lc.shape[3];
    c->x = malloc(c->n * sizeof(float));
    c->dy = malloc(c->n * sizeof(float));
    th_fill_normal(c->x, c->n, 0.5, 2.0);
    th_fill_normal(c->dy, c->n, 0.0, 1.0);
    CHECK(train_steps(c, &c->expected, 1, false));
  }
  pthread_t threads[2];
  bool started[2];
  for (int k = 0; k < 2; k++)
    started[k] = CHECK(pthread_create(&threads[k], NULL, call_repeatedly,
                                      &callers[k]) == 0);
  for (int k = 0; k < 2; k++) {
    if (started[k] && CHECK(pthread_join(threads[k], NULL) == 0))
      CHECKF(callers[k].same, "%s: a call beside another thread's differs",
             callers[k].lc.name);
    free_outputs(&callers[k].expected);
    free(callers[k].x);
    free(callers[k].dy);
  }
}

int main(void) {
  const layout_case cases[] = {
      {"NHWC", {16, 28, 28, 32}, 4, {-1, 0}, 1, 0},
      {"NCHW", {16, 32, 28, 28}, 4, {1, 0}, 1, 0},
      {"NC wide", {512, 1024}, 2, {-1, 0}, 1, 0},
      /* Chunks grown for the per-statistic state of 1024 channels. */
      {"NC wide, grown chunks", {1600, 1024}, 2, {-1, 0}, 1, 0},
      {"NHWC ghost", {16, 28, 28, 32}, 4, {-1, 0}, 1, 4},
      {"multi-axis", {8, 6, 40, 40, 3}, 5, {1, 4}, 2, 0},
      {"batch axis", {70000, 3}, 2, {0, 0}, 1, 0},
      /* One chunk, which the elementwise passes halve for two threads. */
      {"NHWC small", {8, 7, 7, 32}, 4, {-1, 0}, 1, 0},
      {"NCHW small", {8, 32, 7, 7}, 4, {1, 0}, 1, 0},
      /* One chunk whose moments go in halves too (bn_moments_halves_pay),
       * for any thread count. */
      {"NHWC one chunk, moments in halves", {8, 14, 14, 32}, 4, {-1, 0}, 1,
       0},
      /* Two whole chunks: the backward's passes in one job of two phases,
       * as for the halves above. */
      {"NHWC two chunks", {8, 28, 28, 32}, 4, {-1, 0}, 1, 0},
      /* A few rows of many channels: forward and backward in 2, 3 or 7
       * blocks (of channels, a multiple of 16 each, the last one shorter,
       * then of rows). Their second half of channels has mean 0: folded
       * alone, its centers would change the output, and the fold is all
       * or none. */
      {"NC few rows", {16, 4096}, 2, {-1, 0}, 1, 0},
      {"NC few rows, uneven", {32, 1100}, 2, {-1, 0}, 1, 0},
  };
  const int thread_counts[] = {1, 2, 3, 7};
  th_seed(11);
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    const layout_case *lc = &cases[k];
    size_t n = 1;
    for (int i = 0; i < lc->rank; i++) n *= (size_t)lc->shape[i];
    float *x = malloc(n * sizeof *x), *dy = malloc(n * sizeof *dy);
    th_fill_normal(x, n, 1e3, 3.0); /* a large mean stresses the merges */
    th_fill_normal(dy, n, 0.0, 1.0);
    if (strncmp(lc->name, "NC few rows", 11) == 0) {
      size_t width = (size_t)lc->shape[1];
      for (size_t i = 0; i < n; i++)
        if (i % width >= width / 2) x[i] -= 1e3f;
    }
    check_ops_bitwise(lc, x, dy);
    outputs first = {0};
    CHECK_OK(bnorm_set_num_threads(1));
    if (!run(lc, x, dy, n, &first)) continue;
    size_t channels = 1, weights;
    for (int i = 0; i < lc->axis_count; i++) {
      int a = lc->axis[i] < 0 ? lc->axis[i] + lc->rank : lc->axis[i];
      channels *= (size_t)lc->shape[a];
    }
    weights = 4 * channels;
    for (size_t t = 1; t < sizeof thread_counts / sizeof thread_counts[0]; t++) {
      CHECK_OK(bnorm_set_num_threads(thread_counts[t]));
      CHECK(bnorm_get_num_threads() == thread_counts[t]);
      outputs other = {0};
      if (!run(lc, x, dy, n, &other)) continue;
      CHECKF(memcmp(first.y, other.y, n * sizeof(float)) == 0 &&
                 memcmp(first.dx, other.dx, n * sizeof(float)) == 0 &&
                 memcmp(first.dgamma, other.dgamma, channels * sizeof(float)) == 0 &&
                 memcmp(first.dbeta, other.dbeta, channels * sizeof(float)) == 0 &&
                 memcmp(first.weights, other.weights, weights * sizeof(float)) == 0,
             "%s: %d threads differ from 1 thread", lc->name, thread_counts[t]);
      free_outputs(&other);
    }
    free_outputs(&first);
    free(x);
    free(dy);
  }
  check_concurrent_callers();
  CHECK_STATUS(bnorm_set_num_threads(-1), BNORM_ERR_INVALID_ARGUMENT);
  CHECK_OK(bnorm_set_num_threads(0));
  CHECK(bnorm_get_num_threads() >= 1);
  return th_finish();
}
