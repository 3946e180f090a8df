#!/usr/bin/env bash
# interop.sh: drive `muse serve` with real clients, the way users do, and fail
# on any wrong answer. Today: echo under an evented and a blocking architecture,
# talked to by OpenBSD netcat (a line, half-close, echo back) and by Python's
# socket module (1 MiB in one connection, and 8 connections at once).
# Installs missing clients with apt. Every wait is bounded.
#
# Usage: scripts/interop.sh   (ARCHS="reactor thread-per-connection" to choose;
#        MUSE=path to test another binary instead of building target/debug/muse)
set -euo pipefail

cd "$(dirname "$0")/.."
ARCHS=${ARCHS:-"reactor thread-per-connection"}
MUSE=${MUSE:-}
START_TIMEOUT_S=10
STOP_TIMEOUT_S=10

log() { printf 'interop: %s\n' "$*" >&2; }

WORK=$(mktemp -d /tmp/muse-interop.XXXXXX)
server_pid=""
cleanup() {
	if [[ -n $server_pid ]]; then
		kill -KILL -- "-$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'log interrupted; exit 130' INT TERM

# --- clients -----------------------------------------------------------------
apt_updated=0
apt_install() {
	if ((!apt_updated)); then
		apt-get update -qq
		apt_updated=1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}
# nc.openbsd specifically: its -N (shut down the socket on stdin EOF) is what
# lets a half-close reach the server. Other netcats spell that differently.
command -v nc.openbsd >/dev/null || apt_install netcat-openbsd
command -v python3 >/dev/null || apt_install python3
command -v timeout >/dev/null || apt_install coreutils
NC=$(command -v nc.openbsd)

# --- muse --------------------------------------------------------------------
if [[ -z $MUSE ]]; then
	log "building muse (debug)"
	cargo build
	MUSE=target/debug/muse
fi

# Starts `muse serve echo --arch $1` in its own process group; sets server_pid
# and addr (IP:PORT from its `listening on` line).
start_server() {
	local arch=$1 line i
	addr=""
	server_out=$WORK/$arch.out server_err=$WORK/$arch.err
	: >"$server_out"
	setsid "$MUSE" serve echo --arch "$arch" --listen 127.0.0.1:0 \
		>"$server_out" 2>"$server_err" </dev/null &
	server_pid=$!
	for ((i = 0; i < START_TIMEOUT_S * 20; i++)); do
		if read -r line <"$server_out" 2>/dev/null && [[ $line == "listening on "* ]]; then
			read -r _ _ addr _ <<<"$line"
			return 0
		fi
		kill -0 "$server_pid" 2>/dev/null || break
		sleep 0.05
	done
	log "$arch: no 'listening on' line within ${START_TIMEOUT_S}s; server stderr:"
	tail -n 20 "$server_err" >&2 || true
	return 1
}

# SIGTERM, then a bounded wait for exit 0; SIGKILL to the group otherwise.
stop_server() {
	local arch=$1 i status=0
	kill -TERM "$server_pid" 2>/dev/null || true
	for ((i = 0; i < STOP_TIMEOUT_S * 10; i++)); do
		[[ $(ps -o stat= -p "$server_pid" 2>/dev/null) == Z* ]] && break
		kill -0 "$server_pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL -- "-$server_pid" 2>/dev/null || true
	wait "$server_pid" 2>/dev/null || status=$?
	server_pid=""
	if ((status != 0)); then
		log "$arch: server did not exit 0 after SIGTERM (status $status); stderr:"
		tail -n 20 "$server_err" >&2 || true
		return 1
	fi
}

# nc sends a line, half-closes (-N) and must get exactly that line back.
check_nc_line() {
	local host=${addr%:*} port=${addr##*:} expected="hello, muse $RANDOM" got
	got=$(printf '%s\n' "$expected" | timeout 10 "$NC" -N "$host" "$port") || {
		log "nc failed or timed out (status $?)"
		return 1
	}
	if [[ $got != "$expected" ]]; then
		log "nc: sent '$expected', got back '$got'"
		return 1
	fi
}

# Python sends SIZE random bytes on each of N parallel connections while
# reading the echo, half-closes, and compares everything it got back.
check_python_bulk() {
	local size=$1 connections=$2
	timeout 30 python3 - "$addr" "$size" "$connections" <<'PY'
import os, socket, sys, threading

host, port = sys.argv[1].rsplit(":", 1)
size, connections = int(sys.argv[2]), int(sys.argv[3])
failures = []

def one(n):
    data = os.urandom(size)
    try:
        s = socket.create_connection((host, int(port)), timeout=20)
        s.settimeout(20)
        # Send from a thread while this one reads: the server echoes as it
        # receives, so a client that only writes would deadlock both sides.
        def send():
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        sender = threading.Thread(target=send)
        sender.start()
        got = bytearray()
        while True:
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            got += chunk
        sender.join()
        s.close()
    except OSError as e:
        failures.append(f"connection {n}: {e}")
        return
    if bytes(got) != data:
        at = next((i for i, (a, b) in enumerate(zip(got, data)) if a != b), min(len(got), len(data)))
        failures.append(f"connection {n}: sent {len(data)} bytes, got {len(got)} back, first difference at byte {at}")

threads = [threading.Thread(target=one, args=(n,)) for n in range(connections)]
for t in threads:
    t.start()
for t in threads:
    t.join()
for f in failures:
    print("python:", f, file=sys.stderr)
sys.exit(1 if failures else 0)
PY
}

failed=0
check() {
	local what=$1
	shift
	if "$@"; then
		log "  ok    $what"
	else
		log "  FAIL  $what"
		failed=1
	fi
}

for arch in $ARCHS; do
	log "echo --arch $arch"
	if ! start_server "$arch"; then
		log "  FAIL  start"
		failed=1
		stop_server "$arch" || true
		continue
	fi
	check "nc: a line, half-close, echo, close" check_nc_line
	check "python: 1 MiB on one connection" check_python_bulk $((1 << 20)) 1
	check "python: 64 KiB on 8 connections at once" check_python_bulk $((64 << 10)) 8
	check "SIGTERM: exits 0" stop_server "$arch"
done

if ((failed)); then
	log "FAILED"
	exit 1
fi
log "all interop checks passed"
