#!/bin/bash
# The QEMU throughput benchmark: requests/s of the guest's counterd,
# unprotected and protected by ftd at several epoch intervals.
#
# Network namespaces stand in for machines, as in make demo: ft-bench-cli
# (the client), ft-bench-pri (the primary host), ft-bench-bak (the backup
# host), joined by veth pairs to a bridge in ft-bench-sw. The guest runs
# under QEMU/TCG on the primary, its NIC bridged by ftd to a TAP on the
# primary's bridge, so every configuration uses the same guest and the same
# NIC path:
#   unprotected   ftd primary whose backup is not running (nothing listens at
#                 its --peer): the guest runs unprotected, output flows at once
#   NN ms         ftd backup (--no-promote) and ftd primary at --interval NN,
#                 replicating over mutual TLS; output is held until its epoch
#                 is acknowledged
# Each configuration boots a fresh guest. Once it answers (and, protected,
# ftd says state=protected), bench/qemu/load_client.py in ft-bench-cli runs
# CONNECTIONS closed-loop connections of INCR for WARMUP + SECONDS and counts
# the answers of the last SECONDS.
#
# Usage: bench/qemu/throughput.sh BUILD_DIR [JSON_OUT]
# Environment: BENCH_CONNECTIONS (16), BENCH_SECONDS (8), BENCH_WARMUP (2),
#              BENCH_INTERVALS ("25 100 200").
# All traffic stays in the namespaces; they, the ftds, the QEMUs and
# /dev/shm/ftsync-bench-qemu are removed on exit and on Ctrl-C.
set -u
build=$(cd "${1:-build}" && pwd) || exit 1
json_out=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
conns=${BENCH_CONNECTIONS:-16}
seconds=${BENCH_SECONDS:-8}
warmup=${BENCH_WARMUP:-2}
intervals=${BENCH_INTERVALS-25 100 200}
ftd=$build/bin/ftd
root=/dev/shm/ftsync-bench-qemu
ns_list="ft-bench-cli ft-bench-pri ft-bench-bak ft-bench-sw"
guest_ip=10.78.0.100
pids=()

kill_config() {  # the ftds of one configuration and the QEMUs they started
  {
    for p in "${pids[@]}"; do kill -9 "$p"; done
    for ns in ft-bench-pri ft-bench-bak; do
      for p in $(ip netns pids $ns); do kill -9 "$p"; done
    done
    for p in "${pids[@]}"; do wait "$p"; done
  } 2>/dev/null
  pids=()
}
cleanup() {
  kill_config
  for ns in $ns_list; do ip netns del "$ns" 2>/dev/null; done
  rm -rf "$root"
}
trap cleanup EXIT
trap 'echo "throughput: interrupted" >&2; exit 130' INT TERM

