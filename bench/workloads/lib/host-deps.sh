#!/bin/bash
# Debian packages the workload benchmark needs on the host (installs the
# missing ones): the evaluator's codecs, QEMU, the image tools, the plots.
set -euo pipefail
pkgs="libzstd-dev liblz4-dev qemu-system-x86 debootstrap e2fsprogs busybox-static cpio python3-matplotlib"
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
[ "$(id -u)" = 0 ] || { echo "bench-workloads: missing Debian packages:$missing (run as root)" >&2; exit 1; }
echo "bench-workloads: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends $missing >&2 ||
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing >&2; }
