"""Real Airflow services as local processes, for `make up` and the end-to-end test.

The same set docker-compose runs, minus Docker: `airflow api-server`, `scheduler`,
`dag-processor` and `triggerer` on a PostgreSQL metadata database (the embedded pgserver),
plus an MLflow tracking server that serves its artifacts. With `celery_workers=N` the
executor is Celery's: a Valkey broker (`broker.py`) and N `airflow celery worker` processes,
each laid out as a machine of its own (`celery_workers.py`); otherwise the LocalExecutor
runs tasks inside the scheduler. Every process is started in its own session so `stop()` ends it and
everything it spawned, and is recorded in `HOME/pids.json` so a start after a crash stops
what the crashed one left running (`clear_leftovers`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import text

from instropitch.data import warehouse
from instropitch.devstack import broker as broker_
from instropitch.devstack import celery_workers as celery_layout
from instropitch.devstack import processes, stack

log = logging.getLogger(__name__)

AIRFLOW_PROCESSES = ("api-server", "scheduler", "dag-processor", "triggerer")
ADMIN_USER = "admin"
PID_FILE = "pids.json"


class AlreadyRunning(RuntimeError):
    """The services of this home run under another live process."""


@dataclass
class AirflowServices:
    """Running Airflow + MLflow processes and how to reach them."""

    home: Path
    api_url: str
    mlflow_url: str
    admin_password: str
    env: dict[str, str]
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    broker: broker_.Broker | None = None
    workers: dict[str, Path] = field(default_factory=dict)
    """Celery worker name -> its folder (working directory, AIRFLOW_HOME, TMPDIR)."""

    def log(self, name: str) -> Path:
        return self.home / "logs" / f"{name}.log"

    def token(self) -> str:
        """A JWT for the REST API v2, as the UI gets one (`POST /auth/token`)."""
        body = json.dumps({"username": ADMIN_USER, "password": self.admin_password}).encode()
        request = urllib.request.Request(
            f"{self.api_url}/auth/token", data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())["access_token"]


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def ensure_database(services: stack.Services, name: str) -> None:
    """Create a database on the embedded PostgreSQL if it does not exist (a plain identifier only)."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", name):
        raise ValueError(f"database name {name!r} must be a plain identifier (letters, digits, _)")
    admin = warehouse.engine_for(services.pg_socket_dir, 5432, services.pg_user, None, services.pg_database)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first()
        if not exists:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()


def environment(
    services: stack.Services,
    home: Path,
    api_port: int,
    mlflow_port: int,
    admin_password: str,
    metadata_db: str = "airflow",
    warehouse_db: str | None = None,
) -> dict[str, str]:
    """Airflow configuration for local services (every key is a documented Airflow option)."""
    env = {**os.environ, **stack.airflow_env(services)}
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({ADMIN_USER: admin_password}))
    if warehouse_db:
        postgres = json.loads(env["AIRFLOW_CONN_POSTGRES_DEFAULT"])
        postgres["schema"] = warehouse_db
        env["AIRFLOW_CONN_POSTGRES_DEFAULT"] = json.dumps(postgres)
    env.update(
        {
            "AIRFLOW_HOME": str(home / "airflow"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": (
                f"postgresql+psycopg2://{services.pg_user}@/{metadata_db}?host={services.pg_socket_dir}"
            ),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(stack.project_dir() / "plugins"),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{mlflow_port}",
            "INSTROPITCH_MLFLOW_UI_URL": f"http://127.0.0.1:{mlflow_port}",
            "OPENBLAS_NUM_THREADS": "1",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "INSTROPITCH_TF_THREADS": "1",
        }
    )
    env.pop("INSTROPITCH_ARTIFACT_ROOT", None)  # the MLflow server owns its artifacts here
    return env


