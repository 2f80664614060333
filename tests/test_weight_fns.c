/* Initializers, regularizers and constraints (src/initializers.c,
 * regularizers.c, constraints.c). Regularizers and constraints are checked
 * against numbers computed by real tf_keras (golden/weight_fns.txt). */
#include "harness.h"
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Defined in src/initializers.c for this test only. */
void bn_philox4x32_10_for_test(const uint32_t counter[4], const uint32_t key[2],
                               uint32_t out[4]);

/* ---- initializers ---- */

static void test_philox_known_answers(void) {
  /* Random123's kat_vectors for philox4x32_10. */
  static const uint32_t cases[3][10] = {
      {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
      {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff,
       0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
      {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0,
       0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}};
  for (int i = 0; i < 3; i++) {
    uint32_t out[4];
    bn_philox4x32_10_for_test(cases[i], cases[i] + 4, out);
    CHECKF(memcmp(out, cases[i] + 6, sizeof out) == 0,
           "philox KAT %d: %08x %08x %08x %08x", i, out[0], out[1], out[2], out[3]);
  }
}

static void fill(const bnorm_initializer *init, double *values, size_t count,
                 uint64_t fallback_seed) {
  int64_t shape[1] = {(int64_t)count};
  CHECK_OK(bn_initializer_fill(init, BNORM_FLOAT32, values, count, shape, 1, fallback_seed,
                               "test_initializer"));
}

static void moments(const double *x, size_t n, double *mean, double *stddev,
                    double *lo, double *hi) {
  double s = 0, s2 = 0;
  *lo = INFINITY;
  *hi = -INFINITY;
  for (size_t i = 0; i < n; i++) {
    s += x[i];
    if (x[i] < *lo) *lo = x[i];
    if (x[i] > *hi) *hi = x[i];
  }
  *mean = s / (double)n;
  for (size_t i = 0; i < n; i++) s2 += (x[i] - *mean) * (x[i] - *mean);
  *stddev = sqrt(s2 / (double)n);
}

static int fail_init(double *values, size_t count, const int64_t *shape, int rank,
                     void *user_data) {
  (void)shape; (void)rank; (void)user_data;
  if (count) values[0] = 123; /* a partial write the layer must not rely on */
  return 5;
}

static int shape_init(double *values, size_t count, const int64_t *shape,
                      int rank, void *user_data) {
  int *calls = user_data;
  (*calls)++;
  for (size_t i = 0; i < count; i++) values[i] = (float)(i + (size_t)rank * 100);
  return shape[0] == 2 && shape[1] == 3 ? 0 : 1;
}

static void test_initializers(void) {
  enum { N = 200000 };
  double *a = malloc(N * sizeof *a), *b = malloc(N * sizeof *b);
  if (!a || !b) {
    CHECK(false);
    free(a);
    free(b);
    return;
  }
  bnorm_initializer init = bnorm_initializer_zeros();
  fill(&init, a, 5, 0);
  CHECK(a[0] == 0 && a[4] == 0);
  init = bnorm_initializer_ones();
  fill(&init, a, 5, 0);
  CHECK(a[0] == 1 && a[4] == 1);
  init = bnorm_initializer_constant(0.1);
  fill(&init, a, 5, 0);
  CHECK(a[0] == 0.1f && a[4] == 0.1f);

  double mean, stddev, lo, hi;
  init = bnorm_initializer_seeded(bnorm_initializer_random_normal(0.5, 2.0), 1);
  fill(&init, a, N, 0);
  moments(a, N, &mean, &stddev, &lo, &hi);
  CHECKF(fabs(mean - 0.5) < 0.03 && fabs(stddev - 2.0) < 0.03,
         "RandomNormal: mean %g stddev %g", mean, stddev);
  CHECK(lo < 0.5 - 2 * 4.0 && hi > 0.5 + 2 * 4.0); /* tails beyond 4 sigma */

  init = bnorm_initializer_seeded(bnorm_initializer_truncated_normal(-1, 0.5), 2);
  fill(&init, a, N, 0);
  moments(a, N, &mean, &stddev, &lo, &hi);
  /* A normal truncated at 2 sigma has stddev 0.8796 sigma. */
  CHECKF(fabs(mean + 1) < 0.01 && fabs(stddev - 0.5 * 0.8796) < 0.01,
         "TruncatedNormal: mean %g stddev %g", mean, stddev);
  CHECKF(lo >= -2.0f && hi <= 0.0f, "TruncatedNormal range [%g, %g]", lo, hi);
  CHECK(lo < -1.99 && hi > -0.01);

  init = bnorm_initializer_seeded(bnorm_initializer_random_uniform(-3, 5), 3);
  fill(&init, a, N, 0);
  moments(a, N, &mean, &stddev, &lo, &hi);
  CHECKF(fabs(mean - 1) < 0.05 && fabs(stddev - 8 / sqrt(12.0)) < 0.03,
         "RandomUniform: mean %g stddev %g", mean, stddev);
  CHECK(lo >= -3 && hi < 5 && lo < -2.99 && hi > 4.99);

  /* Determinism: the same seed gives the same values whatever the fallback
   * seed; element i does not depend on the count; seeds differ. */
  static const bnorm_initializer_kind kinds[] = {
      BNORM_INIT_RANDOM_NORMAL, BNORM_INIT_RANDOM_UNIFORM,
      BNORM_INIT_TRUNCATED_NORMAL};
  for (size_t k = 0; k < 3; k++) {
    bnorm_initializer r = bnorm_initializer_random_normal(0, 1);
    r.kind = kinds[k];
    r.minval = -1;
    r.maxval = 1;
    bnorm_initializer seeded = bnorm_initializer_seeded(r, 77);
    fill(&seeded, a, 1000, 1);
    fill(&seeded, b, 10, 2);
    CHECK(memcmp(a, b, 10 * sizeof *a) == 0);
    fill(&r, b, 1000, 77); /* unseeded: the fallback seed is used */
    CHECK(memcmp(a, b, 1000 * sizeof *a) == 0);
    fill(&r, b, 1000, 78);
    size_t equal = 0;
    for (size_t i = 0; i < 1000; i++) equal += a[i] == b[i];
    CHECKF(equal < 5, "kind %d: %zu equal values across seeds", (int)kinds[k], equal);
    bnorm_initializer big = bnorm_initializer_seeded(r, UINT64_MAX);
    fill(&big, b, 1000, 0);
    CHECK(memcmp(a, b, 1000 * sizeof *a) != 0);
  }

  /* Pinned values, the same on every platform and build (also checked with
   * an independent Python model of the generator using libm's log). The
   * normals at 12..15 include element 12, which is beyond 2 sigma in the
   * first draw and redrawn by TruncatedNormal. */
  bnorm_initializer pinned[3] = {
      bnorm_initializer_seeded(bnorm_initializer_random_normal(0, 1), 42),
      bnorm_initializer_seeded(bnorm_initializer_random_uniform(0, 1), 42),
      bnorm_initializer_seeded(bnorm_initializer_truncated_normal(0, 1), 42)};
  static const uint32_t want_bits[4][4] = {
      {0x3e38e8f4, 0x3ea0186f, 0x3f96a677, 0x3fca2e03},  /* normal 0..3 */
      {0x3f1ceaf0, 0x3f7cdb21, 0x3f536c02, 0x3f3ac704},  /* uniform 0..3 */
      {0xc017de38, 0xbf8efe12, 0xbe9c5555, 0x3eee7e73},  /* normal 12..15 */
      {0x3e97ec0f, 0xbf8efe12, 0xbe9c5555, 0x3eee7e73}}; /* truncated 12..15 */
  double got[4][16];
  fill(&pinned[0], got[0], 4, 0);
  fill(&pinned[1], got[1], 4, 0);
  fill(&pinned[0], a, 16, 0);
  memcpy(got[2], a + 12, 4 * sizeof *a);
  fill(&pinned[2], a, 16, 0);
  memcpy(got[3], a + 12, 4 * sizeof *a);
  for (int k = 0; k < 4; k++)
    for (int i = 0; i < 4; i++) {
      float value = (float)got[k][i];
      uint32_t bits;
      memcpy(&bits, &value, sizeof bits);
      CHECKF(bits == want_bits[k][i], "pinned value %d/%d: 0x%08x (%.9g), want 0x%08x",
             k, i, (unsigned)bits, got[k][i], (unsigned)want_bits[k][i]);
    }

  /* Callbacks receive the shape; a failure is BNORM_ERR_CALLBACK. */
  int calls = 0;
  bnorm_initializer cb;
  memset(&cb, 0, sizeof cb);
  cb.kind = BNORM_INIT_CALLBACK;
  cb.fn = shape_init;
  cb.user_data = &calls;
  int64_t shape[2] = {2, 3};
  CHECK_OK(bn_initializer_fill(&cb, BNORM_FLOAT32, a, 6, shape, 2, 0, "gamma_initializer"));
  CHECK(calls == 1 && a[5] == 205);
  shape[1] = 4;
  CHECK_STATUS(bn_initializer_fill(&cb, BNORM_FLOAT32, a, 8, shape, 2, 0, "gamma_initializer"),
               BNORM_ERR_CALLBACK);
  cb.fn = fail_init;
  cb.name = "Flaky";
  CHECK_STATUS(bn_initializer_fill(&cb, BNORM_FLOAT32, a, 6, shape, 2, 0, "gamma_initializer"),
               BNORM_ERR_CALLBACK);
  CHECKF(strstr(bnorm_last_error(), "gamma_initializer") &&
             strstr(bnorm_last_error(), "Flaky") && strstr(bnorm_last_error(), "5"),
         "message: %s", bnorm_last_error());
  cb.fn = NULL;
  CHECK_STATUS(bn_initializer_validate(&cb, "beta_initializer"),
               BNORM_ERR_INVALID_CONFIG);
  CHECK_STATUS(bn_initializer_fill(&cb, BNORM_FLOAT32, a, 6, shape, 2, 0, "beta_initializer"),
               BNORM_ERR_INVALID_CONFIG);
  free(a);
  free(b);
}

/* ---- golden regularizers and constraints ---- */

typedef struct tokens {
  char *text;
  char *cursor;
} tokens;

static const char *next_token(tokens *t) {
  while (*t->cursor == ' ') t->cursor++;
  if (!*t->cursor) return NULL;
  char *start = t->cursor;
  while (*t->cursor && *t->cursor != ' ') t->cursor++;
  if (*t->cursor) *t->cursor++ = '\0';
  return start;
}

static bool next_double(tokens *t, double *out) {
  const char *s = next_token(t);
  if (!s) return false;
  char *end;
  *out = strtod(s, &end);
  return *end == '\0';
}

static bool next_int(tokens *t, long *out) {
  const char *s = next_token(t);
  if (!s) return false;
  char *end;
  *out = strtol(s, &end, 10);
  return *end == '\0';
}

/* Reads rank, dims and the weights. */
static bool read_tensor(tokens *t, int64_t *shape, int *rank, double **w,
                        size_t *count) {
  long r;
  if (!next_int(t, &r) || r < 0 || r > BNORM_MAX_RANK + 1) return false;
  *rank = (int)r;
  size_t n = 1;
  for (int d = 0; d < *rank; d++) {
    long dim;
    if (!next_int(t, &dim) || dim < 0) return false;
    shape[d] = dim;
    n *= (size_t)dim;
  }
  *count = n;
  *w = malloc((n ? n : 1) * sizeof **w);
  if (!*w) return false;
  for (size_t i = 0; i < n; i++) {
    double v;
    if (!next_double(t, &v)) return false;
    (*w)[i] = (float)v;
  }
  return true;
}

static bool read_doubles(tokens *t, double *out, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!next_double(t, &out[i])) return false;
  return true;
}

static bnorm_regularizer regularizer_named(const char *kind, double l1,
                                           double l2) {
  if (strcmp(kind, "L1") == 0) return bnorm_regularizer_l1(l1);
  if (strcmp(kind, "L2") == 0) return bnorm_regularizer_l2(l2);
  return bnorm_regularizer_l1_l2(l1, l2);
}

static int regularizer_lines, constraint_lines;

static void check_regularizer_line(tokens *t, int line) {
  const char *kind = next_token(t);
  double l1 = 0, l2 = 0;
  int64_t shape[BNORM_MAX_RANK + 1];
  int rank;
  double *w = NULL;
  size_t n;
  bool ok = kind && next_double(t, &l1) && next_double(t, &l2) &&
            read_tensor(t, shape, &rank, &w, &n);
  double loss_want = 0;
  double *grad_want = ok ? malloc((n ? n : 1) * sizeof *grad_want) : NULL;
  ok = ok && grad_want && next_double(t, &loss_want) &&
       read_doubles(t, grad_want, n) && next_token(t) == NULL;
  CHECKF(ok, "golden/weight_fns.txt line %d is malformed", line);
  if (ok) {
    regularizer_lines++;
    bnorm_regularizer reg = regularizer_named(kind, l1, l2);
    /* The gradient is ADDED: start from ones and subtract them again. */
    double *grad = malloc((n ? n : 1) * sizeof *grad);
    for (size_t i = 0; grad && i < n; i++) grad[i] = 1.0f;
    double loss = -1;
    CHECK_OK(bn_regularizer_apply(&reg, BNORM_FLOAT32, w, n, &loss, grad, "gamma_regularizer"));
    /* TF reduces in float32, bnorm in double: a few float32 ulps apart. */
    CHECKF(fabs(loss - loss_want) <= 1e-6 * fabs(loss_want) + 1e-30,
           "line %d %s: loss %.9g, tf_keras %.9g", line, kind, loss, loss_want);
    for (size_t i = 0; grad && i < n; i++) grad_want[i] += 1.0;
    if (grad) {
      char what[64];
      snprintf(what, sizeof what, "line %d %s gradient", line, kind);
      th_close64(grad, grad_want, n, 1e-7, 0, __FILE__, __LINE__, what);
    }
    /* Without a gradient buffer the loss is the same. */
    double loss2 = -1;
    CHECK_OK(bn_regularizer_apply(&reg, BNORM_FLOAT32, w, n, &loss2, NULL, "gamma_regularizer"));
    CHECK(loss2 == loss);
    free(grad);
  }
  free(w);
  free(grad_want);
}

static bnorm_constraint constraint_named(const char *kind, double lo, double hi,
                                         double rate) {
  if (strcmp(kind, "NonNeg") == 0) return bnorm_constraint_non_neg();
  if (strcmp(kind, "UnitNorm") == 0) return bnorm_constraint_unit_norm();
  if (strcmp(kind, "MaxNorm") == 0) return bnorm_constraint_max_norm(hi);
  return bnorm_constraint_min_max_norm(lo, hi, rate);
}

static void check_constraint_line(tokens *t, int line) {
  const char *kind = next_token(t);
  double lo = 0, hi = 0, rate = 0;
  long naxes = 0;
  bool ok = kind && next_double(t, &lo) && next_double(t, &hi) &&
            next_double(t, &rate) && next_int(t, &naxes) && naxes >= 1 &&
            naxes <= BNORM_MAX_RANK + 1;
  bnorm_constraint c = constraint_named(kind ? kind : "", lo, hi, rate);
  for (long i = 0; ok && i < naxes; i++) {
    long a = 0;
    ok = next_int(t, &a);
    c.axis[i] = (int)a;
  }
  c.axis_count = (int)naxes;
  int64_t shape[BNORM_MAX_RANK + 1];
  int rank;
  double *w = NULL;
  size_t n = 0;
  ok = ok && read_tensor(t, shape, &rank, &w, &n);
  double *want = ok ? malloc((n ? n : 1) * sizeof *want) : NULL;
  ok = ok && want && read_doubles(t, want, n) && next_token(t) == NULL;
  CHECKF(ok, "golden/weight_fns.txt line %d is malformed", line);
  if (ok) {
    constraint_lines++;
    CHECK_OK(bn_constraint_apply(&c, BNORM_FLOAT32, w, n, shape, rank, "gamma_constraint"));
    char what[64];
    snprintf(what, sizeof what, "line %d %s", line, kind);
    /* Norms summed in double vs TF's float32: within 2 float32 ulps. */
    bool nan_ok = true;
    for (size_t i = 0; i < n; i++)
      if (isnan(want[i]) != isnan(w[i])) nan_ok = false;
    CHECKF(nan_ok, "%s: NaN pattern differs", what);
    th_close64(w, want, n, 2.5e-7, 1e-30, __FILE__, __LINE__, what);
  }
  free(w);
  free(want);
}

static void test_golden(void) {
  FILE *f = fopen("golden/weight_fns.txt", "rb");
  CHECKF(f != NULL, "golden/weight_fns.txt is readable (tests run in tests/)");
  if (!f) return;
  size_t capacity = 1 << 20, n;
  char *data = malloc(capacity + 1);
  n = data ? fread(data, 1, capacity, f) : 0;
  fclose(f);
  if (!data) return;
  CHECK(n < capacity);
  data[n] = '\0';
  int line_number = 0;
  for (char *line = data; *line;) {
    char *end = strchr(line, '\n');
    bool more = end != NULL;
    if (!end) end = line + strlen(line);
    *end = '\0';
    line_number++;
    tokens t = {line, line};
    if (line[0] != '#' && line[0] != '\0') {
      const char *tag = next_token(&t);
      if (strcmp(tag, "reg") == 0)
        check_regularizer_line(&t, line_number);
      else if (strcmp(tag, "con") == 0)
        check_constraint_line(&t, line_number);
      else
        CHECKF(false, "line %d: unknown record '%s'", line_number, tag);
    }
    line = more ? end + 1 : end;
  }
  CHECKF(regularizer_lines >= 30 && constraint_lines >= 40,
         "golden records: %d regularizer, %d constraint", regularizer_lines,
         constraint_lines);
  free(data);
}

/* ---- regularizer and constraint edge cases ---- */

static int fail_reg(const double *weight, size_t count, double *loss,
                    double *gradient, void *user_data) {
  (void)weight; (void)count; (void)gradient; (void)user_data;
  *loss = 99;
  return -1;
}

static int sum_reg(const double *weight, size_t count, double *loss,
                   double *gradient, void *user_data) {
  (void)user_data;
  double s = 0;
  for (size_t i = 0; i < count; i++) {
    s += weight[i];
    if (gradient) gradient[i] += 1;
  }
  *loss = s;
  return 0;
}

static void test_regularizer_edges(void) {
  double w[4] = {0.0f, -0.0f, 2.0f, -3.0f};
  double g[4] = {0, 0, 0, 0};
  double loss;
  /* d|w|/dw = sign(w), sign(0) = 0. */
  bnorm_regularizer l1 = bnorm_regularizer_l1(0.5);
  CHECK_OK(bn_regularizer_apply(&l1, BNORM_FLOAT32, w, 4, &loss, g, "beta_regularizer"));
  CHECK(loss == 2.5 && g[0] == 0 && g[1] == 0 && g[2] == 0.5f && g[3] == -0.5f);
  /* Coefficients act as float32, as Keras' cast_to_floatx makes them. */
  bnorm_regularizer l2 = bnorm_regularizer_l2(0.1);
  CHECK_OK(bn_regularizer_apply(&l2, BNORM_FLOAT32, w, 4, &loss, NULL, "beta_regularizer"));
  CHECK(loss == (double)0.1f * 13.0);
  /* L1L2 skips a zero term (0 * inf would be NaN); L1(0) does not. */
  double inf_w[1] = {INFINITY};
  bnorm_regularizer l1l2 = bnorm_regularizer_l1_l2(0.0, 0.1);
  CHECK_OK(bn_regularizer_apply(&l1l2, BNORM_FLOAT32, inf_w, 1, &loss, NULL, "r"));
  CHECK(isinf(loss));
  bnorm_regularizer l1_zero = bnorm_regularizer_l1(0.0);
  CHECK_OK(bn_regularizer_apply(&l1_zero, BNORM_FLOAT32, inf_w, 1, &loss, NULL, "r"));
  CHECK(isnan(loss));
  bnorm_regularizer none = bnorm_regularizer_none();
  loss = 5;
  CHECK_OK(bn_regularizer_apply(&none, BNORM_FLOAT32, w, 4, &loss, g, "r"));
  CHECK(loss == 0);
  CHECK_OK(bn_regularizer_apply(&l1, BNORM_FLOAT32, w, 0, &loss, g, "r"));
  CHECK(loss == 0);

  bnorm_regularizer cb;
  memset(&cb, 0, sizeof cb);
  cb.kind = BNORM_REG_CALLBACK;
  cb.fn = sum_reg;
  memset(g, 0, sizeof g);
  CHECK_OK(bn_regularizer_apply(&cb, BNORM_FLOAT32, w, 4, &loss, g, "gamma_regularizer"));
  CHECK(loss == -1 && g[3] == 1);
  cb.fn = fail_reg;
  loss = 7;
  CHECK_STATUS(bn_regularizer_apply(&cb, BNORM_FLOAT32, w, 4, &loss, g, "gamma_regularizer"),
               BNORM_ERR_CALLBACK);
  CHECK(loss == 7); /* not written on failure */
  CHECK(strstr(bnorm_last_error(), "gamma_regularizer") != NULL);

  bnorm_regularizer bad = bnorm_regularizer_l1(NAN);
  CHECK_STATUS(bn_regularizer_validate(&bad, "beta_regularizer"),
               BNORM_ERR_INVALID_CONFIG);
  CHECK(strstr(bnorm_last_error(), "not a valid regularization penalty number"));
  CHECK_STATUS(bn_regularizer_apply(&bad, BNORM_FLOAT32, w, 4, &loss, g, "beta_regularizer"),
               BNORM_ERR_INVALID_CONFIG);
  bad = bnorm_regularizer_l1_l2(0.1, -INFINITY);
  CHECK_STATUS(bn_regularizer_validate(&bad, "beta_regularizer"),
               BNORM_ERR_INVALID_CONFIG);
  bad.kind = (bnorm_regularizer_kind)12;
  CHECK_STATUS(bn_regularizer_validate(&bad, "beta_regularizer"),
               BNORM_ERR_INVALID_CONFIG);
}

static int fail_constraint(double *weight, size_t count, const int64_t *shape,
                           int rank, void *user_data) {
  (void)shape; (void)rank; (void)user_data;
  for (size_t i = 0; i < count; i++) weight[i] = -1; /* scribbles, then fails */
  return 3;
}

static int clamp_constraint(double *weight, size_t count, const int64_t *shape,
                            int rank, void *user_data) {
  (void)shape; (void)rank; (void)user_data;
  for (size_t i = 0; i < count; i++)
    if (weight[i] > 1) weight[i] = 1;
  return 0;
}

static void test_constraint_edges(void) {
  double w[6] = {3, -4, 0, 1, 2, -2};
  double before[6];
  memcpy(before, w, sizeof w);
  int64_t shape[2] = {2, 3};

  /* Failures leave the weight unchanged. */
  bnorm_constraint cb;
  memset(&cb, 0, sizeof cb);
  cb.kind = BNORM_CONSTRAINT_CALLBACK;
  cb.fn = fail_constraint;
  cb.name = "Scribbler";
  CHECK_STATUS(bn_constraint_apply(&cb, BNORM_FLOAT32, w, 6, shape, 2, "gamma_constraint"),
               BNORM_ERR_CALLBACK);
  CHECK(memcmp(w, before, sizeof w) == 0);
  CHECK(strstr(bnorm_last_error(), "Scribbler") != NULL);
  cb.fn = clamp_constraint;
  CHECK_OK(bn_constraint_apply(&cb, BNORM_FLOAT32, w, 6, shape, 2, "gamma_constraint"));
  CHECK(w[0] == 1 && w[1] == -4 && w[4] == 1);
  memcpy(w, before, sizeof w);

  bnorm_constraint unit = bnorm_constraint_unit_norm();
  unit.axis[0] = 2;
  CHECK_STATUS(bn_constraint_apply(&unit, BNORM_FLOAT32, w, 6, shape, 2, "gamma_constraint"),
               BNORM_ERR_SHAPE);
  CHECK(strstr(bnorm_last_error(), "axis 2") != NULL);
  unit.axis[0] = -3;
  CHECK_STATUS(bn_constraint_apply(&unit, BNORM_FLOAT32, w, 6, shape, 2, "gamma_constraint"),
               BNORM_ERR_SHAPE);
  unit.axis[0] = 0;
  unit.axis[1] = -2; /* the same dimension twice once resolved */
  unit.axis_count = 2;
  CHECK_STATUS(bn_constraint_apply(&unit, BNORM_FLOAT32, w, 6, shape, 2, "gamma_constraint"),
               BNORM_ERR_SHAPE);
  unit.axis_count = 1;
  CHECK_STATUS(bn_constraint_apply(&unit, BNORM_FLOAT32, w, 5, shape, 2, "gamma_constraint"),
               BNORM_ERR_SHAPE);
  bnorm_constraint bad = bnorm_constraint_min_max_norm(0, 1, NAN);
  CHECK_STATUS(bn_constraint_apply(&bad, BNORM_FLOAT32, w, 6, shape, 2, "beta_constraint"),
               BNORM_ERR_INVALID_CONFIG);
  CHECK(memcmp(w, before, sizeof w) == 0);

  /* Axis 0 of a (2, 3) weight: one norm per column. */
  CHECK_OK(bn_constraint_apply(&unit, BNORM_FLOAT32, w, 6, shape, 2, "gamma_constraint"));
  double col0 = sqrt(3.0 * 3.0 + 1.0);
  CHECK(fabs(w[0] - 3 / col0) < 1e-6 && fabs(w[3] - 1 / col0) < 1e-6);
  CHECK(fabs(w[1] + 4 / sqrt(20.0)) < 1e-6);

  /* A zero weight stays zero (epsilon keeps the division finite). */
  double zero[3] = {0, 0, 0};
  int64_t shape3[1] = {3};
  CHECK_OK(bn_constraint_apply(&unit, BNORM_FLOAT32, zero, 3, shape3, 1, "gamma_constraint"));
  CHECK(zero[0] == 0 && zero[2] == 0);
  bnorm_constraint max_norm = bnorm_constraint_max_norm(2);
  CHECK_OK(bn_constraint_apply(&max_norm, BNORM_FLOAT32, zero, 3, shape3, 1, "gamma_constraint"));
  CHECK(zero[1] == 0);
  /* NonNeg: w * (w >= 0), so -inf becomes NaN as in Keras. */
  double odd[4] = {-INFINITY, -0.0f, NAN, 1.5f};
  bnorm_constraint non_neg = bnorm_constraint_non_neg();
  int64_t shape4[1] = {4};
  CHECK_OK(bn_constraint_apply(&non_neg, BNORM_FLOAT32, odd, 4, shape4, 1, "beta_constraint"));
  CHECK(isnan(odd[0]) && odd[1] == 0 && signbit(odd[1]) && isnan(odd[2]) &&
        odd[3] == 1.5f);
  /* Empty weights are fine. */
  int64_t empty_shape[1] = {0};
  CHECK_OK(bn_constraint_apply(&unit, BNORM_FLOAT32, NULL, 0, empty_shape, 1, "gamma_constraint"));
  bnorm_constraint none = bnorm_constraint_none();
  CHECK_OK(bn_constraint_apply(&none, BNORM_FLOAT32, w, 6, shape, 2, "gamma_constraint"));
}

int main(void) {
  test_philox_known_answers();
  test_initializers();
  test_golden();
  test_regularizer_edges();
  test_constraint_edges();
  return th_finish();
}
