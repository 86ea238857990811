#!/usr/bin/env bash
# Make sure the services Codex needs are reachable: PostgreSQL at DATABASE_URL and Redis at
# REDIS_URL / CELERY_BROKER_URL (defaults: the app's embedded ones). Local services that are
# down are started (and installed from Debian packages when missing); remote ones are only
# checked. A fast no-op when everything already answers.
#
#   scripts/ensure-services.sh [--with-ffmpeg]
#
#   --with-ffmpeg   also make sure ffmpeg/ffprobe are installed (media tests need them)
set -euo pipefail

WAIT_SECONDS=${WAIT_SECONDS:-30}
WITH_FFMPEG=0
for arg in "$@"; do
  case "$arg" in
    --with-ffmpeg) WITH_FFMPEG=1 ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "ensure-services: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

cd "$(dirname "$0")/.."

say() { echo "ensure-services: $*"; }
die() { echo "ensure-services: ERROR: $*" >&2; exit 1; }

# ---- privileges and packages ------------------------------------------------------------

SUDO=()
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo)
fi
can_admin() { [ "$(id -u)" = 0 ] || [ ${#SUDO[@]} -gt 0 ]; }

APT_UPDATED=0
apt_install() {
  can_admin || die "need root or sudo to install: $*"
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install these yourself: $*"
  if [ "$APT_UPDATED" = 0 ]; then
    say "apt-get update"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    APT_UPDATED=1
  fi
  say "apt-get install $*"
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Run a command as the postgres OS user (peer authentication over the local socket).
as_postgres() {
  if [ "$(id -u)" = 0 ]; then
    (cd / && runuser -u postgres -- "$@")
  else
    (cd / && sudo -u postgres -- "$@")
  fi
}

# ---- configuration ----------------------------------------------------------------------

# The app loads .env in development; read the same variables from it when the environment
# does not set them, so the script checks the services the app will use.
from_dotenv() {
  local name=$1 line
  [ -f .env ] || return 0
  line=$(grep -E "^[[:space:]]*(export[[:space:]]+)?${name}=" .env | tail -n 1 || true)
  [ -n "$line" ] || return 0
  line=${line#*=}
  line=${line%\"}; line=${line#\"}; line=${line%\'}; line=${line#\'}
  printf '%s' "$line"
}
for name in DATABASE_URL REDIS_URL CELERY_BROKER_URL; do
  if [ -z "${!name:-}" ]; then
    value=$(from_dotenv "$name")
    if [ -n "$value" ]; then printf -v "$name" '%s' "$value"; fi
  fi
done
DATABASE_URL=${DATABASE_URL:-postgresql+psycopg://localhost:5432/codex}
REDIS_URL=${REDIS_URL:-redis://localhost:6379/0}
CELERY_BROKER_URL=${CELERY_BROKER_URL:-redis://localhost:6379/1}

# parse_url URL DEFAULT_PORT -> sets URL_USER URL_PASSWORD URL_HOST URL_PORT
parse_url() {
  local rest=${1#*://} default_port=$2 userinfo="" hostport
  rest=${rest%%/*}
  rest=${rest%%\?*}
  if [[ $rest == *@* ]]; then
    userinfo=${rest%@*}
    hostport=${rest##*@}
  else
    hostport=$rest
  fi
  URL_USER=${userinfo%%:*}
  URL_PASSWORD=""
  [[ $userinfo == *:* ]] && URL_PASSWORD=${userinfo#*:}
  if [[ $hostport == \[*\]* ]]; then           # [::1]:5432
    URL_HOST=${hostport%%]*}; URL_HOST=${URL_HOST#[}
    URL_PORT=${hostport##*]}; URL_PORT=${URL_PORT#:}
  else
    URL_HOST=${hostport%%:*}
    URL_PORT=""
    [[ $hostport == *:* ]] && URL_PORT=${hostport##*:}
  fi
  URL_HOST=${URL_HOST:-localhost}
  URL_PORT=${URL_PORT:-$default_port}
}

is_local() {
  case "$1" in localhost|127.*|::1|0.0.0.0|"$(hostname 2>/dev/null || echo localhost)") return 0 ;; esac
  return 1
}

tcp_open() { timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

# wait_for DESCRIPTION CHECK_FUNCTION ARGS...: poll once a second, at most WAIT_SECONDS.
wait_for() {
  local what=$1 i; shift
  for ((i = 0; i < WAIT_SECONDS; i++)); do
    "$@" && return 0
    sleep 1
  done
  die "$what did not answer within ${WAIT_SECONDS}s"
}

# ---- PostgreSQL -------------------------------------------------------------------------

pg_ready() {
  if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -h "$1" -p "$2" -t 2
  else
    tcp_open "$1" "$2"
  fi
}

# A psql connection string to the maintenance database with the URL's user and password.
pg_login_ok() {
  command -v psql >/dev/null 2>&1 || return 0  # no client: the migration will tell
  local conn="host=$1 port=$2 dbname=postgres connect_timeout=3"
  [ -n "$URL_USER" ] && conn="$conn user=$URL_USER"
  PGPASSWORD="$URL_PASSWORD" psql "$conn" -Atqc 'select 1' >/dev/null 2>&1
}

start_postgres() {
  local port=$1 version="" cluster="" line
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    apt_install postgresql
  fi
  can_admin || die "PostgreSQL is down and starting it needs root or sudo"
  # Prefer the cluster configured for the URL's port; else the first one.
  while read -r v name p _; do
    if [ "$p" = "$port" ]; then version=$v; cluster=$name; break; fi
  done < <(pg_lsclusters -h 2>/dev/null || true)
  if [ -z "$version" ] && [ -n "$(ls /etc/postgresql 2>/dev/null)" ]; then
    version=$(ls /etc/postgresql | head -1)
    cluster=main
  fi
  if [ -z "$version" ] || [ ! -d "/etc/postgresql/$version/$cluster" ]; then
    version=$(ls /usr/lib/postgresql | sort -V | tail -1)
    cluster=main
    say "creating PostgreSQL cluster $version/$cluster on port $port"
    "${SUDO[@]}" pg_createcluster "$version" "$cluster" -p "$port" >/dev/null
  fi
  say "starting PostgreSQL cluster $version/$cluster"
  line=$("${SUDO[@]}" pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" start 2>&1) || {
    # "already running" is fine; anything else is reported.
    [[ $line == *"already running"* ]] || die "pg_ctlcluster failed: $line"
  }
}

# A fresh Debian cluster only knows the role "postgres" and wants passwords over TCP, while the
# default DATABASE_URL logs in as the current OS user without one. On a local development
# machine, create that role (superuser: migrations and tests create databases) and, when the
# URL carries no password, let local TCP logins in without one.
bootstrap_postgres_login() {
  local host=$1 port=$2 role=${URL_USER:-$(id -un)} hba
  can_admin && id postgres >/dev/null 2>&1 || die "cannot log in to PostgreSQL at $host:$port as $role"
  command -v psql >/dev/null 2>&1 || return 0
  if ! as_postgres psql -p "$port" -d postgres -Atqc "select 1 from pg_roles where rolname = '$role'" | grep -q 1; then
    say "creating PostgreSQL role $role (login, superuser) for local development"
    if [ -n "$URL_PASSWORD" ]; then
      local q="'"
      as_postgres psql -p "$port" -d postgres -qc \
        "create role \"$role\" login superuser password '${URL_PASSWORD//$q/$q$q}'"
    else
      as_postgres psql -p "$port" -d postgres -qc "create role \"$role\" login superuser"
    fi
  fi
  pg_login_ok "$host" "$port" && return 0
  if [ -z "$URL_PASSWORD" ]; then
    hba=$(as_postgres psql -p "$port" -d postgres -Atqc 'show hba_file')
    say "allowing password-less local TCP logins in $hba (development machine)"
    "${SUDO[@]}" sed -i -e '1i host all all 127.0.0.1/32 trust' -e '1i host all all ::1/128 trust' "$hba"
    as_postgres psql -p "$port" -d postgres -Atqc 'select pg_reload_conf()' >/dev/null
    sleep 1
  fi
  pg_login_ok "$host" "$port" || die "still cannot log in to PostgreSQL at $host:$port as $role"
}

ensure_postgres() {
  parse_url "$DATABASE_URL" 5432
  local host=$URL_HOST port=$URL_PORT
  if pg_ready "$host" "$port"; then
    say "PostgreSQL at $host:$port: ok"
  else
    is_local "$host" || die "PostgreSQL at $host:$port is not reachable (not local: not starting it)"
    start_postgres "$port"
    wait_for "PostgreSQL at $host:$port" pg_ready "$host" "$port"
    say "PostgreSQL at $host:$port: started"
  fi
  if ! pg_login_ok "$host" "$port"; then
    is_local "$host" || die "cannot log in to PostgreSQL at $host:$port"
    bootstrap_postgres_login "$host" "$port"
  fi
}

# ---- Redis ------------------------------------------------------------------------------

redis_ready() {
  local reply=""
  if command -v redis-cli >/dev/null 2>&1; then
    reply=$(timeout 3 redis-cli -h "$1" -p "$2" ping 2>/dev/null || true)
    [ "$reply" = PONG ]
  else
    # RESP by hand: send PING, expect +PONG.
    timeout 3 bash -c "exec 3<>/dev/tcp/$1/$2 && printf 'PING\r\n' >&3 && read -r line <&3 && [[ \$line == +PONG* ]]" \
      2>/dev/null
  fi
}

ensure_redis() {
  local host=$1 port=$2
  if redis_ready "$host" "$port"; then
    say "Redis at $host:$port: ok"
    return 0
  fi
  is_local "$host" || die "Redis at $host:$port is not reachable (not local: not starting it)"
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server
  say "starting redis-server on 127.0.0.1:$port (no persistence)"
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$port" --save "" --appendonly no \
    --dir "${TMPDIR:-/tmp}" --logfile "${TMPDIR:-/tmp}/codex-redis-$port.log"
  wait_for "Redis at $host:$port" redis_ready "$host" "$port"
  say "Redis at $host:$port: started"
}

# ---- run --------------------------------------------------------------------------------

ensure_postgres

declare -A seen_redis=()
for url in "$REDIS_URL" "$CELERY_BROKER_URL"; do
  parse_url "$url" 6379
  key="$URL_HOST:$URL_PORT"
  [ -n "${seen_redis[$key]:-}" ] && continue
  seen_redis[$key]=1
  ensure_redis "$URL_HOST" "$URL_PORT"
done

if [ "$WITH_FFMPEG" = 1 ]; then
  if command -v "${FFMPEG_PATH:-ffmpeg}" >/dev/null 2>&1 && command -v "${FFPROBE_PATH:-ffprobe}" >/dev/null 2>&1; then
    say "ffmpeg/ffprobe: ok"
  else
    apt_install ffmpeg
    say "ffmpeg/ffprobe: installed"
  fi
fi
