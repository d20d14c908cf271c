"""kombu's Redis transport, with a fetch that loses nothing and a channel
that always finishes closing.

**Fetch.** kombu takes a message with BRPOP, which removes it from Redis as
the server sends it, and records it as unacknowledged only after reading the
reply: a worker killed in between lost it (celery/celery#1392; measured: one
task lost out of 150 with one SIGKILL under load). Here the message is moved
with BLMOVE into an in-flight list of the taking process and leaves that list
in the same transaction that records it as unacknowledged (see
:meth:`Channel._brpop_start`). Needs Redis 6.2 or later.

**Close.** A worker holding a task lost its connection when Redis restarted and
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
Redis's unacked table, from which :mod:`kernel.tasks.leases` or the visibility
timeout requeues them), so the later ``close()`` finds it closed.
"""

from __future__ import annotations

import logging
import time
import typing as t
from queue import Empty

from kombu.transport import redis
from kombu.transport import virtual
from kombu.utils.json import dumps
from kombu.utils.json import loads

from .leases import HOLDER_PREFIX
from .leases import INFLIGHT_KEY
from .leases import holder_name
from .leases import inflight_key
from .leases import move_back

log = logging.getLogger("kernkoa.worker")

#: What ``broker_transport`` names for ``redis://`` and ``rediss://`` brokers.
TRANSPORT = f"{__name__}:Transport"

#: The transport option giving a holder's first lease, in seconds.
LEASE_OPTION = "kernkoa_lease"

#: Shortest wait of one fetch when several queues take turns, in seconds.
SHORTEST_WAIT = 0.1


class QoS(redis.QoS):
    """kombu's Redis QoS; recording a message as unacknowledged also takes it
    out of the in-flight list it was fetched into, in the same transaction."""

    def append(self, message: t.Any, delivery_tag: str) -> None:
        """Record ``message`` as unacknowledged (kombu's unacked table)."""
        channel = t.cast(Channel, self.channel)
        fetched, channel.fetched = channel.fetched, None
        if fetched is None:
            super().append(message, delivery_tag)  # type: ignore[no-untyped-call]
            return
        key, raw = fetched
        delivery = message.delivery_info
        record = dumps([message._raw, delivery["exchange"],
                        delivery["routing_key"]])
        with self.pipe_or_acquire() as pipe:
            pipe.zadd(self.unacked_index_key, {delivery_tag: time.time()}) \
                .hset(self.unacked_key, delivery_tag, record) \
                .lrem(key, 1, raw).execute()
        virtual.QoS.append(self, message, delivery_tag)  # type: ignore[no-untyped-call]


class Channel(redis.Channel):
    """kombu's Redis channel, with a reliable fetch and a close that never
    stops halfway (see the module doc)."""

    QoS = QoS

    #: The in-flight list and raw message of the fetch being delivered.
    fetched: tuple[str, bytes] | None = None
    _fetching: str | None = None
    _recovered = False

    def _brpop_start(self, timeout: float | None = None) -> None:
        """Fetch the next message with BLMOVE into this process's in-flight list.

        kombu's BRPOP takes the message out of Redis when it is sent to the
        worker; a worker killed before it read the reply lost the message
        (celery/celery#1392). BLMOVE leaves it in an in-flight list until
        :meth:`QoS.append` records it; the lists of a process that is gone
        are put back by :mod:`kernel.tasks.leases`, and this process puts back its
        own (fetches whose reply a lost connection swallowed) on its first
        fetch after connecting. BLMOVE takes one list: several queues take
        turns, each waited on for a share of the poll timeout.
        """
        if self.global_keyprefix:
            super()._brpop_start(timeout)  # type: ignore[no-untyped-call]
            return
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return
        holder = holder_name()
        if not self._recovered:
            self._recover(holder)
        wait = timeout if timeout is not None else self.brpop_timeout
        if wait and len(queues) > 1:
            wait = max(SHORTEST_WAIT, wait / len(queues))
        queue = queues[0]
        self._fetching = queue
        self._in_poll = self.client.connection
        self._brpop_sent_at = time.monotonic()  # type: ignore[assignment]
        self.client.connection.send_command(
            "BLMOVE", queue, inflight_key(holder, queue), "RIGHT", "LEFT", wait or 0)

    def _recover(self, holder: str) -> None:
        lease = int(self.connection.client.transport_options.get(LEASE_OPTION, 30))
        with self.conn_or_acquire() as client:
            client.set(HOLDER_PREFIX + holder, "", ex=max(1, lease), nx=True)
            for queue in self.active_queues:
                key = inflight_key(holder, queue)
                client.sadd(INFLIGHT_KEY, key)
                moved = move_back(client, key, queue)
                if moved:
                    log.warning("%d message(s) fetched from %s before the connection was "
                                "lost: requeued", moved, queue)
        self._recovered = True

    def _brpop_read(self, **options: t.Any) -> bool:
        """Read the reply of the fetch in flight; deliver its message."""
        if self._fetching is None:
            return t.cast(bool, super()._brpop_read(**options))  # type: ignore[no-untyped-call]
        queue, self._fetching = self._fetching, None
        try:
            try:
                raw = self.client.parse_response(self.client.connection, "BLMOVE", **options)
            except self.connection_errors:
                # The next fetch reconnects (and puts this one back).
                self.client.connection.disconnect()
                self._recovered = False
                raise
            # The next fetch tries the next queue first.
            self._queue_cycle.rotate(queue)
            if raw is None:
                raise Empty()
            self.fetched = (inflight_key(holder_name(), queue), raw)
            try:
                self.connection._deliver(loads(raw.decode()), queue)
            finally:
                unrecorded, self.fetched = self.fetched, None
            if unrecorded is not None:  # delivered without an acknowledgement to wait for
                with self.conn_or_acquire() as client:
                    client.lrem(unrecorded[0], 1, unrecorded[1])
            return True
        finally:
            self._in_poll = None  # type: ignore[assignment]
            self._flush_brpop_reauth()  # type: ignore[no-untyped-call]

    def close(self) -> None:
        """Read the pending fetch's reply if the connection allows, then close."""
        if self._in_poll:
            try:
                self._brpop_read()
            except Empty:
                pass
            except self.connection_errors as error:
                # _brpop_read has cleared _in_poll: the base close skips the read.
                log.warning("broker connection lost while closing a channel: %r", error)
        super().close()  # type: ignore[no-untyped-call]


class Transport(redis.Transport):
    """kombu's Redis transport with :class:`Channel`."""

    Channel = Channel
