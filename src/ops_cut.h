/* How the operators cut a tensor for threads (ops.c, ops_f64.c). A tensor
 * is cut into rows (its innermost dimension: one statistic, as in NCHW, or
 * consecutive statistics, as in NHWC), and the rows into chunks of about
 * BN_CHUNK_ELEMENTS elements, more where many statistics make a chunk's
 * state large. The reductions' cut depends only on the layout and the
 * reduction; threads take whole chunks, reductions keep one partial result per
 * chunk and combine them in chunk order, so results are bit-identical for
 * any number of threads. */
#ifndef BNORM_OPS_CUT_H
#define BNORM_OPS_CUT_H

#include "ops.h"
#include "threads.h"

enum {
  BN_CHUNK_ELEMENTS = 1 << 17,
  BN_MAX_CHUNKS = BN_MAX_TASKS,
  /* A tensor of one chunk is split for two threads from this many
   * elements and rows on: fewer elements are not worth a second thread,
   * and a half of fewer rows does not pay for the coefficients the second
   * thread must fetch (NC 32x1024 ran 2-4% slower split). */
  BN_SPLIT_ELEMENTS = 1 << 13,
  BN_SPLIT_ROWS = 128,
  /* A chunk of a reduction is at least this many elements per double of
   * its state ((count, mean, m2, sum) or two sums per statistic, and room for
   * the moments' block buffers): each chunk clears its state, fills it and
   * hands it to the merge from memory that is cold on a cold call, and
   * starts its reads afresh. Rows of 1024 channels in chunks of 2^17
   * elements spent 15-20% of a cold moments pass on that; 128 (8 chunks of
   * NC 4096x1024, 17 of NHWC 64x14x14x512) is 2-3% faster than 64. */
  BN_CHUNK_ELEMENTS_PER_STATE = 128,
  /* ... but chunks grow only while there are at least this many, so that
   * a tensor of a few chunks still has one for each of several threads. */
  BN_MIN_GROWN_CHUNKS = 8
};

/* The reduction a cut serves (the elementwise pass after it shares its
 * cut, so that each thread keeps its share of the tensor). */
typedef enum bn_reduction { BN_MOMENTS, BN_GRAD_SUMS } bn_reduction;

/* A contiguous piece of the tensor: `rows` rows of `length` elements from
 * `offset`, all with the same statistics. The first element's statistic is
 * `stat`; along a row it advances by `stat_step` (0: the row reduces into one
 * statistic; 1: it spans consecutive ones). */
typedef struct bn_run {
  size_t offset, rows, length, stat, stat_step;
} bn_run;

/* How a layout is cut: runs of `rows_per_run` rows (NHWC's rows share their
 * statistics and form one run), rows of `length`, chunks of
 * `rows_per_chunk` rows. */
typedef struct bn_cut {
  const bn_layout *layout;
  int outer; /* dimensions [0, outer) select the run */
  size_t length, stat_step, rows_per_run, rows, rows_per_chunk, chunks;
} bn_cut;

/* Per chunk: count, mean, m2 and a sum per statistic (the SIMD kernels'
 * sums of short runs, ops_simd_moments.inc), and, where rows span
 * statistics, room for the portable kernels' block buffer: two doubles per
 * statistic of a row. The room counts in the chunk's size, which sets the
 * cut of both. */
static inline size_t bn_chunk_moments_doubles(const bn_layout *layout,
                                              const bn_cut *cut) {
  return 4 * layout->stats + (cut->stat_step ? 2 * cut->length : 0);
}

/* The cut into chunks alone, before any split in halves. */
static inline void bn_cut_init_whole(bn_cut *cut, const bn_layout *l,
                                     bn_reduction reduction) {
  int inner = l->dims - 1;
  cut->layout = l;
  cut->length = (size_t)l->size[inner];
  cut->stat_step = (size_t)l->stat_stride[inner];
  cut->rows_per_run = 1;
  cut->outer = inner;
  if (inner > 0 && cut->stat_step != 0 && l->stat_stride[inner - 1] == 0) {
    cut->rows_per_run = (size_t)l->size[inner - 1];
    cut->outer = inner - 1;
  }
  cut->rows = cut->length ? l->total / cut->length : 0;
  size_t state = reduction == BN_MOMENTS ? bn_chunk_moments_doubles(l, cut)
                                         : 2 * l->stats;
  size_t chunk_elements = BN_CHUNK_ELEMENTS;
  if (state > chunk_elements / BN_CHUNK_ELEMENTS_PER_STATE) {
    size_t wanted = state < SIZE_MAX / BN_CHUNK_ELEMENTS_PER_STATE
                        ? state * BN_CHUNK_ELEMENTS_PER_STATE
                        : SIZE_MAX;
    size_t spread = l->total / BN_MIN_GROWN_CHUNKS;
    if (wanted > spread) wanted = spread;
    if (wanted > chunk_elements) chunk_elements = wanted;
  }
  size_t per_chunk =
      cut->length < chunk_elements ? chunk_elements / cut->length : 1;
  if (cut->rows / per_chunk >= BN_MAX_CHUNKS)
    per_chunk = cut->rows / BN_MAX_CHUNKS + 1;
  cut->rows_per_chunk = per_chunk;
  cut->chunks = (cut->rows + per_chunk - 1) / per_chunk;
}

/* Whether a tensor of one chunk goes in two halves (see below). */
static inline bool bn_cut_splits(const bn_cut *cut) {
  return cut->chunks == 1 && cut->layout->total >= BN_SPLIT_ELEMENTS &&
         cut->rows >= BN_SPLIT_ROWS;
}

