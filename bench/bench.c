/* bnorm-bench: the benchmark of issue 5. For every shape of a shapes file,
 * every pass (training forward, inference forward, backward) and every
 * thread count it checks oneDNN's and PyTorch's outputs against bnorm's,
 * then times bnorm (its public layer API), oneDNN (same process) and
 * PyTorch (torch_bench.py, a server in a child process) in the same
 * interleaved rounds, measures the memory bandwidth at the start and the
 * end, and prints one table (and writes a CSV).
 *
 *   bnorm-bench [--shapes FILE] [--threads 1,2] [--reps N] [--warmup N]
 *               [--min-rep-ms MS] [--csv FILE] [--no-torch]
 *               [--python PATH] [--torch-script PATH] [--workdir DIR]
 *               [--llc-mib N] [--stream-mib N] [--wait-idle SECONDS]
 *               [--huge-pages]
 *
 * Exit status: 0 when every peer matched bnorm and nothing failed. */
#define _GNU_SOURCE /* mkdtemp */
#include "bench.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef BENCH_SOURCE_DIR
#define BENCH_SOURCE_DIR "bench"
#endif

typedef struct options {
  const char *shapes, *csv, *python, *script, *workdir;
  int threads[4], thread_count;
  bench_timing timing;
  bool torch, huge_pages;
  size_t llc_mib, stream_mib;
  double wait_idle_s;
} options;

static void usage(void) {
  fprintf(stderr,
          "usage: bnorm-bench [--shapes FILE] [--threads 1,2] [--reps N] "
          "[--warmup N]\n"
          "                   [--min-rep-ms MS] [--settle-ms MS] [--csv FILE] [--no-torch] "
          "[--python PATH]\n"
          "                   [--torch-script PATH] [--workdir DIR] "
          "[--llc-mib N] [--stream-mib N]\n"
          "                   [--wait-idle SECONDS] [--huge-pages]\n");
}

static int parse_options(int argc, char **argv, options *o) {
  memset(o, 0, sizeof *o);
  o->shapes = BENCH_SOURCE_DIR "/shapes/issue5.txt";
  o->script = BENCH_SOURCE_DIR "/torch_bench.py";
  o->python = getenv("BNORM_BENCH_PYTHON");
  if (!o->python || !*o->python) o->python = "/usr/bin/python3";
  o->threads[0] = 1;
  o->threads[1] = 2;
  o->thread_count = 2;
  o->timing.reps = 15;
  o->timing.warmup = 3;
  o->timing.min_rep_s = 2e-3;
  o->timing.settle_s = 20e-3;
  o->torch = true;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    bool takes = true;
    if (!strcmp(a, "--shapes") && v) o->shapes = v;
    else if (!strcmp(a, "--csv") && v) o->csv = v;
    else if (!strcmp(a, "--python") && v) o->python = v;
    else if (!strcmp(a, "--torch-script") && v) o->script = v;
    else if (!strcmp(a, "--workdir") && v) o->workdir = v;
    else if (!strcmp(a, "--reps") && v) o->timing.reps = atoi(v);
    else if (!strcmp(a, "--warmup") && v) o->timing.warmup = atoi(v);
    else if (!strcmp(a, "--min-rep-ms") && v) o->timing.min_rep_s = atof(v) * 1e-3;
    else if (!strcmp(a, "--settle-ms") && v) o->timing.settle_s = atof(v) * 1e-3;
    else if (!strcmp(a, "--llc-mib") && v) o->llc_mib = (size_t)atol(v);
    else if (!strcmp(a, "--stream-mib") && v) o->stream_mib = (size_t)atol(v);
    else if (!strcmp(a, "--wait-idle") && v) o->wait_idle_s = atof(v);
    else if (!strcmp(a, "--threads") && v) {
      o->thread_count = 0;
      for (const char *p = v; *p && o->thread_count < 4;) {
        char *end;
        long t = strtol(p, &end, 10);
        if (end == p || t < 1 || t > 1024) return -1;
        o->threads[o->thread_count++] = (int)t;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
      }
    } else if (!strcmp(a, "--no-torch")) {
      o->torch = false;
      takes = false;
    } else if (!strcmp(a, "--huge-pages")) {
      o->huge_pages = true;
      takes = false;
    } else return -1;
    if (takes) i++;
  }
  if (o->timing.reps < 1 || o->timing.warmup < 0 || o->thread_count < 1)
    return -1;
  return 0;
}

