/* Configuration: defaults, validation (Keras' constructor checks and
 * bnorm's), get_config JSON byte-identical to tf_keras 2.21, from_config. */
#include "harness.h"
#include "bnorm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ---- */

static bool same_initializer(const bnorm_initializer *a,
                             const bnorm_initializer *b) {
  return a->kind == b->kind && a->value == b->value && a->mean == b->mean &&
         a->stddev == b->stddev && a->minval == b->minval &&
         a->maxval == b->maxval && a->has_seed == b->has_seed &&
         (!a->has_seed || a->seed == b->seed) && a->fn == b->fn &&
         a->user_data == b->user_data;
}

static char *to_json(const bnorm_config *config) {
  size_t length = 0;
  bnorm_status s = bnorm_config_to_json(config, NULL, 0, &length);
  if (s != BNORM_ERR_INVALID_ARGUMENT) {
    CHECKF(false, "measuring call returned %s: %s", bnorm_status_name(s),
           bnorm_last_error());
    return NULL;
  }
  char *text = malloc(length + 1);
  if (!text) return NULL;
  s = bnorm_config_to_json(config, text, length + 1, NULL);
  CHECKF(s == BNORM_OK, "to_json: %s", bnorm_last_error());
  if (s != BNORM_OK) {
    free(text);
    return NULL;
  }
  CHECK(strlen(text) == length);
  return text;
}

/* Expects `status` from validate, with a message naming `needle`. */
static void expect_invalid(const bnorm_config *config, bnorm_status status,
                           const char *needle, int line) {
  bnorm_status s = bnorm_config_validate(config);
  th_check(s == status, __FILE__, line, "validate returned %s, expected %s (%s)",
           bnorm_status_name(s), bnorm_status_name(status), bnorm_last_error());
  th_check(strstr(bnorm_last_error(), needle) != NULL, __FILE__, line,
           "message \"%s\" should mention \"%s\"", bnorm_last_error(), needle);
}
#define EXPECT_INVALID(cfg, needle) \
  expect_invalid((cfg), BNORM_ERR_INVALID_CONFIG, (needle), __LINE__)

/* from_json must fail with `status`, leave *config untouched, and say why. */
static void expect_json_error(const char *json, bnorm_status status,
                              const char *needle,
                              const bnorm_custom_objects *custom, int line) {
  bnorm_config config, before;
  memset(&config, 0xA5, sizeof config);
  memcpy(&before, &config, sizeof config);
  bnorm_status s = bnorm_config_from_json(json, &config, custom);
  th_check(s == status, __FILE__, line, "from_json returned %s, expected %s (%s) for %s",
           bnorm_status_name(s), bnorm_status_name(status), bnorm_last_error(),
           json);
  th_check(memcmp(&config, &before, sizeof config) == 0, __FILE__, line,
           "config changed by a failed from_json");
  th_check(needle == NULL || strstr(bnorm_last_error(), needle) != NULL,
           __FILE__, line, "message \"%s\" should mention \"%s\"",
           bnorm_last_error(), needle ? needle : "");
}
#define EXPECT_JSON_ERROR(json, status, needle) \
  expect_json_error((json), (status), (needle), NULL, __LINE__)

static int noop_init(double *values, size_t count, const int64_t *shape,
                     int rank, void *user_data) {
  (void)values; (void)count; (void)shape; (void)rank; (void)user_data;
  return 0;
}
static int noop_reg(const double *weight, size_t count, double *loss,
                    double *gradient, void *user_data) {
  (void)weight; (void)count; (void)gradient; (void)user_data;
  *loss = 0;
  return 0;
}
static int noop_constraint(double *weight, size_t count, const int64_t *shape,
                           int rank, void *user_data) {
  (void)weight; (void)count; (void)shape; (void)rank; (void)user_data;
  return 0;
}
static int noop_adjustment(const int64_t *input_shape, int rank, double *scale,
                           double *bias, size_t channels, void *user_data) {
  (void)input_shape; (void)rank; (void)user_data;
  for (size_t i = 0; i < channels; i++) {
    scale[i] = 1;
    bias[i] = 0;
  }
  return 0;
}

/* ---- defaults ---- */

static void test_defaults(void) {
  bnorm_config c;
  memset(&c, 0x5A, sizeof c);
  bnorm_config_init(&c);
  CHECK(c.behavior == BNORM_BEHAVIOR_KERAS);
  CHECK(c.axis_count == 1 && c.axis[0] == -1 && !c.axis_is_list);
  CHECK(c.momentum == 0.99 && c.epsilon == 1e-3);
  CHECK(c.center && c.scale);
  CHECK(c.beta_initializer.kind == BNORM_INIT_ZEROS);
  CHECK(c.gamma_initializer.kind == BNORM_INIT_ONES);
  CHECK(c.moving_mean_initializer.kind == BNORM_INIT_ZEROS);
  CHECK(c.moving_variance_initializer.kind == BNORM_INIT_ONES);
  CHECK(!c.gamma_initializer.has_seed);
  CHECK(c.beta_regularizer.kind == BNORM_REG_NONE);
  CHECK(c.gamma_regularizer.kind == BNORM_REG_NONE);
  CHECK(c.beta_constraint.kind == BNORM_CONSTRAINT_NONE);
  CHECK(c.gamma_constraint.kind == BNORM_CONSTRAINT_NONE);
  CHECK(!c.renorm && c.renorm_momentum == 0.99);
  CHECK(!c.renorm_clipping_has_rmax && !c.renorm_clipping_has_rmin &&
        !c.renorm_clipping_has_dmax);
  CHECK(c.fused == BNORM_FUSED_AUTO && c.trainable);
  CHECK(c.virtual_batch_size == 0 && c.adjustment == NULL &&
        c.adjustment_user_data == NULL);
  CHECK(c.name[0] == '\0' && !c.fused_epsilon_floor);
  CHECK_OK(bnorm_config_validate(&c));
  CHECK(bnorm_last_error()[0] == '\0');
  bnorm_config_init(NULL); /* a no-op */

  /* Keras' default parameters of the built-in objects. */
  bnorm_initializer i = bnorm_initializer_random_normal(0.0, 0.05);
  CHECK(i.kind == BNORM_INIT_RANDOM_NORMAL && i.mean == 0 && i.stddev == 0.05);
  i = bnorm_initializer_seeded(bnorm_initializer_random_uniform(-0.05, 0.05), 9);
  CHECK(i.kind == BNORM_INIT_RANDOM_UNIFORM && i.minval == -0.05 &&
        i.maxval == 0.05 && i.has_seed && i.seed == 9);
  i = bnorm_initializer_truncated_normal(1, 2);
  CHECK(i.kind == BNORM_INIT_TRUNCATED_NORMAL && i.mean == 1 && i.stddev == 2);
  CHECK(bnorm_initializer_constant(2.5).value == 2.5);
  bnorm_regularizer r = bnorm_regularizer_l1_l2(0.1, 0.2);
  CHECK(r.kind == BNORM_REG_L1L2 && r.l1 == 0.1 && r.l2 == 0.2);
  CHECK(bnorm_regularizer_l1(0.01).kind == BNORM_REG_L1);
  CHECK(bnorm_regularizer_l2(0.01).l2 == 0.01);
  CHECK(bnorm_regularizer_none().kind == BNORM_REG_NONE);
  bnorm_constraint k = bnorm_constraint_max_norm(2);
  CHECK(k.kind == BNORM_CONSTRAINT_MAX_NORM && k.max_value == 2 &&
        k.axis_count == 1 && k.axis[0] == 0);
  k = bnorm_constraint_min_max_norm(0, 1, 1);
  CHECK(k.min_value == 0 && k.max_value == 1 && k.rate == 1 && k.axis_count == 1);
  CHECK(bnorm_constraint_unit_norm().axis_count == 1);
  CHECK(bnorm_constraint_non_neg().kind == BNORM_CONSTRAINT_NON_NEG);
  CHECK(bnorm_constraint_none().kind == BNORM_CONSTRAINT_NONE);
}

