#!/bin/sh
# In-dom0 test of xl-ftsync and ftd's Xen guest (nested-Xen harness): a PVH
# domU with a vif on a dom0 bridge (its initramfs = the probe's plus an
# overlay that loads xen-netfront and pings dom0 continuously) is protected
# over localhost, the receiver started through -s with a local stand-in for
# ssh. Checks: flag errors; epochs flow; the IFB, redirect and plug qdisc
# exist; the plug holds the domU's packets while the backup cannot ACK
# (backup stopped with SIGSTOP) and releases them after; the --net-hook (-N)
# runs; the primary domain destroyed and its ftd killed -> the backup creates
# the domain from the replica (when libftsync has RestoreXenDomainFromReplica,
# else the backup's clear refusal is checked); the network buffer left by the
# killed ftd is cleaned, with a message, by the next one (-F -b); a domain
# with a disk is refused without -d.
# Needs /inject/bin/{xl-ftsync,ftd}, /inject/domu-initrd.gz and
# xen-netfront.ko (/inject/xen-netfront.ko or dom0's module tree).
# Exit status = number of failed checks.
cd /inject || exit 126
# FTSYNC_XL_TYPE=hvm runs the same suite on an HVM domU (qemu-xen device
# model, the same kernel and initramfs; the counter on its PV console hvc0):
# ftd then also drives the device model at every checkpoint, and the
# failover's xl restore starts a new one from the replicated device state.
type=${FTSYNC_XL_TYPE:-pvh}
case $type in pvh) label=xl-ftsync; name=ftsync-xl ;; hvm) label=xl-ftsync-hvm; name=ftsync-xlh ;;
  *) echo "FAIL xl-ftsync: FTSYNC_XL_TYPE must be pvh or hvm, not '$type'"; exit 1 ;; esac
pass=0; fail=0; skip=0
ok() { echo "ok   $label: $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $label: $1"; [ -n "${2:-}" ] && echo "     $2"; fail=$((fail + 1)); }
skipped() { echo "skip $label: $1"; skip=$((skip + 1)); }
check() { if eval "$2"; then ok "$1"; else bad "$1" "${3:-}"; fi; }
finish() {
  for s in /run/ftsync/*.sock; do [ -S "$s" ] && ftd ctl --control "$s" stop >/dev/null 2>&1; done
  sleep 1
  xl destroy $name >/dev/null 2>&1
  for p in $(busybox ps 2>/dev/null | awk '/inject\/bin\/ftd (primary|backup)/ && !/awk/ {print $1}'); do kill -9 "$p" 2>/dev/null; done
  # What the hypervisor said about the test's domains (a guest crash, a
  # triple fault), and the domU's kernel messages (its console without the
  # counter's lines): a failure is read from these.
  xl dmesg 2>/dev/null | grep -i -E 'triple|crash|d[0-9]+v[0-9]+ ' | tail -5 | sed 's/^/     xl dmesg: /'
  for f in /tmp/console-*.log "$log"; do
    [ -f "$f" ] && tr -d '\r' <"$f" | grep -v -E '^COUNT [0-9]+$' | tail -12 | sed "s|^|     domU console ${f##*/}: |"
  done
  echo "$label in dom0: $pass passed, $fail failed, $skip skipped"
  exit $fail
}
XL=/inject/bin/xl-ftsync
[ -x "$XL" ] && [ -x /inject/bin/ftd ] || { echo "skip $label (xl-ftsync or ftd not injected)"; exit 0; }
t0=$(cut -d. -f1 /proc/uptime)
el() { echo "$(( $(cut -d. -f1 /proc/uptime) - t0 )) s"; }

# --- dom0 network: netback, the buffer's kernel parts, a bridge.
for m in xen-netback bridge ifb sch_plug sch_ingress cls_u32 act_mirred tun; do  # tun: an HVM vif's emulated twin
  modprobe "$m" 2>/dev/null || echo "     modprobe $m failed (built in?)"
done
ip link set lo up  # dom0-init leaves loopback down
ip link add xenbr0 type bridge 2>/dev/null
ip addr add 10.99.0.1/24 dev xenbr0 2>/dev/null
ip link set xenbr0 up

