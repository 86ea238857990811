#!/usr/bin/env bash
# `make stack`: the docker-compose.yml topology as local processes, for machines without Docker.
#
#   S3       moto_server on 127.0.0.1; the app calls http://127.0.0.1:PORT, presigned URLs name
#            http://localhost:PORT (another host name, as http://s3:7070 vs http://localhost:7070 in compose)
#   SMTP     an aiosmtpd sink (messages kept as a maildir), MAIL_BACKEND=smtp
#   Redis    a private redis-server on its own port (DBs 0 and 1; the shared Redis' 16 DBs are all
#            spoken for: 0-1 `make run`, 2-9 tests, 10-15 benchmarks)
#   Postgres the local server, database codex_stack (dropped and migrated afresh each start: the
#            moto server keeps objects in memory only, so old rows would point at nothing)
#   Codex    release (migrations) and the demo seed, then every other Procfile process, each run by
#            scripts/procfile-exec.sh from the Procfile itself (flower's port and the working
#            directory are the only changes: everything runs in a temporary directory)
#
#   scripts/stack.sh           run in the foreground, print the URLs, follow the logs; Ctrl-C stops all
#   scripts/stack.sh --check   start on free ports, run the README walkthrough (scripts/demo-walkthrough.sh),
#                              play the stream with ffmpeg, wait for the receipt email, stop; exit 0 if all passed
#
# Needs the dev tools on PATH (`make stack` puts .venv/bin first), PostgreSQL at DATABASE_URL's host,
# redis-server, ffmpeg and curl. Ports for the foreground mode: STACK_WEB_PORT (5100),
# STACK_FLOWER_PORT (5655), STACK_S3_PORT (7070), STACK_SMTP_PORT (1125), STACK_REDIS_PORT (56379).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
MODE=run
case "${1:-}" in
  "") ;;
  --check) MODE=check ;;
  -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "stack: unknown argument: $1" >&2; exit 2 ;;
esac

say() { echo "stack: $*"; }
die() { echo "stack: ERROR: $*" >&2; exit 1; }

for tool in python flask celery gunicorn alembic moto_server redis-server ffmpeg curl setsid; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found (make stack installs the dev tools; redis-server, ffmpeg: apt-get)"
done

