#!/usr/bin/env bash
# Start the services the tests need (PostgreSQL, Mosquitto on loopback) when they are not up.
set -euo pipefail
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  echo "services: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
# The tests connect as postgres over TCP on loopback without a password.
if ! psql -h 127.0.0.1 -U postgres -c 'select 1' -qtA >/dev/null 2>&1; then
  hba=$(ls /etc/postgresql/*/main/pg_hba.conf | head -1)
  echo "host all all 127.0.0.1/32 trust" > /tmp/hba && cat "$hba" >> /tmp/hba && cp /tmp/hba "$hba"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main reload
fi
if ! (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; then
  echo "services: starting Mosquitto"
  mosquitto -d -c /etc/mosquitto/mosquitto.conf
  sleep 0.5
fi
