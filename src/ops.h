/* Stateless batch-norm operators over plain arrays. They know nothing of
 * Keras: the layer resolves the rules and hands them a layout and
 * per-statistic coefficients. No allocation; the caller passes workspace. */
#ifndef BNORM_OPS_H
#define BNORM_OPS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "bnorm.h"

/* Whether n is a positive power of two, so that x * (1 / n) is x / n
 * exactly (a scaling by a power of two rounds once, as the division does):
 * the mean's and the gradients' divisions per statistic become a
 * multiplication, which took a dense layer's calls (NC 16x4096) 5% less. */
static inline bool bn_power_of_two(double n) {
  int exponent;
  return n > 0.0 && frexp(n, &exponent) == 0.5;
}

/* A tensor seen as nested loops of two kinds: REDUCE dimensions are summed
 * over; KEEP dimensions select a statistic. Statistic index of an element =
 * sum over KEEP dims of index * stat_stride. Adjacent dimensions of one kind
 * are merged and size-1 dimensions dropped, so NHWC becomes [N*H*W | C] and
 * NCHW becomes [N | C | H*W]. */
typedef struct bn_layout {
  int dims;
  int64_t size[BNORM_MAX_RANK + 2];
  int64_t stat_stride[BNORM_MAX_RANK + 2]; /* 0 for REDUCE dims */
  size_t stats;        /* number of statistics (groups * channels) */
  size_t reduce_count; /* elements per statistic */
  size_t total;        /* elements of the tensor */
} bn_layout;

/* Builds the layout of a row-major tensor `shape` (rank dims), where
 * normalized[i] marks the parameter axes and `groups` > 0 splits axis 0 as
 * [groups... ] ghost batches: sample b belongs to ghost batch b % groups
 * (Keras reshapes [B, ...] to [B/groups, groups, ...]). groups == 0 means no
 * ghost batches. Statistic index = ghost * channels + channel, channel in
 * row-major order of the normalized axes. */
void bn_layout_init(bn_layout *layout, const int64_t *shape, int rank,
                    const bool *normalized, size_t groups);

/* Copies the dimensions `from` uses, with every other byte of `to` zero:
 * equal layouts then compare equal byte for byte (bn_keep_lines). */
static inline void bn_layout_copy(bn_layout *to, const bn_layout *from) {
  memset(to, 0, sizeof *to);
  to->dims = from->dims;
  for (int d = 0; d < from->dims; d++) {
    to->size[d] = from->size[d];
    to->stat_stride[d] = from->stat_stride[d];
  }
  to->stats = from->stats;
  to->reduce_count = from->reduce_count;
  to->total = from->total;
}

/* Doubles of workspace bn_op_moments needs. */
size_t bn_op_moments_workspace(const bn_layout *layout);

/* The operators run on the library's threads; results do not depend on
 * how many. The float operators exist once per instruction set (ops_isa.h);
 * results of different levels may differ in the last bits. */

/* mean[s] and biased variance[s] of every statistic in one read of x, block
 * by block, each block merged into the running statistics with Chan's
 * formula, so large means cost no accuracy. The portable kernels reduce a
 * cache-sized block twice from cache (mean, then squared deviations, in
 * double); the SIMD kernels sum x - pivot and its square in float lanes,
 * added into doubles every 32 terms, with the pivot near the statistic's
 * mean. NaN for empty statistics. */
void bn_op_moments(const bn_layout *layout, const float *x, double *mean,
                   double *variance, double *workspace);

/* y = (x - center[s]) * scale[s] + offset[s]. y may alias x. center may be
 * NULL: y = x * scale[s] + offset[s], one coefficient less to stream, for
 * callers that folded the center into the offset where that costs no
 * accuracy. */
void bn_op_normalize(const bn_layout *layout, const float *x, float *y,
                     const float *center, const float *scale,
                     const float *offset);

/* Doubles of workspace bn_op_grad_sums needs. */
size_t bn_op_grad_sums_workspace(const bn_layout *layout);

/* sum_dy[s] = sum dy; sum_dy_xc[s] = sum dy * (x - center[s]). */
void bn_op_grad_sums(const bn_layout *layout, const float *x, const float *dy,
                     const float *center, double *sum_dy, double *sum_dy_xc,
                     double *workspace);