static void cpu_name(char *out, size_t len) {
  snprintf(out, len, "unknown CPU");
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (f) {
    char line[256];
    while (fgets(line, sizeof line, f))
      if (!strncmp(line, "model name", 10) && strchr(line, ':')) {
        char *v = strchr(line, ':') + 2;
        v[strcspn(v, "\n")] = '\0';
        snprintf(out, len, "%s", v);
        break;
      }
    fclose(f);
  }
  size_t n = strlen(out);
  snprintf(out + n, len - n, ", %ld CPUs online", sysconf(_SC_NPROCESSORS_ONLN));
}

typedef struct bnorm_ctx { bench_bnorm *b; bench_pass pass; bool pending; } bnorm_ctx;
typedef struct dnnl_ctx { bench_dnnl *d; bench_pass pass; } dnnl_ctx;
static int run_bnorm(void *p) {
  bnorm_ctx *c = p;
  return bench_bnorm_run(c->b, c->pass, c->pending);
}
static int run_dnnl(void *p) {
  dnnl_ctx *c = p;
  return bench_dnnl_run(c->d, c->pass);
}
static int run_bare(void *p) { return bench_bare_run(p); }
static int run_torch_block(void *p, int warmup, int count, double *seconds) {
  return bench_torch_time(p, warmup, count, seconds);
}

/* One shape: bnorm, oneDNN and PyTorch (torch: NULL when not run), every
 * thread count and pass. */
