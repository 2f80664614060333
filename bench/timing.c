/* Clock, statistics, cache scrubbing and the interleaved timing loop. */
#define _POSIX_C_SOURCE 200809L
#include "bench.h"

#include <math.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double bench_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

void bench_sort(double *values, int n) {
  if (n > 1) qsort(values, (size_t)n, sizeof *values, cmp_double);
}

void bench_stats_of(double *samples, int n, bench_stats *out) {
  out->reps = n;
  if (n <= 0) {
    out->median = out->min = out->max = NAN;
    return;
  }
  bench_sort(samples, n);
  out->min = samples[0];
  out->max = samples[n - 1];
  out->median = n % 2 ? samples[n / 2]
                      : 0.5 * (samples[n / 2 - 1] + samples[n / 2]);
}

size_t bench_llc_bytes(size_t override_mib) {
  if (override_mib) return override_mib << 20;
  FILE *f = fopen("/sys/devices/system/cpu/cpu0/cache/index3/size", "r");
  if (f) {
    unsigned long v = 0;
    char unit = 0;
    int got = fscanf(f, "%lu%c", &v, &unit);
    fclose(f);
    if (got >= 1 && v > 0) {
      if (unit == 'K') return (size_t)v << 10;
      if (unit == 'M') return (size_t)v << 20;
      return (size_t)v;
    }
  }
#ifdef _SC_LEVEL3_CACHE_SIZE
  long v = sysconf(_SC_LEVEL3_CACHE_SIZE);
  if (v > 0) return (size_t)v;
#endif
  return (size_t)32 << 20;
}

static float *scrub_buf;
static size_t scrub_count;
static volatile float scrub_sink;

int bench_scrub_init(size_t bytes) {
  scrub_count = bytes / sizeof(float);
  scrub_buf = aligned_alloc(4096, (scrub_count * sizeof(float) + 4095) &
                                      ~(size_t)4095);
  if (!scrub_buf) return -1;
  for (size_t i = 0; i < scrub_count; i++) scrub_buf[i] = (float)(i & 7);
  return 0;
}

/* Reads one float per cache line of the buffer: every line of the buffer
 * is loaded, so earlier lines are evicted (dirty ones written back) before
 * the timed call starts, and the timed call finds clean caches full of
 * scrub lines. */
void bench_scrub(void) {
  float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  size_t n = scrub_count & ~(size_t)63;
  for (size_t i = 0; i < n; i += 64) {
    s0 += scrub_buf[i];
    s1 += scrub_buf[i + 16];
    s2 += scrub_buf[i + 32];
    s3 += scrub_buf[i + 48];
  }
  scrub_sink = s0 + s1 + s2 + s3;
}

size_t bench_scrub_bytes(void) { return scrub_count * sizeof(float); }

void bench_scrub_free(void) {
  free(scrub_buf);
  scrub_buf = NULL;
  scrub_count = 0;
}

void bench_settle(double seconds) {
  struct timespec pause = {(time_t)seconds,
                           (long)(fmod(seconds, 1.0) * 1e9)};
  nanosleep(&pause, NULL);
}

