/* bnorm-bench: times bnorm's layer API against oneDNN and PyTorch on the
 * shapes of a shapes file and relates every time to the machine's measured
 * memory bandwidth. One header for the program's modules; each .c file does
 * one job (see the section comments). */
#ifndef BNORM_BENCH_H
#define BNORM_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define BENCH_MAX_RANK 8
#define BENCH_MAX_SHAPES 64

/* ---- shapes.c: the shapes file ------------------------------------------ */

typedef struct bench_shape {
  char layout[BENCH_MAX_RANK + 1]; /* memory order, e.g. "NHWC" */
  int rank;
  int64_t dims[BENCH_MAX_RANK];    /* memory order */
  int channel_axis;                /* position of 'C' in layout */
  bool cold;                       /* scrub caches before every timed call */
  size_t total, channels;
  char name[96];                   /* "NHWC 32x56x56x64" */
} bench_shape;

/* Reads "LAYOUT AxBxC... [cold|warm]" lines ('#' starts a comment). Returns 0
 * or -1 with a message in err. */
int bench_shapes_load(const char *path, bench_shape *shapes, size_t capacity,
                      size_t *count, char *err, size_t errlen);

/* ---- data.c: deterministic inputs (torch_bench.py makes the same) -------- */

/* Seeds of shape number s (0-based). */
enum { BENCH_SEED_X = 1, BENCH_SEED_DY, BENCH_SEED_GAMMA, BENCH_SEED_BETA,
       BENCH_SEED_MEAN, BENCH_SEED_VAR };
uint64_t bench_seed(size_t shape_index, int what);
/* Tensor values in [-1, 3): exact binary fractions, so every language that
 * follows the recipe gets the same bits. */
void bench_fill_tensor(float *x, size_t n, uint64_t seed);
/* Per-channel parameter values, p in [0, 1) plus `base`. */
void bench_fill_param(float *p, size_t n, uint64_t seed, float base);
/* A tensor of n floats from bench_alloc_pages, zeroed (its pages touched
 * outside any timed call); free() releases it. NULL when out of memory. */
float *bench_alloc_tensor(size_t n);
/* Zeroed memory aligned to its pages, for every array a case or STREAM
 * moves: the tensors (bnorm's, oneDNN's, the bare loops') and STREAM's
 * arrays. By default the pages are what the system gives (4 KiB where
 * transparent huge pages are "madvise", as on the benchmark's machine);
 * after bench_set_huge_pages(true) they are 2 MiB (MADV_HUGEPAGE), which
 * spares a cold call of a tensor of tens of MB most of its page walks. */
void *bench_alloc_pages(size_t bytes);
void bench_set_huge_pages(bool on);
/* Bytes of this process's memory on transparent huge pages now (0 where
 * /proc does not tell): what the kernel granted of the requests. */
size_t bench_huge_page_bytes(void);
/* Output samples exchanged with torch_bench.py: elements 0, stride, 2*stride
 * ... of the tensor in memory order. */
size_t bench_sample_stride(size_t total);
size_t bench_sample_count(size_t total);

/* ---- timing.c: clock, statistics, cache scrubbing, the timing loop ------- */

double bench_now(void); /* seconds, monotonic */

typedef struct bench_stats {
  int reps;          /* timed repetitions (0: not timed) */
  int calls_per_rep; /* calls per repetition (warm cases repeat a call) */
  double median, min, max; /* seconds per call */
} bench_stats;

void bench_sort(double *values, int n); /* ascending */
void bench_stats_of(double *samples, int n, bench_stats *out); /* sorts */

/* Last-level cache size: sysfs cpu0 index3, else sysconf, else 32 MiB;
 * `override_mib` > 0 wins. */
size_t bench_llc_bytes(size_t override_mib);
/* The scrub buffer: reading all of it evicts every earlier line from the
 * caches (its size is a multiple of the LLC). */
int bench_scrub_init(size_t bytes);
void bench_scrub(void);
size_t bench_scrub_bytes(void);
void bench_scrub_free(void);

/* CPU time of the whole machine (busy, stolen by the hypervisor; from
 * /proc/stat) and of this process and its children, seconds: tells how much
 * other processes competed with a measurement. */
