/* The thread pool runs every task of a job exactly once, for any thread
 * count, task count and order, job after job (a worker still holding an
 * older job must claim nothing of a newer one), and for callers on several
 * threads at once. ctest runs it again with workers that sleep between jobs
 * (BNORM_SPIN_US=0). */
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
  for (int j = 0; j < JOBS; j++)
    if (!run_once((size_t)(j % 9), j & 1 ? BN_LAST_FIRST : BN_IN_ORDER))
      atomic_fetch_add(failures, 1);
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
    /* Jobs back to back, of changing sizes, so that workers arrive late
     * and find a newer job posted. */
    int failed = 0;
    for (int j = 0; j < JOBS; j++)
      failed += !run_once((size_t)(j % 7 + 1),
                          j % 3 ? BN_LAST_FIRST : BN_IN_ORDER);
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
