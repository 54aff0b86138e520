#!/usr/bin/env bash
# `make run`: the whole of Sundial on this machine, in the foreground, with a demo.
#
#   1. migrate (creating the database if needed)
#   2. create the admin key "demo-admin" and print it (a fresh one on every run; the
#      previous demo-admin key is revoked, so only the key printed last works)
#   3. load the demo jobs (left as they are when they exist already)
#   4. start the API, the worker and the scheduler, each log line prefixed with its service
#   5. Ctrl-C (SIGINT) or SIGTERM: SIGTERM to all three, wait for them, exit 0
#      (a second Ctrl-C kills them at once)
#
# PostgreSQL and RabbitMQ must be reachable (`make services`, or `make up` with Docker).
# Every variable of docs/operations.md can be set in the environment; the demo's own
# defaults are below. The demo allows http jobs to reach loopback (127.0.0.0/8) so its
# health-check job can call the API: a deliberate exception to the default SSRF policy.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${DATABASE_URL:-}" ] && [ -z "${POSTGRES_HOST:-}" ]; then
  export DATABASE_URL=postgresql://postgres@127.0.0.1:5432/sundial
fi
if [ -z "${RABBITMQ_URL:-}" ] && [ -z "${RABBITMQ_HOST:-}" ]; then
  export RABBITMQ_URL=amqp://guest:guest@127.0.0.1:5672/
fi
export LOG_FORMAT="${LOG_FORMAT:-console}"
export API_HOST="${API_HOST:-127.0.0.1}"
export API_PORT="${API_PORT:-8000}"
export WORKER_HTTP_ALLOWED_NETWORKS="${WORKER_HTTP_ALLOWED_NETWORKS-127.0.0.0/8}"
export WORKER_SHUTDOWN_GRACE="${WORKER_SHUTDOWN_GRACE:-10}"

SUNDIAL="${SUNDIAL:-.venv/bin/sundial}"
if [ ! -x "$SUNDIAL" ]; then
  SUNDIAL="$(command -v sundial || true)"
  [ -n "$SUNDIAL" ] || { echo "run-local: no sundial command; run \`make install\` first" >&2; exit 1; }
fi
PYTHON="$(dirname "$SUNDIAL")/python"
[ -x "$PYTHON" ] || PYTHON=python3

say() { printf 'run-local | %s\n' "$*"; }

# --- 1. database -----------------------------------------------------------------------------
say "migrating the database"
"$SUNDIAL" migrate --create-database

# --- 2. the demo admin key -------------------------------------------------------------------
old_keys="$("$SUNDIAL" keys list --json | "$PYTHON" -c '
import json, sys
print(" ".join(str(k["id"]) for k in json.load(sys.stdin)
               if k["name"] == "demo-admin" and not k["revoked_at"]))')"
for id in $old_keys; do
  "$SUNDIAL" keys revoke "$id" >/dev/null
done
[ -z "$old_keys" ] || say "revoked the previous demo-admin key; its replacement is printed below"
ADMIN_KEY="$("$SUNDIAL" keys create --name demo-admin --role admin | tail -n 1)"

# --- 3. demo jobs ----------------------------------------------------------------------------
say "loading the demo jobs"
"$SUNDIAL" jobs add --exists-ok --name demo-heartbeat --handler noop --every 10 \
  --description "demo: does nothing, every 10 seconds"
"$SUNDIAL" jobs add --exists-ok --name demo-api-health --handler http --every 30 \
  --payload "{\"url\": \"http://127.0.0.1:${API_PORT}/health\", \"method\": \"GET\", \"expected_status\": 200}" \
  --description "demo: GET the API's own /health every 30 seconds"
"$SUNDIAL" jobs add --exists-ok --name demo-cron --handler sleep --payload '{"seconds": 1}' \
  --cron '*/1 * * * *' --timezone Europe/Paris \
  --description "demo: sleep 1 s at the start of every minute, Paris time"

# --- 4. the services -------------------------------------------------------------------------
names=() pids=() prefixers=()

