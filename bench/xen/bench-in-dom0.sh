#!/bin/sh
# In-dom0 part of ftsync's Xen comparison benchmark (bench/xen/README.md):
# on one PVH domU (the counter domU of the nested-Xen test), in turn
#   1. ftsync, XenSuspend::kPause        (xen_bench ftsync ... pause)
#   2. ftsync, XenSuspend::kCooperative  (xen_bench ftsync ... coop)
#   3. Xen's own Remus: xl remus -F -n -d -i INTERVAL -s FAKESSH DOMU localhost,
#      FAKESSH dropping the host and counting the stream's bytes
#      (xen_bench count), the domU's stops sampled by xen_bench sample.
# Each prints one "XENBENCH {json}" line; the host side makes the table.
cd /inject || exit 126
epochs=${FTSYNC_BENCH_EPOCHS:-20}
skip_ftsync=${FTSYNC_BENCH_SKIP_FTSYNC:-}
interval=${FTSYNC_BENCH_INTERVAL_MS:-200}
name=ftsync-probe
log=/var/log/xen/console/guest-$name.log
up() {
  xl destroy $name >/dev/null 2>&1
  mkdir -p /var/log/xen/console; : >"$log"
  xl create domu-probe.cfg >/dev/null 2>&1 || { echo "bench: xl create failed"; return 1; }
  domid=$(xl domid $name)
  i=0; while [ $i -lt 180 ] && ! grep -q DOMU-UP "$log"; do sleep 1; i=$((i + 1)); done
  grep -q DOMU-UP "$log" || { echo "bench: domU never up"; return 1; }
  sleep 3
}
rc=0
if [ -z "$skip_ftsync" ]; then
  up || exit 1
  xen_bench ftsync "$domid" pause "$epochs" "$interval" /tmp/ftsync-bench || rc=1
  xen_bench ftsync "$domid" coop "$epochs" "$interval" /tmp/ftsync-bench || rc=1
  rm -rf /tmp/ftsync-bench
fi
# Remus on a fresh domU (same config), for as long as ftsync's runs took.
up || exit 1
cat >/tmp/fakessh <<'SSH'
#!/bin/sh
# xl remus runs "FAKESSH HOST xl migrate-receive ...": drop HOST, count bytes.
shift
/inject/bin/xen_bench count /tmp/remus-bytes.log | "$@"
SSH
chmod 755 /tmp/fakessh
xl remus -F -n -d -i "$interval" -s /tmp/fakessh $name localhost >/tmp/remus.out 2>&1 &
rpid=$!
# Its initial live migration walks the whole 0xff000-gfn span (1044480
# frames) and took most of 120 s nested on a loaded host,
# then it checkpoints every interval + work.
secs=${FTSYNC_BENCH_REMUS_SECONDS:-240}
xen_bench sample "$domid" "$secs" /tmp/remus-bytes.log || rc=1
kill $rpid 2>/dev/null; sleep 2; kill -9 $rpid 2>/dev/null
echo "     xl remus output (tail):"; tail -${FTSYNC_BENCH_REMUS_LINES:-30} /tmp/remus.out | sed 's/^/     | /'
echo "     xl list:"; xl list | sed 's/^/     | /'
echo "     xl dmesg (tail):"; xl dmesg | grep -v 'save:\|restore:' | tail -8 | sed 's/^/     | /'
for d in $(xl list | awk 'NR>2 {print $1}'); do xl destroy "$d" >/dev/null 2>&1; done
exit $rc
