# A private Postgres cluster (initdb + pg_ctl) in a directory of our own, on loopback only,
# so nothing depends on a system service. Source, don't run.
# shellcheck shell=bash

pg_bindir() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  return 1
}

# Makes sure initdb/pg_ctl exist (Debian's postgresql package).
pg_ensure_installed() {
  pg_bindir >/dev/null || apt_ensure postgresql
  pg_bindir >/dev/null || die "initdb not found after installing postgresql"
}

# Runs a Postgres binary as the user that owns the cluster: initdb refuses to run as
# root, so as root we run as the 'postgres' system user the package creates.
pg_run() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# pg_start DATADIR PORT LOGFILE: creates the cluster if DATADIR is empty, starts it on
# 127.0.0.1:PORT with trust auth for loopback, and creates role+database 'shortener'.
pg_start() {
  local data=$1 port=$2 logfile=$3 bindir
  bindir=$(pg_bindir)
  mkdir -p "$(dirname "$data")"
  if [ "$(id -u)" -eq 0 ]; then
    mkdir -p "$data"
    chown postgres:postgres "$data" "$(dirname "$logfile")" 2>/dev/null || true
    chmod 700 "$data"
    # postgres must be able to reach the directory that holds the data dir.
    local p; p=$(dirname "$data")
    while [ "$p" != "/" ]; do chmod o+x "$p" 2>/dev/null || true; p=$(dirname "$p"); done
    touch "$logfile"; chown postgres:postgres "$logfile"
  fi
  if [ ! -s "$data/PG_VERSION" ]; then
    log "initdb $data"
    pg_run "$bindir/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null
  fi
  if pg_run "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    log "postgres already running in $data"
  else
    pg_run "$bindir/pg_ctl" -D "$data" -l "$logfile" -w -t 60 \
      -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$data -c fsync=off -c max_connections=200" \
      start >/dev/null || { tail -20 "$logfile" >&2; die "postgres failed to start"; }
  fi
  local psql="$bindir/psql -h 127.0.0.1 -p $port -U postgres -d postgres -qtA"
  $psql -c "SELECT 1 FROM pg_roles WHERE rolname='shortener'" | grep -q 1 \
    || $psql -c "CREATE ROLE shortener LOGIN CREATEDB" >/dev/null
  $psql -c "SELECT 1 FROM pg_database WHERE datname='shortener'" | grep -q 1 \
    || $psql -c "CREATE DATABASE shortener OWNER shortener" >/dev/null
}

# pg_port DATADIR: the port a running cluster in DATADIR listens on.
pg_port() {
  head -4 "$1/postmaster.pid" 2>/dev/null | tail -1
}

pg_stop() {
  local data=$1 bindir
  bindir=$(pg_bindir) || return 0
  [ -s "$data/PG_VERSION" ] || return 0
  pg_run "$bindir/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true
}
