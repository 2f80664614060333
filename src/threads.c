/* A small persistent thread pool. Work is a list of tasks numbered 0..n-1;
 * workers and the calling thread claim them with an atomic counter. Which
 * thread runs a task never affects results: the operators give every task
 * its own output slot and combine the slots in task order. A job is done
 * when all its tasks are, so the caller never waits for a worker that
 * wakes too late to take part. */
/* clock_gettime */
#define _POSIX_C_SOURCE 200809L
#include "threads.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

enum { MAX_THREADS = 256 };

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work_ready = PTHREAD_COND_INITIALIZER;
static pthread_cond_t work_done = PTHREAD_COND_INITIALIZER;
/* Serializes parallel regions: one job at a time uses the workers. */
static pthread_mutex_t job_lock = PTHREAD_MUTEX_INITIALIZER;

static int requested_threads; /* 0 = not set: the CPUs online */
static pthread_once_t default_once = PTHREAD_ONCE_INIT;
static int default_count; /* read once: sysconf reads sysfs, microseconds */
static int started_workers;
/* Written under pool_lock; read without it by spinning threads. */
static atomic_uint_fast64_t generation;
static bn_task_fn job_fn;
static void *job_ctx;
static size_t job_tasks;
static int job_helpers; /* workers with an id below this take part */
static int worker_ids[MAX_THREADS];
/* The job's generation (high 32 bits) and its next unclaimed task: a
 * worker holding an older job's generation can claim nothing. */
static atomic_uint_fast64_t next_claim;
static atomic_size_t tasks_done;

/* Idle workers spin this long for the next job before they sleep on the
 * condition variable ($BNORM_SPIN_US overrides it). Waking a sleeping
 * thread cost 0.1-0.4 ms on the 2-CPU virtual machine of the benchmark (a
 * halted virtual CPU must be rescheduled): a third of an operator on a 16 MB
 * tensor. 5 ms is about what OpenMP runtimes spin by default (libgomp:
 * 300000 pauses); a process that calls bnorm now and then loses at most
 * that much of one CPU per call. */
enum { DEFAULT_SPIN_US = 5000, MAX_SPIN_US = 10000000 };
static long long worker_spin_ns = DEFAULT_SPIN_US * 1000LL;
/* The caller waits for the other threads' last tasks spinning this many
 * pauses (they end within a task's time) before it sleeps. */
enum { CALLER_SPIN_PAUSES = 4000, PAUSES_PER_CLOCK_READ = 256 };

