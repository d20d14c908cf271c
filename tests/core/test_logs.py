"""Log lines: the request and task ids of the context on every record, text and JSON lines,
and the handler installed only where nothing configured logging."""

from __future__ import annotations

import io
import json
import logging
import typing as t
from pathlib import Path

import pytest

from kernel import create_app
from kernel.core.errors import SettingsError
from kernel.core.logs import REQUEST_ID
from kernel.core.logs import TASK_ID
from kernel.core.logs import JsonLineFormatter
from kernel.core.logs import KernKoaFileHandler
from kernel.core.logs import KernKoaLogHandler
from kernel.core.logs import TextFormatter
from kernel.core.logs import install_logging
from kernel.core.logs import log_to_file
from kernel.core.logs import make_handler


@pytest.fixture
def logged() -> t.Iterator[t.Callable[[str], tuple[logging.Logger, io.StringIO]]]:
    """A logger of its own writing through the kernel's handler in the format asked for."""
    made: list[tuple[logging.Logger, logging.Handler]] = []

    def make(log_format: str) -> tuple[logging.Logger, io.StringIO]:
        stream = io.StringIO()
        logger = logging.getLogger(f"test.logs.{len(made)}")
        logger.propagate = False
        logger.setLevel(logging.INFO)
        handler = make_handler(log_format, stream)
        logger.addHandler(handler)
        made.append((logger, handler))
        return logger, stream

    yield make
    for logger, handler in made:
        logger.removeHandler(handler)


def test_text_lines_carry_the_context_when_there_is_one(
        logged: t.Callable[[str], tuple[logging.Logger, io.StringIO]]) -> None:
    logger, stream = logged("text")
    logger.info("outside")
    token = REQUEST_ID.set("req-1")
    try:
        logger.info("inside %s", "a request")
        task = TASK_ID.set("task-9")
        try:
            logger.info("in its task")
        finally:
            TASK_ID.reset(task)
    finally:
        REQUEST_ID.reset(token)
    outside, inside, in_task = stream.getvalue().splitlines()
    assert outside.endswith(" INFO test.logs.0: outside")
    assert inside.endswith(" INFO test.logs.0: inside a request [request_id=req-1]")
    assert in_task.endswith(": in its task [request_id=req-1 task_id=task-9]")


def test_text_context_stays_on_the_first_line_of_a_traceback(
        logged: t.Callable[[str], tuple[logging.Logger, io.StringIO]]) -> None:
    logger, stream = logged("text")
    token = REQUEST_ID.set("req-2")
    try:
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")
    finally:
        REQUEST_ID.reset(token)
    first, *rest = stream.getvalue().splitlines()
    assert first.endswith("failed [request_id=req-2]")
    assert rest[-1] == "ValueError: boom"


def test_json_lines_are_one_object_each_whatever_the_message(
        logged: t.Callable[[str], tuple[logging.Logger, io.StringIO]]) -> None:
    logger, stream = logged("json")
    logger.info("outside")
    token = REQUEST_ID.set("req-3")
    try:
        logger.warning('two\nlines "quoted" \u00e9 \x1b[31m', extra={"route": "/a/b/C/m",
                                                                   "status": 200})
        try:
            raise KeyError("k")
        except KeyError:
            logger.exception("with a traceback")
    finally:
        REQUEST_ID.reset(token)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    outside, odd, failed = (json.loads(line) for line in lines)
    assert list(outside) == ["time", "level", "logger", "message"]
    assert outside["level"] == "INFO" and outside["logger"] == "test.logs.0"
    assert outside["time"].endswith("+00:00")
    assert odd["message"] == 'two\nlines "quoted" \u00e9 \x1b[31m'
    assert odd["request_id"] == "req-3" and odd["route"] == "/a/b/C/m" and odd["status"] == 200
    assert "task_id" not in odd
    assert lines[1].isascii()
    assert failed["level"] == "ERROR" and "KeyError: 'k'" in failed["exc_info"]


def test_a_value_given_in_extra_wins_over_the_context(
        logged: t.Callable[[str], tuple[logging.Logger, io.StringIO]]) -> None:
    logger, stream = logged("json")
    token = TASK_ID.set("from-context")
    try:
        logger.info("line", extra={"task_id": "given"})
    finally:
        TASK_ID.reset(token)
    assert json.loads(stream.getvalue())["task_id"] == "given"


def test_install_logging_only_where_nothing_configured_it() -> None:
    root = logging.getLogger("test.logs.fake-root")
    root.handlers.clear()
    try:
        assert install_logging("json", root)
        [handler] = root.handlers
        assert isinstance(handler, KernKoaLogHandler)
        assert isinstance(handler.formatter, JsonLineFormatter)
        assert root.level == logging.INFO
        # Installed again: the same handler, the new format.
        assert install_logging("text", root)
        assert root.handlers == [handler] and isinstance(handler.formatter, TextFormatter)
        # Someone else's handler: theirs to decide.
        foreign = logging.StreamHandler(io.StringIO())
        root.handlers[:] = [foreign]
        assert not install_logging("json", root)
        assert root.handlers == [foreign]
    finally:
        root.handlers.clear()


def test_log_to_file_moves_the_kernels_handler_keeping_its_format(tmp_path: Path) -> None:
    root = logging.getLogger("test.logs.file-root")
    root.handlers.clear()
    root.propagate = False
    path = tmp_path / "worker.log"
    try:
        install_logging("json", root)
        assert log_to_file(str(path), root)
        [handler] = root.handlers
        assert isinstance(handler, KernKoaFileHandler)
        # Still the kernel's: installed again, it keeps the file and takes the format.
        assert install_logging("json", root) and root.handlers == [handler]
        assert log_to_file(str(path), root) and root.handlers == [handler]
        token = REQUEST_ID.set("rid-file")
        try:
            root.info("to the file")
        finally:
            REQUEST_ID.reset(token)
        assert json.loads(path.read_text())["request_id"] == "rid-file"
        # Rotated away (logrotate's move): the next line opens the file again.
        path.rename(tmp_path / "worker.log.1")
        root.info("after rotation")
        assert json.loads(path.read_text())["message"] == "after rotation"
        # Someone else's handler: theirs to decide; an unopenable file is an error.
        handler.close()
        foreign = logging.StreamHandler(io.StringIO())
        root.handlers[:] = [foreign]
        assert not log_to_file(str(path), root) and root.handlers == [foreign]
        root.handlers.clear()
        install_logging("text", root)
        with pytest.raises(OSError):
            log_to_file(str(tmp_path / "missing" / "worker.log"), root)
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers.clear()


@pytest.mark.parametrize("value", ["xml", "", "JSON "])
def test_unknown_format_stops_the_app(value: str) -> None:
    with pytest.raises(SettingsError, match="LOG_FORMAT must be one of text, json"):
        create_app({"LOG_FORMAT": value})


def test_log_format_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KERNKOA_LOG_FORMAT", "yaml")
    with pytest.raises(SettingsError, match="'yaml'"):
        create_app()
