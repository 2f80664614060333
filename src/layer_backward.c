/* Gradients of a recorded forward call (spec §11). With s = gamma * a_s * r
 * the constant multiplier of xhat and rho = 1/sqrt(var + eps) per statistic:
 *   training:  dx = s*rho*(dy - mean(dy) - xhat*mean(dy*xhat)) per group,
 *   inference: dx = s*rho*dy with the moving statistics,
 *   dgamma = a_s*r*sum(dy*xhat) + (a_s*d + a_b)*sum(dy),  dbeta = sum(dy). */
#include "layer_state.h"
#include "share_choice.h"

#include <string.h>

static bnorm_status check_backward_args(const bnorm_layer *layer,
                                        const bnorm_backward_args *a) {
  const char *what = "bnorm_layer_backward";
  if (!layer || !a)
    return bn_fail(BNORM_ERR_NULL_ARGUMENT, "%s: layer and args must not be NULL",
                   what);
  if (!a->saved || !a->x || !a->dy || !a->shape)
    return bn_fail(BNORM_ERR_NULL_ARGUMENT,
                   "%s: args.saved, args.x, args.dy and args.shape must not be "
                   "NULL",
                   what);
  const bnorm_saved *sv = a->saved;
  if (!sv->valid || sv->layer_id != layer->id || sv->dtype != layer->dtype)
    return bn_fail(BNORM_ERR_INVALID_ARGUMENT,
                   "%s: args.saved was not filled by a forward call of layer "
                   "'%s'",
                   what, layer->name);
  if (a->rank != sv->rank ||
      memcmp(a->shape, sv->shape, (size_t)a->rank * sizeof *a->shape) != 0)
    return bn_fail(BNORM_ERR_SHAPE,
                   "%s: the shape differs from the recorded forward call's",
                   what);
  if (a->dgamma && !bn_var(layer, BN_VAR_GAMMA))
    return bn_fail(BNORM_ERR_INVALID_ARGUMENT,
                   "%s: dgamma was given but layer '%s' has no gamma "
                   "(scale=false)",
                   what, layer->name);
  if (a->dbeta && !bn_var(layer, BN_VAR_BETA))
    return bn_fail(BNORM_ERR_INVALID_ARGUMENT,
                   "%s: dbeta was given but layer '%s' has no beta "
                   "(center=false)",
                   what, layer->name);
  return BNORM_OK;
}

/* One group's channels of store_dx_coefficients, with x / n as
 * x * inv_n where `by_inverse` and the center folded into c where `fold`
 * (constants at each call), as bn_fold_center folds it. */
static inline void dx_coefficients_group(
    size_t channels, bool f64, bool by_inverse, bool fold, double n,
    double inv_n, const double *restrict xhat_scale,
    const double *restrict rho, const double *restrict s1,
    const double *restrict s2, const void *restrict center, void *ca,
    void *cb, void *cc) {
  for (size_t ch = 0; ch < channels; ch++) {
    double k = xhat_scale[ch] * rho[ch];
    double bn = -k * rho[ch] * rho[ch] * s2[ch], cn = -k * s1[ch];
    double bv = by_inverse ? bn * inv_n : bn / n;
    double cv = by_inverse ? cn * inv_n : cn / n;
    if (f64) {
      if (fold) cv = cv - ((const double *)center)[ch] * bv;
      ((double *)ca)[ch] = k;
      ((double *)cb)[ch] = bv;
      ((double *)cc)[ch] = cv;
    } else {
      float bf = (float)bv, cf = (float)cv;
      if (fold)
        cf = (float)((double)cf - (double)((const float *)center)[ch] * bf);
      ((float *)ca)[ch] = (float)k;
      ((float *)cb)[ch] = bf;
      ((float *)cc)[ch] = cf;
    }
  }
}

/* dx = a*dy + b*(x - center) + c per statistic s = group * channels + ch,
 * in the dtype: a = k, b = -k*rho^2*sum(dy*(x-center))/n, c = -k*sum(dy)/n
 * with k = xhat_scale[ch]*rho (b and c only in training), and the center
 * folded into c where `fold` (bn_center_folds). One loop per dtype and
 * case, so that each vectorizes (the fold in a loop of its own, unvectorized,
 * took a third of the coefficients' time); x / n as x * (1 / n) where that
 * is exact (bn_power_of_two). */
