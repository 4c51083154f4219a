#!/bin/bash
# Builds ftsync's test guest from Debian packages:
#   OUTDIR/vmlinuz     Debian's kernel (from the linux-image-6.1.*-amd64 .deb)
#   OUTDIR/initrd.gz   busybox-static + virtio-net modules + /init + counterd
#   OUTDIR/guest.stamp what the outputs were built from
#
# Usage: test/guest/build-guest.sh OUTDIR
#
# Idempotent: installs missing host packages with apt-get, downloads the
# kernel .deb once into a cache directory (OUTDIR/cache, or
# $FTSYNC_GUEST_CACHE), and does nothing when the stamp says the outputs were
# built from the same kernel package, busybox, compiler and sources.
# The initramfs is reproducible: same inputs, same bytes.
#
# Environment:
#   FTSYNC_GUEST_CACHE       where kernel .debs are kept (default OUTDIR/cache)
#   FTSYNC_GUEST_KERNEL_DEB  use this linux-image .deb instead of resolving one
#   FTSYNC_GUEST_FORCE=1     rebuild even if the stamp matches
set -euo pipefail
umask 022

prog=build-guest
log() { echo "$prog: $*" >&2; }
die() { echo "$prog: error: $*" >&2; exit 1; }

[ $# -eq 1 ] && [ -n "$1" ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
src=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$1" || die "cannot create output directory $1"
out=$(cd "$1" && pwd)
cache=${FTSYNC_GUEST_CACHE:-$out/cache}
mkdir -p "$cache" || die "cannot create cache directory $cache"

for f in counterd.c init.sh; do
  [ -f "$src/$f" ] || die "missing source file $src/$f"
done

# One build per output directory at a time.
exec 9>"$out/.build.lock"
flock 9 || die "cannot lock $out/.build.lock"

# ---- host packages -------------------------------------------------------

export DEBIAN_FRONTEND=noninteractive
apt_opts=(-o DPkg::Lock::Timeout=300 -o APT::Sandbox::User=root)
apt_updated=0
apt_update_once() {
  [ "$apt_updated" = 1 ] && return 0
  log "apt-get update"
  apt-get "${apt_opts[@]}" update -qq || die "apt-get update failed"
  apt_updated=1
}

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

need_pkgs=(busybox-static cpio gzip gcc libc6-dev qemu-system-x86)
missing=()
for p in "${need_pkgs[@]}"; do installed "$p" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "missing packages: ${missing[*]} (run as root, or install them)"
  log "installing: ${missing[*]}"
  # Lists may be missing or stale on a fresh machine: update once and retry.
  if ! apt-get "${apt_opts[@]}" install -y -qq --no-install-recommends "${missing[@]}" >&2; then
    apt_update_once
    apt-get "${apt_opts[@]}" install -y -qq --no-install-recommends "${missing[@]}" >&2 \
      || die "apt-get install ${missing[*]} failed"
  fi
fi
busybox_bin=/bin/busybox
[ -x "$busybox_bin" ] || die "$busybox_bin not found although busybox-static is installed"

# ---- the kernel .deb -----------------------------------------------------

# Prints the versioned kernel package that linux-image-amd64 depends on.
resolve_kernel_pkg() {
  apt-cache depends linux-image-amd64 2>/dev/null |
    sed -n 's/^ *Depends: \(linux-image-6\.1\.[^ ]*-amd64\)$/\1/p' | head -n 1
}

if [ -n "${FTSYNC_GUEST_KERNEL_DEB:-}" ]; then
  deb=$FTSYNC_GUEST_KERNEL_DEB
  [ -f "$deb" ] || die "FTSYNC_GUEST_KERNEL_DEB=$deb: no such file"
else
  kpkg=$(resolve_kernel_pkg)
  if [ -z "$kpkg" ]; then
    apt_update_once
    kpkg=$(resolve_kernel_pkg)
  fi
  [ -n "$kpkg" ] || die "cannot resolve linux-image-amd64 to a linux-image-6.1.*-amd64 package (apt-cache depends linux-image-amd64)"
  kpkg_ver=$(apt-cache policy "$kpkg" 2>/dev/null | sed -n 's/^ *Candidate: //p')
  [ -n "$kpkg_ver" ] && [ "$kpkg_ver" != "(none)" ] || die "no installable version of $kpkg"
  deb=""
  for f in "$cache/${kpkg}"_*.deb; do
    [ -f "$f" ] || continue
    if [ "$(dpkg-deb -f "$f" Version 2>/dev/null)" = "$kpkg_ver" ]; then deb=$f; break; fi
  done
  if [ -z "$deb" ]; then
    log "downloading $kpkg $kpkg_ver into $cache"
    (cd "$cache" && apt-get "${apt_opts[@]}" download -qq "$kpkg=$kpkg_ver" >&2) \
      || die "apt-get download $kpkg=$kpkg_ver failed"
    for f in "$cache/${kpkg}"_*.deb; do
      [ -f "$f" ] || continue
      if [ "$(dpkg-deb -f "$f" Version 2>/dev/null)" = "$kpkg_ver" ]; then deb=$f; break; fi
    done
    [ -n "$deb" ] || die "apt-get download left no $kpkg $kpkg_ver .deb in $cache"
  fi
fi
deb_pkg=$(dpkg-deb -f "$deb" Package 2>/dev/null) || die "$deb is not a readable .deb"
deb_ver=$(dpkg-deb -f "$deb" Version)

# The default cache belongs to this OUTDIR: keep only the kernel in use.
if [ -z "${FTSYNC_GUEST_CACHE:-}" ]; then
  for f in "$cache"/linux-image-*.deb; do
    if [ -f "$f" ] && [ "$f" != "$deb" ]; then
      log "removing old $(basename "$f")"
      rm -f "$f"
    fi
  done
fi

# ---- up to date? ---------------------------------------------------------

src_hash=$(cd "$src" && cat build-guest.sh init.sh counterd.c | sha256sum | cut -d' ' -f1)
stamp_text="kernel-package=$deb_pkg $deb_ver
busybox=$(dpkg-query -W -f='${Version}' busybox-static)
gcc=$(gcc -dumpfullversion) libc6-dev=$(dpkg-query -W -f='${Version}' libc6-dev)
sources=$src_hash"
stamp=$out/guest.stamp
if [ "${FTSYNC_GUEST_FORCE:-0}" != 1 ] && [ -f "$stamp" ] && [ -f "$out/vmlinuz" ] &&
   [ -f "$out/initrd.gz" ] && [ "$(cat "$stamp")" = "$stamp_text" ]; then
  log "up to date: $out/vmlinuz $out/initrd.gz ($deb_pkg $deb_ver)"
  exit 0
fi

# ---- build ---------------------------------------------------------------

work=$(mktemp -d "$out/.work.XXXXXX")
trap 'rm -rf "$work"' EXIT

log "extracting $(basename "$deb")"
dpkg-deb -x "$deb" "$work/kernel" || die "dpkg-deb -x $deb failed"
set -- "$work"/kernel/boot/vmlinuz-*
[ $# -eq 1 ] && [ -f "$1" ] || die "$deb has no single boot/vmlinuz-*"
kver=${1##*/vmlinuz-}
kconfig=$work/kernel/boot/config-$kver
moddir=$work/kernel/lib/modules/$kver
[ -f "$kconfig" ] || die "$deb has no boot/config-$kver"
[ -f "$moddir/modules.order" ] || die "$deb has no lib/modules/$kver/modules.order"

# What /init relies on must be built in (=y); virtio-net may be a module.
for opt in BLK_DEV_INITRD RD_GZIP DEVTMPFS PROC_FS SYSFS SERIAL_8250_CONSOLE PCI INET UNIX; do
  grep -qx "CONFIG_$opt=y" "$kconfig" || die "kernel $kver lacks CONFIG_$opt=y"
done
grep -Eqx 'CONFIG_VIRTIO_NET=[ym]' "$kconfig" || die "kernel $kver has no virtio-net driver"
grep -Eqx 'CONFIG_VIRTIO_PCI=[ym]' "$kconfig" || die "kernel $kver has no virtio-pci transport"

# Module name -> path under lib/modules/KVER ("" if built in).  Names in
# depends= use '_' where file names may use '-'.
norm() { echo "${1//-/_}"; }
declare -A mod_path=() builtin=()
while read -r p; do
  n=${p##*/}; n=${n%.ko*}; n=${n//-/_}; mod_path[$n]=$p
done < "$moddir/modules.order"
if [ -f "$moddir/modules.builtin" ]; then
  while read -r p; do
    n=${p##*/}; n=${n%.ko*}; n=${n//-/_}; builtin[$n]=1
  done < "$moddir/modules.builtin"
fi

# Depth-first: dependencies before dependents.
load_order=()
declare -A visiting=() done_mod=() deps_of=()
visit() {
  local n p d deps
  n=$(norm "$1")
  [ -n "${done_mod[$n]:-}" ] && return 0
  [ -n "${builtin[$n]:-}" ] && { done_mod[$n]=1; return 0; }
  [ -z "${visiting[$n]:-}" ] || die "module dependency cycle at $n"
  p=${mod_path[$n]:-}
  [ -n "$p" ] && [ -f "$moddir/$p" ] || die "kernel $kver has no module $n (neither built in nor in modules.order)"
  case "$p" in *.ko) ;; *) die "module $p is compressed; only plain .ko files are handled" ;; esac
  visiting[$n]=1
  deps=$(tr '\0' '\n' < "$moddir/$p" | sed -n 's/^depends=//p' | head -n 1)
  deps_of[$n]=$deps
  for d in ${deps//,/ }; do visit "$d"; done
  load_order+=("$n")
  done_mod[$n]=1
}
for m in virtio_pci virtio_net; do visit "$m"; done

root=$work/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,etc/ftsync,"lib/modules/$kver"}
chmod 1777 "$root/tmp"

install -m 0755 "$busybox_bin" "$root/bin/busybox"
applets=$("$busybox_bin" --list-full 2>/dev/null) || applets=$("$busybox_bin" --list | sed 's|^|bin/|')
for a in $applets; do
  [ "$a" = bin/busybox ] && continue
  [ -e "$root/$a" ] || [ -L "$root/$a" ] || ln -s /bin/busybox "$root/$a"
done

log "compiling counterd"
gcc -static -O2 -s -Wall -o "$root/bin/counterd" "$src/counterd.c" || die "gcc failed on counterd.c"
install -m 0755 "$src/init.sh" "$root/init"

# Modules at their usual paths, an insmod order list for /init, and a
# depmod-style modules.dep (full dependency list, last one loaded first) so
# busybox modprobe works by hand too.
: > "$root/etc/ftsync/modules"
: > "$root/lib/modules/$kver/modules.dep"
declare -A closure=()
deps_closure() {  # prints the transitive deps of $1 in load order
  local n=$1 d
  for d in ${deps_of[$n]//,/ }; do
    d=$(norm "$d")
    [ -n "${builtin[$d]:-}" ] && continue
    deps_closure "$d"
    if [ -z "${closure[$d]:-}" ]; then closure[$d]=1; echo "$d"; fi
  done
}
mod_list=""
for n in "${load_order[@]}"; do
  p=${mod_path[$n]}
  mkdir -p "$root/lib/modules/$kver/$(dirname "$p")"
  install -m 0644 "$moddir/$p" "$root/lib/modules/$kver/$p"
  echo "$p" >> "$root/etc/ftsync/modules"
  closure=()
  line="$p:"
  deps=$(deps_closure "$n" | tac)
  for d in $deps; do line="$line ${mod_path[$d]}"; done
  echo "$line" >> "$root/lib/modules/$kver/modules.dep"
  mod_list="$mod_list $n"
done
echo "$kver" > "$root/etc/ftsync/kernel-version"
log "kernel $kver ($deb_pkg $deb_ver), modules:$mod_list"

# Reproducible archive: fixed owner, fixed mtimes, sorted names, no gzip name/time.
find "$root" -exec touch -h -d @0 {} +
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort |
   cpio -o -H newc -R 0:0 --reproducible --quiet) | gzip -9 -n > "$work/initrd.gz" \
  || die "cpio/gzip failed"

install -m 0644 "$work/kernel/boot/vmlinuz-$kver" "$out/vmlinuz.tmp"
mv -f "$out/vmlinuz.tmp" "$out/vmlinuz"
mv -f "$work/initrd.gz" "$out/initrd.gz"
echo "$kver" > "$out/kernel-version"
printf '%s\n' "$stamp_text" > "$stamp"
log "built $out/vmlinuz ($(stat -c %s "$out/vmlinuz") bytes) and $out/initrd.gz ($(stat -c %s "$out/initrd.gz") bytes)"
