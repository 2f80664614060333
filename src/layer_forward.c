/* The layer's call: mode resolution, batch statistics, renorm, adjustment,
 * the output, and the moving-average updates. */
#include "layer_state.h"
#include "share_choice.h"
#include "threads.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

bnorm_status bnorm_saved_create(bnorm_saved **saved) {
  if (!saved)
    return bn_fail(BNORM_ERR_NULL_ARGUMENT,
                   "bnorm_saved_create: saved must not be NULL");
  *saved = calloc(1, sizeof **saved);
  if (!*saved)
    return bn_fail(BNORM_ERR_OUT_OF_MEMORY, "bnorm_saved_create: out of memory");
  bn_clear_error();
  return BNORM_OK;
}

void bnorm_saved_destroy(bnorm_saved *saved) {
  if (!saved) return;
  bn_scratch_free(&saved->values);
  bn_scratch_free(&saved->work);
  free(saved);
}

void bn_layer_layout(const bnorm_layer *layer, const int64_t *shape,
                     size_t groups, bn_layout *layout) {
  bn_layout_init(layout, shape, layer->rank, layer->normalized, groups);
}

/* Checks a call's shape against the built layer (Keras InputSpec) and counts
 * its elements. */
static bnorm_status check_call_shape(const bnorm_layer *layer,
                                     const int64_t *shape, int rank,
                                     const char *what, size_t *count) {
  if (rank != layer->rank)
    return bn_fail(BNORM_ERR_SHAPE,
                   "%s: input of rank %d is incompatible with layer '%s', "
                   "built for rank %d",
                   what, rank, layer->name, layer->rank);
  bnorm_status status = bn_shape_count(shape, rank, what, count);
  if (status != BNORM_OK) return status;
  for (int i = 0; i < rank; i++)
    if (layer->normalized[i] && shape[i] != layer->build_shape[i])
      return bn_fail(BNORM_ERR_SHAPE,
                     "%s: axis %d of the input has size %lld but layer '%s' "
                     "was built with %lld there (a normalized axis)",
                     what, i, (long long)shape[i], layer->name,
                     (long long)layer->build_shape[i]);
  return BNORM_OK;
}

/* Returns the number of ghost batches for this call (0 = none) or fails if
 * virtual_batch_size does not divide the batch where it must. */
static bnorm_status ghost_groups(const bnorm_layer *layer, const int64_t *shape,
                                 bool training, size_t *groups) {
  int64_t vbs = layer->config.virtual_batch_size;
  *groups = 0;
  if (vbs <= 0) return BNORM_OK;
  /* tf_keras under TF2 reshapes to [-1, 1] at inference, so any batch works;
   * the TF1 layer always reshapes to [vbs, -1]. */
  bool must_divide =
      training || layer->config.behavior == BNORM_BEHAVIOR_COMPAT_V1;
  if (must_divide && shape[0] % vbs != 0)
    return bn_fail(BNORM_ERR_SHAPE,
                   "virtual_batch_size %lld does not divide the batch size "
                   "%lld of the input; use a batch that is a multiple of it",
                   (long long)vbs, (long long)shape[0]);
  if (training) *groups = (size_t)(shape[0] / vbs);
  return BNORM_OK;
}

/* Per-call workspace, carved from the layer's scratch. Per-channel values
 * are doubles holding values of the layer's dtype; the kernels' coefficients
 * are arrays of the dtype. */
typedef struct forward_work {
  double *mean, *variance, *rho;         /* per statistic */
  double *moments_workspace;
  void *center, *scale, *offset;         /* per statistic, the dtype */
  double *adj_scale, *adj_bias, *r, *d;  /* per channel */
  double *batch_mean, *batch_second;     /* per channel */
  double *xhat_scale, *shift;            /* per channel */
  double *gamma, *beta;                  /* per channel */
} forward_work;

static bool reserve_work(bnorm_layer *layer, const bn_layout *layout,
                         size_t channels, forward_work *w) {
  size_t stats = layout->stats;
  size_t moments = bn_op_moments_workspace(layout);
  /* 3 doubles per statistic, 3 coefficients with room for either dtype. */
  size_t doubles = 6 * stats + moments + 10 * channels;
  if (doubles / 6 < stats || doubles > SIZE_MAX / sizeof(double)) return false;
  double *p = bn_scratch_reserve(&layer->scratch, doubles * sizeof(double));
  if (!p) return false;
  w->mean = p; p += stats;
  w->variance = p; p += stats;
  w->rho = p; p += stats;
  w->center = p; p += stats;
  w->scale = p; p += stats;
  w->offset = p; p += stats;
  w->adj_scale = p; p += channels;
  w->adj_bias = p; p += channels;
  w->r = p; p += channels;
  w->d = p; p += channels;
  w->batch_mean = p; p += channels;
  w->batch_second = p; p += channels;
  w->xhat_scale = p; p += channels;
  w->shift = p; p += channels;
  w->gamma = p; p += channels;
  w->beta = p; p += channels;
  w->moments_workspace = p;
  return true;
}

static bool reserve_saved(bnorm_saved *saved, size_t stats, size_t channels) {
  size_t bytes = (2 * stats + 3 * channels) * sizeof(double) + 1;
  /* Growing loses the recorded call; never leave it looking valid. */
  if (bytes > saved->values.bytes) saved->valid = false;
  double *p = bn_scratch_reserve(&saved->values, bytes);
  if (!p) return false;
  saved->center = p; p += stats;
  saved->inv_std = p; p += stats;
  saved->xhat_scale = p; p += channels;
  saved->gamma_xhat_factor = p; p += channels;
  saved->gamma_shift_factor = p;
  return true;
}

/* fmax and fmin as C defines them (a NaN operand yields the other one),
 * inlined: as calls into libm they cost more than the rest of a channel's
 * renorm correction. */
static inline double max_of(double a, double b) {
  return isnan(a) ? b : isnan(b) ? a : a > b ? a : b;
}
static inline double min_of(double a, double b) {
  return isnan(a) ? b : isnan(b) ? a : a < b ? a : b;
}

/* renorm_correction's loop over channels, for variables of one dtype
 * (float32 ones given as mean32/stddev32, float64 ones as mean64/stddev64):
 * restrict and inlined with a constant `single`, so that it vectorizes. */
static inline void renorm_correction_loop(
    size_t n, bool single, double floor, double rmin, double rmax,
    double dmax, const double *restrict mean, const double *restrict stddev,
    const float *restrict mean32, const float *restrict stddev32,
    const double *restrict mean64, const double *restrict stddev64,
    double *restrict r, double *restrict d) {
  for (size_t i = 0; i < n; i++) {
    double sd = single ? (double)stddev32[i] : stddev64[i];
    double mu = single ? (double)mean32[i] : mean64[i];
    double sigma = sd > floor ? sd : floor;
    double ri = stddev[i] / sigma, di = mean[i] - mu;
    if (single) {
      ri = (double)(float)ri;
      di = (double)(float)((double)(float)di / sigma);
    } else {
      di = di / sigma;
    }
    r[i] = min_of(max_of(ri, rmin), rmax);
    d[i] = min_of(max_of(di, -dmax), dmax);
  }
}

/* Batch Renormalization's correction (tf_keras _renorm_correction_and_moments)
 * from the pre-update renorm averages, in the layer's dtype as TensorFlow
 * computes it. A missing clipping key is a NaN bound, which max_of and
 * min_of ignore: with no test per key and the renorm variables looked up
 * once (a renorm layer always has them), the loop over channels
 * vectorizes. */
BN_VECTORIZED static void renorm_correction(const bnorm_layer *layer,
                                            const double *mean,
                                            const double *stddev, double *r,
                                            double *d) {
  const bnorm_config *c = &layer->config;
  bnorm_dtype t = layer->dtype;
  double floor = bn_round(t, sqrt(layer->epsilon));
  const void *renorm_stddev = bn_var(layer, BN_VAR_RENORM_STDDEV);
  const void *renorm_mean = bn_var(layer, BN_VAR_RENORM_MEAN);
  double rmin = c->renorm_clipping_has_rmin
                    ? bn_round(t, c->renorm_clipping_rmin) : NAN;
  double rmax = c->renorm_clipping_has_rmax
                    ? bn_round(t, c->renorm_clipping_rmax) : NAN;
  double dmax = c->renorm_clipping_has_dmax
                    ? bn_round(t, c->renorm_clipping_dmax) : NAN;
  size_t n = layer->channels;
  if (t == BNORM_FLOAT64) {
    renorm_correction_loop(n, false, floor, rmin, rmax, dmax, mean, stddev,
                           NULL, NULL, renorm_mean, renorm_stddev, r, d);
  } else {
    renorm_correction_loop(n, true, floor, rmin, rmax, dmax, mean, stddev,
                           renorm_mean, renorm_stddev, NULL, NULL, r, d);
  }
}