BN_VECTORIZED static void store_dx_coefficients(
    const bnorm_saved *sv, size_t reduce_count, bool fold,
    const double *sum_dy, const double *sum_dy_xc, void *ca, void *cb,
    void *cc) {
  double n = (double)reduce_count, inv_n = 1.0 / n;
  size_t channels = sv->channels;
  bool f64 = sv->dtype == BNORM_FLOAT64;
  bool by_inverse = bn_power_of_two(n);
  size_t size = f64 ? sizeof(double) : sizeof(float);
  for (size_t first = 0; first < sv->stats; first += channels) {
    const double *rho = sv->inv_std + first, *s1 = sum_dy + first,
                 *s2 = sum_dy_xc + first;
    const void *k = (const char *)sv->center + first * size;
    void *a = (char *)ca + first * size, *b = (char *)cb + first * size,
         *c = (char *)cc + first * size;
#define BN_DX_GROUP(f64_, inverse_, fold_)                                    \
  dx_coefficients_group(channels, f64_, inverse_, fold_, n, inv_n,            \
                        sv->xhat_scale, rho, s1, s2, k, a, b, c)
    if (f64 && by_inverse)
      fold ? BN_DX_GROUP(true, true, true) : BN_DX_GROUP(true, true, false);
    else if (f64)
      fold ? BN_DX_GROUP(true, false, true) : BN_DX_GROUP(true, false, false);
    else if (by_inverse)
      fold ? BN_DX_GROUP(false, true, true) : BN_DX_GROUP(false, true, false);
    else
      fold ? BN_DX_GROUP(false, false, true)
           : BN_DX_GROUP(false, false, false);
#undef BN_DX_GROUP
  }
}

/* dgamma and dbeta without ghost batches (one statistic per channel), as
 * the general loop in backward_checked computes them (its sums start from
 * 0.0, which turns a -0.0 into +0.0): one loop per dtype and output, so that
 * each vectorizes. The general loop, a test per element, took a dense
 * layer's backward call (NC 16x4096) about a tenth of its time. */
static inline void param_grads_loop(size_t n, bool f64,
                                    const double *restrict sum_dy,
                                    const double *restrict sum_dy_xc,
                                    const double *restrict inv_std,
                                    const double *restrict xhat_factor,
                                    const double *restrict shift_factor,
                                    void *restrict dgamma,
                                    void *restrict dbeta) {
  for (size_t ch = 0; ch < n; ch++) {
    double total_dy = 0.0 + sum_dy[ch];
    double total_dy_xhat = 0.0 + sum_dy_xc[ch] * inv_std[ch];
    double g = xhat_factor[ch] * total_dy_xhat + shift_factor[ch] * total_dy;
    if (dgamma && f64) ((double *)dgamma)[ch] = g;
    if (dgamma && !f64) ((float *)dgamma)[ch] = (float)g;
    if (dbeta && f64) ((double *)dbeta)[ch] = total_dy;
    if (dbeta && !f64) ((float *)dbeta)[ch] = (float)total_dy;
  }
}

BN_VECTORIZED static void store_param_grads(
    bnorm_dtype t, size_t n, const double *sum_dy, const double *sum_dy_xc,
    const double *inv_std, const double *xhat_factor,
    const double *shift_factor, void *dgamma, void *dbeta) {
  const double *s1 = sum_dy, *s2 = sum_dy_xc, *rho = inv_std,
               *gx = xhat_factor, *gs = shift_factor;
  bool f64 = t == BNORM_FLOAT64;
  if (f64 && dgamma && dbeta)
    param_grads_loop(n, true, s1, s2, rho, gx, gs, dgamma, dbeta);
  else if (f64 && dgamma)
    param_grads_loop(n, true, s1, s2, rho, gx, gs, dgamma, NULL);
  else if (f64)
    param_grads_loop(n, true, s1, s2, rho, gx, gs, NULL, dbeta);
  else if (dgamma && dbeta)
    param_grads_loop(n, false, s1, s2, rho, gx, gs, dgamma, dbeta);
  else if (dgamma)
    param_grads_loop(n, false, s1, s2, rho, gx, gs, dgamma, NULL);
  else
    param_grads_loop(n, false, s1, s2, rho, gx, gs, NULL, dbeta);
}

