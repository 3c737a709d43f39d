#!/usr/bin/env bash
# Throwaway test services for snap's integration tests:
#   * a PostgreSQL cluster on 127.0.0.1 (trust auth, fsync off), and
#   * an S3-compatible server on 127.0.0.1 with a bucket "snap-test" (moto), and
#   * a second S3-compatible server on another port with a bucket "snap-test" (s3s-fs), and
#   * a MariaDB server on 127.0.0.1 and a unix socket (Debian's mariadb-server, own datadir).
# and it installs Debian's chromium and chromium-driver for the console's browser test
# (tests/console_browser.rs starts chromedriver itself; nothing runs here).
#
# Usage:
#   source scripts/services.sh start   # start (or reuse) the services and export the variables
#   source scripts/services.sh stop    # stop them, remove their temp dirs, unset the variables
#   scripts/services.sh start|stop|status
#   eval "$(scripts/services.sh env)"  # export the variables of services started earlier
#
# Exported by `start` (and printed by `env`):
#   SNAP_TEST_PG_HOST SNAP_TEST_PG_PORT SNAP_TEST_PG_USER SNAP_TEST_PG_BIN
#   SNAP_TEST_S3_ENDPOINT SNAP_TEST_S3_BUCKET      (moto)
#   SNAP_TEST_S3S_ENDPOINT SNAP_TEST_S3S_BUCKET    (s3s-fs; same keys and region as moto)
#   SNAP_TEST_S3AUTH_ENDPOINT SNAP_TEST_S3AUTH_BUCKET  (a second moto enforcing IAM authorization;
#       bucket "<bucket>-lock" has Object Lock enabled, "<bucket>-lockdefault" also a default
#       retention of 1 day) with the keys of two IAM users:
#       SNAP_TEST_S3AUTH_FULL_{KEY,SECRET} (s3:*) and SNAP_TEST_S3AUTH_APPEND_{KEY,SECRET}
#       (s3:PutObject, s3:GetObject, s3:ListBucket only)
#   SNAP_TEST_MYSQL_HOST SNAP_TEST_MYSQL_PORT SNAP_TEST_MYSQL_SOCKET
#   SNAP_TEST_MYSQL_USER SNAP_TEST_MYSQL_PASSWORD_FILE  (MariaDB; the user has every privilege,
#                                                  its password is the file's only line, 0600)
#   AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_REGION AWS_DEFAULT_REGION
#   SNAP_TEST_CHROMIUM SNAP_TEST_CHROMEDRIVER  (paths of Debian's chromium and chromedriver;
#       `env` prints them also for services started before they were added)
#
# Knobs:
#   SNAP_TEST_STATE  state file with pids, dirs and variables (default /tmp/snap-test-services.env)
#   SNAP_TEST_TOOLS  where the moto virtualenv and the s3s-fs binary are kept between runs
#                    (default $HOME/.cache/snap-test-tools)
#   SNAP_TEST_S3S=0  do not start s3s-fs (tests that need it then skip, or fail under CI=true)
#   SNAP_TEST_MYSQL=0  do not start MariaDB (tests that need it then skip, or fail under CI=true)
#   SNAP_TEST_FRESH=1  make `start` restart services instead of reusing healthy ones
#   SNAP_TEST_BROWSER=0  do not install or export Chromium (the browser test then skips, or
#                    fails under CI=true)
#
# S3 server: moto (PyPI "moto[server]", pinned in _SNAP_MOTO_SPEC, installed into a venv under
# $SNAP_TEST_TOOLS and reused on later runs). moto 5.x honours conditional writes: PutObject
# with `If-None-Match: *` on an existing key and PutObject with a stale `If-Match` ETag both
# answer 412, which is what object_store's PutMode::Create / PutMode::Update rely on. `start`
# re-checks this on every run and prints a WARNING line if it ever stops being true. The
# fallback considered (s3s-fs from crates.io) is not needed and therefore not implemented:
# moto needs no Rust build, so a cold start stays well inside CI's time budget.
# moto checks the condition and stores the object without a lock, so with its threaded server
# two racing conditional PUTs could both win; it is therefore started through a small launcher
# (_snap_write_moto_launcher) that handles one request at a time, making conditional writes
# atomic as on real S3.
#
# Second S3 server: s3s-fs (crates.io "s3s-fs", pinned in _SNAP_S3S_VERSION, built once with
# `cargo install --locked` into $SNAP_TEST_TOOLS/s3s-fs-VERSION and reused). It keeps objects
# as files under its data dir, checks SigV4 signatures against the test keys, and serves
# requests concurrently (tokio). It honours `If-None-Match: *` and a stale `If-Match` (412),
# but checks them without a lock: of 16 racing conditional creates of one key, several can
# win (seen here: up to 15), so tests of racing writers stay on moto. A cold build takes a few minutes on 2 cores (see the
# `start` line that reports it). If moto and PostgreSQL are already running and healthy,
# `start` adds s3s-fs beside them without restarting them.
#
# Everything a service prints goes to log files in its temp dir (/tmp/snap-test.XXXXXX);
# `start` prints one line per service with its address. The file works when sourced into a
# shell running `set -euo pipefail` and leaves that shell's options alone.

_SNAP_MOTO_SPEC='moto[server]==5.2.5'
_SNAP_S3_BUCKET='snap-test'
_SNAP_S3S_VERSION='0.14.1'
_SNAP_EXPORTED_VARS='SNAP_TEST_PG_HOST SNAP_TEST_PG_PORT SNAP_TEST_PG_USER SNAP_TEST_PG_BIN
SNAP_TEST_S3_ENDPOINT SNAP_TEST_S3_BUCKET SNAP_TEST_S3S_ENDPOINT SNAP_TEST_S3S_BUCKET
SNAP_TEST_S3AUTH_ENDPOINT SNAP_TEST_S3AUTH_BUCKET SNAP_TEST_S3AUTH_FULL_KEY SNAP_TEST_S3AUTH_FULL_SECRET
SNAP_TEST_S3AUTH_APPEND_KEY SNAP_TEST_S3AUTH_APPEND_SECRET AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_REGION
AWS_DEFAULT_REGION SNAP_TEST_MYSQL_HOST SNAP_TEST_MYSQL_PORT SNAP_TEST_MYSQL_SOCKET SNAP_TEST_MYSQL_USER
SNAP_TEST_MYSQL_PASSWORD_FILE SNAP_TEST_CHROMIUM SNAP_TEST_CHROMEDRIVER'

_snap_say() { printf 'services: %s\n' "$*"; }
_snap_warn() { printf 'services: WARNING: %s\n' "$*" >&2; }
_snap_err() { printf 'services: ERROR: %s\n' "$*" >&2; }

_snap_state_file() { printf '%s\n' "${SNAP_TEST_STATE:-/tmp/snap-test-services.env}"; }

_snap_tools_dir() { printf '%s\n' "${SNAP_TEST_TOOLS:-${HOME:-/tmp}/.cache/snap-test-tools}"; }

