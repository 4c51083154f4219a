#!/bin/sh
# In-dom0 replication test of ftsync's nested-Xen harness: creates the PVH
# probe domU (domu-probe.cfg), waits for DOMU-UP, runs
# /inject/bin/xen_replication_test on it (XenDomain + Checkpointer +
# Receiver over MemoryPipe, 10 epochs at 200 ms, replica compared frame by
# frame with the paused domU), destroys the domU.
# Env: FTSYNC_XEN_EPOCHS, FTSYNC_XEN_INTERVAL_MS, FTSYNC_XEN_MAX_FRAMES
# (default 0x9000 = 144 MiB: a PVH guest's gfn span reaches ~0xff000, 4 GiB,
# more than dom0's RAM can hold as a replica; frames above are then not
# replicated nor compared).
# Exit status = number of failed checks.
cd /inject || exit 126
bin=/inject/bin/xen_replication_test
[ -x "$bin" ] || { echo "skip xen-replication (xen_replication_test not injected)"; exit 0; }
name=ftsync-probe
log=/var/log/xen/console/guest-$name.log
xl destroy $name >/dev/null 2>&1
out=$(xl create domu-probe.cfg 2>&1) || { echo "FAIL xen-replication: xl create: $out"; echo "xen-replication: 0 passed, 1 failed"; exit 1; }
domid=$(xl domid $name)
i=0
while [ $i -lt 120 ] && ! grep -q DOMU-UP "$log" 2>/dev/null; do sleep 1; i=$((i + 1)); done
grep -q DOMU-UP "$log" 2>/dev/null || { echo "FAIL xen-replication: domU $domid never printed DOMU-UP"; tail -5 "$log"; echo "xen-replication: 0 passed, 1 failed"; xl destroy $name; exit 1; }
echo "     xen-replication: domU $domid up after $i s"
"$bin" "$domid" "${FTSYNC_XEN_EPOCHS:-10}" "${FTSYNC_XEN_INTERVAL_MS:-200}" /tmp/ftsync-xen-replica "${FTSYNC_XEN_MAX_FRAMES:-0x9000}"
rc=$?
state=$(xl list $name 2>/dev/null | awk 'NR==2 {print $5}')
echo "     domU state after the test: $state; console tail: $(tail -1 "$log" | tr -d '\r')"
xl destroy $name >/dev/null 2>&1
rm -rf /tmp/ftsync-xen-replica
exit $rc
