/* oneDNN (Debian libdnnl-dev, C API v2) in the same process: one batch
 * normalization primitive per pass, memory in the case's own layout (NHWC,
 * NCHW, NC ... described by strides), scale and shift as separate arguments.
 * oneDNN's conventions match Keras' output: variance is the biased one and
 * epsilon is added under the square root, y = gamma*(x-mean)/sqrt(var+eps)
 * + beta. It keeps no moving averages (Keras' fused update and its Bessel
 * correction exist only in bnorm and PyTorch). */
#include "bench.h"

#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { ARGS_MAX = 10 };

struct bench_dnnl {
  const bench_io *io;
  dnnl_engine_t engine;
  dnnl_stream_t stream;
  dnnl_primitive_desc_t pd[BENCH_PASS_COUNT];
  dnnl_primitive_t prim[BENCH_PASS_COUNT];
  dnnl_memory_t mem[16];
  int mem_count;
  dnnl_exec_arg_t args[BENCH_PASS_COUNT][ARGS_MAX];
  int nargs[BENCH_PASS_COUNT];
  float *y, *dx, *mean, *variance, *dgamma, *dbeta;
};

void bench_set_omp_threads(int threads) { omp_set_num_threads(threads); }

const char *bench_dnnl_version(void) {
  static char text[64];
  const dnnl_version_t *v = dnnl_version();
  snprintf(text, sizeof text, "%d.%d.%d", v->major, v->minor, v->patch);
  return text;
}

