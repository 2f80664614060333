/* A small persistent thread pool. A job is a list of tasks numbered
 * 0..n-1, in one phase or two (every task of the first ends before any of
 * the second starts). Each thread taking part owns a contiguous share of
 * them (thread p of T: tasks [p*n/T, (p+1)*n/T)), runs its share first, in
 * order or last first as the job asks, and then claims what is still
 * unclaimed of the others' shares, so a worker that wakes late delays
 * nothing. Owning the same share in every job keeps a thread on the same
 * part of a tensor from one pass to the next, where its own caches hold
 * that part. Which thread runs a task never affects results: the
 * operators give every task its own output slot and combine the slots in
 * task order.
 *
 * Posting a job and collecting it take no lock while the workers spin: on
 * tensors of tens of kilobytes a fork and join costs as much as the work,
 * and each cache line passed between cores costs about 50 ns. */
/* clock_gettime */
#define _POSIX_C_SOURCE 200809L
#include "threads.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { MAX_THREADS = 256, CACHE_LINE = 64 };

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work_ready = PTHREAD_COND_INITIALIZER;
static pthread_cond_t work_done = PTHREAD_COND_INITIALIZER;
/* Serializes parallel regions: one job at a time uses the workers. */
static pthread_mutex_t job_lock = PTHREAD_MUTEX_INITIALIZER;

static atomic_int requested_threads; /* 0 = not set: the CPUs online */
static pthread_once_t default_once = PTHREAD_ONCE_INIT;
static int default_count; /* read once: sysconf reads sysfs, microseconds */
static atomic_int started_workers;
static int worker_ids[MAX_THREADS];

/* The posted job, read by workers without a lock: a seqlock. `sequence` is
 * odd while the caller writes the fields and even otherwise; job g is
 * posted when it turns 2g. A reader that sees it change read a torn job
 * and reads again. Workers watch it for new jobs. */
static struct {
  _Alignas(CACHE_LINE) atomic_uint_fast64_t sequence;
  _Atomic(bn_task_fn) fn[2]; /* per phase; fn[1] NULL: one phase */
  _Atomic(void *) ctx;
  atomic_size_t tasks;
  atomic_int threads; /* taking part, the caller included */
  atomic_bool last_first[2];
} posted;

/* claimed[t] holds the claim of the last phase whose task t was taken:
 * 2g + phase for job g. A thread takes task t in phase k of job g by
 * raising it from below 2g + k to 2g + k, so a thread still holding an
 * older job or phase can take nothing. A line each: a thread's claims on
 * its own share then stay in its own cache. */
static struct {
  _Alignas(CACHE_LINE) atomic_uint_fast64_t claim;
} claimed[BN_MAX_TASKS];
static _Alignas(CACHE_LINE) atomic_size_t tasks_done;
static _Alignas(CACHE_LINE) atomic_int sleeping_workers;
static atomic_bool caller_sleeps;

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

typedef struct job {
  uint64_t generation;
  bn_task_fn fn[2];
  void *ctx;
  size_t tasks;
  int threads;
  bool last_first[2];
} job;

static int phases_of(const job *j) { return j->fn[1] ? 2 : 1; }

static bool take(uint64_t claim, size_t task) {
  uint_fast64_t seen = atomic_load(&claimed[task].claim);
  while (seen < claim)
    if (atomic_compare_exchange_weak(&claimed[task].claim, &seen, claim))
      return true;
  return false;
}

/* tasks_done counts the tasks of both phases: the first phase ends at
 * j->tasks, the job at phases * j->tasks. */
static void finish_task(const job *j) {
  size_t total = j->tasks * (size_t)phases_of(j);
  if (atomic_fetch_add(&tasks_done, 1) + 1 == total &&
      atomic_load(&caller_sleeps)) {
    pthread_mutex_lock(&pool_lock);
    pthread_cond_signal(&work_done);
    pthread_mutex_unlock(&pool_lock);
  }
}

/* Tasks [begin, end) of share `p`. */
static void share_of(const job *j, int p, size_t *begin, size_t *end) {
  *begin = j->tasks * (size_t)p / (size_t)j->threads;
  *end = j->tasks * (size_t)(p + 1) / (size_t)j->threads;
}

/* Runs the tasks [begin, end) of `phase` that no other thread took, from
 * the end if `backward`. */
static void run_untaken(const job *j, int phase, size_t begin, size_t end,
                        bool backward) {
  uint64_t claim = 2 * j->generation + (uint64_t)phase;
  for (size_t k = begin; k < end; k++) {
    size_t task = backward ? end - 1 - (k - begin) : k;
    if (take(claim, task)) {
      j->fn[phase](j->ctx, task);
      finish_task(j);
    }
  }
}

/* Thread p runs its share of a phase in the phase's order, then takes the
 * others' unclaimed tasks from the end their owners reach last. */