void bench_time_runners(bench_runner *runners, int count, bool cold,
                        const bench_timing *timing) {
  int reps = timing->reps;
  double *samples = calloc((size_t)count * (size_t)(reps > 0 ? reps : 1),
                           sizeof *samples);
  int *calls = calloc((size_t)count, sizeof *calls);
  if (!samples || !calls) {
    for (int r = 0; r < count; r++) runners[r].failed = 1;
    free(samples);
    free(calls);
    return;
  }
  /* Calls per repetition: 1 when cold; warm, enough that a repetition lasts
   * min_rep_s (the clock's resolution and the loop vanish beside it),
   * measured on warm calls: the first call after the other runners' turns
   * waits for this runner's threads to wake (0.1-2 ms on this machine), and
   * timing it alone left small cases a handful of calls per repetition
   * (oneDNN on two threads: one, also because bnorm's idle worker still
   * spun), whose warm-up reps then ended before the threads had settled. */
  for (int r = 0; r < count; r++) {
    calls[r] = 1;
    runners[r].failed = 0;
    if (runners[r].run_block) calls[r] = runners[r].block_calls;
    if (cold || runners[r].run_block) continue;
    /* After the pause the rounds take, so that the other runners' idle
     * threads no longer spin on the CPUs this one's need. */
    if (count > 1 && timing->settle_s > 0) bench_settle(timing->settle_s);
    double once = 0;
    for (int batch = 0; !runners[r].failed && batch < 2; batch++) {
      /* The warm-up, then the timed calls: each lasts min_rep_s. */
      long done = 0;
      double start = bench_now(), elapsed = 0;
      while (elapsed < timing->min_rep_s && done < 100000) {
        if (runners[r].run(runners[r].ctx) != 0) {
          runners[r].failed = 1;
          break;
        }
        done++;
        elapsed = bench_now() - start;
      }
      once = elapsed / (double)(done ? done : 1);
    }
    if (runners[r].failed) continue;
    if (once > 0 && once < timing->min_rep_s) {
      double k = ceil(timing->min_rep_s / once);
      calls[r] = k > 100000 ? 100000 : (int)k;
    }
  }
  /* Rounds: each runner in turn runs a block of repetitions, its warm-up
   * ones first, so that every implementation is timed in the steady state
   * of its own thread pool, as a training loop calls it, while drifts of a
   * noisy machine still hit all of them alike. */
  int block = (reps + BENCH_ROUNDS - 1) / BENCH_ROUNDS;
  for (int first = 0; first < reps; first += block) {
    int in_block = reps - first < block ? reps - first : block;
    for (int r = 0; r < count; r++) {
      bench_runner *R = &runners[r];
      if (R->failed) continue;
      if (count > 1 && timing->settle_s > 0) bench_settle(timing->settle_s);
      double *block_samples = samples + (size_t)r * (size_t)reps + (size_t)first;
      if (R->run_block) {
        if (R->run_block(R->ctx, timing->warmup, in_block, block_samples) != 0)
          R->failed = 1;
        continue;
      }
      for (int rep = -timing->warmup; rep < in_block && !R->failed; rep++) {
        if (cold) bench_scrub();
        double t0 = bench_now();
        for (int k = 0; k < calls[r]; k++)
          if (R->run(R->ctx) != 0) {
            R->failed = 1;
            break;
          }
        double t = (bench_now() - t0) / calls[r];
        if (rep >= 0) block_samples[rep] = t;
      }
    }
  }
  for (int r = 0; r < count; r++) {
    memset(&runners[r].stats, 0, sizeof runners[r].stats);
    if (runners[r].failed) continue;
    bench_stats_of(samples + (size_t)r * (size_t)reps, reps, &runners[r].stats);
    runners[r].stats.calls_per_rep = calls[r];
  }
  free(samples);
  free(calls);
}

static int tracked_child;

void bench_cpu_track_child(int pid) { tracked_child = pid; }

/* utime + stime of a live process, from /proc/PID/stat; 0 if unreadable. */
static double process_cpu_seconds(int pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  /* The command name, in parentheses, may hold spaces: count fields from
   * the last ')'. utime and stime are fields 14 and 15. */
  const char *p = strrchr(buf, ')');
  unsigned long utime, stime;
  if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
                   &utime, &stime) != 2)
    return 0;
  return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

void bench_cpu_read(bench_cpu *c) {
  c->busy = c->steal = NAN;
  FILE *f = fopen("/proc/stat", "r");
  if (f) {
    unsigned long long v[8] = {0};
    if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1],
               &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]) == 8) {
      double hz = (double)sysconf(_SC_CLK_TCK);
      c->busy = (double)(v[0] + v[1] + v[2] + v[5] + v[6]) / hz;
      c->steal = (double)v[7] / hz;
    }
    fclose(f);
  }
  struct rusage self, children;
  getrusage(RUSAGE_SELF, &self);
  getrusage(RUSAGE_CHILDREN, &children);
  c->own = 0;
  const struct timeval *tv[] = {&self.ru_utime, &self.ru_stime,
                                &children.ru_utime, &children.ru_stime};
  for (int i = 0; i < 4; i++)
    c->own += (double)tv[i]->tv_sec + 1e-6 * (double)tv[i]->tv_usec;
  if (tracked_child > 0) c->own += process_cpu_seconds(tracked_child);
}

double bench_cpu_others(const bench_cpu *a, const bench_cpu *b, double wall) {
  /* /proc/stat counts in ticks (10 ms): over short windows the estimate
   * is coarse, so it is clamped to what the machine has. */
  double others = (b->busy - a->busy) - (b->own - a->own);
  double cpus = (double)sysconf(_SC_NPROCESSORS_ONLN);
  return wall > 0 ? fmin(fmax(others, 0.0) / wall, cpus) : 0.0;
}

double bench_cpu_others_since(const bench_cpu *before, double t0,
                              bench_cpu *after) {
  /* /proc/stat counts 10 ms ticks: a window under 0.3 s is stretched by
   * sleeping, which leaves the CPUs to whoever else wants them. */
  double wall = bench_now() - t0;
  if (wall < 0.3) {
    double rest = 0.3 - wall;
    struct timespec ts = {0, (long)(rest * 1e9)};
    nanosleep(&ts, NULL);
  }
  bench_cpu_read(after);
  return bench_cpu_others(before, after, bench_now() - t0);
}