def wait_http(url: str, timeout: float, process: subprocess.Popen | None = None, log: Path | None = None) -> None:
    """Wait until `url` answers 2xx; fail early (with the log's tail) if the process died."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"{url}: the process exited with {process.returncode}\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status < 300:
                    return
        except Exception:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")
        time.sleep(1)


def _record(running: AirflowServices) -> None:
    processes.write_pid_file(running.home / PID_FILE, {n: p.pid for n, p in running.processes.items()})


def _spawn(
    running: AirflowServices,
    name: str,
    command: list[str],
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> None:
    """Start one service in its own session and record it in the pid file at once."""
    logs = running.home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / f"{name}.log", "ab") as out:
        running.processes[name] = subprocess.Popen(
            command,
            env=env or running.env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _record(running)


def _start_broker(running: AirflowServices) -> None:
    assert running.broker is not None
    logs = running.home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    running.processes["broker"] = running.broker.spawn(logs / "broker.log")
    _record(running)


def restart_broker(running: AirflowServices) -> None:
    """Stop the broker (SIGTERM: it writes its append-only file) and start it again on the same port."""
    processes.stop([running.processes["broker"].pid], grace=15)
    running.processes["broker"].wait(5)
    _start_broker(running)


def start_worker(running: AirflowServices, name: str, *, wait: float | None = 180) -> int:
    """Start the Celery worker `name` in its folder under `home/workers/` (again, after it died: same disk).

    With `wait` (seconds), return once the worker says it is ready (`wait_worker_ready`): until
    then it is still asking the broker whether its name is taken, and a broker restart in that
    window ends the `airflow celery worker` command instead of a reconnection. Returns where
    this start's lines begin in the worker's log (the log is appended to across starts).
    """
    folder = running.home / "workers" / name
    celery_layout.prepare_folder(folder)
    env = celery_layout.worker_environment(running.env, folder, name, stack.free_port())
    running.workers[name] = folder
    log = running.log(name)
    offset = log.stat().st_size if log.exists() else 0
    _spawn(running, name, celery_layout.worker_command(_bin("airflow"), name), env=env, cwd=folder)
    if wait:
        wait_worker_ready(running, name, offset, wait)
    return offset


def wait_worker_ready(running: AirflowServices, name: str, offset: int = 0, timeout: float = 180) -> None:
    """Wait for Celery's `celery@NAME ready.` in the worker's log after `offset`; fail early if it exited."""
    process, log, ready = running.processes[name], running.log(name), f"celery@{name} ready.".encode()
    deadline = time.monotonic() + timeout
    while True:
        with open(log, "rb") as f:
            f.seek(offset)
            if ready in f.read():
                return
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"Celery worker {name} exited with {process.returncode} before it was ready\n{tail}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"Celery worker {name} was not ready within {timeout:.0f} s (log: {log})")
        time.sleep(0.5)


def _start_workers(running: AirflowServices, count: int) -> dict[str, int]:
    """Start `count` Celery workers, each with its own folder and log-server port; {name: log offset}.

    `start` awaits their readiness once the API server answers (they start side by side).
    """
    return {
        name: start_worker(running, name, wait=None)
        for name in (celery_layout.worker_name(index) for index in range(1, count + 1))
    }


def clear_leftovers(home: Path) -> str | None:
    """Stop the services an earlier start in `home` left running; a one-line account, None if there were none.

    Raises `AlreadyRunning` while the process that started them lives: two sets of services
    on one metadata database and one MLflow store would run every DAG twice.
    """
    path = home / PID_FILE
    found = processes.read_pid_file(path)
    if found is None:
        return None
    owner, recorded = found
    if owner.pid != os.getpid() and owner.process() is not None:
        raise AlreadyRunning(
            f"the services of {home} already run under pid {owner.pid} ({owner.command}); stop it first (kill {owner.pid})"
        )
    alive = [r for r in recorded if r.process() is not None]
    processes.stop(r.pid for r in alive)
    path.unlink(missing_ok=True)
    if not alive:
        return None
    names = ", ".join(f"{r.name} (pid {r.pid})" for r in alive)
    return f"stopped {names}: left running by an earlier start (pid {owner.pid}) that ended without stopping them"


def start(
    services: stack.Services,
    home: Path,
    *,
    metadata_db: str = "airflow",
    warehouse_db: str | None = None,
    celery_workers: int = 0,
    extra_env: dict[str, str] | None = None,
    timeout: float = 240,
) -> AirflowServices:
    """Migrate the metadata database and start MLflow and the four Airflow services.

    With `celery_workers` > 0: the broker first, the CeleryExecutor with its results in the
    metadata database, and that many workers. `extra_env` overrides settings of every process
    (tests shorten timeouts with it). Leftovers of an earlier start in `home` are stopped
    first (`clear_leftovers`).
    """
    home.mkdir(parents=True, exist_ok=True)
    note = clear_leftovers(home)
    if note:
        log.warning("%s", note)
    ensure_database(services, metadata_db)
    api_port, mlflow_port = stack.free_port(), stack.free_port()
    password = secrets.token_urlsafe(12)
    env = environment(services, home, api_port, mlflow_port, password, metadata_db, warehouse_db)
    if celery_workers:
        broker = broker_.Broker(home / "broker", stack.free_port())
        result_backend = f"db+postgresql://{services.pg_user}@/{metadata_db}?host={services.pg_socket_dir}"
        env.update(celery_layout.celery_settings(broker.url, result_backend))
    env.update(extra_env or {})
    running = AirflowServices(home, f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{mlflow_port}", password, env)
    try:
        if celery_workers:
            running.broker = broker
            _start_broker(running)
        subprocess.run([_bin("airflow"), "db", "migrate"], env=env, check=True, capture_output=True, text=True)
        _spawn(
            running,
            "mlflow",
            [
                _bin("mlflow"),
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(mlflow_port),
                "--workers",
                "1",
                "--backend-store-uri",
                f"sqlite:///{home / 'mlflow.db'}",
                "--artifacts-destination",
                str(home / "mlflow-artifacts"),
                "--serve-artifacts",
            ],
        )
        for name in AIRFLOW_PROCESSES:
            _spawn(running, name, [_bin("airflow"), name])
        offsets = _start_workers(running, celery_workers)
        wait_http(f"{running.mlflow_url}/health", timeout, running.processes["mlflow"], running.log("mlflow"))
        wait_http(
            f"{running.api_url}/api/v2/monitor/health",
            timeout,
            running.processes["api-server"],
            running.log("api-server"),
        )
        for name, offset in offsets.items():
            wait_worker_ready(running, name, offset, timeout)
    except BaseException:
        stop(running)
        raise
    return running


def stop(running: AirflowServices, grace: float = 15) -> None:
    """Stop every service with all it spawned (SIGTERM, SIGKILL after `grace` s) and drop the pid file."""
    processes.stop((p.pid for p in running.processes.values()), grace)
    for process in running.processes.values():
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)
    (running.home / PID_FILE).unlink(missing_ok=True)
