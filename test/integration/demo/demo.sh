#!/bin/bash
# make demo: a QEMU guest protected end to end.
#
# Network namespaces stand in for machines: ft-client (a client), ft-pri
# (the primary host), ft-bak (the backup host), joined by veth pairs to a
# bridge in ft-sw. The guest (Debian kernel + busybox + counterd) runs under
# QEMU on the primary, its NIC bridged by ftd to a TAP on the primary's
# bridge; ftd replicates it to the backup over mutual TLS. A client sends
# INCR requests without pause; mid-run the primary's QEMU and ftd are
# SIGKILLed; the backup takes over from its last complete epoch and the
# client's TCP connection carries on. Then the failback: the primary host,
# "repaired", starts a backup; the host that took over protects the guest
# to it (ftd ctl protect) with a full resynchronisation while the client
# goes on; then that host dies too, and the guest comes back to the first
# host, again without a lost or repeated state change. All traffic stays in
# these namespaces.
#
# Usage: test/integration/demo/demo.sh BUILD_DIR [SECONDS_BEFORE_KILL] [SECONDS_AFTER_KILL]
#   SECONDS_AFTER_KILL: the client's time on the backup before the
#   failback starts, and again on the first host after the second kill.
set -u
build=$(cd "${1:-build}" && pwd)
before=${2:-8}
after=${3:-10}
here=$(cd "$(dirname "$0")" && pwd)
ftd=$build/bin/ftd
root=/dev/shm/ftsync-demo
ns_list="ft-client ft-pri ft-bak ft-sw"
pids=()

cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  # QEMUs started by the ftds live in their namespaces.
  for ns in ft-pri ft-bak; do
    for p in $(ip netns pids $ns 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
  done
  wait 2>/dev/null
  for ns in $ns_list; do ip netns del $ns 2>/dev/null; done
  rm -rf "$root"
}
trap cleanup EXIT
trap 'echo "demo: interrupted"; exit 130' INT TERM

