#!/bin/sh
# In-dom0 test of ftsync's nested-Xen harness: an HVM guest with the
# qemu-xen device model (domu-hvm.cfg) boots, and its device model answers
# the QMP commands a Remus-style checkpoint of an HVM domain needs.
# Checks: the device model, SeaBIOS and socat are in dom0; the HVM domU is
# created paused, its serial pty (xenstore /local/domain/N/serial/0/tty) is
# read with socat from before the first instruction, and it prints DOMU-UP
# and counts there; xl list shows it running; its vif carries the guest's
# pings and the guest answers dom0's; libxl's QMP socket
# /var/run/xen/qmp-libxl-N answers qmp_capabilities and query-status; with
# the domain paused (xl pause): stop, xen-save-devices-state (live=false) to
# /var/lib/xen/ftsync-dm-N (size and magic printed), cont, xl unpause; then
# xen-set-global-dirty-log on and off; the guest counts on; xl destroy
# removes it. QMP latencies come from socat -v's timestamps of request and
# response. Lines "ok   hvm: ..." / "FAIL hvm: ...", a summary line
# "hvm: N passed, M failed"; exit status = number of failures.
# Env: HVM_BOOT_TIMEOUT (seconds for DOMU-UP, default 300), HVM_TIMEOUT
# (the whole suite, default 480: then a watchdog reports the step it hung in).
cd /inject || exit 126
trap '' PIPE  # a QMP session that died must fail a check, not kill the script
passed=0; failed=0
ok()  { echo "ok   hvm: $1"; passed=$((passed + 1)); echo "$passed $failed" >/tmp/hvm-counts; }
bad() { echo "FAIL hvm: $1"; [ -n "${2:-}" ] && echo "$2" | sed 's/^/     /'; failed=$((failed + 1))
        echo "$passed $failed" >/tmp/hvm-counts; }
say() { echo "     $*"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.1f", b - a}'; }
name=ftsync-hvm
cfg=/inject/domu-hvm.cfg
serial=/tmp/hvm-serial.log
qdir=/tmp/hvm-qmp
reader=; qmppid=; domid=
t_all=$(now)

# What the device model and xl are doing, when an xl command hung.
dm_diag() {
  domid=${domid:-$(xl domid $name 2>/dev/null)}
  dmpid=${dmpid:-$(xenstore-read /local/domain/$domid/image/device-model-pid 2>/dev/null)}
  say "device model $dmpid: $(grep State /proc/$dmpid/status 2>&1), wchan $(cat /proc/$dmpid/wchan 2>&1)," \
      "xenstore state '$(xenstore-read /local/domain/0/device-model/$domid/state 2>&1)'"
  tail -5 /var/log/xen/qemu-dm-$name.log 2>/dev/null | sed 's/^/     q /'
  for p in $(busybox pidof xl); do
    say "xl $p: $(tr '\0' ' ' </proc/$p/cmdline) $(grep State /proc/$p/status) wchan $(cat /proc/$p/wchan 2>&1)"
    head -6 /proc/$p/stack 2>/dev/null | sed 's/^/       s /'
  done
  for t in /proc/$dmpid/task/*; do printf '%s ' "$(cat $t/comm):$(cat $t/wchan)"; done 2>/dev/null | sed 's/^/     dm threads: /'; echo
  xl list 2>&1 | sed 's/^/     /'
  tail -5 /var/log/xen/xl-$name.log 2>/dev/null | sed 's/^/     l /'
}

# The suite bounds itself (HVM_TIMEOUT, default 480 s): on expiry a
# watchdog reports the step it hung in and what xl and qemu were doing.
step() { echo "$(since "$t_all") s: $*" >/tmp/hvm-step; }
watchdog() {
  sleep "${HVM_TIMEOUT:-480}"
  echo "FAIL hvm: suite timed out after ${HVM_TIMEOUT:-480} s, in step $(cat /tmp/hvm-step)"
  dm_diag
  read -r p f </tmp/hvm-counts
  echo "hvm: $p passed, $((f + 1)) failed (timed out)"
  kids=$(descendants "$1"); kill -9 "$1" $kids 2>/dev/null
}
descendants() {
  for c in $(awk -v pp="$1" '$4 == pp {print $1}' /proc/[0-9]*/stat 2>/dev/null); do descendants "$c"; echo "$c"; done
}

