#!/usr/bin/env bash
# interop.sh: drive `muse serve` with real clients, the way users do, and fail
# on any wrong answer. Echo under an evented, a blocking and an io_uring architecture,
# talked to by OpenBSD netcat (a line, half-close, echo back) and by Python's
# socket module (1 MiB in one connection, and 8 connections at once); FTP under
# four architectures, talked to by curl, wget, lftp and Python's ftplib (see the
# FTP section below); HTTP under four architectures, talked to by curl, Python's
# http.client and raw sockets, wrk and a headless Chromium (see the HTTP section);
# calc under two, expressions typed into netcat, answers checked against Python;
# kv under four (one a forking architecture, whose store is a process of its
# own), talked to by redis-cli, redis-py (RESP2 and RESP3) and
# redis-benchmark (see the kv section); TLS under four, talked to by curl,
# Chromium, redis-cli --tls and redis-py, and FTPS by curl, lftp and
# ftplib.FTP_TLS (see the TLS section).
# Installs missing clients with apt (and redis-py 5 with pip). Every wait is
# bounded.
#
# Usage: scripts/interop.sh   (ARCHS="reactor thread-per-connection uring",
#        CALC_ARCHS="reactor thread-per-connection",
#        KV_ARCHS="reactor thread-per-connection prefork-reactor uring" (KV_INTEROP_PORT=PORT runs the
#        kv checks against a server already on 127.0.0.1:PORT instead),
#        FTP_ARCHS="reactor thread-per-connection prefork uring" and
#        HTTP_ARCHS="reactor thread-per-connection prefork uring" and
#        TLS_ARCHS="reactor thread-per-connection prefork-reactor uring" to choose;
#        HTTP_BROWSER=0 skips Chromium, HTTP_BROWSER=1 runs it (installing the
#        chromium package, about 200 MB, if missing); unset, it runs when CI is
#        set or chromium is already installed;
#        MUSE=path to test another binary instead of building target/debug/muse)
set -euo pipefail

cd "$(dirname "$0")/.."
ARCHS=${ARCHS:-"reactor thread-per-connection uring"}
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

# start_muse NAME PROTOCOL ARCH [ARG...]: starts `muse serve PROTOCOL --arch
# ARCH ARG...` on a free loopback port in its own process group; sets
# server_pid, server_out/server_err (files named after PROTOCOL-NAME) and
# addr (IP:PORT from its `listening on` line).
start_muse() {
	local name=$1 protocol=$2 arch=$3 line i
	shift 3
	addr=""
	server_out=$WORK/$protocol-$name.out server_err=$WORK/$protocol-$name.err
	: >"$server_out"
	setsid "$MUSE" serve "$protocol" --arch "$arch" --listen 127.0.0.1:0 "$@" \
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
	log "$protocol $name: no 'listening on' line within ${START_TIMEOUT_S}s; server stderr:"
	tail -n 20 "$server_err" >&2 || true
	return 1
}

