/* The library's thread pool (threads.c). */
#ifndef BNORM_THREADS_H
#define BNORM_THREADS_H

#include "internal.h"

typedef void (*bn_task_fn)(void *ctx, size_t task);

/* Runs fn(ctx, 0..tasks-1), each task exactly once, on up to
 * bnorm_get_num_threads() threads including the caller; returns when all
 * are done. Tasks must not depend on which thread runs them; tasks < 2^32. */
void bn_parallel_for(size_t tasks, bn_task_fn fn, void *ctx);

int bn_thread_count(void);

#endif