/* ---- validation ---- */

static void test_validation(void) {
  bnorm_config c;
  CHECK_STATUS(bnorm_config_validate(NULL), BNORM_ERR_NULL_ARGUMENT);

  bnorm_config_init(&c);
  c.behavior = (bnorm_behavior)7;
  EXPECT_INVALID(&c, "behavior");
  bnorm_config_init(&c);
  c.fused = (bnorm_fused)-1;
  EXPECT_INVALID(&c, "fused");
  bnorm_config_init(&c);
  c.axis_count = 0;
  EXPECT_INVALID(&c, "axis_count");
  c.axis_count = BNORM_MAX_RANK + 1;
  EXPECT_INVALID(&c, "axis_count");
  bnorm_config_init(&c);
  memset(c.name, 'x', sizeof c.name);
  EXPECT_INVALID(&c, "name");
  bnorm_config_init(&c);
  c.momentum = NAN;
  EXPECT_INVALID(&c, "momentum");
  c.momentum = INFINITY;
  EXPECT_INVALID(&c, "momentum");
  bnorm_config_init(&c);
  c.momentum = 1.5; /* Keras does not check the range */
  CHECK_OK(bnorm_config_validate(&c));
  bnorm_config_init(&c);
  c.epsilon = -1e-3;
  EXPECT_INVALID(&c, "epsilon");
  c.epsilon = NAN;
  EXPECT_INVALID(&c, "epsilon");
  c.epsilon = INFINITY;
  EXPECT_INVALID(&c, "epsilon");
  c.epsilon = 0;
  CHECK_OK(bnorm_config_validate(&c));

  /* Objects are validated with their field's name in the message. */
  bnorm_config_init(&c);
  c.gamma_initializer = bnorm_initializer_random_normal(0, NAN);
  EXPECT_INVALID(&c, "gamma_initializer");
  bnorm_config_init(&c);
  c.moving_variance_initializer.kind = BNORM_INIT_CALLBACK;
  EXPECT_INVALID(&c, "moving_variance_initializer");
  bnorm_config_init(&c);
  c.beta_initializer.kind = (bnorm_initializer_kind)99;
  EXPECT_INVALID(&c, "beta_initializer");
  bnorm_config_init(&c);
  c.moving_mean_initializer = bnorm_initializer_random_uniform(-INFINITY, 1);
  EXPECT_INVALID(&c, "moving_mean_initializer");
  bnorm_config_init(&c);
  c.beta_initializer = bnorm_initializer_constant(NAN);
  EXPECT_INVALID(&c, "beta_initializer");
  bnorm_config_init(&c);
  c.gamma_regularizer = bnorm_regularizer_l2(INFINITY);
  EXPECT_INVALID(&c, "not a valid regularization penalty number");
  bnorm_config_init(&c);
  c.beta_regularizer = bnorm_regularizer_l1_l2(0.1, NAN);
  EXPECT_INVALID(&c, "beta_regularizer");
  bnorm_config_init(&c);
  c.beta_regularizer = bnorm_regularizer_l1(1e39); /* inf as float32 */
  EXPECT_INVALID(&c, "float32");
  bnorm_config_init(&c);
  c.beta_regularizer = bnorm_regularizer_l1(-0.5); /* Keras allows negatives */
  CHECK_OK(bnorm_config_validate(&c));
  c.beta_regularizer.kind = BNORM_REG_CALLBACK;
  EXPECT_INVALID(&c, "beta_regularizer");
  bnorm_config_init(&c);
  c.gamma_constraint = bnorm_constraint_max_norm(NAN);
  EXPECT_INVALID(&c, "gamma_constraint");
  bnorm_config_init(&c);
  c.beta_constraint = bnorm_constraint_unit_norm();
  c.beta_constraint.axis_count = 0;
  EXPECT_INVALID(&c, "beta_constraint");
  c.beta_constraint.axis_count = 2;
  c.beta_constraint.axis[1] = 0;
  EXPECT_INVALID(&c, "twice");
  c.beta_constraint.axis[1] = 42;
  EXPECT_INVALID(&c, "beta_constraint");
  bnorm_config_init(&c);
  c.gamma_constraint.kind = BNORM_CONSTRAINT_CALLBACK;
  EXPECT_INVALID(&c, "gamma_constraint");
  c.gamma_constraint.kind = (bnorm_constraint_kind)-3;
  EXPECT_INVALID(&c, "gamma_constraint");

  /* renorm: clipping values may be inf, not NaN; checked only with renorm. */
  bnorm_config_init(&c);
  c.renorm_clipping_has_rmax = true;
  c.renorm_clipping_rmax = NAN;
  c.renorm_momentum = NAN;
  CHECK_OK(bnorm_config_validate(&c));
  c.renorm = true;
  EXPECT_INVALID(&c, "renorm_momentum");
  c.renorm_momentum = 0.9;
  EXPECT_INVALID(&c, "rmax");
  c.renorm_clipping_rmax = INFINITY;
  CHECK_OK(bnorm_config_validate(&c));
  c.renorm_clipping_has_dmax = true;
  c.renorm_clipping_dmax = NAN;
  EXPECT_INVALID(&c, "dmax");

  /* virtual_batch_size: Keras checks its sign and the adjustment conflict at
   * build (test_errors covers that), so the constructor accepts them. */
  bnorm_config_init(&c);
  c.virtual_batch_size = -2;
  CHECK_OK(bnorm_config_validate(&c));
  c.virtual_batch_size = 4;
  c.adjustment = noop_adjustment;
  CHECK_OK(bnorm_config_validate(&c));

  /* fused=True with the Keras behaviour: _raise_if_fused_cannot_be_used. */
  bnorm_config_init(&c);
  c.fused = BNORM_FUSED_TRUE;
  CHECK_OK(bnorm_config_validate(&c));
  static const int fused_ok[] = {-4, -3, -1, 1, 3, 4};
  for (size_t i = 0; i < sizeof fused_ok / sizeof fused_ok[0]; i++) {
    c.axis[0] = fused_ok[i];
    CHECKF(bnorm_config_validate(&c) == BNORM_OK, "fused axis %d", fused_ok[i]);
  }
  static const int fused_bad[] = {-2, 0, 2, 5, -5};
  for (size_t i = 0; i < sizeof fused_bad / sizeof fused_bad[0]; i++) {
    c.axis[0] = fused_bad[i];
    EXPECT_INVALID(&c, "only supported when axis is 1 or 3");
  }
  c.axis[0] = 1;
  c.axis[1] = 3;
  c.axis_count = 2;
  EXPECT_INVALID(&c, "[1, 3]");
  bnorm_config_init(&c);
  c.fused = BNORM_FUSED_TRUE;
  c.renorm = true;
  EXPECT_INVALID(&c, "`renorm=True` is not supported");
  bnorm_config_init(&c);
  c.fused = BNORM_FUSED_TRUE;
  c.virtual_batch_size = 2;
  EXPECT_INVALID(&c, "`virtual_batch_size` is specified");
  bnorm_config_init(&c);
  c.fused = BNORM_FUSED_TRUE;
  c.adjustment = noop_adjustment;
  EXPECT_INVALID(&c, "`adjustment` is specified");
  /* compat.v1 never raises for fused; it falls back at build. */
  c.behavior = BNORM_BEHAVIOR_COMPAT_V1;
  c.renorm = true;
  c.axis[0] = 2;
  CHECK_OK(bnorm_config_validate(&c));
  /* fused=False or AUTO never raises either. */
  c.behavior = BNORM_BEHAVIOR_KERAS;
  c.fused = BNORM_FUSED_AUTO;
  CHECK_OK(bnorm_config_validate(&c));
}