# Appends KEY=VALUE (shell-quoted) to the state file; later lines override earlier ones.
_snap_state_set() {
    printf '%s=%q\n' "$1" "$2" >>"$(_snap_state_file)"
}

# Appends `export KEY=VALUE` to the state file and exports it into the current shell.
_snap_state_export() {
    printf 'export %s=%q\n' "$1" "$2" >>"$(_snap_state_file)"
    export "$1=$2"
}

# Runs a command as root: directly when we are root, else through passwordless sudo.
_snap_as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    else
        sudo -n "$@"
    fi
}

# apt-get install, with `apt-get update` only when the first try fails.
_snap_apt_install() {
    local log
    log=$(mktemp /tmp/snap-test-apt.XXXXXX.log) || return 1
    _snap_say "installing Debian packages: $* (log: $log)"
    if _snap_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >"$log" 2>&1; then
        rm -f "$log"
        return 0
    fi
    if _snap_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$log" 2>&1 &&
        _snap_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >>"$log" 2>&1; then
        rm -f "$log"
        return 0
    fi
    _snap_err "apt-get install $* failed; last lines of $log:"
    tail -n 20 "$log" >&2
    return 1
}

# Prints the newest /usr/lib/postgresql/N/bin that has initdb, pg_ctl and psql.
_snap_pg_find_bin() {
    local d best='' best_v=0 v
    for d in /usr/lib/postgresql/*/bin; do
        if [ ! -x "$d/initdb" ] || [ ! -x "$d/pg_ctl" ] || [ ! -x "$d/psql" ]; then
            continue
        fi
        v=${d#/usr/lib/postgresql/}
        v=${v%/bin}
        v=${v%%.*}
        case $v in '' | *[!0-9]*) continue ;; esac
        if [ "$v" -gt "$best_v" ]; then
            best_v=$v
            best=$d
        fi
    done
    [ -n "$best" ] || return 1
    printf '%s\n' "$best"
}

# Prints a free TCP port on 127.0.0.1 in 20000-32000 (below Linux's ephemeral range, so no
# outgoing connection grabs it meanwhile; never 5432/5433). Extra arguments are ports to avoid.
_snap_pick_port() {
    if command -v python3 >/dev/null 2>&1; then
        python3 - "$@" <<'EOF'
import random, socket, sys
avoid = {5432, 5433} | {int(a) for a in sys.argv[1:] if a.isdigit()}
for _ in range(500):
    port = random.randint(20000, 32000)
    if port in avoid:
        continue
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        s.close()
    print(port)
    sys.exit(0)
sys.exit(1)
EOF
        return
    fi
    local port i a skip
    for i in $(seq 1 500); do
        port=$((20000 + (RANDOM * 32768 + RANDOM + i) % 12001))
        skip=0
        for a in 5432 5433 "$@"; do [ "$port" = "$a" ] && skip=1; done
        [ "$skip" = 0 ] || continue
        # Connection refused means nobody listens there.
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            printf '%s\n' "$port"
            return 0
        fi
    done
    return 1
}

# True when pid $1 is alive and its command line contains $2 (a path of this run's temp dir,
# so a reused pid or another PostgreSQL on the machine is never taken for ours).
_snap_pid_is() {
    local pid=$1 what=$2 cmd
    case $pid in '' | *[!0-9]*) return 1 ;; esac
    [ -n "$what" ] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    case $cmd in *"$what"*) return 0 ;; *) return 1 ;; esac
}

# Sends signal $3 (default TERM) to pid $1 if it is a $2 process, waits up to ~10 s, then KILL.
_snap_kill() {
    local pid=$1 what=$2 sig=${3:-TERM}
    _snap_pid_is "$pid" "$what" || return 0
    kill "-$sig" "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        _snap_pid_is "$pid" "$what" || return 0
        sleep 0.1
    done
    _snap_warn "pid $pid ($what) did not stop on $sig; killing it"
    kill -KILL "$pid" 2>/dev/null || true
}

# Runs a command as the owner of the PostgreSQL cluster ($1 = postgres or self).
_snap_as_pg_owner() {
    local owner=$1
    shift
    if [ "$owner" = self ]; then
        "$@"
    elif command -v runuser >/dev/null 2>&1; then
        (cd / && runuser -u postgres -- "$@")
    else
        (cd / && su postgres -s /bin/sh -c "$(printf '%q ' "$@")")
    fi
}

# Where the moto venv lives.
_snap_venv_dir() { printf '%s/moto-venv\n' "$(_snap_tools_dir)"; }

# HTTP request to the S3 server, signed with AWS SigV4 as test/test in us-east-1. moto does
# not check signatures, but it answers 403 to some anonymous requests (DELETE, conditional
# PUT); s3s-fs checks them and wants the x-amz-content-sha256 header. So requests are signed: with curl's --aws-sigv4 (curl >= 7.75) when available, else
# with botocore from the moto venv.
# Usage: _snap_http METHOD URL [BODY [HEADER...]]; prints the status code (000 on no answer).
_snap_http() {
    local method=$1 url=$2 body=${3-} code
    shift 2
    if [ $# -gt 0 ]; then shift; fi
    if [ -z "${_SNAP_CURL_SIGV4:-}" ]; then
        _SNAP_CURL_SIGV4=no
        if [ "${SNAP_TEST_NO_CURL:-0}" != 1 ] && command -v curl >/dev/null 2>&1 &&
            curl --help all 2>/dev/null | grep -q -- '--aws-sigv4'; then
            _SNAP_CURL_SIGV4=yes
        fi
    fi
    if [ "$_SNAP_CURL_SIGV4" = yes ]; then
        local args=(-s -o /dev/null -w '%{http_code}' --max-time 10 -X "$method"
            --aws-sigv4 'aws:amz:us-east-1:s3' --user 'test:test'
            -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD')
        if [ "$method" = PUT ] || [ "$method" = POST ]; then
            args+=(-H 'Content-Type: application/octet-stream' --data-binary "$body")
        fi
        local h
        for h in "$@"; do args+=(-H "$h"); done
        code=$(curl "${args[@]}" "$url" 2>/dev/null) || true
        printf '%s\n' "${code:-000}"
        return 0
    fi
    "$(_snap_venv_dir)/bin/python" - "$method" "$url" "$body" "$@" <<'EOF' 2>/dev/null || echo 000
import sys, urllib.error, urllib.request
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
method, url, body, extra = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
data = body.encode() if method in ("PUT", "POST") else b""
headers = {"Content-Type": "application/octet-stream"} if method in ("PUT", "POST") else {}
for h in extra:
    k, _, v = h.partition(":")
    headers[k.strip()] = v.strip()
req = AWSRequest(method=method, url=url, data=data, headers=headers)
S3SigV4Auth(Credentials("test", "test"), "s3", "us-east-1").add_auth(req)
out = urllib.request.Request(url, data=data if method in ("PUT", "POST") else None,
                             method=method, headers=dict(req.headers.items()))
try:
    with urllib.request.urlopen(out, timeout=10) as r:
        print(r.status)
except urllib.error.HTTPError as e:
    print(e.code)
except Exception:
    print("000")
EOF
}

# Makes sure a venv with moto exists; prints its path. Reused when the pinned spec matches.
_snap_moto_venv() {
    local tools venv log py
    tools=$(_snap_tools_dir)
    venv=$(_snap_venv_dir)
    if [ -x "$venv/bin/moto_server" ] && [ -x "$venv/bin/python" ] &&
        [ "$(cat "$venv/.snap-spec" 2>/dev/null)" = "$_SNAP_MOTO_SPEC" ]; then
        printf '%s\n' "$venv"
        return 0
    fi
    mkdir -p "$tools" || return 1
    log="$tools/moto-install.log"
    if ! command -v python3 >/dev/null 2>&1; then
        _snap_apt_install python3 python3-venv python3-pip >&2 || return 1
    fi
    py=$(command -v python3)
    local rc=0
    (
        # Serialise concurrent installs into the same tools dir.
        if command -v flock >/dev/null 2>&1; then flock 9; fi
        if [ -x "$venv/bin/moto_server" ] &&
            [ "$(cat "$venv/.snap-spec" 2>/dev/null)" = "$_SNAP_MOTO_SPEC" ]; then
            exit 0
        fi
        printf 'services: installing %s into %s (log: %s)\n' "$_SNAP_MOTO_SPEC" "$venv" "$log" >&2
        rm -rf "$venv"
        if ! "$py" -m venv "$venv" >"$log" 2>&1; then
            # Debian's own python3 needs python3-venv for ensurepip.
            rm -rf "$venv"
            _snap_apt_install python3-venv >&2 || exit 1
            "$py" -m venv "$venv" >>"$log" 2>&1 || exit 1
        fi
        PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
            "$venv/bin/python" -m pip install -q "$_SNAP_MOTO_SPEC" >>"$log" 2>&1 || exit 1
        printf '%s\n' "$_SNAP_MOTO_SPEC" >"$venv/.snap-spec"
    ) 9>"$tools/.lock" || rc=$?
    if [ "$rc" -ne 0 ] || [ ! -x "$venv/bin/moto_server" ]; then
        _snap_err "could not install $_SNAP_MOTO_SPEC into $venv; last lines of $log:"
        tail -n 20 "$log" >&2 2>/dev/null
        return 1
    fi
    printf '%s\n' "$venv"
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL

_snap_start_pg() {
    local root=$1 bin owner pgdir data port attempt ok=0 pid
    bin=$(_snap_pg_find_bin) || true
    if [ -z "$bin" ]; then
        _snap_apt_install postgresql || return 1
        bin=$(_snap_pg_find_bin) || true
        if [ -z "$bin" ]; then
            _snap_err "PostgreSQL binaries not found under /usr/lib/postgresql/*/bin after install"
            return 1
        fi
    fi

    # initdb/postgres refuse to run as root: as root, run them as the postgres OS user;
    # as any other user (postgres included), run them as ourselves.
    if [ "$(id -u)" -eq 0 ]; then
        owner=postgres
        if ! id postgres >/dev/null 2>&1; then
            useradd --system --user-group --no-create-home --home-dir /nonexistent \
                --shell /usr/sbin/nologin postgres || return 1
        fi
    else
        owner=self
    fi

    pgdir="$root/pg"
    data="$pgdir/data"
    mkdir -p "$pgdir" || return 1
    if [ "$owner" = postgres ]; then
        chown postgres: "$pgdir" || return 1
    fi
    chmod 700 "$pgdir" || return 1
    _snap_state_set SNAP_SVC_PG_OWNER "$owner"
    _snap_state_set SNAP_SVC_PG_BIN "$bin"
    _snap_state_set SNAP_SVC_PG_DATA "$data"

    if ! _snap_as_pg_owner "$owner" "$bin/initdb" -D "$data" --auth=trust -U postgres \
        -E UTF8 --locale=C --no-sync >"$pgdir/initdb.log" 2>&1; then
        _snap_err "initdb failed; last lines of $pgdir/initdb.log:"
        tail -n 20 "$pgdir/initdb.log" >&2
        return 1
    fi

    # A port can be taken between probing and binding: retry with another one.
    for attempt in 1 2 3; do
        port=$(_snap_pick_port) || {
            _snap_err "no free TCP port found on 127.0.0.1"
            return 1
        }
        if _snap_as_pg_owner "$owner" "$bin/pg_ctl" -D "$data" -l "$pgdir/postgres.log" -w -t 60 \
            -o "-p $port -k $pgdir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
            start >>"$pgdir/pg_ctl.log" 2>&1; then
            ok=1
            break
        fi
        _snap_warn "PostgreSQL did not start on port $port (attempt $attempt)"
    done
    pid=$(head -n 1 "$data/postmaster.pid" 2>/dev/null) || true
    _snap_state_set SNAP_SVC_PG_PID "${pid:-}"
    if [ "$ok" != 1 ]; then
        _snap_err "PostgreSQL failed to start; last lines of $pgdir/postgres.log:"
        tail -n 20 "$pgdir/postgres.log" >&2 2>/dev/null
        return 1
    fi
    if ! "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -t 30; then
        _snap_err "PostgreSQL started but does not accept connections on 127.0.0.1:$port"
        return 1
    fi

    _snap_state_export SNAP_TEST_PG_HOST 127.0.0.1
    _snap_state_export SNAP_TEST_PG_PORT "$port"
    _snap_state_export SNAP_TEST_PG_USER postgres
    _snap_state_export SNAP_TEST_PG_BIN "$bin"
    _snap_say "postgresql $("$bin/postgres" --version | awk '{print $3}') at 127.0.0.1:$port (user postgres, trust auth; log $pgdir/postgres.log)"
}

