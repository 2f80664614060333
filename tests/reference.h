/*
 * reference.h — an independent fp64 reference of the Keras BatchNormalization
 * layer, the oracle of the tests.
 *
 * Written from the specification (/work/shared/spec/keras-batchnorm.md) and
 * the tf_keras 2.21 source (layers/normalization/batch_normalization.py), not
 * from the library. Everything is plain double precision with explicit
 * multi-index loops and an explicit ghost-batch reshape; speed is irrelevant.
 *
 * Conventions
 * - A parameter ("channel") index is the row-major index over the parameter
 *   shape, i.e. over the normalized axes in increasing axis order.
 * - A forward call never changes the variables: it returns the moving-average
 *   update as a ref_update, which ref_apply_update applies to the variables
 *   as they are at that time (TensorFlow UPDATE_OPS semantics). The immediate
 *   (eager) behaviour is forward followed at once by ref_apply_update.
 * - Every function returns 0 on success and non-zero on failure (invalid
 *   configuration, shape mismatch, out of memory); ref_error() says why.
 */
#ifndef BNORM_TEST_REFERENCE_H
#define BNORM_TEST_REFERENCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define REF_MAX_RANK 8

struct bnorm_config; /* from bnorm.h, only for ref_config_from_bnorm */

typedef enum ref_behavior { REF_KERAS = 0, REF_COMPAT_V1 = 1 } ref_behavior;
typedef enum ref_fused { REF_FUSED_AUTO = 0, REF_FUSED_TRUE, REF_FUSED_FALSE } ref_fused;

/* The constructor arguments that change numbers, shapes or validity. */
typedef struct ref_config {
  ref_behavior behavior;
  int axis[REF_MAX_RANK]; /* as given: may be negative, any order */
  int axis_count;
  double momentum, epsilon;
  bool center, scale;
  bool renorm;
  bool has_rmax, has_rmin, has_dmax;
  double rmax, rmin, dmax;
  double renorm_momentum;
  ref_fused fused;
  bool trainable;
  int64_t virtual_batch_size; /* 0 = None */
  bool adjustment;            /* an adjustment callable is given */
  bool fused_epsilon_floor;   /* old TF: fused epsilon raised to 1.001e-5 */
  bool float64;               /* a float64 layer: never fused */
} ref_config;

/* Keras defaults (axis -1, momentum .99, epsilon 1e-3, center, scale, ...). */
void ref_config_init(ref_config *cfg);
/* Copies the fields of a bnorm_config that matter (adjustment: whether set). */
void ref_config_from_bnorm(ref_config *out, const struct bnorm_config *cfg);

/* Variable kinds, in Keras get_weights() order. */
enum { REF_GAMMA, REF_BETA, REF_MOVING_MEAN, REF_MOVING_VARIANCE,
       REF_MOVING_STDDEV, REF_RENORM_MEAN, REF_RENORM_STDDEV, REF_VAR_KINDS };
extern const char *const ref_var_names[REF_VAR_KINDS];

typedef struct ref_layer {
  ref_config cfg;
  /* build results */
  int rank;                          /* input rank */
  int64_t build_shape[REF_MAX_RANK]; /* -1 = unknown (not normalized) */
  int axes[REF_MAX_RANK];            /* resolved, non-negative, increasing */
  int naxes;
  bool is_axis[REF_MAX_RANK];
  int param_rank;
  int64_t param_shape[REF_MAX_RANK + 1];
  size_t channels;
  bool fused;
  double fused_epsilon; /* epsilon the fused op uses (floor applied) */
  /* variables (NULL when absent), `channels` doubles each */
  double *var[REF_VAR_KINDS];
} ref_layer;

/* Constructor + build together: the Keras __init__ and build() checks of the
 * configured behaviour. Returns non-zero (and leaves *layer zeroed) when Keras
 * would raise. Variables get the Keras default initial values. */
int ref_layer_build(ref_layer *layer, const ref_config *cfg,
                    const int64_t *input_shape, int rank);
void ref_layer_free(ref_layer *layer);
/* Deep copy. */
int ref_layer_clone(ref_layer *dst, const ref_layer *src);

/* Variables present, in get_weights() order: kinds[0..count). */
int ref_layer_variable_kinds(const ref_layer *layer, int kinds[REF_VAR_KINDS]);
/* Total number of doubles in get_weights() order. */
size_t ref_layer_weights_count(const ref_layer *layer);
/* Sets every variable from floats in get_weights() order (set_weights). */
void ref_layer_set_weights_f(ref_layer *layer, const float *values);
/* Whether gamma/beta are trainable variables (compat_v1 + trainable=false: no). */
bool ref_layer_gamma_beta_trainable(const ref_layer *layer);

/* Epsilon used for normalization (the fused floor applied when it applies). */
double ref_layer_epsilon(const ref_layer *layer);

/* Whether a call with `training` normalizes with batch statistics, and
 * whether it produces moving-average updates. */
bool ref_uses_batch_stats(const ref_layer *layer, bool training);
bool ref_makes_updates(const ref_layer *layer, bool training);

/* One forward call's moving-average update, recorded at forward time. */
typedef struct ref_update {
  bool present;
  size_t channels;
  double *mean_value; /* batch mean (ghost-averaged) */
  double *var_value;  /* biased batch variance (ghost-averaged) */
  double bessel;      /* fused: N / max(N-1, 1); else 1 */
} ref_update;
void ref_update_free(ref_update *u);
/* Applies the update to the variables' CURRENT values; frees nothing. */
void ref_apply_update(ref_layer *layer, const ref_update *u);