typedef struct bench_cpu { double busy, steal, own; } bench_cpu;
void bench_cpu_read(bench_cpu *c);
/* CPUs other processes kept busy on average between a and b. */
double bench_cpu_others(const bench_cpu *a, const bench_cpu *b, double wall);
/* The same from `before` (read at bench_now() == t0) to now, over at least
 * 0.3 s (sleeps the rest); fills `after`. */
double bench_cpu_others_since(const bench_cpu *before, double t0,
                              bench_cpu *after);
/* A child process whose CPU time counts as this process's while it runs
 * (the PyTorch server; 0: none). The kernel adds a child's time to
 * RUSAGE_CHILDREN only once it has been waited for. */
void bench_cpu_track_child(int pid);

/* One thing to time: run() performs one call and returns 0 (or nonzero on
 * failure, which stops timing it). An implementation that another process
 * times gives run_block instead: it runs `warmup` untimed repetitions and
 * `count` timed ones of block_calls calls each (scrubbing the caches
 * before each when cold) and stores the seconds per call of each. */
typedef struct bench_runner {
  const char *name;
  int (*run)(void *ctx);
  int (*run_block)(void *ctx, int warmup, int count, double *seconds);
  int block_calls;
  void *ctx;
  bench_stats stats; /* out */
  int failed;        /* out */
} bench_runner;

typedef struct bench_timing {
  int warmup, reps;
  double min_rep_s; /* warm cases: calls per repetition so a rep lasts this */
  /* Pause before an implementation is timed after another one, so that the
   * other's idle threads (OpenMP's and bnorm's spin a few ms before they
   * sleep) have stopped competing for the CPUs. */
  double settle_s;
} bench_timing;

/* Rounds of interleaved repetitions. */
enum { BENCH_ROUNDS = 3 };

/* Sleeps `seconds`: the pause before a runner's turn, in which the other
 * runners' idle threads stop spinning. */
void bench_settle(double seconds);

/* Times the runners in BENCH_ROUNDS rounds; in each, every runner runs its
 * warm-up repetitions and then its share of the timed ones, after a pause
 * of settle_s, so that drifts of a noisy machine hit them alike. Cold: the
 * caches are scrubbed before every call and each repetition is one call. */
void bench_time_runners(bench_runner *runners, int count, bool cold,
                        const bench_timing *timing);

/* ---- stream.c: memory bandwidth ----------------------------------------- */

typedef enum bench_stream_kind {
  BENCH_STREAM_READ,     /* s += a[i]          1 read          */
  BENCH_STREAM_COPY,     /* b[i] = a[i]        1 read, 1 write */
  BENCH_STREAM_COPY_NT,  /*   the same, non-temporal stores    */
  BENCH_STREAM_TRIAD,    /* a[i] = b[i]+q*c[i] 2 reads, 1 write */
  BENCH_STREAM_TRIAD_NT, /*   the same, non-temporal stores    */
  BENCH_STREAM_COUNT
} bench_stream_kind;

typedef struct bench_bandwidth {
  int threads;
  size_t array_bytes;
  double gbps[BENCH_STREAM_COUNT];             /* median */
  double gbps_min[BENCH_STREAM_COUNT], gbps_max[BENCH_STREAM_COUNT];
} bench_bandwidth;

/* STREAM-like kernels on arrays of array_bytes each, `threads` OpenMP
 * threads (gbps 0: kernel not available here). */
int bench_stream_measure(int threads, size_t array_bytes, int reps,
                         bench_bandwidth *out);
const char *bench_stream_name(bench_stream_kind kind);

/* ---- round_trip.c: core-to-core latency --------------------------------- */

/* Nanoseconds for a cache line to go from one thread to another and back
 * (the mean of 20000 round trips); -1 if no thread starts. */
double bench_round_trip_ns(void);

/* ---- passes, inputs, outputs -------------------------------------------- */

typedef enum bench_pass {
  BENCH_TRAIN,    /* training forward: batch statistics + normalize */
  BENCH_INFER,    /* inference forward: moving statistics */
  BENCH_BACKWARD, /* training backward: dx, dgamma, dbeta */
  BENCH_PASS_COUNT
} bench_pass;

const char *bench_pass_name(bench_pass pass);
/* Bytes the floor model moves: inference 1 read + 1 write of the tensor,
 * training 2 reads + 1 write, backward 4 reads + 1 write. */
