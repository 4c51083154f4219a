#!/bin/bash
# xl-ftsync on this host with ftd's in-memory domain (--hypervisor fake), on
# loopback: flag errors, -b (blackhole), a whole primary/backup pair started
# the xl remus way (-s with a local stand-in for ssh), failover by kill -9
# (the backup stays and watches the domain), manual failover with -e (the
# backup exits after taking over), status, and a receiver started twice.
# Usage: test/integration/ftd/xl-ftsync-test.sh BUILD_DIR
# Prints one line per check and "xl-ftsync: N passed, M failed".
set -u
build=$(cd "${1:-build}" && pwd)
xl=$build/bin/xl-ftsync
ftd=$build/bin/ftd
work=$(mktemp -d /tmp/xl-ftsync-test.XXXXXX)
pids=()
cleanup() {
  for s in "$work"/*.sock; do [ -S "$s" ] && "$ftd" ctl --control "$s" stop >/dev/null 2>&1; done
  sleep 0.3
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  pkill_own
  wait 2>/dev/null
  if [ "${failed:-0}" != 0 ] && [ -n "${FTD_TEST_KEEP:-}" ]; then echo "logs kept in $work"; else rm -rf "$work"; fi
}
# Backups started by `receive` are detached: find them by their own run dir.
pkill_own() {
  for p in $(pgrep -f -- "--run-dir $work" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
}
trap cleanup EXIT INT TERM
passed=0; failed=0
ok() { echo "ok   $1"; passed=$((passed + 1)); }
bad() { echo "FAIL $1"; [ -n "${2:-}" ] && echo "     $2"; failed=$((failed + 1)); }
check() { if eval "$2"; then ok "$1"; else bad "$1" "${3:-}"; fi; }

# 1. Flag errors: exit status 2 and a message that says what to do.
err() { "$xl" "$@" 2>&1 >/dev/null; echo "rc=$?"; }
out=$(err --insecure-plaintext -b dom host)
check "-b without -F is refused" 'echo "$out" | grep -q "need -F (unsafe mode)" && echo "$out" | grep -q rc=2' "$out"
out=$(err --insecure-plaintext -n dom host)
check "-n without -F is refused" 'echo "$out" | grep -q "lets output leave before the backup has it"' "$out"
out=$(err --insecure-plaintext -d dom host)
check "-d without -F is refused" 'echo "$out" | grep -q "disks unreplicated"' "$out"
out=$(err --insecure-plaintext -c dom host)
check "-c (COLO) is refused as not supported" 'echo "$out" | grep -q "(COLO) are not supported"' "$out"
out=$(err --insecure-plaintext -p dom host)
check "-p (COLO) is refused as not supported" 'echo "$out" | grep -q "(COLO) are not supported"' "$out"
out=$(err dom host)
check "no TLS and no --insecure-plaintext is refused" 'echo "$out" | grep -q "needs mutual TLS"' "$out"
out=$(err --insecure-plaintext dom)
check "a missing HOST is named" 'echo "$out" | grep -q "missing HOST after DOMAIN"' "$out"
out=$(err status --run-dir "$work" nosuch)
check "status of an unprotected domain says so" 'echo "$out" | grep -q "not protected on this host" && echo "$out" | grep -q rc=1' "$out"
out=$(err failover --run-dir "$work" nosuch)
check "failover without a backup says where it runs" 'echo "$out" | grep -q "failover runs on the backup" ' "$out"
check "--help" '"$xl" --help | grep -q "usage: xl-ftsync"'

common=(--hypervisor fake --run-dir "$work" --ftd "$ftd" --ftd-arg --fake-frames --ftd-arg 2048
        --ftd-arg --heartbeat --ftd-arg 50)
st() { "$xl" status --run-dir "$work" --ftd "$ftd" "$1" 2>&1; }
# Waits up to $2 tenths of a second for `status $1` to match $3.
wait_st() {
  for _ in $(seq "$2"); do st "$1" | grep -q "$3" && return 0; sleep 0.1; done
  return 1
}

# 2. -F -b: checkpoints to /dev/null; the epochs are acknowledged, no backup.
"$xl" -F -b -u -i 20 "${common[@]}" bh nohost 2>"$work/bh.log" &
bh=$!; pids+=($bh)
wait_st bh 50 "state=protected"
sleep 0.5
s=$(st bh)
acked=$("$ftd" ctl --control "$work/xl-bh-primary.sock" stats-json | sed -n 's/.*"epochs_acked":\([0-9]*\).*/\1/p')
check "-F -b: the primary checkpoints into the blackhole" \
  'echo "$s" | grep -q "primary: role=primary state=protected backup=blackhole" && [ "${acked:-0}" -ge 5 ]' "$s; acked=$acked"
check "-F -b: nothing is contacted and no receiver starts" \
  'grep -q "nohost is not contacted" "$work/bh.log" && ! grep -q "starting the receiver" "$work/bh.log"' "$(cat "$work/bh.log")"
check "-u reaches ftd (no compression)" 'grep -q -- "memory sync: delta runs, compression none" "$work/bh.log"' "$(grep "memory sync" "$work/bh.log")"
"$ftd" ctl --control "$work/xl-bh-primary.sock" stop >/dev/null
for _ in $(seq 50); do kill -0 $bh 2>/dev/null || break; sleep 0.1; done
check "-b: the primary stops cleanly" '! kill -0 $bh 2>/dev/null'

# 3. A pair the xl remus way: -s runs the receiver through a stand-in for ssh
#    that drops HOST (as xl remus is tested locally).
cat >"$work/fakessh" <<'SSH'
#!/bin/sh
echo "$1" >>"$(dirname "$0")/fakessh.hosts"
shift
exec "$@"
SSH
chmod 755 "$work/fakessh"
port=$((20000 + RANDOM % 20000))
pair=("${common[@]}" --insecure-plaintext --port $port --remote-xl-ftsync "$xl" -s "$work/fakessh" -i 20)
# Each pair's replica in $work: the default (/var/lib/ftsync/DOMAIN) would
# outlive the test, and a replica left by an earlier run made the waits
# below pass before this run's first epoch.
"$xl" "${pair[@]}" --replica-dir "$work/replica-vm1" vm1 127.0.0.1 2>"$work/vm1.log" &
p1=$!; pids+=($p1)
wait_st vm1 100 "backup: role=backup state=protecting.*replica_epoch=[1-9]"
s=$(st vm1)
check "the receiver started through -s CMD HOST" 'grep -qx 127.0.0.1 "$work/fakessh.hosts" && grep -q "backup of .vm1. ready on 0.0.0.0:$port" "$work/vm1.log"' "$(cat "$work/vm1.log")"
check "status shows the primary and the backup with epochs" \
  'echo "$s" | grep -q "primary: role=primary state=protected backup=127.0.0.1:$port" && echo "$s" | grep -q "backup: role=backup state=protecting.*replica_epoch="' "$s"
out=$("$xl" receive --run-dir "$work" --ftd "$ftd" --hypervisor fake --insecure-plaintext --port $port \
  --replica-dir "$work/replica-vm1" vm1 2>&1)
check "a second receiver for the domain is refused" 'echo "$out" | grep -q "already runs here"' "$out"
kill -9 $p1  # the primary host dies (xl-ftsync exec'd ftd primary)
wait_st vm1 50 "backup: role=backup state=active"
sleep 1
s=$(st vm1)
check "kill -9 of the primary: the backup takes over and waits in the background (no -e)" \
  'echo "$s" | grep -q "backup: role=backup state=active" && grep -q "TOOK OVER" "$work/xl-vm1-backup.log"' "$s"
out=$("$xl" failover --run-dir "$work" --ftd "$ftd" vm1 2>&1)
check "failover of an active backup says so" 'echo "$out" | grep -q "already active"' "$out"
"$ftd" ctl --control "$work/xl-vm1-backup.sock" stop >/dev/null

# 4. -e: the receiver exits once it has taken over; failover by hand.
port=$((port + 1))
pair=("${common[@]}" --insecure-plaintext --port $port --remote-xl-ftsync "$xl" -s "$work/fakessh" -i 20 -e)
"$xl" "${pair[@]}" --replica-dir "$work/replica-vm2" vm2 127.0.0.1 2>"$work/vm2.log" &
p2=$!; pids+=($p2)
wait_st vm2 100 "backup: role=backup state=protecting.*replica_epoch=[1-9]"
out=$("$xl" failover --run-dir "$work" --ftd "$ftd" vm2 2>&1)
check "xl-ftsync failover promotes the backup" 'echo "$out" | grep -q "ok: promoting"' "$out"
for _ in $(seq 50); do grep -q "exit-after-promote" "$work/xl-vm2-backup.log" && break; sleep 0.1; done
sleep 1
s=$(st vm2)
check "-e: the backup exits after the takeover" \
  'grep -q "TOOK OVER" "$work/xl-vm2-backup.log" && grep -q "not waiting for the taken-over guest" "$work/xl-vm2-backup.log" && ! echo "$s" | grep -q "backup:"' "$s"
kill -9 $p2 2>/dev/null

# 5. Disks: a stand-in `xl` (domid, block-list) first on PATH. ftsync does not
#    replicate disks: a domain with one is refused without -F -d.
mkdir -p "$work/fakexl"
cat >"$work/fakexl/xl" <<'XL'
#!/bin/sh
case "$1 $2" in
  "domid withdisk"|"domid diskless") echo 7 ;;
  "block-list withdisk") printf 'Vdev  BE  handle state evt-ch ring-ref BE-path\n51712 0   7   4     14     8        /local/domain/0/backend/vbd/7/51712\n' ;;
  "block-list diskless") echo 'Vdev  BE  handle state evt-ch ring-ref BE-path' ;;
  *) echo "xl: no domain $2" >&2; exit 1 ;;
esac
XL
chmod 755 "$work/fakexl/xl"
xlp() { PATH="$work/fakexl:$PATH" "$xl" --ftd /bin/false --run-dir "$work" "$@" 2>&1; echo "rc=$?"; }
out=$(xlp -F -b withdisk h)
check "a domain with a disk is refused without -d, saying ftsync does not replicate disks" \
  'echo "$out" | grep -q "has 1 disk(s) (vdev 51712): ftsync does not replicate disks" && echo "$out" | grep -q rc=3' "$out"
out=$(xlp -F -b -d withdisk h)
check "-F -d protects it anyway and names the unreplicated disks" \
  'echo "$out" | grep -q "WARNING: -d: 1 disk(s) of .withdisk. are NOT replicated" && echo "$out" | grep -q "protecting withdisk"' "$out"
out=$(xlp -F -b diskless h)
check "a diskless domain needs no -d" '! echo "$out" | grep -q "disk(s)" && echo "$out" | grep -q "protecting diskless"' "$out"

echo "xl-ftsync: $passed passed, $failed failed"
[ $failed = 0 ]
