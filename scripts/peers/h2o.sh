#!/usr/bin/env bash
# A peer for `muse bench http`: h2o from Debian's packages serving ROOT as
# static files on 127.0.0.1, in the foreground, without an access log.
#
#   muse bench http --spawn "h2o=scripts/peers/h2o.sh {root}" \
#                   --spawn "h2o-all=scripts/peers/h2o.sh --workers auto {root}"
#   muse bench http --scenario https-get \
#                   --spawn "h2o=scripts/peers/h2o.sh --tls {tls_cert} {tls_key} {root}"
#
# --tls CERT KEY serves HTTPS instead (PEM files; the bench's TLS scenarios
# give theirs as {tls_cert} and {tls_key}): `ssl:` under `listen`, TLS 1.2
# at least, h2o's default session resumption (cache and tickets).
# --workers N (or $MUSE_PEER_WORKERS) sets h2o's worker threads: 1 by
# default, `auto` for one per CPU. Installs h2o with apt-get if it is missing
# (only as root, where apt-get exists), writes its config into a temporary
# directory, starts it on a free port, prints `listening on 127.0.0.1:PORT`
# once it accepts, and waits. SIGTERM or SIGINT (muse bench stops the whole
# process group) stops h2o and removes the temporary directory.
set -euo pipefail

me=h2o.sh
# shellcheck source=scripts/peers/lib.sh
. "$(dirname "$0")/lib.sh"
peer_args "$@"
peer_program h2o /usr/bin/h2o
h2o=$program
port=$(peer_free_port)

tmp=$(mktemp -d /tmp/muse-peer-h2o.XXXXXX)
chmod 0755 "$tmp"
# h2o refuses to run as root without a user to become.
user_line=
if [ "$(id -u)" -eq 0 ]; then
    user_line="user: nobody"
fi
# No `access-log`: h2o then writes none. `max-connections` is 1024 by
# default, fewer than the idle scenario holds.
tls_lines=
if [ -n "$tls_cert" ]; then
    tls_lines="  ssl:
    certificate-file: $tls_cert
    key-file: $tls_key
    minimum-version: TLSv1.2"
fi
cat > "$tmp/h2o.conf" <<CONF
$user_line
num-threads: $workers
max-connections: 20000
error-log: /dev/stderr
listen:
  host: 127.0.0.1
  port: $port
$tls_lines
hosts:
  default:
    paths:
      /:
        file.dir: $root
CONF

ulimit -n 65536 2>/dev/null || true
peer_run "$h2o" -c "$tmp/h2o.conf"
