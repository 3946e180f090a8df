#!/usr/bin/env bash
# interop.sh: drive `muse serve` with real clients, the way users do, and fail
# on any wrong answer. Echo under an evented and a blocking architecture,
# talked to by OpenBSD netcat (a line, half-close, echo back) and by Python's
# socket module (1 MiB in one connection, and 8 connections at once); FTP under
# three architectures, talked to by curl, wget, lftp and Python's ftplib (see the
# FTP section below).
# Installs missing clients with apt. Every wait is bounded.
#
# Usage: scripts/interop.sh   (ARCHS="reactor thread-per-connection" and
#        FTP_ARCHS="reactor thread-per-connection prefork" to choose;
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

# =============================================================================
# FTP: curl, lftp and Python's ftplib against `muse serve ftp`
# =============================================================================
# For each of FTP_ARCHS: a fresh copy of a 51-file tree (nested directories,
# random content, sizes up to 1 MiB, a name with spaces) served with a users
# file (alice: every permission, home /; anonymous: read,list). curl lists,
# downloads in four data-connection modes (EPSV, PASV, EPRT, PORT), resumes
# and uploads; wget downloads (passive and active); lftp mirrors the whole tree down and a new tree up; ftplib
# does the everyday commands in passive and active mode. Every checksum must
# match, and the server must exit 0 on SIGTERM.
FTP_ARCHS=${FTP_ARCHS:-"reactor thread-per-connection prefork"}
FTP_USER=alice
FTP_PASS="interop-pw-$RANDOM"
FTP_DIR=$WORK/ftp
FTP_CLIENT_TIMEOUT_S=60

command -v curl >/dev/null || apt_install curl
command -v lftp >/dev/null || apt_install lftp
command -v wget >/dev/null || apt_install wget
command -v sha256sum >/dev/null || apt_install coreutils

