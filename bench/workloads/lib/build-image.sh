#!/bin/bash
# Builds, from Debian packages only, the guest that runs one workload of
# `make bench-workloads`:
#   CACHE/vmlinuz            Debian's kernel (linux-image-amd64 of the base)
#   CACHE/kernel-hz          its CONFIG_HZ (the guest clock's tick)
#   CACHE/initrd.gz          a tiny busybox initramfs: loads virtio + ext4,
#                            mounts /dev/vda, switch_root to /sbin/ftsync-wl-init
#   CACHE/NAME/root.img      the workload's root file system (ext4, raw):
#                            the base + the workload's WL_PACKAGES, prepared
#                            by its wl_prepare (run in a chroot, at host speed)
#
# Usage: build-image.sh CACHE WORKLOAD_SCRIPT
#
# Cached with stamps: debootstrap runs once (CACHE/base), a workload's rootfs
# is rebuilt only when its script, this script or the guest init change, and
# the disk image only when its rootfs was rebuilt. Needs root (debootstrap,
# chroot); installs debootstrap, e2fsprogs, busybox-static, cpio if missing.
# DEBIAN_MIRROR overrides the mirror (default http://deb.debian.org/debian).
set -euo pipefail
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export LC_ALL=C.UTF-8
prog=build-image
log() { echo "$prog: $*" >&2; }
die() { echo "$prog: error: $*" >&2; exit 1; }

[ $# -eq 2 ] || { echo "usage: $0 CACHE WORKLOAD_SCRIPT" >&2; exit 2; }
[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot)"
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$1"; cache=$(cd "$1" && pwd)
wl_script=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
[ -f "$wl_script" ] || die "no workload script $2"
name=$(basename "$wl_script" .sh)
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=bookworm
# What every workload guest has: the kernel (its modules are on the disk),
# busybox for the initramfs, and the tools the guest init uses.
base_pkgs="linux-image-amd64 busybox-static kmod procps iproute2 util-linux e2fsprogs"

exec 9>"$cache/.lock"; flock 9
t0=$(date +%s)

export DEBIAN_FRONTEND=noninteractive
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
missing=""
for p in debootstrap e2fsprogs busybox-static cpio gzip; do installed "$p" || missing="$missing $p"; done
if [ -n "$missing" ]; then
  log "installing on the host:$missing"
  apt-get install -y -qq --no-install-recommends $missing >&2 ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing >&2; } ||
    die "apt-get install$missing failed"
fi

chroot_mounts=()
umount_all() {
  local i
  for ((i = ${#chroot_mounts[@]} - 1; i >= 0; i--)); do
    mountpoint -q "${chroot_mounts[$i]}" 2>/dev/null && umount -l "${chroot_mounts[$i]}" || true
  done
  chroot_mounts=()
}
trap umount_all EXIT
mount_chroot() {  # ROOT
  local r=$1
  mount -t proc proc "$r/proc"; chroot_mounts+=("$r/proc")
  mount -t sysfs sysfs "$r/sys"; chroot_mounts+=("$r/sys")
  mount --bind /dev "$r/dev"; chroot_mounts+=("$r/dev")
  mount --bind /dev/pts "$r/dev/pts"; chroot_mounts+=("$r/dev/pts")
  mount -t tmpfs tmpfs "$r/run"; chroot_mounts+=("$r/run")
}
in_chroot() {  # ROOT LOGFILE COMMAND...
  local r=$1 lf=$2; shift 2
  chroot "$r" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    DEBIAN_FRONTEND=noninteractive "$@" >>"$lf" 2>&1
}

# ---- 1. the base: debootstrap + kernel, once --------------------------------
base=$cache/base
if [ "$(cat "$base/.ftsync-base" 2>/dev/null)" != "$suite $base_pkgs" ]; then
  rm -rf "$base"
  log "debootstrap $suite (minbase) from $mirror into $base"
  debootstrap --variant=minbase "$suite" "$base" "$mirror" >"$cache/debootstrap.log" 2>&1 ||
    { tail -20 "$cache/debootstrap.log" >&2; die "debootstrap failed (log: $cache/debootstrap.log)"; }
  # No services start inside the chroot; no initramfs-tools run (the guest
  # boots our own initramfs).
  printf '#!/bin/sh\nexit 101\n' >"$base/usr/sbin/policy-rc.d"; chmod 755 "$base/usr/sbin/policy-rc.d"
  chroot "$base" dpkg-divert --local --rename --add /usr/sbin/update-initramfs >/dev/null
  printf '#!/bin/sh\nexit 0\n' >"$base/usr/sbin/update-initramfs"; chmod 755 "$base/usr/sbin/update-initramfs"
  mount_chroot "$base"
  log "installing the base packages: $base_pkgs"
  in_chroot "$base" "$cache/base-packages.log" sh -c \
    "apt-get update && apt-get install -y --no-install-recommends $base_pkgs && apt-get clean" ||
    { tail -20 "$cache/base-packages.log" >&2; die "base packages failed (log: $cache/base-packages.log)"; }
  umount_all
  echo "$suite $base_pkgs" >"$base/.ftsync-base"
fi
kver=$(ls "$base/lib/modules" | sort -V | tail -1)
[ -n "$kver" ] && [ -f "$base/boot/vmlinuz-$kver" ] || die "the base has no kernel"

# ---- 2. kernel + initramfs (shared by all workloads) -------------------------
init_stamp=$( (echo "$kver"; cat "$0") | sha256sum | cut -c1-16)
if [ "$(cat "$cache/initrd.stamp" 2>/dev/null)" != "$init_stamp" ] || [ ! -s "$cache/initrd.gz" ]; then
  work=$(mktemp -d "$cache/.initrd.XXXXXX")
  mkdir -p "$work"/{bin,dev,proc,sys,newroot,lib/modules}
  cp "$base/bin/busybox" "$work/bin/busybox"
  for a in sh mount umount insmod switch_root sleep echo cat mkdir ls; do ln -s busybox "$work/bin/$a"; done
  : >"$work/modules"
  for m in virtio_pci virtio_blk ext4; do
    chroot "$base" /sbin/modprobe -S "$kver" --show-depends "$m" 2>/dev/null | awk '$1 == "insmod" {print $2}'
  done | awk '!seen[$0]++' | while read -r f; do
    cp "$base$f" "$work/lib/modules/$(basename "$f")"
    echo "$(basename "$f")" >>"$work/modules"
  done
  [ -s "$work/modules" ] || die "no modules resolved for the initramfs"
  cat >"$work/init" <<'EOF'
#!/bin/sh
# initramfs of the workload guest: modules, root on /dev/vda, switch_root.
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules); do
  case $m in *.ko) insmod /lib/modules/$m ;; *.ko.xz|*.ko.zst) echo "compressed module $m" ;; esac
