# OLTP database (stand-in for the paper's TPC-E): PostgreSQL 15 with pgbench's
# TPC-B-like transactions, driven inside the guest.
# Sourced by lib/build-image.sh (host; WL_PACKAGES, wl_prepare in a chroot)
# and by the guest init (wl_start, wl_load). See README.md.
WL_DESCRIPTION="PostgreSQL 15 + pgbench (TPC-B-like, scale 10, 4 clients)"
WL_PACKAGES="postgresql-15"
WL_RAM_MB=512        # guest RAM
WL_SECONDS=60        # guest time of the load

PG=/usr/lib/postgresql/15/bin
PGDATA=/var/lib/postgresql/15/main
PGCONF=/etc/postgresql/15/main/postgresql.conf
pg() { su postgres -s /bin/sh -c "$*"; }
pg_start() {
  mkdir -p /run/postgresql && chown postgres:postgres /run/postgresql
  pg "$PG/pg_ctl -D $PGDATA -o '-c config_file=$PGCONF' -w -t 300 -l /tmp/postgres.log start"
}

# At image build time, at host speed: the database (160 MB at scale 10).
wl_prepare() {
  pg_start
  pg "$PG/createdb bench"
  pg "$PG/pgbench -i -q -s 10 bench"
  pg "$PG/pg_ctl -D $PGDATA -w stop"
}

wl_start() {
  pg_start
  # Warm the cache so the measured part is the steady state, not first reads.
  pg "$PG/psql -q -d bench -c 'select count(*) from pgbench_accounts'"
}

wl_load() {
  pg "$PG/pgbench -n -c 4 -j 1 -T $WL_SECONDS -P 10 bench"
}
