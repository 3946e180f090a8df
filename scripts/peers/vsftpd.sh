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

me=vsftpd.sh
# shellcheck source=scripts/peers/lib.sh
. "$(dirname "$0")/lib.sh"
peer_root "$@"
peer_program vsftpd /usr/sbin/vsftpd
vsftpd=$program

# Anonymous sessions run as this user.
if ! id ftp >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /srv/ftp --shell /usr/sbin/nologin ftp
fi

port=$(peer_free_port)

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

peer_run "$vsftpd" "$tmp/vsftpd.conf"