/* The kernels' coefficients in the layer's dtype, per statistic
 * s = group * channels + ch: center = mean[s], scale = xhat_scale[ch] *
 * rho[s], offset = shift[ch]. Loops without a branch per element, as small
 * tensors spend a visible part of a call here. */
BN_VECTORIZED static void store_coefficients(
    bnorm_dtype t, size_t stats, size_t channels, const double *mean,
    const double *rho, const double *xhat_scale, const double *shift,
    forward_work *w) {
  for (size_t first = 0; first < stats; first += channels) {
    const double *m = mean + first, *r = rho + first;
    if (t == BNORM_FLOAT64) {
      double *center = (double *)w->center + first;
      double *scale = (double *)w->scale + first;
      double *offset = (double *)w->offset + first;
      for (size_t ch = 0; ch < channels; ch++) {
        center[ch] = m[ch];
        scale[ch] = xhat_scale[ch] * r[ch];
        offset[ch] = shift[ch];
      }
    } else {
      float *center = (float *)w->center + first;
      float *scale = (float *)w->scale + first;
      float *offset = (float *)w->offset + first;
      for (size_t ch = 0; ch < channels; ch++) {
        center[ch] = (float)m[ch];
        scale[ch] = (float)(xhat_scale[ch] * r[ch]);
        offset[ch] = (float)shift[ch];
      }
    }
  }
}

/* Inference of a float32 layer: center, scale and offset straight from the
 * variables in one loop, in the general path's arithmetic (rho = 1 /
 * sqrt(var + eps) in double, scale = gamma * rho and offset = beta rounded
 * to float), with the count of channels too far from 0 to fold their
 * center (bn_center_folds). The general path converts each variable to
 * doubles and takes a pass per step: a dense layer's inference call
 * (NC 16x4096) spent half its time in those passes. Absent gamma and beta
 * are 1 and 0; `has_gamma` and `has_beta` are constants per call site. */
static inline size_t inference_coefficients_loop(
    size_t n, double eps, bool has_gamma, bool has_beta,
    const float *restrict moving_mean, const float *restrict moving_variance,
    const float *restrict gamma, const float *restrict beta,
    double *restrict rho, float *restrict center, float *restrict scale,
    float *restrict offset) {
  size_t far = 0;
  for (size_t ch = 0; ch < n; ch++) {
    double r = 1.0 / sqrt((double)moving_variance[ch] + eps);
    double g = has_gamma ? (double)gamma[ch] : 1.0;
    float c = moving_mean[ch];
    rho[ch] = r;
    center[ch] = c;
    scale[ch] = (float)(g * r);
    offset[ch] = has_beta ? beta[ch] : 0.0f;
    far += !(fabs((double)c) * r <= 8.0);
  }
  return far;
}

/* Channels [first, first + n) of inference_coefficients_loop. */
BN_VECTORIZED static size_t inference_coefficients(const bnorm_layer *layer,
                                                   double *rho,
                                                   forward_work *w,
                                                   size_t first, size_t n) {
  double eps = layer->epsilon;
  const float *mm = bn_var(layer, BN_VAR_MOVING_MEAN),
              *mv = bn_var(layer, BN_VAR_MOVING_VARIANCE),
              *g = bn_var(layer, BN_VAR_GAMMA), *b = bn_var(layer, BN_VAR_BETA);
  float *center = (float *)w->center + first,
        *scale = (float *)w->scale + first,
        *offset = (float *)w->offset + first;
  mm += first;
  mv += first;
  rho += first;
  if (g) g += first;
  if (b) b += first;
  if (g && b)
    return inference_coefficients_loop(n, eps, true, true, mm, mv, g, b, rho,
                                       center, scale, offset);
  if (g)
    return inference_coefficients_loop(n, eps, true, false, mm, mv, g, NULL,
                                       rho, center, scale, offset);
  if (b)
    return inference_coefficients_loop(n, eps, false, true, mm, mv, NULL, b,
                                       rho, center, scale, offset);
  return inference_coefficients_loop(n, eps, false, false, mm, mv, NULL, NULL,
                                     rho, center, scale, offset);
}

