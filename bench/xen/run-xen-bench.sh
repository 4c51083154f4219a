#!/bin/bash
# Host side of ftsync's Xen comparison benchmark (make bench-xen): boots the
# nested Xen of test/integration/xen (same cache), runs bench-in-dom0.sh
# and writes the table and OUT_JSON (ratios ftsync / xl remus, same run).
# Usage: run-xen-bench.sh [CACHE_DIR [BUILD_DIR [OUT_JSON]]]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
xt=$here/../../test/integration/xen
cache=${1:-${XEN_CACHE:-/var/cache/ftsync/xen}}
build=${2:-build}
out=${3:-bench/results/xen.json}
[ -x "$build/bin/xen_bench" ] || { echo "run-xen-bench: build $build/bin/xen_bench first (make bench-xen)" >&2; exit 127; }
"$xt/build-dom0.sh" "$cache"
inject=$(mktemp -d /tmp/ftsync-xen-bench.XXXXXX)
trap 'rm -rf "$inject"' EXIT
mkdir -p "$inject/bin" "$inject/lib"
install -m 755 "$here/bench-in-dom0.sh" "$inject/run-in-dom0.sh"
install -m 644 "$xt/domu-probe.cfg" "$inject/domu-probe.cfg"
strip --strip-debug -o "$inject/bin/xen_bench" "$build/bin/xen_bench"
"$xt/mk-domu-initrd.sh" "$cache/rootfs/bin/busybox" "$inject/domu-initrd.gz"
log=$(mktemp /tmp/ftsync-xen-bench-out.XXXXXX)
rc=0
"$xt/boot-xen.sh" "$cache" "$inject" | tee "$log" || rc=$?
grep '^XENBENCH ' "$log" | sed 's/^XENBENCH //' >"$log.json" || true
python3 - "$log.json" "$out" "$rc" <<'PY'
import json, sys, socket, datetime, os
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {r["system"]: r for r in rows}
pause, coop, remus = by.get("ftsync-pause"), by.get("ftsync-coop"), by.get("sampler")
def ratio(a, b):
    return round(a / b, 4) if a is not None and b else None
res = {"date": datetime.datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%SZ"), "hostname": socket.gethostname(),
       "nproc": os.cpu_count(), "status": int(sys.argv[3]),
       "xen_paging": "hap" if os.environ.get("XEN_HAP", "0") == "1" else "shadow (hap=0)", "runs": rows,
       "note": "nested Xen 4.17 under QEMU TCG: compare ratios, not milliseconds. stop = interval in "
               "which the domU could not run (sampled every ~1 ms from dom0); bytes per epoch: ftsync's "
               "stream (EpochStats.bytes_wire) vs xl remus's stream counted in its ssh pipe."}
res["remus_complete"] = bool(remus and remus.get("stops", 0) >= 3 and remus.get("bytes_per_checkpoint"))
if not res["remus_complete"]:
    res["note"] += (" INCOMPLETE: xl remus made fewer than 3 checkpoints in the sampling window "
                    "(its initial live migration was still running); its figures rest on too few samples.")
if remus:
    res["ratios"] = {}
    for name, r in (("ftsync-pause", pause), ("ftsync-coop", coop)):
        if not r:
            continue
        res["ratios"][name + "/remus"] = {
            "stop_ms_median": ratio(r["stop_ms_median"], remus["stop_ms_median"]),
            "bytes_per_epoch": ratio(r["bytes_per_epoch_median"], remus.get("bytes_per_checkpoint")),
        }
os.makedirs(os.path.dirname(sys.argv[2]) or ".", exist_ok=True)
json.dump(res, open(sys.argv[2], "w"), indent=2)
print("\n%-14s %10s %10s %12s %14s" % ("system", "stops", "stop ms", "engine ms", "bytes/epoch"))
for name, r in (("ftsync-pause", pause), ("ftsync-coop", coop), ("xl remus", remus)):
    if not r:
        print("%-14s (no result)" % name); continue
    print("%-14s %10d %10.2f %12s %14s" % (name, r["stops"], r["stop_ms_median"],
          "%.2f" % r["engine_paused_ms_median"] if "engine_paused_ms_median" in r else "-",
          "%.0f" % (r.get("bytes_per_epoch_median") or r.get("bytes_per_checkpoint") or 0)))
for k, v in res.get("ratios", {}).items():
    print("%-22s stop ratio %s, bytes ratio %s" % (k, v["stop_ms_median"], v["bytes_per_epoch"]))
print("written: " + sys.argv[2])
PY
rm -f "$log" "$log.json"
exit "$rc"