/* ---- to_json ---- */

static const char kDefaultJson[] =
    "{\"name\": \"batch_normalization\", \"trainable\": true, \"dtype\": "
    "\"float32\", \"axis\": -1, \"momentum\": 0.99, \"epsilon\": 0.001, "
    "\"center\": true, \"scale\": true, \"beta_initializer\": {\"module\": "
    "\"keras.initializers\", \"class_name\": \"Zeros\", \"config\": {}, "
    "\"registered_name\": null}, \"gamma_initializer\": {\"module\": "
    "\"keras.initializers\", \"class_name\": \"Ones\", \"config\": {}, "
    "\"registered_name\": null}, \"moving_mean_initializer\": {\"module\": "
    "\"keras.initializers\", \"class_name\": \"Zeros\", \"config\": {}, "
    "\"registered_name\": null}, \"moving_variance_initializer\": {\"module\": "
    "\"keras.initializers\", \"class_name\": \"Ones\", \"config\": {}, "
    "\"registered_name\": null}, \"beta_regularizer\": null, "
    "\"gamma_regularizer\": null, \"beta_constraint\": null, "
    "\"gamma_constraint\": null}";

static void test_to_json(void) {
  bnorm_config c;
  bnorm_config_init(&c);
  char *text = to_json(&c);
  CHECKF(text && strcmp(text, kDefaultJson) == 0, "default config: %s", text);
  free(text);

  /* The capacity/length protocol. */
  size_t length = 0;
  CHECK_STATUS(bnorm_config_to_json(&c, NULL, 0, &length),
               BNORM_ERR_INVALID_ARGUMENT);
  CHECK(length == strlen(kDefaultJson));
  CHECK(strstr(bnorm_last_error(), "bytes") != NULL);
  char *buf = malloc(length + 1);
  if (buf) {
    memset(buf, 'z', length + 1);
    CHECK_STATUS(bnorm_config_to_json(&c, buf, length, NULL),
                 BNORM_ERR_INVALID_ARGUMENT);
    CHECK(buf[0] == '\0');
    size_t again = 0;
    CHECK_OK(bnorm_config_to_json(&c, buf, length + 1, &again));
    CHECK(again == length && strcmp(buf, kDefaultJson) == 0);
    free(buf);
  }
  CHECK_STATUS(bnorm_config_to_json(NULL, NULL, 0, NULL), BNORM_ERR_NULL_ARGUMENT);
  CHECK_STATUS(bnorm_config_to_json(&c, NULL, 10, NULL), BNORM_ERR_NULL_ARGUMENT);

  /* Never written: fused, adjustment, behavior, the epsilon floor. */
  bnorm_config d = c;
  d.fused = BNORM_FUSED_FALSE;
  d.adjustment = noop_adjustment;
  d.behavior = BNORM_BEHAVIOR_COMPAT_V1;
  d.fused_epsilon_floor = true;
  text = to_json(&d);
  CHECK(text && strcmp(text, kDefaultJson) == 0);
  free(text);

  /* renorm_clipping and renorm_momentum only with renorm. */
  d = c;
  d.renorm_clipping_has_rmax = true;
  d.renorm_clipping_rmax = 3;
  d.renorm_momentum = 0.5;
  text = to_json(&d);
  CHECK(text && strstr(text, "renorm") == NULL);
  free(text);
  d.renorm = true;
  text = to_json(&d);
  CHECK(text && strstr(text, ", \"renorm\": true, \"renorm_clipping\": {\"rmax\": "
                             "3.0}, \"renorm_momentum\": 0.5}") != NULL);
  free(text);

  /* Callbacks are written as Keras writes custom objects. */
  d = c;
  d.gamma_initializer.kind = BNORM_INIT_CALLBACK;
  d.gamma_initializer.fn = noop_init;
  d.gamma_initializer.name = "MyInit";
  d.gamma_regularizer.kind = BNORM_REG_CALLBACK;
  d.gamma_regularizer.fn = noop_reg;
  d.gamma_regularizer.name = "Custom>MyReg";
  text = to_json(&d);
  CHECK(text && strstr(text, "\"gamma_initializer\": {\"module\": null, "
                             "\"class_name\": \"MyInit\", \"config\": {}, "
                             "\"registered_name\": \"MyInit\"}") != NULL);
  CHECK(text && strstr(text, "\"gamma_regularizer\": {\"module\": null, "
                             "\"class_name\": \"MyReg\", \"config\": {}, "
                             "\"registered_name\": \"Custom>MyReg\"}") != NULL);
  free(text);
  d.gamma_regularizer.name = NULL;
  CHECK_STATUS(bnorm_config_to_json(&d, NULL, 0, NULL), BNORM_ERR_UNSUPPORTED);
  CHECK(strstr(bnorm_last_error(), "gamma_regularizer") != NULL);

  d = c;
  strcpy(d.name, "bad\xff");
  CHECK_STATUS(bnorm_config_to_json(&d, NULL, 0, NULL), BNORM_ERR_UNSUPPORTED);
  d = c;
  d.axis_count = 0;
  CHECK_STATUS(bnorm_config_to_json(&d, NULL, 0, NULL), BNORM_ERR_INVALID_CONFIG);
  d = c;
  d.beta_regularizer = bnorm_regularizer_l2(NAN);
  CHECK_STATUS(bnorm_config_to_json(&d, NULL, 0, NULL), BNORM_ERR_INVALID_CONFIG);

  /* The layer's axis after build is a list, written as one. */
  d = c;
  d.axis[0] = 3;
  d.axis_is_list = true;
  text = to_json(&d);
  CHECK(text && strstr(text, "\"axis\": [3],") != NULL);
  free(text);
}

