#!/usr/bin/env bash
# A peer for `muse bench http`: nginx from Debian's packages serving ROOT as
# static files on 127.0.0.1, in the foreground, configured to measure
# serving: `sendfile on`, `access_log off`, keep-alive requests unlimited.
#
#   muse bench http --spawn "nginx=scripts/peers/nginx.sh {root}" \
#                   --spawn "nginx-all=scripts/peers/nginx.sh --workers auto {root}"
#   muse bench http --scenario https-get \
#                   --spawn "nginx=scripts/peers/nginx.sh --tls {tls_cert} {tls_key} {root}"
#
# --tls CERT KEY serves HTTPS instead (PEM files; the bench's TLS scenarios
# give theirs as {tls_cert} and {tls_key}): `listen ... ssl`, TLS 1.2 and
# 1.3, a shared session cache (and nginx's default session tickets), so a
# client that resumes can.
# --workers N (or $MUSE_PEER_WORKERS) sets nginx's worker processes: 1 by
# default, `auto` for one per CPU. Installs nginx with apt-get if it is
# missing (only as root, where apt-get exists), writes its config into a
# temporary directory, starts it on a free port, prints
# `listening on 127.0.0.1:PORT` once it accepts, and waits. SIGTERM or
# SIGINT (muse bench stops the whole process group) stops nginx and removes
# the temporary directory.
set -euo pipefail

me=nginx.sh
# shellcheck source=scripts/peers/lib.sh
. "$(dirname "$0")/lib.sh"
peer_args "$@"
peer_program nginx /usr/sbin/nginx
nginx=$program
port=$(peer_free_port)

tmp=$(mktemp -d /tmp/muse-peer-nginx.XXXXXX)
chmod 0755 "$tmp"
# Run as root, the workers become `nobody`: the root must be readable by
# them (the bench's fixture directory is).
user_line=
if [ "$(id -u)" -eq 0 ]; then
    user_line="user nobody nogroup;"
fi
tls_lines=
if [ -n "$tls_cert" ]; then
    tls_lines="ssl_certificate $tls_cert;
        ssl_certificate_key $tls_key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SSL:10m;"
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
        listen 127.0.0.1:$port${tls_cert:+ ssl} backlog=4096;
        root $root;
        $tls_lines
    }
}
CONF

peer_run "$nginx" -p "$tmp" -c "$tmp/nginx.conf" -e stderr
