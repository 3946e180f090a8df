#!/usr/bin/env bash
# A peer for `muse bench ftp`: pyftpdlib (one Python thread, async),
# serving ROOT anonymously and read-only on 127.0.0.1.
#
#   muse bench ftp --spawn "pyftpdlib=scripts/peers/pyftpdlib.sh {root}"
#
# Installs pyftpdlib with pip if it is missing; prints
# `listening on 127.0.0.1:PORT` and serves until SIGTERM or SIGINT.
# Logging is at WARNING: pyftpdlib's default (every command at INFO, on
# stderr) would measure its logging.
set -euo pipefail

root=${1:?usage: pyftpdlib.sh ROOT}
[ -d "$root" ] || { echo "pyftpdlib.sh: $root is not a directory" >&2; exit 1; }
python=${PYTHON:-python3}

if ! "$python" -c 'import pyftpdlib' 2>/dev/null; then
    echo "pyftpdlib.sh: installing pyftpdlib" >&2
    "$python" -m pip install --quiet pyftpdlib >&2
fi

exec "$python" - "$root" <<'PY'
import logging, sys
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.log import config_logging
from pyftpdlib.servers import FTPServer

config_logging(level=logging.WARNING)
authorizer = DummyAuthorizer()
authorizer.add_anonymous(sys.argv[1])  # perm "elr": read-only
FTPHandler.authorizer = authorizer
server = FTPServer(("127.0.0.1", 0), FTPHandler)
server.max_cons = 10000
host, port = server.socket.getsockname()[:2]
print(f"listening on {host}:{port}", flush=True)
server.serve_forever(handle_exit=True)
PY
