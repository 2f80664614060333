/* Saving and loading variables (bnorm_layer_save / _load and the buffer
 * forms): round trips, the exact byte layout, mismatched layers, every
 * truncation and every single-bit flip, crafted files with a valid CRC,
 * file-system failures, NULL arguments and the size query protocol.
 *
 * Every failed load must leave all of the layer's variables bit-identical. */

/* mkdtemp, stat, opendir: the tests need a private scratch directory. */
#define _POSIX_C_SOURCE 200809L

#include "crc32.h"
#include "harness.h"

#include <bnorm.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------------- */
/* Layers under test                                                         */
/* ------------------------------------------------------------------------- */

typedef struct layer_spec {
  const char *label;
  bnorm_behavior behavior;
  int axis[BNORM_MAX_RANK];
  int axis_count;
  int64_t input_shape[BNORM_MAX_RANK];
  int rank;
  bool renorm;
  bool center;
  bool trainable;
  int64_t virtual_batch_size;
} layer_spec;

static const layer_spec plain = {"plain", BNORM_BEHAVIOR_KERAS, {-1}, 1,
                                 {-1, 5}, 2, false, true, true, 0};
static const layer_spec plain_4 = {"plain, 4 channels", BNORM_BEHAVIOR_KERAS,
                                   {-1}, 1, {-1, 4}, 2, false, true, true, 0};
static const layer_spec renorm = {"renorm", BNORM_BEHAVIOR_KERAS, {-1}, 1,
                                  {-1, 5}, 2, true, true, true, 0};
static const layer_spec multi_axis = {"multi-axis", BNORM_BEHAVIOR_KERAS,
                                      {1, 3}, 2, {-1, 4, 2, 3}, 4,
                                      false, true, true, 0};
/* Same 12 channels as multi_axis, different parameter shape (1, 4, 3). */
static const layer_spec multi_axis_other = {"multi-axis (1,4,3)",
                                            BNORM_BEHAVIOR_KERAS, {1, 2}, 2,
                                            {-1, 4, 3}, 3, false, true, true,
                                            0};
static const layer_spec ghost = {"ghost", BNORM_BEHAVIOR_KERAS, {-1}, 1,
                                 {-1, 6, 3}, 3, false, true, true, 2};
static const layer_spec no_center = {"center=false", BNORM_BEHAVIOR_KERAS,
                                     {-1}, 1, {-1, 5}, 2, false, false, true,
                                     0};
/* compat.v1 with trainable=false: gamma/beta exist but are not trainable. */
static const layer_spec frozen_v1 = {"compat.v1 trainable=false",
                                     BNORM_BEHAVIOR_COMPAT_V1, {-1}, 1,
                                     {-1, 5}, 2, false, true, false, 0};

static bnorm_layer *create_layer(const layer_spec *spec, bool build) {
  bnorm_config cfg;
  bnorm_config_init(&cfg);
  cfg.behavior = spec->behavior;
  memcpy(cfg.axis, spec->axis, sizeof cfg.axis);
  cfg.axis_count = spec->axis_count;
  cfg.axis_is_list = spec->axis_count > 1;
  cfg.renorm = spec->renorm;
  cfg.center = spec->center;
  cfg.trainable = spec->trainable;
  cfg.virtual_batch_size = spec->virtual_batch_size;
  bnorm_layer *layer = NULL;
  if (!CHECK_OK(bnorm_layer_create(&cfg, &layer))) return NULL;
  if (build &&
      !CHECK_OK(bnorm_layer_build(layer, spec->input_shape, spec->rank))) {
    bnorm_layer_destroy(layer);
    return NULL;
  }
  return layer;
}

/* Random values, plus the bit patterns a careless encoder loses: NaN with a
 * payload, both infinities, -0 and a subnormal (files carry them as data). */
static void fill_variables(bnorm_layer *layer, uint64_t seed) {
  th_seed(seed);
  size_t count = bnorm_layer_variable_count(layer);
  for (size_t i = 0; i < count; i++) {
    bnorm_variable_info info;
    if (!CHECK_OK(bnorm_layer_variable_info(layer, i, &info))) return;
    float *values = malloc(info.count * sizeof *values + 1);
    th_fill_normal(values, info.count, 0.5, 2.0);
    if (i == 0 && info.count >= 5) {
      uint32_t nan_bits = 0x7FC01234u;
      memcpy(&values[0], &nan_bits, sizeof values[0]);
      values[1] = INFINITY;
      values[2] = -INFINITY;
      values[3] = -0.0f;
      values[4] = 1e-40f;
    }
    CHECK_OK(bnorm_layer_set_variable(layer, i, values, info.count));
    free(values);
  }
}

