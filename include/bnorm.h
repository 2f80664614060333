/*
 * bnorm.h — the Keras / TensorFlow BatchNormalization layer in C.
 *
 * This header is the reference manual. bnorm implements every argument of
 * `tf_keras.layers.BatchNormalization` and of the TF1-style
 * `tf.compat.v1.layers.BatchNormalization` (Ioffe & Szegedy 2015): training and
 * inference passes, moving averages (applied at once or returned as pending
 * updates), Batch Renormalization, Ghost Batch Normalization, the adjustment
 * hook, gradients, regularizers, constraints and serialization.
 *
 * Life cycle (the Keras one):
 *
 *     bnorm_config cfg;
 *     bnorm_config_init(&cfg);            // Keras' defaults
 *     cfg.momentum = 0.9;
 *     bnorm_layer *bn;
 *     bnorm_layer_create(&cfg, &bn);      // Keras __init__: validates cfg
 *     int64_t shape[4] = {-1, 28, 28, 64};
 *     bnorm_layer_build(bn, shape, 4);    // Keras build: variables exist now
 *     bnorm_forward_args fa = {0};        // one call of the layer
 *     fa.x = x; fa.y = y; fa.shape = (int64_t[]){32, 28, 28, 64}; fa.rank = 4;
 *     fa.training = true; fa.saved = saved;   // saved: see bnorm_saved
 *     bnorm_layer_forward(bn, &fa);       // moving averages updated here
 *     bnorm_layer_backward(bn, &ba);      // dx, dgamma, dbeta
 *     bnorm_layer_destroy(bn);
 *
 * Conventions
 * - Every entry point returns a bnorm_status. On failure bnorm_last_error()
 *   returns a message for the calling thread, and the call has changed
 *   nothing: no variable, no pending update, no output array. (Only when
 *   memory runs out may a bnorm_saved passed to a failed forward call lose
 *   its recorded call; backward then refuses it.)
 * - Library code never aborts, exits or prints.
 * - Tensors are dense, row-major (C order) arrays owned by the caller, of
 *   the layer's dtype (bnorm_config.dtype): float for BNORM_FLOAT32 (the
 *   default), double for BNORM_FLOAT64. Variables, gradients and the math
 *   are in that dtype too, as in a Keras layer of that dtype; arguments
 *   typed `void *` point to such arrays. Shapes are int64_t arrays; rank is 1
 *   to BNORM_MAX_RANK.
 * - The layer owns its variables and exposes them by index in Keras'
 *   get_weights() order.
 * - A layer may be used from one thread at a time; different layers are
 *   independent.
 * - A call uses up to about 40 KB of the calling thread's stack (the
 *   kernels keep per-channel buffers there, in cache from call to call).
 */
#ifndef BNORM_H
#define BNORM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Marks the exported API; the library is built with hidden visibility so
 * that nothing else leaks out of libbnorm.so. */
#if defined(_WIN32) && defined(BNORM_BUILDING)
#define BNORM_API __declspec(dllexport)
#elif defined(__GNUC__)
#define BNORM_API __attribute__((visibility("default")))
#else
#define BNORM_API
#endif

#define BNORM_VERSION_MAJOR 0
#define BNORM_VERSION_MINOR 1
#define BNORM_VERSION_PATCH 0

/* Highest tensor rank accepted (the ghost-batch reshape adds one internally). */
#define BNORM_MAX_RANK 8
/* Longest layer name, excluding the terminating NUL. */
#define BNORM_MAX_NAME 127

/* ------------------------------------------------------------------------- */
/* Status and errors                                                         */
/* ------------------------------------------------------------------------- */

