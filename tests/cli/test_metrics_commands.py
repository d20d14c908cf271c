"""The commands' metrics: ``kernkoa worker --metrics-port N [--metrics-host H]`` (the
options taken out of Celery's, their defaults from the settings, clear refusals) and
``kernkoa serve``, whose start empties the web server's metrics folder."""

from __future__ import annotations

import socket
import subprocess
import typing as t
from pathlib import Path

import pytest

from kernel.cli.worker import metrics_options
from kernel.cli.worker import run_worker
from kernel.core.errors import MetricsError
from kernel.core.settings import PROJECT_ROOT
from kernel.core.settings import Settings
from tests.support.processes import BIN
from tests.support.processes import clean_environ
from tests.support.servers import LiveServer

SETTINGS = Settings.load()


@pytest.mark.parametrize("args, expected", [
    ([], ("127.0.0.1", None, [])),
    (["-Q", "a,b", "--metrics-port", "9100", "-c", "2"],
     ("127.0.0.1", 9100, ["-Q", "a,b", "-c", "2"])),
    (["--metrics-port=9100", "--metrics-host=0.0.0.0", "--loglevel=DEBUG"],
     ("0.0.0.0", 9100, ["--loglevel=DEBUG"])),
    (["--metrics-host", "::1", "--metrics-port", "1"], ("::1", 1, [])),
])
def test_the_metrics_options_are_taken_out_of_celerys(
        args: list[str], expected: tuple[str, int | None, list[str]]) -> None:
    assert metrics_options(args, SETTINGS) == expected


def test_the_settings_give_the_defaults() -> None:
    settings = Settings.load({"WORKER_METRICS_PORT": 9200, "WORKER_METRICS_HOST": "10.0.0.1"})
    assert metrics_options(["-c", "1"], settings) == ("10.0.0.1", 9200, ["-c", "1"])
    assert metrics_options(["--metrics-port", "9300"], settings)[1] == 9300


@pytest.mark.parametrize("args", [["--metrics-port"], ["--metrics-port", "-c", "2"],
                                  ["--metrics-port", "http"], ["--metrics-port=0"],
                                  ["--metrics-port", "70000"], ["--metrics-host="]])
def test_a_bad_metrics_option_is_refused(args: list[str]) -> None:
    with pytest.raises(MetricsError, match="--metrics-"):
        metrics_options(args, SETTINGS)


def test_the_worker_command_refuses_a_bad_port_before_starting(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert run_worker(["--metrics-port", "nine"]) == 2
    assert "kernkoa worker: --metrics-port: 'nine' is not a port number" in capsys.readouterr().err


def test_a_port_in_use_stops_the_worker_with_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([str(BIN / "kernkoa"), "worker", "--metrics-port", str(port)],
                                cwd=PROJECT_ROOT, env=clean_environ(VAR=str(tmp_path)),
                                capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"cannot serve metrics on 127.0.0.1:{port}" in result.stderr


def test_serve_empties_the_metrics_folder_when_it_starts(
        serve: t.Callable[..., LiveServer], tmp_path: Path) -> None:
    stale = tmp_path / "var" / "metrics" / "web" / "counter_999999.db"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"left by an earlier start")
    server = serve(METRICS="true", VAR=str(tmp_path / "var"))
    assert not stale.exists()
    status, headers, body = server.request("/_kernkoa/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=")
    counted = 'kernkoa_http_requests_total{method="GET",route="/index/index/index",status="200"}'
    assert counted.encode() in body  # the fixture's wait for "/" counts too
