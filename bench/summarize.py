#!/usr/bin/env python3
"""bench/summarize.py: the median over several bnorm-bench runs.

    python3 bench/summarize.py bench/results/bench-A.csv bench-B.csv ...

Each run compares bnorm with its peers within that run (same minutes, same
machine state). This script takes, per case (shape, pass, threads), the
median over the runs of bnorm's median time, of each peer's, of the
speed-up over the best peer and of the fraction of the bandwidth floor
(bnorm's, and the bare loop's: the same traffic in plain loops on the
case's own tensors), and checks issue 5's targets on those medians. The per-run speed-ups are
printed too, so the spread between runs stays visible. Standard library
only.
"""
import csv
import math
import statistics
import sys


def load(path):
    """The run's ok cases by (shape, pass, threads), and its pages ("system"
    or "2MiB"; runs from before --huge-pages have no such row)."""
    rows, pages = {}, "system"
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            if r["kind"] == "pages":
                pages = r["impl"]
            if r["kind"] != "case" or r["status"] != "ok":
                continue
            key = (r["shape"], r["pass"], int(r["threads"]))
            rows.setdefault(key, {})[r["impl"]] = r
    return rows, pages


def num(text):
    return float(text) if text not in ("", None) else math.nan


def fmt_time(seconds):
    if math.isnan(seconds):
        return "-"
    return "%.2fms" % (seconds * 1e3) if seconds >= 1e-3 else \
        "%.1fus" % (seconds * 1e6)


def main(paths):
    loaded = [load(p) for p in paths]
    runs = [rows for rows, _ in loaded]
    pages = sorted({p for _, p in loaded})
    if len(pages) > 1:
        sys.exit("summarize.py: the runs' pages differ (%s); summarize "
                 "runs with --huge-pages apart" % ", ".join(pages))
    keys = [k for k in runs[0] if all(k in r for r in runs)]
    print("bnorm-bench summary: median over %d runs (%s); pages: %s" %
          (len(runs), ", ".join(paths), pages[0]))
    print("%-18s %-5s %3s | %9s %9s %9s | %5s | %9s %5s | %-7s %-22s" %
          ("case", "pass", "thr", "bnorm", "oneDNN", "torch", "%fl", "bare",
           "%fl", "vs best", "per run"))
    speedups, by_threads, floors, small = [], {}, [], []
    bare_floors, vs_bare = [], []
    slower = 0
    for key in keys:
        shape, pass_, threads = key
        med = {}
        for impl in ("bnorm", "oneDNN", "torch", "bare"):
            med[impl] = statistics.median(
                num(r[key][impl]["median_s"]) if impl in r[key] else math.nan
                for r in runs)
        per_run = [num(r[key]["bnorm"]["speedup_vs_best_peer"]) for r in runs]
        speedup = statistics.median(per_run)
        floor_pct = [num(r[key]["bnorm"]["floor_pct"]) for r in runs]
        fl = statistics.median(floor_pct) if not any(
            math.isnan(v) for v in floor_pct) else math.nan
        bare_pct = [num(r[key]["bare"]["floor_pct"]) if "bare" in r[key]
                    else math.nan for r in runs]
        bare_fl = statistics.median(bare_pct) if not any(
            math.isnan(v) for v in bare_pct) else math.nan
        if not math.isnan(bare_fl):
            bare_floors.append(bare_fl)
            vs_bare.append(med["bare"] / med["bnorm"])
        speedups.append(speedup)
        by_threads.setdefault(threads, []).append(speedup)
        if speedup < 1.0:
            slower += 1
        if math.isnan(fl):
            small.append(speedup)
        else:
            floors.append(fl)
        print("%-18s %-5s %3d | %9s %9s %9s | %5s | %9s %5s | %5.2fx   %s" %
              (shape, pass_, threads, fmt_time(med["bnorm"]),
               fmt_time(med["oneDNN"]), fmt_time(med["torch"]),
               "-" if math.isnan(fl) else "%.0f" % fl,
               fmt_time(med["bare"]),
               "-" if math.isnan(bare_fl) else "%.0f" % bare_fl, speedup,
               " ".join("%.2f" % v for v in per_run)))

    def geomean(values):
        return math.exp(sum(math.log(v) for v in values) / len(values))

    print()
    print("Targets (issue 5), on the medians over runs:")
    print("  no case slower than the best peer: %d of %d slower -> %s" %
          (slower, len(keys), "met" if slower == 0 else "NOT MET"))
    g = geomean(speedups)
    print("  geomean speed-up over the best peer >= 1.5x: %.2fx (%s) -> %s" %
          (g, ", ".join("%d thread%s %.2fx" % (t, "" if t == 1 else "s",
                                                geomean(v))
                        for t, v in sorted(by_threads.items())),
           "met" if g >= 1.5 else "NOT MET"))
    if floors:
        print("  large shapes >= 85%% of the floor: %.0f%%..%.0f%%, %d of %d "
              "cases -> %s" % (min(floors), max(floors),
                               sum(f >= 85 for f in floors), len(floors),
                               "met" if min(floors) >= 85 else "NOT MET"))
    if bare_floors:
        print("    the bare loops of the same cases reach %.0f%%..%.0f%% of "
              "the floor (%d of %d >= 85%%); bnorm runs at %.0f%%..%.0f%% of "
              "their speed" % (min(bare_floors), max(bare_floors),
                               sum(f >= 85 for f in bare_floors),
                               len(bare_floors), 100 * min(vs_bare),
                               100 * max(vs_bare)))
    if small:
        print("  small shape >= 3x the best peer: %.2fx..%.2fx -> %s" %
              (min(small), max(small),
               "met" if min(small) >= 3 else "NOT MET"))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