# --- The domU: the probe initramfs plus an overlay (concatenated archive).
kmod=/inject/xen-netfront.ko
[ -f "$kmod" ] || kmod=$(find /lib/modules -name 'xen-netfront.ko*' 2>/dev/null | head -1)
if [ ! -f "$kmod" ]; then
  bad "setup: no xen-netfront.ko for the domU (inject it as /inject/xen-netfront.ko)"
  finish
fi
ov=/tmp/domu-overlay; rm -rf $ov; mkdir -p $ov
rm -f /tmp/console-*.log
cp "$kmod" $ov/xen-netfront.ko
cat >$ov/init <<'INIT'
#!/bin/sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
insmod /xen-netfront.ko
i=0; while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do usleep 100000; i=$((i + 1)); done
ip link set lo up; ip link set eth0 up; ip addr add 10.99.0.2/24 dev eth0
echo "DOMU-UP uptime=$(cut -d' ' -f1 /proc/uptime) eth0=$(cat /sys/class/net/eth0/address 2>/dev/null)"
# Eight pings a second towards dom0: the output the network buffer holds.
for k in 1 2 3 4 5 6 7 8; do ping -q 10.99.0.1 >/dev/null 2>&1 & usleep 120000; done
n=0; while :; do n=$((n + 1)); echo "$n" >/tmp/counter; echo "COUNT $n"; sleep 1; done
INIT
chmod 755 $ov/init
(cd $ov && find . | busybox cpio -o -H newc 2>/dev/null | gzip) >/tmp/overlay.cpio.gz
cat /inject/domu-initrd.gz /tmp/overlay.cpio.gz >/tmp/domu-net.gz
if [ "$type" = hvm ]; then
  # domu-hvm-base.cfg (kernel, memory, timer_mode, the device model, the
  # serial pty), and pci=noearly as the other HVM domUs: no early PCI scan
  # (minutes of boot under TCG otherwise); the last console= (hvc0) is
  # /dev/console, so the counter reaches xenconsoled's log.
  guest="$(cat /inject/domu-hvm-base.cfg)
extra = \"console=ttyS0 console=hvc0 rdinit=/init loglevel=5 pci=noearly\""
  boot_s=300
else
  guest='type = "pvh"
kernel = "/boot/vmlinuz"
memory = 128
vcpus = 1
on_crash = "preserve"
extra = "console=hvc0 rdinit=/init loglevel=5"'
  boot_s=120
fi
cat >/tmp/$name.cfg <<CFG
name = "$name"
$guest
ramdisk = "/tmp/domu-net.gz"
vif = ['bridge=xenbr0,mac=00:16:3e:5e:00:01']
on_reboot = "destroy"
CFG
log=/var/log/xen/console/guest-$name.log
create_domu() {
  xl destroy $name >/dev/null 2>&1
  [ -f $log ] && mv $log /tmp/console-$(date +%s).log  # xenconsoled appends per name
  out=$(xl create /tmp/$name.cfg 2>&1) || {
    echo "     xl create: $out"
    tail -8 /var/log/xen/qemu-dm-$name.log 2>/dev/null | sed 's/^/     qemu-dm: /'
    return 1
  }
  i=0
  while [ $i -lt $boot_s ] && ! grep -q DOMU-UP $log 2>/dev/null; do sleep 1; i=$((i + 1)); done
  grep -q DOMU-UP $log 2>/dev/null || { echo "     no DOMU-UP: $(tail -3 $log 2>/dev/null)"; return 1; }
  domid=$(xl domid $name); vif=vif$domid.0
  ifb=ftsb$(cat /sys/class/net/$vif/ifindex 2>/dev/null)
  return 0
}
stat_of() { cat /sys/class/net/$1/statistics/$2 2>/dev/null || echo 0; }

# --- 1. Flag errors, before any domain.
err() { "$XL" "$@" 2>&1 >/dev/null; echo "rc=$?"; }
out=$(err --insecure-plaintext -b $name localhost)
check "-b without -F is refused" 'echo "$out" | grep -q "need -F" && echo "$out" | grep -q rc=2' "$out"
out=$(err --insecure-plaintext -c $name localhost)
check "-c (COLO) is refused as not supported" 'echo "$out" | grep -q "(COLO) are not supported"' "$out"
out=$(err --insecure-plaintext -F -b nosuchdomain localhost)
check "an unknown domain is named" 'echo "$out" | grep -q "no Xen domain .nosuchdomain."' "$out"

