#!/usr/bin/env bash
# A peer for `muse bench kv`: redis-server from Debian's packages on
# 127.0.0.1, in the foreground, keeping nothing on disk (`--save ''`,
# `--appendonly no`), as `muse serve kv` without `--data-dir` does.
#
#   muse bench kv --spawn "redis=scripts/peers/redis.sh"
#   muse bench kv --scenario kv-tls \
#                 --spawn "redis=scripts/peers/redis.sh --tls {tls_cert} {tls_key}"
#
# --tls CERT KEY serves Redis over TLS only (PEM files; the bench's TLS
# scenarios give theirs as {tls_cert} and {tls_key}): `--port 0 --tls-port
# PORT`, no client certificates (`--tls-auth-clients no`), redis-server's
# default session caching. It needs a redis-server built with TLS (Debian's
# is).
# --durable DIR (or $MUSE_BENCH_DATA_DIR, which the bench sets for the kv
# `durable` scenario) turns on the append-only file in DIR, synced before
# every reply (`--appendonly yes --appendfsync always`), as
# `muse serve kv --data-dir DIR --fsync always` does. Arguments after `--`
# go to redis-server as they are (e.g. `-- --io-threads 2`). Installs
# redis-server with apt-get if it is missing (only as root, where apt-get
# exists), starts it on a free port, prints `listening on 127.0.0.1:PORT`
# once it accepts, and waits. SIGTERM or SIGINT (muse bench stops the whole
# process group) stops redis-server and removes the temporary directory.
set -euo pipefail

me=redis.sh
# shellcheck source=scripts/peers/lib.sh
. "$(dirname "$0")/lib.sh"

durable=${MUSE_BENCH_DATA_DIR:-}
tls_cert= tls_key=
while [ $# -gt 0 ]; do
    case $1 in
        --tls) peer_tls "${2:-}" "${3:-}"; shift 3 ;;
        --durable) durable=${2:?--durable wants a directory}; shift 2 ;;
        --durable=*) durable=${1#--durable=}; shift ;;
        --) shift; break ;;
        *) echo "usage: $me [--durable DIR] [--tls CERT KEY] [-- REDIS-SERVER-ARGS...]" >&2; exit 2 ;;
    esac
done
if [ -n "$durable" ]; then
    [ -d "$durable" ] || { echo "$me: $durable is not a directory" >&2; exit 1; }
    durable=$(cd "$durable" && pwd -P)
fi

peer_program redis-server /usr/bin/redis-server
redis=$program
port=$(peer_free_port)
tmp=$(mktemp -d /tmp/muse-peer-redis.XXXXXX)

if [ -n "$durable" ]; then
    keep=(--appendonly yes --appendfsync always --dir "$durable")
else
    # Nothing is written; the directory is only its working directory.
    keep=(--appendonly no --dir "$tmp")
fi

# Logs go to stderr (stdout is where the bench reads the listening line);
# the client limit is lifted as muse's is, for scenarios with thousands of
# connections.
if [ -n "$tls_cert" ]; then
    listen=(--port 0 --tls-port "$port" --tls-cert-file "$tls_cert" --tls-key-file "$tls_key"
        --tls-auth-clients no)
else
    listen=(--port "$port")
fi
peer_run "$redis" "${listen[@]}" --bind 127.0.0.1 --save '' "${keep[@]}" \
    --protected-mode no --daemonize no --logfile /dev/stderr --loglevel warning \
    --maxclients 100000 "$@"
