/* Objects that carry state between a forward call and later calls: pending
 * moving-average updates and what backward needs. Shared by the forward,
 * backward and update code of the layer. */
#ifndef BNORM_LAYER_STATE_H
#define BNORM_LAYER_STATE_H

#include <math.h>

#include "internal.h"
#include "threads.h"
#include "ops.h"

/* One forward call's moving-average update, applied against the variables'
 * values at application time (TensorFlow's assign_sub semantics). */
typedef struct bn_update {
  uint64_t layer_id;
  size_t channels;
  size_t capacity;    /* doubles allocated per array */
  /* Values of the layer's dtype, held in doubles. */
  double *batch_mean; /* the batch (ghost-averaged) mean */
  /* Biased batch variance; with renorm, the batch stddev sqrt(var + eps). */
  double *batch_second;
  double bessel;      /* fused: N / max(N - 1, 1) in float32; else 1 */
} bn_update;

struct bnorm_updates {
  bn_update *items;
  size_t count, capacity;
};

struct bnorm_saved {
  uint64_t layer_id;
  bool valid;
  bool training;
  int rank;
  int64_t shape[BNORM_MAX_RANK];
  size_t groups;     /* ghost batches in the layout, 0 = none */
  size_t stats, channels;
  bnorm_dtype dtype;
  /* Per statistic: the center used (in the dtype, for the kernels) and
   * 1/sqrt(var + eps). Per channel: the total multiplier of xhat
   * (gamma * adj_scale * r) and dgamma's affine pieces:
   * dgamma = xhat_factor * sum(dy*xhat) + shift_factor * sum(dy). */
  void *center;
  double *inv_std;
  double *xhat_scale, *gamma_xhat_factor, *gamma_shift_factor;
  bn_scratch values;
  bn_scratch work;   /* backward workspace */
};

/* Reserves room for one more update of `channels`; returns it (not yet
 * counted) or NULL when out of memory. */
bn_update *bn_updates_reserve(bnorm_updates *updates, size_t channels);

/* Applies one update to the layer's variables. */
void bn_update_apply(bnorm_layer *layer, const bn_update *update);

/* The operators of ops.h for a dtype; arrays of that dtype are void *. */
static inline void bn_op_moments_of(bnorm_dtype dtype, const bn_layout *layout,
                                    const void *x, double *mean,
                                    double *variance, double *workspace) {
  if (dtype == BNORM_FLOAT64)
    bn_op_moments_f64(layout, x, mean, variance, workspace);
  else
    bn_op_moments(layout, x, mean, variance, workspace);
}

static inline void bn_op_normalize_of(bnorm_dtype dtype,
                                      const bn_layout *layout, const void *x,
                                      void *y, const void *center,
                                      const void *scale, const void *offset) {
  if (dtype == BNORM_FLOAT64)
    bn_op_normalize_f64(layout, x, y, center, scale, offset);
  else
    bn_op_normalize(layout, x, y, center, scale, offset);
}

static inline void bn_op_grad_sums_of(bnorm_dtype dtype,
                                      const bn_layout *layout, const void *x,
                                      const void *dy, const void *center,
                                      double *sum_dy, double *sum_dy_xc,
                                      double *workspace) {
  if (dtype == BNORM_FLOAT64)
    bn_op_grad_sums_f64(layout, x, dy, center, sum_dy, sum_dy_xc, workspace);
  else
    bn_op_grad_sums(layout, x, dy, center, sum_dy, sum_dy_xc, workspace);
}

static inline void bn_op_grad_input_of(bnorm_dtype dtype,
                                       const bn_layout *layout, const void *x,
                                       const void *dy, void *dx,
                                       const void *center, const void *a,
                                       const void *b, const void *c) {
  if (dtype == BNORM_FLOAT64)
    bn_op_grad_input_f64(layout, x, dy, dx, center, a, b, c);
  else
    bn_op_grad_input(layout, x, dy, dx, center, a, b, c);
}

