/* The library's thread pool (threads.c). */
#ifndef BNORM_THREADS_H
#define BNORM_THREADS_H

#include "internal.h"

typedef void (*bn_task_fn)(void *ctx, size_t task);

/* Jobs of more tasks run on the caller alone. */
enum { BN_MAX_TASKS = 256 };

/* The order in which each thread runs its share of a job's tasks. Passes
 * that follow a pass over the same tensor go last first: what that pass
 * read last is what the caches still hold. */
typedef enum bn_order { BN_IN_ORDER, BN_LAST_FIRST } bn_order;

/* Runs fn(ctx, 0..tasks-1), each task exactly once, on up to
 * bnorm_get_num_threads() threads including the caller, and returns when
 * all are done. With T threads, thread p (the caller is 0) runs tasks
 * [p*tasks/T, (p+1)*tasks/T) unless another thread got to them first, so
 * jobs of the same task count put a task on the same thread. Tasks must not
 * depend on which thread runs them. */
void bn_parallel_for(size_t tasks, bn_order order, bn_task_fn fn, void *ctx);

/* Runs first(ctx, k) for every task k, then second(ctx, k) for every k,
 * each phase as bn_parallel_for runs it (with the same shares: task k of
 * both phases goes to the same thread unless one came late), and no task
 * of the second phase starts before every task of the first has ended.
 * The threads meet between the phases where they are, instead of returning
 * to the caller, which would join them and post the second phase anew:
 * between two passes over a small tensor that meeting is most of the time
 * the threads save. */
void bn_parallel_phases(size_t tasks, bn_task_fn first, bn_order first_order,
                        bn_task_fn second, bn_order second_order, void *ctx);

/* The threads a job of the calling thread may use: bnorm_get_num_threads(),
 * or fewer while bn_limit_thread holds it. */
int bn_thread_count(void);

/* Limits the calling thread's jobs to `limit` threads (0: no limit) and
 * returns the limit it replaces, for the caller to restore. */
int bn_limit_thread(int limit);

/* Whether a job of `tasks` tasks goes to more threads than the caller. */
static inline bool bn_job_is_shared(size_t tasks) {
  return tasks >= 2 && tasks <= BN_MAX_TASKS && bn_thread_count() > 1;
}

/* Copies `bytes` from `fresh` to `kept` (aligned to 64 bytes), storing
 * only the cache lines whose bytes differ. Shared jobs keep their context
 * (the job, and the cut and layout it points to) this way, per calling
 * thread, from one call to the next: a line stored again, even with the
 * bytes it held, is taken from every other core, and each worker then
 * fetches it back from the caller's, one line after the other as it follows
 * the pointers (about 100 ns each). A layer called again on the same shape
 * stores no line of it; bytes that differ only in padding cost a copy. */
void bn_keep_lines(void *kept, const void *fresh, size_t bytes);

#endif