/* ---- golden: tf_keras 2.21's own get_config texts ---- */

static char *read_text_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t capacity = 1 << 16, n = 0;
  char *data = malloc(capacity + 1);
  while (data) {
    n += fread(data + n, 1, capacity - n, f);
    if (n < capacity) break;
    char *grown = realloc(data, 2 * capacity + 1);
    if (!grown) {
      free(data);
      data = NULL;
      break;
    }
    data = grown;
    capacity *= 2;
  }
  fclose(f);
  if (data) data[n] = '\0';
  return data;
}

/* Random byte edits of a valid config: from_json returns some status without
 * crashing or leaking, and whatever it accepts can be written again. */
static void fuzz_from_json(const char *line, unsigned seed) {
  size_t n = strlen(line);
  char *copy = malloc(n + 1);
  uint64_t state = 0x243F6A8885A308D3ull ^ seed;
  int accepted = 0;
  for (int round = 0; copy && round < 400; round++) {
    memcpy(copy, line, n + 1);
    for (int edits = 0; edits < 2; edits++) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      static const char alphabet[] = "0123456789-.eE,:{}[]\"\\ ntfxu";
      copy[(size_t)(state >> 33) % n] =
          alphabet[(size_t)(state >> 20) % (sizeof alphabet - 1)];
    }
    bnorm_config c;
    bnorm_status s = bnorm_config_from_json(copy, &c, NULL);
    CHECK(s != BNORM_OK || bnorm_config_validate(&c) == BNORM_OK);
    if (s == BNORM_OK) {
      accepted++;
      size_t length;
      bnorm_status w = bnorm_config_to_json(&c, NULL, 0, &length);
      CHECK(w == BNORM_ERR_INVALID_ARGUMENT);
    } else {
      CHECK(bnorm_last_error()[0] != '\0');
    }
  }
  (void)accepted;
  free(copy);
}

static void test_golden(void) {
  char *golden = read_text_file("golden/keras_configs.txt");
  CHECKF(golden != NULL, "golden/keras_configs.txt is readable (tests run in tests/)");
  if (!golden) return;
  int lines = 0, identical = 0;
  for (char *line = golden; *line;) {
    char *end = strchr(line, '\n');
    if (!end) end = line + strlen(line);
    bool more = *end != '\0';
    *end = '\0';
    if (*line) {
      lines++;
      bnorm_config c;
      bnorm_status s = bnorm_config_from_json(line, &c, NULL);
      CHECKF(s == BNORM_OK, "golden line %d: %s", lines, bnorm_last_error());
      if (s == BNORM_OK) {
        char *text = to_json(&c);
        bool same = text && strcmp(text, line) == 0;
        CHECKF(same, "golden line %d differs:\n  keras: %s\n  bnorm: %s", lines,
               line, text ? text : "(null)");
        identical += same;
        /* And once more through our own text. */
        bnorm_config again;
        if (text && bnorm_config_from_json(text, &again, NULL) == BNORM_OK) {
          char *text2 = to_json(&again);
          CHECK(text2 && strcmp(text2, text) == 0);
          free(text2);
        }
        free(text);
      }
      fuzz_from_json(line, (unsigned)lines);
    }
    line = more ? end + 1 : end;
  }
  CHECKF(lines >= 15, "%d golden configs", lines);
  printf("golden configs: %d of %d byte-identical to tf_keras\n", identical, lines);
  free(golden);
}