typedef enum bnorm_status {
  BNORM_OK = 0,
  BNORM_ERR_NULL_ARGUMENT,    /* a required pointer was NULL */
  BNORM_ERR_INVALID_CONFIG,   /* a constructor argument is invalid */
  BNORM_ERR_INVALID_ARGUMENT, /* another argument is invalid */
  BNORM_ERR_SHAPE,            /* a shape does not fit the layer or the op */
  BNORM_ERR_STATE,            /* wrong state: not built, already built ... */
  BNORM_ERR_OVERFLOW,         /* a size would overflow */
  BNORM_ERR_OUT_OF_MEMORY,
  BNORM_ERR_CALLBACK,         /* a user callback reported failure */
  BNORM_ERR_NOT_FOUND,        /* no variable / object of that name */
  BNORM_ERR_IO,               /* a file could not be opened, read or written */
  BNORM_ERR_CORRUPT,          /* a file or JSON text is malformed */
  BNORM_ERR_UNSUPPORTED       /* valid request that cannot be serialized or done */
} bnorm_status;

/* ------------------------------------------------------------------------- */
/* Threads                                                                   */
/* ------------------------------------------------------------------------- */

/* Threads the operators may use, the caller's included: 0 restores the
 * default ($BNORM_NUM_THREADS, else the CPUs online). Results are
 * bit-identical for every thread count: work is cut into pieces that do not
 * depend on it and combined in a fixed order. Process-wide; calls into bnorm
 * from several threads share the pool one job at a time. */
BNORM_API bnorm_status bnorm_set_num_threads(int threads);
BNORM_API int bnorm_get_num_threads(void);
/* Between calls, idle worker threads spin for the next one for
 * $BNORM_SPIN_US microseconds (default 5000, about what OpenMP runtimes do)
 * before they sleep: waking a sleeping thread costs 0.1-0.4 ms on a virtual
 * machine. BNORM_SPIN_US=0 makes them sleep at once, which leaves the CPUs
 * to other thread pools (BLAS, OpenMP) between bnorm calls. Read once, when
 * the first worker starts.
 *
 * A layer call on at most 131072 elements (128 Ki), made with two threads
 * or more, runs on all of them or on the calling thread alone, whichever
 * has been faster lately for that layer, pass and size (element counts
 * within an octave count as one size) on the calling thread: each such
 * call is timed now and then both ways. On tensors of
 * tens of kilobytes the second thread saves a few hundred nanoseconds at
 * best, and on shared or virtual machines it is slower than one for
 * minutes at a time. Results are the same bits either way.
 * bnorm_set_small_calls(BNORM_SMALL_CALLS_SHARE), or BNORM_SMALL_CALLS=share
 * in the environment (read once, at the first such call, unless the setter
 * came first), makes every call use all the threads. Process-wide. */
typedef enum bnorm_small_calls {
  BNORM_SMALL_CALLS_CHOOSE = 0, /* the faster way lately (the default) */
  BNORM_SMALL_CALLS_SHARE = 1   /* all threads, as larger calls */
} bnorm_small_calls;
/* BNORM_ERR_INVALID_ARGUMENT for a value outside the enum. */
BNORM_API bnorm_status bnorm_set_small_calls(bnorm_small_calls mode);
BNORM_API bnorm_small_calls bnorm_get_small_calls(void);

/* ------------------------------------------------------------------------- */
/* Instruction sets                                                          */
/* ------------------------------------------------------------------------- */

/* The instruction sets the float32 kernels are written for, lowest first. */
typedef enum bnorm_isa {
  BNORM_ISA_SCALAR = 0, /* portable C, any CPU */
  BNORM_ISA_AVX2 = 1,   /* x86-64 AVX2 with FMA */
  BNORM_ISA_AVX512 = 2  /* x86-64 AVX-512 F, BW, DQ and VL */
} bnorm_isa;

/* Caps the instruction set the kernels may use; the kernels then use the
 * best level at or below the cap that this CPU has. The initial cap is
 * $BNORM_MAX_ISA ("scalar", "avx2" or "avx512"), else the best level.
 * Process-wide; do not call it while another thread is inside bnorm.
 * BNORM_ERR_INVALID_ARGUMENT for a value outside the enum. */
BNORM_API bnorm_status bnorm_set_max_isa(bnorm_isa isa);
/* The level the kernels use now. */
BNORM_API bnorm_isa bnorm_get_isa(void);
/* "scalar", "avx2", "avx512"; "unknown" outside the enum. Never NULL. */
BNORM_API const char *bnorm_isa_name(bnorm_isa isa);

