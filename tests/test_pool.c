/* The thread pool runs every task of a job exactly once, for any thread
 * count, task count and order, job after job (a worker still holding an
 * older job must claim nothing of a newer one), and for callers on several
 * threads at once. A job of two phases runs every task of each once, and
 * no task of its second phase before all of its first have ended. ctest
 * runs it again with workers that sleep between jobs (BNORM_SPIN_US=0). */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "harness.h"
#include "threads.h"

enum { MAX_CHECKED_TASKS = BN_MAX_TASKS + 8, JOBS = 3000 };

typedef struct counts {
  atomic_int runs[MAX_CHECKED_TASKS];
  size_t tasks;
  atomic_int out_of_range;
} counts;

static void count_task(void *ctx, size_t task) {
  counts *c = ctx;
  if (task >= c->tasks)
    atomic_fetch_add(&c->out_of_range, 1);
  else
    atomic_fetch_add(&c->runs[task], 1);
}

/* Runs one job of `tasks` tasks; true if each ran exactly once. */
static bool run_once(size_t tasks, bn_order order) {
  counts c;
  memset(&c, 0, sizeof c);
  c.tasks = tasks;
  bn_parallel_for(tasks, order, count_task, &c);
  bool ok = atomic_load(&c.out_of_range) == 0;
  for (size_t t = 0; t < tasks; t++) ok = ok && atomic_load(&c.runs[t]) == 1;
  return ok;
}

typedef struct phase_counts {
  counts first, second;
  atomic_int first_ended; /* first-phase tasks that have returned */
  atomic_int early;       /* second-phase tasks that started before that */
} phase_counts;

/* A first-phase task that takes a while, longest for task 0 (the caller's
 * first), so that a second phase started too early would be seen. */
static void first_phase_task(void *ctx, size_t task) {
  phase_counts *c = ctx;
  volatile unsigned sink = 0;
  for (unsigned i = 0; i < (task == 0 ? 20000u : 2000u); i++) sink += i;
  count_task(&c->first, task);
  atomic_fetch_add(&c->first_ended, 1);
}

static void second_phase_task(void *ctx, size_t task) {
  phase_counts *c = ctx;
  if ((size_t)atomic_load(&c->first_ended) != c->first.tasks)
    atomic_fetch_add(&c->early, 1);
  count_task(&c->second, task);
}

static bool ran_once_each(const counts *c) {
  bool ok = atomic_load(&c->out_of_range) == 0;
  for (size_t t = 0; t < c->tasks; t++)
    ok = ok && atomic_load(&c->runs[t]) == 1;
  return ok;
}

/* Runs one job of two phases; true if each task of each phase ran exactly
 * once and the second phase waited for the first. */
static bool run_phases_once(size_t tasks, bn_order first, bn_order second) {
  phase_counts c;
  memset(&c, 0, sizeof c);
  c.first.tasks = c.second.tasks = tasks;
  bn_parallel_phases(tasks, first_phase_task, first, second_phase_task,
                     second, &c);
  return ran_once_each(&c.first) && ran_once_each(&c.second) &&
         atomic_load(&c.early) == 0;
}

typedef struct order_log {
  size_t seen[8];
  size_t count;
} order_log;

static void log_task(void *ctx, size_t task) {
  order_log *log = ctx;
  log->seen[log->count++] = task;
}

static void *caller_thread(void *arg) {
  atomic_int *failures = arg;
  for (int j = 0; j < JOBS; j++) {
    bn_order order = j & 1 ? BN_LAST_FIRST : BN_IN_ORDER;
    bool ok = j % 3 ? run_once((size_t)(j % 9), order)
                    : run_phases_once((size_t)(j % 5), order, BN_LAST_FIRST);
    if (!ok) atomic_fetch_add(failures, 1);
  }
  return NULL;
}

int main(void) {
  const size_t task_counts[] = {0, 1, 2, 3, 5, 64, BN_MAX_TASKS,
                                BN_MAX_TASKS + 1};
  const int thread_counts[] = {1, 2, 3, 7};
  for (size_t t = 0; t < sizeof thread_counts / sizeof *thread_counts; t++) {
    CHECK_OK(bnorm_set_num_threads(thread_counts[t]));
    for (size_t k = 0; k < sizeof task_counts / sizeof *task_counts; k++)
      for (int order = BN_IN_ORDER; order <= BN_LAST_FIRST; order++)
        CHECKF(run_once(task_counts[k], (bn_order)order),
               "%d threads, %zu tasks, order %d: a task did not run exactly "
               "once",
               thread_counts[t], task_counts[k], order);
    for (size_t k = 0; k < sizeof task_counts / sizeof *task_counts; k++)
      for (int order = BN_IN_ORDER; order <= BN_LAST_FIRST; order++)
        CHECKF(run_phases_once(task_counts[k], (bn_order)order,
                               (bn_order)(BN_LAST_FIRST - order)),
               "%d threads, %zu tasks, first order %d: a job of two phases "
               "ran a task other than once, or a second-phase task early",
               thread_counts[t], task_counts[k], order);
    /* Jobs back to back, of changing sizes and of one phase or two, so
     * that workers arrive late and find a newer job or phase posted. */
    int failed = 0;
    for (int j = 0; j < JOBS; j++) {
      size_t tasks = (size_t)(j % 7 + 1);
      bn_order order = j % 3 ? BN_LAST_FIRST : BN_IN_ORDER;
      failed += j % 2 ? !run_once(tasks, order)
                      : !run_phases_once(tasks, order, BN_LAST_FIRST);
    }
    CHECKF(failed == 0, "%d threads: %d of %d back-to-back jobs went wrong",
           thread_counts[t], failed, JOBS);
  }

  /* One thread runs its tasks in the job's order. */
  CHECK_OK(bnorm_set_num_threads(1));
  order_log forward = {{0}, 0}, backward = {{0}, 0};
  bn_parallel_for(4, BN_IN_ORDER, log_task, &forward);
  bn_parallel_for(4, BN_LAST_FIRST, log_task, &backward);
  CHECK(forward.count == 4 && forward.seen[0] == 0 && forward.seen[3] == 3);
  CHECK(backward.count == 4 && backward.seen[0] == 3 && backward.seen[3] == 0);
  order_log phases = {{0}, 0};
  bn_parallel_phases(3, log_task, BN_IN_ORDER, log_task, BN_LAST_FIRST,
                     &phases);
  CHECK(phases.count == 6 && phases.seen[0] == 0 && phases.seen[2] == 2 &&
        phases.seen[3] == 2 && phases.seen[5] == 0);

  /* Two application threads post jobs at once; they take turns. */
  CHECK_OK(bnorm_set_num_threads(2));
  atomic_int failures = 0;
  pthread_t other;
  CHECK(pthread_create(&other, NULL, caller_thread, &failures) == 0);
  caller_thread(&failures);
  pthread_join(other, NULL);
  CHECKF(atomic_load(&failures) == 0,
         "%d jobs from concurrent callers went wrong", atomic_load(&failures));
  CHECK_OK(bnorm_set_num_threads(0));
  return th_finish();
}