double bench_pass_bytes(bench_pass pass, size_t tensor_bytes);
/* The floor: the time the STREAM kernels measured with the same thread
 * count need to move those bytes in the same pattern — inference one copy;
 * training one read + one copy; backward a read of two tensors + one triad
 * — copy and triad at the faster of regular and non-temporal stores. */
double bench_floor_seconds(bench_pass pass, size_t tensor_bytes,
                           const bench_bandwidth *bw);

typedef struct bench_io {
  const bench_shape *shape;
  size_t index; /* in the shapes file */
  float *x, *dy;
  float *gamma, *beta, *moving_mean, *moving_variance;
  double epsilon, momentum;
} bench_io;

/* What a pass produces, for the comparison of outputs. */
typedef struct bench_result {
  const float *y;      /* forward passes */
  const float *dx;     /* backward */
  const float *dgamma; /* backward */
  const float *dbeta;  /* backward */
  /* bnorm's result only: the scales of dgamma's and dbeta's rounding
   * errors (see compare.c). */
  const float *dgamma_scale, *dbeta_scale;
} bench_result;

/* ---- compare.c ---------------------------------------------------------- */

/* Tolerances (compare.c says what each error is relative to). */
#define BENCH_TOL_Y 1e-4     /* forward y */
#define BENCH_TOL_DX 1e-3    /* dx: also carries the sums' rounding */
#define BENCH_TOL_PARAM 1e-4 /* dgamma, dbeta */

double bench_rel_err(const float *peer, const float *ref, size_t n);
/* Per channel: sum |dy * xhat| and sum |dy| (xhat from the batch
 * statistics of x). Returns 0, or -1 when out of memory. */
int bench_grad_scales(const bench_shape *s, const float *x, const float *dy,
                      float *dgamma_scale, float *dbeta_scale);
/* err of a pass; *ok says whether it is within tolerance. */
double bench_compare(bench_pass pass, const bench_result *peer,
                     const bench_result *ref, size_t total, size_t channels,
                     bool *ok);
/* Writes ref's samples of a pass to dir/bnorm-s<index>-<what>.f32 for
 * torch_bench.py. */
int bench_write_reference(const char *dir, size_t index, bench_pass pass,
                          const bench_result *ref, size_t total,
                          size_t channels);

/* ---- bare.c: the floor's traffic in plain loops (see there) ------------- */

typedef struct bench_bare {
  bench_pass pass;
  const float *x, *dy; /* the case's tensors */
  float *out;          /* a tensor of its own, aligned to 64 bytes */
  size_t n;
  int threads;         /* OpenMP threads */
} bench_bare;

/* One call: infer writes out = a * x + b; train reads x, then writes
 * out = a * x + b; bwd reads x and dy, then writes out = a * dy + b * x. */
int bench_bare_run(const bench_bare *b);

/* ---- impl_bnorm.c: bnorm through its public layer API ------------------- */

typedef struct bench_bnorm bench_bnorm;
int bench_bnorm_create(const bench_io *io, bench_bnorm **out);
void bench_bnorm_destroy(bench_bnorm *b);
/* Puts the layer in the state the pass starts from (variables reset; for
 * backward, one training forward that fills the saved statistics). */
int bench_bnorm_prepare(bench_bnorm *b, bench_pass pass);
int bench_bnorm_run(bench_bnorm *b, bench_pass pass, bool pending);
void bench_bnorm_result(const bench_bnorm *b, bench_result *out);
/* bnorm_set_num_threads when the library has one (looked up at run time,
 * so this program builds against libraries with and without it). Returns
 * the thread count bnorm will use. */
int bench_bnorm_set_threads(int threads);
bool bench_bnorm_has_threads(void);

/* ---- impl_dnnl.c: oneDNN C API, same process ---------------------------- */

typedef struct bench_dnnl bench_dnnl;
/* Creates the primitives for the current OpenMP thread count. */
int bench_dnnl_create(const bench_io *io, bench_dnnl **out, char *err,
                      size_t errlen);