static int bench_shape_cases(const options *o, const bench_shape *s,
                             size_t index, const char *workdir,
                             bench_torch *torch, bench_report *r) {
  bench_io io;
  memset(&io, 0, sizeof io);
  io.shape = s;
  io.index = index;
  io.epsilon = 1e-3; /* Keras' default */
  io.momentum = 0.99;
  io.x = bench_alloc_tensor(s->total);
  io.dy = bench_alloc_tensor(s->total);
  io.gamma = malloc(s->channels * sizeof(float));
  io.beta = malloc(s->channels * sizeof(float));
  io.moving_mean = malloc(s->channels * sizeof(float));
  io.moving_variance = malloc(s->channels * sizeof(float));
  float *dgamma_scale = malloc(s->channels * sizeof(float));
  float *dbeta_scale = malloc(s->channels * sizeof(float));
  /* The bare loop's output (cold cases only; NULL: not timed). */
  float *bare_out = s->cold ? bench_alloc_tensor(s->total) : NULL;
  bench_bnorm *b = NULL;
  int failures = 0;
  if (!io.x || !io.dy || !io.gamma || !io.beta || !io.moving_mean ||
      !io.moving_variance || !dgamma_scale || !dbeta_scale ||
      bench_bnorm_create(&io, &b) != 0) {
    fprintf(stderr, "bnorm-bench: %s: cannot set up\n", s->name);
    failures = 1;
    goto done;
  }
  size_t huge = bench_huge_page_bytes();
  if (huge > r->huge_page_bytes) r->huge_page_bytes = huge;
  bench_fill_tensor(io.x, s->total, bench_seed(index, BENCH_SEED_X));
  bench_fill_tensor(io.dy, s->total, bench_seed(index, BENCH_SEED_DY));
  bench_fill_param(io.gamma, s->channels, bench_seed(index, BENCH_SEED_GAMMA), 0.5f);
  bench_fill_param(io.beta, s->channels, bench_seed(index, BENCH_SEED_BETA), -0.5f);
  bench_fill_param(io.moving_mean, s->channels, bench_seed(index, BENCH_SEED_MEAN), 0.5f);
  bench_fill_param(io.moving_variance, s->channels, bench_seed(index, BENCH_SEED_VAR), 1.0f);
  if (bench_grad_scales(s, io.x, io.dy, dgamma_scale, dbeta_scale) != 0) {
    failures = 1;
    goto done;
  }

  for (int t = 0; t < o->thread_count; t++) {
    int threads = o->threads[t];
    bench_set_omp_threads(threads);
    int bnorm_threads = bench_bnorm_set_threads(threads);
    bench_dnnl *d = NULL;
    char err[256];
    if (bench_dnnl_create(&io, &d, err, sizeof err) != 0)
      fprintf(stderr, "bnorm-bench: %s: oneDNN: %s\n", s->name, err);
    for (int p = 0; p < BENCH_PASS_COUNT; p++) {
      bench_pass pass = (bench_pass)p;
      bench_row *row = &r->rows[r->row_count++];
      memset(row, 0, sizeof *row);
      row->shape_index = index;
      row->pass = pass;
      row->thread_index = t;
      bench_cell *cb = &row->cell[BENCH_IMPL_BNORM];
      bench_cell *cp = &row->cell[BENCH_IMPL_BNORM_PENDING];
      bench_cell *cd = &row->cell[BENCH_IMPL_DNNL];
      cb->present = true;
      cb->threads = bnorm_threads;
      snprintf(cb->status, sizeof cb->status, "ok");
      if (pass == BENCH_TRAIN) *cp = *cb;
      bench_result ref, peer;
      if (bench_bnorm_prepare(b, pass) || bench_bnorm_run(b, pass, false)) {
        snprintf(cb->status, sizeof cb->status, "error");
        snprintf(cp->status, sizeof cp->status, "error");
        failures++;
        continue;
      }
      bench_bnorm_result(b, &ref);
      ref.dgamma_scale = dgamma_scale;
      ref.dbeta_scale = dbeta_scale;
      if (t == 0 && workdir &&
          bench_write_reference(workdir, index, pass, &ref, s->total,
                                s->channels) != 0) {
        fprintf(stderr, "bnorm-bench: cannot write to %s\n", workdir);
        failures++;
      }
      cd->present = true;
      cd->threads = threads;
      snprintf(cd->status, sizeof cd->status, "error");
      if (d && bench_dnnl_prepare(d, pass) == 0 && bench_dnnl_run(d, pass) == 0) {
        bool ok;
        bench_dnnl_result(d, &peer);
        cd->err = bench_compare(pass, &peer, &ref, s->total, s->channels, &ok);
        snprintf(cd->status, sizeof cd->status, ok ? "ok" : "mismatch");
        if (!ok)
          fprintf(stderr, "bnorm-bench: %s %s: oneDNN differs from bnorm "
                  "(max rel err %.3g)\n", s->name, bench_pass_name(pass), cd->err);
      }
      if (strcmp(cd->status, "ok") != 0) failures++;
      if (t == 0 && d)
        printf("  %-18s %-5s oneDNN impl %s: %s, max rel err %.2g\n", s->name,
               bench_pass_name(pass), bench_dnnl_impl_name(d, pass),
               cd->status, cd->err);

      bench_cell *ct = &row->cell[BENCH_IMPL_TORCH];
      int torch_calls = 0;
      if (torch) {
        /* PyTorch sets its calls per repetition now, in its process: not
         * while bnorm's and oneDNN's threads still spin from their checks. */
        bench_settle(o->timing.settle_s);
        ct->present = true;
        ct->threads = threads;
        bench_torch_case(torch, index, pass, threads, o->timing.min_rep_s,
                         ct->status, sizeof ct->status, &ct->err, &torch_calls);
        if (strcmp(ct->status, "ok") != 0) failures++;
      }

      /* Time: bnorm, bnorm with pending updates (training), oneDNN,
       * PyTorch, and on cold cases the bare loop. */
      bench_bnorm_prepare(b, pass);
      bnorm_ctx c0 = {b, pass, false}, c1 = {b, pass, true};
      dnnl_ctx c2 = {d, pass};
      bench_bare c3 = {pass, io.x, io.dy, bare_out, s->total, threads};
      bench_runner runners[5];
      bench_cell *cells[5];
      int n = 0;
      runners[n] = (bench_runner){.name = "bnorm", .run = run_bnorm, .ctx = &c0};
      cells[n++] = cb;
      if (pass == BENCH_TRAIN) {
        runners[n] = (bench_runner){.name = "bnorm+pend", .run = run_bnorm, .ctx = &c1};
        cells[n++] = cp;
      }
      if (strcmp(cd->status, "ok") == 0) {
        runners[n] = (bench_runner){.name = "oneDNN", .run = run_dnnl, .ctx = &c2};
        cells[n++] = cd;
      }
      if (torch && strcmp(ct->status, "ok") == 0) {
        runners[n] = (bench_runner){.name = "torch", .run_block = run_torch_block,
                                    .block_calls = torch_calls, .ctx = torch};
        cells[n++] = ct;
      }
      if (bare_out) {
        bench_cell *cx = &row->cell[BENCH_IMPL_BARE];
        cx->present = true;
        cx->threads = threads;
        snprintf(cx->status, sizeof cx->status, "ok");
        runners[n] = (bench_runner){.name = "bare", .run = run_bare, .ctx = &c3};
        cells[n++] = cx;
      }
      bench_cpu before, after;
      bench_cpu_read(&before);
      double t0 = bench_now();
      bench_time_runners(runners, n, s->cold, &o->timing);
      row->others = bench_cpu_others_since(&before, t0, &after);
      for (int k = 0; k < n; k++) {
        cells[k]->stats = runners[k].stats;
        if (runners[k].failed) {
          snprintf(cells[k]->status, sizeof cells[k]->status, "error");
          failures++;
        }
      }
      printf("  %-18s %-5s %d thread%s timed\n", s->name, bench_pass_name(pass),
             threads, threads == 1 ? "" : "s");
      fflush(stdout);
    }
    bench_dnnl_destroy(d);
  }
done:
  bench_bnorm_destroy(b);
  free(dgamma_scale);
  free(dbeta_scale);
  free(bare_out);
  free(io.x);
  free(io.dy);
  free(io.gamma);
  free(io.beta);
  free(io.moving_mean);
  free(io.moving_variance);
  return failures;
}

