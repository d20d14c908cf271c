"""A throw-away ``redis-server`` for a test: the benchmarks' one, checked and with a client."""

from __future__ import annotations

import shutil
import threading
import typing as t
from pathlib import Path

import pytest

from bench import servers
from tests.support import real_parts


class RedisServer(servers.RedisServer):
    """A throw-away ``redis-server`` on a free 127.0.0.1 port, as the benchmarks start it.

    Its test must be marked ``redis``; where ``redis-server`` is missing, the test
    fails (``make test`` installs it).

    :param persistent: keep the data in an append-only file in ``folder``, so a
        restart (:meth:`stop`, then :meth:`start`) finds it again.
    """

    def __init__(self, folder: Path, persistent: bool = False) -> None:
        if shutil.which("redis-server") is None:
            pytest.fail("redis-server is missing: `make test` installs it")
        super().__init__(folder, persistent)

    def start(self, timeout: float = 10.0) -> None:
        """Start it and wait until it answers PING."""
        real_parts.require("redis")
        super().start(timeout)

    def client(self) -> t.Any:
        """A redis-py client of it."""
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2,
                           socket_connect_timeout=2)


#: What the test sends Redis to mark the end of what it watched.
SENTINEL = "kernkoa-test-sentinel"


class Monitor:
    """The commands Redis runs while it is watched (``MONITOR``), up to a sentinel.

    ``commands`` grows while it watches; a Lua script's own commands follow it.
    """

    def __init__(self, server: RedisServer) -> None:
        # Connected before the watch, so its handshake is not among the commands.
        self._sentinel = server.client()
        self._sentinel.ping()
        self.commands: list[str] = []
        import redis

        # No read timeout: a watch may see nothing for a while.
        self._monitor = redis.Redis(host="127.0.0.1", port=server.port,
                                    socket_connect_timeout=2).monitor()
        self._monitor.__enter__()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while True:
            command = self._monitor.next_command()["command"]
            if SENTINEL in command:
                return
            self.commands.append(command)

    def stop(self) -> list[str]:
        """Send the sentinel; every command seen before it."""
        self._sentinel.echo(SENTINEL)
        self._thread.join(timeout=10)
        self._monitor.__exit__()
        return self.commands
