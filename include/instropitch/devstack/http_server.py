"""An HTTP app under uvicorn on loopback for the length of a `with` block (tests and benchmarks).

Why here: the HTTP tests, the load test and the load benchmark each started uvicorn on a
free port, polled until it answered and stopped it, bounded, at the end. `running_app` is
that loop, once.

* `running_app(app)`: uvicorn in a daemon thread of this process, on the app object as it
  is (cheap; the app can wrap a predictor the caller already holds).
* `running_app("package.module:factory", *args)`: uvicorn in a child process that builds
  its app with `factory(*args)`. The server then has its own pid, so its memory (RSS) is
  measured without the client's threads and buffers. `export_app` is such a factory.

Either yields `RunningApp(url, port, pid)` once `ready(url)` holds, and stops the server at
exit: a thread by asking uvicorn to exit, a child by SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple

from instropitch.devstack.stack import free_port

START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0


class RunningApp(NamedTuple):
    url: str  # http://HOST:PORT, no trailing slash
    port: int
    pid: int  # the serving process: the child's, or this one's for a thread


def answers(url: str) -> bool:
    """The server answers HTTP at all (any status)."""
    try:
        with urllib.request.urlopen(f"{url}/", timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def models_loaded(url: str) -> bool:
    """The instropitch app's `/health` says its models are loaded (what `preload=True` waits for)."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return json.load(response).get("models") == "loaded"
    except (OSError, ValueError):
        return False


def export_app(export: str, max_upload_bytes: str) -> Any:
    """The HTTP app on a `Predictor.export` folder, models loaded at startup (the load test's and benchmark's)."""
    from instropitch.serving.app import create_app
    from instropitch.serving.predictor import Predictor

    return create_app(lambda: Predictor.from_export(export), max_upload_bytes=int(max_upload_bytes), preload=True)


EXPORT_APP = "instropitch.devstack.http_server:export_app"
"""`running_app(EXPORT_APP, EXPORT_DIR, MAX_UPLOAD_BYTES, ready=models_loaded)`: `export_app` in a child process."""


@contextlib.contextmanager
def running_app(
    app: Any,
    *args: str,
    host: str = "127.0.0.1",
    port: int | None = None,
    ready: Callable[[str], bool] = answers,
    timeout: float = START_TIMEOUT_S,
    log: Path | None = None,
) -> Iterator[RunningApp]:
    """Serve `app` (an ASGI app, or "module:factory" for a child process) until the block ends.

    `port` defaults to a free one. A child's output goes to `log` (a temporary file if not
    given); its last lines are in the error if it exits or is not `ready` within `timeout` s.
    """
    port = port or free_port()
    url = f"http://{host}:{port}"
    if isinstance(app, str):
        with _child(app, args, host, port, log) as (process, output):
            _wait(url, ready, timeout, alive=lambda: process.poll() is None, output=output)
            yield RunningApp(url, port, process.pid)
    else:
        with _thread(app, host, port) as thread:
            _wait(url, ready, timeout, alive=thread.is_alive, output=None)
            yield RunningApp(url, port, os.getpid())


def _wait(url: str, ready: Callable[[str], bool], timeout: float, alive: Callable[[], bool], output: IO | None) -> None:
    deadline = time.monotonic() + timeout
    while not ready(url):
        if not alive():
            raise RuntimeError(f"the server on {url} exited{_tail(output)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server on {url} was not ready within {timeout:.0f} s{_tail(output)}")
        time.sleep(0.1)


def _tail(output: IO | None) -> str:
    if output is None:
        return ""
    output.flush()
    output.seek(0)
    return ":\n" + output.read().decode(errors="replace")[-2000:]


@contextlib.contextmanager
def _thread(app: Any, host: str, port: int) -> Iterator[threading.Thread]:
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        server.should_exit = True
        thread.join(timeout=STOP_TIMEOUT_S)


@contextlib.contextmanager
def _child(
    target: str, args: tuple[str, ...], host: str, port: int, log: Path | None
) -> Iterator[tuple[subprocess.Popen, IO]]:
    command = [sys.executable, "-m", __name__, target, host, str(port), *args]
    with open(log, "w+b") if log else tempfile.TemporaryFile() as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        try:
            yield process, output
        finally:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT_S)


def _serve(argv: list[str]) -> None:
    """The child: `python -m instropitch.devstack.http_server MODULE:FACTORY HOST PORT [ARG...]`."""
    import uvicorn

    target, host, port, *args = argv
    module, _, name = target.partition(":")
    app = getattr(importlib.import_module(module), name)(*args)
    uvicorn.run(app, host=host, port=int(port), log_level="warning", lifespan="on")


if __name__ == "__main__":
    _serve(sys.argv[1:])