/* What backward needs from a forward call (owned arrays; ref_saved_free). */
typedef struct ref_saved {
  bool batch_stats;  /* training formula used */
  size_t channels;
  int64_t groups;    /* ghost batches (1 without virtual_batch_size) */
  int64_t n_per_stat;/* elements per (group, channel) statistic */
  double epsilon;
  double *mean;      /* groups*channels: index g*channels + c */
  double *var;       /* groups*channels (biased; moving variance in inference) */
  double *rho;       /* groups*channels: 1/sqrt(var + eps) */
  double *r, *d;     /* channels (1, 0 without renorm or in inference) */
  double *adj_scale, *adj_bias; /* channels (1, 0 without adjustment) */
  double *gamma, *beta;         /* channels (1, 0 when absent) */
} ref_saved;
void ref_saved_free(ref_saved *s);

typedef struct ref_forward_args {
  const double *x;
  const int64_t *shape;
  int rank;
  bool training;
  /* With cfg.adjustment and batch statistics: `channels` values each. */
  const double *adj_scale, *adj_bias;
  /* Optional: use these r, d instead of computing them (stop_gradient
   * constants for finite differences). */
  const double *fixed_r, *fixed_d;
} ref_forward_args;

/* Forward. y: caller-allocated (product of shape). y_mag (may be NULL): per
 * element the magnitude of the terms y is made of, |S*rho|*(|x|+|mean|) +
 * |offset terms|, for rounding tolerances. upd (may be NULL): receives the
 * update (present=false when none). saved (may be NULL): filled for
 * ref_backward. Variables are not changed. */
int ref_forward(const ref_layer *layer, const ref_forward_args *args, double *y,
                double *y_mag, ref_update *upd, ref_saved *saved);

/* Forward then, if any, the update at once (eager Keras). */
int ref_forward_immediate(ref_layer *layer, const ref_forward_args *args,
                          double *y, double *y_mag, ref_saved *saved);

/* Backward by the direct formula (spec §11). dx (may be NULL), dgamma/dbeta
 * (`channels` each, may be NULL). The *_mag outputs (may be NULL) receive the
 * magnitude of the terms summed into each output, for rounding tolerances. */
int ref_backward(const ref_saved *saved, const ref_layer *layer,
                 const double *x, const double *dy, const int64_t *shape,
                 int rank, double *dx, double *dgamma, double *dbeta,
                 double *dx_mag, double *dgamma_mag, double *dbeta_mag);

/* Gradients of L = sum(dy * y) by central differences of the fp64 forward,
 * with r, d and the adjustment held at the values of `saved` (stop_gradient)
 * and, in inference, the moving statistics fixed. `layer` supplies gamma and
 * beta (not modified). step: relative step (e.g. 1e-6). Any output may be
 * NULL. dgamma/dbeta are left untouched when the variable does not exist. */
int ref_fd_gradients(const ref_layer *layer, const ref_forward_args *args,
                     const ref_saved *saved, const double *dy, double step,
                     double *dx, double *dgamma, double *dbeta);

/* ---- Comparing the fp32 library with the reference ----
 * Element i passes when
 *   |got_i - want_i| <= rtol * (|want_i| + max_j |want_j|) + kmag * 2^-24 * mag_i
 * (mag may be NULL: no magnitude term). The first term is a relative
 * tolerance with respect to the tensor's scale; the second allows kmag fp32
 * roundings of the terms the value is made of (needed where cancellation is
 * inherent, e.g. inputs with a large mean). NaN never passes.
 * ref_close_excess returns the worst (err - allowed) (> 0: fails; +inf for
 * NaN) and its index; ref_check_close records a harness check. */
double ref_close_excess(const float *got, const double *want, const double *mag,
                        size_t n, double rtol, double kmag, size_t *worst);
bool ref_check_close(const float *got, const double *want, const double *mag,
                     size_t n, double rtol, double kmag, const char *file,
                     int line, const char *what);
#define REF_CHECK_CLOSE(got, want, mag, n, rtol, kmag, what) \
  ref_check_close((got), (want), (mag), (n), (rtol), (kmag), __FILE__, __LINE__, (what))
/* The same for a float64 library result: kmag counts float64 roundings
 * (2^-53 each). */
double ref_close_excess64(const double *got, const double *want, const double *mag,
                          size_t n, double rtol, double kmag, size_t *worst);
bool ref_check_close64(const double *got, const double *want, const double *mag,
                       size_t n, double rtol, double kmag, const char *file,
                       int line, const char *what);
#define REF_CHECK_CLOSE64(got, want, mag, n, rtol, kmag, what) \
  ref_check_close64((got), (want), (mag), (n), (rtol), (kmag), __FILE__, __LINE__, (what))

/* Magnitude of the terms a variable's current value was computed from (for
 * the kmag term): with renorm, moving_variance = relu(ms^2 - eps) cancels
 * when ms^2 ~ eps, so its magnitude is ms^2 + eps; 0 for the others (an EMA
 * step has no inherent cancellation beyond the tensor's scale). */
void ref_variable_magnitude(const ref_layer *layer, int kind, double *mag);

/* Helpers. */
size_t ref_shape_count(const int64_t *shape, int rank);
const char *ref_error(void);

#ifdef __cplusplus
}
#endif

#endif
