/* The float operators of ops.h: the portable kernels (the scalar level),
 * and the entry points, which call the level isa.c chose. */
#include "ops_cut.h"
#include "ops_isa.h"

#include <math.h>
#include <string.h>

#include "threads.h"

/* Declared for the table below; only isa.c's choice calls them. */
void bn_op_moments_scalar(const bn_layout *layout, const float *x,
                          double *mean, double *variance, double *workspace);
void bn_op_normalize_scalar(const bn_layout *layout, const float *x, float *y,
                            const float *center, const float *scale,
                            const float *offset);
void bn_op_grad_sums_scalar(const bn_layout *layout, const float *x,
                            const float *dy, const float *center,
                            double *sum_dy, double *sum_dy_xc,
                            double *workspace);
void bn_op_grad_input_scalar(const bn_layout *layout, const float *x,
                             const float *dy, float *dx, const float *center,
                             const float *a, const float *b, const float *c);
void bn_op_grad_scalar(const bn_layout *layout, const float *x, const float *dy,
                       float *dx, const float *center, bool center_folded,
                       bn_dx_coefficients_fn coefficients, const void *ctx,
                       double *sum_dy, double *sum_dy_xc, double *workspace);

#define BN_KERNEL
#define BN_T float
#define BN_OP(name) name##_scalar
#include "ops_kernels.inc"

const bn_float_ops bn_float_ops_scalar = {
    bn_op_moments_scalar, bn_op_normalize_scalar, bn_op_grad_sums_scalar,
    bn_op_grad_input_scalar, bn_op_grad_scalar, NULL, NULL, NULL, NULL, NULL,
    NULL};

void bn_op_moments(const bn_layout *layout, const float *x, double *mean,
                   double *variance, double *workspace) {
  bn_float_ops_current()->moments(layout, x, mean, variance, workspace);
}

void bn_op_normalize(const bn_layout *layout, const float *x, float *y,
                     const float *center, const float *scale,
                     const float *offset) {
  bn_float_ops_current()->normalize(layout, x, y, center, scale, offset);
}

void bn_op_grad_sums(const bn_layout *layout, const float *x, const float *dy,
                     const float *center, double *sum_dy, double *sum_dy_xc,
                     double *workspace) {
  bn_float_ops_current()->grad_sums(layout, x, dy, center, sum_dy, sum_dy_xc,
                                    workspace);
}

void bn_op_grad_input(const bn_layout *layout, const float *x, const float *dy,
                      float *dx, const float *center, const float *a,
                      const float *b, const float *c) {
  bn_float_ops_current()->grad_input(layout, x, dy, dx, center, a, b, c);
}

void bn_op_grad(const bn_layout *layout, const float *x, const float *dy,
                float *dx, const float *center, bool center_folded,
                bn_dx_coefficients_fn coefficients, const void *ctx,
                double *sum_dy, double *sum_dy_xc, double *workspace) {
  bn_float_ops_current()->grad(layout, x, dy, dx, center, center_folded,
                               coefficients, ctx, sum_dy, sum_dy_xc, workspace);
}

bool bn_op_columns_fit(const bn_layout *layout) {
  const bn_float_ops *ops = bn_float_ops_current();
  return ops->columns_fit && ops->columns_fit(layout);
}

void bn_op_moments_columns(const bn_layout *layout, const float *x,
                           size_t first, size_t count, double *mean,
                           double *variance) {
  bn_float_ops_current()->moments_columns(layout, x, first, count, mean,
                                          variance);
}

void bn_op_normalize_rows(const bn_layout *layout, const float *x, float *y,
                          size_t first, size_t count, const float *center,
                          const float *scale, const float *offset) {
  bn_float_ops_current()->normalize_rows(layout, x, y, first, count, center,
                                         scale, offset);
}

bool bn_op_grad_columns_fit(const bn_layout *layout) {
  const bn_float_ops *ops = bn_float_ops_current();
  return ops->grad_columns_fit && ops->grad_columns_fit(layout);
}

void bn_op_grad_sums_columns(const bn_layout *layout, const float *x,
                             const float *dy, const float *center,
                             size_t first, size_t count, double *sum_dy,
                             double *sum_dy_xc) {
  bn_float_ops_current()->grad_sums_columns(layout, x, dy, center, first,
                                            count, sum_dy, sum_dy_xc);
}

void bn_op_grad_input_rows(const bn_layout *layout, const float *x,
                           const float *dy, float *dx, size_t first,
                           size_t count, const float *center, const float *a,
                           const float *b, const float *c) {
  bn_float_ops_current()->grad_input_rows(layout, x, dy, dx, first, count,
                                          center, a, b, c);
}