/* Spot checks of what the golden texts parse to. */
static void test_from_json_values(void) {
  bnorm_config c;
  const char *json =
      "{\"name\": \"bn_everything\", \"trainable\": false, \"dtype\": "
      "\"float32\", \"axis\": [-1, 1], \"momentum\": 0.95, \"epsilon\": "
      "0.0002, \"center\": true, \"scale\": false, \"beta_initializer\": "
      "{\"module\": \"keras.initializers\", \"class_name\": \"Constant\", "
      "\"config\": {\"value\": -1.5}, \"registered_name\": null}, "
      "\"gamma_initializer\": {\"module\": \"keras.initializers\", "
      "\"class_name\": \"TruncatedNormal\", \"config\": {\"mean\": 0.0, "
      "\"stddev\": 1.0, \"seed\": 18446744073709551615}, \"registered_name\": "
      "null}, \"beta_regularizer\": {\"module\": \"keras.regularizers\", "
      "\"class_name\": \"L2\", \"config\": {\"l2\": 0.10000000149011612}, "
      "\"registered_name\": null}, \"gamma_constraint\": {\"module\": "
      "\"keras.constraints\", \"class_name\": \"MinMaxNorm\", \"config\": "
      "{\"min_value\": 0.5, \"max_value\": 2.0, \"rate\": 0.7, \"axis\": [0, "
      "-1]}, \"registered_name\": null}, \"renorm\": true, \"renorm_clipping\": "
      "{\"rmin\": 0.25, \"dmax\": Infinity, \"rmax\": null}, "
      "\"renorm_momentum\": 0.75, \"virtual_batch_size\": 4}";
  CHECK_OK(bnorm_config_from_json(json, &c, NULL));
  CHECK(strcmp(c.name, "bn_everything") == 0 && !c.trainable);
  CHECK(c.axis_count == 2 && c.axis[0] == -1 && c.axis[1] == 1 && c.axis_is_list);
  CHECK(c.momentum == 0.95 && c.epsilon == 0.0002 && c.center && !c.scale);
  CHECK(c.beta_initializer.kind == BNORM_INIT_CONSTANT &&
        c.beta_initializer.value == -1.5);
  CHECK(c.gamma_initializer.kind == BNORM_INIT_TRUNCATED_NORMAL &&
        c.gamma_initializer.stddev == 1.0 && c.gamma_initializer.has_seed &&
        c.gamma_initializer.seed == UINT64_MAX);
  CHECK(c.moving_mean_initializer.kind == BNORM_INIT_ZEROS); /* missing key */
  CHECK(c.beta_regularizer.kind == BNORM_REG_L2 &&
        (float)c.beta_regularizer.l2 == 0.1f);
  CHECK(c.gamma_regularizer.kind == BNORM_REG_NONE);
  CHECK(c.gamma_constraint.kind == BNORM_CONSTRAINT_MIN_MAX_NORM &&
        c.gamma_constraint.rate == 0.7 && c.gamma_constraint.axis_count == 2 &&
        c.gamma_constraint.axis[1] == -1);
  CHECK(c.renorm && c.renorm_momentum == 0.75);
  CHECK(c.renorm_clipping_has_rmin && c.renorm_clipping_rmin == 0.25);
  CHECK(c.renorm_clipping_has_dmax && isinf(c.renorm_clipping_dmax));
  CHECK(!c.renorm_clipping_has_rmax); /* null: no clipping, as .get() */
  CHECK(c.virtual_batch_size == 4);
  CHECK(c.fused == BNORM_FUSED_AUTO && c.behavior == BNORM_BEHAVIOR_KERAS);
}

static void test_from_json_forms(void) {
  bnorm_config c;
  /* Older {"class_name", "config"} objects, string shorthands and nulls. */
  CHECK_OK(bnorm_config_from_json(
      "{\"axis\": 1, \"beta_initializer\": {\"class_name\": \"RandomUniform\", "
      "\"config\": {\"minval\": -1, \"maxval\": 2, \"seed\": 5, \"dtype\": "
      "\"float32\"}}, \"gamma_initializer\": \"ones\", "
      "\"moving_mean_initializer\": \"zero\", \"moving_variance_initializer\": "
      "{\"class_name\": \"ConstantV2\", \"config\": {\"value\": 3}}, "
      "\"beta_regularizer\": \"l2\", \"gamma_regularizer\": \"l1_l2\", "
      "\"beta_constraint\": \"non_neg\", \"gamma_constraint\": {\"class_name\": "
      "\"MaxNorm\", \"config\": {\"axis\": [0, 1]}}}",
      &c, NULL));
  CHECK(c.axis_count == 1 && c.axis[0] == 1 && !c.axis_is_list);
  CHECK(c.beta_initializer.kind == BNORM_INIT_RANDOM_UNIFORM &&
        c.beta_initializer.minval == -1 && c.beta_initializer.maxval == 2 &&
        c.beta_initializer.seed == 5);
  CHECK(c.gamma_initializer.kind == BNORM_INIT_ONES);
  CHECK(c.moving_mean_initializer.kind == BNORM_INIT_ZEROS);
  CHECK(c.moving_variance_initializer.kind == BNORM_INIT_CONSTANT &&
        c.moving_variance_initializer.value == 3);
  CHECK(c.beta_regularizer.kind == BNORM_REG_L2 && c.beta_regularizer.l2 == 0.01);
  CHECK(c.gamma_regularizer.kind == BNORM_REG_L1L2 &&
        c.gamma_regularizer.l1 == 0.01 && c.gamma_regularizer.l2 == 0.01);
  CHECK(c.beta_constraint.kind == BNORM_CONSTRAINT_NON_NEG);
  CHECK(c.gamma_constraint.kind == BNORM_CONSTRAINT_MAX_NORM &&
        c.gamma_constraint.max_value == 2 && c.gamma_constraint.axis_count == 2);

  /* L1/L2 take the old "l" keyword; None means the default. */
  CHECK_OK(bnorm_config_from_json(
      "{\"beta_regularizer\": {\"class_name\": \"L1\", \"config\": {\"l\": 0.5}},"
      " \"gamma_regularizer\": {\"class_name\": \"L1L2\", \"config\": {\"l1\": "
      "null, \"l2\": 0.25}}}",
      &c, NULL));
  CHECK(c.beta_regularizer.kind == BNORM_REG_L1 && c.beta_regularizer.l1 == 0.5);
  CHECK(c.gamma_regularizer.l1 == 0 && c.gamma_regularizer.l2 == 0.25);

  /* Unknown base-layer keys are ignored; dtype may be a float32 policy; the
   * layer may come wrapped in its class_name/config. */
  CHECK_OK(bnorm_config_from_json(
      "{\"class_name\": \"BatchNormalization\", \"module\": "
      "\"keras.layers\", \"config\": {\"name\": \"bn\", \"batch_input_shape\": "
      "[null, 3], \"dtype\": {\"module\": \"keras.mixed_precision\", "
      "\"class_name\": \"Policy\", \"config\": {\"name\": \"float32\"}, "
      "\"registered_name\": null}, \"fused\": true, \"synchronized\": false, "
      "\"future_key\": {\"x\": [1]}}}",
      &c, NULL));
  CHECK(strcmp(c.name, "bn") == 0 && c.fused == BNORM_FUSED_AUTO);
  CHECK_OK(bnorm_config_from_json("{}", &c, NULL));
  bnorm_config defaults;
  bnorm_config_init(&defaults);
  CHECK(memcmp(&c, &defaults, sizeof c) == 0);
  CHECK_OK(bnorm_config_from_json("{\"name\": null, \"dtype\": null, "
                                  "\"virtual_batch_size\": null, "
                                  "\"renorm_clipping\": {\"bogus\": 1}}",
                                  &c, NULL));
  CHECK(c.name[0] == '\0' && c.virtual_batch_size == 0);

  /* Without renorm Keras neither checks nor keeps the renorm arguments. */
  CHECK(!c.renorm && !c.renorm_clipping_has_rmax && c.renorm_momentum == 0.99);
  CHECK_OK(bnorm_config_from_json("{\"renorm\": true, \"renorm_clipping\": null}",
                                  &c, NULL));
  CHECK(c.renorm && !c.renorm_clipping_has_rmax && !c.renorm_clipping_has_dmax);
}