/* Records a failed call only: the comparisons below run thousands of times
 * and would otherwise swamp the pass count. */
#define REQUIRE_OK(call)                                  \
  do {                                                    \
    bnorm_status required_status = (call);                \
    if (required_status != BNORM_OK) CHECK_OK(required_status); \
  } while (0)

/* All variables back to back, as raw floats. */
static float *snapshot(const bnorm_layer *layer, size_t *total) {
  size_t count = bnorm_layer_variable_count(layer), n = 0;
  for (size_t i = 0; i < count; i++) {
    bnorm_variable_info info;
    REQUIRE_OK(bnorm_layer_variable_info(layer, i, &info));
    n += info.count;
  }
  float *all = calloc(n + 1, sizeof *all);
  size_t offset = 0;
  for (size_t i = 0; i < count; i++) {
    bnorm_variable_info info;
    REQUIRE_OK(bnorm_layer_variable_info(layer, i, &info));
    REQUIRE_OK(bnorm_layer_get_variable(layer, i, all + offset, info.count));
    offset += info.count;
  }
  *total = n;
  return all;
}

/* Whether the layer's variables are bit-identical to `before`. */
static bool unchanged(const bnorm_layer *layer, const float *before,
                      size_t total) {
  size_t n;
  float *now = snapshot(layer, &n);
  bool same = n == total && memcmp(now, before, n * sizeof *now) == 0;
  free(now);
  return same;
}

static bool same_variables(const bnorm_layer *a, const bnorm_layer *b) {
  size_t na;
  float *va = snapshot(a, &na);
  bool same = unchanged(b, va, na);
  free(va);
  return same;
}

/* ------------------------------------------------------------------------- */
/* An independent encoder for the format, written from bnorm.h's description */
/* ------------------------------------------------------------------------- */

typedef struct image {
  unsigned char *bytes;
  size_t size, capacity;
} image;

static void image_append(image *im, const void *data, size_t n) {
  if (im->size + n > im->capacity) {
    im->capacity = (im->size + n) * 2 + 64;
    im->bytes = realloc(im->bytes, im->capacity);
  }
  memcpy(im->bytes + im->size, data, n);
  im->size += n;
}

static void image_u32(image *im, uint32_t v) {
  unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8),
                        (unsigned char)(v >> 16), (unsigned char)(v >> 24)};
  image_append(im, b, 4);
}

static void image_u64(image *im, uint64_t v) {
  image_u32(im, (uint32_t)v);
  image_u32(im, (uint32_t)(v >> 32));
}

static void image_header(image *im, uint32_t version, uint32_t count) {
  image_append(im, "BNORMVAR", 8);
  image_u32(im, version);
  image_u32(im, count);
}

/* Appends variable `index` of `layer` with the given name and flags. */
static void image_variable(image *im, const bnorm_layer *layer, size_t index,
                           const char *name, uint32_t flags) {
  bnorm_variable_info info;
  CHECK_OK(bnorm_layer_variable_info(layer, index, &info));
  image_u32(im, (uint32_t)strlen(name));
  image_append(im, name, strlen(name));
  image_u32(im, (uint32_t)info.rank);
  for (int d = 0; d < info.rank; d++) image_u64(im, (uint64_t)info.shape[d]);
  image_u32(im, flags);
  float *values = malloc(info.count * sizeof *values + 1);
  CHECK_OK(bnorm_layer_get_variable(layer, index, values, info.count));
  for (size_t k = 0; k < info.count; k++) {
    uint32_t bits;
    memcpy(&bits, &values[k], sizeof bits);
    image_u32(im, bits);
  }
  free(values);
}

/* Appends the CRC of everything so far. */
static void image_finish(image *im) {
  image_u32(im, bn_crc32_update(0, im->bytes, im->size));
}

static image expected_image(const bnorm_layer *layer) {
  image im = {0};
  size_t count = bnorm_layer_variable_count(layer);
  image_header(&im, 1, (uint32_t)count);
  for (size_t i = 0; i < count; i++) {
    bnorm_variable_info info;
    CHECK_OK(bnorm_layer_variable_info(layer, i, &info));
    image_variable(&im, layer, i, info.short_name, info.trainable ? 1u : 0u);
  }
  image_finish(&im);
  return im;
}

/* The saved buffer of a layer (malloc'd, exactly *size bytes). */
static unsigned char *save_buffer(const bnorm_layer *layer, size_t *size) {
  *size = 0;
  CHECK_STATUS(bnorm_layer_save_to_buffer(layer, NULL, 0, size),
               BNORM_ERR_INVALID_ARGUMENT);
  unsigned char *buf = malloc(*size ? *size : 1);
  CHECK_OK(bnorm_layer_save_to_buffer(layer, buf, *size, size));
  return buf;
}

