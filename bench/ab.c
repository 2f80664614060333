/* bnorm-ab: two builds of libbnorm timed against each other in one process.
 *
 *   bnorm-ab LIB_A LIB_B THREADS PASS CACHE DIM... [--axis K] [--vbs N]
 *     PASS: train | infer | bwd;  CACHE: cold (3x the last-level cache
 *     read before each call, as bnorm-bench scrubs) | warm (calls
 *     repeated back to back);  DIMs: the input's shape;
 *     --vbs: virtual_batch_size (ghost batches; default none).
 *
 * On a shared machine whose speed drifts by 20-30% from one minute to the
 * next, whole benchmark runs cannot show a change of 5%. Here the two
 * libraries' calls alternate (ABBA), so a drift hits both alike, and the
 * median of the per-pair ratios A/B says which is faster (> 1: B is);
 * its quartiles say how sure that is. With more than one thread, each
 * sample waits 6 ms first, for the other library's idle workers to stop
 * spinning, and warms up for 2 ms, for this library's to wake. Example,
 * the current build against a copy of an older one:
 *   ./build-bench/bench/bnorm-ab old/libbnorm.so build-bench/libbnorm.so 1 \
 *       infer warm 32 1024
 */
#define _POSIX_C_SOURCE 200809L
#include <bnorm.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

enum { PAIRS = 61, COLD_PAIRS = 41, MAX_DIMS = 8 };

typedef struct library {
  void *handle;
  bnorm_layer *layer;
  bnorm_saved *saved;
  bnorm_status (*set_num_threads)(int);
  void (*config_init)(bnorm_config *);
  bnorm_status (*layer_create)(const bnorm_config *, bnorm_layer **);
  bnorm_status (*layer_build)(bnorm_layer *, const int64_t *, int);
  bnorm_status (*saved_create)(bnorm_saved **);
  bnorm_status (*forward)(bnorm_layer *, const bnorm_forward_args *);
  bnorm_status (*backward)(const bnorm_layer *, const bnorm_backward_args *);
} library;

typedef struct call {
  int pass; /* 0 train, 1 infer, 2 bwd */
  const float *x, *dy;
  float *y, *dx, *dgamma, *dbeta;
  const int64_t *shape;
  int rank;
} call;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* dlsym's object pointer into a function pointer, without the cast ISO C
 * does not define. */
static int resolve(void *handle, const char *name, void *fn, size_t size) {
  void *p = dlsym(handle, name);
  if (!p) {
    fprintf(stderr, "bnorm-ab: %s: no %s\n", dlerror(), name);
    return -1;
  }
  memcpy(fn, &p, size);
  return 0;
}
#define RESOLVE(lib, field, name) \
  resolve((lib)->handle, name, &(lib)->field, sizeof (lib)->field)

static int open_library(library *lib, const char *path, int threads,
                        int axis, long long vbs, const int64_t *shape,
                        int rank) {
  lib->handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!lib->handle) {
    fprintf(stderr, "bnorm-ab: %s\n", dlerror());
    return -1;
  }
  if (RESOLVE(lib, set_num_threads, "bnorm_set_num_threads") ||
      RESOLVE(lib, config_init, "bnorm_config_init") ||
      RESOLVE(lib, layer_create, "bnorm_layer_create") ||
      RESOLVE(lib, layer_build, "bnorm_layer_build") ||
      RESOLVE(lib, saved_create, "bnorm_saved_create") ||
      RESOLVE(lib, forward, "bnorm_layer_forward") ||
      RESOLVE(lib, backward, "bnorm_layer_backward"))
    return -1;
  lib->set_num_threads(threads);
  bnorm_config cfg;
  lib->config_init(&cfg);
  cfg.axis[0] = axis;
  cfg.axis_count = 1;
  cfg.virtual_batch_size = vbs;
  if (lib->layer_create(&cfg, &lib->layer) != BNORM_OK ||
      lib->layer_build(lib->layer, shape, rank) != BNORM_OK ||
      lib->saved_create(&lib->saved) != BNORM_OK) {
    fprintf(stderr, "bnorm-ab: %s: cannot make the layer\n", path);
    return -1;
  }
  return 0;
}

static void run(const library *lib, const call *c) {
  bnorm_forward_args fa;
  memset(&fa, 0, sizeof fa);
  fa.x = c->x;
  fa.y = c->y;
  fa.shape = c->shape;
  fa.rank = c->rank;
  if (c->pass == 2) {
    bnorm_backward_args ba = {lib->saved, c->x,  c->dy,     c->shape,
                              c->rank,    c->dx, c->dgamma, c->dbeta};
    lib->backward(lib->layer, &ba);
    return;
  }
  fa.training = c->pass == 0;
  fa.saved = c->pass == 0 ? lib->saved : NULL;
  lib->forward(lib->layer, &fa);
}

static float *tensor(size_t n) {
  size_t bytes = (n * sizeof(float) + 4095) / 4096 * 4096;
  float *p = aligned_alloc(4096, bytes);
  if (p) memset(p, 0, bytes);
  return p;
}

