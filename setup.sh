#!/usr/bin/env bash
# Install and run KernKoa: uWSGI behind nginx, with a Celery worker and beat.
# Safe to run again: every step checks what is already there.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: setup.sh [options]

Default: a system install (run as root): a service user "kernkoa", the code in
/opt/kernkoa with its virtualenv, systemd units for uWSGI, the Celery worker and beat,
and an nginx site enabled next to the existing ones (checked with nginx -t
before any reload; no other site is touched).

The install is quiet: no kernel pages unless --pages, no DEBUG, nginx's own
errors in the kernel's JSON envelope without its version, and every file the
services write (logs, pid files, databases) readable by their owner only.
Running it again with other options rewrites the env file and restarts the
services.

Options:
  --prefix DIR     install into DIR instead of /opt/kernkoa
  --port PORT      port nginx listens on (default 80)
  --broker URL     Celery broker and result store, e.g. redis://127.0.0.1:6379/0
                   (default: the embedded broker under DIR/var)
  --server-name NAME
                   the host name the site answers to: nginx's server_name, and
                   the app's TRUSTED_HOSTS (NAME, localhost, 127.0.0.1, [::1]);
                   another Host header gets a 400 (default: any host)
  --processes N    uWSGI worker processes: requests served at once (default 8,
                   or KERNKOA_PROCESSES)
  --threads N      threads per process (default 1, or KERNKOA_THREADS); above 1,
                   harakiri can no longer stop a runaway request
  --harakiri S     seconds after which a request's worker is killed and its
                   client answered 502 (default 60, or KERNKOA_HARAKIRI)
  --reload-on-rss MIB
                   a worker grown past MIB of memory is replaced after its
                   request (default 256, or KERNKOA_RELOAD_ON_RSS; 0: never)
  --secret-file FILE
                   the secret key (of session cookies and task ids) is FILE's
                   content; or give it as KERNKOA_SECRETKEY in the environment.
                   Written into the env file (mode 0640). Nodes behind one
                   balancer need the same one. With neither, a run keeps the
                   env file's key, and a first install has one generated into
                   its var folder (this node's own)
  --pages          serve the kernel pages (/_kernkoa/endpoints, info,
                   openapi.json, docs), off by default; /_kernkoa/health is
                   always served
  --metrics        serve Prometheus metrics at /_kernkoa/metrics (behind the
                   pages' login rule; docs/operations.md), off by default
  --worker-metrics-port PORT
                   the Celery worker serves its metrics on 127.0.0.1:PORT
                   (default 0: none)
  --no-systemd     no service user, no systemd, no system nginx: start uWSGI
                   (whose master keeps the worker running) and a private nginx
                   in the background as the invoking user (containers, CI,
                   trying it out)
  --stop           stop what --no-systemd started (waits until every process
                   has exited, SIGKILL after a grace period)
  --status         show the processes and their state
  --uninstall      stop and remove the services, the nginx site and DIR
  -h, --help       this help
EOF
}

SOURCE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PREFIX=/opt/kernkoa
PORT=80
BROKER=""
SERVER_NAME=""
PAGES=false
METRICS=false
WORKER_METRICS_PORT=0
SYSTEMD=1
ACTION=install
GRACE=${KERNKOA_STOP_GRACE:-15}
SERVICE_USER=kernkoa
# uWSGI's sizes, the defaults of kernkoa_uwsgi.ini (docs/operations.md).
PROCESSES=${KERNKOA_PROCESSES:-8}
THREADS=${KERNKOA_THREADS:-1}
HARAKIRI=${KERNKOA_HARAKIRI:-60}
RELOAD_ON_RSS=${KERNKOA_RELOAD_ON_RSS:-256}
# Set (even to nothing) in the environment: that is the key asked for.
SECRET_GIVEN=${KERNKOA_SECRETKEY+yes}
SECRET=${KERNKOA_SECRETKEY-}

while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) PREFIX=$2; shift 2 ;;
        --port) PORT=$2; shift 2 ;;
        --broker) BROKER=$2; shift 2 ;;
        --server-name) SERVER_NAME=$2; shift 2 ;;
        --pages) PAGES=true; shift ;;
        --metrics) METRICS=true; shift ;;
        --worker-metrics-port) WORKER_METRICS_PORT=$2; shift 2 ;;
        --secret-file)
            if ! [ -f "$2" ] || ! [ -r "$2" ]; then
                echo "setup.sh: --secret-file: cannot read $2" >&2
                exit 2
            fi
            # The whole file, less its final newline (and any trailing blank).
            SECRET=$(sed -e 's/[[:space:]]*$//' "$2"); SECRET_GIVEN=yes; shift 2 ;;
        --processes) PROCESSES=$2; shift 2 ;;
        --threads) THREADS=$2; shift 2 ;;
        --harakiri) HARAKIRI=$2; shift 2 ;;
        --reload-on-rss) RELOAD_ON_RSS=$2; shift 2 ;;
        --no-systemd) SYSTEMD=0; shift ;;
        --stop) ACTION=stop; shift ;;
        --status) ACTION=status; shift ;;
        --uninstall) ACTION=uninstall; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "setup.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