/* ------------------------------------------------------------------------- */
/* Scratch directory                                                         */
/* ------------------------------------------------------------------------- */

static char scratch_dir[512];

/* Paths are at most 511 + 1 + 255 (a directory entry) bytes. */
enum { PATH_CAPACITY = 1024 };

static const char *scratch_path(const char *name) {
  static char paths[8][PATH_CAPACITY];
  static int next;
  char *p = paths[next++ % 8];
  int n = snprintf(p, PATH_CAPACITY, "%s/%s", scratch_dir, name);
  CHECK(n > 0 && n < PATH_CAPACITY);
  return p;
}

static bool write_bytes(const char *path, const void *data, size_t size) {
  FILE *f = fopen(path, "wb");
  if (!f) return false;
  bool ok = fwrite(data, 1, size, f) == size;
  return fclose(f) == 0 && ok;
}

static unsigned char *read_bytes(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t capacity = 1 << 16;
  unsigned char *data = malloc(capacity);
  *size = fread(data, 1, capacity, f);
  fclose(f);
  return data;
}

static size_t directory_entries(const char *path) {
  DIR *dir = opendir(path);
  if (!dir) return (size_t)-1;
  size_t n = 0;
  for (struct dirent *e; (e = readdir(dir));)
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
  closedir(dir);
  return n;
}

static void remove_scratch_dir(void) {
  DIR *dir = opendir(scratch_dir);
  if (!dir) return;
  for (struct dirent *e; (e = readdir(dir));) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    const char *p = scratch_path(e->d_name);
    chmod(p, 0700);
    if (remove(p) != 0) {
      /* a sub-directory the tests made: empty it one level */
      DIR *sub = opendir(p);
      if (sub) {
        char child[2 * PATH_CAPACITY];
        for (struct dirent *s; (s = readdir(sub));) {
          if (!strcmp(s->d_name, ".") || !strcmp(s->d_name, "..")) continue;
          snprintf(child, sizeof child, "%s/%s", p, s->d_name);
          remove(child);
        }
        closedir(sub);
      }
      remove(p);
    }
  }
  closedir(dir);
  remove(scratch_dir);
}

/* ------------------------------------------------------------------------- */
/* Tests                                                                     */
/* ------------------------------------------------------------------------- */

static void test_crc32(void) {
  CHECK(bn_crc32_update(0, "123456789", 9) == 0xCBF43926u);
  CHECK(bn_crc32_update(0, "", 0) == 0u);
  CHECK(bn_crc32_update(0, "The quick brown fox jumps over the lazy dog", 43) ==
        0x414FA339u);
  uint32_t chained = bn_crc32_update(bn_crc32_update(0, "1234", 4), "56789", 5);
  CHECK(chained == 0xCBF43926u);
}

static void test_round_trip(const layer_spec *spec) {
  bnorm_layer *source = create_layer(spec, true);
  bnorm_layer *target = create_layer(spec, true);
  bnorm_layer *from_file = create_layer(spec, true);
  if (!source || !target || !from_file) goto done;
  fill_variables(source, 1);
  fill_variables(target, 2);
  fill_variables(from_file, 3);
  CHECKF(!same_variables(source, target), "%s: test needs distinct values",
         spec->label);

  /* Size query, then a buffer one byte short: refused, buffer untouched. */
  size_t size = 0;
  CHECK_STATUS(bnorm_layer_save_to_buffer(source, NULL, 0, &size),
               BNORM_ERR_INVALID_ARGUMENT);
  CHECKF(size > 20, "%s: size query gave %zu", spec->label, size);
  unsigned char *buf = malloc(size + 16);
  memset(buf, 0xAB, size + 16);
  size_t reported = 0;
  CHECK_STATUS(bnorm_layer_save_to_buffer(source, buf, size - 1, &reported),
               BNORM_ERR_INVALID_ARGUMENT);
  CHECK(reported == size);
  bool untouched = true;
  for (size_t i = 0; i < size + 16; i++) untouched &= buf[i] == 0xAB;
  CHECKF(untouched, "%s: a too-small buffer was written", spec->label);
  /* Exact and larger capacity both work; nothing past `size` is written. */
  CHECK_OK(bnorm_layer_save_to_buffer(source, buf, size + 16, &reported));
  CHECK(reported == size);
  CHECK(buf[size] == 0xAB);
  unsigned char *exact = malloc(size);
  CHECK_OK(bnorm_layer_save_to_buffer(source, exact, size, &reported));
  CHECK(memcmp(exact, buf, size) == 0);
  CHECK(bnorm_last_error()[0] == '\0');

  /* The bytes are exactly what bnorm.h describes. */
  image want = expected_image(source);
  CHECKF(want.size == size && memcmp(want.bytes, buf, size) == 0,
         "%s: saved bytes differ from the documented format", spec->label);
  free(want.bytes);

  /* Buffer round trip is bit-exact (NaN payloads, -0, subnormals). */
  CHECK_OK(bnorm_layer_load_from_buffer(target, exact, size));
  CHECKF(same_variables(source, target), "%s: buffer round trip differs",
         spec->label);

  /* File round trip; the file holds the same bytes as the buffer. */
  const char *path = scratch_path("round_trip.bnv");
  CHECK_OK(bnorm_layer_save(source, path));
  size_t file_size = 0;
  unsigned char *file = read_bytes(path, &file_size);
  CHECKF(file && file_size == size && memcmp(file, buf, size) == 0,
         "%s: file bytes differ from the buffer", spec->label);
  free(file);
  CHECK_OK(bnorm_layer_load(from_file, path));
  CHECKF(same_variables(source, from_file), "%s: file round trip differs",
         spec->label);
  /* Only the file itself is left behind, no temporary. */
  CHECK(directory_entries(scratch_dir) == 1);
  remove(path);
  free(buf);
  free(exact);
done:
  bnorm_layer_destroy(source);
  bnorm_layer_destroy(target);
  bnorm_layer_destroy(from_file);
}