/* Short constant name of a status, e.g. "BNORM_ERR_SHAPE". Never NULL. */
BNORM_API const char *bnorm_status_name(bnorm_status status);

/* The message of the last failed call on this thread, in words a user can act
 * on ("" if none). Valid until the next bnorm call on this thread. */
BNORM_API const char *bnorm_last_error(void);

/* ------------------------------------------------------------------------- */
/* Initializers, regularizers, constraints                                   */
/* ------------------------------------------------------------------------- */

/* Callbacks exchange doubles whatever the layer's dtype; bnorm rounds what
 * they return to the dtype, as Keras casts to the variable's dtype. */

/* Fills `values` (count elements, the variable in row-major order of `shape`)
 * with initial values. Return 0 on success, anything else to fail the build. */
typedef int (*bnorm_initializer_fn)(double *values, size_t count,
                                    const int64_t *shape, int rank,
                                    void *user_data);

typedef enum bnorm_initializer_kind {
  BNORM_INIT_ZEROS = 0,     /* Keras "Zeros" */
  BNORM_INIT_ONES,          /* "Ones" */
  BNORM_INIT_CONSTANT,      /* "Constant": value */
  BNORM_INIT_RANDOM_NORMAL, /* "RandomNormal": mean, stddev (0, 0.05) */
  BNORM_INIT_RANDOM_UNIFORM,/* "RandomUniform": minval, maxval (-0.05, 0.05) */
  BNORM_INIT_TRUNCATED_NORMAL, /* "TruncatedNormal": mean, stddev; values
                                  beyond 2 stddev are redrawn */
  BNORM_INIT_CALLBACK       /* fn(user_data) */
} bnorm_initializer_kind;

typedef struct bnorm_initializer {
  bnorm_initializer_kind kind;
  double value;          /* CONSTANT */
  double mean, stddev;   /* RANDOM_NORMAL, TRUNCATED_NORMAL */
  double minval, maxval; /* RANDOM_UNIFORM */
  bool has_seed;         /* false: a fresh seed per layer (process counter) */
  uint64_t seed;         /* same seed, same shape: same values */
  bnorm_initializer_fn fn;
  void *user_data;
  const char *name;      /* CALLBACK: class_name written by get_config */
} bnorm_initializer;

/* Keras built-in initializers with Keras' default parameters. */
BNORM_API bnorm_initializer bnorm_initializer_zeros(void);
BNORM_API bnorm_initializer bnorm_initializer_ones(void);
BNORM_API bnorm_initializer bnorm_initializer_constant(double value);
BNORM_API bnorm_initializer bnorm_initializer_random_normal(double mean, double stddev);
BNORM_API bnorm_initializer bnorm_initializer_random_uniform(double minval, double maxval);
BNORM_API bnorm_initializer bnorm_initializer_truncated_normal(double mean, double stddev);
/* Returns `init` with a fixed seed. */
BNORM_API bnorm_initializer bnorm_initializer_seeded(bnorm_initializer init, uint64_t seed);

/* Regularization loss of a weight and, when `gradient` is not NULL, ADDS
 * d(loss)/d(weight) to gradient[0..count). Return 0 on success. */
typedef int (*bnorm_regularizer_fn)(const double *weight, size_t count,
                                    double *loss, double *gradient,
                                    void *user_data);

typedef enum bnorm_regularizer_kind {
  BNORM_REG_NONE = 0,
  BNORM_REG_L1,       /* Keras "L1":   l1 * sum(|w|)          (l1 = 0.01) */
  BNORM_REG_L2,       /* Keras "L2":   l2 * sum(w^2)          (l2 = 0.01) */
  BNORM_REG_L1L2,     /* Keras "L1L2": l1*sum|w| + l2*sum w^2 (0, 0) */
  BNORM_REG_CALLBACK
} bnorm_regularizer_kind;

