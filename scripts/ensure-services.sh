#!/usr/bin/env bash
# Make sure PostgreSQL, Redis and NATS JetStream run on loopback; install them from Debian if absent.
# Used by `make test`. Idempotent: a service that already answers is left alone.
set -euo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  for _ in $(seq 1 60); do port_open "$1" && return 0; sleep 0.5; done
  echo "ensure-services: $2 did not start on 127.0.0.1:$1" >&2; return 1
}

apt_updated=0
need_pkg() {
  # need_pkg BINARY PACKAGE...
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "$apt_updated" = 0 ]; then apt-get update -qq; apt_updated=1; fi
  shift
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! port_open 5432; then
  need_pkg pg_ctlcluster postgresql
  ver=$(ls /etc/postgresql | sort -V | tail -n 1)
  # trust auth on loopback, as the test suite expects
  hba=/etc/postgresql/$ver/main/pg_hba.conf
  if ! grep -q "aima-trust" "$hba" 2>/dev/null; then
    sed -i '1i host all all 127.0.0.1/32 trust # aima-trust\nhost all all ::1/128 trust # aima-trust\nlocal all all trust # aima-trust' "$hba"
  fi
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
  wait_port 5432 PostgreSQL
fi

if ! port_open 6379; then
  need_pkg redis-server redis-server
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_port 6379 Redis
fi

if ! port_open 4222; then
  need_pkg nats-server nats-server
  mkdir -p /var/lib/nats-server
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  wait_port 4222 "NATS JetStream"
fi
echo "ensure-services: PostgreSQL, Redis and NATS JetStream answer on 127.0.0.1"