finish() {
  [ -n "${wdpid:-}" ] && kill "$wdpid" 2>/dev/null
  [ -n "$qmppid" ] && qmp_close
  step destroy
  if xl list $name >/dev/null 2>&1; then
    out=$(timeout -k 5 120 xl destroy $name 2>&1)
    if [ $? -eq 0 ] && ! xl list $name >/dev/null 2>&1; then ok "xl destroy"; else bad "xl destroy" "$out"; fi
  fi
  [ -n "$reader" ] && kill "$reader" 2>/dev/null
  [ -n "$domid" ] && rm -f "/var/lib/xen/ftsync-dm-$domid"
  echo "hvm: $passed passed, $failed failed ($(since "$t_all") s)"
  exit $failed
}

echo "0 0" >/tmp/hvm-counts; step start
watchdog $$ &
wdpid=$!

# --- 1. What an HVM guest needs in dom0.
dm=/usr/libexec/xen-qemu-system-i386
if v=$("$dm" -version 2>&1 | head -1) && [ -n "$v" ]; then ok "device model $dm runs: $v"
else bad "device model $dm runs" "$v"; finish; fi
hvmloader=/usr/lib/xen-4.17/boot/hvmloader
if [ -f $hvmloader ] && [ -f /usr/share/seabios/bios-256k.bin ]; then
  ok "hvmloader and SeaBIOS present ($(stat -c %s /usr/share/seabios/bios-256k.bin) bytes, loaded by libxl as hvmloader's module)"
else bad "hvmloader and SeaBIOS present" "$(ls -l $hvmloader /usr/share/seabios 2>&1)"; fi
if command -v socat >/dev/null; then ok "socat present"; else bad "socat present"; finish; fi

# --- 2. The network: the bridge the vif joins (shared with the xl-ftsync
# test), netback, and the tap qemu's emulated NIC uses.
for m in xen-netback bridge tun; do modprobe $m 2>/dev/null || say "modprobe $m failed (built in?)"; done
ip link set lo up
ip link add xenbr0 type bridge 2>/dev/null
ip addr add 10.99.0.1/24 dev xenbr0 2>/dev/null
ip link set xenbr0 up

# The guest's initramfs: the probe's plus an overlay whose /init loads
# xen-netfront (when dom0 has it), configures eth0, pings dom0, writes
# DOMU-UP also to hvc0 (xenconsoled's log) and counts on /dev/console (ttyS0).
ramdisk=/inject/domu-initrd.gz
kmod=$(find /lib/modules -name 'xen-netfront.ko*' 2>/dev/null | head -1)
ov=/tmp/hvm-overlay; rm -rf $ov; mkdir -p $ov
[ -f "$kmod" ] && cp "$kmod" $ov/xen-netfront.ko
cat >$ov/init <<'INIT'
#!/bin/sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
net=none
if [ -f /xen-netfront.ko ] && insmod /xen-netfront.ko; then
  i=0; while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do usleep 100000; i=$((i + 1)); done
  if [ -e /sys/class/net/eth0 ]; then
    ip link set lo up; ip link set eth0 up; ip addr add 10.99.0.3/24 dev eth0
    net="eth0=$(cat /sys/class/net/eth0/address)"
    ping -q -i 0.5 10.99.0.1 >/dev/null 2>&1 &
  fi