# ---------------------------------------------------------------------------------------------
# S3 (moto)

# Writes the S3 server launcher to $1: moto_server's own main(), but with the WSGI app
# wrapped in a lock so that requests are handled one at a time. Stock moto checks
# `If-None-Match: *` / `If-Match` and then stores the object without holding a lock, so with
# its threaded server two racing conditional PUTs can both win (seen here: 2 of 16 racing
# creates succeeded); serialised, exactly one wins, as on real S3. Falls back to the stock
# server (with a line in moto.log) if moto's internals ever move.
_snap_write_moto_launcher() {
    cat >"$1" <<'EOF'
import sys
import threading

try:
    from moto import server as moto_server
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication
except ImportError as e:  # moto internals moved: run the stock server
    print(f"snap: cannot serialise moto requests ({e}); running stock moto_server", flush=True)
    from moto.server import main
    sys.exit(main())

_lock = threading.Lock()


class SerialDispatcher(DomainDispatcherApplication):
    """moto's WSGI app, one request at a time (makes conditional writes atomic)."""

    def __call__(self, environ, start_response):
        with _lock:
            # Build the whole response inside the lock.
            return list(super().__call__(environ, start_response))


moto_server.DomainDispatcherApplication = SerialDispatcher
print("snap: moto with serialised requests", flush=True)
sys.exit(moto_server.main(sys.argv[1:]))
EOF
}