# --- 2. The domU with its vif on xenbr0.
if ! create_domu; then bad "domU with a vif did not come up"; finish; fi
r1=$(stat_of $vif rx_packets); sleep 2; r2=$(stat_of $vif rx_packets)
check "domU $domid is up ($(el)) and sends on $vif" '[ $((r2 - r1)) -ge 4 ]' "vif rx $r1 -> $r2"

# --- 3. Protection over localhost: -s runs the receiver through a stand-in for ssh.
cat >/tmp/fakessh <<'SSH'
#!/bin/sh
echo "$1" >>/tmp/fakessh.hosts
shift
exec "$@"
SSH
chmod 755 /tmp/fakessh
cat >/tmp/hook.sh <<'HOOK'
#!/bin/sh
echo "$1 $vifname $IFB $FTSYNC_DOMAIN" >>/tmp/hook.log
HOOK
chmod 755 /tmp/hook.sh; rm -f /tmp/hook.log /tmp/fakessh.hosts
rm -rf /tmp/ftsync-replica  # a rerun starts from an empty replica
# Heartbeats of 1 s x 10: the backup may be stopped for a few seconds
# without the primary giving it up (which would release the buffer).
# Epochs of 1 s: a cooperative checkpoint costs 250-450 ms nested under TCG,
# so at 200 ms the guest would run only between back-to-back checkpoints
# and no speculation tick would ever come due.
# A guest may take seconds to suspend while dom0 is busy under TCG (the
# restored domU, at its first checkpoint while ftd reads all its memory).
fa="--ftd-arg --heartbeat --ftd-arg 1000 --ftd-arg --missed-heartbeats --ftd-arg 10"
fa="$fa --ftd-arg --xen-suspend-timeout --ftd-arg 30000"
"$XL" --insecure-plaintext -s /tmp/fakessh -i 1000 -N /tmp/hook.sh --replica-dir /tmp/ftsync-replica \
  --xen-config /tmp/$name.cfg $fa $name 127.0.0.1 >/tmp/xl-primary.log 2>&1 &
xlpid=$!
st() { timeout 20 "$XL" status $name 2>&1; }
# Waits up to $1 seconds for `st` to match $2; sets $i to the seconds waited.
wait_st() {
  w0=$(cut -d. -f1 /proc/uptime); i=0
  while [ $i -lt "$1" ]; do
    st | grep -q "$2" && return 0
    [ -n "${xlpid:-}" ] && ! kill -0 "$xlpid" 2>/dev/null && return 1
    # A domU that triple-faulted never gets there (README, "Reliability").
    xl dmesg 2>/dev/null | grep -q "d${domid}v[0-9]* Triple fault" && return 1
    sleep 1; i=$(( $(cut -d. -f1 /proc/uptime) - w0 ))
  done
  return 1
}
logs() {
  echo "     --- primary (xl-ftsync) log:"; tail -${1:-15} /tmp/xl-primary.log 2>/dev/null | sed 's/^/     /'
  echo "     --- backup log:"; tail -${1:-15} /run/ftsync/xl-$name-backup.log 2>/dev/null | sed 's/^/     /'
}
echo "     protecting $name ($(el)); dom0 free: $(awk '/MemAvailable/ {print int($2/1024) " MiB"}' /proc/meminfo), /tmp: $(df -m /tmp | awk 'NR==2 {print $4 " MiB"}')"
wait_st 240 "backup:.*replica_epoch=[1-9]"
s=$(st)
check "protected after $i s: primary and backup report epochs" \
  'echo "$s" | grep -q "primary: role=primary state=protected" && echo "$s" | grep -q "backup: role=backup state=protecting.*replica_epoch="' \
  "$s"
