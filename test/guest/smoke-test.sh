#!/bin/bash
# Boots ftsync's test guest under QEMU/TCG and checks counterd end to end.
#
# Usage: test/guest/smoke-test.sh OUTDIR     (OUTDIR from build-guest.sh)
#
# The guest's NIC is QEMU user networking with restrict=on (the guest reaches
# nothing but the host-forwarded port) and one forward from 127.0.0.1:PORT to
# the guest's port 7000.  Guest RAM is a shared file in /dev/shm, as ftsync
# runs it.  Prints "guest smoke test: OK" or a failure with the last serial
# lines; cleans up QEMU and its files on any exit.
#
# Environment: SMOKE_TIMEOUT (seconds to wait for the ready line, default 60),
#              QEMU (default qemu-system-x86_64), SMOKE_KEEP=1 keeps the logs.
set -uo pipefail

prog="guest smoke test"
[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
out=$1
qemu=${QEMU:-qemu-system-x86_64}
timeout=${SMOKE_TIMEOUT:-60}

fail_early() { echo "$prog: FAILED: $*" >&2; exit 1; }
[ -f "$out/vmlinuz" ] && [ -f "$out/initrd.gz" ] ||
  fail_early "no $out/vmlinuz or $out/initrd.gz (run test/guest/build-guest.sh $out)"
command -v "$qemu" >/dev/null || fail_early "$qemu not found (apt-get install qemu-system-x86)"
if ! command -v python3 >/dev/null; then
  # The client is python3 (stdlib only); install the minimal interpreter once.
  [ "$(id -u)" = 0 ] || fail_early "python3 not found (apt-get install python3-minimal)"
  echo "$prog: installing python3-minimal" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends python3-minimal >&2 ||
    { apt-get -o DPkg::Lock::Timeout=300 update -qq &&
      apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends python3-minimal >&2; } ||
    fail_early "cannot install python3-minimal"
fi

tmp=$(mktemp -d /tmp/ftsync-smoke.XXXXXX)
serial=$tmp/serial.log
ram=/dev/shm/ftsync-smoke-$$
qemu_pid=""

cleanup() {
  if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
    kill "$qemu_pid" 2>/dev/null
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$qemu_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$qemu_pid" 2>/dev/null
    wait "$qemu_pid" 2>/dev/null
  fi
  rm -f "$ram"
  if [ "${SMOKE_KEEP:-0}" = 1 ]; then echo "$prog: logs kept in $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() {
  echo "$prog: FAILED: $*" >&2
  echo "---- last serial lines ($serial) ----" >&2
  tail -n 20 "$serial" 2>/dev/null | tr -d '\r' >&2
  if [ -s "$tmp/qemu.err" ]; then
    echo "---- QEMU stderr ----" >&2
    tail -n 20 "$tmp/qemu.err" >&2
  fi
  exit 1
}

# A free loopback port for the forward (small race with other users; fine for a test).
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])') ||
  fail_early "cannot pick a free port"

append="console=ttyS0 quiet panic=-1 ftsync.ip=10.0.2.15/24 ftsync.log_every=100"
: > "$serial"
start=$(date +%s.%N)
"$qemu" -accel tcg -nodefaults -no-user-config -display none -no-reboot \
  -machine pc-q35-7.2,vmport=off,sata=off,smbus=off,i8042=off,usb=off,memory-backend=ram0 \
  -m 256 -smp 1 \
  -object memory-backend-file,id=ram0,size=256M,mem-path="$ram",share=on \
  -kernel "$out/vmlinuz" -initrd "$out/initrd.gz" -append "$append" \
  -serial file:"$serial" \
  -netdev user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:"$port"-:7000 \
  -device virtio-net-pci,netdev=n0,mac=52:54:00:f7:5e:01,romfile= \
  </dev/null >"$tmp/qemu.err" 2>&1 &
qemu_pid=$!

# Wait for the ready line (or an error line, or QEMU's death).
deadline=$(( $(date +%s) + timeout ))
ready_line=""
while :; do
  ready_line=$(tr -d '\r' < "$serial" | grep -m 1 '^ftsync-guest: ready ') && break
  if grep -q '^ftsync-guest: error' "$serial"; then fail "the guest reported an error"; fi
  kill -0 "$qemu_pid" 2>/dev/null || { wait "$qemu_pid"; fail "QEMU exited (status $?) before the guest was ready"; }
  [ "$(date +%s)" -lt "$deadline" ] || fail "no ready line within ${timeout}s"
  sleep 0.1
done
ready_at=$(date +%s.%N)
boot_s=$(awk -v a="$start" -v b="$ready_at" 'BEGIN { printf "%.1f", b - a }')
echo "$prog: $ready_line (after ${boot_s}s under TCG)"

marker="smoke-echo-$$-$RANDOM"
python3 - "$port" "$marker" "$serial" <<'EOF' || fail "client checks failed"
import socket, sys, time

port, marker, serial = int(sys.argv[1]), sys.argv[2], sys.argv[3]

def connect():
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    return s, s.makefile("rw", newline="\n")

def ask(f, line):
    f.write(line + "\n"); f.flush()
    r = f.readline()
    if not r.endswith("\n"):
        raise SystemExit(f"connection closed after {line!r}")
    return r.rstrip("\n")

def check(cond, what):
    if not cond:
        raise SystemExit("check failed: " + what)

s, f = connect()
check(ask(f, "PING") == "PONG", "PING -> PONG")

# INCR on a fresh key counts 1, 2, 3, ... one per request.
key = f"smoke{port}"
seen = [ask(f, f"INCR {key}") for _ in range(5)]
check(seen == [f"{key} {n}" for n in range(1, 6)], f"INCR sequence {seen}")
check(ask(f, f"GET {key}") == f"{key} 5", "GET after INCR")

# Pipelined: 200 requests in one write, 200 answers in order.
f.write("".join(f"INCR pipe\n" for _ in range(200))); f.flush()
vals = [int(f.readline().split()[1]) for _ in range(200)]
check(vals == list(range(1, 201)), "pipelined INCR answers 1..200 in order")

# Concurrent clients on one key: every value handed out exactly once.
conns = [connect() for _ in range(16)]
got = []
for _ in range(5):
    for _, cf in conns:
        cf.write("INCR shared\n"); cf.flush()
    for _, cf in conns:
        got.append(int(cf.readline().split()[1]))
check(sorted(got) == list(range(1, 81)), "16 clients x 5 INCR give 1..80 once each")
for cs, _ in conns:
    cs.close()

# ECHO reaches the serial console.
check(ask(f, f"ECHO {marker}") == "OK", "ECHO -> OK")
deadline = time.time() + 10
while marker not in open(serial, errors="replace").read():
    check(time.time() < deadline, "ECHO text did not reach the serial log")
    time.sleep(0.1)

stats = ask(f, "STATS")
fields = dict(kv.split("=") for kv in stats.split())
check(int(fields["requests"]) >= 5 + 1 + 200 + 80 + 1 + 1 + 1, f"STATS counts requests: {stats}")
check(ask(f, "QUIT") == "BYE", "QUIT -> BYE")
s.close()
print(f"guest smoke test: client ok ({stats})")
EOF

grep -q '^counterd: requests=' "$serial" || fail "no periodic 'counterd: requests=' line on the console"
echo "$prog: OK"
