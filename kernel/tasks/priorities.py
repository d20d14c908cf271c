"""Message priorities on the Redis and embedded brokers: 0 (lowest) to 9
(highest), the order RabbitMQ gives a queue declared with ``x-max-priority``.

A message's level is its ``priority`` property (which ``@task_options(priority=...)``
sets), clamped to 0..9 as RabbitMQ and kombu clamp it; a message without one,
or with one that is not a number, is at :data:`DEFAULT_PRIORITY`, 0, the level
RabbitMQ gives a message without priority (and kombu's default).

On Redis each level of a queue is a list, named as kombu names its priority
lists: level 0 is the plain queue key, so the messages a kernel without
priorities queued there are still taken, at level 0, without a migration; level
``n`` is ``queue + "\\x06\\x16" + n``. A worker blocks on one list only
(``BLMOVE``), so a producer also rings the queue's *bell*, a list of tokens
(:func:`bell_key`), after each message it pushes: see
:mod:`kernel.tasks.redisbroker`.
"""

from __future__ import annotations

import json
import typing as t

#: The lowest and the highest priority.
LOWEST = 0
HIGHEST = 9

#: The level of a message without a readable priority.
DEFAULT_PRIORITY = 0

#: Every level, highest first: the order a worker takes them in.
DESCENDING = tuple(range(HIGHEST, LOWEST - 1, -1))

#: kombu's separator between a queue's name and the level of its priority lists.
LEVEL_SEP = "\x06\x16"

#: ``BELL_PREFIX + queue``: the list a producer pushes :data:`BELL_TOKEN` onto after a
#: message, and a waiting worker blocks on.
BELL_PREFIX = "kernkoa-bell|"
#: What a trigger pushes onto the bell (any value would do: a worker only waits for one).
BELL_TOKEN = "1"


def priority_of(message: t.Any) -> int:
    """The level of the kombu ``message`` (a dict): its ``priority`` property,
    clamped to :data:`LOWEST`..:data:`HIGHEST`; :data:`DEFAULT_PRIORITY` when it has
    none or one that is no number (never an error: a message is never refused
    for its priority)."""
    try:
        value = int(message["properties"]["priority"])
    except (TypeError, ValueError, KeyError, OverflowError):
        return DEFAULT_PRIORITY
    return min(max(value, LOWEST), HIGHEST)


def level_key(queue: str, level: int) -> str:
    """The Redis list holding ``queue``'s messages of priority ``level``."""
    return f"{queue}{LEVEL_SEP}{level}" if level else queue


def level_keys(queue: str) -> list[str]:
    """``queue``'s lists, highest level first (the plain key last)."""
    return [level_key(queue, level) for level in DESCENDING]


def bell_key(queue: str) -> str:
    """The Redis list a producer rings after pushing a message to ``queue``."""
    return f"{BELL_PREFIX}{queue}"


def move_back(client: t.Any, key: str, queue: str) -> int:
    """Put every message of the in-flight list ``key`` back at the front of its
    level of ``queue`` and ring the queue's bell; return how many.

    Each message moves in one transaction that fails if the list changed since
    it was read (a concurrent sweep), and is then read again: none is lost or
    put back twice.
    """
    bell = bell_key(queue)

    def one(pipe: t.Any) -> int:
        raw = pipe.lindex(key, -1)
        if raw is None:
            return 0
        pipe.multi()
        pipe.rpop(key)
        pipe.rpush(level_key(queue, priority_of(_loads(raw))), raw)
        pipe.lpush(bell, BELL_TOKEN)
        return 1

    moved = 0
    while client.transaction(one, key, value_from_callable=True):
        moved += 1
    return moved


def _loads(raw: bytes | str) -> t.Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None  # unreadable: the default level; its consumer decides its fate
