/* bnorm-variants: what the layer's optional paths cost on top of the plain
 * layer, on the shapes of the benchmark.
 *
 *   bnorm-variants [--shapes FILE] [--threads 1,2] [--pairs N]
 *
 * For every shape, thread count and pass (training forward, backward), each
 * variant's layer is timed against a plain layer (Keras' defaults) on the
 * same tensors, the two calls alternating (ABBA) so that the drifts of a
 * shared machine hit both alike; the median of the per-pair ratios
 * variant / plain, with its quartiles, is the variant's cost (1.00: none).
 * Cold shapes scrub the caches before every call, warm ones repeat the call
 * for at least 2 ms. Variants:
 *   renorm  Batch Renormalization, clipping rmax 3, rmin 1/3, dmax 5
 *   ghost   Ghost Batch Normalization, virtual_batch_size = batch / 4
 *   adjust  an `adjustment` hook (scale 1.1, bias 0.05 per channel)
 *   pending the training forward records its moving-average updates, then
 *           bnorm_layer_apply_updates applies them
 */
#define _POSIX_C_SOURCE 200809L
#include "bench.h"

#include <bnorm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { VARIANT_COUNT = 4, MAX_PAIRS = 201 };

static const char *const variant_names[VARIANT_COUNT] = {"renorm", "ghost",
                                                         "adjust", "pending"};

static int adjust(const int64_t *shape, int rank, double *scale, double *bias,
                  size_t channels, void *user_data) {
  (void)shape;
  (void)rank;
  (void)user_data;
  for (size_t c = 0; c < channels; c++) {
    scale[c] = 1.1;
    bias[c] = 0.05;
  }
  return 0;
}

typedef struct subject {
  bnorm_layer *layer;
  bnorm_saved *saved;
  bnorm_updates *updates; /* the pending variant */
} subject;

typedef struct tensors {
  const bench_shape *shape;
  int64_t dims[BENCH_MAX_RANK];
  float *x, *dy, *y, *dx, *dgamma, *dbeta;
} tensors;

static void subject_destroy(subject *s) {
  bnorm_layer_destroy(s->layer);
  bnorm_saved_destroy(s->saved);
  bnorm_updates_destroy(s->updates);
  memset(s, 0, sizeof *s);
}

/* variant -1: the plain layer. Returns 0, or -1 when the variant does not
 * apply to the shape (ghost batches need a batch divisible by 4). */
static int subject_create(subject *s, int variant, const tensors *t) {
  memset(s, 0, sizeof *s);
  const bench_shape *sh = t->shape;
  bnorm_config cfg;
  bnorm_config_init(&cfg);
  cfg.axis[0] = sh->channel_axis;
  switch (variant) {
  case 0:
    cfg.renorm = true;
    cfg.renorm_clipping_has_rmax = cfg.renorm_clipping_has_rmin =
        cfg.renorm_clipping_has_dmax = true;
    cfg.renorm_clipping_rmax = 3.0;
    cfg.renorm_clipping_rmin = 1.0 / 3.0;
    cfg.renorm_clipping_dmax = 5.0;
    break;
  case 1:
    if (sh->dims[0] % 4 != 0) return -1;
    cfg.virtual_batch_size = sh->dims[0] / 4;
    break;
  case 2:
    cfg.adjustment = adjust;
    break;
  default:
    break;
  }
  if (bnorm_layer_create(&cfg, &s->layer) != BNORM_OK ||
      bnorm_layer_build(s->layer, t->dims, sh->rank) != BNORM_OK ||
      bnorm_saved_create(&s->saved) != BNORM_OK ||
      (variant == 3 && bnorm_updates_create(&s->updates) != BNORM_OK)) {
    subject_destroy(s);
    return -1;
  }
  return 0;
}

static int run(const subject *s, const tensors *t, bench_pass pass) {
  if (pass == BENCH_BACKWARD) {
    bnorm_backward_args b = {s->saved, t->x,  t->dy,     t->dims,
                             t->shape->rank, t->dx, t->dgamma, t->dbeta};
    return bnorm_layer_backward(s->layer, &b) == BNORM_OK ? 0 : -1;
  }
  bnorm_forward_args f;
  memset(&f, 0, sizeof f);
  f.x = t->x;
  f.y = t->y;
  f.shape = t->dims;
  f.rank = t->shape->rank;
  f.training = true;
  f.saved = s->saved;
  f.pending = s->updates;
  if (bnorm_layer_forward(s->layer, &f) != BNORM_OK) return -1;
  return s->updates && bnorm_layer_apply_updates(s->layer, s->updates) !=
                           BNORM_OK ? -1 : 0;
}

static double run_timed(const subject *s, const tensors *t, bench_pass pass,
                        int calls, int *failed) {
  if (t->shape->cold) bench_scrub();
  double t0 = bench_now();
  for (int i = 0; i < calls; i++) *failed |= run(s, t, pass);
  return (bench_now() - t0) / calls;
}

