/* How a small call chooses between sharing its work and running alone
 * (share_choice.h): the policy, fed made-up times, and the choice as the
 * layer makes it, whose results must not depend on it. */
#include <stdlib.h>
#include <string.h>

#include "bnorm.h"
#include "harness.h"
#include "share_choice.h"
#include "threads.h"

enum { SHARED = 1, ALONE = 0 };

static bn_share_record fresh_record(void) {
  bn_share_record r;
  memset(&r, 0, sizeof r);
  r.last_way = 2;
  return r;
}

/* One call: picks, and learns `ticks[way]` if the call is timed. Returns
 * the way; *timed tells whether it was timed. */
static bool call(bn_share_record *r, const uint32_t ticks[2], bool *timed) {
  bool t, way = bn_share_pick(r, &t);
  if (t) bn_share_learn(r, way, ticks[way]);
  if (timed) *timed = t;
  return way;
}

/* Calls until the way differs from `way`; returns how many took it (at
 * most `limit`). */
static int run_of(bn_share_record *r, bool way, const uint32_t ticks[2],
                  int limit) {
  int n = 0;
  while (n < limit) {
    bn_share_record before = *r;
    if (call(r, ticks, NULL) != way) {
      *r = before; /* leave that call to the caller */
      return n;
    }
    n++;
  }
  return n;
}

static void first_calls(void) {
  bn_share_record r = fresh_record();
  const uint32_t ticks[2] = {1500, 1300};
  bool timed[8], way[8];
  for (int i = 0; i < 8; i++) way[i] = call(&r, ticks, &timed[i]);
  /* Sharing until three are timed (the first, a change of way, is not),
   * then alone alike. */
  for (int i = 0; i < 4; i++) {
    CHECKF(way[i] == SHARED, "call %d of a new kind shares", i);
    CHECKF(way[4 + i] == ALONE, "call %d of a new kind runs alone", 4 + i);
    CHECKF(timed[i] == (i > 0) && timed[4 + i] == (i > 0),
           "the first call of each way is not timed, the next three are "
           "(call %d: %d, call %d: %d)",
           i, timed[i], 4 + i, timed[4 + i]);
  }
  CHECK(bn_share_estimate(&r, true) == 1300);
  CHECK(bn_share_estimate(&r, false) == 1500);
}

/* The kind's first calls, with these times; returns the record after. */
static bn_share_record learned(uint32_t alone, uint32_t shared) {
  bn_share_record r = fresh_record();
  const uint32_t ticks[2] = {alone, shared};
  for (int i = 0; i < 8; i++) call(&r, ticks, NULL);
  return r;
}

static void follows_the_faster_way(void) {
  const uint32_t shared_faster[2] = {1500, 1300},
                 alone_faster[2] = {1500, 1800};
  bn_share_record r = learned(1500, 1300);
  CHECK(run_of(&r, SHARED, shared_faster, 1000) >= 31);
  r = learned(1500, 1800);
  CHECK(run_of(&r, ALONE, alone_faster, 1000) >= 31);
}

/* Trials of the worse way while the times do not change: each is
 * BN_SHARE_TRIAL_CALLS calls, the first untimed, and each doubles the wait
 * for the next, up to a cap. Sharing is tried after 32 calls alone, up to
 * 256 (its time follows the other CPUs' state); alone after 256 calls
 * shared, up to 4096. Only every eighth call of the better way is
 * timed. */
static void check_trials(uint32_t alone, uint32_t shared, const int *periods,
                         size_t count) {
  const uint32_t ticks[2] = {alone, shared};
  bool better = shared <= alone;
  bn_share_record r = learned(alone, shared);
  for (size_t k = 0; k < count; k++) {
    int timed_calls = 0, n = 0;
    for (;;) {
      bool t;
      if (call(&r, ticks, &t) != better) break;
      timed_calls += t;
      n++;
    }
    /* The period-th call is the trial's first. */
    CHECKF(n == periods[k] - 1,
           "trial %zu of %s came after %d calls, expected %d", k,
           better ? "alone" : "sharing", n, periods[k] - 1);
    CHECKF(timed_calls <= n / 8 + 1 && timed_calls >= n / 8 - 1,
           "%d of %d calls of the better way timed, expected every eighth",
           timed_calls, n);
    for (int i = 1; i < BN_SHARE_TRIAL_CALLS; i++) {
      bool t;
      CHECK(call(&r, ticks, &t) == !better && t);
    }
  }
}

