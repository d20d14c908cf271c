"""The embedded broker: kombu's filesystem transport, plus a record on disk of
every message a worker took and has not acknowledged.

kombu's filesystem transport deletes a message's file when a worker takes it;
until the acknowledgement the message lives only in that worker's memory, so
a worker that dies loses every task it was running (one per pool process).
Here the channel's QoS writes each delivered message to
``VAR/celery/unacked/<holder>/<delivery tag>.msg`` and deletes it on
acknowledgement (or when it puts the message back itself, on a rejection or
a graceful stop). ``<holder>`` names the worker process; its heartbeat
(:class:`FileLeases`, driven by :class:`kernel.tasks.leases.LeaseStep`) touches the
folder's ``lease`` file every ``WORKER_HEARTBEAT`` seconds. A sweep by any
worker moves the folder of a holder whose lease is older than
``WORKER_LEASE`` out of the way (one rename: one sweeper wins) and puts its
messages back at the front of their queues, or drops those whose task is
already done. A crash between kombu's read of the queue file and the write
of the record (a few instructions) still loses the message.

kombu writes a message file in place, so a consumer could take one that was
still empty (and its worker died of the ``JSONDecodeError``). Here every
message file is written under a name no consumer takes, then renamed to its
own (:meth:`Channel._put`): it appears whole. A consumer that still meets a
file it cannot read (written by another program, or a kombu elsewhere) never
fails on it (:meth:`Channel._get`): a young one is put back for a later try
(its writer may not be done), one older than :data:`UNREADABLE_GRACE` seconds
is moved to ``VAR/celery/rejected/`` with an error in the log, for an operator
to look at. Either way no message is lost.

A consumer takes a queue's files in the order of :func:`taking_order`: priority
first (9 highest, :mod:`kernel.tasks.priorities`), then arrival. The name says
both: ``<9 - priority>-<arrival, ns, 20 digits>_<uuid>.<queue>.msg``, so that a
plain sort of the names is the order. A message put back by a sweep arrives at
time 0: the front of its level. Files named by a kernel of before priorities
(kombu's ``<ms>_<uuid>.<queue>.msg``) are taken at the default level, before
its newer files, in their old order.
"""

from __future__ import annotations

import json
import logging
import os
import time
import typing as t
import uuid
from pathlib import Path
from queue import Empty

from celery import Celery
from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.transport import virtual
from kombu.utils.json import dumps
from kombu.utils.json import loads

from .leases import Waiting
from .leases import WorkerRecord
from .leases import finished
from .leases import holder_name
from .priorities import DEFAULT_PRIORITY
from .priorities import HIGHEST
from .priorities import priority_of

log = logging.getLogger("kernkoa.worker")

#: What ``broker_transport`` names for the embedded broker.
TRANSPORT = f"{__name__}:Transport"

#: The file a holder's heartbeat touches, in its folder under ``unacked/``.
LEASE_FILE = "lease"

#: Suffix of a dead holder's folder while a sweep empties it.
SWEEPING = ".sweeping"

#: Seconds a message file that cannot be read is left to its writer, before
#: it is moved out of the queue.
UNREADABLE_GRACE = 10.0


#: Width of the arrival time in a message file's name (nanoseconds).
ARRIVAL_DIGITS = 20


def message_file_name(queue: str, payload: t.Any, arrival: int) -> str:
    """The file name of ``payload`` queued on ``queue`` at ``arrival`` (ns)."""
    return (f"{HIGHEST - priority_of(payload)}-{arrival:0{ARRIVAL_DIGITS}d}_{uuid.uuid4()}"
            f".{queue}.msg")


def taking_order(name: str) -> tuple[int, int, str]:
    """The sort key of a message file's name: the highest priority first, then the
    oldest; a name of before priorities (no ``-``) at the default level, before
    the named ones, in name order (kombu's)."""
    rank, dash, _ = name.partition("_")[0].partition("-")
    if dash and len(rank) == 1 and rank.isdigit():
        return int(rank), 1, name
    return HIGHEST - DEFAULT_PRIORITY, 0, name