typedef struct bnorm_regularizer {
  bnorm_regularizer_kind kind;
  double l1, l2;
  bnorm_regularizer_fn fn;
  void *user_data;
  const char *name; /* CALLBACK: class_name written by get_config */
} bnorm_regularizer;

BNORM_API bnorm_regularizer bnorm_regularizer_none(void);
BNORM_API bnorm_regularizer bnorm_regularizer_l1(double l1);
BNORM_API bnorm_regularizer bnorm_regularizer_l2(double l2);
BNORM_API bnorm_regularizer bnorm_regularizer_l1_l2(double l1, double l2);

/* Projects a weight in place (after the caller's optimizer step). */
typedef int (*bnorm_constraint_fn)(double *weight, size_t count,
                                   const int64_t *shape, int rank,
                                   void *user_data);

typedef enum bnorm_constraint_kind {
  BNORM_CONSTRAINT_NONE = 0,
  BNORM_CONSTRAINT_NON_NEG,      /* "NonNeg": w * (w >= 0) */
  BNORM_CONSTRAINT_UNIT_NORM,    /* "UnitNorm": w / (1e-7 + ||w||) over axes */
  BNORM_CONSTRAINT_MAX_NORM,     /* "MaxNorm": max_value (2) */
  BNORM_CONSTRAINT_MIN_MAX_NORM, /* "MinMaxNorm": min_value (0), max_value (1),
                                    rate (1) */
  BNORM_CONSTRAINT_CALLBACK
} bnorm_constraint_kind;

typedef struct bnorm_constraint {
  bnorm_constraint_kind kind;
  double min_value, max_value, rate;
  /* Axes of the weight over which norms are taken (Keras `axis`, default 0).
   * Negative values count from the end of the weight's shape. */
  int axis[BNORM_MAX_RANK + 1];
  int axis_count;
  bnorm_constraint_fn fn;
  void *user_data;
  const char *name; /* CALLBACK: class_name written by get_config */
} bnorm_constraint;

BNORM_API bnorm_constraint bnorm_constraint_none(void);
BNORM_API bnorm_constraint bnorm_constraint_non_neg(void);
BNORM_API bnorm_constraint bnorm_constraint_unit_norm(void);
BNORM_API bnorm_constraint bnorm_constraint_max_norm(double max_value);
BNORM_API bnorm_constraint bnorm_constraint_min_max_norm(double min_value,
                                               double max_value, double rate);

/* ------------------------------------------------------------------------- */
/* Configuration: the constructor arguments                                  */
/* ------------------------------------------------------------------------- */

/* Which TensorFlow layer's rules the layer follows. */
typedef enum bnorm_behavior {
  /* tf_keras.layers.BatchNormalization (Keras 2, tf-keras 2.21):
   * - fused=None: fused when the input is 4-D/5-D with the channel on axis
   *   1 or last and no renorm/virtual batch/adjustment; fused=True with a
   *   configuration fused cannot run is an error;
   * - trainable=false switches the layer to inference mode;
   * - fused moving averages use the kernel's form, f = float32(1-momentum):
   *   mean = (1-f)*mean + f*batch_mean,
   *   variance = (1-f)*variance + (f*n/(n-1))*batch_variance_biased
   *   (with f == 1 the batch values are assigned, even over NaN);
   * - virtual_batch_size: inference accepts any batch size.
   * Whichever path is taken, the output is normalized with the biased batch
   * variance; only the fused path feeds Bessel's n/max(n-1,1) into the
   * moving variance. */
  BNORM_BEHAVIOR_KERAS = 0,
  /* tf.compat.v1.layers.BatchNormalization (the TF1 page's layer):
   * - fused=None means True, and any configuration fused cannot run falls
   *   back to the non-fused path silently;
   * - trainable=false only freezes gamma/beta (created non-trainable);
   *   training=true still normalizes with batch statistics, and the moving
   *   average updates of the frozen layer are dropped;
   * - moving averages use moving -= (moving - value) * decay, with
   *   decay = float32(1 - momentum), but 1 - float32(momentum) on the fused
   *   path (where momentum becomes a float32 tensor first);
   * - virtual_batch_size must divide the batch in inference too.
   * Updates are pending-style by nature here (TF1's UPDATE_OPS); with
   * args.pending NULL they are applied at the end of the call. */
  BNORM_BEHAVIOR_COMPAT_V1
} bnorm_behavior;

