#!/usr/bin/env bash
# A peer for `muse bench http`: nginx from Debian's packages serving ROOT as
# static files on 127.0.0.1, in the foreground, configured to measure
# serving: `sendfile on`, `access_log off`, keep-alive requests unlimited.
#
#   muse bench http --spawn "nginx=scripts/peers/nginx.sh {root}" \
#                   --spawn "nginx-all=scripts/peers/nginx.sh --workers auto {root}"
#
# --workers N (or $MUSE_PEER_WORKERS) sets nginx's worker processes: 1 by
# default, `auto` for one per CPU. Installs nginx with apt-get if it is
# missing (only as root, where apt-get exists), writes its config into a
# temporary directory, starts it on a free port, prints
# `listening on 127.0.0.1:PORT` once it accepts, and waits. SIGTERM or
# SIGINT (muse bench stops the whole process group) stops nginx and removes
# the temporary directory.
set -euo pipefail

workers=${MUSE_PEER_WORKERS:-1}
while [ $# -gt 1 ]; do
    case $1 in
        --workers) workers=${2:?--workers wants N or auto}; shift 2 ;;
        --workers=*) workers=${1#--workers=}; shift ;;
        *) break ;;
    esac
done
root=${1:?usage: nginx.sh [--workers N|auto] ROOT}
[ -d "$root" ] || { echo "nginx.sh: $root is not a directory" >&2; exit 1; }
root=$(cd "$root" && pwd -P)
case $workers in
    auto) ;;
    ''|*[!0-9]*) echo "nginx.sh: --workers wants a number or auto, not $workers" >&2; exit 2 ;;
esac

nginx=$(command -v nginx || echo /usr/sbin/nginx)
if [ ! -x "$nginx" ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "nginx.sh: installing nginx" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update >&2
        apt-get install -y --no-install-recommends nginx >&2
        # The package may start its own daemon on port 80; this script
        # runs its own.
        service nginx stop >/dev/null 2>&1 || true
        nginx=$(command -v nginx || echo /usr/sbin/nginx)
    else
        echo "nginx.sh: nginx is not installed (apt-get install nginx, as root)" >&2
        exit 1
    fi
fi

# A free port: bound and released (a race with another program is unlikely
# on a machine running a bench).
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

tmp=$(mktemp -d /tmp/muse-peer-nginx.XXXXXX)
chmod 0755 "$tmp"
# Run as root, the workers become `nobody`: the root must be readable by
# them (the bench's fixture directory is).
user_line=
if [ "$(id -u)" -eq 0 ]; then
    user_line="user nobody nogroup;"
fi
cat > "$tmp/nginx.conf" <<CONF
$user_line
worker_processes $workers;
worker_rlimit_nofile 65536;
daemon off;
pid $tmp/nginx.pid;
error_log stderr warn;

events {
    worker_connections 20000;
}

http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    # "Unlimited": nginx has no such value, so a number no run reaches.
    keepalive_requests 1000000000;
    keepalive_timeout 75s;
    types { application/octet-stream bin; text/html html; text/plain txt; }
    default_type application/octet-stream;
    client_body_temp_path $tmp/body;
    proxy_temp_path $tmp/proxy;
    fastcgi_temp_path $tmp/fastcgi;
    uwsgi_temp_path $tmp/uwsgi;
    scgi_temp_path $tmp/scgi;

    server {
        listen 127.0.0.1:$port backlog=4096;
        root $root;
    }
}
CONF

pid=
# shellcheck disable=SC2317  # invoked by the trap
stop() {
    trap - TERM INT HUP
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
    exit 0
}
trap stop TERM INT HUP

"$nginx" -p "$tmp" -c "$tmp/nginx.conf" -e stderr </dev/null &
pid=$!

# Ready once it accepts.
for _ in $(seq 200); do
    if ! kill -0 "$pid" 2>/dev/null; then
        wait "$pid" || true
        echo "nginx.sh: nginx exited before it listened" >&2
        rm -rf "$tmp"
        exit 1
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "listening on 127.0.0.1:$port"
        break
    fi
    sleep 0.05
done

status=0
wait "$pid" || status=$?
rm -rf "$tmp"
exit "$status"
