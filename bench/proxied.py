"""A benchmark server behind nginx, as production serves one: the uwsgi protocol
over a unix socket between them, kept-alive HTTP connections to the clients.

Both sides of a comparison get the same nginx configuration and the same uWSGI
options (:data:`bench.servers.UWSGI_COMMON`); only the app differs.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import typing as t
from pathlib import Path

from .servers import BIN
from .servers import ROOT
from .servers import UWSGI_COMMON
from .servers import Server
from .servers import free_port
from .servers import nginx_conf
from .servers import start_nginx
from .servers import stop
from .servers import wait_for_http

#: Where the distribution's nginx keeps ``uwsgi_params``.
UWSGI_PARAMS = Path("/etc/nginx/uwsgi_params")


def nginx_site(port: int, socket: Path) -> str:
    """The ``http`` block of a private nginx passing every request to the uWSGI socket."""
    return f"""    access_log off;
    server {{
        listen 127.0.0.1:{port};
        keepalive_timeout 60s;
        keepalive_requests 1000000;
        location / {{
            include {UWSGI_PARAMS};
            uwsgi_pass unix:{socket};
        }}
    }}
"""


@contextlib.contextmanager
def behind_nginx(name: str, module: str, ready_path: str, folder: Path, processes: int = 2,
                 env: dict[str, str] | None = None) -> t.Iterator[Server]:
    """uWSGI serving ``module:app`` on a unix socket, nginx in front on a free port.

    The :class:`Server`'s process is uWSGI's master (its children are the workers
    whose CPU and memory the benchmarks read); nginx is stopped with it.
    """
    folder.mkdir(parents=True, exist_ok=True)
    folder = folder.resolve()
    socket = folder / f"{name}.sock"
    port = free_port()
    command = [
        str(BIN / "uwsgi"), "--socket", str(socket), "--chmod-socket=600", *UWSGI_COMMON,
        "--processes", str(processes), "--threads", "1",
        "--chdir", str(ROOT), "--pythonpath", str(ROOT), "--virtualenv", str(BIN.parent),
        "--module", module, "--callable", "app",
    ]
    with open(folder / f"{name}-uwsgi.log", "wb") as log:
        started = time.monotonic()
        process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **(env or {})},
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    nginx = start_nginx(nginx_conf(folder, "nginx", nginx_site(port, socket)))
    try:
        server = Server(name, f"http://127.0.0.1:{port}", process)
        wait_for_http(server.base + ready_path, process, nginx)
        server.startup = time.monotonic() - started
        yield server
    finally:
        stop(nginx)
        stop(process)