/* Loading `from`'s file into a layer of `into`: refused with `expected`,
 * layer unchanged. */
static void check_mismatch(const layer_spec *from, const layer_spec *into,
                           bnorm_status expected) {
  bnorm_layer *source = create_layer(from, true);
  bnorm_layer *target = create_layer(into, true);
  if (source && target) {
    fill_variables(source, 4);
    fill_variables(target, 5);
    size_t size, total;
    unsigned char *buf = save_buffer(source, &size);
    float *before = snapshot(target, &total);
    bnorm_status st = bnorm_layer_load_from_buffer(target, buf, size);
    CHECKF(st == expected,
           "loading %s into %s returned %s, expected %s (message: %s)",
           from->label, into->label, bnorm_status_name(st),
           bnorm_status_name(expected), bnorm_last_error());
    CHECKF(bnorm_last_error()[0] != '\0', "%s into %s: no message",
           from->label, into->label);
    CHECKF(unchanged(target, before, total), "%s into %s changed the layer",
           from->label, into->label);
    free(before);
    free(buf);
  }
  bnorm_layer_destroy(source);
  bnorm_layer_destroy(target);
}

static void test_mismatched_layers(void) {
  check_mismatch(&plain, &plain_4, BNORM_ERR_SHAPE);
  check_mismatch(&plain_4, &plain, BNORM_ERR_SHAPE);
  check_mismatch(&renorm, &plain, BNORM_ERR_NOT_FOUND);
  check_mismatch(&plain, &renorm, BNORM_ERR_NOT_FOUND);
  check_mismatch(&plain, &no_center, BNORM_ERR_NOT_FOUND);
  check_mismatch(&no_center, &plain, BNORM_ERR_NOT_FOUND);
  check_mismatch(&multi_axis, &multi_axis_other, BNORM_ERR_SHAPE);
  check_mismatch(&ghost, &plain, BNORM_ERR_SHAPE);

  /* The trainable flag is not part of the match: Keras' load_weights
   * ignores trainability, so a frozen compat.v1 layer loads a trainable
   * layer's file and back. */
  bnorm_layer *trainable = create_layer(&plain, true);
  bnorm_layer *frozen = create_layer(&frozen_v1, true);
  if (trainable && frozen) {
    fill_variables(trainable, 6);
    size_t size;
    unsigned char *buf = save_buffer(trainable, &size);
    CHECK_OK(bnorm_layer_load_from_buffer(frozen, buf, size));
    CHECK(same_variables(trainable, frozen));
    free(buf);
  }
  bnorm_layer_destroy(trainable);
  bnorm_layer_destroy(frozen);

  /* An unbuilt layer has nothing to load into or save. */
  bnorm_layer *built = create_layer(&plain, true);
  bnorm_layer *unbuilt = create_layer(&plain, false);
  if (built && unbuilt) {
    size_t size;
    unsigned char *buf = save_buffer(built, &size);
    CHECK_STATUS(bnorm_layer_load_from_buffer(unbuilt, buf, size),
                 BNORM_ERR_STATE);
    CHECK(!bnorm_layer_is_built(unbuilt));
    size_t query = 0;
    CHECK_STATUS(bnorm_layer_save_to_buffer(unbuilt, NULL, 0, &query),
                 BNORM_ERR_STATE);
    const char *path = scratch_path("unbuilt.bnv");
    CHECK_OK(bnorm_layer_save(built, path));
    CHECK_STATUS(bnorm_layer_load(unbuilt, path), BNORM_ERR_STATE);
    CHECK_STATUS(bnorm_layer_save(unbuilt, path), BNORM_ERR_STATE);
    /* The failed save left the existing file as it was. */
    size_t file_size = 0;
    unsigned char *file = read_bytes(path, &file_size);
    CHECK(file && file_size == size && memcmp(file, buf, size) == 0);
    free(file);
    remove(path);
    free(buf);
  }
  bnorm_layer_destroy(built);
  bnorm_layer_destroy(unbuilt);
}