typedef enum bnorm_fused {
  BNORM_FUSED_AUTO = 0, /* Keras fused=None */
  BNORM_FUSED_TRUE,
  BNORM_FUSED_FALSE
} bnorm_fused;

/* Composes the adjustment (Keras `adjustment`): called once per training
 * forward with the input's dynamic shape, before anything changes, it writes
 * `channels` values of scale and of bias, one per parameter element in
 * row-major order of the parameter shape (e.g. shape[-1:] for axis=-1).
 * Applied as y = gamma * (scale * (r * xhat + d) + bias) + beta.
 * Return 0 on success; anything else fails the forward call. */
typedef int (*bnorm_adjustment_fn)(const int64_t *input_shape, int rank,
                                   double *scale, double *bias, size_t channels,
                                   void *user_data);

/* The layer's dtype: its tensors, variables and math (Keras `dtype`). */
typedef enum bnorm_dtype {
  BNORM_FLOAT32 = 0,
  /* Never fused (Keras refuses fused=True, compat.v1 falls back). The
   * moving averages' decay is float32(1 - momentum) here too, as in
   * TensorFlow (a float32 tensor cast to float64). Renorm runs in float64,
   * although TensorFlow 2.21 fails on it (it compares a float64 stddev with
   * a float32 epsilon). */
  BNORM_FLOAT64
} bnorm_dtype;

typedef struct bnorm_config {
  bnorm_behavior behavior; /* BNORM_BEHAVIOR_KERAS */
  bnorm_dtype dtype;       /* BNORM_FLOAT32 */
  int axis[BNORM_MAX_RANK];/* {-1}: Keras `axis`, an int or a list */
  int axis_count;          /* 1 */
  bool axis_is_list;       /* false: get_config writes an int before build */
  double momentum;         /* 0.99 */
  double epsilon;          /* 1e-3 */
  bool center;             /* true */
  bool scale;              /* true */
  bnorm_initializer beta_initializer;            /* zeros */
  bnorm_initializer gamma_initializer;           /* ones */
  bnorm_initializer moving_mean_initializer;     /* zeros */
  bnorm_initializer moving_variance_initializer; /* ones */
  bnorm_regularizer beta_regularizer;            /* none */
  bnorm_regularizer gamma_regularizer;           /* none */
  bnorm_constraint beta_constraint;              /* none */
  bnorm_constraint gamma_constraint;             /* none */
  bool renorm;             /* false */
  /* renorm_clipping: a key is present when its has_ flag is set; missing
   * keys mean rmax = inf, rmin = 0, dmax = inf (no clipping). */
  bool renorm_clipping_has_rmax, renorm_clipping_has_rmin,
      renorm_clipping_has_dmax;
  double renorm_clipping_rmax, renorm_clipping_rmin, renorm_clipping_dmax;
  double renorm_momentum;  /* 0.99 */
  bnorm_fused fused;       /* AUTO */
  bool trainable;          /* true */
  /* 0 = None. Negative values, or a size together with an adjustment, are
   * rejected at build (as Keras does); ghost batch j holds the samples
   * i*(B/virtual_batch_size) + j (Keras' reshape). */
  int64_t virtual_batch_size;
  bnorm_adjustment_fn adjustment; /* NULL = None */
  void *adjustment_user_data;
  char name[BNORM_MAX_NAME + 1]; /* "" = "batch_normalization" */
  /* TF 1.x/2.0 raised epsilon to 1.001e-5 on the fused path; current
   * TensorFlow (2.21, both layers) does not. Set to reproduce old models. */
  bool fused_epsilon_floor; /* false */
} bnorm_config;

/* Fills `config` with Keras' defaults (listed beside each field). */
BNORM_API void bnorm_config_init(bnorm_config *config);