def _write_atomically(path: Path, data: str) -> None:
    draft = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    draft.write_text(data)
    draft.replace(path)


class QoS(virtual.QoS):
    """kombu's QoS of a virtual channel, keeping delivered messages on disk."""

    def _folder(self) -> Path:
        folder = Path(self.channel.transport_options["unacked_folder"]) / holder_name()
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _file(self, delivery_tag: str) -> Path:
        return self._folder() / f"{delivery_tag}.msg"

    def _drop(self, delivery_tag: str) -> None:
        self._file(delivery_tag).unlink(missing_ok=True)

    def append(self, message: t.Any, delivery_tag: str) -> None:
        """Record the delivered message, then hold it as kombu does."""
        delivery = message.delivery_info
        record = [message._raw, delivery["exchange"], delivery["routing_key"]]
        _write_atomically(self._file(delivery_tag), json.dumps(record))
        super().append(message, delivery_tag)  # type: ignore[no-untyped-call]

    def ack(self, delivery_tag: str) -> None:
        """Acknowledge, then forget the record."""
        super().ack(delivery_tag)  # type: ignore[no-untyped-call]
        self._drop(delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        """Reject (kombu puts it back in its queue if ``requeue``), then forget the record."""
        super().reject(delivery_tag, requeue=requeue)  # type: ignore[no-untyped-call]
        self._drop(delivery_tag)

    def restore_unacked(self) -> list[t.Any]:
        """Put every held message back in its queue (a graceful stop), then
        forget the records of those that went back."""
        tags = list(self._delivered)
        errors = super().restore_unacked()  # type: ignore[no-untyped-call]
        failed = {message.delivery_tag for _, message in errors}
        for tag in tags:
            if tag not in failed:
                self._drop(tag)
        return t.cast(list[t.Any], errors)


class Channel(filesystem.Channel):
    """kombu's filesystem channel with :class:`QoS`, and message files that
    appear whole (see module doc)."""

    QoS = QoS

    # kombu's two bases name the message argument differently.
    def _put(self, queue: str, payload: t.Any, **kwargs: t.Any) -> None:  # type: ignore[override]
        """kombu's put (the same JSON), under a name that sorts by priority, then
        arrival (:func:`message_file_name`), written under a draft name and
        renamed: a consumer never sees the file before it is whole."""
        name = message_file_name(queue, payload, time.time_ns())
        try:
            _write_atomically(Path(self.data_folder_out) / name, dumps(payload))
        except OSError as error:
            raise ChannelError(f"Cannot add file {name!r} to directory") from error

    def _get(self, queue: str, timeout: float | None = None) -> t.Any:
        """The next message of ``queue``: its file is taken by one rename into
        the ``processed`` folder (one consumer wins), read, then removed."""
        wanted = f"{queue}.msg"
        inbox = Path(self.data_folder_in)
        for name in sorted(os.listdir(inbox), key=taking_order):
            if name.partition(".")[2] != wanted:
                continue  # another queue's, or a draft
            taken = Path(self.processed_folder) / name
            try:
                os.rename(inbox / name, taken)
            except OSError:
                continue  # taken by another consumer meanwhile
            try:
                payload = loads(taken.read_bytes())
                if not isinstance(payload, dict):
                    raise ValueError("not a message")
            except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
                self._unreadable(inbox / name, taken, error)
                continue
            if not self.store_processed:
                taken.unlink()
            return payload
        raise Empty()  # no message now

    def _unreadable(self, path: Path, taken: Path, error: Exception) -> None:
        try:
            age = time.time() - taken.stat().st_mtime
        except FileNotFoundError:
            return
        if age < UNREADABLE_GRACE:
            os.rename(taken, path)  # its writer may still be at it: a later try
            return
        rejected = Path(self.transport_options["rejected_folder"])
        rejected.mkdir(parents=True, exist_ok=True)
        os.rename(taken, rejected / path.name)
        log.error("message file %s cannot be read (%s): moved to %s", path.name, error,
                  rejected)

    def restore_record(self, record: list[t.Any]) -> None:
        """Put a recorded message back at the front of its level of its queues
        (redelivered)."""
        payload, exchange, routing_key = record
        payload.setdefault("headers", {})["redelivered"] = True
        payload.setdefault("properties", {}).setdefault("delivery_info", {})["redelivered"] = True
        for queue in self._lookup(exchange, routing_key):  # type: ignore[no-untyped-call]
            name = message_file_name(queue, payload, 0)
            _write_atomically(Path(self.data_folder_out) / name, json.dumps(payload))


class Transport(filesystem.Transport):
    """kombu's filesystem transport with :class:`Channel`."""

    Channel = Channel


class FileLeases:
    """Leases, worker records and sweeps of the embedded broker (see module doc)."""

    def __init__(self, celery: Celery, root: Path, lease: float) -> None:
        self.celery = celery
        self.unacked = root / "unacked"
        self.queue = root / "queue"
        self.records = root / "workers"
        self.lease = lease

    def beat(self, record: WorkerRecord, held: t.Iterable[str]) -> None:
        """Touch this process's lease and write the worker's record."""
        folder = self.unacked / holder_name()
        folder.mkdir(parents=True, exist_ok=True)
        (folder / LEASE_FILE).touch()
        self.records.mkdir(parents=True, exist_ok=True)
        _write_atomically(self.records / f"{record.name}.json", json.dumps(record.__dict__))

    def _stale(self, path: Path) -> bool:
        try:
            return path.stat().st_mtime < time.time() - self.lease
        except FileNotFoundError:
            return False

    def sweep(self) -> list[str]:
        """Put back the messages of holders whose lease ran out; return their task ids."""
        requeued: list[str] = []
        mine = holder_name()
        for folder in sorted(self.unacked.glob("*")):
            if folder.name == mine or not folder.is_dir():
                continue
            if folder.name.endswith(SWEEPING):
                # A sweep that died midway: take it over once it is as old as a lease.
                if not self._stale(folder):
                    continue
            elif not self._stale(folder / LEASE_FILE if (folder / LEASE_FILE).exists()
                                 else folder):
                continue
            claimed = folder.with_name(f"{folder.name.removesuffix(SWEEPING)}{SWEEPING}")
            try:
                folder.rename(claimed)
                os.utime(claimed)
            except FileNotFoundError:
                continue  # another sweep took it
            requeued.extend(self._empty(claimed))
        for record in self.records.glob("*.json"):
            if self._stale(record):
                record.unlink(missing_ok=True)
        return requeued

    def _empty(self, folder: Path) -> list[str]:
        requeued = []
        with self.celery.connection_for_write() as connection:
            channel = connection.default_channel
            for path in sorted(folder.glob("*.msg")):
                record = json.loads(path.read_text())
                task_id = record[0].get("headers", {}).get("id")
                if finished(self.celery, task_id):
                    log.info("task %s: finished, its worker gone before acknowledging; "
                             "dropped", task_id)
                else:
                    channel.restore_record(record)
                    log.warning("task %s: its worker stopped renewing its lease; requeued",
                                task_id)
                    requeued.append(task_id)
                path.unlink()
        for leftover in folder.iterdir():
            leftover.unlink()
        folder.rmdir()
        return requeued

    def waiting(self, queue: str) -> Waiting:
        """How many tasks wait in ``queue``, and since when (file time) the oldest does."""
        times = []
        for entry in os.scandir(self.queue):
            if entry.name.endswith(f".{queue}.msg"):
                try:
                    times.append(entry.stat().st_mtime)
                except FileNotFoundError:
                    continue  # taken meanwhile
        return Waiting(len(times), min(times) if times else None)

    def workers(self) -> list[WorkerRecord]:
        """The records of the workers whose heartbeat is current."""
        found = []
        for path in sorted(self.records.glob("*.json")):
            if not self._stale(path):
                try:
                    found.append(WorkerRecord(**json.loads(path.read_text())))
                except (FileNotFoundError, ValueError):
                    continue  # pruned or being replaced
        return found