fi
echo "DOMU-UP uptime=$(cut -d' ' -f1 /proc/uptime) $net"
echo "DOMU-UP on hvc0" >/dev/hvc0 2>/dev/null
n=0
while :; do n=$((n + 1)); echo "$n" >/tmp/counter; echo "COUNT $n"; sleep 1; done
INIT
chmod 755 $ov/init
if (cd $ov && find . | busybox cpio -o -H newc 2>/dev/null | gzip) >/tmp/hvm-overlay.cpio.gz; then
  cat /inject/domu-initrd.gz /tmp/hvm-overlay.cpio.gz >/tmp/hvm-initrd.gz && ramdisk=/tmp/hvm-initrd.gz
fi

# --- 3. Create paused, attach to the serial pty, unpause.
xl destroy $name >/dev/null 2>&1
rm -f /var/log/xen/console/guest-$name.log "$serial"
t0=$(now)
step "xl create -p"
out=$(timeout -k 5 180 xl create -p $cfg "ramdisk=\"$ramdisk\"" 2>&1)
if [ $? -ne 0 ]; then
  bad "xl create -p (HVM, qemu-xen)" "$out"
  tail -30 /var/log/xen/qemu-dm-$name.log 2>/dev/null | sed 's/^/     | /'
  finish
fi
domid=$(xl domid $name 2>/dev/null)
ok "xl create -p (HVM, qemu-xen, 128 MB) domain $domid in $(since "$t0") s"
say "device model state in xenstore: '$(xenstore-read /local/domain/0/device-model/$domid/state 2>&1)'"
dmpid=$(xenstore-read /local/domain/$domid/image/device-model-pid 2>/dev/null)
if [ -n "$dmpid" ] && [ -r /proc/$dmpid/cmdline ]; then
  say "device model pid $dmpid: $(tr '\0' ' ' </proc/$dmpid/cmdline)"
  say "device model RSS: $(awk '/VmRSS/ {print $2 " kB"}' /proc/$dmpid/status)"
fi
tty=$(xenstore-read /local/domain/$domid/serial/0/tty 2>/dev/null)
if [ -c "$tty" ]; then ok "serial pty from xenstore serial/0/tty: $tty"
else bad "serial pty from xenstore serial/0/tty" "'$tty'"; finish; fi
step "socat on $tty"
socat -u "OPEN:$tty,rawer" "OPEN:$serial,creat,append" 2>/tmp/hvm-serial.err &
reader=$!
sleep 1
kill -0 $reader 2>/dev/null || { bad "socat reads $tty" "$(cat /tmp/hvm-serial.err)"; reader=; finish; }
t0=$(now)
step "first xl unpause"
if ! out=$(timeout -k 5 90 xl unpause $name 2>&1); then bad "xl unpause after $(since "$t0") s" "$out"; dm_diag; finish; fi

step "waiting for the guest's DOMU-UP"
limit=${HVM_BOOT_TIMEOUT:-300}
# Where the boot time goes: when each milestone first shows on the serial
# port (SeaBIOS's banner, its jump to qemu's linuxboot ROM, /init), +-1 s.
i=0; up=; seen=; miles=
while [ $i -lt "$limit" ]; do
  for m in 'SeaBIOS (' 'Booting from ROM' DOMU-UP; do
    case "$seen" in *"|$m"*) continue ;; esac
    grep -a -q -F "$m" "$serial" 2>/dev/null && { seen="$seen|$m"; miles="$miles, '$m' $(since "$t0") s"; }
  done
  if grep -a -q '^COUNT 2' "$serial" 2>/dev/null; then up=1; break; fi
  state=$(timeout -k 5 30 xl list $name 2>/dev/null | awk 'NR==2 {print $5}')
  case "$state" in *c*|*s*|"") break ;; esac
  sleep 1; i=$(since "$t0"); i=${i%.*}