/* Checks everything the Keras constructor checks, plus what bnorm needs
 * (finite momentum/epsilon, epsilon >= 0, valid initializer parameters ...). */
BNORM_API bnorm_status bnorm_config_validate(const bnorm_config *config);

/* Custom objects for from_config: a class_name seen in JSON that is not a
 * Keras built-in is looked up here (like Keras' custom_objects). */
typedef struct bnorm_custom_objects {
  const bnorm_initializer *initializers; size_t initializer_count;
  const bnorm_regularizer *regularizers; size_t regularizer_count;
  const bnorm_constraint *constraints; size_t constraint_count;
} bnorm_custom_objects;

/* Writes Keras' get_config() of a configuration as JSON (keys and values as
 * tf_keras writes them; `fused` and `adjustment` are never written, renorm
 * keys only with renorm, virtual_batch_size only when set). `out` receives at
 * most `capacity` bytes including the NUL; `*length` (may be NULL) receives
 * the full length without the NUL, so a call with capacity 0 measures.
 * Returns BNORM_ERR_INVALID_ARGUMENT if the text did not fit. */
BNORM_API bnorm_status bnorm_config_to_json(const bnorm_config *config, char *out,
                                  size_t capacity, size_t *length);

/* Parses a Keras BatchNormalization config (from get_config() or a saved
 * model) into `config`, starting from bnorm_config_init() defaults. Unknown
 * keys are ignored as Keras ignores base-layer keys; `behavior`, `fused` and
 * callbacks are not part of Keras' config and keep their defaults.
 * `custom` may be NULL. */
BNORM_API bnorm_status bnorm_config_from_json(const char *json, bnorm_config *config,
                                    const bnorm_custom_objects *custom);

/* ------------------------------------------------------------------------- */
/* The layer                                                                 */
/* ------------------------------------------------------------------------- */

typedef struct bnorm_layer bnorm_layer;

/* Keras __init__: validates and copies `config`. */
BNORM_API bnorm_status bnorm_layer_create(const bnorm_config *config,
                                bnorm_layer **layer);
BNORM_API void bnorm_layer_destroy(bnorm_layer *layer); /* NULL is a no-op */

/* The configuration as the layer holds it (after build `axis` holds the
 * resolved non-negative axes, shifted by one with virtual_batch_size, as
 * Keras does). */
BNORM_API const bnorm_config *bnorm_layer_config(const bnorm_layer *layer);

/* Keras get_config() of the layer (see bnorm_config_to_json). */
BNORM_API bnorm_status bnorm_layer_get_config(const bnorm_layer *layer, char *out,
                                    size_t capacity, size_t *length);

/* Keras build: resolves the axes, decides the fused path, creates and
 * initializes the variables. Dimensions that are not normalized may be -1
 * (unknown, e.g. the batch). Later calls must match the rank and the sizes of
 * the normalized axes. A layer is built once. */
BNORM_API bnorm_status bnorm_layer_build(bnorm_layer *layer, const int64_t *input_shape,
                               int rank);
BNORM_API bool bnorm_layer_is_built(const bnorm_layer *layer);

/* Keras `layer.trainable = value`. With BNORM_BEHAVIOR_KERAS a frozen layer
 * runs in inference mode; with COMPAT_V1 its updates are dropped. The
 * variables' own trainable flags are fixed at build, as in TensorFlow. */
BNORM_API bnorm_status bnorm_layer_set_trainable(bnorm_layer *layer,
                                                 bool trainable);

/* After build: whether the layer took the fused path (Keras `layer.fused`). It
 * changes numbers only in the moving variance (Bessel-corrected) and, with
 * fused_epsilon_floor, epsilon. */
BNORM_API bool bnorm_layer_is_fused(const bnorm_layer *layer);

/* Number of parameter elements (product of the normalized axes' sizes). */
BNORM_API size_t bnorm_layer_channels(const bnorm_layer *layer);

/* ---- Variables (Keras layer.weights; valid after build) ---- */

