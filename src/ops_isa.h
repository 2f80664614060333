/* The float operators of ops.h exist once per instruction set; isa.c
 * picks the table for this CPU and the cap (bnorm_set_max_isa). */
#ifndef BNORM_OPS_ISA_H
#define BNORM_OPS_ISA_H

#include "ops.h"

typedef struct bn_float_ops {
  void (*moments)(const bn_layout *layout, const float *x, double *mean,
                  double *variance, double *workspace);
  void (*normalize)(const bn_layout *layout, const float *x, float *y,
                    const float *center, const float *scale,
                    const float *offset);
  void (*grad_sums)(const bn_layout *layout, const float *x, const float *dy,
                    const float *center, double *sum_dy, double *sum_dy_xc,
                    double *workspace);
  void (*grad_input)(const bn_layout *layout, const float *x, const float *dy,
                     float *dx, const float *center, const float *a,
                     const float *b, const float *c);
  void (*grad)(const bn_layout *layout, const float *x, const float *dy,
               float *dx, const float *center, bool center_folded,
               bn_dx_coefficients_fn coefficients, const void *ctx,
               double *sum_dy, double *sum_dy_xc, double *workspace);
  /* NULL where the level has no blocks (bn_op_columns_fit). */
  bool (*columns_fit)(const bn_layout *layout);
  void (*moments_columns)(const bn_layout *layout, const float *x,
                          size_t first, size_t count, double *mean,
                          double *variance);
  void (*normalize_rows)(const bn_layout *layout, const float *x, float *y,
                         size_t first, size_t count, const float *center,
                         const float *scale, const float *offset);
  bool (*grad_columns_fit)(const bn_layout *layout);
  void (*grad_sums_columns)(const bn_layout *layout, const float *x,
                            const float *dy, const float *center, size_t first,
                            size_t count, double *sum_dy, double *sum_dy_xc);
  void (*grad_input_rows)(const bn_layout *layout, const float *x,
                          const float *dy, float *dx, size_t first,
                          size_t count, const float *center, const float *a,
                          const float *b, const float *c);
} bn_float_ops;

/* ops.c: portable C, any CPU. */
extern const bn_float_ops bn_float_ops_scalar;
#if defined(__x86_64__) && defined(__GNUC__)
#define BN_HAVE_X86_KERNELS 1
/* ops_avx2.c, ops_avx512.c: compiled for those instruction sets. */
extern const bn_float_ops bn_float_ops_avx2;
extern const bn_float_ops bn_float_ops_avx512;
#endif

/* The table for the current level. */
const bn_float_ops *bn_float_ops_current(void);

#endif
