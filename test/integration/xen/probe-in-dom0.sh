#!/bin/sh
# First in-dom0 test of ftsync's nested-Xen harness: proves the environment
# the replication tests need. Runs as /inject/run-in-dom0.sh inside dom0.
# Checks: xl info works and virt_caps offers hvm, and the guests' paging
# mode: hap, or shadow when Xen was booted with hap=0 (boot-xen.sh's
# default, README "Reliability"); xl list shows
# Domain-0; a PVH domU (domu-probe.cfg) is created, runs, and prints DOMU-UP
# on its console; xl destroy removes it; tc's plug qdisc works; injected
# ftsync binaries run. One line per check, then a summary;
# exit status = number of failed checks.
passed=0; failed=0
ok()  { echo "ok   $1"; passed=$((passed + 1)); }
bad() { echo "FAIL $1${2:+: $2}"; failed=$((failed + 1)); }
now() { cut -d' ' -f1 /proc/uptime; }
cd /inject || exit 126

info=$(xl info 2>&1)
if [ $? -eq 0 ]; then ok "xl info"; else bad "xl info" "$info"; fi
caps=$(echo "$info" | sed -n 's/^virt_caps *: *//p')
echo "     virt_caps: $caps"
echo "$info" | grep -E '^(xen_version|xen_caps|nr_cpus|total_memory|free_memory|xen_commandline) ' | sed 's/^/     /'
case " $caps " in *" hvm "*) ok "virt_caps has hvm" ;; *) bad "virt_caps has hvm" "$caps" ;; esac
cmdline=$(echo "$info" | sed -n 's/^xen_commandline *: *//p')
case " $cmdline " in
  *" hap=0 "*)  # HAP turned off: virt_caps must offer shadow paging instead
    case " $caps " in *" shadow "*) ok "virt_caps has shadow (Xen booted with hap=0)" ;;
      *) bad "virt_caps has shadow (Xen booted with hap=0)" "$caps" ;; esac ;;
  *) case " $caps " in *" hap "*) ok "virt_caps has hap" ;; *) bad "virt_caps has hap" "$caps" ;; esac ;;
esac

if xl list 2>&1 | grep -q '^Domain-0 '; then ok "xl list shows Domain-0"; else bad "xl list shows Domain-0" "$(xl list 2>&1)"; fi

t0=$(now)
out=$(xl create domu-probe.cfg 2>&1)
if [ $? -eq 0 ]; then ok "xl create (PVH, 128 MB) in $(awk "BEGIN {printf \"%.1f\", $(now) - $t0}") s"; else bad "xl create" "$out"; fi
echo "$out" | sed 's/^/     /'
domid=$(xl domid ftsync-probe 2>/dev/null)
log=/var/log/xen/console/guest-ftsync-probe.log
i=0; up=
while [ $i -lt 120 ]; do
  if grep -q DOMU-UP "$log" 2>/dev/null; then up=1; break; fi
  state=$(xl list ftsync-probe 2>/dev/null | awk 'NR==2 {print $5}')
  case "$state" in *c*|*s*|"") break ;; esac
  sleep 1; i=$((i + 1))
done
if [ -n "$up" ]; then ok "domU $domid booted: $(grep -m1 DOMU-UP "$log" | tr -d '\r') ($i s after create)"
else bad "domU booted" "state '$state' after $i s; console:"; tail -20 "$log" 2>/dev/null | sed 's/^/     | /'; fi
state=$(xl list ftsync-probe 2>/dev/null | awk 'NR==2 {print $5}')
# "------" is alive too: runnable, waiting for a CPU (a loaded host).
case "$state" in ""|*c*|*s*|*d*) bad "domU is running" "state '$state'" ;; *) ok "domU is running (state $state)" ;; esac
xl list | sed 's/^/     /'
sleep 2
c1=$(xl list ftsync-probe 2>/dev/null | awk 'NR==2 {print $6}')
echo "     domU cpu time: $c1 s"

out=$(xl destroy ftsync-probe 2>&1)
if [ $? -eq 0 ] && ! xl list ftsync-probe >/dev/null 2>&1; then ok "xl destroy"; else bad "xl destroy" "$out"; fi

# The plug qdisc ftsync buffers a guest's output with (on a dummy link).
if ip link add ftprobe0 type dummy 2>/dev/null && tc qdisc add dev ftprobe0 root plug limit 32768 2>/dev/null &&
   tc qdisc show dev ftprobe0 | grep -q plug; then ok "plug qdisc available"
else bad "plug qdisc available" "$(tc qdisc add dev ftprobe0 root plug 2>&1)"; fi
ip link del ftprobe0 2>/dev/null

# ftsync's own binaries, when the harness injected them, load and run here.
if [ -x /inject/bin/ftd ]; then
  out=$(/inject/bin/ftd --help 2>&1); r=$?
  if [ $r -eq 0 ]; then ok "ftd --help runs in dom0"; else bad "ftd --help runs in dom0" "status $r: $(echo "$out" | head -3)"; fi
else
  echo "skip ftd (not injected)"
fi

echo "xen-probe: $passed passed, $failed failed"
exit $failed
