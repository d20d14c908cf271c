"""What password hashes may cost a process: two at once, one a minute per password.

A Werkzeug scrypt hash takes a tenth of a second or more of CPU, and 32 MiB. So
that concurrent logins cannot take a server's memory (16 at once took a server
from 65 MB to 568 MB):

- :func:`hash_slot`: at most ``CONCURRENT_HASHES`` hashes run at once in a
  process; a further one waits up to ``HASH_WAIT`` seconds for a slot, then
  its request is refused with a 503 and ``Retry-After`` (the server is busy;
  nothing says this client is to blame, so not a 429);
- :class:`VerifiedPasswords`: a password that was just verified is
  remembered for ``REMEMBER_SECONDS``, so a client sending the same
  credentials with every request costs one hash a minute, not one a request.
  What is kept is an HMAC-SHA256 of the user name, the stored hash and the
  password under a random key made per process and never written anywhere:
  no password in clear, and digests that mean nothing outside this process.
  The stored hash is part of the message, so a changed password (or a user
  removed and added again) misses at once; scopes are read from the users
  file at every request, never remembered.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
import threading
import time
import typing as t
from collections import OrderedDict

from ..core.errors import PasswordChecksBusy

#: Password hashes one process runs at once (each scrypt hash holds 32 MiB).
CONCURRENT_HASHES = 2

#: Seconds a hash waits for a free slot before its request is refused (503).
HASH_WAIT = 5.0

#: Seconds a verified password is remembered.
REMEMBER_SECONDS = 60.0

#: Most verified passwords remembered at once (the oldest are forgotten first).
REMEMBER_MAX = 1024

_slots = threading.BoundedSemaphore(CONCURRENT_HASHES)


@contextlib.contextmanager
def hash_slot() -> t.Iterator[None]:
    """Hold one of the process's hash slots while the block runs.

    :raises PasswordChecksBusy: when no slot frees up within ``HASH_WAIT``.
    """
    if not _slots.acquire(timeout=HASH_WAIT):
        raise PasswordChecksBusy()
    try:
        yield
    finally:
        _slots.release()


class VerifiedPasswords:
    """Passwords verified lately, as keyed digests (see the module docstring)."""

    def __init__(self, seconds: float = REMEMBER_SECONDS, size: int = REMEMBER_MAX,
                 clock: t.Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.size = size
        self.clock = clock
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        #: Digest -> when it is forgotten, in the order they were verified.
        self._until: OrderedDict[bytes, float] = OrderedDict()

    def __len__(self) -> int:
        """How many verified passwords are remembered right now."""
        return len(self._until)

    def _digest(self, name: str, stored_hash: str, password: str) -> bytes:
        # A user name and a stored hash never hold a NUL: the password, last,
        # cannot make two different triples meet.
        message = "\0".join((name, stored_hash, password)).encode("utf-8", "surrogatepass")
        return hmac.digest(self._key, message, hashlib.sha256)

    def remembers(self, name: str, stored_hash: str, password: str) -> bool:
        """Whether ``password`` was verified against ``stored_hash`` lately."""
        digest = self._digest(name, stored_hash, password)
        with self._lock:
            until = self._until.get(digest)
            if until is None:
                return False
            if until > self.clock():
                return True
            del self._until[digest]
            return False

    def remember(self, name: str, stored_hash: str, password: str) -> None:
        """Note that ``password`` was just verified against ``stored_hash``."""
        digest = self._digest(name, stored_hash, password)
        with self._lock:
            self._until.pop(digest, None)
            while len(self._until) >= self.size:
                self._until.popitem(last=False)
            self._until[digest] = self.clock() + self.seconds