void bench_dnnl_destroy(bench_dnnl *d);
int bench_dnnl_prepare(bench_dnnl *d, bench_pass pass);
int bench_dnnl_run(bench_dnnl *d, bench_pass pass);
void bench_dnnl_result(const bench_dnnl *d, bench_result *out);
const char *bench_dnnl_impl_name(const bench_dnnl *d, bench_pass pass);
const char *bench_dnnl_version(void);
void bench_set_omp_threads(int threads);

/* ---- peer_torch.c: PyTorch, a server in a child process ----------------- */

typedef struct bench_torch bench_torch;

typedef struct bench_torch_options {
  const char *python, *script, *shapes_path;
  const char *workdir; /* where bench_write_reference leaves bnorm's samples */
  size_t scrub_bytes;
  double epsilon, momentum;
  bool huge_pages; /* its inputs on 2 MiB pages, as bench_alloc_pages */
} bench_torch_options;

/* Starts torch_bench.py (its stdout and stderr pass through) and waits
 * until it has imported PyTorch. Returns 0, or -1 with a message in err. */
int bench_torch_start(const bench_torch_options *o, bench_torch **out,
                      char *version, size_t version_len, char *err,
                      size_t errlen);
/* Makes a case PyTorch's current one: it builds the shape's inputs, runs
 * the pass with `threads` threads and compares its output with bnorm's
 * samples. status: ok, mismatch or error; err: the error as compare.c
 * measures it; calls: per repetition (warm: enough for min_rep_s).
 * Returns -1 when the server does not answer (then status is "error"). */
int bench_torch_case(bench_torch *t, size_t shape_index, bench_pass pass,
                     int threads, double min_rep_s, char *status,
                     size_t status_len, double *err, int *calls);
/* Times the current case: `warmup` untimed repetitions, then `count`
 * timed ones, seconds per call of each. Returns 0, or -1. */
int bench_torch_time(bench_torch *t, int warmup, int count, double *seconds);
void bench_torch_stop(bench_torch *t); /* NULL: nothing */

#endif

/* ---- report.c: the table on stdout and the CSV -------------------------- */

typedef enum bench_impl {
  BENCH_IMPL_BNORM,         /* bnorm_layer_*, updates applied at once */
  BENCH_IMPL_BNORM_PENDING, /* training forward recording pending updates +
                               bnorm_layer_apply_updates */
  BENCH_IMPL_DNNL,
  BENCH_IMPL_TORCH,
  BENCH_IMPL_BARE, /* not a peer: the bare loop of a cold case (bare.c) */
  BENCH_IMPL_COUNT
} bench_impl;

const char *bench_impl_name(bench_impl impl);

typedef struct bench_cell {
  bool present;    /* this implementation ran this case */
  char status[32]; /* ok, mismatch, error */
  double err;      /* peers: max |peer - bnorm| / max |bnorm| */
  int threads;     /* threads the implementation really used */
  bench_stats stats;
} bench_cell;

typedef struct bench_row {
  size_t shape_index;
  bench_pass pass;
  int thread_index; /* into bench_report.threads */
  /* CPUs other processes kept busy while the row was timed. */
  double others;
  bench_cell cell[BENCH_IMPL_COUNT];
} bench_row;

typedef struct bench_report {
  const bench_shape *shapes;
  size_t shape_count;
  bench_row *rows;
  size_t row_count;
  const int *threads;
  int thread_count;
  bench_bandwidth bw_before[4], bw_after[4], bw[4]; /* per thread index;
                                                       bw: best, the floor's */
  bench_timing timing;
  size_t llc_bytes, scrub_bytes;
  bool huge_pages;     /* --huge-pages: arrays on 2 MiB pages */
  size_t huge_page_bytes; /* the most of them seen in use, after a shape's
                             tensors were allocated */
  double seconds;      /* the run's wall time */
  double others_cores; /* mean CPUs busy with other processes during it */
  double steal_cores;  /* mean CPUs taken by the hypervisor (steal) */
  double round_trip_ns[2]; /* core-to-core round trip, start and end */
  char cpu[128], dnnl_version[64], torch_version[128], command[1024];
} bench_report;

/* Rows timed while other processes kept more CPUs busy are marked. */
#define BENCH_BUSY_LIMIT 0.25

double bench_row_floor(const bench_report *r, const bench_row *row);
void bench_report_print(FILE *out, const bench_report *r);
int bench_report_csv(const char *path, const bench_report *r);
