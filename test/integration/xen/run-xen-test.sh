#!/bin/bash
# Entry point of ftsync's nested-Xen test (make check-xen): builds or reuses
# the cached dom0 image, assembles the files injected into dom0 (test script,
# PVH domU config and initramfs; later ftsync's binaries), boots Xen under
# QEMU TCG and returns the in-dom0 test's status.
# Usage: run-xen-test.sh [CACHE_DIR [BUILD_DIR]]
#   CACHE_DIR default /var/cache/ftsync/xen; BUILD_DIR (default build) is
#   where ftsync was built: its ftd, tools and libftsync go to /inject/bin and
#   /inject/lib in dom0 when present.
# Env: XEN_TEST_TIMEOUT, XEN_TEST_LOG (see boot-xen.sh); XEN_TEST_KEEP=1 keeps
# the inject directory; XEN_TEST_SUITES names the in-dom0 suites to run, in
# order (default: probe replication xl-ftsync hvm-replication
# hvm-xl-ftsync; hvm-probe, a lower-level look at the HVM guest and its
# QMP commands, runs when named; see README).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${1:-${XEN_CACHE:-/var/cache/ftsync/xen}}
build=${2:-build}
[ "$(id -u)" = 0 ] || { echo "run-xen-test: needs root (debootstrap, chroot)" >&2; exit 127; }
t0=$(date +%s)
# Host tools, from Debian, when missing.
need=
command -v debootstrap >/dev/null || need="$need debootstrap"
command -v qemu-system-x86_64 >/dev/null || need="$need qemu-system-x86"
command -v cpio >/dev/null || need="$need cpio"
command -v strip >/dev/null || need="$need binutils"
if [ -n "$need" ]; then
  echo "run-xen-test: installing$need" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $need >/dev/null
fi
"$here/build-dom0.sh" "$cache"
inject=$(mktemp -d /tmp/ftsync-xen-inject.XXXXXX)
[ -n "${XEN_TEST_KEEP:-}" ] || trap 'rm -rf "$inject"' EXIT
install -m 755 "$here/probe-in-dom0.sh" "$inject/probe-in-dom0.sh"
install -m 755 "$here/replication-in-dom0.sh" "$inject/replication-in-dom0.sh"
install -m 755 "$here/xl-ftsync-in-dom0.sh" "$inject/xl-ftsync-in-dom0.sh"
install -m 755 "$here/hvm-probe-in-dom0.sh" "$inject/hvm-probe-in-dom0.sh"
# xl has no include: each HVM domU's config is the shared base, then its own.
install -m 644 "$here/domu-hvm-base.cfg" "$inject/domu-hvm-base.cfg"
for c in domu-hvm domu-hvm-replication; do
  cat "$here/domu-hvm-base.cfg" "$here/$c.cfg" >"$inject/$c.cfg"
done
# The in-dom0 entry: the environment probe, the replication test (which
# skips itself when xen_replication_test was not built), then xl-ftsync with
# ftd's Xen guest and network buffer; the HVM guest with the qemu-xen
# device model and its QMP checkpoint commands, and the replication test
# again on an HVM domU (device model state in every checkpoint, failover
# through xl restore with a new qemu-xen), and xl-ftsync again on an HVM
# domU with a vif; status = failed suites.
default_suites="probe replication xl-ftsync hvm-replication hvm-xl-ftsync"
cat >"$inject/run-in-dom0.sh" <<'RUN'
#!/bin/sh
cd /inject || exit 126
suites=$(cat /inject/suites)
suite() {
  case $1 in
    probe) ./probe-in-dom0.sh ;;
    replication) ./replication-in-dom0.sh ;;
    xl-ftsync) ./xl-ftsync-in-dom0.sh ;;
    hvm-probe) ./hvm-probe-in-dom0.sh ;;
    hvm-xl-ftsync) FTSYNC_XL_TYPE=hvm ./xl-ftsync-in-dom0.sh ;;
    hvm-replication)
      echo "     --- the replication test on an HVM domU (domu-hvm-replication.cfg)"
      FTSYNC_XEN_CFG=/inject/domu-hvm-replication.cfg FTSYNC_XEN_BOOT_S=400 ./replication-in-dom0.sh ;;
    *) echo "FAIL run-in-dom0: unknown suite '$1'"; return 1 ;;
  esac
}
# The known nested-TCG failure (README, "Reliability"): a domU can
# triple-fault, while it boots (also one ftsync never touched) or in its
# first seconds of protection. Only then, and once, a failed suite reruns
# on fresh domains, reported as KNOWN-ISSUE with Xen's lines; any other
# failure, or a second triple fault, fails it.
rc=0
for t in $suites; do
  xl dmesg -c >/dev/null  # from here on, Xen's log is this suite's
  suite $t
  st=$?
  tf=$(xl dmesg | grep -c 'Triple fault')
  if [ $st -ne 0 ] && [ "$tf" -gt 0 ]; then
    echo "KNOWN-ISSUE $t: $tf domU triple fault(s) under nested TCG during the suite:"
    xl dmesg | grep 'Triple fault' | sed 's/^/     /'
    echo "KNOWN-ISSUE $t: rerunning the suite once"
    suite $t
    st=$?
  fi
  [ $st -ne 0 ] && rc=$((rc + 1))
done
exit $rc
RUN
echo "${XEN_TEST_SUITES:-$default_suites}" >"$inject/suites"
chmod 755 "$inject/run-in-dom0.sh"
install -m 644 "$here/domu-probe.cfg" "$inject/domu-probe.cfg"
mkdir -p "$inject/bin" "$inject/lib"
# Without debug info: the injected archive is rebuilt on every run.
for f in ftd xl-ftsync ftsync-verify-stream xen_replication_test; do
  if [ -x "$build/bin/$f" ]; then strip --strip-debug -o "$inject/bin/$f" "$build/bin/$f"; fi
done
if [ -e "$build/lib/libftsync.so.0" ]; then
  strip --strip-debug -o "$inject/lib/libftsync.so.0" "$build/lib/libftsync.so.0"
fi
"$here/mk-domu-initrd.sh" "$cache/rootfs/bin/busybox" "$inject/domu-initrd.gz"
rc=0
"$here/boot-xen.sh" "$cache" "$inject" || rc=$?
echo "run-xen-test: status $rc, $(( $(date +%s) - t0 )) s in all" >&2
exit "$rc"
