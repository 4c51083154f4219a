#!/bin/bash
# Builds the tiny initramfs of the PVH domU that ftsync's nested-Xen test
# protects: a static busybox and an /init that reports "DOMU-UP" on hvc0 and
# then runs the small stateful service ftsync replicates: a counter, kept in
# the shell's memory and in /tmp/counter (tmpfs), printed as "COUNT n" on
# the console once a second. After a failover the restored domU must go on
# from the replicated value, not from 1.
# Usage: mk-domu-initrd.sh BUSYBOX OUT.cpio.gz
set -euo pipefail
busybox=${1:?usage: mk-domu-initrd.sh BUSYBOX OUT}
out=${2:?usage: mk-domu-initrd.sh BUSYBOX OUT}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp"/{bin,proc,sys,dev,tmp,run}
cp "$busybox" "$tmp/bin/busybox"
ln -s busybox "$tmp/bin/sh"
cat >"$tmp/init" <<'INIT'
#!/bin/sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo "DOMU-UP uptime=$(cut -d' ' -f1 /proc/uptime)"
n=0
while :; do n=$((n+1)); echo "$n" >/tmp/counter; echo "COUNT $n"; sleep 1; done
INIT
chmod 755 "$tmp/init"
(cd "$tmp" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet) | gzip -9 >"$out"