/* Loads `size` bytes from a copy in an allocation of exactly that size, so
 * the sanitizers catch any read past the end. */
static bnorm_status load_exact(bnorm_layer *layer, const unsigned char *data,
                               size_t size) {
  unsigned char *copy = malloc(size ? size : 1);
  memcpy(copy, data, size);
  bnorm_status st = bnorm_layer_load_from_buffer(layer, copy, size);
  free(copy);
  return st;
}

static void test_corruption(const layer_spec *spec) {
  bnorm_layer *source = create_layer(spec, true);
  bnorm_layer *target = create_layer(spec, true);
  if (!source || !target) goto done;
  fill_variables(source, 7);
  fill_variables(target, 8);
  size_t size, total;
  unsigned char *buf = save_buffer(source, &size);
  float *before = snapshot(target, &total);

  /* Truncation at every offset: always CORRUPT, with an offset named. */
  size_t bad = 0, first_bad = 0;
  for (size_t n = 0; n < size; n++) {
    bnorm_status st = load_exact(target, buf, n);
    bool ok = st == BNORM_ERR_CORRUPT &&
              strstr(bnorm_last_error(), "offset") != NULL &&
              unchanged(target, before, total);
    if (!ok && bad++ == 0) first_bad = n;
  }
  CHECKF(bad == 0,
         "%s: %zu truncations mishandled, first at %zu bytes (message: %s)",
         spec->label, bad, first_bad, bnorm_last_error());

  /* Every single-bit flip in every byte: CORRUPT, layer unchanged. */
  unsigned char *flipped = malloc(size);
  bad = 0;
  size_t bad_bit = 0;
  for (size_t i = 0; i < size; i++) {
    for (int bit = 0; bit < 8; bit++) {
      memcpy(flipped, buf, size);
      flipped[i] ^= (unsigned char)(1u << bit);
      bnorm_status st = load_exact(target, flipped, size);
      bool ok = st == BNORM_ERR_CORRUPT && unchanged(target, before, total);
      if (!ok && bad++ == 0) {
        first_bad = i;
        bad_bit = (size_t)bit;
      }
    }
  }
  CHECKF(bad == 0, "%s: %zu bit flips accepted or mishandled, first byte %zu "
         "bit %zu",
         spec->label, bad, first_bad, bad_bit);
  free(flipped);

  /* Trailing bytes after the CRC. */
  unsigned char *longer = malloc(size + 100);
  memcpy(longer, buf, size);
  memset(longer + size, 0, 100);
  CHECK_STATUS(load_exact(target, longer, size + 1), BNORM_ERR_CORRUPT);
  CHECK_STATUS(load_exact(target, longer, size + 100), BNORM_ERR_CORRUPT);
  CHECK(strstr(bnorm_last_error(), "offset") != NULL);
  CHECK(unchanged(target, before, total));
  free(longer);

  /* A successful load afterwards still works and clears the message. */
  CHECK_OK(load_exact(target, buf, size));
  CHECK(same_variables(source, target));
  CHECK(bnorm_last_error()[0] == '\0');
  free(before);
  free(buf);
done:
  bnorm_layer_destroy(source);
  bnorm_layer_destroy(target);
}

