/* The results: a table on stdout with the targets of issue 5, and a CSV. */
#include "bench.h"

#include <math.h>
#include <string.h>

const char *bench_impl_name(bench_impl impl) {
  static const char *names[] = {"bnorm", "bnorm+pend", "oneDNN", "torch",
                               "bare"};
  return names[impl];
}

static bool timed(const bench_cell *c) {
  return c->present && strcmp(c->status, "ok") == 0 && c->stats.reps > 0;
}

/* The fastest peer that matched bnorm; -1 if none. */
static int best_peer(const bench_row *row) {
  int best = -1;
  for (int i = BENCH_IMPL_DNNL; i <= BENCH_IMPL_TORCH; i++)
    if (timed(&row->cell[i]) &&
        (best < 0 || row->cell[i].stats.median < row->cell[best].stats.median))
      best = i;
  return best;
}

static size_t tensor_bytes(const bench_report *r, const bench_row *row) {
  return r->shapes[row->shape_index].total * sizeof(float);
}

double bench_row_floor(const bench_report *r, const bench_row *row) {
  return bench_floor_seconds(row->pass, tensor_bytes(r, row),
                             &r->bw[row->thread_index]);
}

static const char *fmt_time(char *buf, size_t len, double s) {
  if (!(s > 0)) snprintf(buf, len, "-");
  else if (s >= 0.1) snprintf(buf, len, "%.1fms", s * 1e3);
  else if (s >= 1e-3) snprintf(buf, len, "%.2fms", s * 1e3);
  else snprintf(buf, len, "%.1fus", s * 1e6);
  return buf;
}

/* "  41.20ms  6%": median and spread (max - min) / median. */
static void fmt_cell(char *buf, size_t len, const bench_cell *c, bool spread) {
  char t[32];
  if (!c->present) snprintf(buf, len, "%9s%s", "-", spread ? "     " : "");
  else if (!timed(c)) {
    char up[16];
    size_t i = 0;
    for (; c->status[i] && i < sizeof up - 1; i++)
      up[i] = (char)(c->status[i] >= 'a' && c->status[i] <= 'z'
                         ? c->status[i] - 32 : c->status[i]);
    up[i] = '\0';
    snprintf(buf, len, "%9s%s", up, spread ? "     " : "");
  } else if (spread)
    snprintf(buf, len, "%9s %3.0f%%", fmt_time(t, sizeof t, c->stats.median),
             100.0 * (c->stats.max - c->stats.min) / c->stats.median);
  else snprintf(buf, len, "%9s", fmt_time(t, sizeof t, c->stats.median));
}

static void print_bandwidth(FILE *out, const bench_report *r) {
  static const char *what[] = {"1R", "1R+1W", "1R+1W, NT stores", "2R+1W",
                               "2R+1W, NT stores"};
  fprintf(out, "\nMemory bandwidth, STREAM-like kernels on arrays of %zu MiB, "
          "GB/s: median [min..max] at the start / median at the end\n",
          r->bw_before[0].array_bytes >> 20);
  fprintf(out, "  %-27s", "kernel");
  for (int t = 0; t < r->thread_count; t++) {
    char label[32];
    snprintf(label, sizeof label, "%d thread%s", r->threads[t],
             r->threads[t] == 1 ? "" : "s");
    fprintf(out, " %-32s", label);
  }
  fprintf(out, "\n");
  for (int k = 0; k < BENCH_STREAM_COUNT; k++) {
    char name[64];
    snprintf(name, sizeof name, "%s (%s)", bench_stream_name((bench_stream_kind)k),
             what[k]);
    fprintf(out, "  %-27s", name);
    for (int t = 0; t < r->thread_count; t++) {
      char cell[64];
      snprintf(cell, sizeof cell, "%.1f [%.1f..%.1f] / %.1f",
               r->bw_before[t].gbps[k], r->bw_before[t].gbps_min[k],
               r->bw_before[t].gbps_max[k], r->bw_after[t].gbps[k]);
      fprintf(out, " %-32s", cell);
    }
    fprintf(out, "\n");
  }
  fprintf(out, "  A case's floor uses the best rate (the max of start and "
          "end) for its thread count, as STREAM reports its best.\n");
}