static int custom_init_calls;
static int custom_init(double *values, size_t count, const int64_t *shape,
                       int rank, void *user_data) {
  (void)shape; (void)rank; (void)user_data;
  custom_init_calls++;
  for (size_t i = 0; i < count; i++) values[i] = 7;
  return 0;
}

/* dtype: float32 and float64 by name or as a Policy, written back as Keras
 * writes them (tf_keras 2.21 get_config()["dtype"] is the policy's name). */
static void test_dtype_json(void) {
  bnorm_config c;
  CHECK_OK(bnorm_config_from_json("{\"dtype\": \"float64\"}", &c, NULL));
  CHECK(c.dtype == BNORM_FLOAT64);
  char *text = to_json(&c);
  CHECK(text && strstr(text, "\"dtype\": \"float64\"") != NULL);
  free(text);
  CHECK_OK(bnorm_config_from_json(
      "{\"dtype\": {\"class_name\": \"Policy\", \"config\": {\"name\": "
      "\"float64\"}}}",
      &c, NULL));
  CHECK(c.dtype == BNORM_FLOAT64);
  CHECK_OK(bnorm_config_from_json("{\"dtype\": \"float32\"}", &c, NULL));
  CHECK(c.dtype == BNORM_FLOAT32);
  text = to_json(&c);
  CHECK(text && strstr(text, "\"dtype\": \"float32\"") != NULL);
  free(text);
  /* Keras' constructor refuses fused=True for float64 (after the other
   * fused checks); compat.v1 falls back silently. */
  bnorm_config_init(&c);
  c.dtype = BNORM_FLOAT64;
  c.fused = BNORM_FUSED_TRUE;
  CHECK_STATUS(bnorm_config_validate(&c), BNORM_ERR_INVALID_CONFIG);
  CHECK(strstr(bnorm_last_error(), "compute dtype is float16, bfloat16, or "
                                   "float32. Got dtype: float64") != NULL);
  c.behavior = BNORM_BEHAVIOR_COMPAT_V1;
  CHECK_OK(bnorm_config_validate(&c));
  c.dtype = (bnorm_dtype)7;
  CHECK_STATUS(bnorm_config_validate(&c), BNORM_ERR_INVALID_CONFIG);
}

static void test_custom_objects(void) {
  bnorm_initializer inits[2];
  memset(inits, 0, sizeof inits);
  inits[0].kind = BNORM_INIT_CALLBACK;
  inits[0].fn = custom_init;
  inits[0].name = "MyInit";
  inits[1] = bnorm_initializer_constant(4); /* a name can map to a built-in */
  inits[1].name = "four";
  bnorm_regularizer regs[1];
  memset(regs, 0, sizeof regs);
  regs[0].kind = BNORM_REG_CALLBACK;
  regs[0].fn = noop_reg;
  regs[0].name = "Custom>MyReg";
  bnorm_constraint cons[1];
  memset(cons, 0, sizeof cons);
  cons[0].kind = BNORM_CONSTRAINT_CALLBACK;
  cons[0].fn = noop_constraint;
  cons[0].name = "fn_con";
  bnorm_custom_objects custom = {inits, 2, regs, 1, cons, 1};

  /* What tf_keras writes for these objects (probed with real tf_keras). */
  const char *json =
      "{\"gamma_initializer\": {\"module\": null, \"class_name\": \"MyInit\", "
      "\"config\": {}, \"registered_name\": \"MyInit\"}, \"beta_initializer\": "
      "\"four\", \"gamma_regularizer\": {\"module\": null, \"class_name\": "
      "\"MyReg\", \"config\": {\"a\": 1}, \"registered_name\": \"Custom>MyReg\"}, "
      "\"gamma_constraint\": {\"module\": \"builtins\", \"class_name\": "
      "\"function\", \"config\": \"fn_con\", \"registered_name\": \"function\"}}";
  bnorm_config c;
  CHECK_OK(bnorm_config_from_json(json, &c, &custom));
  CHECK(c.gamma_initializer.kind == BNORM_INIT_CALLBACK &&
        c.gamma_initializer.fn == custom_init);
  CHECK(c.beta_initializer.kind == BNORM_INIT_CONSTANT &&
        c.beta_initializer.value == 4);
  CHECK(c.gamma_regularizer.kind == BNORM_REG_CALLBACK &&
        c.gamma_regularizer.fn == noop_reg);
  CHECK(c.gamma_constraint.kind == BNORM_CONSTRAINT_CALLBACK &&
        c.gamma_constraint.fn == noop_constraint);
  /* Written back in the same form (config {} as bnorm cannot know it). */
  char *text = to_json(&c);
  CHECK(text && strstr(text, "\"registered_name\": \"Custom>MyReg\"") != NULL);
  free(text);

  /* Without custom objects these names are unknown. */
  expect_json_error(json, BNORM_ERR_NOT_FOUND, "bnorm_custom_objects", NULL,
                    __LINE__);
  bnorm_custom_objects empty = {NULL, 0, NULL, 0, NULL, 0};
  expect_json_error("{\"gamma_constraint\": {\"class_name\": \"function\", "
                    "\"config\": \"other\"}}",
                    BNORM_ERR_NOT_FOUND, "other", &custom, __LINE__);
  expect_json_error("{\"beta_regularizer\": \"Nope\"}", BNORM_ERR_NOT_FOUND,
                    "Nope", &empty, __LINE__);
}