/* Times `variant` against `plain`; prints one line. */
static int compare(const subject *plain, const subject *variant,
                   const char *name, const tensors *t, bench_pass pass,
                   int threads, int pairs) {
  static double times[2][MAX_PAIRS], ratio[MAX_PAIRS];
  const subject *who[2] = {plain, variant};
  int failed = 0;
  /* Both start from a recorded training call (backward needs one). */
  for (int k = 0; k < 2; k++) failed |= run(who[k], t, BENCH_TRAIN);
  int calls = 1;
  if (!t->shape->cold) {
    double once = run_timed(plain, t, pass, 1, &failed);
    calls = once > 0 && once < 2e-3 ? (int)(2e-3 / once) + 1 : 1;
  }
  for (int pair = 0; pair < pairs; pair++)
    for (int turn = 0; turn < 2; turn++) {
      int k = (pair & 1) ? 1 - turn : turn; /* ABBA */
      for (int w = 0; w < 2; w++) run_timed(who[k], t, pass, calls, &failed);
      times[k][pair] = run_timed(who[k], t, pass, calls, &failed);
    }
  if (failed) {
    fprintf(stderr, "bnorm-variants: %s %s %s: a call failed\n",
            t->shape->name, bench_pass_name(pass), name);
    return -1;
  }
  for (int pair = 0; pair < pairs; pair++)
    ratio[pair] = times[1][pair] / times[0][pair];
  for (int k = 0; k < 2; k++) bench_sort(times[k], pairs);
  bench_sort(ratio, pairs);
  printf("%-18s %-5s %3d  %-8s %10.1f %10.1f   %.3f [%.3f %.3f]\n",
         t->shape->name, bench_pass_name(pass), threads, name,
         times[0][pairs / 2] * 1e6, times[1][pairs / 2] * 1e6,
         ratio[pairs / 2], ratio[pairs / 4], ratio[3 * pairs / 4]);
  fflush(stdout);
  return 0;
}

static int shape_cases(const bench_shape *sh, size_t index,
                       const int *thread_list, int thread_count, int pairs) {
  tensors t = {.shape = sh};
  for (int d = 0; d < sh->rank; d++) t.dims[d] = sh->dims[d];
  t.x = bench_alloc_tensor(sh->total);
  t.dy = bench_alloc_tensor(sh->total);
  t.y = bench_alloc_tensor(sh->total);
  t.dx = bench_alloc_tensor(sh->total);
  t.dgamma = bench_alloc_tensor(sh->channels);
  t.dbeta = bench_alloc_tensor(sh->channels);
  int failures = 0;
  if (!t.x || !t.dy || !t.y || !t.dx || !t.dgamma || !t.dbeta) {
    fprintf(stderr, "bnorm-variants: %s: out of memory\n", sh->name);
    failures = 1;
    goto done;
  }
  bench_fill_tensor(t.x, sh->total, bench_seed(index, BENCH_SEED_X));
  bench_fill_tensor(t.dy, sh->total, bench_seed(index, BENCH_SEED_DY));
  for (int ti = 0; ti < thread_count; ti++) {
    bnorm_set_num_threads(thread_list[ti]);
    subject plain;
    if (subject_create(&plain, -1, &t) != 0) {
      failures++;
      continue;
    }
    const bench_pass passes[] = {BENCH_TRAIN, BENCH_BACKWARD};
    for (int p = 0; p < 2; p++)
      for (int v = 0; v < VARIANT_COUNT; v++) {
        if (v == 3 && passes[p] == BENCH_BACKWARD) continue; /* = plain */
        subject s;
        if (subject_create(&s, v, &t) != 0) continue;
        failures += compare(&plain, &s, variant_names[v], &t, passes[p],
                            thread_list[ti], pairs) != 0;
        subject_destroy(&s);
      }
    subject_destroy(&plain);
  }
done:
  free(t.x);
  free(t.dy);
  free(t.y);
  free(t.dx);
  free(t.dgamma);
  free(t.dbeta);
  return failures;
}

int main(int argc, char **argv) {
  const char *shapes_path = BENCH_SOURCE_DIR "/shapes/issue5.txt";
  int thread_list[4] = {1, 2}, thread_count = 2, pairs = 31;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--shapes") && i + 1 < argc) {
      shapes_path = argv[++i];
    } else if (!strcmp(argv[i], "--pairs") && i + 1 < argc) {
      pairs = atoi(argv[++i]);
    } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
      thread_count = 0;
      for (char *p = argv[++i]; *p && thread_count < 4;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > 1024) thread_count = -1;
        if (thread_count < 0) break;
        thread_list[thread_count++] = (int)v;
        p = *end == ',' ? end + 1 : end;
      }
    } else {
      thread_count = -1;
    }
    if (thread_count < 1 || pairs < 1 || pairs > MAX_PAIRS) {
      fprintf(stderr, "usage: bnorm-variants [--shapes FILE] "
                      "[--threads 1,2] [--pairs N (1..%d)]\n", MAX_PAIRS);
      return 2;
    }
  }
  static bench_shape shapes[BENCH_MAX_SHAPES];
  size_t count;
  char err[512];
  if (bench_shapes_load(shapes_path, shapes, BENCH_MAX_SHAPES, &count, err,
                        sizeof err) != 0) {
    fprintf(stderr, "bnorm-variants: %s\n", err);
    return 2;
  }
  if (bench_scrub_init(3 * bench_llc_bytes(0)) != 0) {
    fprintf(stderr, "bnorm-variants: out of memory for the scrub buffer\n");
    return 2;
  }
  printf("bnorm-variants: each variant against the plain layer, same "
         "tensors, calls alternating; median of %d pairs of variant / plain "
         "[quartiles]\n\n%-18s %-5s %3s  %-8s %10s %10s   %s\n", pairs, "case",
         "pass", "thr", "variant", "plain us", "variant us", "ratio");
  int failures = 0;
  for (size_t i = 0; i < count; i++)
    failures += shape_cases(&shapes[i], i, thread_list, thread_count, pairs);
  bench_scrub_free();
  return failures ? 1 : 0;
}
