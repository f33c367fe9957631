"""Embedded services for one machine with no Docker: PostgreSQL from pip and an S3 API server.

`instropitch stack up` starts a real PostgreSQL (pgserver, data under `.instropitch/pg`,
Unix socket only) and moto's S3 API (its WSGI app under gunicorn, `s3_server_command`) on
loopback as background processes and writes their addresses to `.instropitch/stack.json`;
`stack down` stops them. `airflow_env()`
turns those addresses into the Airflow connections (`aws_default`, `postgres_default`)
and the MLflow tracking URI, exactly as the docker-compose stack sets them by environment.

moto keeps objects in memory: after `stack up` the dataset is uploaded again (`seed`), which
skips objects whose ETag already matches.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ENV_PROJECT_DIR = "INSTROPITCH_PROJECT_DIR"
S3_ACCESS_KEY = "instropitch"  # the embedded moto server accepts any credentials
S3_SECRET_KEY = "instropitch-local-only"
S3_REGION = "us-east-1"


def project_dir() -> Path:
    """The checkout whose `dags/`, `plugins/` and `models/` the local services run.

    `$INSTROPITCH_PROJECT_DIR`, else the nearest folder at or above the current directory
    that holds `dags/` and `models/` (the developer tools run from a checkout; the package
    itself never looks for one).
    """
    if os.environ.get(ENV_PROJECT_DIR):
        return Path(os.environ[ENV_PROJECT_DIR]).resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "dags").is_dir() and (folder / "models").is_dir():
            return folder
    raise FileNotFoundError(
        f"no InstroPitch checkout (a folder with dags/ and models/) at or above {here}; set {ENV_PROJECT_DIR}"
    )


def default_home() -> Path:
    """Where embedded services keep their data: `$INSTROPITCH_HOME` or `./.instropitch`."""
    return Path(os.environ.get("INSTROPITCH_HOME", ".instropitch")).resolve()


def mlflow_store(home: Path) -> Path:
    """The SQLite MLflow store the embedded stack (and so `make demo`) tracks runs in."""
    return Path(home) / "mlflow.db"


@dataclass
class Services:
    """Addresses of the running embedded services."""

    home: str
    pg_socket_dir: str
    pg_database: str
    pg_user: str
    s3_endpoint: str
    s3_pid: int
    mlflow_uri: str
    s3_started: float = 0.0
    """The S3 server's start time: with its pid, it tells our server from a process that took the pid over."""

    @property
    def postgres_uri(self) -> str:
        return f"postgresql+psycopg://{self.pg_user}@/{self.pg_database}?host={self.pg_socket_dir}"

    def save(self) -> None:
        Path(self.home, "stack.json").write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, home: Path) -> Services | None:
        path = Path(home, "stack.json")
        return cls(**json.loads(path.read_text())) if path.exists() else None


EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST_PORT = 15000
_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now, below the kernel's ephemeral range.

    A service is given its port seconds before it binds it. A port from `bind(("", 0))` lies
    in the ephemeral range, where in those seconds the kernel may hand it to any other
    `bind(0)` (another service's port picked here, a client's socket): the API server of the
    Celery e2e test once found its port taken. Ports below that range are never handed out
    by the kernel, and this process never returns one twice.
    """
    rng = random.SystemRandom()
    highest = _ephemeral_low() - 1
    for _ in range(200):
        port = rng.randint(_LOWEST_PORT, highest) if highest > _LOWEST_PORT else _kernel_port()
        if port not in _handed_out and _bindable(port):
            _handed_out.add(port)
            return port
    raise RuntimeError(f"no free TCP port on 127.0.0.1 between {_LOWEST_PORT} and {highest}")


def _ephemeral_low() -> int:
    """The lowest port of the kernel's ephemeral range (Linux's default when it cannot be read)."""
    try:
        return int(EPHEMERAL_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _kernel_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_postgres(home: Path) -> tuple[str, str]:
    """Start (or reuse) pgserver's PostgreSQL under `home/pg`; return (socket dir, database)."""
    import pgserver

    home.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(home / "pg", cleanup_mode=None)
    uri = server.get_uri()  # postgresql://postgres:@/postgres?host=/path
    socket_dir = uri.split("host=", 1)[1]
    return socket_dir, "postgres"


def stop_postgres(home: Path) -> None:
    """Stop the PostgreSQL under `home/pg` if it runs (data is kept)."""
    pgdata = home / "pg"
    if not (pgdata / "postmaster.pid").exists():
        return
    from pgserver._commands import pg_ctl
    from pgserver.postgres_server import PostgresServer

    user = "pgserver" if os.geteuid() == 0 else None
    with contextlib.suppress(subprocess.CalledProcessError):
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
    # pgserver caches one handle per data folder and would hand it back without restarting;
    # its atexit clean-up would then fail on the missing entry (a traceback at exit), so unhook it.
    server = PostgresServer._instances.pop(pgdata.resolve(), None)
    if server is not None:
        atexit.unregister(server._cleanup)