static void run_phase(const job *j, int phase, int p) {
  size_t begin, end;
  bool last_first = j->last_first[phase];
  share_of(j, p, &begin, &end);
  run_untaken(j, phase, begin, end, last_first);
  for (int q = (p + 1) % j->threads; q != p; q = (q + 1) % j->threads) {
    share_of(j, q, &begin, &end);
    run_untaken(j, phase, begin, end, !last_first);
  }
}

/* Waits until every task of the first phase has ended, or the job itself
 * is over (a thread that came late then finds nothing left to take). The
 * tasks still running were claimed by threads now running them: they end
 * within a task's time, so this spins, yielding the CPU only if it goes on
 * long (a thread holding a task was descheduled). */
static void wait_for_first_phase(const job *j) {
  for (int i = 0;; i++) {
    if (atomic_load_explicit(&tasks_done, memory_order_acquire) >= j->tasks ||
        atomic_load_explicit(&posted.sequence, memory_order_relaxed) !=
            2 * j->generation)
      return;
    if (i < CALLER_SPIN_PAUSES)
      pause_once();
    else
      sched_yield();
  }
}

static void run_job(const job *j, int p) {
  run_phase(j, 0, p);
  if (!j->fn[1]) return;
  wait_for_first_phase(j);
  run_phase(j, 1, p);
}

/* Waits until the sequence moves from `seen`: spins worker_spin_ns, then
 * sleeps. */
static void wait_for_job(uint64_t seen) {
  if (worker_spin_ns > 0) {
    long long deadline = now_ns() + worker_spin_ns;
    for (;;) {
      for (int i = 0; i < PAUSES_PER_CLOCK_READ; i++) {
        if (atomic_load_explicit(&posted.sequence, memory_order_relaxed) !=
            seen)
          return;
        pause_once();
      }
      if (now_ns() > deadline) break;
    }
  }
  pthread_mutex_lock(&pool_lock);
  atomic_fetch_add(&sleeping_workers, 1);
  while (atomic_load(&posted.sequence) == seen)
    pthread_cond_wait(&work_ready, &pool_lock);
  atomic_fetch_sub(&sleeping_workers, 1);
  pthread_mutex_unlock(&pool_lock);
}

/* Reads the posted job and its sequence; false if it was being written
 * meanwhile. The fields are acquired, so the second look at the sequence
 * cannot move before them, and each was released after the sequence
 * turned odd. */
static bool read_posted(job *j, uint64_t *sequence) {
  uint64_t before =
      atomic_load_explicit(&posted.sequence, memory_order_acquire);
  if (before & 1) return false;
  j->generation = before / 2;
  for (int k = 0; k < 2; k++) {
    j->fn[k] = atomic_load_explicit(&posted.fn[k], memory_order_acquire);
    j->last_first[k] =
        atomic_load_explicit(&posted.last_first[k], memory_order_acquire);
  }
  j->ctx = atomic_load_explicit(&posted.ctx, memory_order_acquire);
  j->tasks = atomic_load_explicit(&posted.tasks, memory_order_acquire);
  j->threads = atomic_load_explicit(&posted.threads, memory_order_acquire);
  *sequence = before;
  return atomic_load_explicit(&posted.sequence, memory_order_relaxed) ==
         before;
}

static void *worker_main(void *arg) {
  int p = *(const int *)arg + 1; /* the caller is thread 0 */
  uint64_t seen = 0;
  for (;;) {
    wait_for_job(seen);
    job j;
    uint64_t sequence;
    if (!read_posted(&j, &sequence)) continue; /* being written: again */
    seen = sequence;
    if (p < j.threads) run_job(&j, p);
  }
  return NULL;
}

void bn_keep_lines(void *kept, const void *fresh, size_t bytes) {
  unsigned char *to = kept;
  const unsigned char *from = fresh;
  for (size_t at = 0; at < bytes; at += CACHE_LINE) {
    size_t n = bytes - at < CACHE_LINE ? bytes - at : CACHE_LINE;
    if (memcmp(to + at, from + at, n) != 0) memcpy(to + at, from + at, n);
  }
}

/* The calling thread's limit for the call it is in (bn_limit_thread),
 * and how many threads have one now: a thread-local read is a call into
 * the C library from a shared library, and bn_thread_count is called
 * several times per layer call (NHWC 8x7x7x32 inference on two threads
 * ran 4-8% slower reading it every time). */
static _Thread_local int calling_thread_limit;
static _Alignas(CACHE_LINE) atomic_int limited_threads;

static int configured_threads(void) {
  int n = atomic_load(&requested_threads);
  return n ? n : default_threads();
}

int bn_thread_count(void) {
  int n = configured_threads();
  if (atomic_load_explicit(&limited_threads, memory_order_relaxed) == 0)
    return n;
  int limit = calling_thread_limit;
  return limit > 0 && limit < n ? limit : n;
}

int bn_limit_thread(int limit) {
  int before = calling_thread_limit;
  if ((before > 0) != (limit > 0))
    atomic_fetch_add_explicit(&limited_threads, limit > 0 ? 1 : -1,
                              memory_order_relaxed);
  calling_thread_limit = limit;
  return before;
}

