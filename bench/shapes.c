/* The shapes file: one case per line, "LAYOUT AxBxC... [cold|warm]". */
#define _POSIX_C_SOURCE 200809L /* strtok_r */
#include "bench.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_line(char *line, bench_shape *s, char *err, size_t errlen) {
  char *save = NULL;
  char *layout = strtok_r(line, " \t\r\n", &save);
  char *dims = strtok_r(NULL, " \t\r\n", &save);
  char *cache = strtok_r(NULL, " \t\r\n", &save);
  char *extra = strtok_r(NULL, " \t\r\n", &save);
  if (!layout || !dims || extra) {
    snprintf(err, errlen, "expected 'LAYOUT AxBx... [cold|warm]'");
    return -1;
  }
  memset(s, 0, sizeof *s);
  size_t rank = strlen(layout);
  if (rank < 2 || rank > BENCH_MAX_RANK) {
    snprintf(err, errlen, "layout '%s' must have 2 to %d letters", layout,
             BENCH_MAX_RANK);
    return -1;
  }
  s->rank = (int)rank;
  s->channel_axis = -1;
  for (size_t i = 0; i < rank; i++) {
    char c = (char)toupper((unsigned char)layout[i]);
    s->layout[i] = c;
    if (!isalpha((unsigned char)c) || strchr(s->layout, c) != &s->layout[i]) {
      snprintf(err, errlen, "layout '%s': letters must be distinct", layout);
      return -1;
    }
    if (c == 'C') s->channel_axis = (int)i;
  }
  if (s->layout[0] != 'N' || s->channel_axis < 1) {
    snprintf(err, errlen, "layout '%s' must start with N and contain C", layout);
    return -1;
  }
  int n = 0;
  for (char *p = dims; *p;) {
    errno = 0;
    char *end;
    long long v = strtoll(p, &end, 10);
    if (end == p || errno || v < 1 || v > (1LL << 40) || n >= s->rank) {
      snprintf(err, errlen, "dims '%s' do not match layout '%s'", dims, layout);
      return -1;
    }
    s->dims[n++] = v;
    p = end;
    if (*p == 'x' || *p == 'X') p++;
    else if (*p) {
      snprintf(err, errlen, "dims '%s': sizes are joined by 'x'", dims);
      return -1;
    }
  }
  if (n != s->rank) {
    snprintf(err, errlen, "dims '%s' do not match layout '%s'", dims, layout);
    return -1;
  }
  s->cold = true;
  if (cache && strcmp(cache, "warm") == 0) s->cold = false;
  else if (cache && strcmp(cache, "cold") != 0) {
    snprintf(err, errlen, "cache '%s' must be cold or warm", cache);
    return -1;
  }
  s->total = 1;
  for (int i = 0; i < s->rank; i++) s->total *= (size_t)s->dims[i];
  s->channels = (size_t)s->dims[s->channel_axis];
  int len = snprintf(s->name, sizeof s->name, "%s ", s->layout);
  for (int i = 0; i < s->rank && len < (int)sizeof s->name; i++)
    len += snprintf(s->name + len, sizeof s->name - (size_t)len, "%s%lld",
                    i ? "x" : "", (long long)s->dims[i]);
  return 0;
}

int bench_shapes_load(const char *path, bench_shape *shapes, size_t capacity,
                      size_t *count, char *err, size_t errlen) {
  FILE *f = fopen(path, "r");
  if (!f) {
    snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
    return -1;
  }
  char line[512], why[256];
  int number = 0;
  *count = 0;
  while (fgets(line, sizeof line, f)) {
    number++;
    char *hash = strchr(line, '#');
    if (hash) *hash = '\0';
    if (strspn(line, " \t\r\n") == strlen(line)) continue;
    if (*count == capacity) {
      snprintf(err, errlen, "%s: more than %zu shapes", path, capacity);
      fclose(f);
      return -1;
    }
    if (parse_line(line, &shapes[*count], why, sizeof why) != 0) {
      snprintf(err, errlen, "%s:%d: %s", path, number, why);
      fclose(f);
      return -1;
    }
    (*count)++;
  }
  fclose(f);
  if (*count == 0) {
    snprintf(err, errlen, "%s: no shapes", path);
    return -1;
  }
  return 0;
}