def _wait_http(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except Exception:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {timeout:.0f} s") from None
            time.sleep(0.2)


S3_SERVER_THREADS = 8
"""Request threads of the embedded S3 server (the ETL's shards read with 4 at a time)."""


def s3_app() -> Any:
    """moto's WSGI app (every AWS service it emulates, S3 included), for the embedded S3 server.

    The same dispatcher `python -m moto.server` serves, with one change: the service a
    request's host maps to is remembered instead of looked up again. moto's lookup lists
    its package folder (~150 `isdir` calls) and tries every service's URL patterns on each
    request, under a process-wide lock; the answer for a host never changes.
    """
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    class _Dispatcher(DomainDispatcherApplication):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._backend_of_host: dict[str | None, Any] = {}

        def get_backend_for_host(self, host: str | None) -> Any:
            try:
                return self._backend_of_host[host]
            except KeyError:
                backend = self._backend_of_host[host] = super().get_backend_for_host(host)
                return backend

    return _Dispatcher(create_backend_app)


def s3_server_command(port: int) -> list[str]:
    """The command line of the embedded S3 server on 127.0.0.1: moto's app under gunicorn (or `moto.server`).

    gunicorn's threaded worker keeps HTTP/1.1 connections alive, so a boto3 client reuses its
    pooled connections; moto's own server (werkzeug's development server) closes the connection
    after every response and starts a thread per connection: one TCP connect, one thread and one
    request log line per GET, about half the CPU of a whole-object GET on both sides. One worker
    process only (moto keeps the objects in that process's memory) and no worker timeout (a
    restarted worker would come back empty). gunicorn drops request headers spelled with `_`
    (moto's server keeps them for S3 metadata keys like `x-amz-meta-my_key`; nothing here sends
    them). Without gunicorn (it does not run on Windows), `moto.server`.
    """
    try:
        import gunicorn  # noqa: F401
    except ImportError:
        return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "1",
        "--worker-class",
        "gthread",
        "--threads",
        str(S3_SERVER_THREADS),
        "--keep-alive",
        "75",
        "--timeout",
        "0",
        "--log-level",
        "warning",
        "instropitch.devstack.stack:s3_app()",
    ]


def start_s3(home: Path, port: int | None = None) -> tuple[str, int]:
    """Start the S3 API server (moto, see `s3_server_command`) on 127.0.0.1 in the background; return (endpoint, pid)."""
    from instropitch.devstack import processes  # psutil: the slim predict install has none

    port = port or free_port()
    log = open(home / "s3.log", "ab")
    process = subprocess.Popen(
        s3_server_command(port),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "MOTO_PORT": str(port)},
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{endpoint}/moto-api/")
    except BaseException:  # a timeout, or a stop signal while waiting: nothing is left behind
        processes.stop([process.pid], grace=5)
        raise
    return endpoint, process.pid


def _s3_process(services: Services) -> bool:
    """Is the recorded S3 server still running (and not a stranger that took its pid over)?"""
    from instropitch.devstack import processes  # psutil: the slim predict install has none

    return processes.Recorded("s3", services.s3_pid, services.s3_started).process() is not None


def up(home: Path | None = None) -> Services:
    """Start PostgreSQL and the S3 server (reusing running ones); return their addresses."""
    from instropitch.devstack import processes  # psutil: the slim predict install has none

    home = (home or default_home()).resolve()
    home.mkdir(parents=True, exist_ok=True)
    previous = Services.load(home)
    socket_dir, database = start_postgres(home)
    if previous and _s3_process(previous):
        endpoint, pid = previous.s3_endpoint, previous.s3_pid
    else:
        endpoint, pid = start_s3(home)
    services = Services(
        home=str(home),
        pg_socket_dir=socket_dir,
        pg_database=database,
        pg_user="postgres",
        s3_endpoint=endpoint,
        s3_pid=pid,
        s3_started=processes.Recorded.of("s3", pid).started,
        mlflow_uri=f"sqlite:///{mlflow_store(home)}",
    )
    services.save()
    return services


def down(home: Path | None = None) -> None:
    """Stop the S3 server and PostgreSQL; data under `home` is kept."""
    from instropitch.devstack import processes  # psutil: the slim predict install has none

    home = (home or default_home()).resolve()
    services = Services.load(home)
    if services and _s3_process(services):
        processes.stop([services.s3_pid])
    stop_postgres(home)
    if services:
        Path(home, "stack.json").unlink(missing_ok=True)


def airflow_env(services: Services, dags_folder: Path | None = None) -> dict[str, str]:
    """Environment that points Airflow, the library and MLflow at the embedded services."""
    home = Path(services.home)
    aws = {
        "conn_type": "aws",
        "login": S3_ACCESS_KEY,
        "password": S3_SECRET_KEY,
        "extra": {"endpoint_url": services.s3_endpoint, "region_name": S3_REGION},
    }
    postgres = {
        "conn_type": "postgres",
        "host": services.pg_socket_dir,
        "port": 5432,
        "login": services.pg_user,
        "schema": services.pg_database,
    }
    return {
        "AIRFLOW_HOME": str(home / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder or project_dir() / "dags"),
        "INSTROPITCH_MODELS_DIR": os.environ.get("INSTROPITCH_MODELS_DIR") or str(project_dir() / "models"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(aws),
        "AIRFLOW_CONN_POSTGRES_DEFAULT": json.dumps(postgres),
        "MLFLOW_TRACKING_URI": services.mlflow_uri,
        "INSTROPITCH_ARTIFACT_ROOT": str(home / "mlartifacts"),
        "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
        "AWS_DEFAULT_REGION": S3_REGION,
        "INSTROPITCH_S3_ENDPOINT": services.s3_endpoint,
    }
