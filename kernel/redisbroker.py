"""kombu's Redis transport, with a channel that always finishes closing.

Why: a worker holding a task lost its connection when Redis restarted and
died with ``Unrecoverable error: AttributeError("'NoneType' object has no
attribute 'hostname'")``. Three pieces meet:

1. kombu's Redis ``Channel.close`` first reads the reply of the ``BRPOP`` it
   has in flight (kombu PR #1733, so that a message popped at that moment is
   not lost). With the server gone that read raises a connection error, and
   ``close`` stops there: the channel is left neither closed nor usable.
2. Celery's recovery (``Consumer.on_connection_error_after_connected``) calls
   ``connection.collect()``, which swallows that error and then detaches the
   transport from the connection (``transport.client = None``), and since
   Celery PR #10242 (GH-9705) calls ``connection.close()`` on the same
   connection right after.
3. That second close closes the half-closed default channel again; its QoS
   restores the unacknowledged messages through a new connection pool, whose
   parameters are read from ``transport.client``: ``None.hostname``. An
   ``AttributeError`` is no connection error, so Celery's restart loop does
   not catch it and the worker exits.

It only happens with a task in flight (an unacknowledged message) while the
channel waits in ``BRPOP`` (a free pool slot), which is the usual state of a
lightly loaded worker. The kombu issue of the same shape is celery/kombu#970
(restore of unacknowledged messages at close touching a connection that is
gone); no upstream report of this combination was found.

The workaround is at the first piece: a failed read of the pending reply ends
the read, not the close. The reply is lost with the connection either way;
the channel then closes for good (the restore of its unacknowledged messages
fails with a connection error, which every caller ignores, and they stay in
Redis's unacked table, from which :mod:`kernel.leases` or the visibility
timeout requeues them), so the later ``close()`` finds it closed.
"""

from __future__ import annotations

import logging
from queue import Empty

from kombu.transport import redis

log = logging.getLogger("kernkoa.worker")

#: What ``broker_transport`` names for ``redis://`` and ``rediss://`` brokers.
TRANSPORT = f"{__name__}:Transport"


class Channel(redis.Channel):
    """kombu's Redis channel; closing it never stops halfway (see module doc)."""

    def close(self) -> None:
        """Read the pending ``BRPOP`` reply if the connection allows, then close."""
        if self._in_poll:
            try:
                self._brpop_read()  # type: ignore[no-untyped-call]
            except Empty:
                pass
            except self.connection_errors as error:
                # _brpop_read has cleared _in_poll: the base close skips the read.
                log.warning("broker connection lost while closing a channel: %r", error)
        super().close()  # type: ignore[no-untyped-call]


class Transport(redis.Transport):
    """kombu's Redis transport with :class:`Channel`."""

    Channel = Channel