# Checks that the S3 server at $1 honours conditional writes, as object_store's
# PutMode::Create (If-None-Match: *) and PutMode::Update (If-Match: <etag>) send them; prints
# a WARNING line for each that it does not honour. Fails only when a plain PUT fails.
_snap_probe_conditional() {
    local url=$1 probe code
    probe="$url/$_SNAP_S3_BUCKET/.snap-services-probe-$$"
    code=$(_snap_http PUT "$probe" 'first')
    if [ "$code" != 200 ]; then
        _snap_err "PUT of a probe object to $probe failed (HTTP $code)"
        return 1
    fi
    code=$(_snap_http PUT "$probe" 'second' 'If-None-Match: *')
    if [ "$code" != 412 ]; then
        _snap_warn "S3 server at $url does not honour 'If-None-Match: *' on PutObject (HTTP $code, expected 412); conditional-write tests will fail"
    fi
    code=$(_snap_http PUT "$probe" 'third' 'If-Match: "0123456789abcdef0123456789abcdef"')
    if [ "$code" != 412 ]; then
        _snap_warn "S3 server at $url does not honour a stale 'If-Match' on PutObject (HTTP $code, expected 412)"
    fi
    _snap_http DELETE "$probe" >/dev/null
}

_snap_start_s3() {
    local root=$1 venv s3dir port pid url code ver
    venv=$(_snap_moto_venv) || return 1
    s3dir="$root/s3"
    mkdir -p "$s3dir" || return 1
    port=$(_snap_pick_port "${SNAP_TEST_PG_PORT:-}") || {
        _snap_err "no free TCP port found on 127.0.0.1"
        return 1
    }
    url="http://127.0.0.1:$port"
    _snap_write_moto_launcher "$s3dir/snap_moto_server.py" || return 1
    # In a subshell that execs, so $! is the server's own pid; SIGHUP ignored so it survives
    # the terminal of a `scripts/services.sh start`; TMPDIR so large uploads spill into $s3dir.
    (
        trap '' HUP
        cd "$s3dir" || exit 1
        TMPDIR="$s3dir" exec "$venv/bin/python" "$s3dir/snap_moto_server.py" -H 127.0.0.1 -p "$port"
    ) </dev/null >"$s3dir/moto.log" 2>&1 &
    pid=$!
    _snap_state_set SNAP_SVC_S3_PID "$pid"

    code=000
    for _ in $(seq 1 600); do
        if ! kill -0 "$pid" 2>/dev/null; then
            break
        fi
        code=$(_snap_http GET "$url/")
        [ "$code" = 200 ] && break
        sleep 0.1
    done
    if [ "$code" != 200 ]; then
        _snap_err "the S3 server (moto) did not answer on $url (last status $code); last lines of $s3dir/moto.log:"
        tail -n 20 "$s3dir/moto.log" >&2 2>/dev/null
        return 1
    fi

    code=$(_snap_http PUT "$url/$_SNAP_S3_BUCKET" '')
    case $code in
    200 | 409) ;;
    *)
        _snap_err "could not create bucket $_SNAP_S3_BUCKET at $url (HTTP $code)"
        return 1
        ;;
    esac

    _snap_probe_conditional "$url" || return 1

    _snap_state_export SNAP_TEST_S3_ENDPOINT "$url"
    _snap_state_export SNAP_TEST_S3_BUCKET "$_SNAP_S3_BUCKET"
    _snap_state_export AWS_ACCESS_KEY_ID test
    _snap_state_export AWS_SECRET_ACCESS_KEY test
    _snap_state_export AWS_REGION us-east-1
    _snap_state_export AWS_DEFAULT_REGION us-east-1
    ver=${_SNAP_MOTO_SPEC##*==}
    _snap_say "s3 (moto $ver) at $url bucket $_SNAP_S3_BUCKET (log $s3dir/moto.log)"
}

# ---------------------------------------------------------------------------------------------
# S3 with authorization (a second moto)

# Writes the setup script of the authorizing moto to $1. Run while moto still accepts every
# request (its default), it creates bucket $2, bucket $2-lock (Object Lock enabled), bucket
# $2-lockdefault (Object Lock with a default retention of 1 day, governance mode), an IAM
# user "snap-full" allowed s3:* and an IAM user "snap-append" allowed only s3:PutObject,
# s3:GetObject and s3:ListBucket (no s3:DeleteObject: an append-only credential), then turns
# authorization on (POST /moto-api/reset-auth with 0: from then on every request is checked
# against IAM). Prints `NAME=VALUE` lines with both users' keys.
_snap_write_s3auth_setup() {
    cat >"$1" <<'EOF'
import json, sys, urllib.request
import boto3

url, bucket = sys.argv[1], sys.argv[2]
kw = dict(endpoint_url=url, region_name="us-east-1",
          aws_access_key_id="test", aws_secret_access_key="test")
s3 = boto3.client("s3", **kw)
iam = boto3.client("iam", **kw)
s3.create_bucket(Bucket=bucket)
s3.create_bucket(Bucket=bucket + "-lock", ObjectLockEnabledForBucket=True)
s3.create_bucket(Bucket=bucket + "-lockdefault", ObjectLockEnabledForBucket=True)
s3.put_object_lock_configuration(Bucket=bucket + "-lockdefault", ObjectLockConfiguration={
    "ObjectLockEnabled": "Enabled",
    "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})


def user(name, actions):
    iam.create_user(UserName=name)
    doc = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": actions,
        "Resource": ["arn:aws:s3:::*"]}]}
    iam.put_user_policy(UserName=name, PolicyName=name, PolicyDocument=json.dumps(doc))
    k = iam.create_access_key(UserName=name)["AccessKey"]
    return k["AccessKeyId"], k["SecretAccessKey"]


full = user("snap-full", ["s3:*"])
append = user("snap-append", ["s3:PutObject", "s3:GetObject", "s3:ListBucket"])
req = urllib.request.Request(url + "/moto-api/reset-auth", data=b"0", method="POST",
                             headers={"Content-Type": "text/plain"})
urllib.request.urlopen(req, timeout=10).read()
print("SNAP_TEST_S3AUTH_FULL_KEY=" + full[0])
print("SNAP_TEST_S3AUTH_FULL_SECRET=" + full[1])
print("SNAP_TEST_S3AUTH_APPEND_KEY=" + append[0])
print("SNAP_TEST_S3AUTH_APPEND_SECRET=" + append[1])
EOF
}

