#!/bin/bash
# Boots Xen 4.17 + a Debian dom0 under qemu-system-x86_64 (TCG) for ftsync's
# nested-Xen test, runs INJECT_DIR/run-in-dom0.sh inside dom0 and exits with
# its status (from the "XEN-TEST-EXIT <n>" line /init prints on the console).
# Usage: boot-xen.sh CACHE_DIR INJECT_DIR
# Env: XEN_TEST_TIMEOUT (whole boot, seconds, default 1500),
#      XEN_TEST_LOG (serial console log, default CACHE_DIR/console.log),
#      XEN_CMDLINE_EXTRA (appended to Xen's command line, e.g.
#      "loglvl=all guest_loglvl=all" when studying a guest crash).
#      XEN_TCG_THREAD (QEMU's -accel tcg,thread=: multi, the default, or
#      single; README, "Reliability").
#      XEN_HAP (1: guests use hardware-assisted paging, i.e. the nested
#      page tables QEMU's TCG emulates; 0, the default: Xen boots with
#      hap=0 and runs every HVM/PVH guest on shadow page tables, because
#      under TCG's emulated nested paging guests triple-fault now and then;
#      README, "Reliability").
# Exit: the script's status; 124 on timeout; 125 when dom0 never got ready
# or /init failed; 126/127 on harness errors. No network: QEMU gets no NIC.
# CPU flags: -smap (dom0 crashes in create_bounce_frame with SMAP) and
# -rdtscp (a PVH guest hangs in SVM insn-length emulation); xsave=0 keeps
# TCG's vector state out of Xen's save stream and guests.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${1:?usage: boot-xen.sh CACHE_DIR INJECT_DIR}
inject=${2:?usage: boot-xen.sh CACHE_DIR INJECT_DIR}
limit=${XEN_TEST_TIMEOUT:-1500}
log=${XEN_TEST_LOG:-$cache/console.log}
[ -x "$inject/run-in-dom0.sh" ] || { echo "boot-xen: $inject/run-in-dom0.sh missing or not executable" >&2; exit 126; }
initrd=$(mktemp /tmp/ftsync-dom0-initrd.XXXXXX)
"$here/build-dom0.sh" "$cache" "$inject" "$initrd" || { rm -f "$initrd"; echo "boot-xen: build-dom0.sh failed" >&2; exit 127; }
command -v qemu-system-x86_64 >/dev/null || { echo "boot-xen: qemu-system-x86_64 not installed" >&2; exit 127; }

qpid=
cleanup() {
  [ -n "$qpid" ] && kill "$qpid" 2>/dev/null && { sleep 1; kill -9 "$qpid" 2>/dev/null; }
  wait 2>/dev/null
  rm -f "$initrd"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start=$(date +%s.%N)
: >"$log"
# The script's own timeout is slightly shorter than ours, so a hung test
# still reports through XEN-TEST-EXIT.
inner=$(( limit > 120 ? limit - 90 : limit ))
xen_args="console=com1 com1=115200,8n1 dom0_mem=1024M,max:1024M dom0_max_vcpus=2 xsave=0 noreboot"
case ${XEN_HAP:-0} in
  0) xen_args="$xen_args hap=0" ;;
  1) ;;
  *) echo "boot-xen: XEN_HAP must be 0 or 1, not '$XEN_HAP'" >&2; exit 126 ;;
esac
qemu-system-x86_64 -accel tcg,thread=${XEN_TCG_THREAD:-multi} -smp 2 -m 3072 -cpu max,-smap,-rdtscp \
  -display none -no-reboot -nodefaults -serial stdio -net none \
  -kernel "$cache/xen-4.17-amd64" \
  -append "$xen_args${XEN_CMDLINE_EXTRA:+ $XEN_CMDLINE_EXTRA}" \
  -initrd "$cache/dom0-vmlinuz console=hvc0 earlyprintk=xen ftsync.timeout=$inner,$initrd" \
  </dev/null >"$log" 2>&1 &
qpid=$!
echo "boot-xen: qemu pid $qpid, console in $log" >&2

ready=
deadline=$(( $(date +%s) + limit ))
while kill -0 "$qpid" 2>/dev/null; do
  if [ -z "$ready" ] && grep -aq '^XEN-DOM0-READY' "$log"; then
    ready=$(awk -v s="$start" -v n="$(date +%s.%N)" 'BEGIN {printf "%.1f", n - s}')
    echo "boot-xen: dom0 ready after ${ready} s" >&2
  fi
  grep -aq '^XEN-TEST-EXIT' "$log" && break
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "boot-xen: timed out after $limit s; last console lines:" >&2
    tail -30 "$log" | tr -d '\r' >&2
    exit 124
  fi
  sleep 0.2
done
# Give poweroff a moment, then stop QEMU regardless.
for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$qpid" 2>/dev/null || break; sleep 1; done
[ -z "$ready" ] && grep -aq '^XEN-DOM0-READY' "$log" && ready="<$(awk -v s="$start" -v n="$(date +%s.%N)" 'BEGIN {printf "%.1f", n - s}')"
total=$(awk -v s="$start" -v n="$(date +%s.%N)" 'BEGIN {printf "%.1f", n - s}')
rc=$(tr -d '\r' <"$log" | sed -n 's/^XEN-TEST-EXIT \([0-9]*\).*/\1/p' | tail -1)
# The test's output: everything between dom0 ready and the exit marker.
tr -d '\r' <"$log" | sed -n '/^XEN-DOM0-READY/,/^XEN-TEST-EXIT/p'
if [ -z "$rc" ]; then
  echo "boot-xen: no XEN-TEST-EXIT marker (qemu ended after $total s); last console lines:" >&2
  tail -40 "$log" | tr -d '\r' >&2
  exit 125
fi
echo "boot-xen: test exit $rc; dom0 ready ${ready:-?} s, total ${total} s" >&2
exit "$rc"
