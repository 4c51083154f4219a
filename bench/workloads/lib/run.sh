#!/bin/bash
# make bench-workloads: for each workload, build (or reuse) its guest image,
# run the evaluator on it, then build the table and plots.
# Usage: run.sh BUILD CACHE WORKLOAD...
# Results: bench/results/workloads/NAME.json (summary), NAME-series.json.gz
# (per-epoch bytes and pauses), NAME-console.txt (the guest's console), and
# bench/results/workloads.{txt,json} + PNG plots (lib/report.py).
set -euo pipefail
build=${1:?usage: run.sh BUILD CACHE WORKLOAD...}
cache=${2:?usage: run.sh BUILD CACHE WORKLOAD...}
shift 2
[ $# -gt 0 ] || { echo "run.sh: no workloads" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
wldir=$(dirname "$here")
res=${FTSYNC_WL_RESULTS:-bench/results}
mkdir -p "$res/workloads"
t0=$(date +%s)
failed=""
for w in "$@"; do
  script=$wldir/$w.sh
  [ -f "$script" ] || { echo "run.sh: no workload $w ($script)" >&2; exit 2; }
  tw=$(date +%s)
  "$here/build-image.sh" "$cache" "$script"
  # The workload's own settings.
  eval "$(bash -c '. "$1"; printf "ram=%q secs=%q desc=%q\n" "${WL_RAM_MB:-512}" "${WL_SECONDS:-60}" "${WL_DESCRIPTION:-}"' _ "$script")"
  echo "run.sh: $w: ${secs} s of load in a ${ram} MiB guest" >&2
  if "$build/bin/ftsync_workload_eval" --workload "$w" --description "$desc" --image-dir "$cache" \
       --build "$build" --ram-mb "$ram" --max-guest-s "$((secs + 10))" ${FTSYNC_WL_EVAL_ARGS:-} \
       --json "$res/workloads/$w.json" --series "$res/workloads/$w-series.json" \
       --serial-copy "$res/workloads/$w-console.txt"; then
    gzip -9nf "$res/workloads/$w-series.json"
  else
    failed="$failed $w"
  fi
  echo "run.sh: $w took $(( $(date +%s) - tw )) s (wall)" >&2
done
/usr/bin/python3 "$here/report.py" "$res"
echo "run.sh: all done in $(( $(date +%s) - t0 )) s (wall)" >&2
[ -z "$failed" ] || { echo "run.sh: failed:$failed" >&2; exit 1; }