typedef struct bnorm_variable_info {
  const char *name;      /* "<layer name>/gamma", ... */
  const char *short_name;/* "gamma", "beta", "moving_mean", "moving_variance",
                            "moving_stddev", "renorm_mean", "renorm_stddev" */
  int64_t shape[BNORM_MAX_RANK + 1]; /* Keras param shape */
  int rank;
  size_t count;          /* number of elements */
  bool trainable;
} bnorm_variable_info;

/* Count and description, in get_weights() order: trainable first (gamma,
 * beta), then moving_mean, moving_variance, then with renorm moving_stddev,
 * renorm_mean, renorm_stddev. */
BNORM_API size_t bnorm_layer_variable_count(const bnorm_layer *layer);
BNORM_API bnorm_status bnorm_layer_variable_info(const bnorm_layer *layer, size_t index,
                                       bnorm_variable_info *info);
/* Index of a variable by short or full name. */
BNORM_API bnorm_status bnorm_layer_find_variable(const bnorm_layer *layer,
                                       const char *name, size_t *index);
/* The variable's storage (an array of the layer's dtype), for optimizers
 * that update in place. Writes are seen by the next call. Never NULL for a
 * valid index of a built layer. */
BNORM_API void *bnorm_layer_variable_data(bnorm_layer *layer, size_t index);
/* Copies a variable out / in, `count` elements of the layer's dtype (count
 * must equal the variable's count). */
BNORM_API bnorm_status bnorm_layer_get_variable(const bnorm_layer *layer, size_t index,
                                      void *out, size_t count);
BNORM_API bnorm_status bnorm_layer_set_variable(bnorm_layer *layer, size_t index,
                                      const void *values, size_t count);
/* Keras get_weights()/set_weights(): all variables, in order, back to back,
 * in the layer's dtype. bnorm_layer_weights_count gives the total number of
 * elements. */
BNORM_API size_t bnorm_layer_weights_count(const bnorm_layer *layer);
BNORM_API bnorm_status bnorm_layer_get_weights(const bnorm_layer *layer, void *out,
                                     size_t count);
BNORM_API bnorm_status bnorm_layer_set_weights(bnorm_layer *layer, const void *values,
                                     size_t count);

/* ---- Pending moving-average updates (the page's custom-training-loop note) */

/* A list of update ops. A forward call given one records its updates there
 * instead of applying them; bnorm_layer_apply_updates runs them later, in
 * order, against the variables' values at that time (as TensorFlow's
 * UPDATE_OPS do); bnorm_updates_clear drops them. */
typedef struct bnorm_updates bnorm_updates;
BNORM_API bnorm_status bnorm_updates_create(bnorm_updates **updates);
BNORM_API void bnorm_updates_destroy(bnorm_updates *updates); /* NULL is a no-op */
BNORM_API size_t bnorm_updates_count(const bnorm_updates *updates); /* forward calls */
BNORM_API void bnorm_updates_clear(bnorm_updates *updates);
/* Applies and clears every update recorded for `layer` (updates recorded by
 * other layers are refused with BNORM_ERR_INVALID_ARGUMENT). */
BNORM_API bnorm_status bnorm_layer_apply_updates(bnorm_layer *layer,
                                       bnorm_updates *updates);

/* ---- What backward needs from forward ---- */

/* Holds the statistics of one forward call (mean, inverse stddev per
 * statistics group, renorm r and d, adjustment, the gamma used), so that
 * backward matches it exactly even after the variables change. Reusable: its
 * storage grows on first use and is kept. */
typedef struct bnorm_saved bnorm_saved;
BNORM_API bnorm_status bnorm_saved_create(bnorm_saved **saved);
BNORM_API void bnorm_saved_destroy(bnorm_saved *saved); /* NULL is a no-op */

/* ---- Forward and backward ---- */