static void test_from_json_errors(void) {
  bnorm_config c;
  CHECK_STATUS(bnorm_config_from_json(NULL, &c, NULL), BNORM_ERR_NULL_ARGUMENT);
  CHECK_STATUS(bnorm_config_from_json("{}", NULL, NULL), BNORM_ERR_NULL_ARGUMENT);

  /* Malformed text: BNORM_ERR_CORRUPT with the byte offset. */
  EXPECT_JSON_ERROR("", BNORM_ERR_CORRUPT, "byte 0");
  EXPECT_JSON_ERROR("{\"axis\": 1,}", BNORM_ERR_CORRUPT, "byte 11");
  EXPECT_JSON_ERROR("{\"axis\": 1} x", BNORM_ERR_CORRUPT, "byte 12");
  EXPECT_JSON_ERROR("{\"name\": \"a\\q\"}", BNORM_ERR_CORRUPT, "byte");

  /* Valid JSON that is no valid config. */
  EXPECT_JSON_ERROR("[1]", BNORM_ERR_INVALID_CONFIG, "object");
  EXPECT_JSON_ERROR("{\"class_name\": \"Dense\", \"config\": {}}",
                    BNORM_ERR_INVALID_CONFIG, "Dense");
  EXPECT_JSON_ERROR("{\"axis\": 1.0}", BNORM_ERR_INVALID_CONFIG, "axis");
  EXPECT_JSON_ERROR("{\"axis\": \"1\"}", BNORM_ERR_INVALID_CONFIG,
                    "Expected an int or a list/tuple of ints");
  EXPECT_JSON_ERROR("{\"axis\": []}", BNORM_ERR_INVALID_CONFIG, "axis");
  EXPECT_JSON_ERROR("{\"axis\": [1, 2, 3, 4, 5, 6, 7, 8, 9]}",
                    BNORM_ERR_INVALID_CONFIG, "axis");
  EXPECT_JSON_ERROR("{\"axis\": [1, true]}", BNORM_ERR_INVALID_CONFIG, "axis");
  EXPECT_JSON_ERROR("{\"axis\": 99999999999}", BNORM_ERR_INVALID_CONFIG, "axis");
  EXPECT_JSON_ERROR("{\"momentum\": \"0.9\"}", BNORM_ERR_INVALID_CONFIG, "momentum");
  EXPECT_JSON_ERROR("{\"momentum\": NaN}", BNORM_ERR_INVALID_CONFIG, "momentum");
  EXPECT_JSON_ERROR("{\"epsilon\": -1}", BNORM_ERR_INVALID_CONFIG, "epsilon");
  EXPECT_JSON_ERROR("{\"center\": 1}", BNORM_ERR_INVALID_CONFIG, "center");
  EXPECT_JSON_ERROR("{\"trainable\": null}", BNORM_ERR_INVALID_CONFIG, "trainable");
  EXPECT_JSON_ERROR("{\"name\": 5}", BNORM_ERR_INVALID_CONFIG, "name");
  EXPECT_JSON_ERROR("{\"name\": \"a\\u0000b\"}", BNORM_ERR_INVALID_CONFIG, "name");
  char long_name[300];
  snprintf(long_name, sizeof long_name, "{\"name\": \"%0200d\"}", 0);
  EXPECT_JSON_ERROR(long_name, BNORM_ERR_INVALID_CONFIG, "127");
  EXPECT_JSON_ERROR("{\"dtype\": \"float16\"}", BNORM_ERR_UNSUPPORTED, "float16");
  EXPECT_JSON_ERROR("{\"dtype\": {\"class_name\": \"Policy\", \"config\": "
                    "{\"name\": \"mixed_float16\"}}}",
                    BNORM_ERR_UNSUPPORTED, "mixed_float16");
  EXPECT_JSON_ERROR("{\"dtype\": 32}", BNORM_ERR_INVALID_CONFIG, "dtype");
  EXPECT_JSON_ERROR("{\"synchronized\": true}", BNORM_ERR_UNSUPPORTED, "synchronized");
  EXPECT_JSON_ERROR("{\"virtual_batch_size\": 0}", BNORM_ERR_INVALID_CONFIG,
                    "must be a positive integer");
  /* A negative size parses; build rejects it (test_errors), as in Keras. */
  {
    bnorm_config parsed;
    CHECK_OK(bnorm_config_from_json("{\"virtual_batch_size\": -4}", &parsed, NULL));
    CHECK(parsed.virtual_batch_size == -4);
  }
  EXPECT_JSON_ERROR("{\"virtual_batch_size\": 2.5}", BNORM_ERR_INVALID_CONFIG,
                    "virtual_batch_size");

  /* renorm_clipping: Keras' message for unknown keys, numbers or null only. */
  EXPECT_JSON_ERROR("{\"renorm\": true, \"renorm_clipping\": {\"rmax\": 2, "
                    "\"rmean\": 1}}",
                    BNORM_ERR_INVALID_CONFIG,
                    "Received invalid keys for `renorm_clipping` argument");
  EXPECT_JSON_ERROR("{\"renorm\": true, \"renorm_clipping\": [1]}",
                    BNORM_ERR_INVALID_CONFIG, "renorm_clipping");
  EXPECT_JSON_ERROR("{\"renorm\": true, \"renorm_clipping\": {\"rmax\": \"2\"}}",
                    BNORM_ERR_INVALID_CONFIG, "rmax");
  EXPECT_JSON_ERROR("{\"renorm\": true, \"renorm_clipping\": {\"rmax\": NaN}}",
                    BNORM_ERR_INVALID_CONFIG, "rmax");
  EXPECT_JSON_ERROR("{\"renorm\": true, \"renorm_momentum\": null}",
                    BNORM_ERR_INVALID_CONFIG, "renorm_momentum");

  /* Objects. */
  EXPECT_JSON_ERROR("{\"gamma_initializer\": \"glorot_uniform\"}",
                    BNORM_ERR_UNSUPPORTED, "glorot_uniform");
  EXPECT_JSON_ERROR("{\"gamma_initializer\": {\"class_name\": "
                    "\"VarianceScaling\", \"config\": {}}}",
                    BNORM_ERR_UNSUPPORTED, "VarianceScaling");
  EXPECT_JSON_ERROR("{\"gamma_initializer\": \"Whatever\"}", BNORM_ERR_NOT_FOUND,
                    "Whatever");
  EXPECT_JSON_ERROR("{\"gamma_initializer\": null}", BNORM_ERR_INVALID_CONFIG,
                    "gamma_initializer");
  EXPECT_JSON_ERROR("{\"gamma_initializer\": 1}", BNORM_ERR_INVALID_CONFIG,
                    "Could not interpret initializer identifier");
  EXPECT_JSON_ERROR("{\"gamma_initializer\": {\"config\": {}}}",
                    BNORM_ERR_INVALID_CONFIG, "class_name");
  EXPECT_JSON_ERROR("{\"gamma_initializer\": {\"class_name\": \"Zeros\", "
                    "\"config\": [1]}}",
                    BNORM_ERR_INVALID_CONFIG, "config");
  EXPECT_JSON_ERROR("{\"gamma_initializer\": {\"class_name\": \"RandomNormal\", "
                    "\"config\": {\"mean\": 0, \"sigma\": 1}}}",
                    BNORM_ERR_INVALID_CONFIG, "unexpected argument 'sigma'");
  EXPECT_JSON_ERROR("{\"gamma_initializer\": {\"class_name\": \"RandomNormal\", "
                    "\"config\": {\"stddev\": null}}}",
                    BNORM_ERR_INVALID_CONFIG, "stddev");
  EXPECT_JSON_ERROR("{\"gamma_initializer\": {\"class_name\": \"RandomNormal\", "
                    "\"config\": {\"seed\": -1}}}",
                    BNORM_ERR_UNSUPPORTED, "seed");
  EXPECT_JSON_ERROR("{\"gamma_initializer\": {\"class_name\": \"RandomNormal\", "
                    "\"config\": {\"seed\": 1.5}}}",
                    BNORM_ERR_INVALID_CONFIG, "seed");
  EXPECT_JSON_ERROR("{\"beta_regularizer\": {\"class_name\": \"L2\", "
                    "\"config\": {\"l2\": Infinity}}}",
                    BNORM_ERR_INVALID_CONFIG, "not a valid regularization penalty");
  EXPECT_JSON_ERROR("{\"beta_regularizer\": {\"class_name\": \"L2\", "
                    "\"config\": {\"l1\": 0.1}}}",
                    BNORM_ERR_INVALID_CONFIG, "unexpected argument 'l1'");
  EXPECT_JSON_ERROR("{\"beta_regularizer\": \"OrthogonalRegularizer\"}",
                    BNORM_ERR_UNSUPPORTED, "OrthogonalRegularizer");
  EXPECT_JSON_ERROR("{\"beta_constraint\": \"radial_constraint\"}",
                    BNORM_ERR_UNSUPPORTED, "radial_constraint");
  EXPECT_JSON_ERROR("{\"beta_constraint\": {\"class_name\": \"UnitNorm\", "
                    "\"config\": {\"axis\": [0, 0]}}}",
                    BNORM_ERR_INVALID_CONFIG, "twice");
  EXPECT_JSON_ERROR("{\"beta_constraint\": {\"class_name\": \"MaxNorm\", "
                    "\"config\": {\"max_value\": true}}}",
                    BNORM_ERR_INVALID_CONFIG, "max_value");

  /* Truncating a valid config anywhere fails cleanly and changes nothing. */
  size_t n = strlen(kDefaultJson);
  char *prefix = malloc(n + 1);
  size_t failures = 0;
  for (size_t cut = 0; prefix && cut < n; cut++) {
    memcpy(prefix, kDefaultJson, cut);
    prefix[cut] = '\0';
    bnorm_config before, after;
    memset(&before, 0x3C, sizeof before);
    after = before;
    if (bnorm_config_from_json(prefix, &after, NULL) != BNORM_ERR_CORRUPT ||
        memcmp(&before, &after, sizeof before) != 0)
      failures++;
  }
  CHECKF(failures == 0, "%zu truncations misbehaved", failures);
  free(prefix);
}