/* Training of a float32 layer without ghost batches, adjustment or renorm:
 * from the batch's mean and variance (doubles), the moving averages'
 * inputs, rho, center, scale and offset and the count of centers too far
 * to fold, in one loop and in the general path's arithmetic (with a_s, a_b,
 * r and d at 1, 0, 1 and 0: xhat_scale = gamma * 1 * 1 and shift = gamma *
 * (1 * 0 + 0) + beta, which is not always beta). The general path's pass
 * per step took a dense layer's training call (NC 16x4096) a third of its
 * time. */
static inline size_t plain_training_loop(
    size_t n, double eps, bool has_gamma, bool has_beta,
    const double *restrict mean, const double *restrict variance,
    const float *restrict gamma, const float *restrict beta,
    double *restrict batch_mean, double *restrict batch_second,
    double *restrict rho, float *restrict center, float *restrict scale,
    float *restrict offset) {
  size_t far = 0;
  for (size_t ch = 0; ch < n; ch++) {
    double m = mean[ch], v = variance[ch];
    double r = 1.0 / sqrt(v + eps);
    double g = has_gamma ? (double)gamma[ch] : 1.0;
    double b = has_beta ? (double)beta[ch] : 0.0;
    float c = (float)m;
    batch_mean[ch] = c;
    batch_second[ch] = (float)v;
    rho[ch] = r;
    center[ch] = c;
    scale[ch] = (float)(g * 1.0 * 1.0 * r);
    offset[ch] = (float)(g * (1.0 * 0.0 + 0.0) + b);
    far += !(fabs((double)c) * r <= 8.0);
  }
  return far;
}

/* Channels [first, first + n) of plain_training_loop. */
BN_VECTORIZED static size_t plain_training_coefficients(
    const bnorm_layer *layer, double *rho, forward_work *w, size_t first,
    size_t n) {
  double eps = layer->epsilon;
  const float *g = bn_var(layer, BN_VAR_GAMMA), *b = bn_var(layer, BN_VAR_BETA);
  float *center = (float *)w->center + first,
        *scale = (float *)w->scale + first,
        *offset = (float *)w->offset + first;
  const double *m = w->mean + first, *v = w->variance + first;
  double *bm = w->batch_mean + first, *bs = w->batch_second + first;
  rho += first;
  if (g) g += first;
  if (b) b += first;
  if (g && b)
    return plain_training_loop(n, eps, true, true, m, v, g, b, bm, bs, rho,
                               center, scale, offset);
  if (g)
    return plain_training_loop(n, eps, true, false, m, v, g, NULL, bm, bs, rho,
                               center, scale, offset);
  if (b)
    return plain_training_loop(n, eps, false, true, m, v, NULL, b, bm, bs, rho,
                               center, scale, offset);
  return plain_training_loop(n, eps, false, false, m, v, NULL, NULL, bm, bs,
                             rho, center, scale, offset);
}

/* A float32 call (inference, or training without ghost batches, adjustment
 * or renorm) on a tensor of a few rows of many statistics, on two or more
 * threads: the rows make one chunk, which the passes would run on one
 * thread, and splitting only the rows sent every per-channel array to the
 * other thread (stop 19: 0.82x-0.86x). Instead each thread first takes a
 * block of channels: their moments (bn_op_moments_columns), coefficients,
 * the offsets with the centers folded in, and the count of centers too
 * far to fold. Then, once every block has counted (the fold is all or
 * none), each writes a block of rows (bn_op_normalize_rows): blocks of
 * columns there made each core's prefetches pull the other's lines of y,
 * and ran 2-4 times slower. Results are those of one thread, bit for
 * bit. */
typedef struct forward_blocks {
  const bnorm_layer *layer;
  const bn_layout *layout;
  const float *x;
  float *y;
  forward_work *w;
  float *folded; /* the offsets with the centers folded in */
  double *rho;
  bool training;
  size_t blocks;
  size_t columns, rows;     /* per block; columns a multiple of 16 */
  size_t far[BN_MAX_TASKS]; /* per block */
} forward_blocks;

static void column_coefficients(void *ctx, size_t block) {
  forward_blocks *j = ctx;
  size_t first,
      n = bn_block_part(block, j->columns, j->layer->channels, &first);
  forward_work *w = j->w;
  if (j->training) {
    bn_op_moments_columns(j->layout, j->x, first, n, w->mean, w->variance);
    j->far[block] = plain_training_coefficients(j->layer, j->rho, w, first, n);
  } else {
    j->far[block] = inference_coefficients(j->layer, j->rho, w, first, n);
  }
  bn_fold_center(BNORM_FLOAT32, n, (float *)w->center + first,
                 (float *)w->scale + first, (float *)w->offset + first,
                 j->folded + first);
}

static void row_output(void *ctx, size_t block) {
  forward_blocks *j = ctx;
  size_t rows = j->layout->total / j->layer->channels, first, far = 0,
         n = bn_block_part(block, j->rows, rows, &first);
  for (size_t b = 0; b < j->blocks; b++) far += j->far[b];
  const forward_work *w = j->w;
  if (n == 0) return;
  if (far == 0)
    bn_op_normalize_rows(j->layout, j->x, j->y, first, n, NULL, w->scale,
                         j->folded);
  else
    bn_op_normalize_rows(j->layout, j->x, j->y, first, n, w->center, w->scale,
                         w->offset);
}

/* Runs a call's coefficients and output in blocks where that pays (see
 * forward_blocks); returns the count of centers too far to fold, or SIZE_MAX
 * where it did nothing. */
static size_t forward_in_blocks(const bnorm_layer *layer,
                                const bn_layout *layout, const float *x,
                                float *y, forward_work *w, double *rho,
                                bool training) {
  size_t channels = layer->channels;
  size_t blocks = bn_blocks_for(layout, channels);
  if (blocks < 2 || !bn_op_columns_fit(layout)) return SIZE_MAX;
  size_t rows = layout->total / channels;
  /* The folded offsets go after the offsets, in the room their double
   * array leaves a float one. */
  float *folded = (float *)w->offset + channels;
  forward_blocks j = {
      .layer = layer,
      .layout = layout,
      .x = x,
      .y = y,
      .w = w,
      .folded = folded,
      .rho = rho,
      .training = training,
      .blocks = blocks,
      .columns = ((channels + blocks - 1) / blocks + 15) / 16 * 16,
      .rows = (rows + blocks - 1) / blocks};
  bn_parallel_phases(blocks, column_coefficients, BN_IN_ORDER, row_output,
                     BN_IN_ORDER, &j);
  size_t far = 0;
  for (size_t b = 0; b < blocks; b++) far += j.far[b];
  return far;
}

/* Where a call has neither an adjustment nor renorm ("plain"), a_s, a_b,
 * r and d are the constants 1, 0, 1 and 0 instead of arrays: the same
 * arithmetic, without filling and reading four arrays per channel (a dense
 * layer of 4096 features at batch 16 spends most of a call on per-channel
 * work). Callers pass `plain` as a constant. */

/* xhat's multiplier and the constant term per channel: gamma * a_s * r and
 * gamma * (a_s * d + a_b) + beta. Restrict parameters, so that it
 * vectorizes (as do the loops below). */
static inline void scale_and_shift(size_t n, bool plain,
                                   const double *restrict gamma,
                                   const double *restrict beta,
                                   const double *restrict adj_scale,
                                   const double *restrict adj_bias,
                                   const double *restrict r,
                                   const double *restrict d,
                                   double *restrict xhat_scale,
                                   double *restrict shift) {
  for (size_t ch = 0; ch < n; ch++) {
    double as = plain ? 1.0 : adj_scale[ch], ab = plain ? 0.0 : adj_bias[ch];
    double rc = plain ? 1.0 : r[ch], dc = plain ? 0.0 : d[ch];
    xhat_scale[ch] = gamma[ch] * as * rc;
    shift[ch] = gamma[ch] * (as * dc + ab) + beta[ch];
  }
}