echo "$s" | grep -q "replica_epoch=" || { logs 30; busybox ps | grep -v ' \[' | tail -15; finish; }
check "the receiver was started through -s CMD 127.0.0.1" 'grep -qx 127.0.0.1 /tmp/fakessh.hosts'
e1=$(st | sed -n 's/.*replica_epoch=\([0-9]*\).*/\1/p'); sleep 3; e2=$(st | sed -n 's/.*replica_epoch=\([0-9]*\).*/\1/p')
check "epochs flow ($e1 -> $e2 in 3 s)" '[ -n "$e1" ] && [ -n "$e2" ] && [ "$e2" -gt "$e1" ]' || logs 10
# ftd's defaults speculate; Xen can only peek, so pages sent ahead that are
# unchanged at the checkpoint are not resent.
sj=$(ftd ctl --control /run/ftsync/xl-$name-primary.sock stats-json 2>&1)
spec=$(echo "$sj" | sed -n 's/.*"speculation":{\([^}]*\)}.*/\1/p')
sends=$(echo "$spec" | sed -n 's/.*"sends":\([0-9]*\).*/\1/p')
check "speculation on Xen (peek-only): $spec" \
  'echo "$spec" | grep -q "\"active\":true" && [ "${sends:-0}" -gt 0 ]' "$sj"
check "network buffer: IFB $ifb with a plug qdisc, $vif redirected to it" \
  'tc qdisc show dev $ifb | grep -q "qdisc plug" && tc filter show dev $vif parent ffff: | grep -q "Redirect to device $ifb"' \
  "$(tc qdisc show dev $ifb 2>&1; tc filter show dev $vif parent ffff: 2>&1)"
check "-N hook ran at setup" 'grep -q "^setup $vif $ifb $name" /tmp/hook.log' "$(cat /tmp/hook.log 2>/dev/null)"

echo "     ($(el))"
# --- 4. The plug holds the domU's packets until the backup ACKs.
bpid=$(sed -n 's/.*(ftd pid \([0-9]*\),.*/\1/p' /tmp/xl-primary.log | head -1)
if [ -n "$bpid" ] && kill -0 "$bpid" 2>/dev/null; then
  kill -STOP "$bpid"
  sleep 1  # epochs acknowledged before the stop are released by now
  t1=$(stat_of $ifb tx_packets); v1=$(stat_of $vif rx_packets)
  sleep 4
  t2=$(stat_of $ifb tx_packets); v2=$(stat_of $vif rx_packets)
  held=$(tc -s qdisc show dev $ifb | sed -n 's/.*backlog [^ ]* \([0-9]*\)p.*/\1/p' | head -1)
  kill -CONT "$bpid"
  sleep 3
  t3=$(stat_of $ifb tx_packets)
  echo "     backup stopped 4 s: released $((t2 - t1)), held in the plug ${held:-?} (vif rx +$((v2 - v1))); after CONT released $((t3 - t2))"
  check "while the backup cannot ACK, the plug releases nothing and holds the domU's packets" \
    '[ $((t2 - t1)) -eq 0 ] && [ "${held:-0}" -ge 8 ]'
  check "after the ACKs resume, the held packets leave" '[ $((t3 - t2)) -ge "${held:-1}" ]'
  s=$(st); check "the session survived the stall" 'echo "$s" | grep -q "primary: role=primary state=protected"' "$s"
else
  bad "no backup pid in the receiver's output" "$(cat /tmp/xl-primary.log | head -5)"
fi

echo "     ($(el))"
# --- 5. Failover: the primary's domain destroyed and its ftd killed
#     (xl-ftsync exec'd it: $xlpid) at once, before it can clean up.
#     Destroyed first: the backup's restore needs the name free (on a real
#     pair the primary's host is gone).
xl pause $name
sleep 1
cb=$(grep -o 'COUNT [0-9]*' $log | tail -1 | cut -d' ' -f2); sz=$(wc -c <$log)
xl destroy $name
kill -9 $xlpid
wait $xlpid 2>/dev/null
stale=$ifb
blog=/run/ftsync/xl-$name-backup.log
i=0; while [ $i -lt 120 ] && ! grep -q -E "TOOK OVER|cannot take over" $blog 2>/dev/null; do sleep 1; i=$((i + 1)); done
check "the killed ftd left its network buffer behind ($stale)" '[ -e /sys/class/net/$stale ]'
if grep -q "without libftsync's Xen restore" $blog; then
  skipped "failover: this libftsync has no RestoreXenDomainFromReplica yet; the backup says: $(grep 'cannot take over' $blog | tail -1)"
  check "the backup's refusal to promote is clear" 'grep -q "cannot take over: .*RestoreXenDomainFromReplica" $blog'
  restored=0