free_port() { python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if [ "$MODE" = check ]; then
  WEB_PORT=$(free_port); FLOWER_PORT=$(free_port); S3_PORT=$(free_port); SMTP_PORT=$(free_port)
  REDIS_PORT=$(free_port)
  DB_NAME=codex_stack_check_$$
else
  WEB_PORT=${STACK_WEB_PORT:-5100}; FLOWER_PORT=${STACK_FLOWER_PORT:-5655}; S3_PORT=${STACK_S3_PORT:-7070}
  SMTP_PORT=${STACK_SMTP_PORT:-1125}; REDIS_PORT=${STACK_REDIS_PORT:-56379}
  DB_NAME=codex_stack
fi
for port in "$WEB_PORT" "$FLOWER_PORT" "$S3_PORT" "$SMTP_PORT" "$REDIS_PORT"; do
  if port_open "$port"; then die "port $port is in use (see the STACK_*_PORT variables in $0)"; fi
done

RUN=$(mktemp -d -t codex-stack.XXXXXX)
mkdir -p "$RUN/logs" "$RUN/var"

# ---- the environment every Codex process gets (as docker-compose.yml's x-app-env) ----------

BASE_DATABASE_URL=${DATABASE_URL:-postgresql+psycopg://localhost:5432/codex}
DATABASE_URL=$(python -c 'import sys; from sqlalchemy.engine import make_url
print(make_url(sys.argv[1]).set(database=sys.argv[2]).render_as_string(hide_password=False))' \
  "$BASE_DATABASE_URL" "$DB_NAME")
export DATABASE_URL
export APP_ENV=development
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0" CELERY_BROKER_URL="redis://127.0.0.1:$REDIS_PORT/1"
export PORT=$WEB_PORT PUBLIC_BASE_URL="http://localhost:$WEB_PORT" FLOWER_PORT
export STORAGE_BACKEND=s3 S3_BUCKET=codex-media S3_REGION=us-east-1
export S3_ENDPOINT_URL="http://127.0.0.1:$S3_PORT" S3_PUBLIC_ENDPOINT_URL="http://localhost:$S3_PORT"
export AWS_ACCESS_KEY_ID=codex AWS_SECRET_ACCESS_KEY=codex-stack-secret
export MAIL_BACKEND=smtp MAIL_SERVER=127.0.0.1 MAIL_PORT=$SMTP_PORT
export LOG_FORMAT=${LOG_FORMAT:-console}
# The walkthrough pays on the local payment page, whatever Stripe key the shell may hold.
export PAYMENT_PROVIDER=local

# ---- processes: each in its own process group, stopped together --------------------------

PIDS=()
NAMES=()
TAIL_PID=""
FAILED=0

# start NAME COMMAND...: runs in $RUN, output to logs/NAME.log.
start() {
  local name=$1
  shift
  (cd "$RUN" && exec setsid "$@") >"$RUN/logs/$name.log" 2>&1 &
  PIDS+=("$!")
  NAMES+=("$name")
}

alive() { kill -0 -- "-$1" 2>/dev/null; }

drop_database() {
  python - "$BASE_DATABASE_URL" "$DB_NAME" <<'EOF' || say "could not drop database $DB_NAME"
import sys
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

admin = create_engine(make_url(sys.argv[1]).set(database="postgres"), isolation_level="AUTOCOMMIT")
with admin.connect() as conn:
    conn.execute(text(f'DROP DATABASE IF EXISTS "{sys.argv[2]}" WITH (FORCE)'))
admin.dispose()
EOF
}

cleanup() {
  local status=$? i pid deadline
  trap - EXIT INT TERM
  if [ -n "$TAIL_PID" ]; then kill "$TAIL_PID" 2>/dev/null || true; fi
  if [ ${#PIDS[@]} -gt 0 ]; then
    say "stopping ${NAMES[*]}"
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill -TERM -- "-${PIDS[i]}" 2>/dev/null || true; done
    deadline=$((SECONDS + 20))
    for pid in "${PIDS[@]}"; do
      while alive "$pid" && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
      if alive "$pid"; then kill -KILL -- "-$pid" 2>/dev/null || true; fi
    done
    wait 2>/dev/null || true
  fi
  if [ "$MODE" = check ]; then
    drop_database
    if [ "$status" = 0 ] && [ "$FAILED" = 0 ]; then
      rm -rf "$RUN"
    else
      for log in "$RUN"/logs/*.log; do
        echo "---- $(basename "$log") (last 15 lines)"
        tail -n 15 "$log"
      done
      say "logs kept in $RUN/logs"
    fi
  else
    say "logs in $RUN/logs"
    if [ "$status" = 130 ] && [ "$FAILED" = 0 ]; then status=0; fi  # Ctrl-C is how it ends
  fi
  say "stopped"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_until SECONDS DESCRIPTION COMMAND...: poll every 0.5 s.
wait_until() {
  local limit=$1 what=$2 deadline
  shift 2
  deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "$what did not come up within ${limit}s (logs: $RUN/logs)"
    sleep 0.5
  done
}

# Every started process must still be running (a crash fails the stack like honcho would).
check_alive() {
  local i
  for i in "${!PIDS[@]}"; do
    alive "${PIDS[i]}" || { FAILED=1; die "${NAMES[i]} exited (log: $RUN/logs/${NAMES[i]}.log)"; }
  done
}

# ---- edge services -------------------------------------------------------------------------

say "run directory $RUN"
start redis redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no --dir "$RUN"
start s3 moto_server -H 127.0.0.1 -p "$S3_PORT"
# aiosmtpd's Mailbox handler creates the maildir (it must not exist yet).
start smtp python -m aiosmtpd -n -l "127.0.0.1:$SMTP_PORT" -c aiosmtpd.handlers.Mailbox "$RUN/maildir"
wait_until 30 "redis-server" port_open "$REDIS_PORT"
wait_until 30 "moto_server" port_open "$S3_PORT"
wait_until 30 "the SMTP sink" port_open "$SMTP_PORT"

# The bucket: docker-compose.yml's createbucket command.
python -c 'import os; from app.storage.s3 import S3Storage; S3Storage.from_config(os.environ).ensure_bucket(); print("bucket ready")' \
  >"$RUN/logs/createbucket.log" 2>&1 || die "creating the bucket failed (log: $RUN/logs/createbucket.log)"

# ---- one-shots: release (migrations) and the demo seed -------------------------------------

drop_database
say "release: migrating $DB_NAME"
(cd "$ROOT" && scripts/procfile-exec.sh release) >"$RUN/logs/release.log" 2>&1 \
  || die "release failed (log: $RUN/logs/release.log)"
say "seed: loading the demo data (ffmpeg ingests two clips)"
(cd "$RUN" && flask --app app codex seed) >"$RUN/logs/seed.log" 2>&1 || die "seed failed (log: $RUN/logs/seed.log)"
if [ "$MODE" = run ]; then cat "$RUN/logs/seed.log"; fi

# ---- the long-running Procfile processes ---------------------------------------------------

# Flower's port is fixed in the Procfile; everything else is read from it unchanged.
sed "s/--port=5555/--port=$FLOWER_PORT/" "$ROOT/Procfile" >"$RUN/Procfile"
export PROCFILE="$RUN/Procfile"
mapfile -t PROCESSES < <(sed -n 's/^\([A-Za-z0-9_-]*\):.*/\1/p' "$PROCFILE" | grep -vx release)
for name in "${PROCESSES[@]}"; do
  start "$name" "$ROOT/scripts/procfile-exec.sh" "$name"
done

wait_until 90 "web (GET /health)" curl -fsS "http://127.0.0.1:$WEB_PORT/health"
if printf '%s\n' "${PROCESSES[@]}" | grep -qx flower; then
  wait_until 90 "flower" curl -fsS "http://127.0.0.1:$FLOWER_PORT/healthcheck"
fi
(cd "$RUN" && timeout 90 flask --app app codex ping --timeout 60) || die "no worker answered a ping"
check_alive

cat <<EOF
stack: up — ${PROCESSES[*]} (+ redis, s3, smtp)
stack: ports web=$WEB_PORT flower=$FLOWER_PORT s3=$S3_PORT smtp=$SMTP_PORT redis=$REDIS_PORT
  API       http://localhost:$WEB_PORT   (docs: /api/v1/docs)
  Flower    http://localhost:$FLOWER_PORT
  S3        $S3_ENDPOINT_URL (app) / $S3_PUBLIC_ENDPOINT_URL (presigned URLs), bucket $S3_BUCKET
  mail      SMTP 127.0.0.1:$SMTP_PORT -> $RUN/maildir/new
  database  $DB_NAME, Redis 127.0.0.1:$REDIS_PORT
  walkthrough: CODEX_URL=http://localhost:$WEB_PORT scripts/demo-walkthrough.sh
EOF

if [ "$MODE" = run ]; then
  say "following the logs; Ctrl-C stops everything"
  tail -n 0 -F "$RUN"/logs/*.log &
  TAIL_PID=$!
  while true; do
    check_alive
    sleep 2
  done
fi

# ---- --check: the README walkthrough, a player, the mail -----------------------------------

say "check: the README walkthrough (scripts/demo-walkthrough.sh)"
CODEX_URL="http://localhost:$WEB_PORT" timeout 180 "$ROOT/scripts/demo-walkthrough.sh" >"$RUN/walkthrough.log" 2>&1 \
  || { FAILED=1; cat "$RUN/walkthrough.log"; die "the walkthrough failed"; }
WORKDIR=$(sed -n 's/^working directory: //p' "$RUN/walkthrough.log")
for expected in "first segment: 200" "PUT progress: 204" "revenue.svg: 200"; do
  grep -q "$expected" "$RUN/walkthrough.log" || { FAILED=1; cat "$RUN/walkthrough.log"; die "walkthrough: no '$expected'"; }
done

MANIFEST=$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["manifest_url"])' "$WORKDIR/stream.json")
curl -fsS -o "$RUN/master.m3u8" "$MANIFEST"
VARIANT=$(grep -m 1 -v '^#' "$RUN/master.m3u8")
curl -fsS -o "$RUN/variant.m3u8" "$VARIANT"
SEGMENT=$(grep -m 1 -v '^#' "$RUN/variant.m3u8")
case "$SEGMENT" in
  "$S3_PUBLIC_ENDPOINT_URL"/*) say "check: segments are presigned for the public S3 endpoint ($S3_PUBLIC_ENDPOINT_URL)" ;;
  *) FAILED=1; die "segment URL does not name the public S3 endpoint: $SEGMENT" ;;
esac
say "check: ffmpeg plays the stream"
timeout 120 ffmpeg -nostdin -v error -i "$MANIFEST" -f null - || { FAILED=1; die "ffmpeg could not play $MANIFEST"; }

say "check: the purchase receipt reached the SMTP server"
wait_until 60 "an email in the SMTP sink" compgen -G "$RUN/maildir/new/*"
# The worker runs as the Procfile starts it (no -l): its INFO lines are there (LOG_LEVEL, INFO by
# default), the email task's included, with the task id bound (jobs.md's logging row).
say "check: the worker logged the sent email at INFO"
wait_until 10 "email.sent in the worker's log" grep -q "email.sent.*task_id=" "$RUN/logs/worker.log"
check_alive
rm -rf "$WORKDIR"
say "check passed"
