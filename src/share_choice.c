/* Timing small calls alone and shared, and choosing (share_choice.h). */
/* clock_gettime */
#define _POSIX_C_SOURCE 200809L
#include "share_choice.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "threads.h"

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
/* The time-stamp counter: a few nanoseconds to read, against 20-30 for
 * clock_gettime on a virtual machine, and the call is over in about a
 * microsecond. Its rate is the same on every CPU of a machine that says
 * constant_tsc; a call that moves between CPUs gets one odd time, which
 * the median ignores. */
static uint64_t ticks_now(void) { return __rdtsc(); }
#else
static uint64_t ticks_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}
#endif

enum {
  /* Trials of sharing, while alone is faster: from 32 calls to 256. */
  FIRST_SHARED_TRIAL_PERIOD = 32,
  MAX_SHARED_TRIAL_SHIFT = 3,
  /* Trials of alone, while sharing is faster: from 256 calls to 4096. */
  FIRST_ALONE_TRIAL_PERIOD = 256,
  MAX_ALONE_TRIAL_SHIFT = 4,
  TIME_EVERY = 8,
  /* Per calling thread, 256 records (16 KB) in sets of 8: ResNet-50 at
   * batch 1 has about 30 batch-norm layers of at most 2^17 elements,
   * times two or three passes in training, and 64 kinds of call fill no
   * set in 99% of the ways they can hash. A kind whose record was taken
   * starts afresh: with too few records, calls would keep starting over. */
  RECORD_SET_BITS = 5,
  RECORD_SETS = 1 << RECORD_SET_BITS,
  RECORD_WAYS = 8
};

static uint32_t median_of_three(uint32_t a, uint32_t b, uint32_t c) {
  uint32_t low = a < b ? a : b, high = a < b ? b : a;
  return c < low ? low : c > high ? high : c;
}

uint32_t bn_share_estimate(const bn_share_record *record, bool shared) {
  const uint32_t *t = record->ticks[shared];
  switch (record->samples[shared]) {
  case 0:
    return 0;
  case 1:
    return t[0];
  case 2:
    return t[0] < t[1] ? t[0] : t[1];
  default:
    return median_of_three(t[0], t[1], t[2]);
  }
}

/* The way of this call, and whether it is a trial (or a first call). */
static bool choose_way(bn_share_record *record, bool *trying) {
  *trying = true;
  if (record->samples[1] < BN_SHARE_SAMPLES) return true;
  if (record->samples[0] < BN_SHARE_SAMPLES) return false;
  if (record->trial_left > 0) {
    record->trial_left--;
    return !record->better_way;
  }
  bool share = bn_share_estimate(record, true) <=
               bn_share_estimate(record, false);
  if (share != record->better_way) {
    /* A trial, or the better way's own times, changed the way: the
     * state of the CPUs moves, and the next trial comes soon. */
    record->better_way = share;
    record->trial_shift = 0;
    record->since_trial = 0;
    record->judging = false;
  } else if (record->judging) {
    record->judging = false;
    if (record->trial_shift <
        (share ? MAX_ALONE_TRIAL_SHIFT : MAX_SHARED_TRIAL_SHIFT))
      record->trial_shift++;
  }
  unsigned period =
      (share ? FIRST_ALONE_TRIAL_PERIOD : FIRST_SHARED_TRIAL_PERIOD)
      << record->trial_shift;
  if (++record->since_trial >= period) {
    record->since_trial = 0;
    record->trial_left = BN_SHARE_TRIAL_CALLS - 1;
    record->judging = true;
    return !share;
  }
  *trying = false;
  return share;
}

bool bn_share_pick(bn_share_record *record, bool *timed) {
  bool trying, way = choose_way(record, &trying);
  if (way != record->last_way) {
    record->last_way = way;
    *timed = false;
    return way;
  }
  if (trying) {
    *timed = true;
  } else {
    *timed = ++record->untimed >= TIME_EVERY;
    if (*timed) record->untimed = 0;
  }
  return way;
}

void bn_share_learn(bn_share_record *record, bool shared, uint64_t ticks) {
  uint32_t t = ticks == 0            ? 1
               : ticks > UINT32_MAX ? UINT32_MAX
                                    : (uint32_t)ticks;
  record->ticks[shared][record->next[shared]] = t;
  record->next[shared] =
      (uint8_t)((record->next[shared] + 1) % BN_SHARE_SAMPLES);
  if (record->samples[shared] < BN_SHARE_SAMPLES) record->samples[shared]++;
}

uint64_t bn_share_per_kilo(uint64_t ticks, size_t elements) {
  uint64_t per = elements > 0 ? elements : 1;
  return ticks < UINT64_MAX / 1024 ? ticks * 1024 / per : ticks / per * 1024;
}

size_t bn_share_elements(const int64_t *shape, int rank) {
  size_t count = 1;
  for (int d = 0; d < rank; d++)
    if (shape[d] < 0 || (uint64_t)shape[d] > SIZE_MAX ||
        !bn_mul_size(count, (size_t)shape[d], &count))
      return SIZE_MAX;
  return count;
}

/* ---- the setting ---- */