done
boot=$(since "$t0")
if [ -n "$up" ]; then ok "HVM domU $domid: $(grep -a -o -m1 'DOMU-UP.*' "$serial" | tr -d '\r') and counting on ttyS0, ${boot} s after unpause"
else
  bad "HVM domU boots (DOMU-UP, COUNT 2 on the serial port)" "state '$state' after ${boot} s; serial:"
  tail -20 "$serial" 2>/dev/null | tr -d '\r' | sed 's/^/     | /'
  xl dmesg 2>/dev/null | grep -a -E "d$domid|hvmloader|HVM" | tail -20 | sed 's/^/     x /'
  tail -20 /var/log/xen/qemu-dm-$name.log 2>/dev/null | sed 's/^/     q /'
  finish
fi
say "serial: $(stat -c %s "$serial") bytes; after unpause: ${miles#, }"
hvclog=/var/log/xen/console/guest-$name.log
if grep -q 'DOMU-UP on hvc0' $hvclog 2>/dev/null; then
  say "xenconsoled logs the HVM guest's PV console (hvc0) in $hvclog ($(stat -c %s $hvclog) bytes), not its serial port"
else say "xenconsoled log $hvclog: $(ls -l $hvclog 2>&1)"; fi

state=$(xl list $name 2>/dev/null | awk 'NR==2 {print $5}')
case "$state" in ""|*c*|*s*|*d*) bad "domU is running" "state '$state'" ;; *) ok "xl list: domU is running (state $state)" ;; esac
xl list | sed 's/^/     /'

step network
# --- 4. The vif: the guest's pings reach dom0, dom0's are answered.
vif=vif$domid.0
if grep -a -q 'DOMU-UP.*eth0=' "$serial"; then
  r1=$(cat /sys/class/net/$vif/statistics/rx_packets 2>/dev/null || echo 0); sleep 2
  r2=$(cat /sys/class/net/$vif/statistics/rx_packets 2>/dev/null || echo 0)
  if [ $((r2 - r1)) -ge 2 ] && busybox ping -c 2 -W 3 10.99.0.3 >/dev/null 2>&1; then
    ok "network: $vif carries the guest's pings ($r1 -> $r2 packets) and 10.99.0.3 answers dom0"
  else bad "network over $vif" "rx $r1 -> $r2; $(ip -br link 2>&1 | grep vif)"; fi
  ip -br link 2>/dev/null | grep "vif$domid" | sed 's/^/     /'
else
  say "skip network: the guest has no eth0 ($(grep -a -o -m1 'DOMU-UP.*' "$serial" | tr -d '\r'))"
fi

# --- 5. QMP on libxl's socket. QEMU serves one client per monitor socket
# at a time, and libxl itself uses this one (xl unpause of an HVM domain
# sends "cont" there and gives up after its timeout while another client is
# connected), so each session is closed before xl runs again. socat -v
# timestamps every chunk of a session (trace file), for the latencies.
qmp=/var/run/xen/qmp-libxl-$domid
say "QMP sockets: $(ls /var/run/xen/ | grep -E "qmp.*-$domid\$" | tr '\n' ' ')"
if [ -S "$qmp" ]; then ok "libxl's QMP socket $qmp exists"; else bad "libxl's QMP socket $qmp exists" "$(ls -l /var/run/xen/)"; finish; fi
rm -rf $qdir; mkdir -p $qdir
nresp() { grep -a -c -E '"(return|error)"' $qdir/out 2>/dev/null; }
# qmp_open NAME: connects, waits for the greeting, negotiates capabilities.
qmp_open() {
  rm -f $qdir/in $qdir/out; mkfifo $qdir/in
  socat -v -t 5 STDIO "UNIX-CONNECT:$qmp" <$qdir/in >$qdir/out 2>$qdir/trace.$1 &
  qmppid=$!
  exec 3>$qdir/in
  w=0; while ! grep -q '"QMP"' $qdir/out 2>/dev/null && [ $w -lt 100 ]; do busybox usleep 100000; w=$((w + 1)); done
  greet=$(head -1 $qdir/out | tr -d '\r')
  echo "$greet" | grep -q '"QMP"' || return 1
  qmp_cmd '{"execute":"qmp_capabilities"}' && echo "$resp" | grep -q '"return": {}'
}
qmp_close() { exec 3>&-; w=0; while kill -0 "$qmppid" 2>/dev/null && [ $w -lt 50 ]; do busybox usleep 100000; w=$((w + 1)); done
              kill "$qmppid" 2>/dev/null; qmppid=; }