int main(int argc, char **argv) {
  if (argc < 7) {
    fprintf(stderr, "usage: bnorm-ab LIB_A LIB_B THREADS train|infer|bwd "
                    "cold|warm DIM... [--axis K] [--vbs N]\n");
    return 2;
  }
  const char *passes[] = {"train", "infer", "bwd"};
  int threads = atoi(argv[3]), pass = -1, axis = -1, rank = 0;
  long long vbs = 0;
  for (int p = 0; p < 3; p++)
    if (!strcmp(argv[4], passes[p])) pass = p;
  int cold = !strcmp(argv[5], "cold");
  int64_t shape[MAX_DIMS];
  size_t n = 1;
  for (int i = 6; i < argc; i++) {
    if (!strcmp(argv[i], "--axis") && i + 1 < argc) {
      axis = atoi(argv[++i]);
      continue;
    }
    if (!strcmp(argv[i], "--vbs") && i + 1 < argc) {
      vbs = atoll(argv[++i]);
      continue;
    }
    if (rank == MAX_DIMS) break;
    shape[rank] = atoll(argv[i]);
    n *= (size_t)shape[rank++];
  }
  if (pass < 0 || threads < 1 || rank == 0 || n == 0) {
    fprintf(stderr, "bnorm-ab: bad arguments\n");
    return 2;
  }
  size_t channels = (size_t)shape[axis < 0 ? rank + axis : axis];
  /* A fixed 96 MiB left a 16 MB tensor partly in a 480 MiB L3. */
  size_t scrub_count = 3 * bench_llc_bytes(0) / sizeof(float);
  float *scrub = tensor(scrub_count);
  call c = {pass,      NULL,      NULL, tensor(n), tensor(n),
            tensor(channels), tensor(channels), shape, rank};
  float *x = tensor(n), *dy = tensor(n);
  if (!scrub || !x || !dy || !c.y || !c.dx || !c.dgamma || !c.dbeta) {
    fprintf(stderr, "bnorm-ab: out of memory\n");
    return 1;
  }
  srand(1);
  for (size_t i = 0; i < n; i++) {
    x[i] = (float)rand() / (float)RAND_MAX;
    dy[i] = (float)rand() / (float)RAND_MAX - 0.5f;
  }
  c.x = x;
  c.dy = dy;
  library libs[2];
  memset(libs, 0, sizeof libs);
  for (int k = 0; k < 2; k++) {
    if (open_library(&libs[k], argv[1 + k], threads, axis, vbs, shape, rank))
      return 1;
    call train = c;
    train.pass = 0;
    run(&libs[k], &train); /* backward needs a recorded training call */
  }

  int pairs = cold ? COLD_PAIRS : PAIRS;
  /* Warm: calls per sample, about 20 ms of work at 1 GB/s. */
  int calls = cold ? 1 : (int)(2e7 / ((double)n + 1000.0)) + 1;
  static double times[2][PAIRS], ratio[PAIRS];
  volatile float sink = 0.0f;
  const struct timespec settle = {0, 6000000};
  for (int pair = 0; pair < pairs; pair++)
    for (int turn = 0; turn < 2; turn++) {
      int k = (pair & 1) ? 1 - turn : turn; /* ABBA */
      /* The other library's idle workers spin up to 5 ms (BNORM_SPIN_US)
       * before they sleep; on a machine with as many CPUs as threads they
       * would take CPUs from this library's workers. */
      if (threads > 1) nanosleep(&settle, NULL);
      if (cold) {
        float s = 0.0f;
        for (size_t i = 0; i < scrub_count; i += 16) s += scrub[i];
        sink += s;
      } else {
        /* Long enough for a sleeping worker to wake (up to 0.4 ms). */
        double until = now() + (threads > 1 ? 2e-3 : 0.0);
        for (int i = 0; i < 3 || now() < until; i++) run(&libs[k], &c);
      }
      double t0 = now();
      for (int i = 0; i < calls; i++) run(&libs[k], &c);
      times[k][pair] = (now() - t0) / calls;
    }
  for (int pair = 0; pair < pairs; pair++)
    ratio[pair] = times[0][pair] / times[1][pair];
  qsort(times[0], (size_t)pairs, sizeof(double), by_value);
  qsort(times[1], (size_t)pairs, sizeof(double), by_value);
  qsort(ratio, (size_t)pairs, sizeof(double), by_value);
  printf("%s %s, %d thread%s, %zu elements: A %.3f us, B %.3f us; A/B "
         "median %.3f [quartiles %.3f %.3f] (> 1: B is faster)\n",
         passes[pass], cold ? "cold" : "warm", threads, threads == 1 ? "" : "s",
         n, times[0][pairs / 2] * 1e6, times[1][pairs / 2] * 1e6,
         ratio[pairs / 2], ratio[pairs / 4], ratio[3 * pairs / 4]);
  (void)sink;
  return 0;
}