done
i=0; while [ ! -b /dev/vda ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
mount -t ext4 -o rw,noatime /dev/vda /newroot || { echo "FTSYNC-WL-FAIL cannot mount /dev/vda"; sleep 5; exit 1; }
umount /proc /sys; mount --move /dev /newroot/dev
exec switch_root /newroot /sbin/ftsync-wl-init
EOF
  chmod 755 "$work/init"
  cp "$base/boot/vmlinuz-$kver" "$cache/vmlinuz.tmp"; mv "$cache/vmlinuz.tmp" "$cache/vmlinuz"
  # The evaluator converts the guest's jiffies to time.
  sed -n 's/^CONFIG_HZ=//p' "$base/boot/config-$kver" >"$cache/kernel-hz"
  (cd "$work" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -6 >"$cache/initrd.gz.tmp"
  mv "$cache/initrd.gz.tmp" "$cache/initrd.gz"
  rm -rf "$work"
  echo "$init_stamp" >"$cache/initrd.stamp"
  log "kernel $kver, initramfs $(stat -c %s "$cache/initrd.gz") bytes"
fi

# ---- 3. the workload's rootfs and disk image --------------------------------
# The workload script declares WL_PACKAGES and wl_prepare (see README.md).
WL_PACKAGES=""
unset -f wl_prepare 2>/dev/null || true
# shellcheck disable=SC1090
. "$wl_script"
wdir=$cache/$name
root=$wdir/rootfs
stamp=$( (cat "$0" "$here/guest-init.sh" "$wl_script"; cat "$base/.ftsync-base") | sha256sum | cut -c1-16)
if [ "$(cat "$wdir/image.stamp" 2>/dev/null)" != "$stamp" ] || [ ! -s "$wdir/root.img" ]; then
  mkdir -p "$wdir"
  rm -rf "$root"
  log "$name: copying the base"
  cp -a "$base" "$root"
  mount_chroot "$root"
  : >"$wdir/packages.log"
  if [ -n "$WL_PACKAGES" ]; then
    log "$name: apt-get install $WL_PACKAGES"
    in_chroot "$root" "$wdir/packages.log" sh -c \
      "apt-get install -y --no-install-recommends $WL_PACKAGES || (apt-get update && apt-get install -y --no-install-recommends $WL_PACKAGES)" ||
      { tail -20 "$wdir/packages.log" >&2; die "$name: packages failed (log: $wdir/packages.log)"; }
    in_chroot "$root" "$wdir/packages.log" apt-get clean
  fi
  mkdir -p "$root/ftsync"
  install -m 644 "$wl_script" "$root/ftsync/workload.sh"
  install -m 755 "$here/guest-init.sh" "$root/sbin/ftsync-wl-init"
  if declare -F wl_prepare >/dev/null; then
    log "$name: wl_prepare (in the chroot)"
    # The same function, run by bash inside the chroot.
    in_chroot "$root" "$wdir/packages.log" bash -c '. /ftsync/workload.sh && set -e && wl_prepare' ||
      { tail -20 "$wdir/packages.log" >&2; die "$name: wl_prepare failed (log: $wdir/packages.log)"; }
  fi
  umount_all
  # Keep the disk small: no docs, locales, package caches, boot files, or
  # kernel drivers a virtio guest never loads.
  rm -rf "$root"/usr/share/{doc,man,info,locale,lintian} "$root"/var/cache/apt/* \
         "$root"/var/lib/apt/lists/* "$root"/boot/*
  for d in drivers/gpu drivers/media drivers/net/wireless drivers/net/ethernet drivers/infiniband \
           drivers/staging drivers/scsi drivers/usb drivers/bluetooth drivers/iio drivers/hid \
           drivers/input drivers/isdn drivers/mtd sound net/wireless net/bluetooth net/mac80211; do
    rm -rf "$root/lib/modules/$kver/kernel/$d"
  done
  chroot "$root" /sbin/depmod "$kver"
  mb=$(du -sm "$root" | cut -f1)
  size=$((mb + mb / 2 + 512))
  log "$name: rootfs $mb MB, disk image ${size} MB"
  rm -f "$wdir/root.img.tmp"
  truncate -s "${size}M" "$wdir/root.img.tmp"
  mkfs.ext4 -q -F -L ftsync-wl -d "$root" "$wdir/root.img.tmp" || die "$name: mkfs.ext4 -d failed"
  mv "$wdir/root.img.tmp" "$wdir/root.img"
  rm -rf "$root"  # the image is what boots; the base stays for the next build
  echo "$stamp" >"$wdir/image.stamp"
fi
log "$name: ready in $(( $(date +%s) - t0 )) s: $cache/vmlinuz $cache/initrd.gz $wdir/root.img"