# make_tree DIR COUNT: COUNT files of random content in nested directories,
# plus one whose name has spaces.
make_tree() {
	local dir=$1 count=$2 i sub
	local subs=("" "docs" "docs/deep" "data/a/b/c" "data/x" "media")
	local sizes=(0 1 100 4096 65536 300000 1048576)
	for ((i = 0; i < count; i++)); do
		sub=${subs[i % ${#subs[@]}]}
		mkdir -p "$dir/$sub"
		head -c "${sizes[i % ${#sizes[@]}]}" /dev/urandom >"$dir/${sub:+$sub/}file-$i.bin"
	done
	head -c 1234 /dev/urandom >"$dir/docs/name with spaces.txt"
}

# Relative path and sha256 of every file under DIR, sorted.
tree_sums() {
	(cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum)
}

# same_tree A B: identical files (names and contents) under both.
same_tree() {
	local a b
	a=$(tree_sums "$1") b=$(tree_sums "$2")
	if [[ $a != "$b" ]]; then
		log "trees differ: $1 vs $2"
		diff <(printf '%s\n' "$a") <(printf '%s\n' "$b") | head -n 20 >&2 || true
		return 1
	fi
}

# same_file A B: identical contents.
same_file() {
	local a b
	a=$(sha256sum <"$1") b=$(sha256sum <"$2") || return 1
	if [[ $a != "$b" ]]; then
		log "files differ: $1 ($(stat -c %s "$1") bytes) vs $2 ($(stat -c %s "$2") bytes)"
		return 1
	fi
}

# Starts `muse serve ftp --arch $1 --root $2 --users $3` like start_server.
start_ftp_server() {
	local arch=$1 root=$2 users=$3 line i
	addr=""
	server_out=$WORK/ftp-$arch.out server_err=$WORK/ftp-$arch.err
	: >"$server_out"
	setsid "$MUSE" serve ftp --arch "$arch" --listen 127.0.0.1:0 \
		--root "$root" --users "$users" \
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
	log "ftp $arch: no 'listening on' line within ${START_TIMEOUT_S}s; server stderr:"
	tail -n 20 "$server_err" >&2 || true
	return 1
}

ftp_curl() {
	timeout "$FTP_CLIENT_TIMEOUT_S" curl -sS --max-time "$((FTP_CLIENT_TIMEOUT_S - 5))" "$@"
}

# curl: LIST of / names every top-level entry; NLST (-l) names exactly them.
check_curl_list() {
	local listing names want
	listing=$(ftp_curl "ftp://$addr/") || return 1
	want=$(find "$ftp_root" -mindepth 1 -maxdepth 1 -printf '%f\n' | LC_ALL=C sort)
	while IFS= read -r name; do
		if ! grep -qF -- " $name" <<<"$listing"; then
			log "curl LIST: $name missing from:"
			printf '%s\n' "$listing" | head -n 20 >&2
			return 1
		fi
	done <<<"$want"
	names=$(ftp_curl -l "ftp://$addr/" | tr -d '\r' | LC_ALL=C sort) || return 1
	if [[ $names != "$want" ]]; then
		log "curl NLST: got [$names], expected [$want]"
		return 1
	fi
}

# curl: download FILE in a data-connection mode (extra curl flags).
check_curl_download() {
	local file=$1 out
	shift
	out=$FTP_DIR/$arch/curl-down.bin
	rm -f "$out"
	ftp_curl "$@" -o "$out" "ftp://$addr/$file" || return 1
	same_file "$ftp_root/$file" "$out"
}

# curl: resume a download (-C -) from a truncated local copy (REST).
check_curl_resume() {
	local file=$1 out
	out=$FTP_DIR/$arch/curl-resume.bin
	head -c 100000 "$ftp_root/$file" >"$out"
	ftp_curl -C - -o "$out" "ftp://$addr/$file" || return 1
	same_file "$ftp_root/$file" "$out"
}

# curl: upload as alice (-T) in a mode, creating directories.
check_curl_upload() {
	local name=$1 src
	shift
	src=$FTP_DIR/$arch/curl-up-src.bin
	head -c 777777 /dev/urandom >"$src"
	ftp_curl "$@" --ftp-create-dirs --user "$FTP_USER:$FTP_PASS" -T "$src" \
		"ftp://$addr/uploads/curl/$name" || return 1
	same_file "$src" "$ftp_root/uploads/curl/$name"
}

# wget: download FILE (extra wget flags choose the mode).
check_wget_download() {
	local file=$1 out
	shift
	out=$FTP_DIR/$arch/wget-down.bin
	rm -f "$out"
	timeout "$FTP_CLIENT_TIMEOUT_S" wget -q --tries=1 --timeout=20 "$@" -O "$out" \
		"ftp://$addr/$file" || return 1
	same_file "$ftp_root/$file" "$out"
}

lftp_run() {
	timeout 180 lftp -c "set cmd:fail-exit yes; set net:timeout 20; set net:max-retries 2;
		set net:reconnect-interval-base 1; set ftp:ssl-allow no; set xfer:clobber on;
		set ftp:passive-mode $1;
		open -u $FTP_USER,$FTP_PASS -p ${addr##*:} ftp://${addr%:*}; $2"
}

# lftp: mirror the whole tree down (3 transfers at once).
check_lftp_mirror_down() {
	local dest=$FTP_DIR/$arch/lftp-down
	rm -rf "$dest"
	mkdir -p "$dest"
	lftp_run "$1" "mirror --parallel=3 / $dest" || return 1
	same_tree "$ftp_root" "$dest"
}

# lftp: mirror a new tree up (mirror -R) into /lftp-up-$1.
check_lftp_mirror_up() {
	local src=$FTP_DIR/$arch/lftp-src-$1
	rm -rf "$src"
	make_tree "$src" 20
	lftp_run "$1" "mirror -R --no-perms --parallel=3 $src /lftp-up-$1" || return 1
	same_tree "$src" "$ftp_root/lftp-up-$1"
}

# Python ftplib: the everyday commands, passive and active.
check_ftplib() {
	timeout 120 python3 - "$addr" "$FTP_USER" "$FTP_PASS" "$ftp_root" <<'PY'
import ftplib, io, os, sys

addr, user, password, root = sys.argv[1:5]
host, port = addr.rsplit(":", 1)
failures = []

def expect(cond, what):
    if not cond:
        failures.append(what)

def disk(rel):
    with open(os.path.join(root, rel), "rb") as f:
        return f.read()

try:
    ftp = ftplib.FTP()
    ftp.connect(host, int(port), timeout=20)
    ftp.login(user, password)
    expect(ftp.pwd() == "/", f"pwd: {ftp.pwd()!r}")
    names = set(ftp.nlst())
    expect(names == set(os.listdir(root)), f"nlst {sorted(names)} vs {sorted(os.listdir(root))}")
    mlsd = {name: facts for name, facts in ftp.mlsd()}
    expect(mlsd.get("file-6.bin", {}).get("size") == str(len(disk("file-6.bin"))), f"mlsd: {mlsd.get('file-6.bin')}")
    ftp.voidcmd("TYPE I")
    expect(ftp.size("file-6.bin") == len(disk("file-6.bin")), "size")
    for passive in (True, False):
        ftp.set_pasv(passive)
        mode = "passive" if passive else "active"
        buf = io.BytesIO()
        ftp.retrbinary("RETR file-6.bin", buf.write)
        expect(buf.getvalue() == disk("file-6.bin"), f"retrbinary ({mode}): {len(buf.getvalue())} bytes")
        buf = io.BytesIO()
        ftp.retrbinary("RETR docs/name with spaces.txt", buf.write)
        expect(buf.getvalue() == disk("docs/name with spaces.txt"), f"retrbinary of a name with spaces ({mode})")
        data = os.urandom(300_001)
        ftp.storbinary(f"STOR py-{mode}.bin", io.BytesIO(data))
        expect(disk(f"py-{mode}.bin") == data, f"storbinary ({mode})")
        ftp.rename(f"py-{mode}.bin", f"py-{mode}-renamed.bin")
        expect(not os.path.exists(os.path.join(root, f"py-{mode}.bin")), f"rename left the old name ({mode})")
        expect(disk(f"py-{mode}-renamed.bin") == data, f"rename lost the content ({mode})")
        ftp.delete(f"py-{mode}-renamed.bin")
        expect(not os.path.exists(os.path.join(root, f"py-{mode}-renamed.bin")), f"delete ({mode})")
        made = ftp.mkd(f"py-dir-{mode}")
        expect(made == f"/py-dir-{mode}", f"mkd returned {made!r}")
        ftp.cwd(f"py-dir-{mode}")
        expect(ftp.pwd() == f"/py-dir-{mode}", f"pwd after cwd: {ftp.pwd()!r}")
        ftp.storlines("STOR lines.txt", io.BytesIO(b"alpha\nbeta\n\ngamma\n"))
        expect(disk(f"py-dir-{mode}/lines.txt") == b"alpha\nbeta\n\ngamma\n", f"storlines (TYPE A) ({mode}): {disk(f'py-dir-{mode}/lines.txt')!r}")
        lines = []
        ftp.retrlines("RETR lines.txt", lines.append)
        expect(lines == ["alpha", "beta", "", "gamma"], f"retrlines ({mode}): {lines}")
        ftp.cwd("..")
        ftp.delete(f"py-dir-{mode}/lines.txt")
        ftp.rmd(f"py-dir-{mode}")
        expect(not os.path.exists(os.path.join(root, f"py-dir-{mode}")), f"rmd ({mode})")
    try:
        ftp.retrbinary("RETR ../../etc/passwd", io.BytesIO().write)
        failures.append("RETR ../../etc/passwd succeeded")
    except ftplib.error_perm:
        pass
    ftp.voidcmd("NOOP")
    ftp.quit()
    anon = ftplib.FTP()
    anon.connect(host, int(port), timeout=20)
    anon.login()
    try:
        anon.storbinary("STOR anon.bin", io.BytesIO(b"nope"))
        failures.append("anonymous STOR succeeded")
    except ftplib.error_perm:
        pass
    anon.quit()
except ftplib.all_errors as e:
    failures.append(f"{type(e).__name__}: {e}")
for f in failures:
    print("ftplib:", f, file=sys.stderr)
sys.exit(1 if failures else 0)
PY
}

log "ftp: building the test tree"
mkdir -p "$FTP_DIR"
make_tree "$FTP_DIR/pristine" 50
if ! ftp_hash=$(printf '%s\n' "$FTP_PASS" | timeout 60 "$MUSE" passwd) || [[ -z $ftp_hash ]]; then
	log "  FAIL  muse passwd"
	failed=1
fi
printf '%s:%s:/:all\nanonymous::/:read,list\n' "$FTP_USER" "${ftp_hash:-}" >"$FTP_DIR/users"

for arch in $FTP_ARCHS; do
	log "ftp --arch $arch"
	ftp_root=$FTP_DIR/$arch/root
	mkdir -p "$FTP_DIR/$arch"
	cp -a "$FTP_DIR/pristine" "$ftp_root"
	if ! start_ftp_server "$arch" "$ftp_root" "$FTP_DIR/users"; then
		log "  FAIL  start"
		failed=1
		stop_server "$arch" || true
		continue
	fi
	check "lftp: mirror the tree down (passive)" check_lftp_mirror_down on
	check "curl: LIST and NLST of /" check_curl_list
	check "curl: download (EPSV)" check_curl_download file-6.bin
	check "curl: download (PASV)" check_curl_download file-6.bin --disable-epsv
	check "curl: download (EPRT)" check_curl_download data/a/b/c/file-3.bin --ftp-port -
	check "curl: download (PORT)" check_curl_download docs/deep/file-2.bin --ftp-port - --disable-eprt
	check "curl: resume a download (REST)" check_curl_resume file-6.bin
	check "wget: download (passive)" check_wget_download data/x/file-4.bin
	check "wget: download (active)" check_wget_download file-6.bin --no-passive-ftp
	check "curl: upload as alice (EPSV)" check_curl_upload epsv.bin
	check "curl: upload as alice (PORT)" check_curl_upload port.bin --ftp-port - --disable-eprt
	check "lftp: mirror -R a new tree up (passive)" check_lftp_mirror_up on
	check "lftp: mirror -R a new tree up (active)" check_lftp_mirror_up off
	check "lftp: mirror everything down again (active)" check_lftp_mirror_down off
	check "python ftplib: login, nlst, mlsd, retr, stor, rename, delete, mkd/rmd" check_ftplib
	check "SIGTERM: exits 0" stop_server "$arch"
done

if ((failed)); then
	log "FAILED"
	exit 1
fi
log "all interop checks passed"
