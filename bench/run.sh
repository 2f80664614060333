#!/usr/bin/env bash
# bench/run.sh: the benchmark of issue 5 in one command.
#
# Installs what is missing through apt-get (build tools, libdnnl-dev,
# python3-torch; as root, or with sudo), builds bnorm-bench in ./build-bench
# and runs it --runs times (default 3; the machine is shared and noisy), then
# prints the median over the runs (bench/summarize.py). Other arguments go to
# bnorm-bench (see bench/README.md), e.g.
#   bash bench/run.sh --runs 1 --threads 1 --reps 30
# Each run's table goes to stdout and to bench/results/bench-<time>.txt, its
# CSV to bench/results/bench-<time>.csv, the summary to
# bench/results/summary-<time>.txt. Exit status 1 if a peer disagreed with
# bnorm or something failed.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for tool in cmake make gcc; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ -e /usr/include/stdio.h ] || missing+=(libc6-dev)
[ -e /usr/include/oneapi/dnnl/dnnl.h ] || missing+=(libdnnl-dev)
/usr/bin/python3 -c 'import numpy, torch' >/dev/null 2>&1 || missing+=(python3-torch)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  echo "bench/run.sh: installing ${missing[*]}"
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
fi

cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-bench --target bnorm-bench -j "$(nproc)"

runs=3
args=()
while [ $# -gt 0 ]; do
  if [ "$1" = --runs ] && [ $# -ge 2 ]; then runs=$2; shift 2; continue; fi
  args+=("$1")
  shift
done

first=$(date +%Y%m%d-%H%M%S)
mkdir -p bench/results
csvs=()
for ((run = 1; run <= runs; run++)); do
  stamp=$(date +%Y%m%d-%H%M%S)
  echo "== run $run of $runs"
  # --wait-idle: give other jobs on a shared machine up to 5 minutes to
  # finish (a later --wait-idle 0 among the arguments turns it off).
  ./build-bench/bench/bnorm-bench --csv "bench/results/bench-$stamp.csv" \
    --wait-idle 300 "${args[@]}" | tee "bench/results/bench-$stamp.txt"
  csvs+=("bench/results/bench-$stamp.csv")
  sleep 1  # distinct stamps
done
if [ "$runs" -gt 1 ]; then
  echo
  python3 bench/summarize.py "${csvs[@]}" | tee "bench/results/summary-$first.txt"
fi
