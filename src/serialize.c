/* Saving and loading a layer's variables: the "bnorm variables" format
 * documented at the end of bnorm.h.
 *
 * This file uses only the public variable API (count, info, get, set), so it
 * does not depend on how the layer stores its variables. Every integer and
 * float is encoded byte by byte in little-endian order, never by dumping
 * structs or arrays, so files are identical on every host.
 *
 * Loading is two-phase: the whole image is parsed, checked against itself
 * (framing, limits, CRC) and against the layer (names, shapes) before the
 * first variable is written, so a bad file leaves the layer untouched. */

/* fileno and fsync are POSIX, not C11; ask for them before any header. */
#if !defined(_POSIX_C_SOURCE) && (defined(__unix__) || defined(__APPLE__))
#define _POSIX_C_SOURCE 200809L
#endif

#include "crc32.h"
#include "internal.h"

#include <errno.h>
#include <float.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#define BN_HAVE_FSYNC 1
#endif

/* The format stores IEEE-754 binary32 bit patterns. */
_Static_assert(CHAR_BIT == 8, "bytes must be octets");
_Static_assert(sizeof(float) == 4 && FLT_MANT_DIG == 24 && FLT_MAX_EXP == 128,
               "float must be IEEE-754 binary32");

static const unsigned char file_magic[8] = {'B', 'N', 'O', 'R',
                                            'M', 'V', 'A', 'R'};

enum {
  /* Version 1 holds float32 data only; version 2 adds FLAG_FLOAT64. A
   * float32 layer still writes version 1, which bnorm 0.1 can read. */
  VERSION_FLOAT32 = 1,
  VERSION_LATEST = 2,
  MAGIC_BYTES = 8,
  VERSION_OFFSET = 8,
  COUNT_OFFSET = 12,
  HEADER_BYTES = 16, /* magic, version, count */
  CRC_BYTES = 4,
  /* A layer has at most 7 variables; the limit only keeps a corrupted count
   * from driving the parser through an absurd loop. */
  MAX_FILE_VARIABLES = 64,
  /* Short names are at most 15 bytes ("moving_variance"). */
  MAX_FILE_NAME = BNORM_MAX_NAME,
  /* Parameter shapes gain one axis with virtual_batch_size. */
  MAX_FILE_RANK = BNORM_MAX_RANK + 1,
  FLAG_TRAINABLE = 1u,
  FLAG_FLOAT64 = 2u
};

/* ------------------------------------------------------------------------- */
/* Little-endian encoding                                                    */
/* ------------------------------------------------------------------------- */

static void put_u32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_u32(const unsigned char *p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
  return v;
}

static uint64_t get_u64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
  return v;
}

/* Floats travel as their bit patterns, so NaN payloads, infinities and -0
 * survive a round trip unchanged. */
static void put_f32(unsigned char *p, float f) {
  uint32_t bits;
  memcpy(&bits, &f, sizeof bits);
  put_u32(p, bits);
}

