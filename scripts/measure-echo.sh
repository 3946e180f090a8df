#!/usr/bin/env bash
# measure-echo.sh: put every muse architecture beside the two baseline echo
# servers (C epoll, tokio) under the same closed-loop echo load, one server at
# a time, and print one table row per run:
#   name rps p50_us p99_us peak_rss_kib procs threads errors stop
# peak_rss_kib is the largest sum of VmRSS over the server and all its
# descendants (sampled every ~100 ms); procs/threads are counted at that peak;
# stop says how the server ended after SIGTERM: ok (exit 0), exit=N,
# signal=NAME (died of the signal, e.g. the baselines' default SIGTERM action),
# or killed (ignored SIGTERM, or left processes behind, and got SIGKILL).
#
# Usage: scripts/measure-echo.sh            (from anywhere; it cds to the repo)
# Environment:
#   DURATION=5      measured seconds per run      WARMUP=1     warm-up seconds
#   CONNECTIONS=50  SIZE=64  LOAD_THREADS=2       load shape (echo_load flags)
#   REPEAT=1        run the whole list N times, interleaved (forward, then
#                   reverse, ...), then print the median rps per server
#   ARCHS="a b"     muse architectures to run (default: all from `muse archs`)
#   SCRATCH=/tmp/muse-baselines   where the baselines are built
#   SPAWN="NAME=CMD"  extra servers, one per line; CMD must print
#                   `listening on ADDR` and is split on spaces (no quoting)
# Exit status 1 if any server failed to start, had load errors, or had to be
# killed (the table is printed in full either way).
# Compare servers only within one run: absolute rates move a lot between days.
set -euo pipefail

cd "$(dirname "$0")/.."
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
CONNECTIONS=${CONNECTIONS:-50}
SIZE=${SIZE:-64}
LOAD_THREADS=${LOAD_THREADS:-2}
REPEAT=${REPEAT:-1}
SCRATCH=${SCRATCH:-/tmp/muse-baselines}
SHARED=../shared

START_TIMEOUT_S=10  # for a server to print `listening on`
STOP_TIMEOUT_S=10   # for a server to exit after SIGTERM, before SIGKILL

# A server's load run may take connect (5 s) + warm-up + duration; allow slack.
whole_duration=${DURATION%.*} whole_warmup=${WARMUP%.*}
LOAD_TIMEOUT_S=$((${whole_duration:-0} + ${whole_warmup:-0} + 20))

log() { printf 'measure-echo: %s\n' "$*" >&2; }
die() {
	log "$*"
	exit 1
}

[[ $REPEAT =~ ^[1-9][0-9]*$ ]] || die "REPEAT must be a positive integer, got '$REPEAT'"

WORK=$(mktemp -d /tmp/measure-echo.XXXXXX)
server_pid=""
load_pid=""

# Stops the current server: SIGTERM to its pid, a bounded wait, then SIGKILL
# to its whole process group. Sets `stop_result`.
stop_server() {
	stop_result="ok"
	[[ -n $server_pid ]] || return 0
	local pid=$server_pid i status
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < STOP_TIMEOUT_S * 10; i++)); do
		is_running "$pid" || break
		sleep 0.1
	done
	if is_running "$pid"; then
		log "server pid $pid ignored SIGTERM for ${STOP_TIMEOUT_S}s; killing its group"
		stop_result="killed"
		kill -KILL -- "-$pid" 2>/dev/null || true
	fi
	status=0
	wait "$pid" 2>/dev/null || status=$?
	# Reaped, so anything still alive in its group is a worker left behind.
	if [[ $stop_result == ok ]] && group_has_live_processes "$pid"; then
		log "server pid $pid left processes behind; killing its group"
		stop_result="killed"
		kill -KILL -- "-$pid" 2>/dev/null || true
	fi
	if [[ $stop_result == ok ]] && ((status > 128)); then
		stop_result="signal=$(kill -l "$((status - 128))" 2>/dev/null || echo "$((status - 128))")"
	elif [[ $stop_result == ok ]] && ((status != 0)); then
		stop_result="exit=$status"
	fi
	server_pid=""
}