/* dx = a[s] * dy + b[s] * (x - center[s]) + c[s]. dx may alias dy. b and c
 * are both given or both NULL (zero). center may be NULL (zero), as in
 * bn_op_normalize. */
void bn_op_grad_input(const bn_layout *layout, const float *x, const float *dy,
                      float *dx, const float *center, const float *a,
                      const float *b, const float *c);

/* The coefficients of bn_op_grad's second pass, from the sums of its
 * first: fn(ctx, sum_dy, sum_dy_xc, a, b, c) fills a, b and c (`stats`
 * elements each, of the operator's element type). Where threads share a
 * small tensor, each of them calls it for itself between the passes, so
 * it must read nothing but its arguments and ctx and write nothing but a,
 * b and c. */
typedef void (*bn_dx_coefficients_fn)(const void *ctx, const double *sum_dy,
                                      const double *sum_dy_xc, void *a, void *b,
                                      void *c);

/* Doubles of workspace bn_op_grad needs (of either element type). */
size_t bn_op_grad_workspace(const bn_layout *layout);

/* bn_op_grad_sums, then coefficients(), then bn_op_grad_input with its a,
 * b and c (and no center where the coefficients fold it into c:
 * center_folded), in one call: the results of those calls, bit for bit,
 * with the sums left in sum_dy and sum_dy_xc. Where two threads share a tensor
 * of one chunk, they meet between the passes instead of returning to the caller
 * between them (bn_parallel_phases). */
void bn_op_grad(const bn_layout *layout, const float *x, const float *dy,
                float *dx, const float *center, bool center_folded,
                bn_dx_coefficients_fn coefficients, const void *ctx,
                double *sum_dy, double *sum_dy_xc, double *workspace);

/* Blocks of a tensor of a few rows of many statistics (a dense layer at
 * small batch), whose rows make too few chunks to share: where
 * bn_op_columns_fit, each statistic's moments depend on its own column
 * only, so the layer can take the statistics in blocks on its threads.
 * bn_op_moments_columns gives statistics [first, first + count) bit for
 * bit what bn_op_moments gives them; bn_op_normalize_rows writes rows
 * [first, first + count) of bn_op_normalize's output. Both run on the
 * calling thread. Levels without them (scalar) fit nothing. */
bool bn_op_columns_fit(const bn_layout *layout);
void bn_op_moments_columns(const bn_layout *layout, const float *x,
                           size_t first, size_t count, double *mean,
                           double *variance);
void bn_op_normalize_rows(const bn_layout *layout, const float *x, float *y,
                          size_t first, size_t count, const float *center,
                          const float *scale, const float *offset);
/* The same for the backward: where bn_op_grad_columns_fit,
 * bn_op_grad_sums_columns gives statistics [first, first + count) the
 * sums bn_op_grad_sums gives them, and bn_op_grad_input_rows writes rows
 * [first, first + count) of bn_op_grad_input's dx (b and c given). */
bool bn_op_grad_columns_fit(const bn_layout *layout);
void bn_op_grad_sums_columns(const bn_layout *layout, const float *x,
                             const float *dy, const float *center,
                             size_t first, size_t count, double *sum_dy,
                             double *sum_dy_xc);
void bn_op_grad_input_rows(const bn_layout *layout, const float *x,
                           const float *dy, float *dx, size_t first,
                           size_t count, const float *center, const float *a,
                           const float *b, const float *c);

/* The same operators over doubles, for float64 layers; coefficients are
 * doubles too. Workspace sizes are those of the float operators. */
void bn_op_moments_f64(const bn_layout *layout, const double *x, double *mean,
                       double *variance, double *workspace);
void bn_op_normalize_f64(const bn_layout *layout, const double *x, double *y,
                         const double *center, const double *scale,
                         const double *offset);
void bn_op_grad_sums_f64(const bn_layout *layout, const double *x,
                         const double *dy, const double *center,
                         double *sum_dy, double *sum_dy_xc, double *workspace);
void bn_op_grad_input_f64(const bn_layout *layout, const double *x,
                          const double *dy, double *dx, const double *center,
                          const double *a, const double *b, const double *c);
void bn_op_grad_f64(const bn_layout *layout, const double *x, const double *dy,
                    double *dx, const double *center, bool center_folded,
                    bn_dx_coefficients_fn coefficients, const void *ctx,
                    double *sum_dy, double *sum_dy_xc, double *workspace);

#endif
