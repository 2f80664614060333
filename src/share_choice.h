/* Whether a call on a small tensor shares its work with the pool's other
 * threads or runs on the calling thread alone (share_choice.c).
 *
 * On a tensor of tens of kilobytes, a second thread saves at best a few
 * hundred nanoseconds and costs about as much to post and join. Whether it
 * pays depends on the state of the CPUs at the moment, which no rule fixed
 * in advance can know: on the benchmark's 2-CPU virtual machine, the same
 * call (NHWC 8x7x7x32, training) takes 1.36 us on two threads in some
 * minutes and 1.7-2.6 us in others, and 1.51 us on one thread in both. So
 * each calling thread times its calls both ways and runs each one the way
 * that has been faster for that layer, pass and size lately, trying the
 * other way now and then. Results never depend on the choice: they are
 * bit-identical for any thread count.
 *
 * bnorm_set_small_calls(BNORM_SMALL_CALLS_SHARE) or $BNORM_SMALL_CALLS=share
 * turns this off (every call shares, as large ones always do). */
#ifndef BNORM_SHARE_CHOICE_H
#define BNORM_SHARE_CHOICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Calls on at most this many elements are timed and chosen for: larger
 * tensors give each thread at least half a megabyte, whose time dwarfs the
 * posting and joining. */
enum { BN_SHARE_CHOICE_MAX_ELEMENTS = 1 << 17 };

enum { BN_SHARE_SAMPLES = 3 };

/* What one calling thread knows of one kind of call (a pass of a layer on
 * a size class, with a number of threads): the last few times, in clock
 * ticks per 1024 elements, of its calls run alone (way 0) and shared
 * (way 1). A size class is an octave of element counts (2^k to
 * 2^(k+1) - 1), so that a server whose batch sizes vary from call to call
 * keeps a few records per layer, not one per batch size: with more kinds
 * than records, each kind would start afresh again and again. */
typedef struct bn_share_record {
  const void *site;
  int size_class, pass, threads;
  uint32_t ticks[2][BN_SHARE_SAMPLES];
  uint8_t samples[2]; /* how many of ticks[way] hold times */
  uint8_t next[2];    /* where the next time of each way goes */
  uint8_t last_way;   /* of the last call; 2 before the first */
  uint8_t untimed;    /* calls of the better way since one was timed */
  uint8_t trial_left; /* calls left of a trial of the worse way */
  uint8_t trial_shift; /* trials come every 32 << trial_shift calls */
  bool better_way;     /* the way the estimates chose last */
  bool judging;        /* the last trial's outcome is yet to be judged */
  uint16_t since_trial; /* calls since the last trial */
  uint32_t used;        /* when the record was last looked up */
} bn_share_record;

/* The policy, apart from the clock and the table (tested on its own).
 *
 * - A way's estimate is the median of its last three times: one time held
 *   up by an interrupt moves nothing, and two new times replace it.
 * - A call that follows a call of the other way is not timed: it finds
 *   the other thread's share of the output in the other core's cache and
 *   runs slower than the calls after it.
 * - The first calls of a kind share until three are timed, then run alone
 *   until three are timed. After that each call takes the way whose
 *   estimate is lower, and every period the other way is tried for
 *   BN_SHARE_TRIAL_CALLS calls (the last two timed), so that a change of
 *   the CPUs' state is seen.
 * - The period starts at 32 calls and doubles after each trial that
 *   changes nothing, up to 256; a trial that changes the way brings it
 *   back to 32. Trials of a way that stays worse then cost 0.5-1% of the
 *   time. The cap bounds how long a passing state holds a call on the
 *   wrong way: for 0.1-0.5 ms after a worker wakes from sleep, two
 *   threads ran the backward of NHWC 8x7x7x32 slower than one.
 * - Reading the clock twice costs about 20 ns, 2% of a call on 50 KB, so
 *   only every eighth call of the better way is timed.
 *
 * bn_share_pick returns whether the call shares, and in *timed whether
 * its time is wanted. */
enum { BN_SHARE_TRIAL_CALLS = 3 };
bool bn_share_pick(bn_share_record *record, bool *timed);
void bn_share_learn(bn_share_record *record, bool shared, uint64_t ticks);
/* A way's estimate in ticks, 0 while it has no time. */
uint32_t bn_share_estimate(const bn_share_record *record, bool shared);

/* A call's ticks per 1024 elements (0 elements count as 1): the times
 * the records keep, so that the sizes of a class compare. */
uint64_t bn_share_per_kilo(uint64_t ticks, size_t elements);

/* The element count of a call's shape, or SIZE_MAX where it has none
 * (a negative size, an overflow): such a call is not timed. */
size_t bn_share_elements(const int64_t *shape, int rank);

/* A call in progress: from bn_share_begin to bn_share_end. */
typedef struct bn_share_trial {
  bn_share_record *record; /* NULL: no choice was made */
  size_t elements;
  bool shared, timed;
  int outer_limit; /* the calling thread's limit, while it runs alone */
  uint64_t start;
} bn_share_trial;

/* Chooses for a call of `pass` (any small number naming the pass) by
 * `site` (the layer) on `elements` elements (of its size class), and, if
 * it runs alone, limits the calling thread to itself until bn_share_end,
 * so that every decision of the call follows the one-thread path. Calls
 * on one thread, or on larger tensors, are neither timed nor limited. */
void bn_share_begin(bn_share_trial *trial, const void *site, int pass,
                    size_t elements);
/* Ends the call: restores the thread's limit and, if the call succeeded,
 * learns its time. */
void bn_share_end(bn_share_trial *trial, bool succeeded);

#endif