static float get_f32(const unsigned char *p) {
  uint32_t bits = get_u32(p);
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

static void put_f64(unsigned char *p, double f) {
  uint64_t bits;
  memcpy(&bits, &f, sizeof bits);
  put_u64(p, bits);
}

static double get_f64(const unsigned char *p) {
  uint64_t bits = get_u64(p);
  double f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

/* ------------------------------------------------------------------------- */
/* Saving                                                                    */
/* ------------------------------------------------------------------------- */

static bnorm_status check_saveable(const bnorm_layer *layer) {
  if (!bnorm_layer_is_built(layer))
    return bn_fail(BNORM_ERR_STATE,
                   "the layer is not built, so it has no variables to save; "
                   "call bnorm_layer_build first");
  return BNORM_OK;
}

/* Bytes the file image of `layer` takes, and the largest variable (for the
 * scratch buffer the encoder copies each variable through). */
static bnorm_status measure_image(const bnorm_layer *layer, size_t *image_size,
                                  size_t *largest_count) {
  size_t count = bnorm_layer_variable_count(layer);
  if (count > MAX_FILE_VARIABLES)
    return bn_fail(BNORM_ERR_UNSUPPORTED,
                   "the layer has %zu variables; the file format allows %d",
                   count, MAX_FILE_VARIABLES);
  size_t total = HEADER_BYTES + CRC_BYTES;
  size_t largest = 0;
  for (size_t i = 0; i < count; i++) {
    bnorm_variable_info info;
    bnorm_status st = bnorm_layer_variable_info(layer, i, &info);
    if (st != BNORM_OK) return st;
    size_t name_len = strlen(info.short_name);
    if (name_len == 0 || name_len > MAX_FILE_NAME)
      return bn_fail(BNORM_ERR_UNSUPPORTED,
                     "variable %zu has a name of %zu bytes; the file format "
                     "allows 1 to %d",
                     i, name_len, MAX_FILE_NAME);
    if (info.rank < 0 || info.rank > MAX_FILE_RANK)
      return bn_fail(BNORM_ERR_UNSUPPORTED,
                     "variable '%s' has rank %d; the file format allows 0 to "
                     "%d",
                     info.short_name, info.rank, MAX_FILE_RANK);
    size_t elements;
    st = bn_shape_count(info.shape, info.rank, info.short_name, &elements);
    if (st != BNORM_OK) return st;
    if (elements != info.count)
      return bn_fail(BNORM_ERR_STATE,
                     "variable '%s' reports %zu elements but its shape holds "
                     "%zu",
                     info.short_name, info.count, elements);
    /* name_len u32 + name + rank u32 + dims + flags u32 + data */
    size_t entry = 4 + name_len + 4 + 8 * (size_t)info.rank + 4;
    size_t data_bytes;
    if (!bn_mul_size(info.count, bn_dtype_size(bnorm_layer_config(layer)->dtype), &data_bytes) ||
        data_bytes > SIZE_MAX - entry || entry + data_bytes > SIZE_MAX - total)
      return bn_fail(BNORM_ERR_OVERFLOW,
                     "the file image of the layer's variables would be larger "
                     "than memory can address");
    total += entry + data_bytes;
    if (info.count > largest) largest = info.count;
  }
  *image_size = total;
  *largest_count = largest;
  return BNORM_OK;
}

/* Writes the image into out[0..image_size); `scratch` holds the largest
 * variable. */
static bnorm_status encode_image(const bnorm_layer *layer, unsigned char *out,
                                 size_t image_size, void *scratch) {
  size_t count = bnorm_layer_variable_count(layer);
  size_t pos = 0;
  bool f64 = bnorm_layer_config(layer)->dtype == BNORM_FLOAT64;
  memcpy(out, file_magic, MAGIC_BYTES);
  put_u32(out + VERSION_OFFSET, f64 ? VERSION_LATEST : VERSION_FLOAT32);
  put_u32(out + COUNT_OFFSET, (uint32_t)count);
  pos = HEADER_BYTES;
  for (size_t i = 0; i < count; i++) {
    bnorm_variable_info info;
    bnorm_status st = bnorm_layer_variable_info(layer, i, &info);
    if (st != BNORM_OK) return st;
    st = bnorm_layer_get_variable(layer, i, scratch, info.count);
    if (st != BNORM_OK) return st;
    size_t name_len = strlen(info.short_name);
    put_u32(out + pos, (uint32_t)name_len);
    pos += 4;
    memcpy(out + pos, info.short_name, name_len);
    pos += name_len;
    put_u32(out + pos, (uint32_t)info.rank);
    pos += 4;
    for (int d = 0; d < info.rank; d++, pos += 8)
      put_u64(out + pos, (uint64_t)info.shape[d]);
    put_u32(out + pos, (info.trainable ? FLAG_TRAINABLE : 0u) |
                           (f64 ? FLAG_FLOAT64 : 0u));
    pos += 4;
    for (size_t k = 0; k < info.count; k++) {
      if (f64) {
        put_f64(out + pos, ((const double *)scratch)[k]);
        pos += 8;
      } else {
        put_f32(out + pos, ((const float *)scratch)[k]);
        pos += 4;
      }
    }
  }
  put_u32(out + pos, bn_crc32_update(0, out, pos));
  pos += CRC_BYTES;
  if (pos != image_size) /* measure_image and encode_image disagree */
    return bn_fail(BNORM_ERR_STATE,
                   "internal error: encoded %zu bytes, expected %zu", pos,
                   image_size);
  return BNORM_OK;
}

/* Encodes into `out` (image_size bytes). */
static bnorm_status encode_with_scratch(const bnorm_layer *layer,
                                        unsigned char *out, size_t image_size,
                                        size_t largest_count) {
  size_t elements = largest_count ? largest_count : 1;
  void *scratch = malloc(elements * bn_dtype_size(bnorm_layer_config(layer)->dtype));
  if (!scratch)
    return bn_fail(BNORM_ERR_OUT_OF_MEMORY,
                   "out of memory copying a variable of %zu elements",
                   largest_count);
  bnorm_status st = encode_image(layer, out, image_size, scratch);
  free(scratch);
  return st;
}

bnorm_status bnorm_layer_save_to_buffer(const bnorm_layer *layer, void *out,
                                        size_t capacity, size_t *size) {
  if (!layer) return bn_fail(BNORM_ERR_NULL_ARGUMENT, "layer is NULL");
  if (!size) return bn_fail(BNORM_ERR_NULL_ARGUMENT, "size is NULL");
  bnorm_status st = check_saveable(layer);
  if (st != BNORM_OK) return st;
  size_t image_size, largest;
  st = measure_image(layer, &image_size, &largest);
  if (st != BNORM_OK) return st;
  *size = image_size;
  if (!out)
    return bn_fail(BNORM_ERR_INVALID_ARGUMENT,
                   "no buffer given (a size query): the layer's variables "
                   "need %zu bytes, now in *size",
                   image_size);
  if (capacity < image_size)
    return bn_fail(BNORM_ERR_INVALID_ARGUMENT,
                   "the buffer holds %zu bytes but the layer's variables need "
                   "%zu (now in *size)",
                   capacity, image_size);
  st = encode_with_scratch(layer, out, image_size, largest);
  if (st != BNORM_OK) return st;
  bn_clear_error();
  return BNORM_OK;
}

/* A suffix for the temporary file's name. Exclusive creation ("x") is what
 * makes the name safe; the suffix only makes clashes between threads and
 * processes saving to the same path rare. The address of a thread-local
 * differs between threads, the clocks between processes. */
static unsigned long temp_suffix(unsigned attempt) {
  static _Thread_local unsigned long counter;
  uint64_t h = (uint64_t)(uintptr_t)&counter;
  h ^= (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ull;
  h ^= (uint64_t)clock() * 0xBF58476D1CE4E5B9ull;
  h ^= (uint64_t)(++counter + attempt) * 0x94D049BB133111EBull;
  h ^= h >> 31;
  return (unsigned long)(h & 0xFFFFFFFFul);
}

/* Creates `temp_path` (path + ".tmp-XXXXXXXX") exclusively for writing. */
static FILE *create_temp_file(const char *path, char *temp_path,
                              size_t temp_capacity) {
  FILE *f = NULL;
  for (unsigned attempt = 0; attempt < 100 && !f; attempt++) {
    snprintf(temp_path, temp_capacity, "%s.tmp-%08lx", path,
             temp_suffix(attempt));
    errno = 0;
    f = fopen(temp_path, "wbx");
#ifdef EEXIST
    if (!f && errno != EEXIST) break; /* a real failure, not a name clash */
#endif
  }
  return f;
}

/* Writes data to `path` so that `path` either keeps its old contents or gets
 * all of the new ones: write a temporary file in the same directory (rename
 * is only atomic within one file system), flush it to the disk, then rename
 * it over `path`. */
static bnorm_status write_file_atomically(const char *path,
                                          const unsigned char *data,
                                          size_t size) {
  size_t temp_capacity = strlen(path) + 32;
  char *temp_path = malloc(temp_capacity);
  if (!temp_path)
    return bn_fail(BNORM_ERR_OUT_OF_MEMORY, "out of memory saving '%s'", path);
  FILE *f = create_temp_file(path, temp_path, temp_capacity);
  if (!f) {
    bnorm_status st = bn_fail(BNORM_ERR_IO,
                              "cannot create the temporary file '%s' to save "
                              "'%s': %s",
                              temp_path, path, strerror(errno));
    free(temp_path);
    return st;
  }
  const char *failed = NULL;
  int err = 0;
  if (fwrite(data, 1, size, f) != size) {
    failed = "write";
  } else if (fflush(f) != 0) {
    failed = "flush";
  }
#ifdef BN_HAVE_FSYNC
  /* Without this a crash soon after the rename can leave an empty file. */
  else if (fsync(fileno(f)) != 0) {
    failed = "sync";
  }
#endif
  if (failed) err = errno;
  if (fclose(f) != 0 && !failed) {
    failed = "close";
    err = errno;
  }
  if (!failed && rename(temp_path, path) != 0) {
    failed = "rename";
    err = errno;
  }
  bnorm_status st = BNORM_OK;
  if (failed) {
    remove(temp_path);
    st = bn_fail(BNORM_ERR_IO, "cannot save '%s': %s of '%s' failed: %s", path,
                 failed, temp_path, err ? strerror(err) : "unknown error");
  }
  free(temp_path);
  return st;
}

bnorm_status bnorm_layer_save(const bnorm_layer *layer, const char *path) {
  if (!layer) return bn_fail(BNORM_ERR_NULL_ARGUMENT, "layer is NULL");
  if (!path) return bn_fail(BNORM_ERR_NULL_ARGUMENT, "path is NULL");
  if (!path[0]) return bn_fail(BNORM_ERR_INVALID_ARGUMENT, "path is empty");
  bnorm_status st = check_saveable(layer);
  if (st != BNORM_OK) return st;
  size_t image_size, largest;
  st = measure_image(layer, &image_size, &largest);
  if (st != BNORM_OK) return st;
  unsigned char *image = malloc(image_size);
  if (!image)
    return bn_fail(BNORM_ERR_OUT_OF_MEMORY,
                   "out of memory encoding %zu bytes for '%s'", image_size,
                   path);
  st = encode_with_scratch(layer, image, image_size, largest);
  if (st == BNORM_OK) st = write_file_atomically(path, image, image_size);
  free(image);
  if (st != BNORM_OK) return st;
  bn_clear_error();
  return BNORM_OK;
}

/* ------------------------------------------------------------------------- */
/* Parsing                                                                   */
/* ------------------------------------------------------------------------- */

typedef struct parsed_variable {
  size_t offset;          /* where the entry (its name_len) starts */
  const unsigned char *name;
  uint32_t name_len;
  uint32_t rank;
  uint64_t dims[MAX_FILE_RANK];
  size_t count;           /* elements */
  size_t data_offset;     /* where its values start */
  bool float64;           /* values are float64 (else float32) */
} parsed_variable;

typedef struct parsed_image {
  uint32_t version;
  uint32_t count;
  parsed_variable variables[MAX_FILE_VARIABLES];
} parsed_image;

/* Bytes of the image the parser has not consumed yet. */
typedef struct reader {
  const unsigned char *data;
  size_t size;
  size_t pos;
  const char *source; /* "buffer" or "file '...'", for messages */
} reader;

static bool has_bytes(const reader *r, size_t n) {
  return r->size - r->pos >= n;
}

static bnorm_status truncated(const reader *r, const char *what, size_t need) {
  return bn_fail(BNORM_ERR_CORRUPT,
                 "%s is truncated or corrupted: reading %s needs %zu bytes "
                 "at offset %zu but only %zu remain",
                 r->source, what, need, r->pos, r->size - r->pos);
}

/* Whether the last 4 bytes are the CRC of the bytes before them: tells a
 * file of a later format version from a damaged version field. */
static bool trailing_crc_matches(const unsigned char *data, size_t size) {
  if (size < HEADER_BYTES + CRC_BYTES) return false;
  return get_u32(data + size - CRC_BYTES) ==
         bn_crc32_update(0, data, size - CRC_BYTES);
}

static bnorm_status parse_header(reader *r, parsed_image *image) {
  if (r->size < MAGIC_BYTES ||
      memcmp(r->data, file_magic, MAGIC_BYTES) != 0) {
    size_t n = r->size < MAGIC_BYTES ? r->size : MAGIC_BYTES;
    if (memcmp(r->data, file_magic, n) == 0)
      return truncated(r, "the magic \"BNORMVAR\"", MAGIC_BYTES);
    return bn_fail(BNORM_ERR_CORRUPT,
                   "%s is not a bnorm variables file: it does not start with "
                   "the magic \"BNORMVAR\" at offset 0",
                   r->source);
  }
  r->pos = VERSION_OFFSET;
  if (!has_bytes(r, 4)) return truncated(r, "the format version", 4);
  uint32_t version = get_u32(r->data + r->pos);
  if (version < VERSION_FLOAT32 || version > VERSION_LATEST) {
    if (trailing_crc_matches(r->data, r->size))
      return bn_fail(BNORM_ERR_UNSUPPORTED,
                     "%s has format version %u (offset %d); this bnorm reads "
                     "versions %d to %d",
                     r->source, version, VERSION_OFFSET, VERSION_FLOAT32,
                     VERSION_LATEST);
    return bn_fail(BNORM_ERR_CORRUPT,
                   "%s is corrupted: the format version at offset %d is %u "
                   "(expected %d to %d) and the CRC does not match",
                   r->source, VERSION_OFFSET, version, VERSION_FLOAT32,
                   VERSION_LATEST);
  }
  image->version = version;
  r->pos = COUNT_OFFSET;
  if (!has_bytes(r, 4)) return truncated(r, "the variable count", 4);
  image->count = get_u32(r->data + r->pos);
  if (image->count > MAX_FILE_VARIABLES)
    return bn_fail(BNORM_ERR_CORRUPT,
                   "%s is corrupted: the variable count at offset %d is %u, "
                   "more than the %d a file may hold",
                   r->source, COUNT_OFFSET, image->count, MAX_FILE_VARIABLES);
  r->pos = HEADER_BYTES;
  return BNORM_OK;
}

static bnorm_status parse_variable(reader *r, uint32_t version,
                                   uint32_t index, parsed_variable *v) {
  char what[64];
  v->offset = r->pos;
  snprintf(what, sizeof what, "the name length of variable %u", index);
  if (!has_bytes(r, 4)) return truncated(r, what, 4);
  v->name_len = get_u32(r->data + r->pos);
  if (v->name_len == 0 || v->name_len > MAX_FILE_NAME)
    return bn_fail(BNORM_ERR_CORRUPT,
                   "%s is corrupted: variable %u has a name length of %u at "
                   "offset %zu (allowed: 1 to %d)",
                   r->source, index, v->name_len, r->pos, MAX_FILE_NAME);
  r->pos += 4;

  snprintf(what, sizeof what, "the name of variable %u", index);
  if (!has_bytes(r, v->name_len)) return truncated(r, what, v->name_len);
  v->name = r->data + r->pos;
  if (memchr(v->name, '\0', v->name_len))
    return bn_fail(BNORM_ERR_CORRUPT,
                   "%s is corrupted: the name of variable %u at offset %zu "
                   "contains a NUL byte",
                   r->source, index, r->pos);
  r->pos += v->name_len;

  snprintf(what, sizeof what, "the rank of '%.*s'", (int)v->name_len,
           (const char *)v->name);
  if (!has_bytes(r, 4)) return truncated(r, what, 4);
  v->rank = get_u32(r->data + r->pos);
  if (v->rank > MAX_FILE_RANK)
    return bn_fail(BNORM_ERR_CORRUPT,
                   "%s is corrupted: '%.*s' has rank %u at offset %zu "
                   "(allowed: 0 to %d)",
                   r->source, (int)v->name_len, (const char *)v->name, v->rank,
                   r->pos, MAX_FILE_RANK);
  r->pos += 4;

  snprintf(what, sizeof what, "the dimensions of '%.*s'", (int)v->name_len,
           (const char *)v->name);
  if (!has_bytes(r, 8 * (size_t)v->rank))
    return truncated(r, what, 8 * (size_t)v->rank);
  size_t dims_offset = r->pos;
  v->count = 1;
  for (uint32_t d = 0; d < v->rank; d++, r->pos += 8) {
    v->dims[d] = get_u64(r->data + r->pos);
    if (v->dims[d] > SIZE_MAX || !bn_mul_size(v->count, (size_t)v->dims[d],
                                              &v->count))
      return bn_fail(BNORM_ERR_CORRUPT,
                     "%s is corrupted: the dimensions of '%.*s' at offset %zu "
                     "multiply to more elements than memory can hold",
                     r->source, (int)v->name_len, (const char *)v->name,
                     dims_offset);
  }

  snprintf(what, sizeof what, "the flags of '%.*s'", (int)v->name_len,
           (const char *)v->name);
  if (!has_bytes(r, 4)) return truncated(r, what, 4);
  uint32_t flags = get_u32(r->data + r->pos);
  uint32_t known = version == VERSION_FLOAT32 ? FLAG_TRAINABLE
                                              : FLAG_TRAINABLE | FLAG_FLOAT64;
  if (flags & ~known)
    return bn_fail(BNORM_ERR_CORRUPT,
                   "%s is corrupted: the flags of '%.*s' at offset %zu are "
                   "0x%08x; version %u defines only %s",
                   r->source, (int)v->name_len, (const char *)v->name, r->pos,
                   flags, version,
                   version == VERSION_FLOAT32
                       ? "bit 0 (trainable)"
                       : "bit 0 (trainable) and bit 1 (float64)");
  v->float64 = (flags & FLAG_FLOAT64) != 0;
  /* The trainable bit is informational: Keras' load_weights restores values
   * whatever the variables' trainability, and a compat.v1 layer built with
   * trainable=false legitimately loads weights saved from a trainable one. */
  r->pos += 4;

  v->data_offset = r->pos;
  size_t element_bytes = v->float64 ? 8 : 4;
  /* Compare in elements first: count * element_bytes could overflow. */
  if ((r->size - r->pos) / element_bytes < v->count) {
    snprintf(what, sizeof what, "the data of '%.*s'", (int)v->name_len,
             (const char *)v->name);
    return bn_fail(BNORM_ERR_CORRUPT,
                   "%s is truncated or corrupted: %s (%zu %s values) starts "
                   "at offset %zu but only %zu bytes remain",
                   r->source, what, v->count,
                   v->float64 ? "float64" : "float32", r->pos,
                   r->size - r->pos);
  }
  r->pos += v->count * element_bytes;
  return BNORM_OK;
}

/* Checks the image's framing, limits and CRC; fills `image` with views into
 * `data`. Nothing about the layer is looked at here. */
static bnorm_status parse_image(const unsigned char *data, size_t size,
                                const char *source, parsed_image *image) {
  reader r = {data, size, 0, source};
  bnorm_status st = parse_header(&r, image);
  if (st != BNORM_OK) return st;
  for (uint32_t i = 0; i < image->count; i++) {
    st = parse_variable(&r, image->version, i, &image->variables[i]);
    if (st != BNORM_OK) return st;
  }
  if (!has_bytes(&r, CRC_BYTES)) return truncated(&r, "the CRC-32", CRC_BYTES);
  size_t crc_offset = r.pos;
  if (size - crc_offset > CRC_BYTES)
    return bn_fail(BNORM_ERR_CORRUPT,
                   "%s is corrupted: %zu unexpected bytes follow the CRC-32 at "
                   "offset %zu (the file should end at offset %zu)",
                   source, size - crc_offset - CRC_BYTES, crc_offset,
                   crc_offset + CRC_BYTES);
  uint32_t stored = get_u32(data + crc_offset);
  uint32_t computed = bn_crc32_update(0, data, crc_offset);
  if (stored != computed)
    return bn_fail(BNORM_ERR_CORRUPT,
                   "%s is corrupted: the CRC-32 at offset %zu is 0x%08x but "
                   "the %zu bytes before it give 0x%08x",
                   source, crc_offset, stored, crc_offset, computed);
  return BNORM_OK;
}

/* ------------------------------------------------------------------------- */
/* Matching against the layer and loading                                    */
/* ------------------------------------------------------------------------- */

static bool name_equals(const parsed_variable *v, const char *name) {
  return strlen(name) == v->name_len &&
         memcmp(v->name, name, v->name_len) == 0;
}

/* "[3, 1, 4]" into buf. */
static void format_shape(char *buf, size_t capacity, const uint64_t *dims,
                         const int64_t *layer_dims, int rank) {
  size_t used = 0;
  used += (size_t)snprintf(buf, capacity, "[");
  for (int d = 0; d < rank && used < capacity; d++)
    used += (size_t)snprintf(buf + used, capacity - used, "%s%llu",
                             d ? ", " : "",
                             dims ? (unsigned long long)dims[d]
                                  : (unsigned long long)layer_dims[d]);
  if (used < capacity) snprintf(buf + used, capacity - used, "]");
}

/* The layer's short names, "gamma, beta, ...", for messages. */
static void format_layer_names(const bnorm_layer *layer, char *buf,
                               size_t capacity) {
  size_t used = 0;
  buf[0] = '\0';
  size_t count = bnorm_layer_variable_count(layer);
  for (size_t i = 0; i < count && used < capacity; i++) {
    bnorm_variable_info info;
    if (bnorm_layer_variable_info(layer, i, &info) != BNORM_OK) break;
    used += (size_t)snprintf(buf + used, capacity - used, "%s%s",
                             i ? ", " : "", info.short_name);
  }
}

/* For each layer variable i, file_index[i] is the file's entry with its
 * name. Fails unless names correspond one to one and shapes agree. */
static bnorm_status match_layer(const bnorm_layer *layer,
                                const parsed_image *image, const char *source,
                                size_t *file_index) {
  size_t layer_count = bnorm_layer_variable_count(layer);
  bool used[MAX_FILE_VARIABLES] = {false};
  char names[256];
  for (size_t i = 0; i < layer_count; i++) {
    bnorm_variable_info info;
    bnorm_status st = bnorm_layer_variable_info(layer, i, &info);
    if (st != BNORM_OK) return st;
    size_t found = image->count;
    for (uint32_t j = 0; j < image->count; j++) {
      if (!name_equals(&image->variables[j], info.short_name)) continue;
      if (found != image->count)
        return bn_fail(BNORM_ERR_CORRUPT,
                       "%s is corrupted: it holds '%s' twice (offsets %zu and "
                       "%zu)",
                       source, info.short_name,
                       image->variables[found].offset,
                       image->variables[j].offset);
      found = j;
    }
    if (found == image->count)
      return bn_fail(BNORM_ERR_NOT_FOUND,
                     "%s has no variable '%s', which the layer has (was it "
                     "saved from a layer with another configuration?)",
                     source, info.short_name);
    const parsed_variable *v = &image->variables[found];
    bool same_shape = v->rank == (uint32_t)info.rank;
    for (int d = 0; same_shape && d < info.rank; d++)
      same_shape = v->dims[d] == (uint64_t)info.shape[d];
    if (!same_shape) {
      char file_shape[160], layer_shape[160];
      format_shape(file_shape, sizeof file_shape, v->dims, NULL, (int)v->rank);
      format_shape(layer_shape, sizeof layer_shape, NULL, info.shape,
                   info.rank);
      return bn_fail(BNORM_ERR_SHAPE,
                     "%s: variable '%s' (offset %zu) has shape %s but the "
                     "layer's has shape %s",
                     source, info.short_name, v->offset, file_shape,
                     layer_shape);
    }
    used[found] = true;
    file_index[i] = found;
  }
  for (uint32_t j = 0; j < image->count; j++) {
    if (used[j]) continue;
    const parsed_variable *v = &image->variables[j];
    format_layer_names(layer, names, sizeof names);
    return bn_fail(BNORM_ERR_NOT_FOUND,
                   "%s holds variable '%.*s' (offset %zu), which the layer "
                   "does not have (it has: %s)",
                   source, (int)v->name_len, (const char *)v->name, v->offset,
                   names);
  }
  return BNORM_OK;
}

/* Writes the file's values into the layer. Everything has been checked, so
 * set_variable should not fail; if it does anyway, the variables already
 * written are put back so the layer is left as it was. */
static bnorm_status apply_image(bnorm_layer *layer, const unsigned char *data,
                                const parsed_image *image,
                                const size_t *file_index) {
  size_t layer_count = bnorm_layer_variable_count(layer);
  size_t total = bnorm_layer_weights_count(layer);
  size_t bytes;
  bnorm_dtype dtype = bnorm_layer_config(layer)->dtype;
  size_t element_size = bn_dtype_size(dtype);
  if (!bn_mul_size(total ? total : 1, 2 * element_size, &bytes))
    return bn_fail(BNORM_ERR_OVERFLOW, "the layer's variables are too large");
  char *buffer = malloc(bytes);
  if (!buffer)
    return bn_fail(BNORM_ERR_OUT_OF_MEMORY,
                   "out of memory loading %zu values of variables", total);
  char *incoming = buffer, *previous = buffer + total * element_size;
  bnorm_status st = BNORM_OK;
  size_t offset = 0;
  /* Decode everything and keep a copy of the current values first. */
  for (size_t i = 0; i < layer_count && st == BNORM_OK; i++) {
    const parsed_variable *v = &image->variables[file_index[i]];
    if (v->count > total - offset) {
      st = bn_fail(BNORM_ERR_STATE,
                   "internal error: the layer's variables hold more than its "
                   "%zu weights",
                   total);
      break;
    }
    /* Data of the other dtype is converted, as Keras' load_weights casts. */
    for (size_t k = 0; k < v->count; k++)
      bn_store(incoming, dtype, offset + k,
               v->float64 ? get_f64(data + v->data_offset + 8 * k)
                          : (double)get_f32(data + v->data_offset + 4 * k));
    st = bnorm_layer_get_variable(layer, i, previous + offset * element_size,
                                  v->count);
    offset += v->count;
  }
  size_t written = 0;
  offset = 0;
  for (; st == BNORM_OK && written < layer_count; written++) {
    size_t n = image->variables[file_index[written]].count;
    st = bnorm_layer_set_variable(layer, written,
                                  incoming + offset * element_size, n);
    if (st == BNORM_OK) offset += n;
  }
  if (st != BNORM_OK && written > 0) {
    /* Keep the failure's message; the restoring calls may overwrite it. */
    char message[512];
    snprintf(message, sizeof message, "%s", bnorm_last_error());
    offset = 0;
    for (size_t i = 0; i < written; i++) {
      size_t n = image->variables[file_index[i]].count;
      (void)bnorm_layer_set_variable(layer, i, previous + offset * element_size,
                                     n);
      offset += n;
    }
    bn_fail(st, "%s", message);
  }
  free(buffer);
  return st;
}

static bnorm_status load_image(bnorm_layer *layer, const unsigned char *data,
                               size_t size, const char *source) {
  /* parsed_image is a few kilobytes: fine on the stack of any thread. */
  parsed_image image;
  bnorm_status st = parse_image(data, size, source, &image);
  if (st != BNORM_OK) return st;
  size_t file_index[MAX_FILE_VARIABLES];
  if (bnorm_layer_variable_count(layer) > MAX_FILE_VARIABLES)
    return bn_fail(BNORM_ERR_UNSUPPORTED,
                   "the layer has more variables than a file can hold");
  st = match_layer(layer, &image, source, file_index);
  if (st != BNORM_OK) return st;
  return apply_image(layer, data, &image, file_index);
}

static bnorm_status check_loadable(const bnorm_layer *layer) {
  if (!bnorm_layer_is_built(layer))
    return bn_fail(BNORM_ERR_STATE,
                   "the layer is not built, so it has no variables to load "
                   "into; build it with the input shape it was saved with "
                   "first");
  return BNORM_OK;
}

bnorm_status bnorm_layer_load_from_buffer(bnorm_layer *layer, const void *data,
                                          size_t size) {
  if (!layer) return bn_fail(BNORM_ERR_NULL_ARGUMENT, "layer is NULL");
  if (!data) return bn_fail(BNORM_ERR_NULL_ARGUMENT, "data is NULL");
  bnorm_status st = check_loadable(layer);
  if (st != BNORM_OK) return st;
  st = load_image(layer, data, size, "the buffer");
  if (st != BNORM_OK) return st;
  bn_clear_error();
  return BNORM_OK;
}

/* Reads `path` into a malloc'd buffer, at most `limit` bytes; *more is set
 * when the file goes on past the limit. The limit keeps a wrong path (a
 * device, a pipe, a huge unrelated file) from exhausting memory. */
static bnorm_status read_file_prefix(const char *path, size_t limit,
                                     unsigned char **data, size_t *size,
                                     bool *more) {
  errno = 0;
  FILE *f = fopen(path, "rb");
  if (!f)
    return bn_fail(BNORM_ERR_IO, "cannot open '%s' for reading: %s", path,
                   errno ? strerror(errno) : "unknown error");
  /* Read up to one byte past the limit: that byte tells there is more. */
  size_t wanted = limit < SIZE_MAX ? limit + 1 : limit;
  size_t capacity = wanted < 4096 ? wanted : 4096, used = 0;
  unsigned char *buf = malloc(capacity ? capacity : 1);
  bnorm_status st = BNORM_OK;
  if (!buf)
    st = bn_fail(BNORM_ERR_OUT_OF_MEMORY, "out of memory reading '%s'", path);
  while (st == BNORM_OK && used < wanted) {
    if (used == capacity) {
      size_t grown_capacity =
          capacity <= wanted / 2 ? capacity * 2 : wanted;
      unsigned char *grown = realloc(buf, grown_capacity);
      if (!grown) {
        st = bn_fail(BNORM_ERR_OUT_OF_MEMORY,
                     "out of memory reading '%s' (%zu bytes so far)", path,
                     used);
        break;
      }
      buf = grown;
      capacity = grown_capacity;
    }
    errno = 0;
    used += fread(buf + used, 1, capacity - used, f);
    if (ferror(f))
      st = bn_fail(BNORM_ERR_IO, "cannot read '%s': %s", path,
                   errno ? strerror(errno) : "read error");
    else if (feof(f))
      break;
  }
  fclose(f); /* read-only: nothing to lose if closing fails */
  if (st != BNORM_OK) {
    free(buf);
    return st;
  }
  *more = used > limit;
  *data = buf;
  *size = *more ? limit : used;
  return BNORM_OK;
}

bnorm_status bnorm_layer_load(bnorm_layer *layer, const char *path) {
  if (!layer) return bn_fail(BNORM_ERR_NULL_ARGUMENT, "layer is NULL");
  if (!path) return bn_fail(BNORM_ERR_NULL_ARGUMENT, "path is NULL");
  if (!path[0]) return bn_fail(BNORM_ERR_INVALID_ARGUMENT, "path is empty");
  bnorm_status st = check_loadable(layer);
  if (st != BNORM_OK) return st;
  /* A file that fits the layer has exactly the size of the layer's own
   * image. Reading a generous margin more still lets a file saved from a
   * somewhat larger layer be diagnosed precisely (which variable, which
   * shape); past that it is refused by its size alone. */
  size_t expected, largest;
  st = measure_image(layer, &expected, &largest);
  if (st != BNORM_OK) return st;
  const size_t margin = (size_t)64 << 20;
  size_t limit = expected <= SIZE_MAX / 2 - margin ? 2 * expected + margin
                                                   : SIZE_MAX / 2;
  unsigned char *data = NULL;
  size_t size = 0;
  bool more = false;
  st = read_file_prefix(path, limit, &data, &size, &more);
  if (st != BNORM_OK) return st;
  /* Messages name the file; a very long path is cut, which is harmless. */
  char source[300];
  snprintf(source, sizeof source, "'%s'", path);
  if (more) {
    bool magic = size >= MAGIC_BYTES &&
                 memcmp(data, file_magic, MAGIC_BYTES) == 0;
    st = bn_fail(magic ? BNORM_ERR_SHAPE : BNORM_ERR_CORRUPT,
                 "%s is larger than %zu bytes, but a file of this layer's "
                 "variables has exactly %zu bytes: %s",
                 source, limit, expected,
                 magic ? "it was saved from a much larger layer"
                       : "it is not a bnorm variables file");
  } else {
    st = load_image(layer, data, size, source);
  }
  free(data);
  if (st != BNORM_OK) return st;
  bn_clear_error();
  return BNORM_OK;
}