cleanup() {
	if [[ -n $load_pid ]]; then
		kill -TERM "$load_pid" 2>/dev/null || true
		wait "$load_pid" 2>/dev/null || true
		load_pid=""
	fi
	stop_server || true
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'log interrupted; exit 130' INT TERM

# Whether any non-zombie process is still in process group $1.
group_has_live_processes() {
	ps -e -o pgid=,stat= | awk -v g="$1" '$1 == g && $2 !~ /^Z/ { found = 1 } END { exit !found }'
}

# A zombie still answers kill -0, so look at the process state itself.
is_running() {
	local stat
	read -r stat 2>/dev/null <"/proc/$1/stat" || return 1
	stat=${stat##*) }
	[[ ${stat:0:1} != Z ]]
}

# --- build ---------------------------------------------------------------
# echo_load needs only mio and libc. When the muse library does not compile
# (work in progress), build it as a standalone package beside the baselines,
# pinned by a copy of our Cargo.lock, so the baselines can still be measured.
build_standalone_load() {
	local dir=$SCRATCH/echo-load
	mkdir -p "$dir"
	cat >"$dir/Cargo.toml" <<-EOF
		[package]
		name = "echo-load-standalone"
		version = "0.0.0"
		edition = "2021"
		publish = false

		[[bin]]
		name = "echo_load"
		path = "$PWD/examples/echo_load.rs"

		[dependencies]
		libc = "0.2"
		mio = { version = "1", features = ["os-poll", "os-ext", "net"] }

		[workspace]

		[profile.release]
		codegen-units = 4
		lto = "thin"
	EOF
	cp Cargo.lock "$dir/Cargo.lock"
	CARGO_TARGET_DIR=$dir/target cargo build --release --manifest-path "$dir/Cargo.toml"
	LOAD=$dir/target/release/echo_load
}

mkdir -p "$SCRATCH"
log "building muse (release)"
LOAD=target/release/examples/echo_load
MUSE=target/release/muse
if ! cargo build --release --examples; then
	log "WARNING: examples do not build; building echo_load standalone in $SCRATCH/echo-load"
	build_standalone_load || die "cannot build examples/echo_load.rs"
fi
muse_built=1
cargo build --release --bins || {
	log "WARNING: muse binary does not build; measuring baselines only"
	muse_built=0
}

declare -a NAMES=() COMMANDS=()
if [[ -d $SHARED/baselines ]]; then
	log "building baselines into $SCRATCH"
	if cc -O2 -o "$SCRATCH/echo-epoll" "$SHARED/baselines/echo-epoll/echo-epoll.c"; then
		NAMES+=(echo-epoll)
		COMMANDS+=("$SCRATCH/echo-epoll --listen 127.0.0.1:0")
	else
		log "WARNING: echo-epoll does not build; skipping it"
	fi
	if CARGO_TARGET_DIR="$SCRATCH/tokio-target" cargo build --release \
		--manifest-path "$SHARED/baselines/echo-tokio/Cargo.toml"; then
		NAMES+=(echo-tokio)
		COMMANDS+=("$SCRATCH/tokio-target/release/echo-tokio --listen 127.0.0.1:0")
	else
		log "WARNING: echo-tokio does not build; skipping it"
	fi
else
	log "WARNING: $SHARED/baselines not found; no baselines"
fi

archs=()
if [[ -n ${ARCHS:-} ]]; then
	read -r -a archs <<<"$ARCHS"
elif ((muse_built)) && [[ -x $MUSE ]] && arch_list=$(timeout 10 "$MUSE" archs 2>/dev/null) && [[ -n $arch_list ]]; then
	while read -r arch _; do
		[[ -n $arch ]] && archs+=("$arch")
	done <<<"$arch_list"
else
	log "WARNING: '$MUSE archs' failed; measuring baselines only"
fi
for arch in "${archs[@]}"; do
	NAMES+=("muse/$arch")
	COMMANDS+=("$MUSE serve echo --arch $arch --listen 127.0.0.1:0")
done
while IFS= read -r spec; do
	[[ -n $spec ]] || continue
	[[ $spec == ?*=?* ]] || die "SPAWN entries are NAME=CMD, got '$spec'"
	NAMES+=("${spec%%=*}")
	COMMANDS+=("${spec#*=}")
done <<<"${SPAWN:-}"
((${#NAMES[@]} > 0)) || die "nothing to measure"

# --- sampling --------------------------------------------------------------
# All pids in the tree rooted at $1 (via /proc/PID/task/TID/children).
tree_pids() {
	local queue=("$1") pid t kids
	tree=()
	while ((${#queue[@]} > 0)); do
		pid=${queue[0]}
		queue=("${queue[@]:1}")
		[[ -d /proc/$pid ]] || continue
		tree+=("$pid")
		for t in /proc/"$pid"/task/*/children; do
			kids=()
			read -r -a kids <"$t" 2>/dev/null || true
			queue+=("${kids[@]}")
		done
	done
}

# Sums VmRSS (KiB) and Threads over the tree rooted at $1; keeps the peak in
# peak_rss/peak_procs/peak_threads. Pure bash: no process forked per sample.
sample_tree() {
	local pid key value _ rss=0 threads=0 procs=0 seen
	tree_pids "$1"
	for pid in "${tree[@]}"; do
		seen=0
		while read -r key value _; do
			case $key in
			VmRSS:) rss=$((rss + value)) seen=1 ;;
			Threads:) threads=$((threads + value)) ;;
			esac
		done <"/proc/$pid/status" 2>/dev/null || true
		# Zombies have no VmRSS line: they hold no memory and no threads.
		((seen)) && procs=$((procs + 1))
	done
	if ((rss > peak_rss)); then
		peak_rss=$rss peak_procs=$procs peak_threads=$threads
	fi
}

# --- one run ---------------------------------------------------------------
# run_one NAME COMMAND: prints one table row and records rps for the summary.
run_one() {
	local name=$1 command=$2 out=$WORK/server.out err=$WORK/server.err i addr="" line
	local -a argv
	read -r -a argv <<<"$command"
	: >"$out"
	# setsid: the server leads its own process group (pgid = its pid), so the
	# whole group can be killed if it leaves anything behind.
	setsid "${argv[@]}" >"$out" 2>"$err" </dev/null &
	server_pid=$!
	for ((i = 0; i < START_TIMEOUT_S * 20; i++)); do
		if read -r line <"$out" 2>/dev/null && [[ $line == "listening on "* ]]; then
			addr=$(read -r _ _ a _ <<<"$line" && echo "$a")
			break
		fi
		is_running "$server_pid" || break
		sleep 0.05
	done
	if [[ -z $addr ]]; then
		log "$name: no 'listening on' line (server exited, or none within ${START_TIMEOUT_S}s); stderr:"
		tail -n 5 "$err" >&2 || true
		stop_server
		print_row "$name" - - - - - - start-failed "$stop_result"
		problems+=("$name: did not start")
		return
	fi

	peak_rss=0 peak_procs=0 peak_threads=0
	timeout "$LOAD_TIMEOUT_S" "$LOAD" --addr "$addr" --connections "$CONNECTIONS" \
		--size "$SIZE" --duration "$DURATION" --warmup "$WARMUP" \
		--threads "$LOAD_THREADS" >"$WORK/load.out" 2>"$WORK/load.err" &
	load_pid=$!
	while is_running "$load_pid"; do
		sample_tree "$server_pid"
		sleep 0.1
	done
	local load_status=0
	wait "$load_pid" || load_status=$?
	load_pid=""
	stop_server

	local rps=- p50=- p99=- errors=- stalled=0 kv fields=()
	read -r -a fields <"$WORK/load.out" || true
	for kv in "${fields[@]}"; do
		case $kv in
		rps=*) rps=${kv#*=} ;;
		p50_us=*) p50=${kv#*=} ;;
		p99_us=*) p99=${kv#*=} ;;
		errors=*) errors=${kv#*=} ;;
		stalled=*) stalled=${kv#*=} ;;
		esac
	done
	# Expected under `serial` (one connection at a time), a red flag elsewhere.
	((stalled == 0)) || log "$name: $stalled of $CONNECTIONS connections got no echo in the measured window"
	if ((load_status != 0)); then
		log "$name: echo_load exited $load_status: $(tr '\n' ' ' <"$WORK/load.err")"
		[[ $errors == - ]] && errors="load-exit=$load_status"
	fi
	print_row "$name" "$rps" "$p50" "$p99" "$peak_rss" "$peak_procs" "$peak_threads" "$errors" "$stop_result"
	((load_status == 0)) || problems+=("$name: echo_load failed (errors=$errors)")
	[[ $stop_result != killed ]] || problems+=("$name: had to be killed")
	[[ $rps == - ]] || echo "$rps" >>"$WORK/rps.$(index_of "$name")"
}

print_row() {
	printf '%-30s %10s %9s %9s %12s %6s %8s %8s %s\n' "$@"
}

index_of() {
	local i
	for i in "${!NAMES[@]}"; do
		[[ ${NAMES[$i]} == "$1" ]] && echo "$i" && return
	done
}

# --- main ------------------------------------------------------------------
problems=()
log "load: $CONNECTIONS connections x $SIZE bytes, ${WARMUP}s warm-up + ${DURATION}s, $LOAD_THREADS load threads, REPEAT=$REPEAT"
log "servers: ${NAMES[*]}"
print_row name rps p50_us p99_us peak_rss_kib procs threads errors stop
for ((round = 0; round < REPEAT; round++)); do
	if ((round % 2 == 0)); then
		order=$(seq 0 $((${#NAMES[@]} - 1)))
	else
		order=$(seq $((${#NAMES[@]} - 1)) -1 0)
	fi
	for i in $order; do
		run_one "${NAMES[$i]}" "${COMMANDS[$i]}"
	done
done

if ((REPEAT > 1)); then
	echo
	printf '%-30s %12s  %s\n' name median_rps "rps of each run"
	for i in "${!NAMES[@]}"; do
		if [[ -s $WORK/rps.$i ]]; then
			values=$(sort -n "$WORK/rps.$i" | tr '\n' ' ')
			median=$(sort -n "$WORK/rps.$i" | awk '{ v[NR] = $1 } END {
				if (NR % 2) print v[(NR + 1) / 2]; else printf "%.0f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
		else
			values="(no successful run)" median=-
		fi
		printf '%-30s %12s  %s\n' "${NAMES[$i]}" "$median" "$values"
	done
fi

if ((${#problems[@]} > 0)); then
	log "problems:"
	printf '  %s\n' "${problems[@]}" >&2
	exit 1
fi
