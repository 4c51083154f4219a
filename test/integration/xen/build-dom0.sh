#!/bin/bash
# Builds, from Debian packages only, what the nested-Xen test of ftsync boots:
#   CACHE_DIR/xen-4.17-amd64     the hypervisor (multiboot ELF, for qemu -kernel)
#   CACHE_DIR/dom0-vmlinuz       the dom0 kernel (also the PVH domU kernel)
#   CACHE_DIR/dom0-base.cpio.gz  the pruned dom0 root as an initramfs, with /init
#   OUT (default CACHE_DIR/dom0-initrd.gz)  dom0-base.cpio.gz + a cpio of INJECT_DIR
# Usage: build-dom0.sh CACHE_DIR [INJECT_DIR [OUT]]
# The base is cached: debootstrap and package installation run once (stamps in
# the rootfs); the pruned image is rebuilt only when this script or dom0-init
# change. INJECT_DIR (ftsync binaries, the test script, guest images) lands in
# the dom0 under /inject and is appended as a second cpio archive, so changing
# it costs seconds. Needs root, debootstrap, cpio; ~1.5 GB of disk.
set -euo pipefail
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
here=$(cd "$(dirname "$0")" && pwd)
cache=${1:?usage: build-dom0.sh CACHE_DIR [INJECT_DIR]}
inject=${2:-}
out=${3:-}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=bookworm
# Xen and the kernel, plus what ftsync's binaries and tests need at run time
# (libxxhash0 for libftsync, iproute2 for tc's plug qdisc), and for HVM
# guests the qemu-xen device model (qemu-system-xen: libxl runs
# /usr/libexec/xen-qemu-system-i386), the SeaBIOS image libxl hands to
# hvmloader as a module (seabios: /usr/share/seabios/bios-256k.bin; Debian's
# hvmloader does not embed it) and socat to talk QMP over qemu's unix socket.
pkgs="xen-utils-4.17 xen-hypervisor-4.17-amd64 linux-image-amd64 libxxhash0 iproute2 qemu-system-xen seabios socat"
# Kernel modules the dom0 keeps (with their dependencies): the Xen control
# devices, the backends, the domU's network driver (xen-netfront, copied
# into the test domU's initramfs), and what ftsync's network buffering needs.
keep_mods="xenfs xen-evtchn xen-gntdev xen-gntalloc xen-privcmd xen-netback xen-blkback xen-netfront
  sch_plug sch_prio sch_ingress cls_u32 cls_matchall act_mirred ifb bridge veth dummy tun loop"

mkdir -p "$cache"; cache=$(cd "$cache" && pwd)
out=${out:-$cache/dom0-initrd.gz}
exec 9>"$cache/.lock"; flock 9
log() { echo "build-dom0: $*" >&2; }
root=$cache/rootfs
t0=$(date +%s)

umount_chroot() {
  for m in "$root/dev/pts" "$root/dev" "$root/proc" "$root/sys"; do
    mountpoint -q "$m" 2>/dev/null && umount -l "$m" || true
  done
}
trap umount_chroot EXIT

# 1. debootstrap (minbase + kmod + a static busybox for /init and the domU).
if [ ! -e "$root/.ftsync-debootstrap-done" ]; then
  command -v debootstrap >/dev/null || { log "installing debootstrap"; apt-get install -y debootstrap >/dev/null; }
  rm -rf "$root"
  log "debootstrap $suite from $mirror"
  debootstrap --variant=minbase --include=kmod,busybox-static "$suite" "$root" "$mirror" >"$cache/debootstrap.log" 2>&1 ||
    { tail -20 "$cache/debootstrap.log" >&2; exit 1; }
  touch "$root/.ftsync-debootstrap-done"
fi