# Starts a second moto (same launcher) that enforces IAM authorization; exports
# SNAP_TEST_S3AUTH_ENDPOINT, SNAP_TEST_S3AUTH_BUCKET (plain bucket; "<bucket>-lock" has
# Object Lock enabled, "<bucket>-lockdefault" also a default retention) and the two users' keys SNAP_TEST_S3AUTH_{FULL,APPEND}_{KEY,SECRET}
# (throwaway keys of this test server only).
_snap_start_s3auth() {
    local root=$1 venv dir port pid url code out line moto=${SNAP_TEST_S3_ENDPOINT:-} s3s=${SNAP_TEST_S3S_ENDPOINT:-}
    venv=$(_snap_moto_venv) || return 1
    dir="$root/s3auth"
    mkdir -p "$dir" || return 1
    port=$(_snap_pick_port "${SNAP_TEST_PG_PORT:-}" "${moto##*:}" "${s3s##*:}") || {
        _snap_err "no free TCP port found on 127.0.0.1"
        return 1
    }
    url="http://127.0.0.1:$port"
    _snap_write_moto_launcher "$dir/snap_moto_server.py" || return 1
    _snap_write_s3auth_setup "$dir/setup.py" || return 1
    (
        trap '' HUP
        cd "$dir" || exit 1
        TMPDIR="$dir" exec "$venv/bin/python" "$dir/snap_moto_server.py" -H 127.0.0.1 -p "$port"
    ) </dev/null >"$dir/moto.log" 2>&1 &
    pid=$!
    _snap_state_set SNAP_SVC_S3AUTH_PID "$pid"
    code=000
    for _ in $(seq 1 600); do
        kill -0 "$pid" 2>/dev/null || break
        code=$(_snap_http GET "$url/")
        [ "$code" = 200 ] && break
        sleep 0.1
    done
    if [ "$code" != 200 ]; then
        _snap_err "the authorizing S3 server (moto) did not answer on $url (last status $code); last lines of $dir/moto.log:"
        tail -n 20 "$dir/moto.log" >&2 2>/dev/null
        return 1
    fi
    if ! out=$("$venv/bin/python" "$dir/setup.py" "$url" "$_SNAP_S3_BUCKET" 2>"$dir/setup.log"); then
        _snap_err "setting up users and buckets on $url failed; last lines of $dir/setup.log:"
        tail -n 20 "$dir/setup.log" >&2 2>/dev/null
        return 1
    fi
    while IFS= read -r line; do
        case $line in SNAP_TEST_S3AUTH_*=*) _snap_state_export "${line%%=*}" "${line#*=}" ;; esac
    done <<<"$out"
    _snap_state_export SNAP_TEST_S3AUTH_ENDPOINT "$url"
    _snap_state_export SNAP_TEST_S3AUTH_BUCKET "$_SNAP_S3_BUCKET"
    _snap_say "s3 with IAM authorization (moto) at $url buckets $_SNAP_S3_BUCKET, $_SNAP_S3_BUCKET-lock (Object Lock) (log $dir/moto.log)"
}

# True when the authorizing moto of the state file is alive and answering.
_snap_s3auth_healthy() {
    local state
    state=$(_snap_state_file)
    [ -f "$state" ] || return 1
    (
        # shellcheck disable=SC1090
        . "$state" || exit 1
        [ -n "${SNAP_TEST_S3AUTH_ENDPOINT:-}" ] || exit 1
        _snap_pid_is "${SNAP_SVC_S3AUTH_PID:-}" "${SNAP_SVC_ROOT:-}/s3auth/snap_moto_server.py" || exit 1
        # Unsigned by a known user: 403 means it answers and enforces authorization.
        [ "$(_snap_http GET "$SNAP_TEST_S3AUTH_ENDPOINT/$SNAP_TEST_S3AUTH_BUCKET")" = 403 ] || exit 1
    ) >/dev/null 2>&1
}

# ---------------------------------------------------------------------------------------------
# S3 (s3s-fs)

# Makes sure the pinned s3s-fs binary is built; prints its path. Built once with
# `cargo install --locked` (serialised with the moto install's lock) and reused afterwards.
_snap_s3s_bin() {
    local tools dir bin log t0 rc=0
    tools=$(_snap_tools_dir)
    dir="$tools/s3s-fs-$_SNAP_S3S_VERSION"
    bin="$dir/bin/s3s-fs"
    if [ -x "$bin" ]; then
        printf '%s\n' "$bin"
        return 0
    fi
    mkdir -p "$tools" || return 1
    log="$tools/s3s-fs-install.log"
    if ! command -v cargo >/dev/null 2>&1; then
        _snap_err "cargo is needed to build s3s-fs $_SNAP_S3S_VERSION (not on PATH)"
        return 1
    fi
    t0=$(date +%s)
    (
        if command -v flock >/dev/null 2>&1; then flock 9; fi
        [ -x "$bin" ] && exit 0
        printf 'services: building s3s-fs %s into %s (log: %s)\n' "$_SNAP_S3S_VERSION" "$dir" "$log" >&2
        # Its own target dir (removed afterwards), so no project's CARGO_TARGET_DIR is touched.
        env -u CARGO_TARGET_DIR cargo install --locked --quiet "s3s-fs@$_SNAP_S3S_VERSION" \
            --features binary --root "$dir" --target-dir "$tools/s3s-fs-build" >"$log" 2>&1 || rc=$?
        rm -rf "$tools/s3s-fs-build"
        exit "$rc"
    ) 9>"$tools/.lock" || rc=$?
    if [ "$rc" -ne 0 ] || [ ! -x "$bin" ]; then
        _snap_err "could not build s3s-fs $_SNAP_S3S_VERSION; last lines of $log:"
        tail -n 20 "$log" >&2 2>/dev/null
        return 1
    fi
    _snap_say "built s3s-fs $_SNAP_S3S_VERSION in $(($(date +%s) - t0)) s" >&2
    printf '%s\n' "$bin"
}

# Starts s3s-fs serving directory $2 on 127.0.0.1 with keys test/test; $1 is a directory for
# its log and pid; prints "PID URL". Used by _snap_start_s3s and by benches/compare.sh.
_snap_run_s3s() {
    local dir=$1 data=$2 bin port pid url code moto=${SNAP_TEST_S3_ENDPOINT:-}
    bin=$(_snap_s3s_bin) || return 1
    mkdir -p "$dir" "$data" || return 1
    port=$(_snap_pick_port "${SNAP_TEST_PG_PORT:-}" "${moto##*:}") || {
        _snap_err "no free TCP port found on 127.0.0.1"
        return 1
    }
    url="http://127.0.0.1:$port"
    (
        trap '' HUP
        exec "$bin" --host 127.0.0.1 --port "$port" --access-key test --secret-key test "$data"
    ) </dev/null >"$dir/s3s-fs.log" 2>&1 &
    pid=$!
    code=000
    for _ in $(seq 1 300); do
        kill -0 "$pid" 2>/dev/null || break
        code=$(_snap_http GET "$url/")
        [ "$code" = 200 ] && break
        sleep 0.1
    done
    if [ "$code" != 200 ]; then
        _snap_err "s3s-fs did not answer on $url (last status $code); last lines of $dir/s3s-fs.log:"
        tail -n 20 "$dir/s3s-fs.log" >&2 2>/dev/null
        kill "$pid" 2>/dev/null
        return 1
    fi
    printf '%s %s\n' "$pid" "$url"
}