/* Removes the files this run left in the work directory it created. */
static void remove_workdir(const char *dir) {
  DIR *d = opendir(dir);
  if (d) {
    struct dirent *e;
    char path[4096];
    while ((e = readdir(d)))
      if (!strncmp(e->d_name, "bnorm-s", 7)) {
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
      }
    closedir(d);
  }
  rmdir(dir);
}

/* Waits until other processes leave the CPUs (< 0.25 CPU busy for 2
 * seconds in a row) or the machine clock passes `deadline`, so that cases
 * are not timed against them. */
static void wait_idle(double deadline) {
  double others = 0;
  bool told = false;
  int quiet = 0;
  while (bench_now() < deadline) {
    bench_cpu a, b;
    bench_cpu_read(&a);
    struct timespec second = {1, 0};
    nanosleep(&second, NULL);
    bench_cpu_read(&b);
    others = bench_cpu_others(&a, &b, 1.0);
    quiet = others < BENCH_BUSY_LIMIT ? quiet + 1 : 0;
    if (quiet == 2) {
      if (told) printf("  the machine is idle; going on\n");
      return;
    }
    if (!told && !quiet) {
      printf("  other processes keep %.2f CPUs busy; waiting up to %.0f s "
             "...\n", others, deadline - bench_now());
      told = true;
    }
    fflush(stdout);
  }
  if (told) printf("  still busy (%.2f CPUs); going on\n", others);
}

