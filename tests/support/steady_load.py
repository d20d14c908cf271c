"""Steady client load on a server over loopback, in threads, for the serving tests.

Each client asks for one path in a loop over a kept-alive connection and notes when
every answer came and what went wrong, so a test can tell whether the server kept
answering (the longest stretch with no answer) without asserting a timing of its own.
"""

from __future__ import annotations

import http.client
import threading
import time
import types


class SteadyLoad:
    """``clients`` threads asking ``path`` of ``127.0.0.1:port`` until the block ends.

    A safety ``limit`` (seconds) ends the load if a test forgets to; answers other
    than 200 and broken connections are kept in ``failures``.
    """

    def __init__(self, port: int, path: str, clients: int = 4, limit: float = 120.0) -> None:
        self.port = port
        self.path = path
        self.clients = clients
        self.limit = limit
        #: ``time.monotonic()`` of every 200 answer, in no particular order.
        self.answers: list[float] = []
        #: What went wrong: a status other than 200, or the exception's repr.
        self.failures: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, daemon=True)
                         for _ in range(clients)]
        self._started = 0.0
        self._stopped = 0.0

    def __enter__(self) -> SteadyLoad:
        self._started = time.monotonic()
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: types.TracebackType | None) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)
        self._stopped = time.monotonic()

    def _client(self) -> None:
        """One client: requests in a loop, a new connection after a broken one."""
        deadline = time.monotonic() + self.limit
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                connection.request("GET", self.path)
                response = connection.getresponse()
                response.read()
            except (OSError, http.client.HTTPException) as error:
                connection.close()
                with self._lock:
                    self.failures.append(repr(error))
                continue
            with self._lock:
                if response.status == 200:
                    self.answers.append(time.monotonic())
                else:
                    self.failures.append(f"status {response.status}")
        connection.close()

    def count(self) -> int:
        """How many 200 answers so far."""
        with self._lock:
            return len(self.answers)

    def wait_for(self, answers: int, timeout: float = 60.0) -> None:
        """Return once ``answers`` 200 answers came in; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self.count() < answers:
            assert time.monotonic() < deadline, (
                f"{self.count()} of {answers} answers; failures: {self.failures[:5]}")
            time.sleep(0.05)

    def longest_gap(self) -> float:
        """The longest stretch with no answer, from the start to the end of the load."""
        with self._lock:
            moments = sorted([self._started, *self.answers, self._stopped or time.monotonic()])
        return max(later - earlier for earlier, later in zip(moments, moments[1:], strict=False))
