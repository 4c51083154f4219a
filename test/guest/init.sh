#!/bin/sh
# /init of ftsync's test guest (busybox sh, PID 1).
#
# Mounts the kernel filesystems, loads the virtio-net modules, configures
# eth0 from the kernel command line, then runs counterd in the foreground and
# restarts it if it dies.  PID 1 must never exit (the kernel would panic), so
# nothing here uses `set -e` and every path ends in a loop.
#
# Kernel command line (all optional; dotted names are not passed to init as
# arguments or environment by the kernel, so they are read from /proc/cmdline):
#   ftsync.ip=ADDR/PREFIX   eth0's address          (default 10.0.2.15/24)
#   ftsync.gw=ADDR          default route via ADDR   (default: none)
#   ftsync.port=N           counterd's TCP port      (default 7000)
#   ftsync.log_every=N      console line every N requests (default 1000, 0 = off)

PATH=/bin:/sbin:/usr/bin:/usr/sbin
export PATH

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

say() { echo "ftsync-guest: $*"; }

# Sleeps forever; used when the guest cannot do its job (keeps PID 1 alive).
halt_here() {
  say "error: $*"
  while :; do sleep 3600; done
}

ip_addr=10.0.2.15/24
gw=
port=7000
log_every=1000
set -f  # split the command line into words without globbing
# shellcheck disable=SC2013
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    ftsync.ip=*) ip_addr=${arg#ftsync.ip=} ;;
    ftsync.gw=*) gw=${arg#ftsync.gw=} ;;
    ftsync.port=*) port=${arg#ftsync.port=} ;;
    ftsync.log_every=*) log_every=${arg#ftsync.log_every=} ;;
  esac
done
set +f
case "$ip_addr" in
  */*) ;;
  *) ip_addr=$ip_addr/24 ;;
esac

# Modules in dependency order, written by build-guest.sh.
kver=$(cat /etc/ftsync/kernel-version)
while read -r mod; do
  [ -n "$mod" ] || continue
  insmod "/lib/modules/$kver/$mod" || say "warning: insmod $mod failed"
done < /etc/ftsync/modules

# virtio probes the NIC asynchronously after the driver loads.
tries=0
while [ ! -e /sys/class/net/eth0 ]; do
  tries=$((tries + 1))
  [ "$tries" -le 100 ] || halt_here "no eth0 after loading virtio_net (is there a -device virtio-net-pci?)"
  sleep 0.1
done

ip link set lo up
ip addr add "$ip_addr" dev eth0 || halt_here "cannot set address $ip_addr on eth0"
ip link set eth0 up || halt_here "cannot bring eth0 up"
if [ -n "$gw" ]; then
  ip route add default via "$gw" || say "warning: cannot add default route via $gw"
fi

starts=0
while :; do
  starts=$((starts + 1))
  if [ "$starts" -gt 1 ]; then
    say "counterd restarted (start $starts, its state was lost)"
  fi
  counterd -p "$port" -n "$log_every" -r "ip=$ip_addr" < /dev/null
  say "counterd exited with status $?"
  sleep 1
done