/* The training dx coefficients (store_dx_coefficients), with the center
 * folded into c where it may be (bn_center_folds): bn_op_grad's callback,
 * which may run on several threads at once. */
typedef struct dx_coefficients_args {
  const bnorm_saved *saved;
  size_t reduce_count;
  bool fold_center;
} dx_coefficients_args;

static void training_dx_coefficients(const void *ctx, const double *sum_dy,
                                     const double *sum_dy_xc, void *a, void *b,
                                     void *c) {
  const dx_coefficients_args *k = ctx;
  store_dx_coefficients(k->saved, k->reduce_count, k->fold_center, sum_dy,
                        sum_dy_xc, a, b, c);
}

/* A float32 training backward without ghost batches on a few rows of
 * many channels, on two threads or more, in blocks as forward_in_blocks
 * goes: each thread takes a block of channels (their sums, then their dx
 * coefficients), then a block of rows of dx. Results are those of one
 * thread, bit for bit. */
typedef struct backward_blocks {
  const bnorm_saved *saved;
  const bn_layout *layout;
  const float *x, *dy;
  float *dx;
  double *sum_dy, *sum_dy_xc;
  float *a, *b, *c;
  bool fold_center;
  size_t columns, rows; /* per block */
} backward_blocks;

static void block_sums(void *ctx, size_t block) {
  const backward_blocks *j = ctx;
  const bnorm_saved *sv = j->saved;
  size_t first, n = bn_block_part(block, j->columns, sv->channels, &first);
  bn_op_grad_sums_columns(j->layout, j->x, j->dy, sv->center, first, n,
                          j->sum_dy, j->sum_dy_xc);
  /* store_dx_coefficients' arithmetic, center folded in, on the block. */
  double count = (double)j->layout->reduce_count, inv_n = 1.0 / count;
  bool by_inverse = bn_power_of_two(count);
  const float *center = (const float *)sv->center + first;
#define BN_DX_BLOCK(fold_)                                                    \
  dx_coefficients_group(n, false, by_inverse, fold_, count, inv_n,            \
                        sv->xhat_scale + first, sv->inv_std + first,          \
                        j->sum_dy + first, j->sum_dy_xc + first, center,      \
                        j->a + first, j->b + first, j->c + first)
  if (j->fold_center)
    BN_DX_BLOCK(true);
  else
    BN_DX_BLOCK(false);
#undef BN_DX_BLOCK
}

static void block_dx(void *ctx, size_t block) {
  const backward_blocks *j = ctx;
  size_t rows = j->layout->total / j->saved->channels;
  size_t first, n = bn_block_part(block, j->rows, rows, &first);
  if (n == 0) return;
  const float *center = j->fold_center ? NULL : j->saved->center;
  bn_op_grad_input_rows(j->layout, j->x, j->dy, j->dx, first, n, center,
                        j->a, j->b, j->c);
}

/* Runs the backward's sums and dx in blocks where that pays; false where
 * it did nothing. `coefficients` has room for three float arrays. */
static bool backward_in_blocks(const bnorm_saved *sv, const bn_layout *layout,
                               const bnorm_backward_args *a, bool fold_center,
                               double *sum_dy, double *sum_dy_xc,
                               void *coefficients) {
  size_t channels = sv->channels;
  size_t blocks = bn_blocks_for(layout, channels);
  if (blocks < 2 || !bn_op_grad_columns_fit(layout)) return false;
  float *ca = coefficients;
  backward_blocks j = {
      .saved = sv,
      .layout = layout,
      .x = a->x,
      .dy = a->dy,
      .dx = a->dx,
      .sum_dy = sum_dy,
      .sum_dy_xc = sum_dy_xc,
      .a = ca,
      .b = ca + channels,
      .c = ca + 2 * channels,
      .fold_center = fold_center,
      .columns = ((channels + blocks - 1) / blocks + 15) / 16 * 16,
      .rows = (layout->total / channels + blocks - 1) / blocks};
  bn_parallel_phases(blocks, block_sums, BN_IN_ORDER, block_dx, BN_IN_ORDER,
                     &j);
  return true;
}

static bnorm_status backward_checked(const bnorm_layer *layer,
                                     const bnorm_backward_args *a);

