#!/usr/bin/env bash
# A peer for `muse bench http`: h2o from Debian's packages serving ROOT as
# static files on 127.0.0.1, in the foreground, without an access log.
#
#   muse bench http --spawn "h2o=scripts/peers/h2o.sh {root}" \
#                   --spawn "h2o-all=scripts/peers/h2o.sh --workers auto {root}"
#
# --workers N (or $MUSE_PEER_WORKERS) sets h2o's worker threads: 1 by
# default, `auto` for one per CPU. Installs h2o with apt-get if it is missing
# (only as root, where apt-get exists), writes its config into a temporary
# directory, starts it on a free port, prints `listening on 127.0.0.1:PORT`
# once it accepts, and waits. SIGTERM or SIGINT (muse bench stops the whole
# process group) stops h2o and removes the temporary directory.
set -euo pipefail

workers=${MUSE_PEER_WORKERS:-1}
while [ $# -gt 1 ]; do
    case $1 in
        --workers) workers=${2:?--workers wants N or auto}; shift 2 ;;
        --workers=*) workers=${1#--workers=}; shift ;;
        *) break ;;
    esac
done
root=${1:?usage: h2o.sh [--workers N|auto] ROOT}
[ -d "$root" ] || { echo "h2o.sh: $root is not a directory" >&2; exit 1; }
root=$(cd "$root" && pwd -P)
case $workers in
    auto) workers=$(nproc) ;;
    ''|*[!0-9]*) echo "h2o.sh: --workers wants a number or auto, not $workers" >&2; exit 2 ;;
esac

h2o=$(command -v h2o || echo /usr/bin/h2o)
if [ ! -x "$h2o" ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "h2o.sh: installing h2o" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update >&2
        apt-get install -y --no-install-recommends h2o >&2
        # The package may start its own daemon; this script runs its own.
        service h2o stop >/dev/null 2>&1 || true
        h2o=$(command -v h2o || echo /usr/bin/h2o)
    else
        echo "h2o.sh: h2o is not installed (apt-get install h2o, as root)" >&2
        exit 1
    fi
fi

# A free port: bound and released (a race with another program is unlikely
# on a machine running a bench).
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

tmp=$(mktemp -d /tmp/muse-peer-h2o.XXXXXX)
chmod 0755 "$tmp"
# h2o refuses to run as root without a user to become.
user_line=
if [ "$(id -u)" -eq 0 ]; then
    user_line="user: nobody"
fi
# No `access-log`: h2o then writes none. `max-connections` is 1024 by
# default, fewer than the idle scenario holds.
cat > "$tmp/h2o.conf" <<CONF
$user_line
num-threads: $workers
max-connections: 20000
error-log: /dev/stderr
listen:
  host: 127.0.0.1
  port: $port
hosts:
  default:
    paths:
      /:
        file.dir: $root
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

ulimit -n 65536 2>/dev/null || true
"$h2o" -c "$tmp/h2o.conf" </dev/null &
pid=$!

# Ready once it accepts.
for _ in $(seq 200); do
    if ! kill -0 "$pid" 2>/dev/null; then
        wait "$pid" || true
        echo "h2o.sh: h2o exited before it listened" >&2
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