_snap_start_s3s() {
    local root=$1 out pid url code
    out=$(_snap_run_s3s "$root/s3s" "$root/s3s/data") || return 1
    pid=${out%% *}
    url=${out#* }
    _snap_state_set SNAP_SVC_S3S_PID "$pid"
    code=$(_snap_http PUT "$url/$_SNAP_S3_BUCKET" '')
    case $code in
    200 | 409) ;;
    *)
        _snap_err "could not create bucket $_SNAP_S3_BUCKET at $url (HTTP $code)"
        return 1
        ;;
    esac
    _snap_probe_conditional "$url" || return 1
    _snap_state_export SNAP_TEST_S3S_ENDPOINT "$url"
    _snap_state_export SNAP_TEST_S3S_BUCKET "$_SNAP_S3_BUCKET"
    _snap_say "s3 (s3s-fs $_SNAP_S3S_VERSION) at $url bucket $_SNAP_S3_BUCKET (log $root/s3s/s3s-fs.log)"
}

# True when the s3s-fs of the state file is alive and answering.
_snap_s3s_healthy() {
    local state
    state=$(_snap_state_file)
    [ -f "$state" ] || return 1
    (
        # shellcheck disable=SC1090
        . "$state" || exit 1
        [ -n "${SNAP_TEST_S3S_ENDPOINT:-}" ] || exit 1
        _snap_pid_is "${SNAP_SVC_S3S_PID:-}" "${SNAP_SVC_ROOT:-}/s3s/data" || exit 1
        [ "$(_snap_http GET "$SNAP_TEST_S3S_ENDPOINT/$SNAP_TEST_S3S_BUCKET")" = 200 ] || exit 1
    ) >/dev/null 2>&1
}

# ---------------------------------------------------------------------------------------------
# MariaDB

# Runs a command as the owner of the MariaDB datadir ($1 = mysql or self).
_snap_as_my_owner() {
    local owner=$1
    shift
    if [ "$owner" = self ]; then
        "$@"
    elif command -v runuser >/dev/null 2>&1; then
        (cd / && runuser -u mysql -- "$@")
    else
        (cd / && su mysql -s /bin/sh -c "$(printf '%q ' "$@")")
    fi
}

# Starts a private MariaDB server (Debian's mariadb-server, installed when missing): its own
# datadir under $1/mysql made by mariadb-install-db, no option files read (--no-defaults), TCP
# on 127.0.0.1:PORT and a unix socket in $1/mysql; durability off (a throwaway server). Then
# makes user `snap` (every privilege, random password in $1/mysql/password, mode 0600) and
# drops the accounts mariadb-install-db made for this machine's host name (with
# --skip-name-resolve the server cannot show them, which breaks `mariadb-dump --system=users`).
_snap_start_mysql() {
    local root=$1 owner mydir data sock port attempt ok=0 pid pwfile pw ver
    if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then
        _snap_apt_install mariadb-server mariadb-client || return 1
    fi
    if ! command -v mariadb-install-db >/dev/null 2>&1 || ! command -v mariadb >/dev/null 2>&1 ||
        ! command -v mariadb-dump >/dev/null 2>&1; then
        _snap_apt_install mariadb-server mariadb-client || return 1
    fi
    local mariadbd
    mariadbd=$(command -v mariadbd 2>/dev/null || printf '/usr/sbin/mariadbd')
    if [ "$(id -u)" -eq 0 ]; then
        owner=mysql
        if ! id mysql >/dev/null 2>&1; then
            useradd --system --user-group --no-create-home --home-dir /nonexistent \
                --shell /usr/sbin/nologin mysql || return 1
        fi
    else
        owner=self
    fi
    mydir="$root/mysql"
    data="$mydir/data"
    sock="$mydir/mysqld.sock"
    mkdir -p "$mydir" || return 1
    if [ "$owner" = mysql ]; then
        chown mysql: "$mydir" || return 1
    fi
    chmod 700 "$mydir" || return 1
    _snap_state_set SNAP_SVC_MY_OWNER "$owner"
    _snap_state_set SNAP_SVC_MY_DATA "$data"
    local userarg=()
    [ "$owner" = mysql ] && userarg=(--user=mysql)
    if ! _snap_as_my_owner "$owner" mariadb-install-db --no-defaults "${userarg[@]}" \
        --datadir="$data" --auth-root-authentication-method=normal --skip-test-db \
        --skip-name-resolve >"$mydir/install-db.log" 2>&1; then
        _snap_err "mariadb-install-db failed; last lines of $mydir/install-db.log:"
        tail -n 20 "$mydir/install-db.log" >&2
        return 1
    fi
    # A port can be taken between probing and binding: retry with another one.
    for attempt in 1 2 3; do
        port=$(_snap_pick_port "${SNAP_TEST_PG_PORT:-}") || {
            _snap_err "no free TCP port found on 127.0.0.1"
            return 1
        }
        (
            trap '' HUP
            cd / || exit 1
            exec "$mariadbd" --no-defaults "${userarg[@]}" --datadir="$data" --socket="$sock" \
                --port="$port" --bind-address=127.0.0.1 --pid-file="$mydir/mysqld.pid" \
                --log-error="$mydir/mysqld.log" --skip-name-resolve --skip-log-bin \
                --innodb-buffer-pool-size=64M --innodb-log-file-size=64M \
                --innodb-flush-log-at-trx-commit=0 --innodb-doublewrite=0 --sync-binlog=0 \
                --performance-schema=OFF --max-connections=200 --character-set-server=utf8mb4
        ) </dev/null >"$mydir/mysqld.out" 2>&1 &
        pid=$!
        _snap_state_set SNAP_SVC_MY_PID "$pid"
        for _ in $(seq 1 600); do
            kill -0 "$pid" 2>/dev/null || break
            if mariadb-admin --no-defaults --protocol=socket -S "$sock" -u root \
                --connect-timeout=2 ping >/dev/null 2>&1; then
                ok=1
                break
            fi
            sleep 0.1
        done
        [ "$ok" = 1 ] && break
        _snap_warn "MariaDB did not start on port $port (attempt $attempt)"
        _snap_kill "$pid" "$data"
    done
    if [ "$ok" != 1 ]; then
        _snap_err "MariaDB failed to start; last lines of $mydir/mysqld.log:"
        tail -n 20 "$mydir/mysqld.log" >&2 2>/dev/null
        return 1
    fi
    pwfile="$mydir/password"
    pw="snap-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
    (umask 077 && printf '%s\n' "$pw" >"$pwfile") || return 1
    if ! mariadb --no-defaults --protocol=socket -S "$sock" -u root -e \
        "CREATE USER 'snap'@'127.0.0.1' IDENTIFIED BY '$pw';
         CREATE USER 'snap'@'localhost' IDENTIFIED BY '$pw';
         GRANT ALL PRIVILEGES ON *.* TO 'snap'@'127.0.0.1' WITH GRANT OPTION;
         GRANT ALL PRIVILEGES ON *.* TO 'snap'@'localhost' WITH GRANT OPTION;
         DELETE FROM mysql.global_priv
           WHERE Host NOT IN ('localhost', '127.0.0.1', '::1', '%');
         FLUSH PRIVILEGES;" \
        >"$mydir/users.log" 2>&1; then
        _snap_err "creating MariaDB user snap failed; see $mydir/users.log"
        return 1
    fi
    _snap_state_export SNAP_TEST_MYSQL_HOST 127.0.0.1
    _snap_state_export SNAP_TEST_MYSQL_PORT "$port"
    _snap_state_export SNAP_TEST_MYSQL_SOCKET "$sock"
    _snap_state_export SNAP_TEST_MYSQL_USER snap
    _snap_state_export SNAP_TEST_MYSQL_PASSWORD_FILE "$pwfile"
    ver=$("$mariadbd" --version 2>/dev/null | awk '{print $3}')
    _snap_say "mariadb $ver at 127.0.0.1:$port and $sock (user snap, password in $pwfile; log $mydir/mysqld.log)"
}

