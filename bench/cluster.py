"""Several KernKoa nodes, each installed by ``setup.sh``, behind one nginx balancer.

A node is what one machine of a larger deployment runs: ``setup.sh --no-systemd``
into its own prefix (its own copy of the code and of the catalog under
``PREFIX/catalog``, its own uWSGI master, its own nginx, its own Celery worker,
whose node name ``kernkoa-<pid>@<host>`` is its own). Every node gets the same
broker (one ``redis-server``) and the same secret key (``KERNKOA_SECRETKEY``),
which is all they share. One more nginx balances over the nodes' ports with an
``upstream`` block, as a load balancer in front of several machines would.

The scale-out benchmark (:mod:`bench.scaleout`) and the scale-out test
(``tests/deploy/test_scaleout.py``) both start their nodes here.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import typing as t
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .servers import ROOT
from .servers import RedisServer
from .servers import free_port
from .servers import nginx_conf
from .servers import start_nginx
from .servers import stop
from .servers import wait_for_http

#: A page of the shipped catalog: a node is up when it answers it.
HELLO = "/fasthelloworld/fastHelloClass/fastHelloWorld"

#: Seconds ``setup.sh --stop`` waits for a process before SIGKILL: a worker
#: finishing its running tasks (Celery's warm shutdown) needs them.
STOP_GRACE = 30


@dataclass
class Node:
    """One install made by ``setup.sh`` on a port of 127.0.0.1."""

    name: str
    prefix: Path
    port: int

    @property
    def base(self) -> str:
        """The node's own nginx, bypassing the balancer."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def catalog(self) -> Path:
        """The node's copy of the catalog."""
        return self.prefix / "catalog"

    def setup(self, *args: str, env: dict[str, str] | None = None) -> str:
        """Run ``setup.sh --prefix PREFIX ARGS`` with ``env`` added; its output.

        The caller's ``KERNKOA_*`` variables are left out: a node is configured by
        its options and its env file only.
        """
        environ = {k: v for k, v in os.environ.items() if not k.startswith("KERNKOA_")}
        environ.update({"KERNKOA_STOP_GRACE": str(STOP_GRACE), **(env or {})})
        done = subprocess.run(["bash", str(ROOT / "setup.sh"), "--prefix", str(self.prefix),
                               *args], capture_output=True, text=True, env=environ,
                              timeout=900, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"setup.sh {' '.join(args)} for {self.name} failed:\n"
                               f"{done.stdout}{done.stderr}")
        return done.stdout

    def install(self, broker: str, secret: str, processes: int) -> None:
        """Install and start the node; return when it answers through its nginx."""
        self.setup("--port", str(self.port), "--no-systemd", "--broker", broker,
                   "--processes", str(processes), env={"KERNKOA_SECRETKEY": secret})
        wait_for_http(self.base + HELLO, timeout=120)

    def stop(self) -> None:
        """Stop its nginx, uWSGI and worker (``setup.sh --stop``)."""
        if (self.prefix / "etc/kernkoa.env").exists():
            self.setup("--stop")

    def pid(self, name: str) -> int | None:
        """The pid in ``var/<name>.pid`` (``kernkoa_uwsgi``, ``worker``, ``nginx``), if any."""
        try:
            return int((self.prefix / "var" / f"{name}.pid").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def deploy(self, relative: str, text: str) -> None:
        """Write one catalog file the way a deploy tool does: whole, then renamed into place."""
        path = self.catalog / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.new")
        draft.write_text(text)
        draft.replace(path)


def balancer_conf(run: Path, port: int, nodes: t.Sequence[Node]) -> Path:
    """An nginx configuration balancing over ``nodes``' ports; its path.

    Kept-alive connections to the nodes; a node that refuses or fails a
    connection, or answers 502/503 (a node going down), is skipped for the next
    one; nginx never sends a POST twice once it reached a node; the ``Host``
    the client sent passed on, so the URLs a node builds lead back to the
    balancer. Not buffered, so long polls and event streams flow through.
    """
    servers = "".join(f"        server 127.0.0.1:{node.port} max_fails=1 fail_timeout=5s;\n"
                      for node in nodes)
    return nginx_conf(run, "balancer", f"""    access_log off;
    client_max_body_size 0;
    upstream kernkoa_nodes {{
{servers}        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        keepalive_requests 100000;
        location / {{
            proxy_pass http://kernkoa_nodes;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_next_upstream error timeout http_502 http_503;
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 90s;
        }}
    }}
""", connections=4096)


class Balancer:
    """nginx balancing over some nodes, on a free port, until :meth:`stop`."""

    def __init__(self, run: Path, nodes: t.Sequence[Node]) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.nodes = list(nodes)
        run.mkdir(parents=True, exist_ok=True)
        run = run.resolve()
        conf = balancer_conf(run, self.port, nodes)
        self.process = start_nginx(conf)
        try:
            wait_for_http(self.base + HELLO, self.process)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop nginx (and its workers)."""
        stop(self.process)


@dataclass
class Cluster:
    """The nodes, the Redis they share, and a balancer over all of them."""

    nodes: list[Node]
    redis: RedisServer
    balancer: Balancer
    #: The secret key every node was installed with.
    secret: str


@contextlib.contextmanager
def cluster(work: Path, count: int = 2, processes: int = 2,
            redis_factory: t.Callable[[Path], RedisServer] = RedisServer) -> t.Iterator[Cluster]:
    """``count`` nodes installed side by side (``node-a``, ``node-b``...) on one Redis,
    behind one balancer; everything stopped on the way out.

    ``work`` must be short: the uWSGI socket's path inside a node's prefix has
    102 bytes at most.
    """
    if shutil.which("nginx") is None:
        raise RuntimeError("nginx is not installed")
    redis = redis_factory(work / "redis")
    redis.start()
    # One key for all, generated like the one docs/operations.md tells users to make.
    secret = secrets.token_hex(32)
    nodes = [Node(f"node-{chr(ord('a') + n)}", work / chr(ord("a") + n), free_port())
             for n in range(count)]
    balancer: Balancer | None = None
    try:
        # setup.sh copies the code and builds a virtualenv: the nodes in parallel.
        with ThreadPoolExecutor(count) as pool:
            for done in [pool.submit(node.install, redis.url, secret, processes)
                         for node in nodes]:
                done.result()
        balancer = Balancer(work / "balancer", nodes)
        yield Cluster(nodes, redis, balancer, secret)
    finally:
        if balancer is not None:
            balancer.stop()
        with ThreadPoolExecutor(count) as pool:
            for done in [pool.submit(node.stop) for node in nodes]:
                with contextlib.suppress(RuntimeError):
                    done.result()
        redis.stop()
