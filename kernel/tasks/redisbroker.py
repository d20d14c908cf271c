"""kombu's Redis transport, with a fetch that loses nothing and a channel
that always finishes closing.

**Fetch.** kombu takes a message with BRPOP, which removes it from Redis as
the server sends it, and records it as unacknowledged only after reading the
reply: a worker killed in between lost it (celery/celery#1392; measured: one
task lost out of 150 with one SIGKILL under load). Here the message is moved
into an in-flight list of the taking process, and leaves that list in the same
transaction that records it as unacknowledged (see :class:`QoS`). Needs Redis
6.2 or later.

**Priorities.** Each queue has one list per priority level
(:mod:`kernel.tasks.priorities`: 0 to 9, 9 highest, level 0 the plain queue
key). A pop of several lists (BRPOP, BLMPOP) is the loss above; BLMOVE, which
moves atomically, blocks on one list only. So the take is a script,
:data:`FETCH_SCRIPT`: it moves the oldest message of the highest level that
holds one into the in-flight list, in one step, and replies with it. Only when
it finds every level empty does the worker block, with ``BLMOVE bell bell``
(a rotation: it waits until the queue's *bell* list holds a token, and takes
nothing); rung, it runs the script again at once, in the same turn of kombu's
event loop (a woken worker makes two round trips where a single-list ``BLMOVE``
made one). A producer pushes the message, then a
token onto the bell, in one pipeline (:meth:`Channel._put`); the script
deletes the bell when it finds every level empty, and trims it to one token
now and then (:data:`BELL_TRIM_EVERY`) so that a queue that never empties does
not grow it. The order matters, not a transaction: a script that runs between
the two pushes either takes the message, or ran before it arrived, and the
bell pushed after it wakes the waiting workers; a stale token costs one
spurious wake. A bell that never came (a producer whose connection broke
between its two commands, or a kernel of before priorities pushing into the
plain key during a rolling upgrade) costs latency, not the message: each
bell wait ends after the poll timeout (one second) and the script runs again.
A busy worker takes messages with the script alone, one round trip each as
with BLMOVE before.

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

import hashlib
import logging
import time
import typing as t
from queue import Empty

from kombu.transport import redis
from kombu.transport import virtual
from kombu.utils.json import dumps
from kombu.utils.json import loads
from redis.exceptions import NoScriptError

from .leases import HOLDER_PREFIX
from .leases import INFLIGHT_KEY
from .leases import holder_name
from .leases import inflight_key
from .priorities import BELL_TOKEN
from .priorities import DESCENDING
from .priorities import HIGHEST
from .priorities import LOWEST
from .priorities import bell_key
from .priorities import level_key
from .priorities import level_keys
from .priorities import move_back
from .priorities import priority_of

log = logging.getLogger("kernkoa.worker")

#: What ``broker_transport`` names for ``redis://`` and ``rediss://`` brokers.
TRANSPORT = f"{__name__}:Transport"

#: The transport option giving a holder's first lease, in seconds.
LEASE_OPTION = "kernkoa_lease"

#: Shortest bell wait when several queues take turns, in seconds.
SHORTEST_WAIT = 0.1

#: Takes one message for the worker: for each queue in turn (KEYS: its levels,
#: highest first and the plain key last, its in-flight list, its bell), the
#: oldest message of its highest non-empty level, moved into the in-flight list;
#: replies ``{queue's index, message}``. A queue found empty has its bell
#: deleted; every level empty replies nil. One EXISTS tells whether any level
#: above 0 holds a message, so a queue whose tasks have no priority costs one
#: LMOVE. ARGV: the number of levels, and "1" to trim the bell to one token.
FETCH_SCRIPT = """
local levels = tonumber(ARGV[1])
local per = levels + 2
local index = 0
for base = 0, #KEYS - per, per do
  local first = levels
  if redis.call('EXISTS', unpack(KEYS, base + 1, base + levels - 1)) > 0 then first = 1 end
  for i = base + first, base + levels do
    local message = redis.call('LMOVE', KEYS[i], KEYS[base + levels + 1], 'RIGHT', 'LEFT')
    if message then
      if ARGV[2] == '1' then redis.call('LTRIM', KEYS[base + per], 0, 0) end
      return {index, message}
    end
  end
  redis.call('DEL', KEYS[base + per])
  index = index + 1
