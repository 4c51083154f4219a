#!/bin/bash
# /sbin/ftsync-wl-init: PID 1 of a workload guest (no systemd, no getty).
# Mounts the kernel file systems, brings up loopback, then runs the
# workload's functions from /ftsync/workload.sh:
#   wl_start   start the server(s)
#   wl_load    drive the load (bounded by WL_SECONDS of guest time)
# and prints markers on the console (ttyS0) that the evaluator waits for:
#   FTSYNC-WL-LOAD-START       the load begins (the evaluator starts ticking)
#   FTSYNC-WL-LOAD-END RC      the load ended with status RC
#   FTSYNC-WL-FAIL WHY         something failed before the load
# then powers off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8 TERM=dumb
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /run /tmp
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
mount -o remount,rw,noatime /
chmod 1777 /tmp
hostname ftsync-wl
ip link set lo up
mkdir -p /run/lock

fail() { echo "FTSYNC-WL-FAIL $*"; sync; poweroff -f; sleep 3600; }
# shellcheck disable=SC1091
. /ftsync/workload.sh || fail "cannot read /ftsync/workload.sh"
# Where the kernel keeps jiffies_64 (booted with nokaslr: physical address =
# this - 0xffffffff80000000): the evaluator reads the guest's own clock there.
echo "FTSYNC-WL-JIFFIES $(awk '$3 == "jiffies_64" {print $1; exit}' /proc/kallsyms)"
echo "ftsync-wl-init: kernel up at $(cut -d' ' -f1 /proc/uptime) s, starting the server"
wl_start > /tmp/wl-start.log 2>&1 || { tail -20 /tmp/wl-start.log; fail "wl_start failed"; }
echo "ftsync-wl-init: server up at $(cut -d' ' -f1 /proc/uptime) s"
sync
echo "FTSYNC-WL-LOAD-START"
t0=$(cut -d' ' -f1 /proc/uptime)
wl_load > /tmp/wl-load.log 2>&1
rc=$?
t1=$(cut -d' ' -f1 /proc/uptime)
tail -n "${WL_LOG_LINES:-15}" /tmp/wl-load.log | sed 's/^/wl-load: /'
echo "ftsync-wl-init: load ran from $t0 to $t1 s of guest uptime"
echo "FTSYNC-WL-LOAD-END $rc"
sync
poweroff -f
sleep 3600