static void trials_back_off(void) {
  const int of_alone[] = {256, 512, 1024, 2048, 4096, 4096},
            of_sharing[] = {32, 64, 128, 256, 256};
  check_trials(1500, 1300, of_alone, sizeof of_alone / sizeof *of_alone);
  check_trials(1500, 1800, of_sharing,
               sizeof of_sharing / sizeof *of_sharing);
}

/* One slow time of the better way (an interrupt) changes nothing; a
 * lasting slowdown changes the way within a few timed calls; and a trial
 * that finds the other way faster again switches back, with trials
 * every 32 calls once more. */
static void follows_changes(void) {
  bn_share_record r = learned(1500, 1300);
  uint32_t ticks[2] = {1500, 1300};
  for (int i = 0; i < 20; i++) call(&r, ticks, NULL);
  /* Feed one outlier to the next timed call. */
  for (;;) {
    bool t, way = bn_share_pick(&r, &t);
    if (t && way == SHARED) {
      bn_share_learn(&r, true, 1000000);
      break;
    }
    if (t) bn_share_learn(&r, way, ticks[way]);
  }
  CHECK(bn_share_estimate(&r, true) == 1300);
  CHECK(run_of(&r, SHARED, ticks, 5) == 5);

  /* Sharing becomes slower than alone for good: two timed calls show
   * it, and the next trial of sharing comes 32 calls after the change. */
  ticks[SHARED] = 2000;
  int calls = 0;
  while (bn_share_estimate(&r, true) <= bn_share_estimate(&r, false) &&
         calls < 1000) {
    call(&r, ticks, NULL);
    calls++;
  }
  CHECKF(calls <= 2 * 8 + BN_SHARE_TRIAL_CALLS,
         "%d calls of a lasting slowdown before it shows", calls);
  int alone_run = run_of(&r, ALONE, ticks, 1000);
  CHECKF(alone_run >= 31 && alone_run <= 32 + BN_SHARE_TRIAL_CALLS,
         "%d calls alone before a trial", alone_run);

  /* Sharing becomes fast again: the next trial of it switches back. */
  ticks[SHARED] = 1200;
  int calls_alone = run_of(&r, ALONE, ticks, 1000);
  CHECKF(calls_alone <= 256, "%d calls alone before a trial", calls_alone);
  CHECK(run_of(&r, SHARED, ticks, 1000) >= 31);
}

