#!/usr/bin/env bash
# `make run`: the whole of Sundial on this machine, in the foreground, with a demo.
#
#   0. stop at once, touching nothing, if a `make run` on the same database is running
#      or something listens on API_PORT (and say where)
#   1. migrate (creating the database if needed)
#   2. create the admin key "demo-admin" and print it (a fresh one on every run; the
#      previous demo-admin key is revoked, so only the key printed last works)
#   3. load the demo jobs (left as they are when they exist already), and write the jobs
#      examples/reports.py declares with `sundial sync`
#   4. start the API, the worker and the scheduler, each log line prefixed with its service
#   5. Ctrl-C (SIGINT) or SIGTERM: SIGTERM to all three, wait for them, exit 0
#      (a second Ctrl-C kills them at once); each service runs in a session of its own, so
#      the terminal's Ctrl-C reaches this script only
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
# The README's python job (reports.daily) lives in examples/reports.py.
export WORKER_IMPORTS="${WORKER_IMPORTS-reports}"
export PYTHONPATH="$PWD/examples${PYTHONPATH:+:$PYTHONPATH}"

SUNDIAL="${SUNDIAL:-.venv/bin/sundial}"
if [ ! -x "$SUNDIAL" ]; then
  SUNDIAL="$(command -v sundial || true)"
  [ -n "$SUNDIAL" ] || { echo "run-local: no sundial command; run \`make install\` first" >&2; exit 1; }
fi
PYTHON="$(dirname "$SUNDIAL")/python"
[ -x "$PYTHON" ] || PYTHON=python3

say() { printf 'run-local | %s\n' "$*"; }

# --- 0. one `make run` per database and port ---------------------------------------------------
# A second one would revoke the first one's admin key, then fail on the busy port: it says
# where the first one is and leaves it alone. The lock is held while this script runs.
database="${DATABASE_URL:-postgresql://${POSTGRES_USER:-}@${POSTGRES_HOST:-}:${POSTGRES_PORT:-}/${POSTGRES_DB:-}}"
lock="${TMPDIR:-/tmp}/sundial-run-$(printf '%s' "$database" | cksum | cut -d' ' -f1).lock"
exec {lockfd}<>"$lock"
if ! flock -n "$lockfd"; then
  say "Sundial is already running on this database under \`make run\` (pid $(head -n 1 "$lock"), $(sed -n 2p "$lock")); it is left alone."
  say "Stop it with Ctrl-C in its terminal, or start a second one with another DATABASE_URL and API_PORT."
  exit 1
fi
if (exec 3<>"/dev/tcp/${API_HOST}/${API_PORT}") 2>/dev/null; then
  say "something already listens on ${API_HOST}:${API_PORT} (another Sundial API?); it is left alone."
  say "Stop it, or choose another port: API_PORT=8001 make run"
  exit 1
fi
printf '%s\ndashboard http://%s:%s/\n' "$$" "$API_HOST" "$API_PORT" >"$lock"

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
say "writing the jobs examples/reports.py declares (sundial sync)"
"$SUNDIAL" sync

# --- 4. the services -------------------------------------------------------------------------
names=() pids=() prefixers=()

# Copy stdin to stdout, each line as "<service> | <line>". Ctrl-C is for the services:
# a prefixer keeps reading until its service has written its last line.
prefix() {
  trap '' INT TERM
  exec {lockfd}>&-
  local line
  while IFS= read -r line || [ -n "$line" ]; do
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
  # A session of its own: Ctrl-C reaches this script only, which stops the services in
  # order (SIGTERM) and can tell a stop it asked for from a service that ended by itself.
  setsid "$SUNDIAL" "$@" >&"$out" 2>&"$err" {lockfd}>&- &
  pids+=($!)
  names+=("$name")
  exec {out}>&- {err}>&-
}

alive() { kill -0 "$1" 2>/dev/null; }

stopping=""
stop() {  # $1: why
  if [ -n "$stopping" ]; then
    say "$1 again: stopping now (SIGKILL)"
    kill -KILL "${pids[@]}" 2>/dev/null || true
    return
  fi
  stopping=1
  say "$1: stopping scheduler, worker and API (SIGTERM; Ctrl-C again to kill them)"
  kill -TERM "${pids[@]}" 2>/dev/null || true
}
trap 'stop Ctrl-C' INT
trap 'stop SIGTERM' TERM
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
  │   python jobs examples/reports.py (reports.daily), imported by the worker;
  │               its declared jobs (reports.summary, reports.cleanup) by \`sundial sync\`
  │   try         source .venv/bin/activate; sundial status; sundial runs list
  │ Ctrl-C stops everything.
  └──────────────────────────────────────────────────────────────────────────────

EOF
fi

# Until Ctrl-C, or until a service ends by itself (then the others are stopped too).
while [ -z "$stopping" ]; do
  for i in "${!pids[@]}"; do
    if ! alive "${pids[$i]}"; then
      stop "${names[$i]} exited on its own"
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
