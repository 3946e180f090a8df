#!/usr/bin/env bash
# A peer for `muse bench ftp`: vsftpd from Debian's packages, serving ROOT
# anonymously and read-only on 127.0.0.1, in the foreground.
#
#   muse bench ftp --spawn "vsftpd=scripts/peers/vsftpd.sh {root}"
#
# Installs vsftpd with apt-get if it is missing, writes a config into a
# temporary directory, starts vsftpd on a free port, prints
# `listening on 127.0.0.1:PORT` once it accepts, and waits. SIGTERM or
# SIGINT (muse bench stops the whole process group) stops vsftpd and
# removes the temporary directory. Needs root (vsftpd chroots anonymous
# sessions into ROOT and drops to the `ftp` user).
set -euo pipefail

root=${1:?usage: vsftpd.sh ROOT}
[ -d "$root" ] || { echo "vsftpd.sh: $root is not a directory" >&2; exit 1; }
root=$(cd "$root" && pwd -P)

if ! command -v vsftpd >/dev/null 2>&1 && [ ! -x /usr/sbin/vsftpd ]; then
    echo "vsftpd.sh: installing vsftpd" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update >&2
    apt-get install -y --no-install-recommends vsftpd >&2
    # The package starts its own daemon on port 21 where it can; this
    # script runs its own.
    service vsftpd stop >/dev/null 2>&1 || true
fi
vsftpd=$(command -v vsftpd || echo /usr/sbin/vsftpd)

# Anonymous sessions run as this user.
if ! id ftp >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /srv/ftp --shell /usr/sbin/nologin ftp
fi

# A free port: bound and released (a race with another program is unlikely
# on a machine running a bench).
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

tmp=$(mktemp -d /tmp/muse-peer-vsftpd.XXXXXX)
mkdir -m 0755 "$tmp/empty"
cat > "$tmp/vsftpd.conf" <<CONF
listen=YES
listen_ipv6=NO
listen_address=127.0.0.1
listen_port=$port
background=NO
anonymous_enable=YES
no_anon_password=NO
anon_root=$root
local_enable=NO
write_enable=NO
anon_upload_enable=NO
anon_mkdir_write_enable=NO
anon_other_write_enable=NO
ftp_username=ftp
pasv_enable=YES
pasv_address=127.0.0.1
pasv_min_port=20000
pasv_max_port=30000
port_enable=YES
connect_from_port_20=NO
secure_chroot_dir=$tmp/empty
seccomp_sandbox=NO
max_clients=10000
max_per_ip=10000
xferlog_enable=NO
dirmessage_enable=NO
use_localtime=YES
CONF
chmod 0600 "$tmp/vsftpd.conf"

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

"$vsftpd" "$tmp/vsftpd.conf" </dev/null &
pid=$!

# Ready once it accepts (the probe is one short session).
for _ in $(seq 200); do
    if ! kill -0 "$pid" 2>/dev/null; then
        wait "$pid" || true
        echo "vsftpd.sh: vsftpd exited before it listened" >&2
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