end
return false
"""

#: The SHA1 Redis knows :data:`FETCH_SCRIPT` by.
FETCH_SHA = hashlib.sha1(FETCH_SCRIPT.encode()).hexdigest()

#: Every how many messages a channel takes it trims the bell of their queue.
BELL_TRIM_EVERY = 64


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
    """kombu's Redis channel, with a reliable fetch by priority and a close that
    never stops halfway (see the module doc)."""

    QoS = QoS

    @property
    def priority_steps(self) -> list[int]:
        """kombu's priority lists, one per level, always all of them: the fetch
        and the publish use every level, so kombu's size and purge must too
        (its own order is 0 first; the fetch here takes the highest first)."""
        return list(range(LOWEST, HIGHEST + 1))

    @priority_steps.setter
    def priority_steps(self, steps: t.Any) -> None:
        # kombu sets it from the transport options: fewer lists there would
        # make the queue's length and purge miss messages.
        if list(steps) != self.priority_steps:
            log.warning("ignoring the priority_steps transport option: KernKoa's Redis "
                        "broker keeps one list per priority, %d to %d", LOWEST, HIGHEST)

    #: The in-flight list and raw message of the fetch being delivered.
    fetched: tuple[str, bytes] | None = None
    #: The redis-py client of :attr:`pool`, made once (see :meth:`_create_client`).
    _pool_client: t.Any = None
    #: The queues of the fetch script in flight.
    _fetching: list[str] | None = None
    #: The queue whose bell is being waited on.
    _ringing: str | None = None
    #: Whether the last fetch found every queue empty (the next one waits on a bell).
    _quiet = False
    _taken = 0
    _recovered = False

    def _create_client(self, asynchronous: bool = False) -> t.Any:
        """A redis-py client of the channel's pool, made once and kept (kombu
        makes one per publish, acknowledgement and unacknowledged record, each
        costing more than the command: redis-py fills a table of some hundred
        reply callbacks), anew when kombu replaces the pool. It holds no
        connection of its own: each command takes one from the pool."""
        if asynchronous:  # the channel's own, kept by kombu (``self.client``)
            return super()._create_client(asynchronous=True)  # type: ignore[no-untyped-call]
        pool = self.pool
        client = self._pool_client
        if client is None or client.connection_pool is not pool:
            client = self._pool_client = super()._create_client()  # type: ignore[no-untyped-call]
        return client

    def _q_for_pri(self, queue: str, pri: int) -> str:
        return level_key(queue, pri)

    def _brpop_start(self, timeout: float | None = None) -> None:
        """Send the next fetch: the script that takes a message, or, when the
        last one found nothing, a wait on a queue's bell.

        The script moves the message into this process's in-flight list, where
        it stays until :meth:`QoS.append` records it as unacknowledged; the lists
        of a process that is gone are put back by :mod:`kernel.tasks.leases`, and
        this process puts back its own (fetches whose reply a lost connection
        swallowed) on its first fetch after connecting. A bell wait takes
        nothing. Several queues' bells take turns, each waited on for a share
        of the poll timeout.
        """
        if self.global_keyprefix:  # no KernKoa setting sets one: kombu's own fetch
            super()._brpop_start(timeout)  # type: ignore[no-untyped-call]
            return
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return
        holder = holder_name()
        if not self._recovered:
            self._recover(holder)
        self._in_poll = self.client.connection
        self._brpop_sent_at = time.monotonic()  # type: ignore[assignment]
        if self._quiet:
            wait = timeout if timeout is not None else self.brpop_timeout
            if wait and len(queues) > 1:
                wait = max(SHORTEST_WAIT, wait / len(queues))
            self._ringing = queues[0]
            bell = bell_key(queues[0])
            self.client.connection.send_command("BLMOVE", bell, bell, "RIGHT", "LEFT", wait or 0)
            return
        self._send_fetch(queues, holder)

    def _send_fetch(self, queues: list[str], holder: str) -> None:
        # The fetch script over ``queues``' levels, into ``holder``'s in-flight lists.
        keys: list[str] = []
        for queue in queues:
            keys += [*level_keys(queue), inflight_key(holder, queue), bell_key(queue)]
        trim = "1" if self._taken % BELL_TRIM_EVERY == 0 else "0"
        self._fetching = queues
        self.client.connection.send_command("EVALSHA", FETCH_SHA, len(keys), *keys,
                                            len(DESCENDING), trim)

    def _recover(self, holder: str) -> None:
        lease = int(self.connection.client.transport_options.get(LEASE_OPTION, 30))
        with self.conn_or_acquire() as client:
            client.set(HOLDER_PREFIX + holder, "", ex=max(1, lease), nx=True)
            client.script_load(FETCH_SCRIPT)
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
        if self._fetching is None and self._ringing is None:
            return t.cast(bool, super()._brpop_read(**options))  # type: ignore[no-untyped-call]
        try:
            if self._ringing is not None:
                return self._read_bell(**options)
            return self._read_fetch(**options)
        finally:
            self._in_poll = None  # type: ignore[assignment]
            self._flush_brpop_reauth()  # type: ignore[no-untyped-call]

    def _reply(self, command: str, **options: t.Any) -> t.Any:
        try:
            return self.client.parse_response(self.client.connection, command, **options)
        except self.connection_errors:
            # The next fetch reconnects (and puts back what this one took).
            self.client.connection.disconnect()
            self._recovered = False
            raise

    def _read_bell(self, **options: t.Any) -> bool:
        queue, self._ringing = t.cast(str, self._ringing), None
        rung = self._reply("BLMOVE", **options)
        self._quiet = False
        self._queue_cycle.rotate(queue)
        if rung is None:
            # Timed out: the script runs at the next turn of the event loop,
            # then the next queue's bell waits.
            raise Empty()
        # Rung: the script runs now, not at the event loop's next turn, which
        # would leave the message waiting for a whole turn of the loop (polls,
        # timers) on top of the script's round trip.
        self._send_fetch(self._queue_cycle.consume(len(self.active_queues)), holder_name())
        return self._read_fetch(**options)

    def _read_fetch(self, **options: t.Any) -> bool:
        queues, self._fetching = t.cast(list[str], self._fetching), None
        try:
            reply = self._reply("EVALSHA", **options)
        except NoScriptError:  # a Redis restarted or flushed: the next fetch runs it
            with self.conn_or_acquire() as client:
                client.script_load(FETCH_SCRIPT)
            raise Empty() from None
        if reply is None:
            self._quiet = True
            raise Empty()
        index, raw = reply
        queue = queues[int(index)]
        self._taken += 1
        # The next fetch tries the next queue first.
        self._queue_cycle.rotate(queue)
        self.fetched = (inflight_key(holder_name(), queue), raw)
        try:
            self.connection._deliver(loads(raw.decode()), queue)
        finally:
            unrecorded, self.fetched = self.fetched, None
        if unrecorded is not None:  # delivered without an acknowledgement to wait for
            with self.conn_or_acquire() as client:
                client.lrem(unrecorded[0], 1, unrecorded[1])
        return True

    def _put(self, queue: str, message: t.Any, **kwargs: t.Any) -> None:
        """Push ``message`` onto its priority level of ``queue``, then ring the
        queue's bell, in one pipeline (in this order: see the module doc)."""
        key = level_key(queue, priority_of(message))
        bell = bell_key(queue)
        payload = dumps(message)
        expires = self._expires.get(queue) if self._expires else None
        batch = kwargs.pop("_publish_batch", None)
        if batch is not None:
            batch.add("lpush", key, payload)
            batch.add("lpush", bell, BELL_TOKEN)
            for level_list in ([*level_keys(queue), bell] if expires else ()):
                batch.add("pexpire", level_list, expires)
            return
        with self.conn_or_acquire() as client:
            pipe = client.pipeline(transaction=False)
            pipe.lpush(key, payload).lpush(bell, BELL_TOKEN)
            for level_list in ([*level_keys(queue), bell] if expires else ()):
                pipe.pexpire(level_list, expires)
            pipe.execute()

    def _do_restore_message(self, payload: t.Any, exchange: str, routing_key: str,
                            pipe: t.Any, leftmost: bool = False) -> None:
        """Put a message back (kombu's restore of an unacknowledged one, in the
        caller's transaction) at the front of its level, and ring the bell."""
        try:
            payload["headers"]["redelivered"] = True
            payload["properties"]["delivery_info"]["redelivered"] = True
        except (KeyError, TypeError):
            pass
        push = pipe.lpush if leftmost else pipe.rpush
        for queue in self._lookup(exchange, routing_key):  # type: ignore[no-untyped-call]
            push(level_key(queue, priority_of(payload)), dumps(payload))
            pipe.lpush(bell_key(queue), BELL_TOKEN)

    def _get(self, queue: str, timeout: float | None = None) -> t.Any:
        """kombu's synchronous get (``basic_get``), highest level first."""
        with self.conn_or_acquire() as client:
            for key in level_keys(queue):
                item = client.rpop(key)
                if item:
                    return loads(item.decode())
        raise Empty()

    def _delete(self, queue: str, *args: t.Any, **kwargs: t.Any) -> None:
        """kombu's delete of every level of ``queue``, and of its bell."""
        super()._delete(queue, *args, **kwargs)  # type: ignore[no-untyped-call]
        with self.conn_or_acquire(client=kwargs.get("client")) as client:
            client.delete(bell_key(queue))

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
