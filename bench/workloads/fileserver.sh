# File server (stand-in for the paper's SPECsfs 2008 CIFS): Samba serving a
# share that the guest's own kernel CIFS client mounts over loopback, with
# dbench (NetBench-like file operations) running on the mount, so every
# operation goes through an SMB3 client, the network stack and smbd.
# Sourced by lib/build-image.sh (host; WL_PACKAGES, wl_prepare in a chroot)
# and by the guest init (wl_start, wl_load). See README.md.
WL_DESCRIPTION="Samba (smbd) + kernel CIFS mount over loopback + dbench, 4 clients"
WL_PACKAGES="samba cifs-utils dbench"
WL_RAM_MB=512
WL_SECONDS=60

wl_prepare() {
  mkdir -p /srv/bench
  chmod 0777 /srv/bench
  cat > /etc/samba/smb.conf <<'CONF'
[global]
  server role = standalone server
  map to guest = Bad User
  guest account = nobody
  disable netbios = yes
  smb ports = 445
  interfaces = lo
  bind interfaces only = yes
  load printers = no
  printing = bsd
  printcap name = /dev/null
  log file = /var/log/samba/smbd.log
  max log size = 1000
[bench]
  path = /srv/bench
  read only = no
  guest ok = yes
  force user = root
CONF
  testparm -s /etc/samba/smb.conf > /dev/null
}

wl_start() {
  mkdir -p /run/samba /var/log/samba /var/lib/samba/private /mnt/bench
  smbd -D
  for i in $(seq 1 300); do
    mount -t cifs //127.0.0.1/bench /mnt/bench -o guest,vers=3.0,uid=0,gid=0 2>/dev/null && return 0
    sleep 0.2
  done
  echo "cannot mount //127.0.0.1/bench"
  return 1
}

wl_load() {
  # dbench adds a warm-up and a clean-up to -t; bound it by the guest clock
  # instead (its per-second lines report the throughput).
  timeout "$WL_SECONDS" dbench -D /mnt/bench -t 3600 -c /usr/share/dbench/client.txt 4
  [ $? -eq 124 ]
}