/* What backward needs of the call per channel, in the dtype: a_s * r,
 * a_s * d + a_b, and gamma times the first. */
static inline void saved_factors(bnorm_dtype t, size_t n, bool plain,
                                 const double *restrict gamma,
                                 const double *restrict adj_scale,
                                 const double *restrict adj_bias,
                                 const double *restrict r,
                                 const double *restrict d,
                                 double *restrict xhat_factor,
                                 double *restrict shift_factor,
                                 double *restrict xhat_scale) {
  for (size_t ch = 0; ch < n; ch++) {
    double as = plain ? 1.0 : adj_scale[ch], ab = plain ? 0.0 : adj_bias[ch];
    double rc = plain ? 1.0 : r[ch], dc = plain ? 0.0 : d[ch];
    xhat_factor[ch] = bn_round(t, as * rc);
    shift_factor[ch] = bn_round(t, bn_round(t, as * dc) + ab);
    xhat_scale[ch] = bn_round(t, gamma[ch] * xhat_factor[ch]);
  }
}

static bnorm_status check_forward_args(const bnorm_layer *layer,
                                       const bnorm_forward_args *a) {
  if (!layer || !a)
    return bn_fail(BNORM_ERR_NULL_ARGUMENT,
                   "bnorm_layer_forward: layer and args must not be NULL");
  if (!a->x || !a->y || !a->shape)
    return bn_fail(BNORM_ERR_NULL_ARGUMENT,
                   "bnorm_layer_forward: args.x, args.y and args.shape must "
                   "not be NULL");
  if (a->rank < 1 || a->rank > BNORM_MAX_RANK)
    return bn_fail(BNORM_ERR_SHAPE,
                   "bnorm_layer_forward: rank %d is outside 1..%d", a->rank,
                   BNORM_MAX_RANK);
  return BNORM_OK;
}

static bnorm_status forward_built(bnorm_layer *layer,
                                   const bnorm_forward_args *a);

bnorm_status bnorm_layer_forward(bnorm_layer *layer,
                                 const bnorm_forward_args *args) {
  bnorm_status status = check_forward_args(layer, args);
  if (status != BNORM_OK) return status;
  if (layer->built) {
    bn_share_trial trial;
    bn_share_begin(&trial, layer, args->training ? 0 : 1,
                   bn_share_elements(args->shape, args->rank));
    status = forward_built(layer, args);
    bn_share_end(&trial, status == BNORM_OK);
    return status;
  }
  /* Keras builds a layer on its first call. A call that then fails must not
   * leave it built. */
  bnorm_config before = layer->config;
  status = bnorm_layer_build(layer, args->shape, args->rank);
  if (status != BNORM_OK) return status;
  status = forward_built(layer, args);
  if (status != BNORM_OK) {
    char message[1024];
    strncpy(message, bnorm_last_error(), sizeof message - 1);
    message[sizeof message - 1] = '\0';
    free(layer->storage);
    layer->storage = NULL;
    layer->built = false;
    layer->variable_count = 0;
    memset(layer->by_kind, 0, sizeof layer->by_kind);
    layer->config = before;
    bn_fail(status, "%s", message);
  }
  return status;
}