# qmp_cmd JSON [TIMEOUT]: sends one command, waits for its response; sets $resp.
qmp_cmd() {
  n0=$(nresp); echo "$1" >&3
  w=0; lim=$(( ${2:-30} * 20 ))
  while [ "$(nresp)" -le "$n0" ] && [ $w -lt $lim ]; do busybox usleep 50000; w=$((w + 1)); done
  resp=$(grep -a -E '"(return|error)"' $qdir/out | tail -1 | tr -d '\r')
  [ "$(nresp)" -gt "$n0" ]
}
# Latency of each command: request chunk (">") to the first response chunk
# ("<") holding "return"/"error", from socat's timestamps.
latencies() {
  tr -d '\r' <$qdir/trace.$1 | awk '
    /^[<>] [0-9]+\/[0-9]+\/[0-9]+ / { dir = $1; split($3, t, ":")
                                       # socat prints the microseconds as 9 digits
                                       ts = int(t[1] * 3600 + t[2] * 60 + t[3]) + substr($3, index($3, ".") + 1) / 1e6; next }
    dir == ">" && /"execute"/ { match($0, /"execute": *"[^"]*"/); cmd = substr($0, RSTART + 10, RLENGTH - 10)
                                gsub(/[ ":]/, "", cmd); start = ts; pending = 1; next }
    dir == "<" && pending && /"(return|error)"/ { printf "       %-26s %8.1f ms\n", cmd, (ts - start) * 1000; pending = 0 }'
}

step "QMP session 1"
if qmp_open 1; then ok "QMP session: greeting $(echo "$greet" | cut -c1-90)..., qmp_capabilities"
else bad "QMP session (greeting, qmp_capabilities)" "greeting '$greet', response '${resp:-}'"; finish; fi
qmp_cmd '{"execute":"query-status"}' && echo "$resp" | grep -q '"status": "running"' &&
  ok "query-status: $resp" || bad "query-status running" "$resp"

# --- 6. The device-model checkpoint, in libxl's Remus order: the domain's
# vCPUs are paused first (xl pause = xc_domain_pause only), then qemu stops
# and saves its devices, then resumes; xl unpause (QMP "cont" again, then
# xc_domain_unpause) after the session is closed.
c1=$(grep -a '^COUNT' "$serial" | tail -1 | tr -d '\r')
dmfile=/var/lib/xen/ftsync-dm-$domid
rm -f $dmfile
step "device-model checkpoint"
tp=$(now); timeout -k 5 90 xl pause $name && ok "xl pause in $(since "$tp") s" || bad "xl pause"
qmp_cmd '{"execute":"stop"}' && echo "$resp" | grep -q '"return"' && ok "QMP stop" || bad "QMP stop" "$resp"
qmp_cmd '{"execute":"query-status"}' && echo "$resp" | grep -q '"status": "paused"' && ok "query-status after stop: paused" || bad "query-status after stop" "$resp"
if qmp_cmd "{\"execute\":\"xen-save-devices-state\",\"arguments\":{\"filename\":\"$dmfile\",\"live\":false}}" 60 &&
   echo "$resp" | grep -q '"return"' && [ -s $dmfile ]; then
  ok "xen-save-devices-state (live=false): $dmfile, $(stat -c %s $dmfile) bytes"
  say "first bytes: $(od -A n -t x1 -N 16 $dmfile | tr -s ' ')"
  say "strings: $(busybox strings -n 6 $dmfile | grep -E '^[a-z]' | head -40 | tr '\n' ' ')"
else bad "xen-save-devices-state (live=false)" "$resp; $(ls -l $dmfile 2>&1)"; fi
qmp_cmd '{"execute":"cont"}' && echo "$resp" | grep -q '"return"' && ok "QMP cont" || bad "QMP cont" "$resp"
qmp_cmd '{"execute":"query-status"}' && echo "$resp" | grep -q '"status": "running"' && ok "query-status after cont: running" || bad "query-status after cont" "$resp"
qmp_close
tp=$(now); out=$(timeout -k 5 90 xl unpause $name 2>&1) && ok "xl unpause in $(since "$tp") s" ||
  { bad "xl unpause after $(since "$tp") s" "$out"; dm_diag; }
step "QMP session 2"
if qmp_open 2; then
  qmp_cmd '{"execute":"xen-set-global-dirty-log","arguments":{"enable":true}}' && echo "$resp" | grep -q '"return"' &&
    ok "xen-set-global-dirty-log enable=true" || bad "xen-set-global-dirty-log enable=true" "$resp"
  sleep 1
  qmp_cmd '{"execute":"xen-set-global-dirty-log","arguments":{"enable":false}}' && echo "$resp" | grep -q '"return"' &&
    ok "xen-set-global-dirty-log enable=false" || bad "xen-set-global-dirty-log enable=false" "$resp"
  qmp_close
else bad "second QMP session" "greeting '$greet', response '${resp:-}'"; fi
say "QMP latencies (request written -> response read, from socat -v):"
latencies 1; latencies 2

step "counting after the checkpoint"
# --- 7. The guest counts on after the checkpoint.
w=0; c2=
while [ $w -lt 60 ]; do
  c2=$(grep -a '^COUNT' "$serial" | tail -1 | tr -d '\r')
  [ "${c2#COUNT }" -gt $(( ${c1#COUNT } + 2 )) ] 2>/dev/null && break
  sleep 1; w=$((w + 1))
done
if [ "${c2#COUNT }" -gt $(( ${c1#COUNT } + 2 )) ] 2>/dev/null; then ok "the guest counts on: $c1 before the checkpoint, $c2 now"
else bad "the guest counts on after the checkpoint" "$c1 before, '$c2' after ${w} s"; fi
say "xenstore device-model/$domid: $(xenstore-ls /local/domain/0/device-model/$domid 2>&1 | tr -s ' \n' ' ' | cut -c1-200)"

# --- 8. Optional experiment, not a check (HVM_TRY_LOAD=1): loading the
# saved file back into the stopped device model with xen-load-devices-state
# (what COLO's secondary does). Reported as "info" lines.
if [ -n "${HVM_TRY_LOAD:-}" ] && [ -s "$dmfile" ] && qmp_open 3; then
  xl pause $name
  qmp_cmd '{"execute":"stop"}'
  if qmp_cmd "{\"execute\":\"xen-load-devices-state\",\"arguments\":{\"filename\":\"$dmfile\"}}" 30; then
    echo "info hvm: xen-load-devices-state answered: $resp"
    qmp_cmd '{"execute":"cont"}' && echo "info hvm: cont: $resp"
  else echo "info hvm: xen-load-devices-state: no answer in 30 s"; fi
  qmp_close
  if kill -0 "$dmpid" 2>/dev/null; then echo "info hvm: device model $dmpid still alive"; else echo "info hvm: device model $dmpid is gone"; fi
  tail -8 /var/log/xen/qemu-dm-$name.log 2>/dev/null | sed 's/^/     q /'
  timeout -k 5 30 xl unpause $name; sleep 3
  echo "info hvm: console after: $(grep -a '^COUNT' "$serial" | tail -1 | tr -d '\r') (was $c2)"
fi

finish