#define CHECK(call)                                                        \
  do {                                                                     \
    dnnl_status_t st_ = (call);                                            \
    if (st_ != dnnl_success) {                                             \
      snprintf(err, errlen, "%s failed (status %d)", #call, (int)st_);     \
      bench_dnnl_destroy(d);                                               \
      return -1;                                                           \
    }                                                                      \
  } while (0)

static dnnl_memory_t memory(bench_dnnl *d, const dnnl_memory_desc_t *md,
                            const float *data) {
  dnnl_memory_t m = NULL;
  if (dnnl_memory_create(&m, md, d->engine, (void *)data) != dnnl_success)
    return NULL;
  d->mem[d->mem_count++] = m;
  return m;
}

static void arg(bench_dnnl *d, bench_pass pass, int which, dnnl_memory_t m) {
  d->args[pass][d->nargs[pass]].arg = which;
  d->args[pass][d->nargs[pass]].memory = m;
  d->nargs[pass]++;
}

int bench_dnnl_create(const bench_io *io, bench_dnnl **out, char *err,
                      size_t errlen) {
  const bench_shape *s = io->shape;
  bench_dnnl *d = calloc(1, sizeof *d);
  if (!d) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  d->io = io;
  size_t cbytes = s->channels * sizeof(float);
  d->y = bench_alloc_tensor(s->total);
  d->dx = bench_alloc_tensor(s->total);
  d->mean = calloc(1, cbytes);
  d->variance = calloc(1, cbytes);
  d->dgamma = calloc(1, cbytes);
  d->dbeta = calloc(1, cbytes);
  if (!d->y || !d->dx || !d->mean || !d->variance || !d->dgamma || !d->dbeta) {
    snprintf(err, errlen, "out of memory");
    bench_dnnl_destroy(d);
    return -1;
  }

  /* oneDNN's logical order is N, C, spatial...; strides place it in memory. */
  dnnl_dims_t dims, strides, cdims = {(dnnl_dim_t)s->channels}, cstrides = {1};
  int64_t mstride[BENCH_MAX_RANK];
  mstride[s->rank - 1] = 1;
  for (int i = s->rank - 2; i >= 0; i--)
    mstride[i] = mstride[i + 1] * s->dims[i + 1];
  int order[BENCH_MAX_RANK], n = 0;
  order[n++] = 0;
  order[n++] = s->channel_axis;
  for (int i = 1; i < s->rank; i++)
    if (i != s->channel_axis) order[n++] = i;
  int ndims = s->rank;
  for (int j = 0; j < s->rank; j++) {
    dims[j] = s->dims[order[j]];
    strides[j] = mstride[order[j]];
  }
  /* A [batch, features] matrix is handed over as NHWC with 1x1 pixels (the
   * same memory): oneDNN 2.6 runs plain "nc" with its generic ncsp_bnorm,
   * ~20x slower than its JIT kernel for nhwc. Peers get their best path. */
  if (ndims == 2) {
    dims[2] = dims[3] = 1;
    strides[2] = strides[3] = dims[1];
    ndims = 4;
  }
  dnnl_memory_desc_t data_md, param_md;
  CHECK(dnnl_memory_desc_init_by_strides(&data_md, ndims, dims, dnnl_f32,
                                         strides));
  CHECK(dnnl_memory_desc_init_by_strides(&param_md, 1, cdims, dnnl_f32,
                                         cstrides));
  CHECK(dnnl_engine_create(&d->engine, dnnl_cpu, 0));
  CHECK(dnnl_stream_create(&d->stream, d->engine, dnnl_stream_default_flags));

  float eps = (float)io->epsilon;
  unsigned ss = dnnl_use_scale | dnnl_use_shift;
  dnnl_batch_normalization_desc_t bd;
  CHECK(dnnl_batch_normalization_forward_desc_init(&bd, dnnl_forward_training,
                                                   &data_md, eps, ss));
  CHECK(dnnl_primitive_desc_create(&d->pd[BENCH_TRAIN], &bd, NULL, d->engine,
                                   NULL));
  CHECK(dnnl_batch_normalization_forward_desc_init(
      &bd, dnnl_forward_inference, &data_md, eps, ss | dnnl_use_global_stats));
  CHECK(dnnl_primitive_desc_create(&d->pd[BENCH_INFER], &bd, NULL, d->engine,
                                   NULL));
  CHECK(dnnl_batch_normalization_backward_desc_init(&bd, dnnl_backward,
                                                    &data_md, &data_md, eps,
                                                    ss));
  CHECK(dnnl_primitive_desc_create(&d->pd[BENCH_BACKWARD], &bd, NULL,
                                   d->engine, d->pd[BENCH_TRAIN]));
  for (int p = 0; p < BENCH_PASS_COUNT; p++)
    CHECK(dnnl_primitive_create(&d->prim[p], d->pd[p]));

  dnnl_memory_t x = memory(d, &data_md, io->x), dy = memory(d, &data_md, io->dy),
                y = memory(d, &data_md, d->y), dx = memory(d, &data_md, d->dx),
                gamma = memory(d, &param_md, io->gamma),
                beta = memory(d, &param_md, io->beta),
                mean = memory(d, &param_md, d->mean),
                var = memory(d, &param_md, d->variance),
                mmean = memory(d, &param_md, io->moving_mean),
                mvar = memory(d, &param_md, io->moving_variance),
                dgamma = memory(d, &param_md, d->dgamma),
                dbeta = memory(d, &param_md, d->dbeta);
  if (d->mem_count != 12 || !x || !dy || !y || !dx || !gamma || !beta ||
      !mean || !var || !mmean || !mvar || !dgamma || !dbeta) {
    snprintf(err, errlen, "dnnl_memory_create failed");
    bench_dnnl_destroy(d);
    return -1;
  }
  arg(d, BENCH_TRAIN, DNNL_ARG_SRC, x);
  arg(d, BENCH_TRAIN, DNNL_ARG_DST, y);
  arg(d, BENCH_TRAIN, DNNL_ARG_SCALE, gamma);
  arg(d, BENCH_TRAIN, DNNL_ARG_SHIFT, beta);
  arg(d, BENCH_TRAIN, DNNL_ARG_MEAN, mean);
  arg(d, BENCH_TRAIN, DNNL_ARG_VARIANCE, var);
  arg(d, BENCH_INFER, DNNL_ARG_SRC, x);
  arg(d, BENCH_INFER, DNNL_ARG_DST, y);
  arg(d, BENCH_INFER, DNNL_ARG_SCALE, gamma);
  arg(d, BENCH_INFER, DNNL_ARG_SHIFT, beta);
  arg(d, BENCH_INFER, DNNL_ARG_MEAN, mmean);
  arg(d, BENCH_INFER, DNNL_ARG_VARIANCE, mvar);
  arg(d, BENCH_BACKWARD, DNNL_ARG_SRC, x);
  arg(d, BENCH_BACKWARD, DNNL_ARG_DIFF_DST, dy);
  arg(d, BENCH_BACKWARD, DNNL_ARG_MEAN, mean);
  arg(d, BENCH_BACKWARD, DNNL_ARG_VARIANCE, var);
  arg(d, BENCH_BACKWARD, DNNL_ARG_SCALE, gamma);
  arg(d, BENCH_BACKWARD, DNNL_ARG_SHIFT, beta); /* required with use_shift */
  arg(d, BENCH_BACKWARD, DNNL_ARG_DIFF_SRC, dx);
  arg(d, BENCH_BACKWARD, DNNL_ARG_DIFF_SCALE, dgamma);
  arg(d, BENCH_BACKWARD, DNNL_ARG_DIFF_SHIFT, dbeta);
  *out = d;
  return 0;
}

void bench_dnnl_destroy(bench_dnnl *d) {
  if (!d) return;
  for (int p = 0; p < BENCH_PASS_COUNT; p++) {
    if (d->prim[p]) dnnl_primitive_destroy(d->prim[p]);
    if (d->pd[p]) dnnl_primitive_desc_destroy(d->pd[p]);
  }
  for (int i = 0; i < d->mem_count; i++) dnnl_memory_destroy(d->mem[i]);
  if (d->stream) dnnl_stream_destroy(d->stream);
  if (d->engine) dnnl_engine_destroy(d->engine);
  free(d->y);
  free(d->dx);
  free(d->mean);
  free(d->variance);
  free(d->dgamma);
  free(d->dbeta);
  free(d);
}

int bench_dnnl_run(bench_dnnl *d, bench_pass pass) {
  dnnl_status_t st = dnnl_primitive_execute(d->prim[pass], d->stream,
                                            d->nargs[pass], d->args[pass]);
  if (st == dnnl_success) st = dnnl_stream_wait(d->stream);
  if (st != dnnl_success) {
    fprintf(stderr, "bnorm-bench: oneDNN %s failed (status %d)\n",
            bench_pass_name(pass), (int)st);
    return -1;
  }
  return 0;
}

/* Backward takes the batch mean and variance its training forward wrote. */
int bench_dnnl_prepare(bench_dnnl *d, bench_pass pass) {
  return pass == BENCH_BACKWARD ? bench_dnnl_run(d, BENCH_TRAIN) : 0;
}

void bench_dnnl_result(const bench_dnnl *d, bench_result *out) {
  out->y = d->y;
  out->dx = d->dx;
  out->dgamma = d->dgamma;
  out->dbeta = d->dbeta;
  out->dgamma_scale = out->dbeta_scale = NULL;
}

const char *bench_dnnl_impl_name(const bench_dnnl *d, bench_pass pass) {
  const char *name = NULL;
  if (dnnl_primitive_desc_query(d->pd[pass], dnnl_query_impl_info_str, 0,
                                &name) != dnnl_success || !name)
    return "?";
  return name;
}
