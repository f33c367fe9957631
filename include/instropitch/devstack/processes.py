"""The processes the dev stack starts: stopped with all they spawned, and recognised after a crash.

Each service starts in a session of its own (`start_new_session=True`). Its children stay
in that session even where they leave its process group (Airflow's task runner gives every
task a group of its own), so a service is stopped by session, not only by group. Servers
retitle their processes (gunicorn, Airflow), so a pid file names a process by pid and
start time, not by command line.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """A stop signal, raised where the main thread is: `finally` blocks then stop what was started."""


@contextlib.contextmanager
def interrupt_on_signals() -> Iterator[None]:
    """The first SIGINT, SIGTERM or SIGHUP raises `Interrupted`; later ones are ignored.

    Python ends the process on SIGTERM and SIGHUP without running `finally` blocks, which
    leaves every service running; ignoring the later signals lets the stop they asked for finish.
    """
    received: list[int] = []

    def handler(signum: int, _frame: object) -> None:
        if not received:
            received.append(signum)
            raise Interrupted(signal.Signals(signum).name)

    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@dataclass(frozen=True)
class Recorded:
    """A process as a pid file keeps it: with its start time, the pid names it for good."""

    name: str
    pid: int
    started: float
    command: str = ""

    @classmethod
    def of(cls, name: str, pid: int) -> Recorded:
        try:
            process = psutil.Process(pid)
            return cls(name, pid, process.create_time(), " ".join(process.cmdline()[:4]))
        except psutil.Error:  # already gone: a record that matches nothing
            return cls(name, pid, 0.0)

    def process(self) -> psutil.Process | None:
        """The live process this names; None when it ended or its pid now belongs to another one."""
        try:
            process = psutil.Process(self.pid)
            if abs(process.create_time() - self.started) < 1.0 and running(process):
                return process
        except psutil.Error:
            pass
        return None


def running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def family(pid: int) -> list[psutil.Process]:
    """The live process `pid`, its descendants, and every process in the session it leads (or led)."""
    members: dict[int, psutil.Process] = {}
    with contextlib.suppress(psutil.Error):
        leader = psutil.Process(pid)
        members[pid] = leader
        members.update((p.pid, p) for p in leader.children(recursive=True))
    for other in psutil.process_iter():
        with contextlib.suppress(OSError):
            if os.getsid(other.pid) == pid:
                members.setdefault(other.pid, other)
    return [p for p in members.values() if running(p)]


def stop(pids: Iterable[int], grace: float = 15) -> None:
    """SIGTERM the process group of each pid, wait `grace` s for them, then end what is left of their families.

    Pass only pids this program started (a leader that died meanwhile is fine: its session
    still names its family). The families are collected before any signal, so a child
    orphaned by its parent's exit is still found; psutil checks start times, so a pid
    reused meanwhile is not touched.
    """
    pids = list(pids)
    everyone = {p.pid: p for pid in pids for p in family(pid)}
    leaders = [everyone[pid] for pid in pids if pid in everyone]
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:  # no group of that id: signal the process itself
            with contextlib.suppress(psutil.Error, KeyError):
                everyone[pid].terminate()
    psutil.wait_procs(leaders, timeout=grace)
    rest = [p for p in everyone.values() if running(p)]
    for process in rest:
        with contextlib.suppress(psutil.Error):
            process.terminate()
    _, alive = psutil.wait_procs(rest, timeout=3)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(alive, timeout=5)


# ------------------------------------------------------------------------ pid files


def write_pid_file(path: Path, processes: dict[str, int]) -> None:
    """Record this process as the owner of `processes` (name -> pid), for the next start to find."""
    body = {
        "owner": asdict(Recorded.of("owner", os.getpid())),
        "processes": [asdict(Recorded.of(name, pid)) for name, pid in processes.items()],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(body, indent=2))
    tmp.replace(path)


def read_pid_file(path: Path) -> tuple[Recorded, list[Recorded]] | None:
    """(owner, processes) from `path`; None when there is no readable pid file."""
    try:
        body = json.loads(path.read_text())
        return Recorded(**body["owner"]), [Recorded(**p) for p in body["processes"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