BN_VECTORIZED static bnorm_status forward_built(bnorm_layer *layer,
                                                const bnorm_forward_args *a) {
  const bnorm_config *c = &layer->config;
  size_t count;
  bnorm_status status =
      check_call_shape(layer, a->shape, a->rank, "bnorm_layer_forward", &count);
  if (status != BNORM_OK) return status;

  /* Keras 2 runs a frozen layer in inference mode; the TF1 layer keeps the
   * requested mode but drops the frozen layer's updates. */
  bool keras = c->behavior == BNORM_BEHAVIOR_KERAS;
  bool training = a->training && !(keras && !c->trainable);
  bool record_updates = training && c->trainable && count > 0;

  size_t groups;
  status = ghost_groups(layer, a->shape, training, &groups);
  if (status != BNORM_OK) return status;
  bn_layout layout;
  bn_layer_layout(layer, a->shape, groups, &layout);
  size_t channels = layer->channels, stats = layout.stats;

  /* Everything that can fail comes before any state changes: the workspace,
   * the adjustment callback, then the caller's saved and pending objects. */
  forward_work w;
  if (!reserve_work(layer, &layout, channels, &w))
    return bn_fail(BNORM_ERR_OUT_OF_MEMORY,
                   "bnorm_layer_forward: out of memory for the workspace");
  bnorm_dtype t = layer->dtype;
  bool plain = !(training && (c->adjustment || c->renorm));
  for (size_t ch = 0; !plain && ch < channels; ch++) {
    w.adj_scale[ch] = 1.0;
    w.adj_bias[ch] = 0.0;
    w.r[ch] = 1.0;
    w.d[ch] = 0.0;
  }
  if (training && c->adjustment) {
    if (c->adjustment(a->shape, a->rank, w.adj_scale, w.adj_bias, channels,
                      c->adjustment_user_data) != 0)
      return bn_fail(BNORM_ERR_CALLBACK,
                     "bnorm_layer_forward: the adjustment callback of layer "
                     "'%s' reported failure",
                     layer->name);
    for (size_t ch = 0; ch < channels; ch++) {
      w.adj_scale[ch] = bn_round(t, w.adj_scale[ch]);
      w.adj_bias[ch] = bn_round(t, w.adj_bias[ch]);
    }
  }
  if (a->saved && !reserve_saved(a->saved, stats, channels))
    return bn_fail(BNORM_ERR_OUT_OF_MEMORY,
                   "bnorm_layer_forward: out of memory for args.saved");
  bn_update local_update = {0}, *update = NULL;
  if (record_updates) {
    if (a->pending) {
      update = bn_updates_reserve(a->pending, channels);
      if (!update)
        return bn_fail(BNORM_ERR_OUT_OF_MEMORY,
                       "bnorm_layer_forward: out of memory for the pending "
                       "update");
    } else {
      update = &local_update;
      update->channels = channels;
      update->batch_mean = w.batch_mean;
      update->batch_second = w.batch_second;
    }
  }

  double eps = layer->epsilon;
  double *rho = a->saved ? a->saved->inv_std : w.rho;
  /* Counted with the coefficients where they come in one loop; SIZE_MAX:
   * not yet. */
  size_t far_centers = SIZE_MAX;
  /* Whether the output is written already (forward_in_blocks). */
  bool written = false;
  if (t == BNORM_FLOAT32 && (!training || (plain && !groups))) {
    far_centers = forward_in_blocks(layer, &layout, a->x, a->y, &w, rho,
                                    training);
    written = far_centers != SIZE_MAX;
  }
  if (written) {
    /* coefficients and output done */
  } else if (training && plain && !groups && t == BNORM_FLOAT32) {
    bn_op_moments(&layout, a->x, w.mean, w.variance, w.moments_workspace);
    far_centers = plain_training_coefficients(layer, rho, &w, 0, channels);
  } else if (training) {
    bn_op_moments_of(t, &layout, a->x, w.mean, w.variance, w.moments_workspace);
    /* Ghost batches feed the moving averages with the mean over ghost
     * batches of their means and biased variances. */
    size_t ghost = groups ? groups : 1;
    if (ghost == 1) {
      for (size_t ch = 0; ch < channels; ch++) {
        w.batch_mean[ch] = bn_round(t, w.mean[ch]);
        w.batch_second[ch] = bn_round(t, w.variance[ch]);
      }
    } else {
      memcpy(w.batch_mean, w.mean, channels * sizeof *w.mean);
      memcpy(w.batch_second, w.variance, channels * sizeof *w.variance);
      for (size_t g = 1; g < ghost; g++) /* in group order, channels inner */
        for (size_t ch = 0; ch < channels; ch++) {
          w.batch_mean[ch] += w.mean[g * channels + ch];
          w.batch_second[ch] += w.variance[g * channels + ch];
        }
      for (size_t ch = 0; ch < channels; ch++) {
        w.batch_mean[ch] = bn_round(t, w.batch_mean[ch] / (double)ghost);
        w.batch_second[ch] = bn_round(t, w.batch_second[ch] / (double)ghost);
      }
    }
    if (c->renorm) {
      for (size_t ch = 0; ch < channels; ch++)
        w.batch_second[ch] =
            bn_round(t, sqrt(bn_round(t, w.batch_second[ch] + eps)));
      renorm_correction(layer, w.batch_mean, w.batch_second, w.r, w.d);
    }
    for (size_t s = 0; s < stats; s++) rho[s] = 1.0 / sqrt(w.variance[s] + eps);
    bn_var_doubles(layer, BN_VAR_GAMMA, 1.0, w.gamma);
    bn_var_doubles(layer, BN_VAR_BETA, 0.0, w.beta);
    if (plain)
      scale_and_shift(channels, true, w.gamma, w.beta, NULL, NULL, NULL, NULL,
                      w.xhat_scale, w.shift);
    else
      scale_and_shift(channels, false, w.gamma, w.beta, w.adj_scale,
                      w.adj_bias, w.r, w.d, w.xhat_scale, w.shift);
  } else if (t == BNORM_FLOAT32) {
    /* Inference has no ghost batches: a statistic per channel. */
    far_centers = inference_coefficients(layer, rho, &w, 0, channels);
  } else {
    /* The moving statistics take the batch statistics' place. */
    bn_var_doubles(layer, BN_VAR_MOVING_MEAN, 0.0, w.mean);
    bn_var_doubles(layer, BN_VAR_MOVING_VARIANCE, 1.0, w.variance);
    for (size_t ch = 0; ch < channels; ch++)
      rho[ch] = 1.0 / sqrt(w.variance[ch] + eps);
    bn_var_doubles(layer, BN_VAR_GAMMA, 1.0, w.gamma);
    bn_var_doubles(layer, BN_VAR_BETA, 0.0, w.beta);
  }
  /* Inference scales xhat by gamma and shifts it by beta themselves. */
  if (far_centers == SIZE_MAX)
    store_coefficients(t, stats, channels, w.mean, rho,
                       training ? w.xhat_scale : w.gamma,
                       training ? w.shift : w.beta, &w);
  else if (a->saved) /* the one-loop paths: saved_factors reads gamma */
    bn_var_doubles(layer, BN_VAR_GAMMA, 1.0, w.gamma);

  if (a->saved) {
    bnorm_saved *sv = a->saved;
    sv->layer_id = layer->id;
    sv->dtype = t;
    sv->training = training;
    sv->rank = a->rank;
    memcpy(sv->shape, a->shape, (size_t)a->rank * sizeof *a->shape);
    sv->groups = groups;
    sv->stats = stats;
    sv->channels = channels;
    memcpy(sv->center, w.center, stats * bn_dtype_size(t));
    if (plain)
      saved_factors(t, channels, true, w.gamma, NULL, NULL, NULL, NULL,
                    sv->gamma_xhat_factor, sv->gamma_shift_factor,
                    sv->xhat_scale);
    else
      saved_factors(t, channels, false, w.gamma, w.adj_scale, w.adj_bias,
                    w.r, w.d, sv->gamma_xhat_factor, sv->gamma_shift_factor,
                    sv->xhat_scale);
    sv->valid = true;
  }

  if (!written) {
    const void *center = w.center; /* saved above, unfolded */
    if (far_centers == SIZE_MAX ? bn_center_folds(t, stats, w.center, rho)
                                : far_centers == 0) {
      bn_fold_center(t, stats, w.center, w.scale, w.offset, w.offset);
      center = NULL;
    }
    bn_op_normalize_of(t, &layout, a->x, a->y, center, w.scale, w.offset);
  }

  if (update) {
    update->layer_id = layer->id;
    update->bessel = 1.0;
    if (layer->fused) { /* float32 only */
      size_t n = layout.reduce_count;
      update->bessel = (float)n / (float)(n > 1 ? n - 1 : 1);
    }
    if (a->pending) {
      memcpy(update->batch_mean, w.batch_mean, channels * sizeof(double));
      memcpy(update->batch_second, w.batch_second, channels * sizeof(double));
      a->pending->count++;
    } else {
      bn_update_apply(layer, update);
    }
  }
  bn_clear_error();
  return BNORM_OK;
}