/* A config using every serializable feature survives to_json/from_json. */
static void test_round_trip(void) {
  bnorm_config c;
  bnorm_config_init(&c);
  strcpy(c.name, "round/trip \xc3\xa9");
  c.trainable = false;
  c.axis[0] = 1;
  c.axis[1] = -2;
  c.axis_count = 2;
  c.axis_is_list = true;
  c.momentum = 0.123456789;
  c.epsilon = 3e-7;
  c.center = false;
  c.beta_initializer = bnorm_initializer_seeded(
      bnorm_initializer_random_normal(0.1, 0.2), 0xFFFFFFFFFFFFull);
  c.gamma_initializer = bnorm_initializer_random_uniform(-3, 1e-3);
  c.moving_mean_initializer = bnorm_initializer_truncated_normal(-1, 1e-9);
  c.moving_variance_initializer = bnorm_initializer_constant(1e300);
  c.beta_regularizer = bnorm_regularizer_l1_l2(1e-8, 0.5);
  c.gamma_regularizer = bnorm_regularizer_l1(0.25);
  c.beta_constraint = bnorm_constraint_min_max_norm(0.1, 0.9, 0.3);
  c.beta_constraint.axis[0] = -1;
  c.beta_constraint.axis[1] = 0;
  c.beta_constraint.axis_count = 2;
  c.gamma_constraint = bnorm_constraint_max_norm(7.25);
  c.renorm = true;
  c.renorm_clipping_has_rmax = true;
  c.renorm_clipping_rmax = INFINITY;
  c.renorm_clipping_has_dmax = true;
  c.renorm_clipping_dmax = 1e-3;
  c.renorm_momentum = 0.5;
  c.virtual_batch_size = 1LL << 40;
  CHECK_OK(bnorm_config_validate(&c));

  char *text = to_json(&c);
  bnorm_config d;
  CHECKF(text && bnorm_config_from_json(text, &d, NULL) == BNORM_OK, "%s",
         bnorm_last_error());
  if (text) {
    CHECK(strcmp(d.name, c.name) == 0 && d.trainable == c.trainable);
    CHECK(d.axis_count == 2 && d.axis[0] == 1 && d.axis[1] == -2 && d.axis_is_list);
    CHECK(d.momentum == c.momentum && d.epsilon == c.epsilon);
    CHECK(d.center == c.center && d.scale == c.scale);
    CHECK(same_initializer(&d.beta_initializer, &c.beta_initializer));
    CHECK(same_initializer(&d.gamma_initializer, &c.gamma_initializer));
    CHECK(same_initializer(&d.moving_mean_initializer, &c.moving_mean_initializer));
    CHECK(same_initializer(&d.moving_variance_initializer,
                           &c.moving_variance_initializer));
    /* Penalties come back as Keras keeps them: rounded to float32. */
    CHECK(d.beta_regularizer.kind == BNORM_REG_L1L2 &&
          d.beta_regularizer.l1 == (double)(float)1e-8 &&
          d.beta_regularizer.l2 == 0.5);
    CHECK(d.gamma_regularizer.kind == BNORM_REG_L1 && d.gamma_regularizer.l1 == 0.25);
    CHECK(d.beta_constraint.kind == BNORM_CONSTRAINT_MIN_MAX_NORM &&
          d.beta_constraint.min_value == 0.1 && d.beta_constraint.rate == 0.3 &&
          d.beta_constraint.axis_count == 2 && d.beta_constraint.axis[0] == -1);
    CHECK(d.gamma_constraint.kind == BNORM_CONSTRAINT_MAX_NORM &&
          d.gamma_constraint.max_value == 7.25);
    CHECK(d.renorm && d.renorm_momentum == 0.5);
    CHECK(d.renorm_clipping_has_rmax && isinf(d.renorm_clipping_rmax));
    CHECK(!d.renorm_clipping_has_rmin);
    CHECK(d.renorm_clipping_has_dmax && d.renorm_clipping_dmax == 1e-3);
    CHECK(d.virtual_batch_size == c.virtual_batch_size);
    char *again = to_json(&d);
    CHECK(again && strcmp(again, text) == 0);
    free(again);
  }
  free(text);
}

int main(void) {
  test_defaults();
  test_validation();
  test_to_json();
  test_golden();
  test_from_json_values();
  test_from_json_forms();
  test_custom_objects();
  test_dtype_json();
  test_from_json_errors();
  test_round_trip();
  return th_finish();
}