# Starts `muse serve ${2:-echo} --arch $1` (see start_muse).
start_server() {
	start_muse "$1" "${2:-echo}" "$1"
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
FTP_ARCHS=${FTP_ARCHS:-"reactor thread-per-connection prefork uring"}
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
	start_muse "$1" ftp "$1" --root "$2" --users "$3"
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

# =============================================================================
# HTTP: curl, Python's http.client, wrk and a headless Chromium against
# `muse serve http`
# =============================================================================
# For each of HTTP_ARCHS, one server over a small tree. curl downloads a
# 300 000-byte binary byte-exact over HTTP/1.1 and HTTP/1.0, reuses a keep-alive
# connection, asks for ranges (206, 416, several ranges served whole, If-Range,
# a suffix of an empty file) and conditionals (If-Modified-Since and
# If-None-Match: 304), sends HEAD, a directory without its slash (301),
# traversal in several spellings (400) and a symlink out of the root (never
# the secret file beside the root), a missing file (404 with a body),
# POST/DELETE (405 with Allow) and an unknown method (501). Python's http.client
# makes several requests on one connection; a raw socket pipelines requests in
# one write and reads the answers in order. wrk loads a 1 KiB file for 2 s and
# must see no error. Chromium loads a page with a stylesheet, a script and two
# images: the DOM it dumps must say that every image loaded and the style
# applied, and a screenshot's pixels must show them. Then one server with
# --access-log, --gzip-static, --autoindex and --header-timeout 1: combined log
# lines, precompressed sidecars, a listing (names escaped), 408, 411 and 413.
HTTP_ARCHS=${HTTP_ARCHS:-"reactor thread-per-connection prefork uring"}
HTTP_DIR=$WORK/http
HTTP_CLIENT_TIMEOUT_S=30
HTTP_BIG_SIZE=300000
HTTP_SECRET="muse-interop-secret-$RANDOM$RANDOM"
# The browser is a 200 MB install: on in CI or where it is already installed.
if [[ -z ${HTTP_BROWSER:-} ]]; then
	if [[ -n ${CI:-} ]] || command -v chromium >/dev/null; then
		HTTP_BROWSER=1
	else
		HTTP_BROWSER=0
	fi
fi

command -v wrk >/dev/null || apt_install wrk
command -v gzip >/dev/null || apt_install gzip
if [[ $HTTP_BROWSER == 1 ]]; then
	command -v chromium >/dev/null || apt_install chromium
fi

# make_http_root DIR: the served tree (DIR/root) and a secret file beside it.
make_http_root() {
	local dir=$1 root=$1/root
	mkdir -p "$root/sub" "$root/docs" "$root/page/img"
	printf '%s\n' "$HTTP_SECRET" >"$dir/secret.txt"
	head -c "$HTTP_BIG_SIZE" /dev/urandom >"$root/bin.dat"
	head -c 1024 /dev/urandom >"$root/small.bin"
	printf '<!doctype html><title>sub</title><p>the index of sub</p>\n' >"$root/sub/index.html"
	printf 'in a listing\n' >"$root/docs/a file.txt"
	head -c 10 /dev/urandom >"$root/docs/b.bin"
	: >"$root/docs/<i>x&y\".txt"
	: >"$root/empty.txt"
	ln -s ../secret.txt "$root/link-out"
	for i in $(seq 1 200); do printf 'line %d of a text that compresses well\n' "$i"; done >"$root/text.txt"
	gzip -9 -n -c "$root/text.txt" >"$root/text.txt.gz"
	# The page Chromium renders: a stylesheet that colours the body and
	# places two images and a box, a script that reports what loaded.
	cat >"$root/page/index.html" <<'HTML'
<!doctype html>
<html><head><meta charset="utf-8"><title>muse interop</title>
<link rel="stylesheet" href="style.css">
<script src="app.js" defer></script></head>
<body><img id="a" src="a.png" alt="a"><img id="b" src="img/b%20c.png" alt="b">
<div id="box"></div><pre id="result">pending</pre></body></html>
HTML
	cat >"$root/page/style.css" <<'CSS'
html, body { margin: 0; }
body { background: rgb(0, 128, 255); }
#a { position: absolute; left: 0; top: 0; }
#b { position: absolute; left: 60px; top: 0; }
#box { position: absolute; left: 0; top: 60px; width: 123px; height: 10px; background: rgb(255, 255, 0); }
#result { position: absolute; left: 0; top: 100px; margin: 0; font-size: 10px; }
CSS
	cat >"$root/page/app.js" <<'JS'
window.addEventListener("load", () => {
  const out = [];
  for (const id of ["a", "b"]) {
    const img = document.getElementById(id);
    const ok = img.complete && img.naturalWidth > 0;
    out.push(`img-${id}:${ok ? "ok" : "missing"}:${img.naturalWidth}x${img.naturalHeight}`);
  }
  out.push("bg:" + getComputedStyle(document.body).backgroundColor);
  out.push("box:" + document.getElementById("box").offsetWidth);
  document.getElementById("result").textContent = out.join(" ");
});
JS
	python3 - "$root/page/a.png" "$root/page/img/b c.png" <<'PY'
import struct, sys, zlib

def png(path, width, height, rgb):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\0" + bytes(rgb) * width for _ in range(height))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(rows)))
        f.write(chunk(b"IEND", b""))

png(sys.argv[1], 40, 40, (255, 0, 0))
png(sys.argv[2], 30, 20, (0, 160, 0))
PY
}

# Starts `muse serve http --arch $2 --root $3 [more flags]` like start_server;
# $1 names its output files.
start_http_server() {
	local name=$1 arch=$2 root=$3
	shift 3
	start_muse "$name" http "$arch" --root "$root" "$@"
}

http_curl() {
	timeout "$HTTP_CLIENT_TIMEOUT_S" curl -sS --max-time "$((HTTP_CLIENT_TIMEOUT_S - 5))" "$@"
}

# http_fetch TAG [curl flags] PATH: one request for http://$addr PATH. Sets
# resp (the head is in $resp.head, the body in $resp.body) and code.
http_fetch() {
	local tag=$1 path=${*: -1}
	resp=$http_work/$tag
	rm -f "$resp.head" "$resp.body"
	code=$(http_curl -D "$resp.head" -o "$resp.body" -w '%{http_code}' "${@:2:$#-2}" \
		"http://$addr$path") || {
		log "curl ($tag) for $path failed"
		return 1
	}
	touch "$resp.body"
}

# resp_header NAME: the value of the field NAME in $resp.head (the last one).
resp_header() {
	grep -i "^$1:" "$resp.head" | tail -n 1 | cut -d: -f2- | sed 's/^ *//; s/\r$//'
}

# expect_code WANT: the last response had status WANT.
expect_code() {
	if [[ $code != "$1" ]]; then
		log "$(head -n 1 "$resp.head" 2>/dev/null | tr -d '\r'): expected $1"
		return 1
	fi
}

# expect_header NAME VALUE: the last response had NAME: VALUE.
expect_header() {
	local got
	got=$(resp_header "$1")
	if [[ $got != "$2" ]]; then
		log "$1: expected '$2', got '$got'"
		return 1
	fi
}

# curl: the 300 000-byte binary, byte-exact (extra curl flags: --http1.0).
check_http_download() {
	http_fetch download "$@" /bin.dat || return 1
	expect_code 200 && expect_header Content-Length "$HTTP_BIG_SIZE" &&
		same_file "$http_root/bin.dat" "$resp.body"
}

# curl: two URLs in one invocation go on one connection.
check_http_keepalive() {
	local err=$http_work/keepalive.err
	http_curl -v -o "$http_work/ka1" -o "$http_work/ka2" \
		"http://$addr/bin.dat" "http://$addr/small.bin" 2>"$err" || {
		log "curl failed:"
		tail -n 5 "$err" >&2
		return 1
	}
	if ! grep -q 'Re-using existing connection' "$err"; then
		log "curl opened a second connection:"
		grep -E '^\* |^< HTTP|^< Connection' "$err" | head -n 20 >&2
		return 1
	fi
	same_file "$http_root/bin.dat" "$http_work/ka1" && same_file "$http_root/small.bin" "$http_work/ka2"
}

# curl: -r 100-199 is 206 with those 100 bytes; -r -500 the last 500.
check_http_range() {
	http_fetch range -r 100-199 /bin.dat || return 1
	expect_code 206 && expect_header Content-Range "bytes 100-199/$HTTP_BIG_SIZE" || return 1
	tail -c +101 "$http_root/bin.dat" | head -c 100 >"$http_work/range.want"
	same_file "$http_work/range.want" "$resp.body" || return 1
	http_fetch suffix -r -500 /bin.dat || return 1
	expect_code 206 &&
		expect_header Content-Range "bytes $((HTTP_BIG_SIZE - 500))-$((HTTP_BIG_SIZE - 1))/$HTTP_BIG_SIZE" ||
		return 1
	tail -c 500 "$http_root/bin.dat" >"$http_work/suffix.want"
	same_file "$http_work/suffix.want" "$resp.body"
}

# curl: -r -5 of an empty file. RFC 9110 §14.1.1: "If the selected
# representation has zero length, the only satisfiable form of range-spec is a
# suffix-range with a non-zero suffix-length", and a longer suffix than the
# representation selects all of it; so not 416: the whole (empty) file.
check_http_range_empty() {
	http_fetch range-empty -r -5 /empty.txt || return 1
	if [[ $code != 200 && $code != 206 ]] || [[ -s $resp.body ]]; then
		log "$(head -n 1 "$resp.head" | tr -d '\r') with $(stat -c %s "$resp.body") bytes: expected 200, empty"
		return 1
	fi
}

# curl: a range past the end is 416 with Content-Range: bytes */SIZE.
check_http_range_416() {
	http_fetch range416 -r 99999999- /bin.dat || return 1
	expect_code 416 && expect_header Content-Range "bytes */$HTTP_BIG_SIZE"
}

# curl: several ranges are served whole, 200.
check_http_multi_range() {
	http_fetch multirange -r 0-9,20-29 /bin.dat || return 1
	expect_code 200 && same_file "$http_root/bin.dat" "$resp.body"
}

# curl: a Range with If-Range and the current ETag is 206; with another, 200.
check_http_if_range() {
	local etag
	http_fetch ifrange-head -I /bin.dat || return 1
	etag=$(resp_header ETag)
	[[ -n $etag ]] || {
		log "no ETag"
		return 1
	}
	http_fetch ifrange -r 100-199 -H "If-Range: $etag" /bin.dat || return 1
	expect_code 206 || return 1
	http_fetch ifrange-stale -r 100-199 -H 'If-Range: "not-the-tag"' /bin.dat || return 1
	expect_code 200 && same_file "$http_root/bin.dat" "$resp.body"
}

# curl: -z FILE (If-Modified-Since its mtime) is 304 without a body; an older
# date is 200.
check_http_if_modified_since() {
	http_fetch ims -z "$http_root/bin.dat" /bin.dat || return 1
	expect_code 304 || return 1
	[[ ! -s $resp.body ]] || {
		log "304 with a body"
		return 1
	}
	http_fetch ims-old -H 'If-Modified-Since: Sat, 01 Jan 2000 00:00:00 GMT' /bin.dat || return 1
	expect_code 200 && same_file "$http_root/bin.dat" "$resp.body"
}

# curl: If-None-Match with the ETag of a first response is 304 (weak
# comparison: W/ too); another tag is 200.
check_http_if_none_match() {
	local etag
	http_fetch inm-first /small.bin || return 1
	etag=$(resp_header ETag)
	[[ -n $etag ]] || {
		log "no ETag"
		return 1
	}
	http_fetch inm -H "If-None-Match: $etag" /small.bin || return 1
	expect_code 304 && expect_header ETag "$etag" || return 1
	http_fetch inm-weak -H "If-None-Match: \"x\", W/$etag" /small.bin || return 1
	expect_code 304 || return 1
	http_fetch inm-other -H 'If-None-Match: "not-the-tag"' /small.bin || return 1
	expect_code 200 && same_file "$http_root/small.bin" "$resp.body"
}

# curl: HEAD has the GET's Content-Length and no body: a GET after it on the
# same connection (--next) gets exactly its own body.
check_http_head() {
	local err=$http_work/head.err
	rm -f "$http_work/head.head" "$http_work/after-head"
	http_curl -v -I -D "$http_work/head.head" -o /dev/null "http://$addr/bin.dat" \
		--next -sS -o "$http_work/after-head" "http://$addr/small.bin" 2>"$err" || {
		log "curl failed:"
		tail -n 5 "$err" >&2
		return 1
	}
	resp=$http_work/head
	code=$(head -n 1 "$resp.head" | cut -d' ' -f2)
	expect_code 200 && expect_header Content-Length "$HTTP_BIG_SIZE" || return 1
	grep -q 'Re-using existing connection' "$err" || {
		log "HEAD then GET: not on one connection"
		return 1
	}
	same_file "$http_root/small.bin" "$http_work/after-head"
}

# curl: /sub is 301 to /sub/; -L follows to its index.html.
check_http_dir_redirect() {
	local location
	http_fetch redirect /sub || return 1
	expect_code 301 || return 1
	location=$(resp_header Location)
	if [[ $location != "/sub/" && $location != "http://$addr/sub/" ]]; then
		log "Location: '$location', expected /sub/"
		return 1
	fi
	http_fetch follow -L /sub || return 1
	expect_code 200 && same_file "$http_root/sub/index.html" "$resp.body"
}

# curl --path-as-is: a way out of the root in several spellings is 400, and
# the secret beside the root never comes back; nor through a symlink to it
# (refused: 403 or 404).
check_http_traversal() {
	local path
	for path in /../secret.txt /%2e%2e/secret.txt /sub/../../secret.txt \
		/%2E%2E/secret.txt /..%2fsecret.txt /sub/%2e%2e/%2e%2e/secret.txt \
		/./../secret.txt; do
		http_fetch traversal --path-as-is "$path" || return 1
		if grep -qF "$HTTP_SECRET" "$resp.body"; then
			log "GET $path served the secret beside the root"
			return 1
		fi
		expect_code 400 || {
			log "  (for GET $path)"
			return 1
		}
	done
	http_fetch symlink /link-out || return 1
	if grep -qF "$HTTP_SECRET" "$resp.body" || [[ $code != 403 && $code != 404 ]]; then
		log "GET /link-out (a symlink to ../secret.txt): $code"
		return 1
	fi
}

# curl: a missing file is 404 with a body as long as its Content-Length.
check_http_404() {
	http_fetch notfound /no-such-file || return 1
	expect_code 404 || return 1
	if [[ ! -s $resp.body ]] || [[ $(resp_header Content-Length) != "$(stat -c %s "$resp.body")" ]]; then
		log "404: Content-Length '$(resp_header Content-Length)', body of $(stat -c %s "$resp.body") bytes"
		return 1
	fi
}

# curl: POST and DELETE are 405 with Allow: GET, HEAD; an unknown method 501.
check_http_methods() {
	local allow
	http_fetch post --data-binary "@$http_root/small.bin" /bin.dat || return 1
	expect_code 405 || return 1
	allow=$(resp_header Allow)
	if [[ $allow != *GET* || $allow != *HEAD* ]]; then
		log "405: Allow '$allow', expected GET and HEAD"
		return 1
	fi
	http_fetch delete -X DELETE /bin.dat || return 1
	expect_code 405 && [[ -n $(resp_header Allow) ]] || return 1
	http_fetch brew -X BREW /bin.dat || return 1
	expect_code 501
}

# Python http.client: every request on one connection, bodies and statuses
# right, a 304 and a HEAD (no body) between them.
check_http_client() {
	timeout 60 python3 - "$addr" "$http_root" <<'PY'
import http.client, os, sys

addr, root = sys.argv[1:3]
host, port = addr.rsplit(":", 1)
failures = []

def disk(rel):
    with open(os.path.join(root, rel), "rb") as f:
        return f.read()

try:
    conn = http.client.HTTPConnection(host, int(port), timeout=20)
    first_sock = None
    etag = None
    plan = [
        ("GET", "/bin.dat", {}, 200, disk("bin.dat")),
        ("HEAD", "/bin.dat", {}, 200, b""),
        ("GET", "/small.bin", {}, 200, disk("small.bin")),
        ("GET", "/small.bin", "etag", 304, b""),
        ("GET", "/no-such-file", {}, 404, None),
        ("GET", "/sub/", {}, 200, disk("sub/index.html")),
        ("GET", "/bin.dat", {"Range": "bytes=0-9"}, 206, disk("bin.dat")[:10]),
        ("GET", "/page/style.css", {}, 200, disk("page/style.css")),
    ]
    for n, (method, path, headers, status, body) in enumerate(plan):
        if headers == "etag":
            headers = {"If-None-Match": etag or '"no-etag-was-sent"'}
        conn.request(method, path, headers=headers)
        if first_sock is None:
            first_sock = conn.sock
        elif conn.sock is not first_sock:
            failures.append(f"request {n} ({method} {path}) went on a new connection")
        r = conn.getresponse()
        data = r.read()
        if path == "/small.bin" and status == 200:
            etag = r.getheader("ETag")
        if r.status != status:
            failures.append(f"{method} {path}: status {r.status}, expected {status}")
        if body is not None and data != body:
            failures.append(f"{method} {path}: {len(data)} bytes of body, not the {len(body)} expected")
        if method == "HEAD" and r.getheader("Content-Length") != str(len(disk("bin.dat"))):
            failures.append(f"HEAD: Content-Length {r.getheader('Content-Length')}")
        if r.will_close:
            failures.append(f"{method} {path}: the server closes the connection")
    if path.endswith(".css") and not (r.getheader("Content-Type") or "").startswith("text/css"):
        failures.append(f"style.css: Content-Type {r.getheader('Content-Type')}")
    conn.close()
except (OSError, http.client.HTTPException) as e:
    failures.append(f"{type(e).__name__}: {e}")
for f in failures:
    print("http.client:", f, file=sys.stderr)
sys.exit(1 if failures else 0)
PY
}

# A raw socket: requests pipelined in one write are answered in order, each
# with its own body; the last says Connection: close and the server closes
# after it. First 3 mixed requests, then 16 of the 300 000-byte file (more
# than the server queues at once: it must hold the rest, not drop them).
check_http_pipelining() {
	timeout 60 python3 - "$addr" "$http_root" <<'PY'
import os, socket, sys

addr, root = sys.argv[1:3]
host, port = addr.rsplit(":", 1)
failures = []

def disk(rel):
    with open(os.path.join(root, rel), "rb") as f:
        return f.read()

def read_response(f, head_only):
    status_line = f.readline()
    if not status_line:
        raise EOFError("connection closed before a response")
    fields = {}
    while True:
        line = f.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        fields[name.strip().lower()] = value.strip()
    length = int(fields.get("content-length", "0"))
    body = b"" if head_only else f.read(length)
    return int(status_line.split()[1]), fields, body

def pipeline(requests):
    s = socket.create_connection((host, int(port)), timeout=20)
    wire = b""
    for n, (method, path, _, _) in enumerate(requests):
        last = n == len(requests) - 1
        wire += f"{method} {path} HTTP/1.1\r\nHost: {addr}\r\n".encode()
        wire += b"Connection: close\r\n\r\n" if last else b"\r\n"
    s.sendall(wire)
    f = s.makefile("rb")
    for n, (method, path, status, body) in enumerate(requests):
        got_status, fields, got_body = read_response(f, method == "HEAD")
        if got_status != status:
            failures.append(f"response {n} ({method} {path}): status {got_status}, expected {status}")
        if got_body != body:
            failures.append(f"response {n} ({method} {path}): {len(got_body)} bytes, not the expected {len(body)}")
        if method == "HEAD" and fields.get("content-length") != str(len(disk(path[1:]))):
            failures.append(f"response {n} (HEAD): Content-Length {fields.get('content-length')}")
    rest = f.read()
    if rest:
        failures.append(f"{len(rest)} bytes after the last response: {rest[:60]!r}")
    s.close()

try:
    pipeline([
        ("GET", "/small.bin", 200, disk("small.bin")),
        ("HEAD", "/bin.dat", 200, b""),
        ("GET", "/sub/index.html", 200, disk("sub/index.html")),
    ])
    pipeline([("GET", "/bin.dat", 200, disk("bin.dat"))] * 16)
except (OSError, EOFError, ValueError, IndexError) as e:
    failures.append(f"{type(e).__name__}: {e}")
for f in failures:
    print("pipelining:", f, file=sys.stderr)
sys.exit(1 if failures else 0)
PY
}

# wrk: 10 connections for 2 s on the 1 KiB file; no non-2xx/3xx answer, no
# socket error, and some requests done.
check_wrk() {
	local out requests
	out=$(timeout 30 wrk -t1 -c10 -d2s --timeout 5s "http://$addr/small.bin" 2>&1) || {
		log "wrk failed (status $?): $out"
		return 1
	}
	requests=$(awk '/ requests in / { print $1 }' <<<"$out")
	# "Socket errors: connect 0, read 0, write 0, timeout 0" only when one is not 0.
	if grep -q 'Non-2xx or 3xx responses' <<<"$out" || grep 'Socket errors' <<<"$out" | grep -q '[1-9]' ||
		((${requests:-0} == 0)); then
		log "wrk saw errors (or did nothing):"
		printf '%s\n' "$out" >&2
		return 1
	fi
	log "        wrk: $requests requests in 2 s"
}

# Chromium, headless, with a fresh profile each time (nothing from a cache).
chromium_run() {
	local profile
	profile=$(mktemp -d "$HTTP_DIR/chromium.XXXXXX")
	timeout 60 chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage \
		--no-first-run --no-default-browser-check --disable-extensions \
		--disable-background-networking --disable-component-update --disable-sync \
		--user-data-dir="$profile" --hide-scrollbars --force-device-scale-factor=1 \
		--window-size=400,300 --virtual-time-budget=5000 "$@" 2>>"$HTTP_DIR/chromium.err"
}

CHROMIUM_WANT='img-a:ok:40x40 img-b:ok:30x20 bg:rgb(0, 128, 255) box:123'

# Chromium: /page (a 301 to /page/) rendered; the script's report in the DOM
# says both images loaded and the stylesheet applied.
check_chromium_dom() {
	local dom
	dom=$(chromium_run --dump-dom "http://$addr/page") || {
		log "chromium --dump-dom failed (status $?); its stderr ends:"
		tail -n 10 "$HTTP_DIR/chromium.err" >&2
		return 1
	}
	if ! grep -qF "$CHROMIUM_WANT" <<<"$dom"; then
		log "chromium: the DOM lacks '$CHROMIUM_WANT':"
		grep -o '<pre id="result">[^<]*' <<<"$dom" >&2 || printf '%s\n' "$dom" | head -n 20 >&2
		return 1
	fi
}

# Chromium: a screenshot of /page/ shows the body's colour, both images and the
# box where the stylesheet puts them.
check_chromium_screenshot() {
	local shot=$http_work/shot.png
	rm -f "$shot"
	chromium_run --screenshot="$shot" "http://$addr/page/" >/dev/null || {
		log "chromium --screenshot failed (status $?); its stderr ends:"
		tail -n 10 "$HTTP_DIR/chromium.err" >&2
		return 1
	}
	timeout 30 python3 - "$shot" <<'PY'
import struct, sys, zlib

def decode(path):
    """Width, height, channels and rows of an 8-bit RGB/RGBA PNG."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat = 8, b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or ctype not in (2, 6) or interlace:
                raise ValueError(f"unsupported PNG: depth {depth}, colour type {ctype}, interlace {interlace}")
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
    raw = zlib.decompress(idat)
    stride = w * bpp
    rows, prev = [], bytearray(stride)
    for y in range(h):
        ftype, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if ftype == 1:
                line[i] = (line[i] + a) & 255
            elif ftype == 2:
                line[i] = (line[i] + b) & 255
            elif ftype == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(line)
        prev = line
    return w, h, bpp, rows

w, h, bpp, rows = decode(sys.argv[1])
want = {
    (20, 20): ((255, 0, 0), "a.png"),
    (75, 10): ((0, 160, 0), "img/b c.png"),
    (100, 65): ((255, 255, 0), "the box"),
    (300, 200): ((0, 128, 255), "the body's background"),
}
bad = []
for (x, y), (rgb, what) in want.items():
    got = tuple(rows[y][x * bpp:x * bpp + 3]) if x < w and y < h else None
    if got is None or any(abs(g - e) > 8 for g, e in zip(got, rgb)):
        bad.append(f"pixel ({x}, {y}) ({what}): {got}, expected {rgb}")
for b in bad:
    print("screenshot:", b, file=sys.stderr)
sys.exit(1 if bad else 0)
PY
}

# --access-log: two requests, two combined-format lines with their statuses.
check_access_log() {
	local file=$1 lines i
	http_fetch log1 -A interop-agent/1 -e http://referer.example/ /small.bin || return 1
	http_fetch log2 -A interop-agent/2 /no-such-file || return 1
	for ((i = 0; i < 20; i++)); do
		[[ -f $file && $(wc -l <"$file") -ge 2 ]] && break
		sleep 0.1
	done
	lines=$(cat "$file" 2>/dev/null) || true
	local stamp='\[[0-9]{2}/[A-Z][a-z]{2}/[0-9]{4}:[0-9]{2}:[0-9]{2}:[0-9]{2} \+0000\]'
	if [[ $(wc -l <<<"$lines") != 2 ]] ||
		! sed -n 1p <<<"$lines" | grep -qE "^127\.0\.0\.1 - - $stamp \"GET /small\.bin HTTP/1\.1\" 200 1024 \"http://referer\.example/\" \"interop-agent/1\"$" ||
		! sed -n 2p <<<"$lines" | grep -qE "^127\.0\.0\.1 - - $stamp \"GET /no-such-file HTTP/1\.1\" 404 [0-9]+ \"-\" \"interop-agent/2\"$"; then
		log "access log: expected a 200 line and a 404 line, got:"
		printf '%s\n' "$lines" >&2
		return 1
	fi
}

# --gzip-static: text.txt.gz is sent for text.txt to a client that accepts
# gzip (Content-Encoding: gzip, Vary), text.txt itself to one that does not.
check_gzip_static() {
	http_fetch gzip --compressed /text.txt || return 1
	expect_code 200 && expect_header Content-Encoding gzip && expect_header Vary Accept-Encoding &&
		same_file "$http_root/text.txt" "$resp.body" || return 1
	[[ $(resp_header Content-Length) == "$(stat -c %s "$http_root/text.txt.gz")" ]] || {
		log "Content-Length '$(resp_header Content-Length)' is not the .gz file's"
		return 1
	}
	http_fetch identity /text.txt || return 1
	expect_code 200 && expect_header Vary Accept-Encoding && same_file "$http_root/text.txt" "$resp.body" || return 1
	[[ -z $(resp_header Content-Encoding) ]] || {
		log "Content-Encoding for a client that does not accept gzip"
		return 1
	}
}

# --autoindex: a directory without index.html is listed, with links, and a
# name with markup in it is escaped.
check_autoindex() {
	http_fetch autoindex /docs/ || return 1
	expect_code 200 || return 1
	if ! grep -qF 'href="a%20file.txt"' "$resp.body" || ! grep -qF 'href="b.bin"' "$resp.body" ||
		! grep -qF '&lt;i&gt;x&amp;y&quot;.txt' "$resp.body" || grep -qF '<i>x' "$resp.body"; then
		log "listing of /docs/ lacks its entries:"
		head -c 600 "$resp.body" >&2
		return 1
	fi
}

# --header-timeout 1: a head still unfinished after it gets 408 and the close.
check_header_timeout() {
	timeout 20 python3 - "$addr" <<'PY'
import socket, sys, time

host, port = sys.argv[1].rsplit(":", 1)
start = time.monotonic()
got = b""
try:
    s = socket.create_connection((host, int(port)), timeout=10)
    s.sendall(b"GET /small.bin HTTP/1.1\r\nHost: x\r\n")
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        got += chunk
except OSError as e:
    got += f" ({type(e).__name__}: {e})".encode()
took = time.monotonic() - start
if not got.startswith(b"HTTP/1.1 408 ") or not 0.5 <= took <= 8:
    print(f"header timeout: after {took:.1f}s got {got[:80]!r}", file=sys.stderr)
    sys.exit(1)
PY
}

# A chunked request body is 411; one over 1 MiB is 413 (curl sends
# Expect: 100-continue and gets the answer instead).
check_body_refusals() {
	head -c $((2 << 20)) /dev/zero >"$http_work/2mib"
	http_fetch chunked -H 'Transfer-Encoding: chunked' --data-binary "@$http_root/small.bin" /small.bin ||
		return 1
	expect_code 411 || return 1
	http_fetch toolarge -X GET --data-binary "@$http_work/2mib" /small.bin || return 1
	expect_code 413
}

http_started=$SECONDS
log "http: building the test tree"
make_http_root "$HTTP_DIR"
http_root=$HTTP_DIR/root

for arch in $HTTP_ARCHS; do
	log "http --arch $arch"
	http_work=$HTTP_DIR/$arch
	mkdir -p "$http_work"
	if ! start_http_server "$arch" "$arch" "$http_root"; then
		log "  FAIL  start"
		failed=1
		stop_server "$arch" || true
		continue
	fi
	check "curl: download, byte-exact (HTTP/1.1)" check_http_download
	check "curl: download, byte-exact (HTTP/1.0)" check_http_download --http1.0
	check "curl: two URLs on one keep-alive connection" check_http_keepalive
	check "curl: -r 100-199 and -r -500 (206)" check_http_range
	check "curl: a range past the end (416, bytes */SIZE)" check_http_range_416
	check "curl: -r -5 of an empty file (200, empty)" check_http_range_empty
	check "curl: two ranges (200, whole)" check_http_multi_range
	check "curl: If-Range (206 with the ETag, 200 with another)" check_http_if_range
	check "curl: -z / If-Modified-Since (304)" check_http_if_modified_since
	check "curl: If-None-Match (304)" check_http_if_none_match
	check "curl: HEAD (Content-Length, no body)" check_http_head
	check "curl: a directory without its slash (301, Location)" check_http_dir_redirect
	check "curl: traversal out of the root (400; no secret, nor by symlink)" check_http_traversal
	check "curl: a missing file (404 with a body)" check_http_404
	check "curl: POST and DELETE (405, Allow), BREW (501)" check_http_methods
	check "python http.client: 8 requests on one connection" check_http_client
	check "python socket: pipelined requests answered in order" check_http_pipelining
	check "wrk: 2 s on a 1 KiB file, no errors" check_wrk
	if [[ $HTTP_BROWSER == 1 ]]; then
		check "chromium: page, stylesheet, script, images (DOM)" check_chromium_dom
		check "chromium: screenshot pixels" check_chromium_screenshot
	fi
	check "SIGTERM: exits 0" stop_server "$arch"
done
if [[ $HTTP_BROWSER != 1 ]]; then
	log "http: chromium skipped (HTTP_BROWSER=$HTTP_BROWSER)"
fi

log "http --access-log --gzip-static --autoindex --header-timeout 1 (reactor)"
http_work=$HTTP_DIR/options
mkdir -p "$http_work"
if start_http_server options reactor "$http_root" --access-log "$http_work/access.log" \
	--gzip-static --autoindex --header-timeout 1; then
	check "access log: two combined-format lines" check_access_log "$http_work/access.log"
	check "--gzip-static: the .gz sidecar, Vary" check_gzip_static
	check "--autoindex: a listing" check_autoindex
	check "--header-timeout: 408" check_header_timeout
	check "request bodies: chunked (411), over 1 MiB (413)" check_body_refusals
	check "SIGTERM: exits 0" stop_server options
else
	log "  FAIL  start"
	failed=1
	stop_server options || true
fi
log "http: $((SECONDS - http_started))s"

# =============================================================================
# calc: expressions typed into nc, answers checked against Python's integers
# =============================================================================
CALC_ARCHS=${CALC_ARCHS:-"reactor thread-per-connection"}

# Sends every expression in one go through nc (half-closing after QUIT) and
# compares the answers with what python3 computes for the same lines.
check_calc_nc() {
	local host=${addr%:*} port=${addr##*:} got want
	local exprs=('1 + 2' '(7 - 3) * 12 / 5' '-2 ** 2' '2 ** 3 ** 2' '-7 / 2' '7 % -2'
		'2 ** 521 - 1' '12345678901234567890 * 98765432109876543210 % 1000000007')
	want=$(python3 - "${exprs[@]}" <<'PY'
import sys
for e in sys.argv[1:]:
    print(eval(e.replace("/", "//")))
print("ERR division by zero")
print("ERR result too large")
print("BYE")
PY
	)
	got=$( (printf '%s\n' "${exprs[@]}"; printf '1 %% 0\n2 ** 10 ** 9\nQUIT\n') |
		timeout 10 "$NC" -N "$host" "$port" | tr -d '\r') || {
		log "nc failed or timed out (status $?)"
		return 1
	}
	if [[ $got != "$want" ]]; then
		log "calc: expected"
		printf '%s\n' "$want" >&2
		log "calc: got"
		printf '%s\n' "$got" >&2
		return 1
	fi
}

for arch in $CALC_ARCHS; do
	log "calc --arch $arch"
	if ! start_server "$arch" calc; then
		log "  FAIL  start"
		failed=1
		stop_server "$arch" || true
		continue
	fi
	check "nc: expressions, errors, QUIT (answers as Python computes them)" check_calc_nc
	check "SIGTERM: exits 0" stop_server "$arch"
done

# =============================================================================
# kv: redis-cli, redis-py and redis-benchmark against `muse serve kv`
# =============================================================================
# For each of KV_ARCHS: redis-cli round trips of the everyday commands with
# Redis's exact output, an error reply as redis-cli shows it, redis-py over
# RESP2 and RESP3 (a transaction, a hash as a dict, BLPOP timing out and
# woken by another connection), and redis-benchmark with no error. With
# KV_INTEROP_PORT=PORT the same checks run once against the server already
# listening on 127.0.0.1:PORT (a redis-server, to check the checks) instead.
KV_ARCHS=${KV_ARCHS:-"reactor thread-per-connection prefork-reactor uring"}
KV_INTEROP_PORT=${KV_INTEROP_PORT:-}

# redis-cli against the server under test, output raw (not a terminal).
kv_cli() {
	timeout 10 redis-cli -h "${addr%:*}" -p "${addr##*:}" "$@"
}

# kv_expect WHAT WANT CMD...: the redis-cli output of CMD must be WANT.
kv_expect() {
	local what=$1 want=$2 got
	shift 2
	got=$(kv_cli "$@" 2>&1) || true
	if [[ $got != "$want" ]]; then
		log "kv: $what: redis-cli $*: expected"
		printf '%s\n' "$want" >&2
		log "kv: got"
		printf '%s\n' "$got" >&2
		return 1
	fi
}

# kv_expect_sorted WHAT WANT CMD...: as kv_expect, order aside (the lines of
# SMEMBERS, the field-value pairs of HGETALL: Redis promises no order).
kv_expect_sorted() {
	local what=$1 want=$2 pairs=$3 got
	shift 3
	got=$(kv_cli "$@" 2>&1) || true
	if ((pairs)); then
		got=$(paste -d ' ' - - <<<"$got" | sort)
	else
		got=$(sort <<<"$got")
	fi
	if [[ $got != "$want" ]]; then
		log "kv: $what: redis-cli $*: expected (sorted)"
		printf '%s\n' "$want" >&2
		log "kv: got"
		printf '%s\n' "$got" >&2
		return 1
	fi
}

check_kv_ping() {
	kv_expect ping PONG PING
}

check_kv_strings() {
	kv_cli DEL interop:s interop:n >/dev/null &&
		kv_expect set OK SET interop:s "hello, muse" &&
		kv_expect get "hello, muse" GET interop:s &&
		kv_expect "set a number" OK SET interop:n 41 &&
		kv_expect incr 42 INCR interop:n &&
		kv_expect incrby 50 INCRBY interop:n 8 &&
		kv_expect "get after incr" 50 GET interop:n &&
		kv_expect del 2 DEL interop:s interop:n interop:missing &&
		kv_expect "get after del" '(nil)' --no-raw GET interop:s
}

check_kv_expire() {
	local ttl
	kv_cli DEL interop:e >/dev/null &&
		kv_expect set OK SET interop:e v &&
		kv_expect "ttl without expiry" -1 TTL interop:e &&
		kv_expect expire 1 EXPIRE interop:e 100 &&
		ttl=$(kv_cli TTL interop:e) || return 1
	# A second may pass between the two commands.
	if [[ $ttl != 100 && $ttl != 99 ]]; then
		log "kv: TTL after EXPIRE 100: got '$ttl'"
		return 1
	fi
	kv_expect "expire of a missing key" 0 EXPIRE interop:missing 100 &&
		kv_expect "ttl of a missing key" -2 TTL interop:missing
}

check_kv_list() {
	kv_cli DEL interop:l >/dev/null &&
		kv_expect lpush 3 LPUSH interop:l a b c &&
		kv_expect lrange $'c\nb\na' LRANGE interop:l 0 -1 &&
		kv_expect "lrange (redis-cli --no-raw)" $'1) "c"\n2) "b"\n3) "a"' --no-raw LRANGE interop:l 0 -1 &&
		kv_expect "lrange of a part" b LRANGE interop:l 1 1
}

check_kv_hash() {
	kv_cli DEL interop:h >/dev/null &&
		kv_expect hset 2 HSET interop:h f1 v1 f2 "v 2" &&
		kv_expect "hset of one new field" 1 HSET interop:h f1 w1 f3 v3 &&
		kv_expect_sorted hgetall $'f1 w1\nf2 v 2\nf3 v3' 1 HGETALL interop:h
}

check_kv_set() {
	kv_cli DEL interop:set >/dev/null &&
		kv_expect sadd 3 SADD interop:set x y z y &&
		kv_expect "sadd of members it has" 0 SADD interop:set x &&
		kv_expect_sorted smembers $'x\ny\nz' 0 SMEMBERS interop:set
}

check_kv_errors() {
	kv_cli DEL interop:str >/dev/null &&
		kv_expect set OK SET interop:str abc &&
		kv_expect "incr of a non-integer" '(error) ERR value is not an integer or out of range' \
			--no-raw INCR interop:str &&
		kv_expect "lpush on a string" \
			'(error) WRONGTYPE Operation against a key holding the wrong kind of value' \
			--no-raw LPUSH interop:str x &&
		kv_expect "get of a wrong arity" \
			"(error) ERR wrong number of arguments for 'get' command" --no-raw GET
}

# redis-py over RESP PROTOCOL (2 or 3, the latter after HELLO 3).
check_kv_redis_py() {
	timeout 20 python3 - "${addr%:*}" "${addr##*:}" "$1" <<'PY'
import sys, threading, time
import redis

host, port, proto = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
failures = []

def want(what, got, expected):
    if got != expected:
        failures.append(f"{what}: expected {expected!r}, got {got!r}")

def client():
    return redis.Redis(host=host, port=port, protocol=proto, socket_timeout=10)

r = client()
k = f"interop:py{proto}:"
r.delete(k + "s", k + "n", k + "h", k + "q")
want("set", r.set(k + "s", "value"), True)
want("get", r.get(k + "s"), b"value")
pipe = r.pipeline(transaction=True)
pipe.set(k + "n", 1).incr(k + "n").incrby(k + "n", 10).get(k + "n")
want("MULTI/EXEC", pipe.execute(), [True, 2, 12, b"12"])
want("hset", r.hset(k + "h", mapping={"a": "1", "b": "2"}), 2)
want("hgetall", r.hgetall(k + "h"), {b"a": b"1", b"b": b"2"})
start = time.monotonic()
want("blpop timing out", r.blpop([k + "q"], timeout=0.2), None)
took = time.monotonic() - start
if not 0.15 <= took < 2:
    failures.append(f"blpop with a 0.2 s timeout returned after {took:.3f} s")

def push():
    time.sleep(0.2)
    client().rpush(k + "q", "woken")

pusher = threading.Thread(target=push)
start = time.monotonic()
pusher.start()
got = r.blpop([k + "q"], timeout=5)
took = time.monotonic() - start
pusher.join()
want("blpop woken by rpush", None if got is None else tuple(got), (k.encode() + b"q", b"woken"))
if took >= 4:
    failures.append(f"blpop woken only after {took:.3f} s")
want("the list after", r.llen(k + "q"), 0)
for f in failures:
    print(f"redis-py (protocol {proto}):", f, file=sys.stderr)
sys.exit(1 if failures else 0)
PY
}

# Whether stdin has a line "TEST: N requests per second...".
kv_benchmark_reported() {
	local line
	while IFS= read -r line; do
		[[ $line == "$1: "[0-9]*" requests per second"* ]] && return 0
	done
	return 1
}

# redis-benchmark: every test done, none erring or warning.
check_kv_benchmark() {
	local out tests=(SET GET INCR LPUSH LPOP SADD HSET 'MSET (10 keys)') t status=0
	out=$(timeout 20 redis-benchmark -q -h "${addr%:*}" -p "${addr##*:}" -n 2000 -c 10 \
		-t set,get,incr,lpush,lpop,sadd,hset,mset 2>&1 | tr '\r' '\n') || status=$?
	if ((status)); then
		log "kv: redis-benchmark failed (status $status)"
		status=1
	fi
	if grep -i -e error -e warning <<<"$out" >&2; then
		log "kv: redis-benchmark said the above"
		status=1
	fi
	# Its progress lines end in \r (made lines above), each test's result in
	# \n: "SET: 81234.50 requests per second, p50=0.063 msec".
	for t in "${tests[@]}"; do
		if ! kv_benchmark_reported "$t" <<<"$out"; then
			log "kv: redis-benchmark reported no requests per second for $t"
			status=1
		fi
	done
	return "$status"
}

# Every kv check against the server at $addr.
check_kv_all() {
	check "redis-cli: PING (PONG)" check_kv_ping
	check "redis-cli: SET, GET, INCR, INCRBY, DEL" check_kv_strings
	check "redis-cli: EXPIRE and TTL" check_kv_expire
	check "redis-cli: LPUSH and LRANGE" check_kv_list
	check "redis-cli: HSET and HGETALL" check_kv_hash
	check "redis-cli: SADD and SMEMBERS" check_kv_set
	check "redis-cli --no-raw: error replies" check_kv_errors
	check "redis-py, RESP2: set/get, MULTI/EXEC, hgetall, blpop" check_kv_redis_py 2
	check "redis-py, RESP3: set/get, MULTI/EXEC, hgetall, blpop" check_kv_redis_py 3
	check "redis-benchmark: 8 tests, no error" check_kv_benchmark
}

kv_section() {
	local started=$SECONDS arch
	if ! command -v redis-cli >/dev/null || ! command -v redis-benchmark >/dev/null; then
		apt_install redis-tools
	fi
	# RESP3 (protocol=3) came with redis-py 5; Debian's python3-redis is 4.
	if ! python3 -c 'import redis, sys; sys.exit(int(redis.__version__.split(".")[0]) < 5)' 2>/dev/null; then
		python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
		python3 -m pip install -q 'redis>=5' 2>/dev/null ||
			python3 -m pip install -q --break-system-packages 'redis>=5'
	fi
	if [[ -n $KV_INTEROP_PORT ]]; then
		log "kv: the server on 127.0.0.1:$KV_INTEROP_PORT (KV_INTEROP_PORT)"
		addr=127.0.0.1:$KV_INTEROP_PORT
		check_kv_all
	else
		for arch in $KV_ARCHS; do
			log "kv --arch $arch"
			if ! start_muse "$arch" kv "$arch"; then
				log "  FAIL  start"
				failed=1
				stop_server "$arch" || true
				continue
			fi
			check_kv_all
			check "SIGTERM: exits 0" stop_server "$arch"
		done
	fi
	log "kv: $((SECONDS - started))s"
}

kv_section

# =============================================================================
# TLS: curl, Chromium, redis-cli --tls and redis-py ssl=True on --tls-listen
# =============================================================================
# A certificate for 127.0.0.1 and localhost made with openssl. HTTPS under
# each of TLS_ARCHS: curl downloads (keep-alive, a range) and checks the
# certificate and ALPN; Chromium renders a page over HTTPS (when HTTP_BROWSER
# allows it). kv over TLS: redis-cli --tls and redis-py with ssl=True.
TLS_ARCHS=${TLS_ARCHS:-"reactor thread-per-connection prefork-reactor uring"}
TLS_DIR=$WORK/tls

# start_muse_tls NAME PROTOCOL ARCH [ARG...]: like start_muse, with a TLS
# listener too; sets tls_addr from its `(..., tls)` line.
start_muse_tls() {
	local name=$1 protocol=$2 arch=$3 line i
	shift 3
	start_muse "$name" "$protocol" "$arch" --tls-listen 127.0.0.1:0 \
		--tls-cert "$TLS_DIR/cert.pem" --tls-key "$TLS_DIR/key.pem" "$@" || return 1
	tls_addr=""
	for ((i = 0; i < START_TIMEOUT_S * 20; i++)); do
		while read -r line; do
			if [[ $line == "listening on "*", tls)" ]]; then
				read -r _ _ tls_addr _ <<<"$line"
				return 0
			fi
		done <"$server_out"
		sleep 0.05
	done
	log "$protocol $name: no TLS 'listening on' line"
	return 1
}

# curl over HTTPS: the certificate verifies, ALPN says http/1.1, two
# downloads on one connection and a range come back byte-exact.
check_tls_curl() {
	local out=$TLS_DIR/curl.out
	curl -sS -v --max-time 20 --cacert "$TLS_DIR/cert.pem" \
		-w '%{http_version} %{ssl_verify_result} %{num_connects}\n' \
		-o "$TLS_DIR/a" "https://$tls_addr/bin.dat" -o "$TLS_DIR/b" "https://$tls_addr/bin.dat" \
		>"$out" 2>"$TLS_DIR/curl.err" || return 1
	if ! grep -Eq 'ALPN.*accepted.*http/1\.1' "$TLS_DIR/curl.err"; then
		log "curl https: the server did not accept ALPN http/1.1"
		return 1
	fi
	if [[ $(sed -n 2p "$out") != "1.1 0 0" ]]; then
		log "curl https: expected HTTP/1.1, a verified certificate and one connection; got: $(tr '\n' ' ' <"$out")"
		return 1
	fi
	cmp -s "$TLS_DIR/a" "$http_root/bin.dat" && cmp -s "$TLS_DIR/b" "$http_root/bin.dat" || {
		log "curl https: the downloads differ from the file"
		return 1
	}
	curl -sS --max-time 20 --cacert "$TLS_DIR/cert.pem" -r 100-199 "https://$tls_addr/bin.dat" \
		-o "$TLS_DIR/range" || return 1
	cmp -s "$TLS_DIR/range" <(tail -c +101 "$http_root/bin.dat" | head -c 100) || {
		log "curl https: the range differs"
		return 1
	}
}

# curl without the certificate: refused by curl (the server is not trusted
# by default), and a plain request on the TLS port fails fast.
check_tls_curl_refusals() {
	if curl -sS --max-time 10 "https://$tls_addr/bin.dat" -o /dev/null 2>/dev/null; then
		log "curl https trusted a self-signed certificate it was not given"
		return 1
	fi
	if curl -sS --max-time 10 "http://$tls_addr/bin.dat" -o /dev/null 2>/dev/null; then
		log "a plain HTTP request on the TLS port succeeded"
		return 1
	fi
}

# Chromium over HTTPS, trusting nothing but told to ignore certificate
# errors for this one run: the page renders as over plain HTTP.
check_tls_chromium() {
	local dom
	dom=$(chromium_run --ignore-certificate-errors --dump-dom "https://$tls_addr/page/") || {
		log "chromium over https failed (status $?)"
		tail -n 10 "$HTTP_DIR/chromium.err" >&2
		return 1
	}
	if ! grep -qF "$CHROMIUM_WANT" <<<"$dom"; then
		log "chromium over https: the DOM lacks '$CHROMIUM_WANT'"
		return 1
	fi
}

check_tls_redis_cli() {
	local got
	got=$(timeout 10 redis-cli --tls --cacert "$TLS_DIR/cert.pem" -h 127.0.0.1 -p "${tls_addr##*:}" \
		SET interop:tls yes) || return 1
	[[ $got == OK ]] || { log "redis-cli --tls SET: $got"; return 1; }
	got=$(timeout 10 redis-cli --tls --cacert "$TLS_DIR/cert.pem" -h 127.0.0.1 -p "${tls_addr##*:}" \
		GET interop:tls) || return 1
	[[ $got == yes ]] || { log "redis-cli --tls GET: $got"; return 1; }
}

check_tls_redis_py() {
	timeout 20 python3 - "${tls_addr##*:}" "$TLS_DIR/cert.pem" <<'PY'
import sys
import redis
r = redis.Redis(host="127.0.0.1", port=int(sys.argv[1]), ssl=True,
                ssl_ca_certs=sys.argv[2], socket_timeout=10, protocol=3)
assert r.set("interop:tls:py", "v") is True
assert r.get("interop:tls:py") == b"v"
pipe = r.pipeline(transaction=True)
pipe.incr("interop:tls:n").incr("interop:tls:n")
assert pipe.execute()[-1] >= 2
PY
}


# FTPS: curl (explicit with --ssl-reqd, implicit with ftps://), lftp with
# ftp:ssl-force and ftp:ssl-protect-data, Python's ftplib.FTP_TLS with
# prot_p(); downloads and uploads byte-exact, the data connections in TLS.
check_ftps_curl() {
	curl -sS --max-time 30 --ssl-reqd --cacert "$TLS_DIR/cert.pem" -u "alice:$FTPS_PASS" \
		"ftp://$addr/bin.dat" -o "$TLS_DIR/ftps-a" || return 1
	cmp -s "$TLS_DIR/ftps-a" "$FTPS_ROOT/bin.dat" || { log "curl --ssl-reqd: download differs"; return 1; }
	curl -sS --max-time 30 --ssl-reqd --cacert "$TLS_DIR/cert.pem" -u "alice:$FTPS_PASS" \
		-T "$FTPS_ROOT/bin.dat" "ftp://$addr/up-curl.dat" || return 1
	cmp -s "$FTPS_ROOT/up-curl.dat" "$FTPS_ROOT/bin.dat" || { log "curl --ssl-reqd: upload differs"; return 1; }
	curl -sS --max-time 30 --cacert "$TLS_DIR/cert.pem" -u "alice:$FTPS_PASS" \
		"ftps://$tls_addr/bin.dat" -o "$TLS_DIR/ftps-b" || return 1
	cmp -s "$TLS_DIR/ftps-b" "$FTPS_ROOT/bin.dat" || { log "curl ftps://: download differs"; return 1; }
}

check_ftps_lftp() {
	rm -f "$TLS_DIR/ftps-l" "$FTPS_ROOT/up-lftp.dat"
	timeout 60 lftp -u "alice,$FTPS_PASS" -e "set ftp:ssl-force true; set ftp:ssl-protect-data true; \
set ssl:ca-file $TLS_DIR/cert.pem; set net:max-retries 1; get bin.dat -o $TLS_DIR/ftps-l; \
put $FTPS_ROOT/bin.dat -o up-lftp.dat; bye" "ftp://$addr" >/dev/null 2>"$TLS_DIR/lftp.err" || {
		log "lftp over TLS failed:"
		tail -n 5 "$TLS_DIR/lftp.err" >&2
		return 1
	}
	cmp -s "$TLS_DIR/ftps-l" "$FTPS_ROOT/bin.dat" && cmp -s "$FTPS_ROOT/up-lftp.dat" "$FTPS_ROOT/bin.dat" || {
		log "lftp over TLS: a transfer differs"
		return 1
	}
}

check_ftps_ftplib() {
	timeout 60 python3 - "${addr##*:}" "$TLS_DIR/cert.pem" "$FTPS_PASS" <<'PY'
import ftplib, io, os, ssl, sys
port, ca, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ftp = ftplib.FTP_TLS(context=ssl.create_default_context(cafile=ca), timeout=20)
ftp.connect("127.0.0.1", port)
ftp.login("alice", password)
ftp.prot_p()
data = os.urandom(700_000)
for passive in (True, False):
    ftp.set_pasv(passive)
    name = f"up-ftplib-{passive}.dat"
    ftp.storbinary(f"STOR {name}", io.BytesIO(data))
    got = io.BytesIO()
    ftp.retrbinary(f"RETR {name}", got.write)
    assert got.getvalue() == data, f"round trip (passive={passive}) differs"
    assert name in ftp.nlst(), f"NLST lacks {name}"
ftp.quit()
PY
}

ftps_section() {
	local arch
	command -v lftp >/dev/null || apt_install lftp
	FTPS_ROOT=$TLS_DIR/ftproot
	FTPS_PASS=interop-$RANDOM
	mkdir -p "$FTPS_ROOT"
	head -c 900000 /dev/urandom >"$FTPS_ROOT/bin.dat"
	printf 'alice:%s:/:all\n' "$(printf '%s' "$FTPS_PASS" | "$MUSE" passwd)" >"$TLS_DIR/users"
	for arch in $TLS_ARCHS; do
		log "ftps --arch $arch"
		if ! start_muse_tls "ftps-$arch" ftp "$arch" --root "$FTPS_ROOT" --users "$TLS_DIR/users"; then
			log "  FAIL  start"
			failed=1
			stop_server "$arch" || true
			continue
		fi
		check "curl --ssl-reqd (explicit) and ftps:// (implicit): down and up" check_ftps_curl
		check "lftp ftp:ssl-force, ftp:ssl-protect-data: get and put" check_ftps_lftp
		check "python ftplib.FTP_TLS, prot_p: passive and active round trips" check_ftps_ftplib
		check "SIGTERM: exits 0" stop_server "$arch"
	done
}

tls_section() {
	local started=$SECONDS arch
	command -v openssl >/dev/null || apt_install openssl
	mkdir -p "$TLS_DIR"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -days 2 -nodes \
		-keyout "$TLS_DIR/key.pem" -out "$TLS_DIR/cert.pem" -subj /CN=localhost \
		-addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null
	for arch in $TLS_ARCHS; do
		log "https --arch $arch"
		if ! start_muse_tls "tls-$arch" http "$arch" --root "$http_root"; then
			log "  FAIL  start"
			failed=1
			stop_server "$arch" || true
			continue
		fi
		check "curl https: verified, ALPN http/1.1, keep-alive, range" check_tls_curl
		check "curl: untrusted certificate and plain HTTP on the TLS port refused" check_tls_curl_refusals
		if [[ $HTTP_BROWSER == 1 ]]; then
			check "chromium over https: the page renders" check_tls_chromium
		fi
		check "SIGTERM: exits 0" stop_server "$arch"
		log "kv over TLS --arch $arch"
		if ! start_muse_tls "tls-$arch" kv "$arch"; then
			log "  FAIL  start"
			failed=1
			stop_server "$arch" || true
			continue
		fi
		check "redis-cli --tls: SET, GET" check_tls_redis_cli
		check "redis-py ssl=True: set/get, MULTI/EXEC" check_tls_redis_py
		check "SIGTERM: exits 0" stop_server "$arch"
	done
	ftps_section
	log "tls: $((SECONDS - started))s"
}

tls_section

if ((failed)); then
	log "FAILED"
	exit 1
fi
log "all interop checks passed"
