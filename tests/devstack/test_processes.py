"""Stop signals become an orderly shutdown, services stop with all they spawned, and a start
after a crash stops what the crashed one left (`devstack.processes`, `airflow_services.clear_leftovers`).

No Airflow here: small Python processes stand in for the services, one of them with a child
in a process group of its own, as Airflow's task runner makes them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import asdict
from pathlib import Path

import psutil
import pytest
from support.cli import COMMAND, cli_env

from instropitch.devstack import airflow_services, processes

SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]


def service_command(stubborn_child: bool = False) -> list[str]:
    """A "service" that starts a child in a process group of its own (killpg of the service misses it)."""
    child = "import signal, time; " + ("signal.signal(signal.SIGTERM, signal.SIG_IGN); " if stubborn_child else "")
    child += "time.sleep(600)"
    script = f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {child!r}], process_group=0); "
    return [sys.executable, "-c", script + "time.sleep(600)"]


def tree_of(pid: int, size: int, timeout: float = 20) -> list[psutil.Process]:
    """`pid` and its descendants, once there are `size` of them."""
    deadline = time.monotonic() + timeout
    while True:
        tree = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        if len(tree) >= size:
            return tree
        assert time.monotonic() < deadline, f"only {len(tree)} of {size} processes started"
        time.sleep(0.05)


def survivors(tree: list[psutil.Process]) -> list[str]:
    return [f"{p.pid} {p.cmdline()}" for p in tree if processes.running(p)]


def write_pid_file(home: Path, owner: processes.Recorded, recorded: list[processes.Recorded]) -> None:
    """A pid file as `airflow_services.start` writes it, with records made up by the test."""
    home.mkdir(parents=True, exist_ok=True)
    body = {"owner": asdict(owner), "processes": [asdict(r) for r in recorded]}
    (home / airflow_services.PID_FILE).write_text(json.dumps(body))


OWNER = textwrap.dedent(
    """
    import subprocess, sys, time
    from instropitch.devstack import processes

    with processes.interrupt_on_signals():
        service = subprocess.Popen({service!r}, start_new_session=True)
        try:
            print("ready", flush=True)
            while True:
                time.sleep(0.1)
        except KeyboardInterrupt as exc:
            print(f"interrupted by {{exc}}", flush=True)
        finally:
            time.sleep(0.5)  # the test sends a second signal now: it must not cut the stop short
            processes.stop([service.pid], grace=5)
            print("stopped", flush=True)
    """
)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=lambda s: s.name)
def test_a_stop_signal_stops_the_services_and_all_they_spawned(signum):
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER.format(service=service_command())],
        env=cli_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout.readline() == "ready\n"
        tree = tree_of(owner.pid, 3)  # owner, service, the service's child in its own group
        owner.send_signal(signum)
        time.sleep(0.2)
        owner.send_signal(signal.SIGTERM)
        out, _ = owner.communicate(timeout=30)
    finally:
        processes.stop([owner.pid], grace=1)
    assert owner.returncode == 0
    assert out.splitlines() == [f"interrupted by {signum.name}", "stopped"]
    assert survivors(tree) == []


def test_stop_kills_what_ignores_sigterm_and_leaves_strangers_alone():
    service = subprocess.Popen(service_command(stubborn_child=True), start_new_session=True)
    stranger = subprocess.Popen(SLEEPER, start_new_session=True)
    try:
        tree = tree_of(service.pid, 2)
        started = time.monotonic()
        processes.stop([service.pid], grace=5)
        assert survivors(tree) == []
        assert time.monotonic() - started < 10  # the service went at once; its stubborn child after 3 s
        assert stranger.poll() is None
    finally:
        stranger.kill()
        service.wait(5)
        stranger.wait(5)


def test_a_start_after_a_crash_stops_the_leftovers_and_says_so(tmp_path):
    crashed = subprocess.Popen(SLEEPER)  # stands in for an `instropitch up` killed with SIGKILL
    service = subprocess.Popen(service_command(), start_new_session=True)
    stranger = subprocess.Popen(SLEEPER, start_new_session=True)
    try:
        tree = tree_of(service.pid, 2)
        owner = processes.Recorded.of("owner", crashed.pid)
        leftover = processes.Recorded.of("scheduler", service.pid)
        reused = processes.Recorded("triggerer", stranger.pid, started=1.0)  # its pid now names another process
        crashed.kill()
        crashed.wait()
        write_pid_file(tmp_path, owner, [leftover, reused])

        note = airflow_services.clear_leftovers(tmp_path)
        assert note == (
            f"stopped scheduler (pid {service.pid}): left running by an earlier start (pid {crashed.pid}) "
            "that ended without stopping them"
        )
        assert survivors(tree) == []
        assert stranger.poll() is None
        assert not (tmp_path / airflow_services.PID_FILE).exists()
        assert airflow_services.clear_leftovers(tmp_path) is None  # nothing left: nothing to say

        write_pid_file(tmp_path, owner, [reused])  # a stale pid file: nothing of it runs
        assert airflow_services.clear_leftovers(tmp_path) is None
        assert stranger.poll() is None
    finally:
        for process in (crashed, service, stranger):
            processes.stop([process.pid], grace=1)
            process.wait(5)


def test_a_second_start_is_refused_while_the_first_runs(tmp_path):
    first = subprocess.Popen(SLEEPER)  # stands in for a running `instropitch up`
    deadline = time.monotonic() + 20
    while "time.sleep(600)" not in " ".join(psutil.Process(first.pid).cmdline()):  # exec'd (a busy machine is slow)
        assert time.monotonic() < deadline, "the stand-in did not start"
        time.sleep(0.05)
    try:
        home = tmp_path / "home"
        write_pid_file(home / "services", processes.Recorded.of("owner", first.pid), [])
        message = f"the services of {home / 'services'} already run under pid {first.pid}"
        with pytest.raises(airflow_services.AlreadyRunning, match=f"^{message}"):
            airflow_services.clear_leftovers(home / "services")

        out = subprocess.run(
            [*COMMAND, "up", "--home", str(home)], env=cli_env(), capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 1
        assert out.stderr.splitlines() == [
            f"instropitch: {message} ({sys.executable} -c import time; time.sleep(600)); stop it first (kill {first.pid})"
        ]
        assert sorted(p.name for p in home.iterdir()) == ["services"]  # nothing started
        assert first.poll() is None
    finally:
        first.kill()
        first.wait()


def test_pid_files_round_trip(tmp_path):
    path = tmp_path / "pids.json"
    assert processes.read_pid_file(path) is None
    processes.write_pid_file(path, {"me": os.getpid()})
    owner, recorded = processes.read_pid_file(path)
    assert owner.pid == os.getpid() and owner.process() is not None
    assert [(r.name, r.pid) for r in recorded] == [("me", os.getpid())]
    path.write_text("{not json")
    assert processes.read_pid_file(path) is None