/* The table and the thread limit as the layer uses them. */
static void begin_and_end(void) {
  CHECK_OK(bnorm_set_num_threads(2));
  int site_a, site_b;
  bool ways_a[8], ways_b[8];
  for (int i = 0; i < 8; i++) {
    bn_share_trial ta, tb;
    bn_share_begin(&ta, &site_a, 0, 1000);
    CHECK(ta.record != NULL);
    ways_a[i] = ta.shared;
    CHECK(bn_thread_count() == (ta.shared ? 2 : 1));
    bn_share_end(&ta, true);
    CHECK(bn_thread_count() == 2);
    /* Another site, and the same site's other pass and size class
     * (1024 and more elements), have their own records: each starts with
     * its own first calls. */
    bn_share_begin(&tb, &site_b, 0, 1000);
    ways_b[i] = tb.shared;
    bn_share_end(&tb, true);
    bn_share_trial other;
    bn_share_begin(&other, &site_a, 1, 1000);
    bn_share_end(&other, true);
    bn_share_begin(&other, &site_a, 0, 1024);
    bn_share_end(&other, true);
  }
  for (int i = 0; i < 8; i++)
    CHECKF(ways_a[i] == (i < 4) && ways_b[i] == (i < 4),
           "call %d of a kind: %d and %d", i, ways_a[i], ways_b[i]);
  /* Sizes of one class (512 to 1023 elements) share a record: calls on
   * 600 and 1000 elements in turn go through one kind's first calls. */
  int site_c;
  bool ways_c[8];
  for (int i = 0; i < 8; i++) {
    bn_share_trial tc;
    bn_share_begin(&tc, &site_c, 0, i % 2 ? 1000 : 600);
    ways_c[i] = tc.shared;
    bn_share_end(&tc, true);
  }
  for (int i = 0; i < 8; i++)
    CHECKF(ways_c[i] == (i < 4), "call %d of a size class: %d", i,
           ways_c[i]);

  /* Many kinds of call, interleaved, keep their records: each goes
   * through its own first calls. (Whether 24 kinds fit depends on how
   * they hash into the sets; that any set fills is about 5e-6 likely.) */
  {
    enum { KINDS = 24 };
    static char sites[KINDS];
    bool ways[KINDS][8];
    for (int i = 0; i < 8; i++)
      for (int k = 0; k < KINDS; k++) {
        bn_share_trial tk;
        bn_share_begin(&tk, &sites[k], 0, 4096);
        ways[k][i] = tk.shared;
        bn_share_end(&tk, true);
      }
    int wrong = 0;
    for (int k = 0; k < KINDS; k++)
      for (int i = 0; i < 8; i++) wrong += ways[k][i] != (i < 4);
    CHECKF(wrong == 0, "%d of %d interleaved calls did not follow their "
           "kind's first calls", wrong, 8 * KINDS);
  }

  /* Large tensors and one thread are not chosen for. */
  bn_share_trial t;
  bn_share_begin(&t, &site_a, 0, (size_t)BN_SHARE_CHOICE_MAX_ELEMENTS + 1);
  CHECK(t.record == NULL && bn_thread_count() == 2);
  bn_share_end(&t, true);
  CHECK_OK(bnorm_set_num_threads(1));
  bn_share_begin(&t, &site_a, 0, 1000);
  CHECK(t.record == NULL && bn_thread_count() == 1);
  bn_share_end(&t, true);

  /* The public count is the one set, whatever the call's limit. */
  CHECK_OK(bnorm_set_num_threads(2));
  int outer = bn_limit_thread(1);
  CHECK(bn_thread_count() == 1 && bnorm_get_num_threads() == 2);
  bn_limit_thread(outer);
  CHECK(bn_thread_count() == 2);

  CHECK(bn_share_per_kilo(3000, 1000) == 3072);
  CHECK(bn_share_per_kilo(3000, 2000) == 1536);
  CHECK(bn_share_per_kilo(7, 0) == 7 * 1024);
  CHECK(bn_share_per_kilo(UINT64_MAX, 1024) == UINT64_MAX / 1024 * 1024);

  int64_t shape[3] = {4, 5, 6}, negative[2] = {4, -1},
          huge[3] = {INT64_MAX, INT64_MAX, 2};
  CHECK(bn_share_elements(shape, 3) == 120);
  CHECK(bn_share_elements(negative, 2) == SIZE_MAX);
  CHECK(bn_share_elements(huge, 3) == SIZE_MAX);
  CHECK_OK(bnorm_set_num_threads(0));
}

/* Training steps and backward calls on two threads, where the choice
 * goes both ways, give the bits one thread gives. */
