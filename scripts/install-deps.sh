#!/bin/sh
# Installs the Debian packages ftsync needs, only those missing. Idempotent.
#   scripts/install-deps.sh build   compilers, libraries, test framework
set -eu
pkgs="g++ gcc make pkg-config libxen-dev libnl-3-dev libnl-route-3-dev libboost-dev zlib1g-dev catch2 libxxhash-dev libzstd-dev libssl-dev openssl nlohmann-json3-dev qemu-system-x86 iproute2 python3 busybox-static cpio gzip libc6-dev"
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "install-deps: installing:$missing"
if [ "$(id -u)" != 0 ]; then
  echo "install-deps: need root to install:$missing (run as root or install them)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing
