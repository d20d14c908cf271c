"""The production shape for a test: the shipped ``kernkoa_uwsgi.ini`` (2 processes of
4 threads) behind nginx with the shipped server block, both private to the test.

Like ``setup.sh --no-systemd`` without installing anything: nginx and uWSGI
run from this checkout with their sockets, pid files and logs in a folder of
the test, on a free port of 127.0.0.1, and are stopped on the way out.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import typing as t
from pathlib import Path

import pytest

from bench.servers import nginx_conf
from bench.servers import start_nginx
from bench.servers import wait_for_http as wait_until_served
from kernel.cli.nginx_errors import directives as nginx_error_pages
from kernel.core.settings import PROJECT_ROOT
from kernel.core.settings import Settings
from tests.support import real_parts
from tests.support.processes import BIN
from tests.support.processes import children
from tests.support.processes import free_port
from tests.support.processes import stop
from tests.support.processes import wait_until_gone
from tests.support.servers import LiveServer

#: Where the distribution's nginx keeps uwsgi_params and mime.types.
NGINX_ETC = Path("/etc/nginx")


def shipped_nginx_conf(run: Path, port: int, body_limit: int) -> Path:
    """A private nginx configuration around the shipped server block; its path."""
    site = (PROJECT_ROOT / "kernkoa_nginx.conf").read_text()
    for placeholder, value in (("@PORT@", str(port)), ("@HOME@", str(PROJECT_ROOT)),
                               ("@RUN@", str(run)), ("@NGINX_ETC@", str(NGINX_ETC)),
                               ("@ETC@", str(run)), ("@SERVER_NAME@", "_"),
                               # Above the shipped ini's harakiri (60 s), as setup.sh writes it.
                               ("@READ_TIMEOUT@", "75"),
                               ("@BODY_LIMIT@", str(body_limit))):
        site = site.replace(placeholder, value)
    (run / "kernkoa_nginx.conf").write_text(site)
    # What setup.sh writes with `python -m kernel.cli.nginx_errors`.
    (run / "kernkoa_nginx_errors.conf").write_text(nginx_error_pages())
    return nginx_conf(run, "nginx", f"""    include {NGINX_ETC}/mime.types;
    access_log {run}/nginx-access.log;
    include {run}/kernkoa_nginx.conf;
""", connections=256)


@contextlib.contextmanager
def uwsgi_behind_nginx(folder: Path, env: dict[str, str],
                       *uwsgi_options: str) -> t.Iterator[LiveServer]:
    """uWSGI (the shipped ini, plus ``uwsgi_options``) behind nginx; the server
    is nginx's address, its ``process`` the uWSGI master.

    ``env`` is the whole environment of uWSGI (its ``KERNKOA_*`` settings).
    """
    real_parts.require("uwsgi")
    real_parts.require("nginx")
    if shutil.which("nginx") is None:
        pytest.fail("nginx is missing: `make test` installs it")
    run = folder / "run"
    run.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = shipped_nginx_conf(run, port, Settings.load().MAX_CONTENT_LENGTH)
    uwsgi_env = {**env, "KERNKOA_HOME": str(PROJECT_ROOT), "KERNKOA_RUN": str(run),
                 "KERNKOA_VENV": str(BIN.parent)}
    uwsgi = subprocess.Popen(
        [str(BIN / "uwsgi"), "--ini", str(PROJECT_ROOT / "kernkoa_uwsgi.ini"), *uwsgi_options],
        cwd=PROJECT_ROOT, env=uwsgi_env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    nginx = start_nginx(conf)
    base = f"http://127.0.0.1:{port}"
    workers: list[int] = []
    try:
        # The benchmarks' wait: until uWSGI answers through nginx with a 200.
        wait_until_served(base + "/_kernkoa/health", uwsgi, nginx)
        yield LiveServer(base, uwsgi, run / "kernkoa_uwsgi.log")
        workers = sorted(children(uwsgi.pid))
    finally:
        stop(nginx)
        stop(uwsgi, grace=30)  # die-on-term: SIGTERM stops master and workers
        with contextlib.suppress(ProcessLookupError):
            os.killpg(uwsgi.pid, signal.SIGKILL)
    assert wait_until_gone(workers), (run / "kernkoa_uwsgi.log").read_text()[-3000:]