/* Truncated files on disk behave as truncated buffers. */
static void test_truncated_files(void) {
  bnorm_layer *source = create_layer(&plain, true);
  bnorm_layer *target = create_layer(&plain, true);
  if (source && target) {
    fill_variables(source, 9);
    fill_variables(target, 10);
    size_t size, total;
    unsigned char *buf = save_buffer(source, &size);
    float *before = snapshot(target, &total);
    const char *path = scratch_path("truncated.bnv");
    size_t bad = 0, first_bad = 0;
    for (size_t n = 0; n < size; n++) {
      bool ok = write_bytes(path, buf, n) &&
                bnorm_layer_load(target, path) == BNORM_ERR_CORRUPT &&
                strstr(bnorm_last_error(), "truncated.bnv") != NULL &&
                unchanged(target, before, total);
      if (!ok && bad++ == 0) first_bad = n;
    }
    CHECKF(bad == 0, "%zu truncated files mishandled, first at %zu bytes",
           bad, first_bad);
    remove(path);
    free(before);
    free(buf);
  }
  bnorm_layer_destroy(source);
  bnorm_layer_destroy(target);
}

/* Files whose CRC is right but whose content is not: the structural checks
 * must catch them on their own. */
static void check_crafted(bnorm_layer *target, const float *before,
                          size_t total, image *im, bnorm_status expected,
                          const char *what) {
  bnorm_status st = load_exact(target, im->bytes, im->size);
  CHECKF(st == expected, "%s: returned %s, expected %s (message: %s)", what,
         bnorm_status_name(st), bnorm_status_name(expected),
         bnorm_last_error());
  if (expected != BNORM_OK) {
    CHECKF(strlen(bnorm_last_error()) > 10, "%s: no message", what);
    CHECKF(unchanged(target, before, total), "%s: layer changed", what);
  }
  free(im->bytes);
  *im = (image){0};
}

static void test_crafted_files(void) {
  bnorm_layer *source = create_layer(&plain, true);
  bnorm_layer *target = create_layer(&plain, true);
  if (!source || !target) goto done;
  fill_variables(source, 11);
  fill_variables(target, 12);
  size_t total;
  float *before = snapshot(target, &total);
  const char *names[] = {"gamma", "beta", "moving_mean", "moving_variance"};
  image im = {0};

  /* A later format version with a valid CRC is unsupported, not corrupt. */
  image_header(&im, 3, 4);
  for (size_t i = 0; i < 4; i++) image_variable(&im, source, i, names[i], 0);
  image_finish(&im);
  check_crafted(target, before, total, &im, BNORM_ERR_UNSUPPORTED,
                "version 3");

  /* The float64 flag belongs to version 2; in version 1 it is damage. */
  image_header(&im, 1, 4);
  for (size_t i = 0; i < 4; i++)
    image_variable(&im, source, i, names[i], i == 1 ? 2u : 0u);
  image_finish(&im);
  check_crafted(target, before, total, &im, BNORM_ERR_CORRUPT,
                "float64 flag in version 1");

  image_header(&im, 1, 65);
  image_finish(&im);
  check_crafted(target, before, total, &im, BNORM_ERR_CORRUPT, "count 65");

  image_header(&im, 1, 0xFFFFFFFFu);
  image_finish(&im);
  check_crafted(target, before, total, &im, BNORM_ERR_CORRUPT,
                "count 2^32-1");

  image_header(&im, 1, 1);
  image_u32(&im, 0);
  image_finish(&im);
  check_crafted(target, before, total, &im, BNORM_ERR_CORRUPT, "empty name");

  image_header(&im, 1, 1);
  image_u32(&im, 0x7FFFFFFFu);
  image_append(&im, "gamma", 5);
  image_finish(&im);
  check_crafted(target, before, total, &im, BNORM_ERR_CORRUPT, "huge name");

  image_header(&im, 1, 1);
  image_u32(&im, 5);
  image_append(&im, "gam\0a", 5);
  image_u32(&im, 1);
  image_u64(&im, 5);
  image_u32(&im, 1);
  for (int k = 0; k < 5; k++) image_u32(&im, 0);
  image_finish(&im);
  check_crafted(target, before, total, &im, BNORM_ERR_CORRUPT, "NUL in name");

  image_header(&im, 1, 1);
  image_u32(&im, 5);
  image_append(&im, "gamma", 5);
  image_u32(&im, BNORM_MAX_RANK + 2);
  for (int d = 0; d < BNORM_MAX_RANK + 2; d++) image_u64(&im, 1);
  image_u32(&im, 1);
  image_u32(&im, 0);
  image_finish(&im);
  check_crafted(target, before, total, &im, BNORM_ERR_CORRUPT, "rank 10");

  /* Dimensions whose product overflows 64 bits. */
  image_header(&im, 1, 1);
  image_u32(&im, 5);
  image_append(&im, "gamma", 5);
  image_u32(&im, 3);
  image_u64(&im, (uint64_t)1 << 40);
  image_u64(&im, (uint64_t)1 << 40);
  image_u64(&im, 5);
  image_u32(&im, 1);
  image_finish(&im);
  check_crafted(target, before, total, &im, BNORM_ERR_CORRUPT,
                "overflowing dims");

  /* A product that fits size_t but whose byte count (x4) would not. */
  image_header(&im, 1, 1);
  image_u32(&im, 5);
  image_append(&im, "gamma", 5);
  image_u32(&im, 1);
  image_u64(&im, UINT64_MAX / 2);
  image_u32(&im, 1);
  image_finish(&im);
  check_crafted(target, before, total, &im, BNORM_ERR_CORRUPT,
                "data size overflow");

  image_header(&im, 1, 4);
  for (size_t i = 0; i < 4; i++)
    image_variable(&im, source, i, names[i], i == 2 ? 0x80u : 0u);
  image_finish(&im);
  check_crafted(target, before, total, &im, BNORM_ERR_CORRUPT,
                "unknown flag bit");

  image_header(&im, 1, 5);
  for (size_t i = 0; i < 4; i++) image_variable(&im, source, i, names[i], 0);
  image_variable(&im, source, 0, "gamma", 1);
  image_finish(&im);
  check_crafted(target, before, total, &im, BNORM_ERR_CORRUPT,
                "duplicate gamma");

  image_header(&im, 1, 4);
  for (size_t i = 0; i < 4; i++)
    image_variable(&im, source, i, i == 3 ? "moving_varianc" : names[i], 0);
  image_finish(&im);
  check_crafted(target, before, total, &im, BNORM_ERR_NOT_FOUND,
                "misspelled name");

  image_header(&im, 1, 3);
  for (size_t i = 0; i < 3; i++) image_variable(&im, source, i, names[i], 0);
  image_finish(&im);
  check_crafted(target, before, total, &im, BNORM_ERR_NOT_FOUND,
                "missing moving_variance");

  /* Right names and CRC, wrong CRC position: bytes after the CRC. */
  image_header(&im, 1, 4);
  for (size_t i = 0; i < 4; i++) image_variable(&im, source, i, names[i], 1);
  image_finish(&im);
  image_u32(&im, 0);
  check_crafted(target, before, total, &im, BNORM_ERR_CORRUPT,
                "bytes after the CRC");

  /* Variables are matched by name, so another order loads correctly, and
   * the trainable flag does not have to agree. */
  image_header(&im, 1, 4);
  for (size_t i = 4; i-- > 0;) image_variable(&im, source, i, names[i], 0);
  image_finish(&im);
  check_crafted(target, before, total, &im, BNORM_OK, "reversed order");
  CHECK(same_variables(source, target));
  free(before);
done:
  bnorm_layer_destroy(source);
  bnorm_layer_destroy(target);
}

