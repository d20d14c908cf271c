"""The embedded broker's message files: they appear whole, and a file a consumer
cannot read (still being written by another program, or garbage) never fails
the consumer and loses no message."""

from __future__ import annotations

import json
import os
import queue
import time
import typing as t
from pathlib import Path

import pytest
from kombu import Connection

from kernel.tasks import filebroker
from tests.support.processes import clean_environ
from tests.support.tasks import Stack
from tests.support.tasks import final
from tests.support.tasks import trigger
from tests.support.tasks import wait_for
from tests.support.tasks import wait_status
from tests.support.tasks import write_catalog


def _options(root: Path) -> dict[str, t.Any]:
    for name in ("queue", "processed", "control", "unacked", "rejected"):
        (root / name).mkdir(parents=True, exist_ok=True)
    return {"data_folder_in": str(root / "queue"), "data_folder_out": str(root / "queue"),
            "processed_folder": str(root / "processed"), "control_folder": str(root / "control"),
            "unacked_folder": str(root / "unacked"), "rejected_folder": str(root / "rejected"),
            "store_processed": False}


@pytest.fixture
def channel(tmp_path: Path) -> t.Iterator[t.Any]:
    with Connection(transport=filebroker.Transport,
                    transport_options=_options(tmp_path)) as connection:
        yield connection.channel()


def test_a_message_file_appears_under_its_name_only_when_whole(
        channel: t.Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inbox = tmp_path / "queue"
    seen: list[list[str]] = []
    real_write = Path.write_text

    def watched_write(path: Path, data: str, *args: t.Any, **kwargs: t.Any) -> int:
        seen.append(sorted(os.listdir(inbox)))  # what a consumer lists while it is written
        return real_write(path, data, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", watched_write)
    channel._put("celery", {"body": "x" * 100_000})
    monkeypatch.undo()
    assert seen == [[]]  # the message's own name did not exist yet
    (name,) = os.listdir(inbox)
    assert name.endswith(".celery.msg")
    assert channel._get("celery") == {"body": "x" * 100_000}


def test_a_consumer_meeting_a_still_empty_file_skips_it_and_gets_it_later(
        channel: t.Any, tmp_path: Path) -> None:
    # What kombu's own writer leaves for a moment: the file, still empty. Its
    # consumer raised JSONDecodeError, and the embedded worker died of it.
    early = tmp_path / "queue" / "0_early.celery.msg"
    early.touch()
    channel._put("celery", {"body": "second"})
    assert channel._get("celery") == {"body": "second"}
    with pytest.raises(queue.Empty):
        channel._get("celery")
    assert early.exists()  # put back for its writer to finish
    early.write_text(json.dumps({"body": "first"}))
    assert channel._get("celery") == {"body": "first"}
    assert os.listdir(tmp_path / "queue") == []


@pytest.mark.parametrize("content", [b"", b"{\"body\": ", b"\xff\xfe", b"[1, 2]"])
def test_a_file_unreadable_for_long_is_moved_out_of_the_queue(
        channel: t.Any, tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "queue" / "0_bad.celery.msg"
    bad.write_bytes(content)
    old = time.time() - filebroker.UNREADABLE_GRACE - 1
    os.utime(bad, (old, old))
    channel._put("celery", {"body": "good"})
    assert channel._get("celery") == {"body": "good"}
    with pytest.raises(queue.Empty):
        channel._get("celery")
    # Kept for an operator, out of every consumer's way.
    assert (tmp_path / "rejected" / bad.name).read_bytes() == content
    assert not bad.exists()


def test_the_embedded_worker_survives_an_empty_message_file_and_runs_it_once_whole(
        tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    var = tmp_path / "var"
    env = clean_environ(CATALOG=str(write_catalog(tmp_path / "catalog")), VAR=str(var))
    inbox = var / "celery" / "queue"
    try:
        server = stack.server(env)  # no worker yet: the message waits on disk
        first = trigger(server, "/jobs/jobs/count_celery", n=1, tag="late")
        (message,) = inbox.iterdir()
        whole = message.read_bytes()
        message.unlink()
        # The same message, as a slow writer leaves it for a moment: empty.
        stuck = inbox / f"0_{message.name.split('_', 1)[1]}"
        stuck.touch()
        worker = stack.worker(env, "--concurrency=1")
        second = trigger(server, "/jobs/jobs/count_celery", n=1, tag="on time")
        assert wait_status(server, second, final)["status"] == "SUCCESS"
        stuck.write_bytes(whole)  # the writer is done
        assert wait_status(server, first, final)["data"]["tag"] == "late"
        assert worker.process.poll() is None
        wait_for(lambda: not any(inbox.iterdir()), what="the queue to be empty")
    finally:
        stack.close()