# Copy stdin to stdout, each line as "<service> | <line>". Ctrl-C is for the services:
# a prefixer keeps reading until its service has written its last line.
prefix() {
  trap '' INT TERM
  local line
  while IFS= read -r line || [ -n "$line" ]; do
    # Log events at error level are written to both streams; show them once.
    if [ "$2" = err ] && [[ $line =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z\ \[ ]]; then
      continue
    fi
    printf '%-9s | %s\n' "$1" "$line"
  done
}

start() {
  local name=$1 out err
  shift
  exec {out}> >(prefix "$name" out)
  prefixers+=($!)
  exec {err}> >(prefix "$name" err)
  prefixers+=($!)
  "$SUNDIAL" "$@" >&"$out" 2>&"$err" &
  pids+=($!)
  names+=("$name")
  exec {out}>&- {err}>&-
}

alive() { kill -0 "$1" 2>/dev/null; }

stopping=""
stop() {
  if [ -n "$stopping" ]; then
    say "stopping now (SIGKILL)"
    kill -KILL "${pids[@]}" 2>/dev/null || true
    return
  fi
  stopping=1
  say "stopping scheduler, worker and API (SIGTERM; Ctrl-C again to kill them)"
  kill -TERM "${pids[@]}" 2>/dev/null || true
}
trap stop INT TERM
# Whatever ends this script, it leaves no service behind.
trap 'kill -KILL "${pids[@]}" 2>/dev/null || true' EXIT

set +e
start api api
# The demo's http job calls the API: let it listen before the first run is due.
for _ in $(seq 1 60); do
  (exec 3<>"/dev/tcp/127.0.0.1/${API_PORT}") 2>/dev/null && break
  alive "${pids[0]}" || break
  sleep 0.5
done
if [ -z "$stopping" ] && alive "${pids[0]}"; then
  start worker worker
  start scheduler scheduler
fi

if [ -z "$stopping" ] && alive "${pids[0]}"; then
  cat <<EOF

  ┌──────────────────────────────────────────────────────────────────────────────
  │ Sundial is running: scheduler, worker and API.
  │   dashboard   http://127.0.0.1:${API_PORT}/
  │   HTTP API    http://127.0.0.1:${API_PORT}/api/...   (OpenAPI: http://127.0.0.1:${API_PORT}/docs)
  │   admin key   ${ADMIN_KEY}
  │               (name demo-admin; shown once: the next \`make run\` replaces it)
  │   demo jobs   demo-heartbeat (noop, every 10 s), demo-api-health (http, every 30 s),
  │               demo-cron (sleep, every minute, Europe/Paris)
  │   try         .venv/bin/sundial status   ·   .venv/bin/sundial runs list
  │ Ctrl-C stops everything.
  └──────────────────────────────────────────────────────────────────────────────

EOF
fi

# Until Ctrl-C, or until a service ends by itself (then the others are stopped too).
while [ -z "$stopping" ]; do
  for i in "${!pids[@]}"; do
    if ! alive "${pids[$i]}"; then
      say "${names[$i]} exited on its own; stopping the others"
      stop
      break
    fi
  done
  [ -n "$stopping" ] || sleep 0.5
done

status=0
for i in "${!pids[@]}"; do
  wait "${pids[$i]}"
  code=$?
  # wait returns early (> 128) when a second Ctrl-C arrives: wait again.
  while [ "$code" -gt 128 ] && alive "${pids[$i]}"; do wait "${pids[$i]}"; code=$?; done
  # 0, or death by the SIGTERM/SIGINT that asked it to stop (uvicorn re-raises the signal
  # after its clean shutdown), is a clean stop; anything else is reported.
  case "$code" in
    0|130|143) ;;
    *) say "${names[$i]} exited with code $code"; status=1 ;;
  esac
done
for pid in "${prefixers[@]}"; do wait "$pid" 2>/dev/null; done
trap - EXIT
[ "$status" -eq 0 ] && say "stopped cleanly"
exit "$status"