static double geomean_acc(double *log_sum, int *n, double x) {
  *log_sum += log(x);
  (*n)++;
  return x;
}

static void print_summary(FILE *out, const bench_report *r) {
  int slower = 0, compared = 0, mismatches = 0, errors = 0;
  double log_all = 0, log_t[4] = {0}, worst_err = 0;
  int n_all = 0, n_t[4] = {0};
  double cold_min = INFINITY, cold_max = 0, small_min = INFINITY,
         small_max = 0;
  int cold_n = 0, cold_ok = 0, small_n = 0;
  /* The bare loops' fractions of the floor, and bnorm's of their speed. */
  double bare_min = INFINITY, bare_max = 0, vs_bare_min = INFINITY,
         vs_bare_max = 0;
  int bare_n = 0, bare_ok = 0;
  for (size_t i = 0; i < r->row_count; i++) {
    const bench_row *row = &r->rows[i];
    for (int k = BENCH_IMPL_DNNL; k <= BENCH_IMPL_TORCH; k++) {
      const bench_cell *c = &row->cell[k];
      if (!c->present) continue;
      if (strcmp(c->status, "mismatch") == 0) mismatches++;
      else if (strcmp(c->status, "ok") != 0) errors++;
      else if (c->err > worst_err) worst_err = c->err;
    }
    const bench_cell *b = &row->cell[BENCH_IMPL_BNORM];
    if (!timed(b)) {
      errors++;
      continue;
    }
    const bench_shape *s = &r->shapes[row->shape_index];
    if (s->cold) {
      double pct = bench_row_floor(r, row) / b->stats.median;
      cold_min = fmin(cold_min, pct);
      cold_max = fmax(cold_max, pct);
      cold_n++;
      cold_ok += pct >= 0.85;
      const bench_cell *bare = &row->cell[BENCH_IMPL_BARE];
      if (timed(bare)) {
        double bare_pct = bench_row_floor(r, row) / bare->stats.median;
        double vs_bare = bare->stats.median / b->stats.median;
        bare_min = fmin(bare_min, bare_pct);
        bare_max = fmax(bare_max, bare_pct);
        vs_bare_min = fmin(vs_bare_min, vs_bare);
        vs_bare_max = fmax(vs_bare_max, vs_bare);
        bare_n++;
        bare_ok += bare_pct >= 0.85;
      }
    }
    int best = best_peer(row);
    if (best < 0) continue;
    double speedup = row->cell[best].stats.median / b->stats.median;
    compared++;
    slower += speedup < 1.0;
    geomean_acc(&log_all, &n_all, speedup);
    geomean_acc(&log_t[row->thread_index], &n_t[row->thread_index], speedup);
    if (!s->cold) {
      small_min = fmin(small_min, speedup);
      small_max = fmax(small_max, speedup);
      small_n++;
    }
  }
  fprintf(out, "\nTargets (issue 5):\n");
  fprintf(out, "  no case slower than the best peer: %d of %d slower -> %s\n",
          slower, compared, compared && !slower ? "MET" : "NOT MET");
  double gm = n_all ? exp(log_all / n_all) : NAN;
  fprintf(out, "  geomean speed-up over the best peer >= 1.5x: %.2fx (", gm);
  for (int t = 0; t < r->thread_count; t++)
    fprintf(out, "%s%d thread%s %.2fx", t ? ", " : "", r->threads[t],
            r->threads[t] == 1 ? "" : "s",
            n_t[t] ? exp(log_t[t] / n_t[t]) : NAN);
  fprintf(out, ") -> %s\n", gm >= 1.5 ? "MET" : "NOT MET");
  if (cold_n)
    fprintf(out, "  large shapes, cold caches, >= 85%% of the floor: bnorm at "
            "%.0f%%..%.0f%%, %d of %d cases >= 85%% -> %s\n",
            100 * cold_min, 100 * cold_max, cold_ok, cold_n,
            cold_ok == cold_n ? "MET" : "NOT MET");
  if (bare_n)
    fprintf(out, "    the bare loops of the same cases reach %.0f%%..%.0f%% "
            "of the floor (%d of %d >= 85%%); bnorm runs at %.0f%%..%.0f%% "
            "of their speed\n", 100 * bare_min, 100 * bare_max, bare_ok,
            bare_n, 100 * vs_bare_min, 100 * vs_bare_max);
  if (small_n)
    fprintf(out, "  small shape (warm) >= 3x the best peer: %.2fx..%.2fx -> "
            "%s\n", small_min, small_max, small_min >= 3 ? "MET" : "NOT MET");
  int noisy = 0;
  for (size_t i = 0; i < r->row_count; i++)
    noisy += r->rows[i].others > BENCH_BUSY_LIMIT;
  if (noisy)
    fprintf(out, "  %d of %zu rows (marked !) were timed while other "
            "processes kept > %.2f CPUs busy: their times, the 2-thread ones "
            "above all, are disturbed\n", noisy, r->row_count,
            BENCH_BUSY_LIMIT);
  fprintf(out, "  outputs: ");
  if (mismatches || errors)
    fprintf(out, "%d peer result(s) differ from bnorm, %d error(s)\n",
            mismatches, errors);
  else
    fprintf(out, "every peer matches bnorm (worst max|peer-bnorm|/max|bnorm| "
            "= %.1e)\n", worst_err);
}

