/*
 * test_kernel_shapes.c — every row shape of the kernels against the fp64
 * reference: rows of 1 to 4 vectors with and without a scalar tail, wide
 * rows (with a tail, and past one strip of 1024 channels), NCHW rows short
 * and long, several blocks and chunks per statistic. The random sweeps use
 * small tensors, which never reach most of these paths. ctest runs this
 * file at every instruction-set level.
 *
 * Each shape runs with inputs centred near zero, where the elementwise
 * passes fold each statistic's center into its constant term, and with
 * means far from zero (1e3 + N(0, 1), or one channel there), where they
 * must not.
 *
 * Tolerances. Forward y: RTOL = 1e-5 of the tensor's scale plus KCENTER = 4
 * float32 roundings of |center * scale| per channel: a float32 layer holds
 * the mean in float32 (as TensorFlow does), which shifts a channel's output
 * by up to 2^-24 |mean * scale|; nothing else may add error of that size, so
 * a fold where it costs accuracy, or statistics without a pivot, fail here.
 * Backward: RTOL plus 64 float32 roundings of the magnitude of the summed
 * terms (the allowance of test_backward.c); dgamma also KCENTER roundings
 * of |center * rho| * sum |dy|, what the float32 center shifts it by.
 */
#include <bnorm.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "ref_bridge.h"

#define RTOL 1e-5
#define KCENTER 4.0
#define KMAG 64.0

typedef struct shape_case {
  const char *name;
  int rank;
  int64_t shape[4];
  int axis;
} shape_case;

typedef enum { CENTRED, FAR, ONE_FAR, INPUT_KINDS } input_kind;
static const char *input_names[] = {"centred", "mean 1e3", "one channel at 1e3"};

static double channel_mean(input_kind kind, size_t channel) {
  if (kind == FAR || (kind == ONE_FAR && channel == 0)) return 1e3;
  return 0.5;
}

/* y and the per-element allowance for the float32 center, KCENTER
 * roundings of |center * gamma * rho| of the element's channel. */
static void check_y(const float *y, const double *yr, size_t n,
                    size_t inner, size_t channels, const double *center,
                    const double *scale, const char *what) {
  double *mag = dmalloc(n);
  for (size_t i = 0; i < n; i++) {
    size_t c = (i / inner) % channels;
    mag[i] = KCENTER / 64.0 * fabs(center[c] * scale[c]);
  }
  /* REF_CHECK_CLOSE allows 64 roundings of mag; mag carries KCENTER/64. */
  REF_CHECK_CLOSE(y, yr, mag, n, RTOL, 64.0, what);
  free(mag);
}

static void run_case(const shape_case *sc, input_kind kind) {
  ref_config rc;
  ref_config_init(&rc);
  rc.axis_count = 1;
  rc.axis[0] = sc->axis;
  ref_layer ref;
  if (!CHECKF(ref_layer_build(&ref, &rc, sc->shape, sc->rank) == 0,
              "%s: reference build: %s", sc->name, ref_error()))
    return;
  size_t C = ref.channels, n = ref_shape_count(sc->shape, sc->rank);
  size_t inner = 1;
  int axis = sc->axis < 0 ? sc->rank + sc->axis : sc->axis;
  for (int d = sc->rank - 1; d > axis; d--) inner *= (size_t)sc->shape[d];

  float *x = fmalloc(n), *y = fmalloc(n), *dy = fmalloc(n), *dx = fmalloc(n);
  float *dg = fmalloc(C), *db = fmalloc(C), *w = fmalloc(4 * C);
  double *yr = dmalloc(n), *dxr = dmalloc(n), *dgr = dmalloc(C),
         *dbr = dmalloc(C), *dxm = dmalloc(n), *dgm = dmalloc(C),
         *dbm = dmalloc(C), *scale = dmalloc(C), *center = dmalloc(C),
         *center_error = dmalloc(C);
  for (size_t i = 0; i < n; i++)
    x[i] = (float)(channel_mean(kind, (i / inner) % C) + th_normal());
  th_fill_normal(dy, n, 0.0, 1.0);
  double *xd = to_double(x, n), *dyd = to_double(dy, n);
  /* gamma, beta, moving mean and variance near the data's. */
  for (size_t c = 0; c < C; c++) {
    w[c] = (float)(0.5 + th_uniform());
    w[C + c] = (float)(th_uniform() - 0.5);
    w[2 * C + c] = (float)(channel_mean(kind, c) + 0.1 * (th_uniform() - 0.5));
    w[3 * C + c] = (float)(0.8 + 0.4 * th_uniform());
  }
  ref_layer_set_weights_f(&ref, w);

  bnorm_config cfg;
  ref_to_bnorm_config(&cfg, &rc);
  bnorm_layer *bn = NULL;
  bnorm_saved *saved = NULL;
  bnorm_updates *pending = NULL; /* the variables stay as set */
  char label[200];
  if (!CHECK_OK(bnorm_layer_create(&cfg, &bn)) ||
      !CHECK_OK(bnorm_layer_build(bn, sc->shape, sc->rank)) ||
      !CHECK_OK(bnorm_layer_set_weights(bn, w, 4 * C)) ||
      !CHECK_OK(bnorm_saved_create(&saved)) ||
      !CHECK_OK(bnorm_updates_create(&pending)))
    goto done;

  for (int training = 1; training >= 0; training--) {
    snprintf(label, sizeof label, "%s, %s, %s", sc->name, input_names[kind],
             training ? "training" : "inference");
    ref_saved rs;
    memset(&rs, 0, sizeof rs);
    ref_forward_args ra = {0};
    ra.x = xd;
    ra.shape = sc->shape;
    ra.rank = sc->rank;
    ra.training = training;
    if (!CHECKF(ref_forward(&ref, &ra, yr, NULL, NULL, &rs) == 0,
                "%s: reference: %s", label, ref_error()))
      continue;
    ref_backward(&rs, &ref, xd, dyd, sc->shape, sc->rank, dxr, dgr, dbr, dxm,
                 dgm, dbm);
    for (size_t c = 0; c < C; c++) {
      center[c] = rs.mean[c];
      scale[c] = rs.gamma[c] * rs.rho[c];
      center_error[c] = 0.0;
    }
    if (training)
      for (size_t i = 0; i < n; i++) {
        size_t c = (i / inner) % C;
        center_error[c] += fabs(center[c] * rs.rho[c] * dyd[i]);
      }
    ref_saved_free(&rs);

    bnorm_forward_args fa = {x, y, sc->shape, sc->rank, training, pending,
                             saved};
    bnorm_backward_args ba = {saved, x, dy, sc->shape, sc->rank, dx, dg, db};
    char what[300];
    if (CHECK_OK(bnorm_layer_forward(bn, &fa))) {
      snprintf(what, sizeof what, "%s: y", label);
      check_y(y, yr, n, inner, C, center, scale, what);
    }
    if (CHECK_OK(bnorm_layer_backward(bn, &ba))) {
      snprintf(what, sizeof what, "%s: dx", label);
      REF_CHECK_CLOSE(dx, dxr, dxm, n, RTOL, KMAG, what);
      /* dgamma sums dy * (x - center) * rho with the float32 center, as
       * TensorFlow does: off by (mean - center) * rho * sum(dy). */
      for (size_t c = 0; c < C; c++) dgm[c] += KCENTER / KMAG * center_error[c];
      snprintf(what, sizeof what, "%s: dgamma", label);
      REF_CHECK_CLOSE(dg, dgr, dgm, C, RTOL, KMAG, what);
      snprintf(what, sizeof what, "%s: dbeta", label);
      REF_CHECK_CLOSE(db, dbr, dbm, C, RTOL, KMAG, what);
    }
  }
done:
  bnorm_updates_destroy(pending);
  bnorm_saved_destroy(saved);
  bnorm_layer_destroy(bn);
  ref_layer_free(&ref);
  free(x), free(y), free(dy), free(dx), free(dg), free(db), free(w);
  free(yr), free(dxr), free(dgr), free(dbr), free(dxm), free(dgm), free(dbm);
  free(scale), free(center), free(center_error), free(xd), free(dyd);
}