static void results_do_not_depend_on_the_choice(void) {
  enum { STEPS = 600 };
  int64_t shape[4] = {8, 7, 7, 32};
  size_t n = 8 * 7 * 7 * 32;
  float *x = malloc(n * sizeof *x), *dy = malloc(n * sizeof *dy);
  float *y[2], *dx[2], dgamma[2][32], dbeta[2][32];
  bnorm_layer *layer[2];
  bnorm_saved *saved[2];
  th_seed(7);
  th_fill_normal(x, n, 3.0, 2.0);
  th_fill_normal(dy, n, 0.0, 1.0);
  for (int k = 0; k < 2; k++) {
    y[k] = malloc(n * sizeof **y);
    dx[k] = malloc(n * sizeof **dx);
    bnorm_config config;
    bnorm_config_init(&config);
    CHECK_OK(bnorm_layer_create(&config, &layer[k]));
    CHECK_OK(bnorm_saved_create(&saved[k]));
  }
  int mismatches = 0;
  for (int step = 0; step < STEPS; step++) {
    for (int k = 0; k < 2; k++) {
      CHECK_OK(bnorm_set_num_threads(k == 0 ? 1 : 2));
      bnorm_forward_args f;
      memset(&f, 0, sizeof f);
      f.x = x;
      f.y = y[k];
      f.shape = shape;
      f.rank = 4;
      f.training = step % 3 != 2;
      f.saved = f.training ? saved[k] : NULL;
      if (bnorm_layer_forward(layer[k], &f) != BNORM_OK) mismatches++;
      if (f.training) {
        bnorm_backward_args b = {saved[k], x, dy, shape, 4,
                                 dx[k], dgamma[k], dbeta[k]};
        if (bnorm_layer_backward(layer[k], &b) != BNORM_OK) mismatches++;
      }
    }
    mismatches += memcmp(y[0], y[1], n * sizeof **y) != 0;
    if (step % 3 != 2)
      mismatches += memcmp(dx[0], dx[1], n * sizeof **dx) != 0 ||
                     memcmp(dgamma[0], dgamma[1], sizeof dgamma[0]) != 0 ||
                     memcmp(dbeta[0], dbeta[1], sizeof dbeta[0]) != 0;
    x[step % n] += 0.25f; /* new batch statistics each step */
  }
  CHECKF(mismatches == 0, "%d of %d steps differ from one thread's",
         mismatches, STEPS);
  for (int k = 0; k < 2; k++) {
    bnorm_layer_destroy(layer[k]);
    bnorm_saved_destroy(saved[k]);
    free(y[k]);
    free(dx[k]);
  }
  free(x);
  free(dy);
  CHECK_OK(bnorm_set_num_threads(0));
}

/* The setting: $BNORM_SMALL_CALLS gives its first value (ctest runs this
 * program again with it set to "share"), the setter any later one. */
static void the_setting(void) {
  const char *env = getenv("BNORM_SMALL_CALLS");
  bnorm_small_calls from_env = env && strcmp(env, "share") == 0
                                   ? BNORM_SMALL_CALLS_SHARE
                                   : BNORM_SMALL_CALLS_CHOOSE;
  CHECK(bnorm_get_small_calls() == from_env);
  CHECK_OK(bnorm_set_num_threads(2));
  int site;
  bn_share_trial t;
  CHECK_OK(bnorm_set_small_calls(BNORM_SMALL_CALLS_SHARE));
  CHECK(bnorm_get_small_calls() == BNORM_SMALL_CALLS_SHARE);
  bn_share_begin(&t, &site, 0, 1000);
  CHECK(t.record == NULL && bn_thread_count() == 2);
  bn_share_end(&t, true);
  CHECK_STATUS(bnorm_set_small_calls((bnorm_small_calls)2),
               BNORM_ERR_INVALID_ARGUMENT);
  CHECK(strstr(bnorm_last_error(), "bnorm_set_small_calls") != NULL);
  CHECK(bnorm_get_small_calls() == BNORM_SMALL_CALLS_SHARE);
  CHECK_OK(bnorm_set_small_calls(BNORM_SMALL_CALLS_CHOOSE));
  bn_share_begin(&t, &site, 0, 1000);
  CHECK(t.record != NULL);
  bn_share_end(&t, true);
  CHECK_OK(bnorm_set_num_threads(0));
}

int main(void) {
  the_setting();
  first_calls();
  follows_the_faster_way();
  trials_back_off();
  follows_changes();
  begin_and_end();
  results_do_not_depend_on_the_choice();
  return th_finish();
}