int main(int argc, char **argv) {
  options o;
  if (parse_options(argc, argv, &o) != 0) {
    usage();
    return 2;
  }
  bench_set_huge_pages(o.huge_pages);
  static bench_shape shapes[BENCH_MAX_SHAPES];
  static bench_report r;
  r.huge_pages = o.huge_pages;
  size_t shape_count;
  char err[512];
  if (bench_shapes_load(o.shapes, shapes, BENCH_MAX_SHAPES, &shape_count, err,
                        sizeof err) != 0) {
    fprintf(stderr, "bnorm-bench: %s\n", err);
    return 2;
  }
  r.shapes = shapes;
  r.shape_count = shape_count;
  r.threads = o.threads;
  r.thread_count = o.thread_count;
  r.timing = o.timing;
  r.rows = calloc(shape_count * (size_t)o.thread_count * BENCH_PASS_COUNT,
                  sizeof *r.rows);
  if (!r.rows) return 2;
  int len = 0;
  for (int i = 0; i < argc && len < (int)sizeof r.command - 1; i++)
    len += snprintf(r.command + len, sizeof r.command - (size_t)len, "%s%s",
                    i ? " " : "", argv[i]);
  cpu_name(r.cpu, sizeof r.cpu);
  snprintf(r.dnnl_version, sizeof r.dnnl_version, "%s", bench_dnnl_version());
  r.llc_bytes = bench_llc_bytes(o.llc_mib);
  size_t stream_bytes = o.stream_mib ? o.stream_mib << 20 : 4 * r.llc_bytes;
  if (stream_bytes < ((size_t)64 << 20)) stream_bytes = (size_t)64 << 20;

  char workdir_buf[] = "/tmp/bnorm-bench.XXXXXX";
  const char *workdir = o.workdir;
  bool own_workdir = false;
  if (o.torch && !workdir) {
    workdir = mkdtemp(workdir_buf);
    own_workdir = workdir != NULL;
    if (!workdir) {
      fprintf(stderr, "bnorm-bench: mkdtemp: %s\n", strerror(errno));
      return 2;
    }
  }

  /* --wait-idle is one budget for the whole run: before it starts and
   * before each shape, the run waits for an idle machine. */
  double idle_deadline = bench_now() + o.wait_idle_s;
  wait_idle(idle_deadline);
  double started = bench_now();
  bench_cpu clock_start, clock_end;
  bench_cpu_read(&clock_start);
  printf("bnorm-bench: %zu shapes from %s, threads", shape_count, o.shapes);
  for (int t = 0; t < o.thread_count; t++) printf(" %d", o.threads[t]);
  printf("\nmeasuring memory bandwidth ...\n");
  fflush(stdout);
  for (int t = 0; t < o.thread_count; t++)
    if (bench_stream_measure(o.threads[t], stream_bytes, 20, &r.bw_before[t])) {
      fprintf(stderr, "bnorm-bench: out of memory for the STREAM arrays\n");
      return 2;
    }
  r.round_trip_ns[0] = bench_round_trip_ns();
  r.scrub_bytes = 3 * r.llc_bytes;
  if (bench_scrub_init(r.scrub_bytes) != 0) {
    fprintf(stderr, "bnorm-bench: out of memory for the scrub buffer\n");
    return 2;
  }

  int failures = 0;
  bench_torch *torch = NULL;
  if (o.torch) {
    printf("starting PyTorch (%s %s) ...\n", o.python, o.script);
    fflush(stdout);
    bench_torch_options to = {o.python, o.script, o.shapes, workdir,
                              r.scrub_bytes, 1e-3, 0.99, o.huge_pages};
    if (bench_torch_start(&to, &torch, r.torch_version,
                          sizeof r.torch_version, err, sizeof err) != 0) {
      fprintf(stderr, "bnorm-bench: PyTorch: %s\n", err);
      failures++;
    }
  }
  for (size_t i = 0; i < shape_count; i++) {
    wait_idle(idle_deadline);
    failures += bench_shape_cases(&o, &shapes[i], i, workdir, torch, &r);
  }
  bench_torch_stop(torch);
  if (own_workdir) remove_workdir(workdir);

  printf("measuring memory bandwidth again ...\n");
  fflush(stdout);
  for (int t = 0; t < o.thread_count; t++) {
    bench_stream_measure(o.threads[t], stream_bytes, 20, &r.bw_after[t]);
    /* The floor takes the best rate seen, as STREAM reports its best: on a
     * shared machine the medians drift with the neighbours' load. */
    r.bw[t] = r.bw_before[t];
    for (int k = 0; k < BENCH_STREAM_COUNT; k++)
      r.bw[t].gbps[k] = fmax(r.bw_before[t].gbps_max[k], r.bw_after[t].gbps_max[k]);
  }
  r.round_trip_ns[1] = bench_round_trip_ns();
  bench_scrub_free();
  bench_cpu_read(&clock_end);
  r.seconds = bench_now() - started;
  r.others_cores = bench_cpu_others(&clock_start, &clock_end, r.seconds);
  r.steal_cores = (clock_end.steal - clock_start.steal) / r.seconds;

  bench_report_print(stdout, &r);
  char csv_buf[4096];
  const char *csv = o.csv;
  if (!csv) {
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    mkdir(BENCH_SOURCE_DIR "/results", 0777);
    snprintf(csv_buf, sizeof csv_buf, "%s/results/bench-%04d%02d%02d-%02d%02d%02d.csv",
             BENCH_SOURCE_DIR, tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec);
    csv = csv_buf;
  }
  if (bench_report_csv(csv, &r) != 0) {
    fprintf(stderr, "bnorm-bench: cannot write %s\n", csv);
    failures++;
  } else {
    printf("\nCSV: %s\n", csv);
  }
  free(r.rows);
  if (failures) fprintf(stderr, "bnorm-bench: %d failure(s)\n", failures);
  return failures ? 1 : 0;
}