int main(void) {
  static const shape_case cases[] = {
      {"NC 300x1", 2, {300, 1}, -1},
      {"NC 200x3 (scalar tail only)", 2, {200, 3}, -1},
      {"NC 150x16 (one AVX-512 vector)", 2, {150, 16}, -1},
      {"NC 97x40 (vectors and a tail)", 2, {97, 40}, -1},
      {"NC 65x64 (four AVX-512 vectors)", 2, {65, 64}, -1},
      {"NC 70x67 (wide with a tail)", 2, {70, 67}, -1},
      {"NC 37x520 (wide)", 2, {37, 520}, -1},
      {"NC 33x1100 (two strips)", 2, {33, 1100}, -1},
      /* Rows past WIDE go in groups of four: 34 and 35 end in groups of
       * two and three (33 in one). */
      {"NC 34x1100 (groups of 4, then 2)", 2, {34, 1100}, -1},
      {"NC 35x1100 (groups of 4, then 3)", 2, {35, 1100}, -1},
      /* Rows past WIDE: chunks of 119 rows, blocks of 64 + 55. */
      {"NC 400x1100 (two strips, 64-row blocks)", 2, {400, 1100}, -1},
      {"NC 301x520 (wide: flushes, blocks, chunks)", 2, {301, 520}, -1},
      {"NC 9000x40 (blocks and chunks)", 2, {9000, 40}, -1},
      /* Chunks grown for the per-statistic state of 520 channels. */
      {"NC 2600x520 (wide: grown chunks)", 2, {2600, 520}, -1},
      {"NHWC 4x5x3x24", 4, {4, 5, 3, 24}, -1},
      {"NCHW 6x5x7x7 (short rows)", 4, {6, 5, 7, 7}, 1},
      /* Runs of 25: one vector past the paired ones, then a tail, at both
       * SIMD widths. */
      {"NCHW 5x6x5x5 (one vector and a tail)", 4, {5, 6, 5, 5}, 1},
      {"NCHW 3x4x40x40", 4, {3, 4, 40, 40}, 1},
      {"NCHW 2x3x300x300 (blocks, chunks)", 4, {2, 3, 300, 300}, 1},
      /* Past 2^21 elements the elementwise passes stream their outputs
       * and fetch their inputs ahead: each path once. */
      {"NC 32800x65 (streamed, narrow with a tail)", 2, {32800, 65}, -1},
      {"NC 2050x1030 (streamed, wide with a tail)", 2, {2050, 1030}, -1},
      {"NCHW 2x3x600x601 (streamed runs)", 4, {2, 3, 600, 601}, 1},
  };
  th_seed(2026);
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
    for (int kind = 0; kind < INPUT_KINDS; kind++)
      run_case(&cases[k], (input_kind)kind);
  return th_finish();
}