# The name lands in nginx's configuration and the env file: a host name only
# (a leading dot: its subdomains too, for nginx and Werkzeug alike).
if [ -n "$SERVER_NAME" ] && ! [[ $SERVER_NAME =~ ^\.?[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$ ]]; then
    echo "setup.sh: --server-name takes a host name, not $SERVER_NAME" >&2
    exit 2
fi

# The key lands in the env file, which bash sources and systemd reads: no quotes,
# blanks or dollars, and long enough to be a key rather than a password.
if [ -n "$SECRET_GIVEN" ] && ! [[ $SECRET =~ ^[A-Za-z0-9._~+/=-]{32,}$ ]]; then
    echo "setup.sh: the secret key (KERNKOA_SECRETKEY or --secret-file) must be at least" \
         "32 characters of A-Z a-z 0-9 . _ ~ + / = -, e.g." \
         "python3 -c 'import secrets; print(secrets.token_hex(32))'" >&2
    exit 2
fi

# Each lands in the env file the services read: a whole number of at least LEAST.
check_count() {
    local option=$1 value=$2 least=$3
    # No leading zero: shell arithmetic would read 08 as octal.
    if ! [[ $value =~ ^(0|[1-9][0-9]{0,8})$ ]] || [ "$value" -lt "$least" ]; then
        echo "setup.sh: $option takes a whole number of at least $least, not '$value'" >&2
        exit 2
    fi
}
check_count --processes "$PROCESSES" 1
check_count --threads "$THREADS" 1
check_count --harakiri "$HARAKIRI" 1
check_count --reload-on-rss "$RELOAD_ON_RSS" 0
check_count --worker-metrics-port "$WORKER_METRICS_PORT" 0
if [ "$WORKER_METRICS_PORT" -gt 65535 ]; then
    echo "setup.sh: --worker-metrics-port takes a port, not $WORKER_METRICS_PORT" >&2
    exit 2
fi
if [ "$THREADS" -gt 1 ]; then
    echo "setup.sh: with $THREADS threads per process, harakiri cannot stop a runaway" \
         "request while the other threads serve (docs/operations.md)" >&2
fi

if [ "$ACTION" = install ]; then
    mkdir -p "$PREFIX"
elif [ ! -d "$PREFIX" ]; then
    echo "setup.sh: nothing installed in $PREFIX" >&2
    exit 1
fi
PREFIX=$(cd "$PREFIX" && pwd)
RUN=$PREFIX/var
ETC=$PREFIX/etc
# uWSGI refuses a unix socket path over 102 bytes (and nginx one over 107).
if [ "$(printf %s "$RUN/kernkoa_uwsgi.sock" | wc -c)" -gt 102 ]; then
    echo "setup.sh: $PREFIX is too long a path for uWSGI's socket in it (102 bytes at most" \
         "for $RUN/kernkoa_uwsgi.sock)" >&2
    [ "$ACTION" != install ] || rmdir "$PREFIX" 2>/dev/null || true
    exit 2
fi
VENV=$PREFIX/.venv
NGINX_ETC=/etc/nginx

say() { echo "setup.sh: $*"; }

# --- installing ------------------------------------------------------------------

need_packages() {
    local missing=()
    command -v nginx >/dev/null || missing+=(nginx-light)
    command -v python3 >/dev/null || missing+=(python3 python3-venv)
    [ -f "$NGINX_ETC/mime.types" ] || missing+=(nginx-light)
    if [ ${#missing[@]} -gt 0 ]; then
        say "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

copy_code() {
    if [ "$SOURCE" = "$PREFIX" ]; then
        return
    fi
    say "copying the code into $PREFIX"
    tar -C "$SOURCE" --exclude=./.venv --exclude=./var --exclude=./.git \
        --exclude=./etc --exclude='__pycache__' -cf - . | tar -C "$PREFIX" -xf -
}

make_venv() {
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -e "$PREFIX"
}

# Set when write_env changed the env file: the services read it when they start.
ENV_CHANGED=0

write_env() {
    mkdir -p "$ETC" "$RUN"
    # Logs, pid files, the socket and the databases live in RUN: nobody else
    # may list or enter it (nginx reaches the socket through the group).
    chmod 750 "$RUN"
    local body_limit draft trusted=""
    body_limit=$(cd "$PREFIX" && "$VENV/bin/python" -c \
        'from kernel.core.settings import Settings; print(Settings.load().MAX_CONTENT_LENGTH)')
    if [ -z "$SECRET_GIVEN" ] && [ -f "$ETC/kernkoa.env" ]; then
        # Run again without a key: keep the one given before (changing it would
        # end every session and orphan every task id).
        SECRET=$(sed -n 's/^KERNKOA_SECRETKEY=//p' "$ETC/kernkoa.env" | tail -n 1)
    fi
    if [ -n "$SECRET" ] && ! (cd "$PREFIX" && "$VENV/bin/python" -c \
            'import sys; from kernel.core.secretkey import is_known_secret
sys.exit(is_known_secret(sys.stdin.read()))' <<< "$SECRET"); then
        echo "setup.sh: the secret key is a well-known value: give a random one" >&2
        exit 2
    fi
    if [ -n "$SERVER_NAME" ]; then
        # The bracketed form is how a Host header carries an IPv6 address.
        trusted="$SERVER_NAME,localhost,127.0.0.1,[::1]"
    fi
    # The env file may hold a broker password: readable by its owner (and group)
    # only, from its first byte (mktemp creates it 0600).
    draft=$(mktemp "$ETC/.kernkoa.env.XXXXXX")
    {
        echo "KERNKOA_HOME=$PREFIX"
        echo "KERNKOA_RUN=$RUN"
        echo "KERNKOA_VAR=$RUN"
        # Quiet whatever the invoking shell exports (--no-systemd sources this file).
        echo "KERNKOA_DEBUG=false"
        echo "KERNKOA_PAGES=$PAGES"
        echo "KERNKOA_METRICS=$METRICS"
        echo "KERNKOA_WORKER_METRICS_PORT=$WORKER_METRICS_PORT"
        echo "KERNKOA_TRUSTED_HOSTS=$trusted"
        echo "KERNKOA_PROCESSES=$PROCESSES"
        echo "KERNKOA_THREADS=$THREADS"
        echo "KERNKOA_HARAKIRI=$HARAKIRI"
        echo "KERNKOA_RELOAD_ON_RSS=$RELOAD_ON_RSS"
        if [ -n "$SECRET" ]; then
            echo "KERNKOA_SECRETKEY=$SECRET"
        fi
        if [ -n "$BROKER" ]; then
            echo "KERNKOA_BROKER_URL=$BROKER"
            echo "KERNKOA_RESULT_BACKEND=$BROKER"
        fi
    } > "$draft"
    chmod 640 "$draft"
    if cmp -s "$draft" "$ETC/kernkoa.env"; then
        rm -f "$draft"
    else
        mv -f "$draft" "$ETC/kernkoa.env"
        ENV_CHANGED=1
    fi
    sed -e "s|@PORT@|$PORT|g" -e "s|@HOME@|$PREFIX|g" -e "s|@RUN@|$RUN|g" \
        -e "s|@ETC@|$ETC|g" -e "s|@BODY_LIMIT@|$body_limit|g" \
        -e "s|@READ_TIMEOUT@|$((HARAKIRI + 15))|g" \
        -e "s|@SERVER_NAME@|${SERVER_NAME:-_}|g" \
        "$PREFIX/kernkoa_nginx.conf" > "$ETC/kernkoa_nginx.conf"
    (cd "$PREFIX" && "$VENV/bin/python" -m kernel.cli.nginx_errors) > "$ETC/kernkoa_nginx_errors.conf"
}

# Files an older install left readable or writable by others (new ones are
# created so by the services' umask): owner only, but the socket's group.
tighten_modes() {
    find "$RUN" -mindepth 1 ! -type s ! -type l -exec chmod go-rwx {} +
}

load_env() {
    set -a
    # shellcheck disable=SC1091
    . "$ETC/kernkoa.env"
    set +a
}

# --- without systemd: background processes with pid files --------------------------

write_private_nginx_conf() {
    mkdir -p "$RUN/nginx"
    cat > "$ETC/nginx.conf" <<EOF
# Generated by setup.sh --no-systemd: a private nginx for this install.
user $(id -un);
# One worker per core, each with thousands of connections (a proxied request
# takes two: the client's and uWSGI's) and the files they need.
worker_processes auto;
worker_rlimit_nofile 16384;
pid $RUN/nginx.pid;
error_log $RUN/nginx-error.log;
events { worker_connections 8192; }
http {
    include $NGINX_ETC/mime.types;
    access_log $RUN/nginx-access.log;
    client_body_temp_path $RUN/nginx/body;
    proxy_temp_path $RUN/nginx/proxy;
    fastcgi_temp_path $RUN/nginx/fastcgi;
    uwsgi_temp_path $RUN/nginx/uwsgi;
    scgi_temp_path $RUN/nginx/scgi;
    include $ETC/kernkoa_nginx.conf;
}
EOF
}

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_background() {
    load_env
    # What the services create is their owner's only (uWSGI sets its own umask
    # in kernkoa_uwsgi.ini, and the socket's mode with chmod-socket).
    umask 077
    write_private_nginx_conf
    if [ "$ENV_CHANGED" -eq 1 ]; then
        # They read the env file when they start.
        stop_group uWSGI "$RUN/kernkoa_uwsgi.pid" TERM
        stop_group worker "$RUN/worker.pid" TERM
        stop_group beat "$RUN/beat.pid" TERM
    fi
    if ! running "$RUN/kernkoa_uwsgi.pid"; then
        # uWSGI's master supervises the worker: it checks the pid file every
        # second and starts the worker again when its process is gone (exec:
        # the pid file names the worker, not the shell uWSGI starts it with). The
        # worker outlives a reload or stop of uWSGI (--stop stops it after). Beat,
        # which fires the catalog's schedules, is kept running the same way.
        say "starting uWSGI and the Celery worker and beat it keeps running"
        (cd "$PREFIX" && "$VENV/bin/uwsgi" --ini "$PREFIX/kernkoa_uwsgi.ini" \
            --smart-attach-daemon2 "$RUN/worker.pid exec $VENV/bin/kernkoa worker --logfile=$RUN/worker.log" \
            --smart-attach-daemon2 "$RUN/beat.pid exec $VENV/bin/kernkoa beat --logfile=$RUN/beat.log" \
            --daemonize "$RUN/kernkoa_uwsgi.log")
    fi
    nginx -t -q -c "$ETC/nginx.conf" -p "$RUN/nginx"
    if running "$RUN/nginx.pid"; then
        nginx -c "$ETC/nginx.conf" -p "$RUN/nginx" -s reload
    else
        say "starting nginx on port $PORT"
        nginx -c "$ETC/nginx.conf" -p "$RUN/nginx"
    fi
}

# Each daemon leads its own session (uWSGI, Celery and nginx all call setsid
# when they detach), so signalling the group reaches its workers too.
stop_group() {
    local name=$1 pidfile=$2 signal=$3 pid waited=0
    [ -f "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        say "stopping $name ($pid)"
        kill -"$signal" -- "-$pid" 2>/dev/null || kill -"$signal" "$pid" 2>/dev/null || true
        while kill -0 -- "-$pid" 2>/dev/null || kill -0 "$pid" 2>/dev/null; do
            if [ "$waited" -ge $((GRACE * 10)) ]; then
                say "$name did not stop within ${GRACE}s: SIGKILL"
                kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
            fi
            sleep 0.1
            waited=$((waited + 1))
        done
    fi
    rm -f "$pidfile"
}

stop_background() {
    stop_group nginx "$RUN/nginx.pid" QUIT
    # uWSGI first: it would start the worker and beat again.
    stop_group uWSGI "$RUN/kernkoa_uwsgi.pid" TERM
    stop_group worker "$RUN/worker.pid" TERM
    stop_group beat "$RUN/beat.pid" TERM
}

status_background() {
    local name pidfile
    for name in nginx kernkoa_uwsgi worker beat; do
        pidfile=$RUN/$name.pid
        if running "$pidfile"; then
            echo "$name: running (pid $(cat "$pidfile"))"
        else
            echo "$name: stopped"
        fi
    done
}

# --- with systemd ------------------------------------------------------------------

# write_unit NAME DESCRIPTION EXEC_START EXTRA_SERVICE_LINE
write_unit() {
    cat > "/etc/systemd/system/$1.service" <<EOF
[Unit]
Description=$2
After=network.target

[Service]
User=$SERVICE_USER
Group=$(id -gn "$SERVICE_USER")
EnvironmentFile=$ETC/kernkoa.env
WorkingDirectory=$PREFIX
UMask=0077
ExecStart=$3
$4
KillSignal=SIGTERM
Restart=on-failure
RestartSec=2

[Install]
WantedBy=multi-user.target
EOF
}

install_systemd() {
    id "$SERVICE_USER" >/dev/null 2>&1 || useradd --system --home-dir "$PREFIX" \
        --shell /usr/sbin/nologin "$SERVICE_USER"
    chown -R "$SERVICE_USER:" "$RUN"
    write_unit kernkoa-uwsgi "KernKoa web (uWSGI)" \
        "$VENV/bin/uwsgi --ini $PREFIX/kernkoa_uwsgi.ini" "ExecReload=/bin/kill -HUP \$MAINPID"
    # A worker finishes its running tasks before it stops.
    write_unit kernkoa-worker "KernKoa Celery worker" \
        "$VENV/bin/kernkoa worker" "TimeoutStopSec=300"
    # Beat fires the catalog's schedules; of several installs on one Redis, one fires.
    write_unit kernkoa-beat "KernKoa Celery beat (catalog schedules)" \
        "$VENV/bin/kernkoa beat" ""
    chgrp "$(id -gn "$SERVICE_USER")" "$ETC/kernkoa.env"
    # nginx runs as its own user and must reach the socket (RUN is 750).
    usermod -a -G "$(id -gn "$SERVICE_USER")" www-data 2>/dev/null || true
    ln -sf "$ETC/kernkoa_nginx.conf" "$NGINX_ETC/sites-enabled/kernkoa"
    # A site that fails nginx -t must not stay enabled: the next reload would fail.
    if ! nginx -t; then
        rm -f "$NGINX_ETC/sites-enabled/kernkoa"
        echo "setup.sh: nginx -t failed; the kernkoa site was not enabled" >&2
        exit 1
    fi
    systemctl daemon-reload
    if [ "$ENV_CHANGED" -eq 1 ]; then
        # Running services read the env file when they start (none: no-op).
        systemctl try-restart kernkoa-uwsgi.service kernkoa-worker.service kernkoa-beat.service
    fi
    systemctl enable --now kernkoa-uwsgi.service kernkoa-worker.service kernkoa-beat.service
    systemctl reload nginx || systemctl restart nginx
}

uninstall_systemd() {
    systemctl disable --now kernkoa-uwsgi.service kernkoa-worker.service kernkoa-beat.service \
        2>/dev/null || true
    rm -f /etc/systemd/system/kernkoa-uwsgi.service /etc/systemd/system/kernkoa-worker.service \
        /etc/systemd/system/kernkoa-beat.service
    systemctl daemon-reload 2>/dev/null || true
    if [ -L "$NGINX_ETC/sites-enabled/kernkoa" ]; then
        rm -f "$NGINX_ETC/sites-enabled/kernkoa"
        nginx -t && (systemctl reload nginx || true)
    fi
}

# --- main --------------------------------------------------------------------------

case "$ACTION" in
    install)
        need_packages
        copy_code
        make_venv
        write_env
        tighten_modes
        if [ "$SYSTEMD" -eq 1 ]; then
            install_systemd
        else
            start_background
        fi
        say "KernKoa answers on port $PORT"
        ;;
    stop) stop_background ;;
    status)
        if [ "$SYSTEMD" -eq 1 ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
            systemctl status --no-pager kernkoa-uwsgi.service kernkoa-worker.service \
                kernkoa-beat.service || true
        else
            status_background
        fi
        ;;
    uninstall)
        # Never remove a folder this script did not install.
        if [ ! -f "$PREFIX/kernkoa.py" ] || [ ! -f "$ETC/kernkoa.env" ]; then
            echo "setup.sh: $PREFIX is not a KernKoa install; nothing removed" >&2
            exit 1
        fi
        stop_background
        if [ "$SYSTEMD" -eq 1 ]; then
            uninstall_systemd
        fi
        if [ "$PREFIX" != "$SOURCE" ]; then
            rm -rf "$PREFIX"
        fi
        ;;
esac