typedef struct bnorm_forward_args {
  const void *x;        /* input, row-major `shape`, the layer's dtype */
  void *y;              /* output, same shape; may equal x (in place) */
  const int64_t *shape; /* the input's dynamic shape, all sizes >= 0 */
  int rank;
  /* Keras' `training`. With BNORM_BEHAVIOR_KERAS and trainable=false the
   * layer runs in inference mode whatever this says. */
  bool training;
  /* NULL: moving-average updates are applied at once (eager Keras).
   * Otherwise they are appended here and the variables are not touched. */
  bnorm_updates *pending;
  /* Optional: filled for bnorm_layer_backward. */
  bnorm_saved *saved;
} bnorm_forward_args;

BNORM_API bnorm_status bnorm_layer_forward(bnorm_layer *layer,
                                 const bnorm_forward_args *args);

typedef struct bnorm_backward_args {
  /* From the forward call being differentiated; backward also keeps its
   * workspace there, so one bnorm_saved serves one thread at a time. */
  bnorm_saved *saved;
  const void *x;            /* that call's input (the layer's dtype) */
  const void *dy;           /* gradient of the loss w.r.t. y */
  const int64_t *shape;     /* that call's shape */
  int rank;
  void *dx;                 /* may be NULL; may equal dy */
  /* Written (not accumulated), `channels` elements each; may be NULL. They
   * must be NULL when the layer has no gamma (scale=false) / beta
   * (center=false). */
  void *dgamma;
  void *dbeta;
} bnorm_backward_args;

/* Gradients of the forward call recorded in `saved`: training mode treats
 * renorm's r, d and the adjustment as constants (TensorFlow's stop_gradient);
 * inference mode uses the moving statistics of that call. */
BNORM_API bnorm_status bnorm_layer_backward(const bnorm_layer *layer,
                                  const bnorm_backward_args *args);

/* ---- Regularizers and constraints ---- */

/* Keras layer.losses: one loss per regularized variable, gamma's first.
 * Writes up to `capacity` values; `*count` receives the number of losses. */
BNORM_API bnorm_status bnorm_layer_regularization_losses(const bnorm_layer *layer,
                                               double *losses,
                                               size_t capacity, size_t *count);
/* Adds the regularizers' gradients to dgamma / dbeta (`channels` elements
 * of the layer's dtype; either may be NULL to skip it). */
BNORM_API bnorm_status bnorm_layer_add_regularization_gradients(const bnorm_layer *layer,
                                                      void *dgamma,
                                                      void *dbeta);
/* Applies gamma_constraint and beta_constraint, as a Keras optimizer does
 * after each update. */
BNORM_API bnorm_status bnorm_layer_apply_constraints(bnorm_layer *layer);

/* ---- Saving and loading variables ---- */

/* File format "bnorm variables", all integers little-endian:
 *   magic   8 bytes  "BNORMVAR"
 *   version u32      1 (all data float32) or 2 (flags bit 1 may be set)
 *   count   u32      number of variables
 *   per variable:
 *     name_len u32, name bytes (short name, no NUL)
 *     rank u32, dims u64[rank]
 *     flags u32 (bit 0: trainable; bit 1: data is float64)
 *     data float32 or float64 [product of dims] (IEEE-754 little-endian)
 *   crc32   u32      CRC-32 (IEEE) of every byte before it
 * A float32 layer writes version 1 (readable by bnorm 0.1), a float64 layer
 * version 2. Loading requires a built layer whose variables have the same
 * names and shapes; data of the other dtype is converted (float64 rounded
 * to float32), as Keras' load_weights casts. It checks everything before
 * changing anything, and leaves the layer as it was on any error. */
BNORM_API bnorm_status bnorm_layer_save(const bnorm_layer *layer, const char *path);
BNORM_API bnorm_status bnorm_layer_load(bnorm_layer *layer, const char *path);
/* The same format in memory (size query: out NULL or capacity too small
 * returns BNORM_ERR_INVALID_ARGUMENT with *size set). */
BNORM_API bnorm_status bnorm_layer_save_to_buffer(const bnorm_layer *layer, void *out,
                                        size_t capacity, size_t *size);
BNORM_API bnorm_status bnorm_layer_load_from_buffer(bnorm_layer *layer, const void *data,
                                          size_t size);

#ifdef __cplusplus
}
#endif

#endif /* BNORM_H */
