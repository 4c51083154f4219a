#!/bin/bash
# The QEMU benchmark (bench/README.md, "QEMU benchmark"): the pause per
# epoch in ftsync's mode against the emit-while-paused baseline
# (BUILD/bin/ftsync_qemu_bench), then guest throughput unprotected and
# protected by ftd (bench/qemu/throughput.sh). Prints both tables and writes
# both sections to JSON_OUT (default bench/results/qemu.json).
#
# Usage: bench/qemu/run.sh BUILD_DIR [JSON_OUT]
# Environment: BENCH_PAUSE_ARGS (extra ftsync_qemu_bench arguments, e.g.
# "--epochs 20"), and throughput.sh's BENCH_CONNECTIONS, BENCH_SECONDS,
# BENCH_WARMUP, BENCH_INTERVALS.
set -u
build=$(cd "${1:-build}" && pwd) || exit 1
here=$(cd "$(dirname "$0")" && pwd)
out=${2:-$here/../results/qemu.json}
tmp=$(mktemp -d /dev/shm/ftsync-bench-qemu-run.XXXXXX) || exit 1
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT
# Both children run in the foreground: Ctrl-C reaches them too, and each
# removes what it started (QEMU, ftds, namespaces) before this script exits.
trap 'echo "run.sh: interrupted" >&2; exit 130' INT TERM

bench=$build/bin/ftsync_qemu_bench
[ -x "$bench" ] || { echo "run.sh: missing $bench (make bench-qemu builds it)" >&2; exit 1; }
t0=$SECONDS

# shellcheck disable=SC2086
"$bench" --build "$build" --json "$tmp/pause.json" ${BENCH_PAUSE_ARGS:-} ||
  { echo "run.sh: the pause benchmark failed" >&2; exit 1; }
"$here/throughput.sh" "$build" "$tmp/throughput.json" ||
  { echo "run.sh: the throughput benchmark failed" >&2; exit 1; }

python3 - "$tmp/pause.json" "$tmp/throughput.json" "$out" "$((SECONDS - t0))" <<'PY'
import json, os, platform, socket, sys, time
pause, tput, out, total = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3], int(sys.argv[4])
for d in (pause, tput):
    for k in ("benchmark", "date", "nproc", "kernel"):
        d.pop(k, None)
doc = {
    "benchmark": "ftsync QEMU",
    "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    "hostname": socket.gethostname(),
    "nproc": os.cpu_count(),
    "kernel": " ".join(platform.uname()[i] for i in (0, 2, 4)),
    "qemu": os.popen("/usr/bin/qemu-system-x86_64 --version").readline().strip(),
    "total_seconds": total,
    "sections": {"pause": pause, "throughput": tput},
}
os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
with open(out, "w") as f:
    json.dump(doc, f, indent=2)
    f.write("\n")
print("\ntotal %d s\nwrote %s" % (total, os.path.relpath(out)))
PY