/* Starts workers up to `wanted` - 1 (the caller is the last thread); keeps
 * whatever could be started. */
static int ensure_workers(int wanted) {
  int started = atomic_load(&started_workers);
  if (started >= wanted - 1) return wanted;
  /* The environment (spin time included) is read before any worker runs. */
  default_threads();
  pthread_mutex_lock(&pool_lock);
  started = atomic_load(&started_workers); /* another caller may have */
  while (started < wanted - 1) {
    pthread_t thread;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    worker_ids[started] = started;
    int failed =
        pthread_create(&thread, &attr, worker_main, &worker_ids[started]);
    pthread_attr_destroy(&attr);
    if (failed) break;
    atomic_store(&started_workers, ++started);
  }
  pthread_mutex_unlock(&pool_lock);
  return started + 1 < wanted ? started + 1 : wanted;
}

/* Posts job j, whose generation is one above the last one's. */
static void post(const job *j) {
  uint64_t sequence = 2 * j->generation;
  atomic_store_explicit(&posted.sequence, sequence - 1, memory_order_relaxed);
  for (int k = 0; k < 2; k++) {
    atomic_store_explicit(&posted.fn[k], j->fn[k], memory_order_release);
    atomic_store_explicit(&posted.last_first[k], j->last_first[k],
                          memory_order_release);
  }
  atomic_store_explicit(&posted.ctx, j->ctx, memory_order_release);
  atomic_store_explicit(&posted.tasks, j->tasks, memory_order_release);
  atomic_store_explicit(&posted.threads, j->threads, memory_order_release);
  atomic_store_explicit(&tasks_done, 0, memory_order_relaxed);
  /* Sequentially consistent, like the sleepers' count a worker raises
   * before it looks at the sequence for the last time: either the worker
   * sees this job or the caller sees the sleeper and wakes it. */
  atomic_store(&posted.sequence, sequence);
  if (atomic_load(&sleeping_workers) > 0) {
    pthread_mutex_lock(&pool_lock);
    pthread_cond_broadcast(&work_ready);
    pthread_mutex_unlock(&pool_lock);
  }
}

static void wait_until_done(size_t tasks) {
  for (int i = 0; i < CALLER_SPIN_PAUSES; i++) {
    if (atomic_load_explicit(&tasks_done, memory_order_acquire) == tasks)
      return;
    pause_once();
  }
  pthread_mutex_lock(&pool_lock);
  atomic_store(&caller_sleeps, true);
  while (atomic_load(&tasks_done) < tasks)
    pthread_cond_wait(&work_done, &pool_lock);
  atomic_store(&caller_sleeps, false);
  pthread_mutex_unlock(&pool_lock);
}

/* Runs a job of one phase (second NULL) or two. */
static void run_parallel(size_t tasks, bn_task_fn first, bn_order first_order,
                         bn_task_fn second, bn_order second_order,
                         void *ctx) {
  bool first_last = first_order == BN_LAST_FIRST,
       second_last = second_order == BN_LAST_FIRST;
  int threads = bn_job_is_shared(tasks) ? ensure_workers(bn_thread_count())
                                         : 1;
  if ((size_t)threads > tasks) threads = (int)tasks;
  if (threads <= 1) {
    for (size_t k = 0; k < tasks; k++)
      first(ctx, first_last ? tasks - 1 - k : k);
    for (size_t k = 0; second && k < tasks; k++)
      second(ctx, second_last ? tasks - 1 - k : k);
    return;
  }
  pthread_mutex_lock(&job_lock);
  job j = {atomic_load(&posted.sequence) / 2 + 1,
           {first, second},
           ctx,
           tasks,
           threads,
           {first_last, second_last}};
  post(&j);
  run_job(&j, 0);
  wait_until_done(tasks * (size_t)phases_of(&j));
  pthread_mutex_unlock(&job_lock);
}

void bn_parallel_for(size_t tasks, bn_order order, bn_task_fn fn,
                     void *ctx) {
  run_parallel(tasks, fn, order, NULL, order, ctx);
}

void bn_parallel_phases(size_t tasks, bn_task_fn first, bn_order first_order,
                        bn_task_fn second, bn_order second_order,
                        void *ctx) {
  run_parallel(tasks, first, first_order, second, second_order, ctx);
}

bnorm_status bnorm_set_num_threads(int threads) {
  if (threads < 0 || threads > MAX_THREADS)
    return bn_fail(BNORM_ERR_INVALID_ARGUMENT,
                   "bnorm_set_num_threads: %d threads is outside 0..%d (0 "
                   "restores the default: $BNORM_NUM_THREADS or the CPUs "
                   "online)",
                   threads, MAX_THREADS);
  atomic_store(&requested_threads, threads);
  bn_clear_error();
  return BNORM_OK;
}

int bnorm_get_num_threads(void) { return configured_threads(); }