else
  check "failover: the backup took over after $i s" 'grep -q "TOOK OVER" $blog' "$(tail -3 $blog)"
  j=0; while [ $j -lt 60 ] && ! xl domid $name >/dev/null 2>&1; do sleep 1; j=$((j + 1)); done
  check "failover: domain $name exists again, created from the replica" 'xl list $name >/dev/null 2>&1' "$(xl list 2>&1)"
  j=0; while [ $j -lt 60 ] && ! tail -c +$((sz + 1)) $log 2>/dev/null | grep -q COUNT; do sleep 1; j=$((j + 1)); done
  ca=$(tail -c +$((sz + 1)) $log 2>/dev/null | grep -o 'COUNT [0-9]*' | head -1 | cut -d' ' -f2)
  check "failover: the restored domU's counter goes on from the replicated state (last before: ${cb:-?}, first after: ${ca:-none})" \
    '[ -n "$ca" ] && [ -n "$cb" ] && [ "$ca" -gt 1 ] && [ "$ca" -ge $((cb - 3)) ]' "$(tail -c +$((sz + 1)) $log | tail -3)"
  j=0; while [ $j -lt 30 ] && ! busybox ping -c 1 -W 1 10.99.0.2 >/dev/null 2>&1; do j=$((j + 1)); done
  check "failover: the restored domU answers on the network" 'busybox ping -c 1 -W 2 10.99.0.2 >/dev/null 2>&1'
  restored=1
fi
ftd ctl --control /run/ftsync/xl-$name-backup.sock stop >/dev/null 2>&1

echo "     ($(el))"
# --- 6. The next ftd cleans the dead one's buffer (with a message); -F -b on Xen.
if [ "$restored" = 1 ] && xl domid $name >/dev/null 2>&1; then
  domid=$(xl domid $name); vif=vif$domid.0; ifb2=ftsb$(cat /sys/class/net/$vif/ifindex 2>/dev/null)
else
  create_domu || bad "domU did not come up again"
  ifb2=$ifb  # create_domu set it
fi
"$XL" -F -b -N /tmp/hook.sh $fa $name nowhere >/tmp/xl-bh.log 2>&1 &
bh=$!; xlpid=$bh
wait_st 240 "primary: role=primary state=protected"
check "the dead ftd's stale buffer was removed with a message" \
  'grep -q "removed a stale network buffer left by a crashed ftd: IFB $stale" /tmp/xl-bh.log' "$(grep -i -E 'stale|error' /tmp/xl-bh.log | head -3)"
t1=$(stat_of $ifb2 tx_packets); sleep 3; t2=$(stat_of $ifb2 tx_packets)
check "-F -b: blackhole epochs are acknowledged at once, packets flow through the plug" \
  'st | grep -q "backup=blackhole" && [ $((t2 - t1)) -ge 8 ]' "$(st); released $t1 -> $t2; $(grep -v '^ *$' /tmp/xl-bh.log | tail -4)"
ftd ctl --control /run/ftsync/xl-$name-primary.sock stop >/dev/null
i=0; while [ $i -lt 30 ] && kill -0 $bh 2>/dev/null; do sleep 1; i=$((i + 1)); done
check "a clean stop removes the network buffer and runs the hook's teardown" \
  '[ ! -e /sys/class/net/$ifb2 ] && ! tc qdisc show dev $vif | grep -q ingress && grep -q "^teardown $vif" /tmp/hook.log' \
  "$(ip link show $ifb2 2>&1 | head -1); $(tail -2 /tmp/hook.log)"

echo "     ($(el))"
# --- 7. A domain with a disk is refused without -d.
truncate -s 16M /tmp/disk.img
modprobe loop 2>/dev/null; modprobe xen-blkback 2>/dev/null
loopdev=$(losetup -f --show /tmp/disk.img 2>/tmp/block.log)
if [ -n "$loopdev" ] && timeout 60 xl block-attach $name "phy:$loopdev,xvdb,w" >>/tmp/block.log 2>&1; then
  out=$(err --insecure-plaintext $name localhost)
  check "a domain with a disk is refused without -d" \
    'echo "$out" | grep -q "ftsync does not replicate disks" && echo "$out" | grep -q "rc=3"' "$out"
  out=$(err --insecure-plaintext -d $name localhost)
  check "-d without -F is refused" 'echo "$out" | grep -q "need -F"' "$out"
else
  skipped "disk refusal: xl block-attach failed: $(tail -2 /tmp/block.log)"
fi
finish