die() { echo "demo: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (network namespaces, TAP devices)"
for f in "$ftd" "$build/guest/vmlinuz" "$build/guest/initrd.gz" "$build/lib/libftsync_qemu_preload.so"; do
  [ -e "$f" ] || die "missing $f (run make demo, which builds it)"
done
cleanup 2>/dev/null
mkdir -p "$root"/{pri,bak,pri2,certs}

# --- the machines ---------------------------------------------------------
for ns in $ns_list; do ip netns add $ns || die "cannot create namespace $ns"; done
ip -n ft-sw link add sw type bridge && ip -n ft-sw link set sw up
plug() {  # plug NS: a veth from NS's br0 (or eth0 for the client) to the switch
  ip -n ft-sw link add "p-$1" type veth peer name uplink netns "$1"
  ip -n ft-sw link set "p-$1" master sw up
  ip -n "$1" link set uplink up
  ip -n "$1" link set lo up
}
plug ft-client; plug ft-pri; plug ft-bak
ip -n ft-client addr add 10.77.0.10/24 dev uplink
for h in pri:1 bak:2; do
  ns=ft-${h%:*}; n=${h#*:}
  ip -n $ns link add br0 type bridge
  ip -n $ns link set uplink master br0
  ip -n $ns tuntap add dev ftsync0 mode tap
  ip -n $ns link set ftsync0 master br0 up
  ip -n $ns link set br0 up
  ip -n $ns addr add 10.77.0.$n/24 dev br0
done

# --- certificates: one CA for the pair --------------------------------------
cd "$root/certs"
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj "/CN=ftsync-demo-ca" 2>/dev/null
for h in primary backup; do
  openssl req -newkey rsa:2048 -nodes -keyout $h.key -out $h.csr -subj "/CN=$h" 2>/dev/null
  openssl x509 -req -in $h.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out $h.crt -days 2 2>/dev/null
done
[ -s backup.crt ] || die "openssl could not make certificates"

common=(--hypervisor qemu --interval 100 --qemu-kernel "$build/guest/vmlinuz" --qemu-initrd "$build/guest/initrd.gz"
        --qemu-append "console=ttyS0 quiet panic=-1 ftsync.ip=10.77.0.100/24"
        --qemu-ram-mb 256 --tls-ca "$root/certs/ca.crt")

# --- backup, then primary ---------------------------------------------------
ip netns exec ft-bak "$ftd" backup --listen 10.77.0.2:7788 "${common[@]}" \
  --tls-cert "$root/certs/backup.crt" --tls-key "$root/certs/backup.key" \
  --replica-dir "$root/bak/replica" --run-dir "$root/bak" --control "$root/bak/ftd.sock" \
  2>"$root/bak/ftd.log" &
bak_job=$!; pids+=($bak_job)  # ftd itself: ip netns exec execs it
ip netns exec ft-pri "$ftd" primary --peer 10.77.0.2:7788 "${common[@]}" \
  --tls-cert "$root/certs/primary.crt" --tls-key "$root/certs/primary.key" \
  --run-dir "$root/pri" --control "$root/pri/ftd.sock" 2>"$root/pri/ftd.log" &
pri_ftd=$!; pids+=($pri_ftd)
ctl() { "$ftd" ctl --control "$root/$1/ftd.sock" "$2" 2>/dev/null; }
# pid_in NS COMM: the first process named COMM in namespace NS.
pid_in() {
  ip netns pids "$1" | while read -r p; do [ "$(cat /proc/$p/comm 2>/dev/null)" = "$2" ] && echo "$p"; done | head -1
}

echo "demo: booting the guest under QEMU/TCG on the primary, protected from the first epoch..."
ready=0
for _ in $(seq 600); do
  if ip netns exec ft-client python3 -c "
import socket,sys
s=socket.create_connection(('10.77.0.100',7000),timeout=1); s.sendall(b'PING\n')
sys.exit(0 if s.recv(16).startswith(b'PONG') else 1)" 2>/dev/null; then ready=1; break; fi
  sleep 0.1
done
[ $ready = 1 ] || { tail -5 "$root/pri/ftd.log"; die "the guest's service did not answer within 60 s"; }
echo "demo: guest answers; $(ctl pri status)"

# --- the client, the kill, the takeover -------------------------------------
killfile=$root/kill-time
# At most this long; the demo stops it (KILLFILE.stop) after the failback.
ip netns exec ft-client python3 "$here/client.py" 10.77.0.100 7000 $((before + 2 * after + 300)) "$killfile" "$root/client.json" &
client=$!; pids+=($client)
last_json=""
for _ in $(seq $((before * 10))); do
  j=$(ctl pri stats-json); [ -n "$j" ] && last_json=$j
  sleep 0.1
done
echo "$last_json" > "$root/primary-stats.json"
qemu_pid=$(pid_in ft-pri qemu-system-x86)
echo "demo: SIGKILL primary ftd ($pri_ftd) and its QEMU (${qemu_pid:-?})"
python3 -c 'import time; print(time.clock_gettime_ns(time.CLOCK_MONOTONIC))' > "$killfile.tmp"
kill -9 $pri_ftd ${qemu_pid:-} 2>/dev/null
mv "$killfile.tmp" "$killfile"
wait $pri_ftd 2>/dev/null
sleep "$after"
echo "demo: $(ctl bak status)"
ctl bak stats-json > "$root/takeover-stats.json"

# --- failback: the first host comes back as the backup --------------------------
ip netns exec ft-pri "$ftd" backup --listen 10.77.0.1:7788 "${common[@]}" \
  --tls-cert "$root/certs/primary.crt" --tls-key "$root/certs/primary.key" \
  --replica-dir "$root/pri2/replica" --run-dir "$root/pri2" --control "$root/pri2/ftd.sock" \
  2>"$root/pri2/ftd.log" &
pri2_ftd=$!; pids+=($pri2_ftd)
for _ in $(seq 100); do ctl pri2 status >/dev/null && break; sleep 0.1; done
echo "demo: the first host is back, as a backup; the host that took over protects the guest to it: $(ctl bak "protect 10.77.0.1:7788")"
t0=$(date +%s)
protected=0
for _ in $(seq 1200); do
  if ctl bak status | grep -q "role=primary state=protected" && ctl pri2 status | grep -q "replica_epoch=[1-9]"; then
    protected=1; break
  fi
  sleep 0.1
done
[ $protected = 1 ] || { tail -5 "$root/bak/ftd.log"; tail -5 "$root/pri2/ftd.log"; die "the guest was not protected again within 120 s"; }
echo "demo: protected again after $(( $(date +%s) - t0 )) s: $(ctl bak status)"
sleep 2  # some epochs of the new session
ctl bak stats-json > "$root/reprotected-stats.json"
bak_qemu=$(pid_in ft-bak qemu-system-x86)
echo "demo: SIGKILL the second host's ftd ($bak_job) and its QEMU (${bak_qemu:-?})"
{ cat "$killfile"; python3 -c 'import time; print(time.clock_gettime_ns(time.CLOCK_MONOTONIC))'; } > "$killfile.tmp"
kill -9 $bak_job ${bak_qemu:-} 2>/dev/null
mv "$killfile.tmp" "$killfile"
wait $bak_job 2>/dev/null
sleep "$after"
touch "$killfile.stop"
wait $client
echo "demo: $(ctl pri2 status)"

# --- summary -------------------------------------------------------------------
python3 - "$root/client.json" "$root/primary-stats.json" "$root/takeover-stats.json" \
  "$root/reprotected-stats.json" "$(ctl pri2 stats-json)" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
p = json.loads(open(sys.argv[2]).read() or "{}")
b = json.loads(open(sys.argv[3]).read() or "{}")
r = json.loads(open(sys.argv[4]).read() or "{}")
b2 = json.loads(sys.argv[5] or "{}")
phases = c.get("after_each_kill", [])
rec = p.get("recent", [])
pauses = sorted(r[1] for r in rec if r[0] > 0)
def pct(v, q):
    return v[min(len(v) - 1, int(q * (len(v) - 1) + 0.5))] if v else float("nan")
print()
print("summary")
print("  epochs (primary, before the kill)   %s sent, %s acked" % (p.get("epochs_sent"), p.get("epochs_acked")))
print("  epochs applied on the backup        %s" % b.get("epochs_applied"))
print("  bytes replicated                    %.1f MiB" % (b.get("bytes_received", 0) / 2**20))
print("  guest pause per epoch               median %.1f ms, p99 %.1f ms (%d epochs)" % (pct(pauses, .5) / 1e3, pct(pauses, .99) / 1e3, len(pauses)))
print("  kill -> first answer from backup    %s ms" % (None if c["kill_to_first_answer_ms"] is None else round(c["kill_to_first_answer_ms"])))
def ms(v):
    return None if v is None else round(v)
first = phases[0] if phases else {"answers": 0, "first_answer_ms": None}
second = phases[1] if len(phases) > 1 else {"answers": 0, "first_answer_ms": None}
print("  requests answered                   %d before the kill, %d on the backup host" % (c["before_kill"], first["answers"]))
print("                                      (one request at a time: while protected each answer waits")
print("                                       for its epoch's ACK; after the takeover the guest runs unprotected")
print("                                       until it is protected again)")
print("failback")
print("  protected again, epochs acked       %s (then the second host was killed)" % r.get("epochs_acked"))
print("  epochs applied on the first host    %s" % b2.get("epochs_applied"))
print("  kill -> first answer, first host    %s ms" % ms(second["first_answer_ms"]))
print("  requests answered there             %d" % second["answers"])
print("  lost state changes                  %d" % c["lost"])
print("  repeated state changes              %d" % c["repeated"])
print("  client reconnects                   %d (0: the TCP connection survived)" % c["reconnects"])
ok = (c["lost"] == 0 and c["repeated"] == 0 and first["answers"] > 0 and second["answers"] > 0
      and b.get("state") == "active" and r.get("role") == "primary" and (r.get("epochs_acked") or 0) > 0
      and b2.get("state") == "active")
print("demo: OK" if ok else "demo: FAILED")
sys.exit(0 if ok else 1)
PY
