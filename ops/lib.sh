# shellcheck shell=bash
# Shared by ops/stack and ops/test: settings, the virtual env, PostgreSQL, Redis, S3, and
# bookkeeping of everything we start so that it (and only it) is stopped again.
# Source it from bash 5; it defines functions and variables and starts nothing by itself.
# shellcheck disable=SC2034  # LAST_PID, PG_HOST, PG_PORT, S3_KIND are read by ops/stack

SLUICE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$SLUICE_ROOT/.venv"
PY="$VENV/bin/python"

# Defaults match db/settings.py.
: "${SLUICE_DATA_DIR:=$SLUICE_ROOT/.sluice}"
: "${SLUICE_DATABASE_URL:=postgresql+asyncpg://postgres@127.0.0.1:5432/sluice}"
: "${SLUICE_REDIS_URL:=redis://127.0.0.1:6379/0}"
: "${SLUICE_S3_ENDPOINT:=127.0.0.1:${SLUICE_S3_PORT:-9000}}"
: "${SLUICE_S3_ACCESS_KEY:=sluice-dev}"
: "${SLUICE_S3_SECRET_KEY:=sluice-dev-secret}"
: "${SLUICE_S3_BUCKET:=sluice}"
: "${SLUICE_S3_SECURE:=false}"
: "${SLUICE_STOP_TIMEOUT:=20}"
SLUICE_DATA_DIR=$(mkdir -p "$SLUICE_DATA_DIR" && cd "$SLUICE_DATA_DIR" && pwd)
LOG_DIR="$SLUICE_DATA_DIR/logs"
mkdir -p "$LOG_DIR"

say() { printf '\033[1;34m[sluice]\033[0m %s\n' "$*"; }
warn() { printf '\033[1;33m[sluice] warning:\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[sluice] error:\033[0m %s\n' "$*" >&2; exit 1; }
if [[ ! -t 1 || -n "${NO_COLOR:-}" ]]; then
    say() { printf '[sluice] %s\n' "$*"; }
    warn() { printf '[sluice] warning: %s\n' "$*" >&2; }
    die() { printf '[sluice] error: %s\n' "$*" >&2; exit 1; }
fi

# ---------------------------------------------------------------------------------------------
# Everything we start is recorded here; stop_started stops it all, children first, then the
# commands (a PostgreSQL we started with pg_ctl / pg_ctlcluster). Services that were already
# running are never recorded, so never stopped.
CHILD_PIDS=()     # process-group leaders (each child runs under setsid)
CHILD_NAMES=()
STOP_CMDS=()      # shell commands, run in reverse order after the children are gone
STOP_NAMES=()
_STOPPED=0

