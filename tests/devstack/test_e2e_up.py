"""`instropitch up` ended by a signal stops everything it started; a start after a crash
stops what the crashed one left running (real PostgreSQL, S3 server, MLflow, Airflow).

Each `up` runs in a child process with its own INSTROPITCH_HOME (shared by the tests here,
so PostgreSQL is set up once). Before the signal, the test notes every process `up`
started (its process tree plus PostgreSQL, which pg_ctl detaches); afterwards none of
them may run, no process may name the home folder, and the ports must be free.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests
from support import ROOT
from support.cli import COMMAND, cli_env

from instropitch.devstack import airflow_services, processes, stack

pytestmark = pytest.mark.e2e

START_TIMEOUT = 300


@pytest.fixture(scope="module")
def home() -> Iterator[Path]:
    """Not under pytest's tmp folder: PostgreSQL runs as another user when the tests run as root."""
    path = Path(tempfile.mkdtemp(prefix="instropitch-test-up-"))
    try:
        yield path
    finally:  # whatever a failed test left running
        airflow_services.clear_leftovers(path / "services")
        stack.down(path)
        shutil.rmtree(path, ignore_errors=True)


class Up:
    """`instropitch up` in a session of its own (as a terminal's job), its output read as it comes."""

    def __init__(self, home: Path):
        self.home = home
        self.process = subprocess.Popen(
            [*COMMAND, "up", "--scale", "0.01"],
            cwd=ROOT,
            env=cli_env(INSTROPITCH_HOME=str(home), INSTROPITCH_PROJECT_DIR=str(ROOT)),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.output: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def wait_ready(self) -> dict[str, int]:
        """Wait for the URLs; the ports of the Airflow API, MLflow and S3 servers."""
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            line = self._lines.get(timeout=max(1, deadline - time.monotonic()))
            assert line is not None, "instropitch up ended:\n" + "\n".join(self.output)
            self.output.append(line)
            if line.startswith("Trigger instropitch_etl"):
                break
        text = "\n".join(self.output)
        api = re.search(r"^Airflow UI +(http://\S+)", text, re.M).group(1)
        mlflow = re.search(r"^MLflow UI +(http://\S+)", text, re.M).group(1)
        assert requests.get(f"{api}/api/v2/monitor/health", timeout=30).status_code == 200
        assert requests.get(f"{mlflow}/health", timeout=30).status_code == 200
        s3 = stack.Services.load(self.home).s3_endpoint
        return {name: int(url.rsplit(":", 1)[1]) for name, url in (("api", api), ("mlflow", mlflow), ("s3", s3))}

    def started(self) -> list[psutil.Process]:
        """Every process this `up` started: its tree, and PostgreSQL's (pg_ctl detaches it)."""
        postmaster = psutil.Process(int((self.home / "pg" / "postmaster.pid").read_text().split()[0]))
        up = psutil.Process(self.process.pid)
        return [*up.children(recursive=True), postmaster, *postmaster.children(recursive=True)]

    def wait_recorded(self) -> list[processes.Recorded]:
        """Wait until this `up` has recorded its five services in the pid file; their records."""
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            found = processes.read_pid_file(self.home / "services" / airflow_services.PID_FILE)
            if found and found[0].pid == self.process.pid and len(found[1]) == 5:
                return found[1]
            assert self.process.poll() is None and time.monotonic() < deadline, "no services recorded"
            time.sleep(0.5)

    def end(self, timeout: float = 120) -> str:
        """Wait for the exit; the rest of the output."""
        self.process.wait(timeout)
        while (line := self._lines.get(timeout=10)) is not None:
            self.output.append(line)
        return "\n".join(self.output)


def survivors(started: list[psutil.Process]) -> list[str]:
    return [f"{p.pid} {p.name()}" for p in started if processes.running(p)]


def strays(home: Path) -> list[str]:
    """Processes naming `home` in their command line or environment: all `up` starts does (INSTROPITCH_HOME)."""
    found = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if str(home) in " ".join(process.cmdline()) or str(home) in str(process.environ()):
                found.append(f"{process.pid} {process.name()}")
    return found


def busy_ports(ports: dict[str, int]) -> list[str]:
    busy = []
    for name, port in ports.items():
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                busy.append(f"{name} {port}")
    return busy


def test_sighup_stops_everything_up_started(home):
    """A closed terminal sends SIGHUP to its job's process group."""
    up = Up(home)
    try:
        ports = up.wait_ready()
        started = up.started()
        assert len(started) > 20  # PostgreSQL, S3, MLflow and the four Airflow services with their workers
        os.killpg(up.process.pid, signal.SIGHUP)
        output = up.end()
    finally:
        processes.stop([up.process.pid], grace=5)
    assert up.process.returncode == 0, output
    assert "instropitch: SIGHUP: stopping the services (data is kept)" in output
    assert survivors(started) == []
    assert strays(home) == []
    assert busy_ports(ports) == []
    assert not (home / "services" / airflow_services.PID_FILE).exists()
    assert not (home / "pg" / "postmaster.pid").exists()


def test_after_a_crash_the_next_start_stops_the_leftovers_and_sigterm_stops_everything(home):
    crashed = Up(home)
    try:
        recorded = crashed.wait_recorded()
        crashed.process.kill()  # SIGKILL, mid-start: no chance to stop anything
        crashed.end()
    finally:
        processes.stop([crashed.process.pid], grace=5)
    assert all(r.process() for r in recorded)  # left running

    up = Up(home)
    try:
        ports = up.wait_ready()
        started = up.started()
        up.process.terminate()  # SIGTERM, as `kill`, a supervisor or a CI runner sends it
        output = up.end()
    finally:
        processes.stop([up.process.pid], grace=5)
    leftovers = re.compile(
        r"instropitch: stopped mlflow \(pid \d+\), api-server \(pid \d+\), scheduler \(pid \d+\), "
        rf"dag-processor \(pid \d+\), triggerer \(pid \d+\): left running by an earlier start "
        rf"\(pid {crashed.process.pid}\) that ended without stopping them"
    )
    assert leftovers.search(output), output
    assert not any(r.process() for r in recorded)
    assert up.process.returncode == 0, output
    assert "instropitch: SIGTERM: stopping the services (data is kept)" in output
    assert survivors(started) == []
    assert strays(home) == []
    assert busy_ports(ports) == []
