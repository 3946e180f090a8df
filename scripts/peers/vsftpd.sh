#!/usr/bin/env bash
# A peer for `muse bench ftp`: vsftpd from Debian's packages, serving ROOT
# anonymously and read-only on 127.0.0.1, in the foreground.
#
#   muse bench ftp --spawn "vsftpd=scripts/peers/vsftpd.sh {root}"
#   muse bench ftp --scenario ftps-sessions \
#                  --spawn "vsftpd=scripts/peers/vsftpd.sh --tls {tls_cert} {tls_key} {root}"
#
# --tls CERT KEY serves explicit FTPS (PEM files; the bench's TLS scenarios
# give theirs as {tls_cert} and {tls_key}; vsftpd's `rsa_*` settings take
# any key OpenSSL reads, the bench's ECDSA one included): AUTH TLS, and
# both logins and data connections must use TLS (anonymous ones too:
# allow_anon_ssl, force_anon_*), in whatever TLS version OpenSSL offers
# (1.2 and 1.3: Debian's vsftpd 3.0.3 has no ssl_tlsv1_2/ssl_tlsv1_3
# settings, its ssl_tlsv1 covers every TLS version), with the HIGH ciphers.
# require_ssl_reuse=NO: vsftpd's default refuses a data connection that
# does not resume the control connection's TLS session, and clients that
# do not resume (Python's ftplib, a TLS 1.3 client whose ticket came late)
# would fail; muse does not ask for it either unless told
# (--tls-require-reuse). The bench's client resumes where it can.
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
tls_cert= tls_key=
if [ "${1:-}" = --tls ]; then
    peer_tls "${2:-}" "${3:-}"
    shift 3
fi
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
if [ -n "$tls_cert" ]; then
    cat >> "$tmp/vsftpd.conf" <<CONF
ssl_enable=YES
rsa_cert_file=$tls_cert
rsa_private_key_file=$tls_key
ssl_sslv2=NO
ssl_sslv3=NO
ssl_tlsv1=YES
allow_anon_ssl=YES
force_anon_logins_ssl=YES
force_anon_data_ssl=YES
force_local_logins_ssl=YES
force_local_data_ssl=YES
require_ssl_reuse=NO
ssl_ciphers=HIGH
CONF
fi
chmod 0600 "$tmp/vsftpd.conf"

peer_run "$vsftpd" "$tmp/vsftpd.conf"