started_anything() { (( ${#CHILD_PIDS[@]} + ${#STOP_CMDS[@]} > 0 )); }

# start_child NAME LOGFILE COMMAND... — runs COMMAND in its own session (so Ctrl-C reaches only
# this script, which then stops children in order), output appended to LOGFILE.
start_child() {
    local name=$1 log=$2
    shift 2
    setsid "$@" >>"$log" 2>&1 </dev/null &
    CHILD_PIDS+=("$!")
    CHILD_NAMES+=("$name")
    LAST_PID=$!
}

on_stop() { STOP_NAMES+=("$1"); STOP_CMDS+=("$2"); }

_group_alive() { kill -0 -- "-$1" 2>/dev/null || kill -0 "$1" 2>/dev/null; }

# Children first (TERM to each, KILL to its whole process group after SLUICE_STOP_TIMEOUT), then commands.
# bash's own job-table chatter goes to stop.log; our messages go to stdout.
_stop_children() {
    local i pid deadline alive
    if (( ${#CHILD_PIDS[@]} )); then
        say "stopping ${CHILD_NAMES[*]}"
        # TERM to the leader only: it stops its own children in order (a second TERM straight to
        # Dramatiq's worker processes would make them abort instead of shutting down cleanly).
        for pid in "${CHILD_PIDS[@]}"; do
            kill -TERM "$pid" 2>/dev/null || kill -TERM -- "-$pid" 2>/dev/null || true
        done
        deadline=$((SECONDS + SLUICE_STOP_TIMEOUT))
        while :; do
            alive=()
            for i in "${!CHILD_PIDS[@]}"; do
                _group_alive "${CHILD_PIDS[$i]}" && alive+=("$i")
            done
            (( ${#alive[@]} == 0 )) && break
            if (( SECONDS >= deadline )); then
                for i in "${alive[@]}"; do
                    say "warning: ${CHILD_NAMES[$i]} did not stop within ${SLUICE_STOP_TIMEOUT}s; killing it"
                    kill -KILL -- "-${CHILD_PIDS[$i]}" 2>/dev/null || kill -KILL "${CHILD_PIDS[$i]}" 2>/dev/null || true
                done
                sleep 0.2
                break
            fi
            sleep 0.2
        done
        wait || true
    fi
}

stop_started() {
    (( _STOPPED )) && return 0
    _STOPPED=1
    started_anything || return 0
    local i
    _stop_children 2>>"$LOG_DIR/stop.log"
    for (( i = ${#STOP_CMDS[@]} - 1; i >= 0; i-- )); do
        say "stopping ${STOP_NAMES[$i]}"
        eval "${STOP_CMDS[$i]}" >>"$LOG_DIR/stop.log" 2>&1 || warn "could not stop ${STOP_NAMES[$i]} (see $LOG_DIR/stop.log)"
    done
    say "stopped everything this script started"
}

install_traps() {
    trap 'stop_started' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP
}

# ---------------------------------------------------------------------------------------------
is_root() { [[ ${EUID:-$(id -u)} -eq 0 ]]; }

# apt_install PKG... — only as root on Debian/Ubuntu, and not when SLUICE_NO_APT is set.
apt_install() {
    if is_root && command -v apt-get >/dev/null && [[ -z "${SLUICE_NO_APT:-}" ]]; then
        say "installing $* with apt-get"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >>"$LOG_DIR/apt.log" 2>&1 || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >>"$LOG_DIR/apt.log" 2>&1 \
            && return 0
        die "apt-get install $* failed (see $LOG_DIR/apt.log)"
    fi
    return 1
}

tcp_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

is_loopback() {
    case "$1" in
        localhost | 127.* | ::1 | "[::1]" | 0.0.0.0) return 0 ;;
        *) return 1 ;;
    esac
}

# wait_until SECONDS DESCRIPTION COMMAND... — polls COMMAND every 0.2s (DESCRIPTION is for readers).
wait_until() {
    local limit=$1
    shift 2
    local deadline=$((SECONDS + limit))
    until "$@"; do
        (( SECONDS >= deadline )) && return 1
        sleep 0.2
    done
}

# ---------------------------------------------------------------------------------------------
# The virtual env. Reinstalls only when pyproject.toml (or the interpreter) changed since the
# last successful install; the stamp lives inside .venv.
_pick_python() {
    local candidate
    for candidate in "${SLUICE_PYTHON:-}" python3.11 python3.12 python3.13 python3; do
        [[ -n "$candidate" ]] || continue
        command -v "$candidate" >/dev/null || continue
        if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

ensure_venv() {
    local stamp="$VENV/.sluice-installed" want python
    if [[ ! -x "$PY" ]] || ! "$PY" -c 'import sys' 2>/dev/null; then
        python=$(_pick_python) || die "Python 3.11+ not found (set SLUICE_PYTHON=/path/to/python3.11)"
        say "creating virtual env .venv with $("$python" --version 2>&1)"
        rm -rf "$VENV"
        if ! "$python" -m venv "$VENV" >>"$LOG_DIR/venv.log" 2>&1; then
            rm -rf "$VENV"
            local minor
            minor=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
            apt_install "python$minor-venv" || die "'$python -m venv' failed (on Debian: apt-get install python$minor-venv); see $LOG_DIR/venv.log"
            "$python" -m venv "$VENV" >>"$LOG_DIR/venv.log" 2>&1 || die "'$python -m venv' failed; see $LOG_DIR/venv.log"
        fi
    fi
    want="$(sha256sum "$SLUICE_ROOT/pyproject.toml" | cut -d' ' -f1) $("$PY" -c 'import sys; print(sys.version)' | head -1)"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$VENV/bin/sluice" ]]; then
        say "virtual env .venv is up to date"
        return 0
    fi
    say "installing the project and its dev dependencies into .venv (pip install -e '.[dev]')"
    local quiet=(-q)
    [[ "${CI:-}" == "true" ]] && quiet=()
    (cd "$SLUICE_ROOT" && "$PY" -m pip install "${quiet[@]}" --disable-pip-version-check -e '.[dev]') \
        || die "pip install -e '.[dev]' failed"
    printf '%s\n' "$want" >"$stamp"
}

# url_field URL FIELD — host, port, user, password, db, scheme of a URL (percent-decoded).
url_field() {
    "$PY" - "$1" "$2" <<'EOF'
import sys, urllib.parse as u
url, field = sys.argv[1], sys.argv[2]
p = u.urlsplit(url)
defaults = {"postgresql": 5432, "redis": 6379, "rediss": 6379}
scheme = p.scheme.split("+")[0]
value = {
    "scheme": scheme,
    "host": p.hostname or "127.0.0.1",
    "port": p.port or defaults.get(scheme, ""),
    "user": u.unquote(p.username or ""),
    "password": u.unquote(p.password or ""),
    "db": u.unquote(p.path.lstrip("/")),
}[field]
print(value)
EOF
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL at SLUICE_DATABASE_URL: use it if it answers; else start the Debian cluster that
# listens on that port, else a private cluster under $SLUICE_DATA_DIR/postgres.
PG_BIN=""
_find_pg_bin() {
    [[ -n "$PG_BIN" ]] && return 0
    local dir
    if command -v pg_ctl >/dev/null && command -v initdb >/dev/null; then
        PG_BIN=$(dirname "$(readlink -f "$(command -v pg_ctl)")")
        return 0
    fi
    dir=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -1)
    [[ -n "$dir" && -x "$dir/pg_ctl" ]] && { PG_BIN=$dir; return 0; }
    return 1
}

pg_answers() {
    local host=$1 port=$2 ready
    ready=$(command -v pg_isready || true)
    [[ -z "$ready" ]] && _find_pg_bin && ready="$PG_BIN/pg_isready"
    if [[ -n "$ready" && -x "$ready" ]]; then
        "$ready" -q -h "$host" -p "$port" -t 2 >/dev/null 2>&1
    else
        tcp_open "$host" "$port"
    fi
}

_as_pg_owner() {
    if is_root; then runuser -u postgres -- "$@"; else "$@"; fi
}

ensure_postgres() {
    local host port user
    host=$(url_field "$SLUICE_DATABASE_URL" host)
    port=$(url_field "$SLUICE_DATABASE_URL" port)
    user=$(url_field "$SLUICE_DATABASE_URL" user)
    PG_HOST=$host PG_PORT=$port
    if pg_answers "$host" "$port"; then
        say "PostgreSQL: using the server at $host:$port"
        return 0
    fi
    is_loopback "$host" || die "PostgreSQL at $host:$port does not answer (not a local address, so not starting one)"
    _find_pg_bin || { apt_install postgresql && _find_pg_bin; } \
        || die "PostgreSQL is not running at $host:$port and is not installed (apt-get install postgresql)"

    # A Debian cluster configured for this port?
    local ver name cport
    if command -v pg_lsclusters >/dev/null && { is_root || [[ "$(id -un)" == postgres ]]; }; then
        while read -r ver name cport _; do
            if [[ "$cport" == "$port" ]]; then
                say "PostgreSQL: starting the Debian cluster $ver/$name on port $port"
                pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start >>"$LOG_DIR/postgres.log" 2>&1 \
                    || die "pg_ctlcluster $ver $name start failed (see $LOG_DIR/postgres.log)"
                on_stop "PostgreSQL cluster $ver/$name" "pg_ctlcluster --skip-systemctl-redirect $ver $name stop"
                wait_until 60 postgres pg_answers "$host" "$port" || die "PostgreSQL did not come up on $host:$port"
                return 0
            fi
        done < <(pg_lsclusters -h 2>/dev/null || true)
    fi

    # A private cluster under the data dir (trust auth, TCP only, on the URL's port).
    local pgdata="${SLUICE_PG_DATA:-$SLUICE_DATA_DIR/postgres}" log="$LOG_DIR/postgres.log"
    if is_root; then
        id postgres >/dev/null 2>&1 || die "running as root and there is no 'postgres' user to own a private cluster"
        mkdir -p "$pgdata" && chown postgres: "$pgdata" && chmod 700 "$pgdata"
        touch "$log" && chown postgres: "$log"
        runuser -u postgres -- test -w "$pgdata" \
            || die "user postgres cannot reach $pgdata (a parent directory is private); set SLUICE_PG_DATA to a path it can use"
    else
        mkdir -p "$pgdata" && chmod 700 "$pgdata"
    fi
    if [[ ! -s "$pgdata/PG_VERSION" ]]; then
        say "PostgreSQL: creating a private cluster in $pgdata"
        _as_pg_owner "$PG_BIN/initdb" -D "$pgdata" -U "${user:-postgres}" --auth=trust -E UTF8 --no-instructions \
            >>"$log" 2>&1 || die "initdb failed (see $log)"
    fi
    say "PostgreSQL: starting the private cluster on $host:$port"
    _as_pg_owner "$PG_BIN/pg_ctl" -D "$pgdata" -l "$log" -w -t 60 \
        -o "-p $port -h $host -k ''" start >/dev/null 2>&1 \
        || die "pg_ctl start failed (see $log)"
    if is_root; then
        on_stop "PostgreSQL (private cluster)" "runuser -u postgres -- '$PG_BIN/pg_ctl' -D '$pgdata' -m fast -w stop"
    else
        on_stop "PostgreSQL (private cluster)" "'$PG_BIN/pg_ctl' -D '$pgdata' -m fast -w stop"
    fi
    wait_until 30 postgres pg_answers "$host" "$port" || die "PostgreSQL did not come up on $host:$port"
}

# Creates the database named in SLUICE_DATABASE_URL when it is missing.
ensure_database() {
    "$PY" - "$SLUICE_DATABASE_URL" <<'EOF' || die "could not create the database of SLUICE_DATABASE_URL"
import asyncio, sys, urllib.parse as u
import asyncpg

url = u.urlsplit(sys.argv[1].replace("postgresql+asyncpg://", "postgresql://", 1))
name = u.unquote(url.path.lstrip("/")) or "sluice"
admin = url._replace(path="/postgres").geturl()

async def main() -> None:
    conn = await asyncpg.connect(admin, timeout=10)
    try:
        if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            print(f"[sluice] database {name!r} exists")
        else:
            await conn.execute('CREATE DATABASE "{}"'.format(name.replace('"', '""')))
            print(f"[sluice] created database {name!r}")
    finally:
        await conn.close()

asyncio.run(main())
EOF
}

# The admin DSN the tests use to create and drop their own database (tests/conftest.py).
admin_dsn() {
    "$PY" - "$SLUICE_DATABASE_URL" <<'EOF'
import sys, urllib.parse as u
url = u.urlsplit(sys.argv[1].replace("postgresql+asyncpg://", "postgresql://", 1))
print(url._replace(path="/postgres").geturl())
EOF
}

# ---------------------------------------------------------------------------------------------
# Redis at SLUICE_REDIS_URL: use it if it answers, else run redis-server as our child.
redis_answers() {
    local reply
    reply=$(
        exec 2>/dev/null
        exec 3<>"/dev/tcp/$1/$2" || exit 1
        printf 'PING\r\n' >&3
        IFS= read -r -t 2 line <&3 || exit 1
        printf '%s' "$line"
    ) || return 1
    [[ "$reply" == +PONG* || "$reply" == -NOAUTH* || "$reply" == -LOADING* ]]
}

ensure_redis() {
    local host port password
    host=$(url_field "$SLUICE_REDIS_URL" host)
    port=$(url_field "$SLUICE_REDIS_URL" port)
    password=$(url_field "$SLUICE_REDIS_URL" password)
    if redis_answers "$host" "$port"; then
        say "Redis: using the server at $host:$port"
        return 0
    fi
    is_loopback "$host" || die "Redis at $host:$port does not answer (not a local address, so not starting one)"
    command -v redis-server >/dev/null || apt_install redis-server \
        || die "Redis is not running at $host:$port and redis-server is not installed (apt-get install redis-server)"
    tcp_open "$host" "$port" && die "port $host:$port is taken by something that is not Redis"
    local dir="$SLUICE_DATA_DIR/redis" args
    mkdir -p "$dir"
    args=(--daemonize no --bind "$host" --port "$port" --dir "$dir" --logfile "" --protected-mode no)
    [[ -n "$password" ]] && args+=(--requirepass "$password")
    say "Redis: starting redis-server on $host:$port (data in $dir)"
    start_child redis "$LOG_DIR/redis.log" redis-server "${args[@]}"
    wait_until 20 redis redis_answers "$host" "$port" || die "redis-server did not come up (see $LOG_DIR/redis.log)"
}

# ---------------------------------------------------------------------------------------------
# S3 at SLUICE_S3_ENDPOINT: use it if it answers, else a `minio` binary from PATH, else moto.
http_status() {  # http_status URL -> prints the HTTP status, or nothing when nothing answers
    "$PY" - "$1" <<'EOF' 2>/dev/null
import sys, urllib.request, urllib.error
try:
    with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
        print(r.status)
except urllib.error.HTTPError as e:
    print(e.code)
except Exception:
    pass
EOF
}

S3_KIND=""
ensure_s3() {
    local scheme=http endpoint=$SLUICE_S3_ENDPOINT host port
    [[ "${SLUICE_S3_SECURE,,}" =~ ^(1|true|yes|on)$ ]] && scheme=https
    host=${endpoint%:*} port=${endpoint##*:}
    [[ "$endpoint" == *:* ]] || { host=$endpoint; port=$([[ $scheme == https ]] && echo 443 || echo 80); }
    if [[ -n "$(http_status "$scheme://$endpoint/")" ]]; then
        S3_KIND="existing"
        say "S3: using the endpoint at $endpoint"
        return 0
    fi
    is_loopback "$host" || die "S3 endpoint $endpoint does not answer (not a local address, so not starting one)"
    [[ $scheme == http ]] || die "S3 endpoint $endpoint does not answer, and a local one can't serve HTTPS (set SLUICE_S3_SECURE=false)"
    tcp_open "$host" "$port" && die "port $endpoint is taken by something that does not speak HTTP"
    if command -v minio >/dev/null; then
        local dir="$SLUICE_DATA_DIR/minio"
        mkdir -p "$dir"
        say "S3: starting minio on $endpoint (data in $dir)"
        # MinIO purges multipart uploads older than MINIO_API_STALE_UPLOADS_EXPIRY (24h by
        # default); chunked upload sessions live SLUICE_SESSION_TTL (24h), so keep it well above.
        start_child minio "$LOG_DIR/minio.log" env \
            MINIO_ROOT_USER="$SLUICE_S3_ACCESS_KEY" MINIO_ROOT_PASSWORD="$SLUICE_S3_SECRET_KEY" \
            MINIO_API_STALE_UPLOADS_EXPIRY="${SLUICE_MINIO_STALE_UPLOADS_EXPIRY:-168h}" \
            minio server "$dir" --address "$host:$port" \
            --console-address "$host:${SLUICE_MINIO_CONSOLE_PORT:-$((port + 1))}" --quiet
        S3_KIND="minio"
        wait_until 60 minio _s3_live "http://$endpoint/minio/health/live" \
            || die "minio did not come up on $endpoint (see $LOG_DIR/minio.log)"
    else
        say "S3: no minio binary on PATH; starting moto's S3 server on $endpoint (in memory)"
        start_child moto "$LOG_DIR/s3.log" "$PY" -m moto.server -H "$host" -p "$port"
        S3_KIND="moto"
        wait_until 60 moto _s3_live "http://$endpoint/" \
            || die "moto server did not come up on $endpoint (see $LOG_DIR/s3.log)"
    fi
}
_s3_live() { [[ "$(http_status "$1")" == 200 ]]; }

# ---------------------------------------------------------------------------------------------
# The web app (web/): `npm ci && npm run build` into web/dist, which `sluice serve` serves at /.
# Built again only when its sources changed: a hash of package-lock.json, src/, public/ and the
# config files is kept in web/dist/.sluice-build (and `npm ci` runs only when the lock file
# changed since the last install). A build that fails leaves a warning, not a failed command: the API still runs (it
# serves the previous build, or a hint at /), and the same sources are not tried again until they
# change. SLUICE_WEB_BUILD=0 skips all of it. One build at a time (a lock in the data dir).
_web_hash() {  # _web_hash WEB PATH... — one hash over the names and contents of the files there
    local web=$1 path present=()
    shift
    for path in "$@"; do [[ -e "$web/$path" ]] && present+=("$path"); done
    (cd "$web" && find "${present[@]}" -type f ! -name '*.test.*' -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum) \
        | sha256sum | cut -d' ' -f1
}

ensure_web_build() {
    local web="$SLUICE_ROOT/web" log="$LOG_DIR/web-build.log" want stamp
    if [[ "${SLUICE_WEB_BUILD:-1}" == 0 ]]; then
        say "web app: not built (SLUICE_WEB_BUILD=0)"
        return 0
    fi
    if [[ ! -f "$web/package.json" ]]; then
        say "web app: web/ has no package.json yet; not built (the API answers / with a hint)"
        return 0
    fi
    if ! command -v npm >/dev/null; then
        warn "web app: npm is not installed, so web/ is not built (the API answers / with a hint); install Node.js 20+ and npm"
        return 0
    fi
    exec {WEB_LOCK}>"$SLUICE_DATA_DIR/web-build.lock"
    flock "$WEB_LOCK"
    want=$(_web_hash "$web" package.json package-lock.json index.html src public \
        vite.config.ts vite.config.js tsconfig.json tsconfig.app.json tsconfig.node.json)
    stamp="$web/dist/.sluice-build"
    if [[ -f "$web/dist/index.html" && -f "$stamp" && "$(<"$stamp")" == "$want" ]]; then
        say "web app: web/dist is up to date"
    elif [[ -f "$SLUICE_DATA_DIR/web-build.failed" && "$(<"$SLUICE_DATA_DIR/web-build.failed")" == "$want" ]]; then
        warn "web app: the last build of these sources failed (see $log); not trying again until web/ changes"
    else
        # npm rewrites node_modules/.package-lock.json on every install: older than the lock file
        # means the lock file changed since.
        if [[ ! -f "$web/node_modules/.package-lock.json" || "$web/package-lock.json" -nt "$web/node_modules/.package-lock.json" ]]; then
            say "web app: installing its npm packages (npm ci; log: $log)"
            (cd "$web" && npm ci --no-audit --no-fund) >>"$log" 2>&1 || warn "web app: npm ci failed (see $log)"
        fi
        say "web app: building web/dist (npm run build; log: $log)"
        if (cd "$web" && npm run build) >>"$log" 2>&1 && [[ -f "$web/dist/index.html" ]]; then
            printf '%s\n' "$want" >"$stamp"
            rm -f "$SLUICE_DATA_DIR/web-build.failed"
            say "web app: built ($(du -sh "$web/dist" | cut -f1) in web/dist)"
        else
            printf '%s\n' "$want" >"$SLUICE_DATA_DIR/web-build.failed"
            tail -n 20 "$log" >&2
            warn "web app: the build failed (see $log); the API serves the previous build, or a hint at /"
        fi
    fi
    flock -u "$WEB_LOCK"
    exec {WEB_LOCK}>&-
}
