#!/usr/bin/env bash
# Make sure the local PostgreSQL and RabbitMQ answer; start them if they are installed
# but stopped. (With Docker instead, `make up` starts both.)
set -euo pipefail

up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! up 5432; then
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    echo "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
  else
    echo "PostgreSQL is not reachable on 127.0.0.1:5432 and not installed here" >&2; exit 1
  fi
fi
if ! up 5672; then
  if command -v rabbitmq-server >/dev/null 2>&1; then
    echo "starting RabbitMQ"
    rabbitmq-server -detached
  else
    echo "RabbitMQ is not reachable on 127.0.0.1:5672 and not installed here" >&2; exit 1
  fi
fi
for i in $(seq 1 60); do
  if up 5432 && up 5672; then exit 0; fi
  sleep 1
done
echo "PostgreSQL or RabbitMQ did not come up within 60 s" >&2
exit 1
