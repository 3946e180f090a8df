# shellcheck shell=bash disable=SC2154,SC2034  # me, tmp come from the sourcing script; program, workers, root go back to it
# lib.sh: what every peer script in this directory shares, sourced by them:
# reading `[--workers N|auto] [--tls CERT KEY] ROOT`, installing a missing server with
# apt-get, choosing a free port, and running the server in the foreground
# until `muse bench` stops it (SIGTERM/SIGINT/SIGHUP), after printing
# `listening on 127.0.0.1:PORT` once it accepts. Each script sets `me` (its
# name, for messages) before sourcing this.

# Reads `[--workers N|auto] [--tls CERT KEY] ROOT` (workers default
# $MUSE_PEER_WORKERS or 1) into $workers (a number), $root (an absolute
# directory) and, with --tls, $tls_cert and $tls_key (absolute paths of PEM
# files; empty without).
peer_args() {
    workers=${MUSE_PEER_WORKERS:-1}
    tls_cert= tls_key=
    while [ $# -gt 1 ]; do
        case $1 in
            --workers) workers=${2:?--workers wants N or auto}; shift 2 ;;
            --workers=*) workers=${1#--workers=}; shift ;;
            --tls) peer_tls "${2:-}" "${3:-}"; shift 3 ;;
            *) break ;;
        esac
    done
    peer_root "$@"
    case $workers in
        auto) workers=$(nproc) ;;
        ''|*[!0-9]*) echo "$me: --workers wants a number or auto, not $workers" >&2; exit 2 ;;
    esac
}

# Reads `--tls CERT KEY`'s files into $tls_cert and $tls_key (absolute
# paths).
peer_tls() {
    local f
    for f in "$1" "$2"; do
        [ -n "$f" ] || { echo "$me: --tls wants CERT KEY" >&2; exit 2; }
        [ -r "$f" ] || { echo "$me: cannot read $f" >&2; exit 1; }
    done
    tls_cert=$(cd "$(dirname "$1")" && pwd -P)/$(basename "$1")
    tls_key=$(cd "$(dirname "$2")" && pwd -P)/$(basename "$2")
}

# Reads ROOT into $root (an absolute directory).
peer_root() {
    root=${1:?usage: $me [options] ROOT}
    [ -d "$root" ] || { echo "$me: $root is not a directory" >&2; exit 1; }
    root=$(cd "$root" && pwd -P)
}

# Sets $program to the path of program $1 (expected at $2), installing
# Debian package $1 first if it is missing (only as root, where apt-get
# exists). The package may start its own daemon; the script runs its own,
# so that one is stopped.
peer_program() {
    local name=$1 default=$2
    if ! command -v "$name" >/dev/null 2>&1 && [ ! -x "$default" ]; then
        if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
            echo "$me: $name is not installed (apt-get install $name, as root)" >&2
            exit 1
        fi
        echo "$me: installing $name" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update >&2
        apt-get install -y --no-install-recommends "$name" >&2
        service "$name" stop >/dev/null 2>&1 || true
    fi
    program=$(command -v "$name" || echo "$default")
}

# A free port: bound and released (a race with another program is unlikely
# on a machine running a bench).
peer_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Runs the server command "$@" in the background, prints the listening line
# once 127.0.0.1:$port accepts, and waits for it; a signal stops it. $tmp
# (the script's temporary directory) is removed either way.
peer_run() {
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
    "$@" </dev/null &
    pid=$!
    for _ in $(seq 200); do
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid" || true
            echo "$me: $1 exited before it listened" >&2
            rm -rf "$tmp"
            exit 1
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "listening on 127.0.0.1:$port"
            break
        fi
        sleep 0.05
    done
    local status=0
    wait "$pid" || status=$?
    rm -rf "$tmp"
    exit "$status"
}