static inline void pause_once(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

static long long now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* Spins until a job newer than `seen` is posted or worker_spin_ns pass. */
static void spin_for_job(uint64_t seen) {
  if (worker_spin_ns == 0) return;
  long long deadline = now_ns() + worker_spin_ns;
  for (;;) {
    for (int i = 0; i < PAUSES_PER_CLOCK_READ; i++) {
      if (atomic_load(&generation) != seen) return;
      pause_once();
    }
    if (now_ns() > deadline) return;
  }
}

/* $BNORM_SPIN_US: microseconds, 0 to sleep at once; other text is ignored. */
static void read_spin(void) {
  const char *env = getenv("BNORM_SPIN_US");
  if (!env || !*env) return;
  char *end;
  long us = strtol(env, &end, 10);
  if (*end == '\0' && us >= 0)
    worker_spin_ns = (us < MAX_SPIN_US ? us : MAX_SPIN_US) * 1000LL;
}

static void read_default_threads(void) {
  read_spin();
  const char *env = getenv("BNORM_NUM_THREADS");
  if (env && *env) {
    int n = atoi(env);
    if (n >= 1) {
      default_count = n < MAX_THREADS ? n : MAX_THREADS;
      return;
    }
  }
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  default_count = cpus < 1 ? 1 : cpus < MAX_THREADS ? (int)cpus : MAX_THREADS;
}

static int default_threads(void) {
  pthread_once(&default_once, read_default_threads);
  return default_count;
}

/* Runs tasks of the job of generation `job` until none is left. */
static void run_tasks(uint64_t job, bn_task_fn fn, void *ctx, size_t tasks) {
  uint_fast64_t claim = atomic_load(&next_claim);
  for (;;) {
    if (claim >> 32 != (job & 0xffffffffu) || (claim & 0xffffffffu) >= tasks)
      return;
    if (!atomic_compare_exchange_weak(&next_claim, &claim, claim + 1))
      continue;
    fn(ctx, (size_t)(claim & 0xffffffffu));
    if (atomic_fetch_add(&tasks_done, 1) + 1 == tasks) {
      pthread_mutex_lock(&pool_lock);
      pthread_cond_signal(&work_done);
      pthread_mutex_unlock(&pool_lock);
    }
    claim = atomic_load(&next_claim);
  }
}

static void *worker_main(void *arg) {
  int id = *(const int *)arg;
  uint64_t seen = 0;
  for (;;) {
    spin_for_job(seen);
    pthread_mutex_lock(&pool_lock);
    while (atomic_load(&generation) == seen)
      pthread_cond_wait(&work_ready, &pool_lock);
    seen = atomic_load(&generation);
    bn_task_fn fn = job_fn;
    void *ctx = job_ctx;
    size_t tasks = job_tasks;
    bool takes_part = id < job_helpers;
    pthread_mutex_unlock(&pool_lock);
    if (takes_part) run_tasks(seen, fn, ctx, tasks);
  }
  return NULL;
}

int bn_thread_count(void) {
  pthread_mutex_lock(&pool_lock);
  int n = requested_threads ? requested_threads : default_threads();
  pthread_mutex_unlock(&pool_lock);
  return n;
}

/* Starts workers up to `wanted` - 1 (the caller is the last thread); keeps
 * whatever could be started. */
static int ensure_workers(int wanted) {
  /* The environment (spin time included) is read before any worker runs. */
  default_threads();
  while (started_workers < wanted - 1) {
    pthread_t thread;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    worker_ids[started_workers] = started_workers;
    int failed = pthread_create(&thread, &attr, worker_main,
                                &worker_ids[started_workers]);
    pthread_attr_destroy(&attr);
    if (failed) break;
    started_workers++;
  }
  return started_workers + 1 < wanted ? started_workers + 1 : wanted;
}

void bn_parallel_for(size_t tasks, bn_task_fn fn, void *ctx) {
  if (tasks == 0) return;
  int threads = tasks == 1 ? 1 : bn_thread_count();
  if (threads <= 1) {
    for (size_t t = 0; t < tasks; t++) fn(ctx, t);
    return;
  }
  pthread_mutex_lock(&job_lock);
  pthread_mutex_lock(&pool_lock);
  int usable = ensure_workers(threads);
  /* Workers beyond the request wake but take no tasks. */
  int helpers = usable - 1;
  if ((size_t)helpers > tasks - 1) helpers = (int)(tasks - 1);
  if (helpers <= 0) {
    pthread_mutex_unlock(&pool_lock);
    pthread_mutex_unlock(&job_lock);
    for (size_t t = 0; t < tasks; t++) fn(ctx, t);
    return;
  }
  job_fn = fn;
  job_ctx = ctx;
  job_tasks = tasks;
  job_helpers = helpers;
  uint64_t job = atomic_load(&generation) + 1;
  atomic_store(&tasks_done, 0);
  atomic_store(&next_claim, (uint_fast64_t)(job & 0xffffffffu) << 32);
  atomic_store(&generation, job);
  pthread_cond_broadcast(&work_ready);
  pthread_mutex_unlock(&pool_lock);
  run_tasks(job, fn, ctx, tasks);
  for (int i = 0; i < CALLER_SPIN_PAUSES && atomic_load(&tasks_done) < tasks;
       i++)
    pause_once();
  pthread_mutex_lock(&pool_lock);
  while (atomic_load(&tasks_done) < tasks)
    pthread_cond_wait(&work_done, &pool_lock);
  pthread_mutex_unlock(&pool_lock);
  pthread_mutex_unlock(&job_lock);
}

bnorm_status bnorm_set_num_threads(int threads) {
  if (threads < 0 || threads > MAX_THREADS)
    return bn_fail(BNORM_ERR_INVALID_ARGUMENT,
                   "bnorm_set_num_threads: %d threads is outside 0..%d (0 "
                   "restores the default: $BNORM_NUM_THREADS or the CPUs "
                   "online)",
                   threads, MAX_THREADS);
  pthread_mutex_lock(&pool_lock);
  requested_threads = threads;
  pthread_mutex_unlock(&pool_lock);
  bn_clear_error();
  return BNORM_OK;
}

int bnorm_get_num_threads(void) { return bn_thread_count(); }