# True when the MariaDB of the state file is alive and answering.
_snap_mysql_healthy() {
    local state
    state=$(_snap_state_file)
    [ -f "$state" ] || return 1
    (
        # shellcheck disable=SC1090
        . "$state" || exit 1
        [ -n "${SNAP_TEST_MYSQL_SOCKET:-}" ] || exit 1
        _snap_pid_is "${SNAP_SVC_MY_PID:-}" "${SNAP_SVC_MY_DATA:-}" || exit 1
        mariadb-admin --no-defaults --protocol=socket -S "$SNAP_TEST_MYSQL_SOCKET" -u root \
            --connect-timeout=5 ping || exit 1
    ) >/dev/null 2>&1
}

# Prints the paths of Chromium and its WebDriver as two lines (browser, driver); fails when
# either is missing. Debian names them chromium and chromedriver (package chromium-driver).
_snap_chromium_paths() {
    local browser driver
    browser=$(command -v chromium 2>/dev/null || command -v chromium-browser 2>/dev/null) || return 1
    driver=$(command -v chromedriver 2>/dev/null ||
        { [ -x /usr/lib/chromium/chromedriver ] && printf '/usr/lib/chromium/chromedriver'; }) ||
        return 1
    printf '%s\n%s\n' "$browser" "$driver"
}

# Installs Debian's chromium and chromium-driver when missing and exports their paths as
# SNAP_TEST_CHROMIUM and SNAP_TEST_CHROMEDRIVER (skipped with SNAP_TEST_BROWSER=0). Starts
# nothing: the browser test runs its own chromedriver on a free port.
_snap_setup_chromium() {
    [ "${SNAP_TEST_BROWSER:-1}" != 0 ] || return 0
    local paths ver
    if ! paths=$(_snap_chromium_paths); then
        _snap_apt_install chromium chromium-driver || return 1
        paths=$(_snap_chromium_paths) || {
            _snap_err "chromium or chromedriver still missing after apt-get install"
            return 1
        }
    fi
    _snap_state_export SNAP_TEST_CHROMIUM "$(printf '%s\n' "$paths" | sed -n 1p)"
    _snap_state_export SNAP_TEST_CHROMEDRIVER "$(printf '%s\n' "$paths" | sed -n 2p)"
    ver=$("$SNAP_TEST_CHROMEDRIVER" --version 2>/dev/null | awk '{print $2}')
    _snap_say "chromium at $SNAP_TEST_CHROMIUM, chromedriver ${ver:-?} at $SNAP_TEST_CHROMEDRIVER"
}

# ---------------------------------------------------------------------------------------------
# Commands

# True when the state file describes services that are alive and answering.
_snap_healthy() {
    local state
    state=$(_snap_state_file)
    [ -f "$state" ] || return 1
    (
        # shellcheck disable=SC1090
        . "$state" || exit 1
        [ -n "${SNAP_TEST_PG_PORT:-}" ] || exit 1
        [ -n "${SNAP_TEST_S3_ENDPOINT:-}" ] || exit 1
        _snap_pid_is "${SNAP_SVC_PG_PID:-}" "-D ${SNAP_SVC_PG_DATA:-}" || exit 1
        _snap_pid_is "${SNAP_SVC_S3_PID:-}" "${SNAP_SVC_ROOT:-}/s3/snap_moto_server.py" || exit 1
        "$SNAP_TEST_PG_BIN/pg_isready" -q -h "$SNAP_TEST_PG_HOST" -p "$SNAP_TEST_PG_PORT" -t 5 || exit 1
        [ "$(_snap_http GET "$SNAP_TEST_S3_ENDPOINT/$SNAP_TEST_S3_BUCKET")" = 200 ] || exit 1
    ) >/dev/null 2>&1
}