static inline void bn_op_grad_of(bnorm_dtype dtype, const bn_layout *layout,
                                 const void *x, const void *dy, void *dx,
                                 const void *center, bool center_folded,
                                 bn_dx_coefficients_fn coefficients,
                                 const void *ctx, double *sum_dy,
                                 double *sum_dy_xc, double *workspace) {
  if (dtype == BNORM_FLOAT64)
    bn_op_grad_f64(layout, x, dy, dx, center, center_folded, coefficients, ctx,
                   sum_dy, sum_dy_xc, workspace);
  else
    bn_op_grad(layout, x, dy, dx, center, center_folded, coefficients, ctx,
               sum_dy, sum_dy_xc, workspace);
}

/* Whether the elementwise passes may fold each statistic's center into its
 * constant term: (x - center) * k + t becomes x * k + (t - center * k), one
 * coefficient less to stream per vector, which wide rows feel. The folded
 * constant's rounding error, u * |center * k|, must stay small beside the
 * term's spread |k| * sigma: it may when every |center| <= 8 sigma (a
 * statistic's rho = 1 / sigma), which costs at most 8 roundings of the
 * output's scale. Inputs with larger means (x = 1e4 + N(0, 1)) keep the
 * exact form, as do NaN statistics. */
static inline bool bn_center_folds(bnorm_dtype dtype, size_t stats,
                                   const void *center, const double *rho) {
  /* A count without early exit, one loop per dtype: both vectorize. */
  size_t far = 0;
  if (dtype == BNORM_FLOAT64) {
    const double *c = center;
    for (size_t s = 0; s < stats; s++) far += !(fabs(c[s]) * rho[s] <= 8.0);
  } else {
    const float *c = center;
    for (size_t s = 0; s < stats; s++)
      far += !(fabs((double)c[s]) * rho[s] <= 8.0);
  }
  return far == 0;
}

/* The folded constants t[s] - center[s] * k[s], arrays of the dtype, into
 * `folded` (which may be t). */
static inline void bn_fold_center(bnorm_dtype dtype, size_t stats,
                                  const void *center, const void *k,
                                  const void *t, void *folded) {
  if (dtype == BNORM_FLOAT64) {
    const double *c = center, *kd = k, *td = t;
    double *out = folded;
    for (size_t s = 0; s < stats; s++) out[s] = td[s] - c[s] * kd[s];
  } else {
    const float *c = center, *kf = k, *tf = t;
    float *out = folded;
    for (size_t s = 0; s < stats; s++)
      out[s] = (float)((double)tf[s] - (double)c[s] * kf[s]);
  }
}

/* Calls on a few rows of many channels go in blocks on two threads or
 * more (forward_in_blocks, backward_in_blocks): blocks of at least
 * BLOCK_COLUMNS_MIN channels, tensors of at least BLOCKS_MIN_ELEMENTS.
 * Smaller ones lost more to the meeting and to the per-channel arrays
 * that cross between the cores than they gained: NC 16x1024 trained 0.80x
 * as fast in blocks, NC 32x1024 1.05x-1.08x. */
enum { BLOCK_COLUMNS_MIN = 512, BLOCKS_MIN_ELEMENTS = 1 << 15 };

/* How many blocks a call of `channels` channels takes: 0 or 1 where it
 * does not go in blocks. */
static inline size_t bn_blocks_for(const bn_layout *layout, size_t channels) {
  int threads = bn_thread_count();
  if (threads < 2 || channels < 2 * BLOCK_COLUMNS_MIN ||
      layout->total < BLOCKS_MIN_ELEMENTS)
    return 0;
  size_t blocks = channels / BLOCK_COLUMNS_MIN,
         rows = layout->total / channels;
  if (blocks > (size_t)threads) blocks = (size_t)threads;
  if (blocks > rows) blocks = rows;
  if (blocks > BN_MAX_TASKS) blocks = BN_MAX_TASKS;
  return blocks;
}

/* Block `block` of `per` items out of `total`: its first item, and its
 * count (the last block is shorter, or empty). */
static inline size_t bn_block_part(size_t block, size_t per, size_t total,
                                   size_t *first) {
  *first = block * per < total ? block * per : total;
  return total - *first < per ? total - *first : per;
}

/* Layout of a call's tensor, with ghost batches when `groups` > 0. */
void bn_layer_layout(const bnorm_layer *layer, const int64_t *shape,
                     size_t groups, bn_layout *layout);

#endif