bnorm_status bnorm_layer_backward(const bnorm_layer *layer,
                                  const bnorm_backward_args *a) {
  bnorm_status status = check_backward_args(layer, a);
  if (status != BNORM_OK) return status;
  bn_share_trial trial;
  bn_share_begin(&trial, layer, 2, bn_share_elements(a->shape, a->rank));
  status = backward_checked(layer, a);
  bn_share_end(&trial, status == BNORM_OK);
  return status;
}

BN_VECTORIZED static bnorm_status backward_checked(
    const bnorm_layer *layer, const bnorm_backward_args *a) {
  bnorm_saved *sv = a->saved;
  size_t stats = sv->stats, channels = sv->channels;
  bn_layout layout;
  bn_layer_layout(layer, sv->shape, sv->groups, &layout);

  bnorm_dtype t = layer->dtype;
  /* Doubles: the sums, then bn_op_grad's workspace, which also holds the
   * coefficients (and, being larger, serves the passes called alone). */
  size_t bytes = (2 * stats + bn_op_grad_workspace(&layout)) * sizeof(double);
  double *p = bn_scratch_reserve(&sv->work, bytes);
  if (!p)
    return bn_fail(BNORM_ERR_OUT_OF_MEMORY,
                   "bnorm_layer_backward: out of memory for the workspace");
  double *sum_dy = p, *sum_dy_xc = sum_dy + stats;
  double *workspace = sum_dy_xc + stats;
  /* Where the passes called alone keep their coefficients. */
  double *coefficients = workspace + bn_op_grad_sums_workspace(&layout);

  bool training_dx = a->dx && sv->training;
  bool fold = training_dx && bn_center_folds(t, stats, sv->center, sv->inv_std);
  bool in_blocks =
      training_dx && t == BNORM_FLOAT32 && sv->groups <= 1 &&
      backward_in_blocks(sv, &layout, a, fold, sum_dy, sum_dy_xc,
                         coefficients);
  if (in_blocks) {
    /* sums and dx done */
  } else if (training_dx) {
    /* Read by the other threads where they compute their own dx
     * coefficients: kept, as the operator keeps its job (bn_keep_lines). */
    static _Thread_local _Alignas(64) dx_coefficients_args kept;
    dx_coefficients_args k;
    memset(&k, 0, sizeof k);
    k.saved = sv;
    k.reduce_count = layout.reduce_count;
    k.fold_center = fold;
    bn_keep_lines(&kept, &k, sizeof k);
    bn_op_grad_of(t, &layout, a->x, a->dy, a->dx, sv->center, fold,
                  training_dx_coefficients, &kept, sum_dy, sum_dy_xc,
                  workspace);
  } else {
    bn_op_grad_sums_of(t, &layout, a->x, a->dy, sv->center, sum_dy, sum_dy_xc,
                       workspace);
  }
  if (a->dx && !sv->training) {
    /* dx = a * dy: the sums only serve dgamma and dbeta. */
    void *ca = coefficients;
    void *cb = (char *)ca + stats * sizeof(double),
         *cc = (char *)cb + stats * sizeof(double);
    store_dx_coefficients(sv, layout.reduce_count, false, sum_dy, sum_dy_xc,
                          ca, cb, cc);
    bn_op_grad_input_of(t, &layout, a->x, a->dy, a->dx, sv->center, ca, NULL,
                        NULL);
  }

  if ((a->dgamma || a->dbeta) && sv->groups <= 1) {
    store_param_grads(t, channels, sum_dy, sum_dy_xc, sv->inv_std,
                      sv->gamma_xhat_factor, sv->gamma_shift_factor, a->dgamma,
                      a->dbeta);
  } else if (a->dgamma || a->dbeta) {
    size_t ghost = sv->groups;
    for (size_t ch = 0; ch < channels; ch++) {
      double total_dy = 0.0, total_dy_xhat = 0.0;
      for (size_t g = 0; g < ghost; g++) {
        size_t s = g * channels + ch;
        total_dy += sum_dy[s];
        total_dy_xhat += sum_dy_xc[s] * sv->inv_std[s];
      }
      if (a->dgamma)
        bn_store(a->dgamma, t, ch,
                 sv->gamma_xhat_factor[ch] * total_dy_xhat +
                     sv->gamma_shift_factor[ch] * total_dy);
      if (a->dbeta) bn_store(a->dbeta, t, ch, total_dy);
    }
  }
  bn_clear_error();
  return BNORM_OK;
}