void bench_report_print(FILE *out, const bench_report *r) {
  fprintf(out, "\nbnorm-bench: bnorm vs oneDNN %s vs PyTorch %s, one run\n",
          r->dnnl_version, r->torch_version[0] ? r->torch_version : "(not run)");
  fprintf(out, "  command: %s\n", r->command);
  fprintf(out, "  machine: %s; LLC %zu MiB\n", r->cpu, r->llc_bytes >> 20);
  fprintf(out, "  run: %.0f s; other processes kept %.2f CPUs busy on average "
          "meanwhile, the hypervisor stole %.2f (both disturb the times)\n",
          r->seconds, r->others_cores, r->steal_cores);
  if (r->round_trip_ns[0] > 0 && r->round_trip_ns[1] > 0)
    fprintf(out, "  core-to-core round trip (a cache line between two "
            "threads): %.0f ns at the start, %.0f ns at the end; it sets the "
            "cost of a fork and join of two threads, which the 2-thread small "
            "rows pay\n", r->round_trip_ns[0], r->round_trip_ns[1]);
  fprintf(out, "  cold: before every timed call the caches are scrubbed by "
          "reading a %zu MiB buffer (%.0fx LLC); warm: the operands stay "
          "cached, calls back to back\n",
          r->scrub_bytes >> 20, (double)r->scrub_bytes / (double)r->llc_bytes);
  fprintf(out, "  pages: %s; at most %zu MiB of bnorm-bench's memory was on "
          "huge pages\n",
          r->huge_pages
              ? "2 MiB (--huge-pages) for bnorm's, oneDNN's and the bare "
                "loops' tensors, STREAM's arrays and PyTorch's inputs; "
                "PyTorch's outputs are on the pages its allocator gets"
              : "what the system gives every implementation (no madvise; "
                "PyTorch's inputs too)",
          r->huge_page_bytes >> 20);
  fprintf(out, "  times: median of %d repetitions (warm: a repetition "
          "repeats the call to last >= %.1f ms), taken in %d rounds; in each "
          "round every implementation runs %d untimed warm-up repetitions "
          "and then its timed ones, after a %.0f ms pause\n",
          r->timing.reps, r->timing.min_rep_s * 1e3, BENCH_ROUNDS,
          r->timing.warmup, r->timing.settle_s * 1e3);
  if (!bench_bnorm_has_threads())
    fprintf(out, "  bnorm has no bnorm_set_num_threads yet: it runs on 1 "
            "thread in every row (thr is the peers' thread count)\n");
  print_bandwidth(out, r);

  fprintf(out, "\nfloor = STREAM time for the traffic: infer 1R+1W (copy), "
          "train 2R+1W (read + copy), bwd 4R+1W (2 reads + triad),\n"
          "copy and triad at the faster of regular and NT stores. GB/s counts "
          "those bytes; %%fl = floor / median;\nbare = the same traffic in "
          "plain loops on the case's own tensors, timed like the others "
          "(bare.c), and its %%fl;\nvs best = best peer's median "
          "/ bnorm's median; spr = (max-min)/median;\nbusy = CPUs other "
          "processes kept busy while the row was timed (! above %.2f).\n\n",
          BENCH_BUSY_LIMIT);
  fprintf(out, "%-18s %-5s %3s | %9s %4s %9s | %9s %4s %9s %4s | %6s %4s | "
          "%9s %4s | %-11s | %-8s | %s\n", "case", "pass", "thr", "bnorm",
          "spr", "+pend", "oneDNN", "spr", "torch", "spr", "GB/s", "%fl",
          "bare", "%fl", "peer %fl", "vs best", "busy");
  for (size_t i = 0; i < r->row_count; i++) {
    const bench_row *row = &r->rows[i];
    const bench_shape *s = &r->shapes[row->shape_index];
    char b[48], p[48], d[48], t[48], best_text[32] = "-", speed[32] = "-",
         gbps[16] = "-", pct[16] = "-", bare[48], bare_pct[16] = "-";
    fmt_cell(b, sizeof b, &row->cell[BENCH_IMPL_BNORM], true);
    fmt_cell(p, sizeof p, &row->cell[BENCH_IMPL_BNORM_PENDING], false);
    fmt_cell(d, sizeof d, &row->cell[BENCH_IMPL_DNNL], true);
    fmt_cell(t, sizeof t, &row->cell[BENCH_IMPL_TORCH], true);
    fmt_cell(bare, sizeof bare, &row->cell[BENCH_IMPL_BARE], false);
    double floor_s = bench_row_floor(r, row);
    if (s->cold && timed(&row->cell[BENCH_IMPL_BARE]))
      snprintf(bare_pct, sizeof bare_pct, "%.0f",
               100 * floor_s / row->cell[BENCH_IMPL_BARE].stats.median);
    const bench_cell *bc = &row->cell[BENCH_IMPL_BNORM];
    /* The floor is a DRAM one: warm rows have none. */
    if (timed(bc)) {
      snprintf(gbps, sizeof gbps, "%.1f",
               bench_pass_bytes(row->pass, s->total * 4) / bc->stats.median *
                   1e-9);
      if (s->cold)
        snprintf(pct, sizeof pct, "%.0f", 100 * floor_s / bc->stats.median);
    }
    int best = best_peer(row);
    if (best >= 0) {
      const bench_cell *pc = &row->cell[best];
      if (s->cold)
        snprintf(best_text, sizeof best_text, "%-6s %3.0f%%",
                 bench_impl_name((bench_impl)best),
                 100 * floor_s / pc->stats.median);
      else
        snprintf(best_text, sizeof best_text, "%-6s    -",
                 bench_impl_name((bench_impl)best));
      if (timed(bc))
        snprintf(speed, sizeof speed, "%.2fx",
                 pc->stats.median / bc->stats.median);
    }
    double busy = row->others;
    fprintf(out, "%-18s %-5s %3d | %s %s | %s %s | %6s %4s | %s %4s | %-11s "
            "| %-8s | %.1f%s\n", s->name, bench_pass_name(row->pass),
            r->threads[row->thread_index], b, p, d, t, gbps, pct, bare,
            bare_pct, best_text, speed, busy,
            busy > BENCH_BUSY_LIMIT ? " !" : "");
  }
  print_summary(out, r);
}