static void test_file_errors(void) {
  bnorm_layer *layer = create_layer(&plain, true);
  if (!layer) return;
  fill_variables(layer, 13);
  size_t total;
  float *before = snapshot(layer, &total);

  CHECK_STATUS(bnorm_layer_load(layer, scratch_path("does-not-exist.bnv")),
               BNORM_ERR_IO);
  CHECK(strstr(bnorm_last_error(), "does-not-exist.bnv") != NULL);
  CHECK_STATUS(bnorm_layer_load(layer, scratch_dir), BNORM_ERR_IO);
  CHECK_STATUS(bnorm_layer_load(layer, ""), BNORM_ERR_INVALID_ARGUMENT);
  /* An endless device is refused by size, not read until memory runs out. */
  FILE *zero = fopen("/dev/zero", "rb");
  if (zero) {
    fclose(zero);
    CHECK_STATUS(bnorm_layer_load(layer, "/dev/zero"), BNORM_ERR_CORRUPT);
  }
  CHECK(unchanged(layer, before, total));

  /* Saving where no file can be created. */
  CHECK_STATUS(bnorm_layer_save(layer, scratch_path("no-such-dir/x.bnv")),
               BNORM_ERR_IO);
  const char *regular = scratch_path("regular-file");
  CHECK(write_bytes(regular, "x", 1));
  char below_file[PATH_CAPACITY + 16];
  snprintf(below_file, sizeof below_file, "%s/x.bnv", regular);
  CHECK_STATUS(bnorm_layer_save(layer, below_file), BNORM_ERR_IO);
  CHECK_STATUS(bnorm_layer_save(layer, ""), BNORM_ERR_INVALID_ARGUMENT);
  remove(regular);

  /* Saving over a directory fails at the rename and leaves no temporary
   * file behind. */
  const char *dir = scratch_path("a-directory");
  CHECK(mkdir(dir, 0700) == 0);
  size_t entries = directory_entries(scratch_dir);
  CHECK_STATUS(bnorm_layer_save(layer, dir), BNORM_ERR_IO);
  CHECK(strstr(bnorm_last_error(), "a-directory") != NULL);
  CHECK(directory_entries(scratch_dir) == entries);
  rmdir(dir);

  /* A read-only directory (skipped when running as root, who may write
   * anyway: probe first). */
  const char *readonly = scratch_path("read-only");
  CHECK(mkdir(readonly, 0500) == 0);
  char probe[PATH_CAPACITY + 16], target[PATH_CAPACITY + 16];
  snprintf(probe, sizeof probe, "%s/probe", readonly);
  snprintf(target, sizeof target, "%s/x.bnv", readonly);
  FILE *f = fopen(probe, "wb");
  if (f) {
    fclose(f);
    remove(probe);
  } else {
    CHECK_STATUS(bnorm_layer_save(layer, target), BNORM_ERR_IO);
    CHECK(directory_entries(readonly) == 0);
  }
  chmod(readonly, 0700);
  rmdir(readonly);

  /* Overwriting an existing file replaces it completely. */
  const char *path = scratch_path("overwrite.bnv");
  CHECK(write_bytes(path, "an older, longer file that is not bnorm at all",
                    46));
  CHECK_OK(bnorm_layer_save(layer, path));
  CHECK(bnorm_last_error()[0] == '\0');
  bnorm_layer *copy = create_layer(&plain, true);
  if (copy) {
    CHECK_OK(bnorm_layer_load(copy, path));
    CHECK(same_variables(layer, copy));
  }
  bnorm_layer_destroy(copy);
  /* A file of a larger layer is diagnosed by shape, not refused by size. */
  bnorm_layer *smaller = create_layer(&plain_4, true);
  if (smaller) {
    CHECK_STATUS(bnorm_layer_load(smaller, path), BNORM_ERR_SHAPE);
    CHECK(strstr(bnorm_last_error(), "gamma") != NULL);
  }
  bnorm_layer_destroy(smaller);
  remove(path);
  CHECK(unchanged(layer, before, total));
  free(before);
  bnorm_layer_destroy(layer);
}