# 2. Xen tools, hypervisor, kernel. No initramfs-tools run: dom0 boots our own.
if [ "$(cat "$root/.ftsync-packages-done" 2>/dev/null)" != "$pkgs" ]; then
  mount -t proc proc "$root/proc"; mount -t sysfs sysfs "$root/sys"
  mount --bind /dev "$root/dev"; mount --bind /dev/pts "$root/dev/pts"
  chroot "$root" dpkg-divert --local --rename --add /usr/sbin/update-initramfs >/dev/null
  printf '#!/bin/sh\nexit 0\n' >"$root/usr/sbin/update-initramfs"; chmod 755 "$root/usr/sbin/update-initramfs"
  log "apt-get install $pkgs"
  chroot "$root" env DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 sh -c \
    "apt-get update && apt-get install -y --no-install-recommends $pkgs" >"$cache/packages.log" 2>&1 ||
    { tail -20 "$cache/packages.log" >&2; exit 1; }
  chroot "$root" apt-get clean
  umount_chroot
  echo "$pkgs" >"$root/.ftsync-packages-done"
fi

# 3. The pruned base image.
stamp=$( (cat "$0" "$here/dom0-init"; cat "$root/.ftsync-packages-done") | sha256sum | cut -c1-16)
if [ "$(cat "$cache/base.stamp" 2>/dev/null)" != "$stamp" ] || [ ! -s "$cache/dom0-base.cpio.gz" ]; then
  kver=$(ls "$root/lib/modules" | sort -V | tail -1)
  gunzip -c "$root"/boot/xen-4.17-amd64.gz >"$cache/xen-4.17-amd64.tmp"
  mv "$cache/xen-4.17-amd64.tmp" "$cache/xen-4.17-amd64"
  cp "$root/boot/vmlinuz-$kver" "$cache/dom0-vmlinuz"
  stage=$cache/stage
  rm -rf "$stage"; cp -a "$root" "$stage"
  rm -f "$stage"/.ftsync-*
  # Documentation, locales, caches, package lists, boot files (the kernel is
  # kept once, as /boot/vmlinuz, for PVH domUs).
  rm -rf "$stage"/usr/share/{doc,man,info,locale,lintian,linda,bash-completion,zsh} \
         "$stage"/usr/share/i18n "$stage"/usr/share/common-licenses \
         "$stage"/var/cache/apt/* "$stage"/var/lib/apt/lists/* "$stage"/var/cache/debconf/*-old \
         "$stage"/var/log/* "$stage"/usr/share/xen/* "$stage"/usr/lib/grub
  rm -f "$stage"/boot/*
  cp "$cache/dom0-vmlinuz" "$stage/boot/vmlinuz"
  # Python is only for pygrub (PVH guests here boot a kernel directly); udev,
  # perl, iconv modules and time zones are not used in this dom0.
  rm -rf "$stage"/usr/lib/python3* "$stage"/usr/share/python3* "$stage"/usr/bin/python3* \
         "$stage"/usr/lib/udev/hwdb.bin "$stage"/usr/lib/udev/hwdb.d "$stage"/etc/udev/hwdb.bin \
         "$stage"/usr/bin/perl* "$stage"/usr/lib/x86_64-linux-gnu/perl* "$stage"/usr/share/perl* \
         "$stage"/usr/lib/x86_64-linux-gnu/gconv "$stage"/usr/share/zoneinfo
  # The HVM device model (qemu-xen, x86 only, no display): keep the x86
  # firmware qemu loads itself (linuxboot for -kernel, kvmvapic, multiboot,
  # pvh, sgabios), the en-us keymap, SeaBIOS (bios-256k.bin goes to
  # hvmloader) with the standard/cirrus VGA BIOS, and the option ROMs of the
  # rtl8139 (xl's default HVM NIC) and e1000. Firmware of other machines,
  # iso-codes (pulled in by GStreamer, a dependency of spice), GStreamer's
  # plugins and helpers, socat's filan/procan are not needed.
  if [ -d "$stage/usr/share/qemu" ]; then
    find "$stage/usr/share/qemu" -mindepth 1 -maxdepth 1 ! -name keymaps ! -name kvmvapic.bin \
      ! -name 'linuxboot*.bin' ! -name 'multiboot*.bin' ! -name pvh.bin ! -name sgabios.bin -exec rm -rf {} +
    find "$stage/usr/share/qemu/keymaps" -mindepth 1 ! -name en-us -delete 2>/dev/null || true
    find "$stage/usr/share/seabios" -mindepth 1 ! -name 'bios-256k.bin' ! -name bios.bin \
      ! -name vgabios-stdvga.bin ! -name vgabios-cirrus.bin ! -name vgabios.bin -delete 2>/dev/null || true
    find "$stage/usr/lib/ipxe" -name '*.rom' ! -name '*rtl8139*' ! -name '*e1000.rom' ! -name '*82540*' -delete 2>/dev/null || true
    rm -rf "$stage"/usr/share/iso-codes "$stage"/usr/share/xml/iso-codes "$stage"/usr/share/icons \
           "$stage"/usr/share/applications "$stage"/usr/share/gst-plugins-base \
           "$stage"/usr/lib/x86_64-linux-gnu/gstreamer1.0 "$stage"/usr/lib/x86_64-linux-gnu/gstreamer-1.0 \
           "$stage"/usr/bin/filan "$stage"/usr/bin/procan
    # Libraries these packages brought only for others (GStreamer's video,
    # audio, rtsp..., gio, orc's tests, unwind's ptrace/coredump): removed
    # unless qemu or socat link them (their ldd closure in the stage).
    needed=$(chroot "$stage" ldd /usr/libexec/xen-qemu-system-i386 /usr/bin/socat |
             awk '$3 ~ /^\// {print $3}' | while read -r l; do realpath "$stage$l"; done | sort -u)
    [ -n "$needed" ] || { log "ldd of the device model failed"; exit 1; }
    lib=$stage/usr/lib/x86_64-linux-gnu
    cand() { ls -d "$lib"/libgst* "$lib"/libgio-2.0.* "$lib"/libgthread-2.0.* "$lib"/liborc-test-* \
                   "$lib"/libunwind-* "$lib"/libdw[.-]* 2>/dev/null; }
    for f in $(cand); do
      [ -f "$f" ] && [ ! -L "$f" ] && ! echo "$needed" | grep -qxF "$f" && rm -f "$f"
    done
    for f in $(cand); do [ -L "$f" ] && [ ! -e "$f" ] && rm -f "$f"; done
  fi
  # Kernel modules: only keep_mods and their dependencies.
  mods=$stage/lib/modules/$kver
  keep=$(for m in $keep_mods; do chroot "$stage" /sbin/modprobe -S "$kver" --show-depends "$m" || true; done |
         awk '$1 == "insmod" {print $2}' | sort -u)
  [ -n "$keep" ] || { log "no kernel modules resolved"; exit 1; }
  mkdir "$stage/.keep"
  for f in $keep; do mkdir -p "$stage/.keep/$(dirname "$f")"; mv "$stage$f" "$stage/.keep/$f"; done
  rm -rf "$mods/kernel"
  cp -a "$stage/.keep/lib/modules/$kver/kernel" "$mods/kernel"; rm -rf "$stage/.keep"
  chroot "$stage" /sbin/depmod "$kver"
  install -m 755 "$here/dom0-init" "$stage/init"
  mkdir -p "$stage/inject"
  log "rootfs $(du -sm "$stage" | cut -f1) MB unpacked, $(echo "$keep" | wc -l) modules"
  (cd "$stage" && find . -mindepth 1 -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet) |
    gzip -6 >"$cache/dom0-base.cpio.gz.tmp"
  mv "$cache/dom0-base.cpio.gz.tmp" "$cache/dom0-base.cpio.gz"
  rm -rf "$stage"
  echo "$stamp" >"$cache/base.stamp"
  log "base image $(du -m "$cache/dom0-base.cpio.gz" | cut -f1) MB gzipped"
fi

# 4. Injected files, appended as a second archive under /inject.
if [ -n "$inject" ]; then
  inject=$(cd "$inject" && pwd)
  tmp=$(mktemp -d); mkdir "$tmp/inject"; cp -a "$inject/." "$tmp/inject/"
  chmod 755 "$tmp/inject"
  { cat "$cache/dom0-base.cpio.gz"
    (cd "$tmp" && find inject -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet) | gzip -1
  } >"$out.tmp"
  rm -rf "$tmp"
  log "injected $(du -sk "$inject" | cut -f1) KB from $inject"
else
  cp "$cache/dom0-base.cpio.gz" "$out.tmp"
fi
mv "$out.tmp" "$out"
log "ready in $(( $(date +%s) - t0 )) s: $cache/xen-4.17-amd64 $cache/dom0-vmlinuz $out"