# Starts both services (or reuses healthy ones), exporting the SNAP_TEST_* variables.
# On failure it cleans up whatever it had started and returns non-zero.
# Sets SNAP_TEST_SERVICES_REUSED=1 when it reused running services, else 0.
snap_services_start() {
    local state root t0
    state=$(_snap_state_file)
    t0=$(date +%s)
    # tests/console_api.rs checks zip archives with Info-ZIP unzip (CI=true fails without it).
    if ! command -v unzip >/dev/null 2>&1; then
        _snap_apt_install unzip || _snap_warn "unzip is not installed: the zip tests fail under CI=true"
    fi
    # shellcheck disable=SC2034 # read by scripts/test.sh
    SNAP_TEST_SERVICES_REUSED=0
    if [ "${SNAP_TEST_FRESH:-0}" != 1 ] && _snap_healthy; then
        # shellcheck disable=SC1090
        . <(grep '^export ' "$state")
        # shellcheck disable=SC2034 # read by scripts/test.sh
        SNAP_TEST_SERVICES_REUSED=1
        _snap_say "postgresql at $SNAP_TEST_PG_HOST:$SNAP_TEST_PG_PORT (already running, reused)"
        _snap_say "s3 at $SNAP_TEST_S3_ENDPOINT bucket $SNAP_TEST_S3_BUCKET (already running, reused)"
        # shellcheck disable=SC1090
        root=$(. "$state" && printf '%s' "$SNAP_SVC_ROOT")
        if _snap_s3auth_healthy; then
            _snap_say "s3 with authorization at $SNAP_TEST_S3AUTH_ENDPOINT (moto, already running, reused)"
        elif ! _snap_start_s3auth "$root"; then
            # Services started before it was added: it is started beside them.
            _snap_err "starting the authorizing moto failed (the other services keep running)"
            return 1
        fi
        if [ "${SNAP_TEST_S3S:-1}" != 0 ]; then
            if _snap_s3s_healthy; then
                _snap_say "s3 at $SNAP_TEST_S3S_ENDPOINT bucket $SNAP_TEST_S3S_BUCKET (s3s-fs, already running, reused)"
            elif ! _snap_start_s3s "$root"; then
                # Services started before s3s-fs was added: it is started beside them.
                _snap_err "starting s3s-fs failed (PostgreSQL and moto keep running)"
                return 1
            fi
        fi
        if [ "${SNAP_TEST_MYSQL:-1}" != 0 ]; then
            if _snap_mysql_healthy; then
                _snap_say "mariadb at $SNAP_TEST_MYSQL_HOST:$SNAP_TEST_MYSQL_PORT (already running, reused)"
            elif ! _snap_start_mysql "$root"; then
                # Services started before MariaDB was added: it is started beside them.
                _snap_err "starting MariaDB failed (the other services keep running)"
                return 1
            fi
        fi
        if [ -z "${SNAP_TEST_CHROMIUM:-}" ] || [ ! -x "$SNAP_TEST_CHROMIUM" ]; then
            _snap_setup_chromium || return 1
        fi
        return 0
    fi
    if [ -f "$state" ]; then
        _snap_say "cleaning up services of an earlier run ($state)"
        snap_services_stop >/dev/null || true
    fi

    root=$(mktemp -d /tmp/snap-test.XXXXXX) || return 1
    # The postgres user has to reach $root/pg.
    chmod 755 "$root" || return 1
    : >"$state" || return 1
    _snap_state_set SNAP_SVC_ROOT "$root"

    if ! _snap_start_pg "$root" || ! _snap_start_s3 "$root" || ! _snap_start_s3auth "$root" ||
        { [ "${SNAP_TEST_S3S:-1}" != 0 ] && ! _snap_start_s3s "$root"; } ||
        { [ "${SNAP_TEST_MYSQL:-1}" != 0 ] && ! _snap_start_mysql "$root"; } ||
        ! _snap_setup_chromium; then
        _snap_err "starting test services failed; stopping what was started"
        snap_services_stop >/dev/null || true
        return 1
    fi
    _snap_say "ready in $(($(date +%s) - t0)) s (state $state)"
}

# Stops the services recorded in the state file and removes their temp dirs. Works after a
# start that failed half way, and when nothing is running.
snap_services_stop() {
    local state var
    state=$(_snap_state_file)
    if [ -f "$state" ]; then
        (
            SNAP_SVC_ROOT='' SNAP_SVC_PG_OWNER='' SNAP_SVC_PG_BIN='' SNAP_SVC_PG_DATA=''
            SNAP_SVC_PG_PID='' SNAP_SVC_S3_PID='' SNAP_SVC_S3S_PID='' SNAP_SVC_S3AUTH_PID=''
            SNAP_SVC_MY_PID='' SNAP_SVC_MY_DATA=''
            # shellcheck disable=SC1090
            . "$state"
            if [ -n "$SNAP_SVC_PG_DATA" ] && [ -f "$SNAP_SVC_PG_DATA/postmaster.pid" ]; then
                [ -n "$SNAP_SVC_PG_PID" ] ||
                    SNAP_SVC_PG_PID=$(head -n 1 "$SNAP_SVC_PG_DATA/postmaster.pid" 2>/dev/null) || true
                if [ -n "$SNAP_SVC_PG_BIN" ]; then
                    _snap_as_pg_owner "${SNAP_SVC_PG_OWNER:-self}" "$SNAP_SVC_PG_BIN/pg_ctl" \
                        -D "$SNAP_SVC_PG_DATA" -m fast -t 20 -w stop >/dev/null 2>&1 || true
                fi
            fi
            if [ -n "$SNAP_SVC_PG_DATA" ]; then
                # SIGINT is PostgreSQL's "fast shutdown".
                _snap_kill "$SNAP_SVC_PG_PID" "-D $SNAP_SVC_PG_DATA" INT
            fi
            if [ -n "$SNAP_SVC_ROOT" ]; then
                _snap_kill "$SNAP_SVC_S3_PID" "$SNAP_SVC_ROOT/s3/snap_moto_server.py"
                _snap_kill "$SNAP_SVC_S3S_PID" "$SNAP_SVC_ROOT/s3s/data"
                _snap_kill "$SNAP_SVC_S3AUTH_PID" "$SNAP_SVC_ROOT/s3auth/snap_moto_server.py"
            fi
            if [ -n "$SNAP_SVC_MY_DATA" ]; then
                # SIGTERM is mariadbd's normal shutdown.
                _snap_kill "$SNAP_SVC_MY_PID" "$SNAP_SVC_MY_DATA"
            fi
            case $SNAP_SVC_ROOT in
            /tmp/snap-test.*) rm -rf "$SNAP_SVC_ROOT" || true ;;
            esac
        ) || true
        rm -f "$state"
        _snap_say "stopped test services"
    else
        _snap_say "no test services recorded in $state"
    fi
    for var in $_SNAP_EXPORTED_VARS; do unset "$var"; done
    unset SNAP_TEST_SERVICES_REUSED
    return 0
}

# Prints `export VAR=value` lines for the services recorded in the state file.
snap_services_env() {
    local state
    state=$(_snap_state_file)
    if [ ! -f "$state" ]; then
        _snap_err "no test services recorded in $state; run scripts/services.sh start"
        return 1
    fi
    grep '^export ' "$state"
    # Services started before the browser test was added: Chromium's paths all the same.
    local paths
    if [ "${SNAP_TEST_BROWSER:-1}" != 0 ] && ! grep -q '^export SNAP_TEST_CHROMIUM=' "$state" &&
        paths=$(_snap_chromium_paths); then
        printf 'export SNAP_TEST_CHROMIUM=%q\n' "$(printf '%s\n' "$paths" | sed -n 1p)"
        printf 'export SNAP_TEST_CHROMEDRIVER=%q\n' "$(printf '%s\n' "$paths" | sed -n 2p)"
    fi
}

snap_services_status() {
    if _snap_healthy; then
        _snap_say "running:"
        snap_services_env
    else
        _snap_say "not running"
        return 1
    fi
}

_snap_services_main() {
    case "${1:-}" in
    start) snap_services_start ;;
    stop) snap_services_stop ;;
    env) snap_services_env ;;
    status) snap_services_status ;;
    '') return 0 ;; # sourced without a command: only define the functions
    *)
        printf 'usage: %s start|stop|env|status\n' "${BASH_SOURCE[0]}" >&2
        return 2
        ;;
    esac
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -uo pipefail
    _snap_services_main "$@"
    exit $?
else
    _snap_services_main "$@"
fi