static void csv_stream(FILE *f, const bench_bandwidth *bw, const char *when) {
  for (int k = 0; k < BENCH_STREAM_COUNT; k++)
    fprintf(f, "stream,,,%zu,,%s,%d,stream-%s,%d,ok,,,,,,,,%.3f,,,,,%.3f,%.3f\n",
            bw->array_bytes, bench_stream_name((bench_stream_kind)k),
            bw->threads, when, bw->threads, bw->gbps[k], bw->gbps_min[k],
            bw->gbps_max[k]);
}

int bench_report_csv(const char *path, const bench_report *r) {
  FILE *f = fopen(path, "w");
  if (!f) return -1;
  fprintf(f, "kind,shape,layout,dims,cache,pass,threads,impl,impl_threads,"
          "status,max_rel_err,reps,calls_per_rep,median_s,min_s,max_s,bytes,"
          "gbps,floor_s,floor_pct,best_peer,speedup_vs_best_peer,gbps_min,"
          "gbps_max\n");
  fprintf(f, "pages,,,,,,,%s,,ok,,,,,,,,,,,,,,\n",
          r->huge_pages ? "2MiB" : "system");
  for (int k = 0; k < 2; k++)
    fprintf(f, "round-trip,,,,,,2,%s,2,ok,,,,%.12f,,,,,,,,,,\n",
            k ? "end" : "start", r->round_trip_ns[k] * 1e-9);
  for (int t = 0; t < r->thread_count; t++) {
    csv_stream(f, &r->bw_before[t], "start");
    csv_stream(f, &r->bw_after[t], "end");
  }
  for (size_t i = 0; i < r->row_count; i++) {
    const bench_row *row = &r->rows[i];
    const bench_shape *s = &r->shapes[row->shape_index];
    const char *dims = strchr(s->name, ' ') + 1;
    double bytes = bench_pass_bytes(row->pass, s->total * 4);
    double floor_s = bench_row_floor(r, row);
    int best = best_peer(row);
    for (int k = 0; k < BENCH_IMPL_COUNT; k++) {
      const bench_cell *c = &row->cell[k];
      if (!c->present) continue;
      fprintf(f, "case,%s,%s,%s,%s,%s,%d,%s,%d,%s,", s->name, s->layout, dims,
              s->cold ? "cold" : "warm", bench_pass_name(row->pass),
              r->threads[row->thread_index], bench_impl_name((bench_impl)k),
              c->threads, c->status);
      if (k >= BENCH_IMPL_DNNL && k <= BENCH_IMPL_TORCH)
        fprintf(f, "%.3g", c->err);
      if (!timed(c)) {
        fprintf(f, ",,,,,,%.0f,,,,,,,\n", bytes);
        continue;
      }
      const bench_stats *st = &c->stats;
      fprintf(f, ",%d,%d,%.9f,%.9f,%.9f,%.0f,%.3f,", st->reps,
              st->calls_per_rep, st->median, st->min, st->max, bytes,
              bytes / st->median * 1e-9);
      if (s->cold) /* the floor is a DRAM one: warm rows have none */
        fprintf(f, "%.9f,%.1f,", floor_s, 100 * floor_s / st->median);
      else
        fprintf(f, ",,");
      if (best >= 0) {
        fprintf(f, "%s", bench_impl_name((bench_impl)best));
        if (k < BENCH_IMPL_DNNL)
          fprintf(f, ",%.4f", row->cell[best].stats.median / st->median);
        else
          fprintf(f, ",");
      } else
        fprintf(f, ",");
      fprintf(f, ",%.3f,%.3f\n", bytes / st->max * 1e-9,
              bytes / st->min * 1e-9);
    }
  }
  return fclose(f) == 0 ? 0 : -1;
}
