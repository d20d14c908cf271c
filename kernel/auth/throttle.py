"""Failed logins counted per client: past a few in a short window, the client waits.

A client is its address (:func:`client_key`); an IPv6 client is its ``/64``,
the block one subscriber usually holds, so walking through the addresses of
one block does not buy fresh attempts. Memory is bounded: at most
``max_clients`` clients are tracked, each with its last ``limit`` failure
times; past that bound the client whose last failure is oldest is forgotten
first (an attacker with that many addresses gains fresh attempts for the
forgotten ones, never unbounded memory).
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
import typing as t
from collections import OrderedDict

#: Failures within WINDOW seconds after which a client is refused (429).
MAX_FAILURES = 5

#: Seconds a failure counts.
WINDOW = 60.0

#: Most clients tracked at once (about 300 bytes each).
MAX_CLIENTS = 10_000

#: Prefix length an IPv6 client is counted by.
IPV6_PREFIX = 64


def client_key(address: str | None) -> str:
    """The key failures of the client at ``address`` are counted under (``""``
    for no address, or one that is none)."""
    if not address:
        return ""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        # Not an address (junk a proxy passed on): all such share one key, so
        # they can neither grow the table nor buy fresh attempts.
        return ""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_PREFIX), strict=False))
    return str(ip)


class FailureThrottle:
    """Counts failures per client key; says how long a client must wait.

    Thread-safe; one per app (so per process).
    """

    def __init__(self, limit: int = MAX_FAILURES, window: float = WINDOW,
                 max_clients: int = MAX_CLIENTS,
                 clock: t.Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self.max_clients = max_clients
        self.clock = clock
        self._lock = threading.Lock()
        #: Client key -> its last ``limit`` failure times, oldest first; the
        #: clients ordered by their last failure, oldest first.
        self._failures: OrderedDict[str, tuple[float, ...]] = OrderedDict()

    def __len__(self) -> int:
        """How many clients are tracked right now."""
        return len(self._failures)

    def retry_after(self, client: str) -> int | None:
        """Whole seconds ``client`` must wait before its next try, or ``None``
        when it may try now."""
        with self._lock:
            times = self._failures.get(client)
            if times is None or len(times) < self.limit:
                return None
            wait = times[0] + self.window - self.clock()
            return math.ceil(wait) if wait > 0 else None

    def failed(self, client: str) -> None:
        """Count one failure of ``client``."""
        with self._lock:
            now = self.clock()
            times = self._failures.get(client)
            if times is None:
                self._make_room(now)
                times = ()
            else:
                self._failures.move_to_end(client)
            self._failures[client] = (*times, now)[-self.limit:]

    def _make_room(self, now: float) -> None:
        """Forget clients whose failures all expired, then the oldest ones while
        there is no room for one more (the oldest last failure comes first)."""
        failures = self._failures
        while failures:
            oldest_last_failure = next(iter(failures.values()))[-1]
            if len(failures) < self.max_clients and oldest_last_failure > now - self.window:
                return
            failures.popitem(last=False)