static void test_null_arguments(void) {
  bnorm_layer *layer = create_layer(&plain, true);
  if (!layer) return;
  const char *path = scratch_path("null.bnv");
  unsigned char buf[4096];
  size_t size = 0;
  CHECK_STATUS(bnorm_layer_save(NULL, path), BNORM_ERR_NULL_ARGUMENT);
  CHECK_STATUS(bnorm_layer_save(layer, NULL), BNORM_ERR_NULL_ARGUMENT);
  CHECK_STATUS(bnorm_layer_load(NULL, path), BNORM_ERR_NULL_ARGUMENT);
  CHECK_STATUS(bnorm_layer_load(layer, NULL), BNORM_ERR_NULL_ARGUMENT);
  CHECK_STATUS(bnorm_layer_save_to_buffer(NULL, buf, sizeof buf, &size),
               BNORM_ERR_NULL_ARGUMENT);
  CHECK_STATUS(bnorm_layer_save_to_buffer(layer, buf, sizeof buf, NULL),
               BNORM_ERR_NULL_ARGUMENT);
  CHECK_STATUS(bnorm_layer_load_from_buffer(NULL, buf, 10),
               BNORM_ERR_NULL_ARGUMENT);
  CHECK_STATUS(bnorm_layer_load_from_buffer(layer, NULL, 10),
               BNORM_ERR_NULL_ARGUMENT);
  /* A NULL buffer with a capacity is still a size query. */
  CHECK_STATUS(bnorm_layer_save_to_buffer(layer, NULL, sizeof buf, &size),
               BNORM_ERR_INVALID_ARGUMENT);
  CHECK(size > 0 && size < sizeof buf);
  bnorm_layer_destroy(layer);
}

int main(void) {
  const char *tmp = getenv("TMPDIR");
  snprintf(scratch_dir, sizeof scratch_dir, "%s/bnorm-test-serialize-XXXXXX",
           tmp && tmp[0] ? tmp : "/tmp");
  if (!mkdtemp(scratch_dir)) {
    perror("mkdtemp");
    return 1;
  }
  test_crc32();
  const layer_spec *specs[] = {&plain, &renorm, &multi_axis, &ghost,
                               &no_center, &frozen_v1};
  for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
    test_round_trip(specs[i]);
    test_corruption(specs[i]);
  }
  test_mismatched_layers();
  test_truncated_files();
  test_crafted_files();
  test_file_errors();
  test_null_arguments();
  remove_scratch_dir();
  return th_finish();
}