die() { echo "throughput: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (network namespaces, TAP devices)"
for f in "$ftd" "$build/guest/vmlinuz" "$build/guest/initrd.gz" "$build/lib/libftsync_qemu_preload.so"; do
  [ -e "$f" ] || die "missing $f (make all guest builds it)"
done
command -v python3 >/dev/null || die "needs python3"
command -v openssl >/dev/null || die "needs openssl"
cleanup 2>/dev/null
mkdir -p "$root/certs" "$root/results"

# --- the machines ---------------------------------------------------------
for ns in $ns_list; do ip netns add "$ns" || die "cannot create namespace $ns"; done
ip -n ft-bench-sw link add sw type bridge && ip -n ft-bench-sw link set sw up
plug() {  # plug NS SHORT: a veth from the switch to NS (named uplink there)
  ip -n ft-bench-sw link add "p-$2" type veth peer name uplink netns "$1"
  ip -n ft-bench-sw link set "p-$2" master sw up
  ip -n "$1" link set uplink up
  ip -n "$1" link set lo up
}
plug ft-bench-cli cli; plug ft-bench-pri pri; plug ft-bench-bak bak
ip -n ft-bench-cli addr add 10.78.0.10/24 dev uplink
for h in pri:1 bak:2; do
  ns=ft-bench-${h%:*}; n=${h#*:}
  ip -n "$ns" link add br0 type bridge
  ip -n "$ns" link set uplink master br0
  ip -n "$ns" tuntap add dev ftsync0 mode tap
  ip -n "$ns" link set ftsync0 master br0 up
  ip -n "$ns" link set br0 up
  ip -n "$ns" addr add "10.78.0.$n/24" dev br0
done

# --- certificates: one CA for the pair --------------------------------------
(
  cd "$root/certs" || exit 1
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj "/CN=ftsync-bench-ca" 2>/dev/null
  for h in primary backup; do
    openssl req -newkey rsa:2048 -nodes -keyout $h.key -out $h.csr -subj "/CN=$h" 2>/dev/null
    openssl x509 -req -in $h.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out $h.crt -days 2 2>/dev/null
  done
)
[ -s "$root/certs/backup.crt" ] || die "openssl could not make certificates"

ping_guest() {
  ip netns exec ft-bench-cli python3 -c "
import socket,sys
s=socket.create_connection(('$guest_ip',7000),timeout=1); s.sendall(b'PING\n')
sys.exit(0 if s.recv(16).startswith(b'PONG') else 1)" 2>/dev/null
}
ctl() { "$build/bin/ftd" ctl --control "$root/$1/ftd.sock" "$2" 2>/dev/null; }

# run_config NAME INTERVAL PROTECTED(0|1)
run_config() {
  local name=$1 interval=$2 protected=$3
  rm -rf "$root/pri" "$root/bak"
  mkdir -p "$root/pri" "$root/bak"
  local common=(--hypervisor qemu --interval "$interval" --qemu-kernel "$build/guest/vmlinuz"
                --qemu-initrd "$build/guest/initrd.gz"
                --qemu-append "console=ttyS0 quiet panic=-1 ftsync.ip=$guest_ip/24 ftsync.log_every=0"
                --qemu-ram-mb 256 --tls-ca "$root/certs/ca.crt")
  if [ "$protected" = 1 ]; then
    ip netns exec ft-bench-bak "$ftd" backup --listen 10.78.0.2:7788 --no-promote "${common[@]}" \
      --tls-cert "$root/certs/backup.crt" --tls-key "$root/certs/backup.key" \
      --replica-dir "$root/bak/replica" --run-dir "$root/bak" --control "$root/bak/ftd.sock" \
      2>"$root/bak/ftd.log" &
    pids+=($!)
  fi
  # Unprotected: nothing listens at the peer address, so every connection
  # attempt is refused at once and the guest runs unprotected.
  ip netns exec ft-bench-pri "$ftd" primary --peer 10.78.0.2:7788 "${common[@]}" \
    --tls-cert "$root/certs/primary.crt" --tls-key "$root/certs/primary.key" \
    --run-dir "$root/pri" --control "$root/pri/ftd.sock" 2>"$root/pri/ftd.log" &
  pids+=($!)
  local t0=$SECONDS ready=0
  for _ in $(seq 1200); do
    if ping_guest; then ready=1; break; fi
    sleep 0.1
  done
  [ $ready = 1 ] || { tail -5 "$root/pri/ftd.log" >&2; die "$name: the guest did not answer within 120 s"; }
  local want=unprotected
  [ "$protected" = 1 ] && want=protected
  for _ in $(seq 100); do
    ctl pri status | grep -q "state=$want " && break
    sleep 0.1
  done
  ctl pri status | grep -q "state=$want " || die "$name: primary is not $want: $(ctl pri status)"
  local boot=$((SECONDS - t0))
  ip netns exec ft-bench-cli python3 "$here/load_client.py" $guest_ip 7000 "$conns" "$warmup" "$seconds" \
    "$root/results/$name.json" || die "$name: the client failed"
  local after
  after=$(ctl pri status)
  echo "$after" | grep -q "state=$want " || die "$name: primary left state $want during the run: $after"
  ctl pri stats-json > "$root/results/$name-ftd.json"
  echo "{\"name\":\"$name\",\"interval_ms\":$interval,\"protected\":$protected,\"boot_s\":$boot}" \
    > "$root/results/$name-config.json"
  kill_config
  echo "  $name: done (guest answered after ${boot} s)" >&2
}

echo "throughput: $conns closed-loop connections, ${warmup} s warm-up + ${seconds} s measured per configuration" >&2
names=(unprotected)
run_config unprotected 100 0
for iv in $intervals; do
  run_config "${iv}ms" "$iv" 1
  names+=("${iv}ms")
done

# --- table and JSON -----------------------------------------------------------
python3 - "$root/results" "$json_out" "$conns" "$warmup" "$seconds" "${names[@]}" <<'PY'
import json, os, platform, sys, time
res, out, conns, warmup, seconds, names = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), sys.argv[6:]
rows = []
for n in names:
    c = json.load(open(os.path.join(res, n + ".json")))
    cfg = json.load(open(os.path.join(res, n + "-config.json")))
    f = json.load(open(os.path.join(res, n + "-ftd.json")))
    pauses = sorted(r[1] for r in f.get("recent", []) if r[0] > 0)
    med_pause = pauses[len(pauses) // 2] / 1e3 if pauses else None
    rows.append(dict(name=n, interval_ms=cfg["interval_ms"] if cfg["protected"] else None,
                     protected=bool(cfg["protected"]), requests_per_s=c["requests_per_s"],
                     latency_ms=c["latency_ms"], answers=c["answers"], errors=c["errors"],
                     client_cpu_fraction=c.get("client_cpu_fraction"),
                     boot_s=cfg["boot_s"], epochs_sent=f.get("epochs_sent"),
                     median_pause_ms_recent=med_pause))
base = rows[0]["requests_per_s"]
for r in rows:
    r["ratio_to_unprotected"] = r["requests_per_s"] / base if base else None

def fmt(v, d):
    return "-" if v is None else "%.*f" % (d, v)

print()
print("2. Guest throughput: counterd INCR, %d closed-loop connections, %g s measured" % (conns, seconds))
print("=" * 78)
hdr = ["epoch interval", "requests/s", "vs unprotected", "latency med ms", "latency p99 ms", "pause med ms",
       "client CPU"]
cells = [[("unprotected" if not r["protected"] else "%d ms" % r["interval_ms"]),
          fmt(r["requests_per_s"], 0), "%.3fx" % r["ratio_to_unprotected"],
          fmt(r["latency_ms"]["median"], 2), fmt(r["latency_ms"]["p99"], 2),
          fmt(r["median_pause_ms_recent"], 2),
          "-" if r["client_cpu_fraction"] is None else "%.0f%%" % (100 * r["client_cpu_fraction"])] for r in rows]
w = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(hdr)]
line = lambda cs: "  " + "  ".join(c.rjust(w[i]) if i else c.ljust(w[i]) for i, c in enumerate(cs))
print(line(hdr))
print("  " + "-" * (sum(w) + 2 * (len(w) - 1)))
for c in cells:
    print(line(c))
bad = [r["name"] for r in rows if r["errors"]]
if bad:
    print("  WARNING: wrong INCR answers in " + ", ".join(bad))
print("  pause med ms: the primary's median pause over its recent epochs (ftd stats-json);")
print("  client CPU: the client's CPU time / wall time (near 100%: the client limits the rate)")
if out:
    doc = {"benchmark": "ftsync QEMU guest throughput",
           "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "nproc": os.cpu_count(), "kernel": " ".join(platform.uname()[i] for i in (0, 2, 4)),
           "config": {"connections": conns, "warmup_s": warmup, "seconds": seconds,
                      "guest": "test guest (Debian kernel, busybox, counterd), 256 MiB, pc-q35-7.2, TCG",
                      "path": "client netns -> bridge -> TAP -> ftd frame bridge -> QEMU netdev stream",
                      "replication": "ftd over mutual TLS between network namespaces"},
           "rows": rows}
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
sys.exit(1 if bad else 0)
PY