static inline void bn_cut_split(bn_cut *cut) {
  cut->rows_per_chunk = (cut->rows + 1) / 2;
  cut->chunks = 2;
}

/* The cut of a reduction. Its results depend on the cut, which therefore
 * never depends on the thread count. The gradient sums split a tensor of
 * one chunk in halves for any number of threads: their state is two sums
 * per statistic, so a second chunk costs one thread about 2% on 50 KB,
 * while two threads then each read their half of x and dy in both passes
 * of the backward call, in their own caches (12-17% faster on 50 KB). The
 * moments split it too where each row reduces into one statistic (NCHW),
 * whose short runs make the pass costly per element: NCHW 8x32x7x7 and
 * 8x64x14x14 train 1.43x faster on two threads, even on one. Rows that
 * span statistics (NHWC) split only where each half holds at least
 * BN_CHUNK_ELEMENTS_PER_STATE elements per double of its state, the
 * measure chunks grow by: a second chunk's pivots, state and merge cost
 * one thread 3-9% on NHWC 8x7x7x32 (half: 33 elements per double), and
 * two threads gained nothing from it there, nor on 16x7x7x64 (65: 0.91x);
 * 8x14x14x32 (130) trains 1.20x faster on two threads and 0.98x on one,
 * 32x8x8x64 (170) 1.33x and 1.00x. Without the split the caller reads all
 * of x in the moments pass while the other threads wait. */
static inline bool bn_moments_halves_pay(const bn_layout *l,
                                         const bn_cut *cut) {
  return l->total / 2 >=
         BN_CHUNK_ELEMENTS_PER_STATE * bn_chunk_moments_doubles(l, cut);
}

static inline void bn_cut_init(bn_cut *cut, const bn_layout *l,
                               bn_reduction reduction) {
  bn_cut_init_whole(cut, l, reduction);
  if (bn_cut_splits(cut) &&
      (reduction == BN_GRAD_SUMS || cut->stat_step == 0 ||
       bn_moments_halves_pay(l, cut)))
    bn_cut_split(cut);
}

/* The cut of the elementwise passes (normalize, grad_input), where a
 * tensor of one chunk goes in the same two halves when there is more than
 * one thread, so that two threads share it: one thread streams all of it
 * through its L2 at about 32 bytes a cycle, two stream half each. Their
 * results do not depend on the cut, so it may depend on the thread count:
 * one thread gains nothing from halves and pays 2-4% for them. */
static inline void bn_cut_init_elementwise(bn_cut *cut, const bn_layout *l,
                                           bn_reduction after) {
  bn_cut_init_whole(cut, l, after);
  if (bn_cut_splits(cut) && bn_thread_count() > 1) bn_cut_split(cut);
}

/* Walks the runs that rows [row, end) cover, clipped to that range. The
 * statistic of the next run is carried from run to run as an odometer over
 * the outer dimensions: found by division per run, it took NCHW at 7x7
 * (a run of 49 elements per row) a tenth of its moments pass. */
typedef struct bn_pieces {
  const bn_cut *cut;
  size_t row, end;
  size_t first_row; /* of the next run, where the range starts inside one */
  size_t stat;      /* of the next run */
  size_t index[BNORM_MAX_RANK + 2]; /* the next run's, over [0, outer) */
} bn_pieces;

static inline void bn_pieces_of_chunk(bn_pieces *p, const bn_cut *cut,
                                      size_t chunk) {
  p->cut = cut;
  p->row = chunk * cut->rows_per_chunk;
  p->end = p->row + cut->rows_per_chunk;
  if (p->end > cut->rows)
    p->end = cut->rows;
  p->first_row = 0;
  p->stat = 0;
  if (p->row >= p->end)
    return;
  size_t rest = p->row / cut->rows_per_run;
  p->first_row = p->row % cut->rows_per_run;
  const bn_layout *l = cut->layout;
  for (int d = cut->outer - 1; d >= 0; d--) {
    size_t size = (size_t)l->size[d];
    p->index[d] = rest % size;
    p->stat += p->index[d] * (size_t)l->stat_stride[d];
    rest /= size;
  }
}

static inline bool bn_pieces_next(bn_pieces *p, bn_run *run) {
  const bn_cut *cut = p->cut;
  if (p->row >= p->end)
    return false;
  size_t rows = cut->rows_per_run - p->first_row;
  if (rows > p->end - p->row)
    rows = p->end - p->row;
  run->offset = p->row * cut->length;
  run->rows = rows;
  run->length = cut->length;
  run->stat = p->stat;
  run->stat_step = cut->stat_step;
  p->row += rows;
  p->first_row = 0;
  int d = cut->outer - 1;
  if (d < 0)
    return true;
  /* The innermost outer dimension turns on every run; a carry past it
   * comes once per its size. */
  const bn_layout *l = cut->layout;
  p->stat += (size_t)l->stat_stride[d];
  if (++p->index[d] < (size_t)l->size[d])
    return true;
  for (; d >= 0; d--) {
    size_t stride = (size_t)l->stat_stride[d];
    if (d < cut->outer - 1) {
      p->stat += stride;
      if (++p->index[d] < (size_t)l->size[d])
        break;
    }
    p->stat -= (size_t)l->size[d] * stride;
    p->index[d] = 0;
  }
  return true;
}

/* Chan et al.'s merge of a block's (count, mean, m2) into a statistic. */
static inline void bn_merge_moments(double *count, double *mean, double *m2,
                                    double block_count, double block_mean,
                                    double block_m2) {
  if (block_count == 0)
    return;
  double total = *count + block_count;
  double delta = block_mean - *mean;
  *mean += delta * (block_count / total);
  *m2 += block_m2 + delta * delta * (*count * block_count / total);
  *count = total;
}

#endif