/* bnorm_small_calls + 1; 0 until set or read from the environment. */
static atomic_int mode;

/* $BNORM_SMALL_CALLS: "share" shares every call; other text is ignored.
 * Read only while the mode is unset: a setter's value stays. */
static bnorm_small_calls current_mode(void) {
  int m = atomic_load_explicit(&mode, memory_order_relaxed);
  if (m == 0) {
    const char *env = getenv("BNORM_SMALL_CALLS");
    int read = 1 + (env && strcmp(env, "share") == 0
                        ? BNORM_SMALL_CALLS_SHARE
                        : BNORM_SMALL_CALLS_CHOOSE);
    atomic_compare_exchange_strong(&mode, &m, read);
    m = atomic_load_explicit(&mode, memory_order_relaxed);
  }
  return (bnorm_small_calls)(m - 1);
}

bnorm_status bnorm_set_small_calls(bnorm_small_calls small_calls) {
  if (small_calls != BNORM_SMALL_CALLS_CHOOSE &&
      small_calls != BNORM_SMALL_CALLS_SHARE)
    return bn_fail(BNORM_ERR_INVALID_ARGUMENT,
                   "bnorm_set_small_calls: %d is neither "
                   "BNORM_SMALL_CALLS_CHOOSE (0) nor BNORM_SMALL_CALLS_SHARE "
                   "(1)",
                   (int)small_calls);
  atomic_store(&mode, 1 + (int)small_calls);
  bn_clear_error();
  return BNORM_OK;
}

bnorm_small_calls bnorm_get_small_calls(void) { return current_mode(); }

/* ---- the calling thread's records ---- */

/* Sets of a few records each: kinds of call that land in the same set
 * still keep their records, up to the set's size, and the least recently
 * used one makes room for a new kind. A set's tags (its kinds' hashes, 0
 * where empty) fill one cache line, so that a lookup reads two lines: the
 * tags and the record. */
static _Thread_local struct {
  _Alignas(64) uint64_t tags[RECORD_SETS][RECORD_WAYS];
  bn_share_record sets[RECORD_SETS][RECORD_WAYS];
  uint32_t lookups;
} records;

/* floor(log2(elements)), 0 for 0 and 1. */
static int size_class(size_t elements) {
#if defined(__GNUC__)
  return elements > 1 ? 63 - __builtin_clzll((unsigned long long)elements)
                      : 0;
#else
  int octave = 0;
  while (elements > 1) {
    elements >>= 1;
    octave++;
  }
  return octave;
#endif
}

/* The record of a kind of call. The thread count is part of the kind:
 * sharing with more threads is another way. */
static bn_share_record *record_of(const void *site, int pass, int size,
                                  int threads) {
  uint64_t hash = ((uint64_t)(uintptr_t)site +
                   (uint64_t)size * 0xc2b2ae3d27d4eb4fu +
                   (uint64_t)pass * 0x165667b19e3779f9u +
                   (uint64_t)threads * 0x27d4eb2f165667c5u) *
                  0x9e3779b97f4a7c15u;
  size_t s = hash >> (64 - RECORD_SET_BITS);
  uint64_t tag = hash | 1, *tags = records.tags[s];
  bn_share_record *set = records.sets[s];
  uint32_t now = ++records.lookups;
  for (int w = 0; w < RECORD_WAYS; w++) {
    bn_share_record *record = &set[w];
    if (tags[w] == tag && record->site == site &&
        record->size_class == size && record->pass == pass &&
        record->threads == threads) {
      record->used = now;
      return record;
    }
  }
  int oldest = 0;
  for (int w = 1; w < RECORD_WAYS; w++)
    if (tags[oldest] != 0 &&
        (tags[w] == 0 || now - set[w].used > now - set[oldest].used))
      oldest = w;
  tags[oldest] = tag;
  bn_share_record *record = &set[oldest];
  memset(record, 0, sizeof *record);
  record->last_way = 2;
  record->site = site;
  record->size_class = size;
  record->pass = pass;
  record->threads = threads;
  record->used = now;
  return record;
}

void bn_share_begin(bn_share_trial *trial, const void *site, int pass,
                    size_t elements) {
  trial->record = NULL;
  int threads = bn_thread_count();
  if (threads < 2 || elements > BN_SHARE_CHOICE_MAX_ELEMENTS) return;
  if (current_mode() == BNORM_SMALL_CALLS_SHARE) return;
  trial->record = record_of(site, pass, size_class(elements), threads);
  trial->elements = elements;
  trial->shared = bn_share_pick(trial->record, &trial->timed);
  /* The time of a call alone includes setting and restoring its limit. */
  if (trial->timed) trial->start = ticks_now();
  if (!trial->shared) trial->outer_limit = bn_limit_thread(1);
}

void bn_share_end(bn_share_trial *trial, bool succeeded) {
  if (!trial->record) return;
  if (!trial->shared) bn_limit_thread(trial->outer_limit);
  if (trial->timed && succeeded)
    bn_share_learn(trial->record, trial->shared,
                   bn_share_per_kilo(ticks_now() - trial->start,
                                     trial->elements));
}
