"""Airflow's CeleryExecutor on one machine, laid out as if each worker were a machine of its own.

`airflow_services.start(celery_workers=N)` uses this: the scheduler sends tasks through the
broker (`broker.py`) and N `airflow celery worker` processes take them. Each worker gets its
own name (`--celery-hostname`, and the hostname Airflow records on the task instances it
runs), its own AIRFLOW_HOME (task logs), working directory, TMPDIR and model cache: what one
worker writes on its disk, the others never see. They share only what separate machines
would: PostgreSQL (metadata, Celery results, the warehouse), the S3 API, the MLflow tracking
server over HTTP (artifacts served by it) and the Airflow API server (the Task SDK's
execution API).

This module is imported by the task processes of these workers (`hostname` is Airflow's
`[core] hostname_callable` there), so it imports nothing beyond the standard library.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

HOSTNAME_ENV = "INSTROPITCH_WORKER_HOSTNAME"
DEFAULT_QUEUE = "default"  # Airflow's [operators] default_queue
WORKER_CONCURRENCY = 2
"""Task slots per worker: two workers hold four, the LocalExecutor's `parallelism` here."""


def hostname() -> str:
    """The host name Airflow records for task instances: the worker's own name where one is set.

    Airflow calls `[core] hostname_callable` in the task process; on one machine every worker
    would report the same FQDN, so each worker started here names itself through its environment.
    """
    return os.environ.get(HOSTNAME_ENV) or socket.getfqdn()


def worker_name(index: int) -> str:
    """`worker-1`, `worker-2`, ...: the process name in pids.json, the Celery node is `celery@worker-N`."""
    return f"worker-{index}"


def celery_settings(broker_url: str, result_backend: str) -> dict[str, str]:
    """The executor switch and the documented [celery] options shared by the scheduler and every worker."""
    return {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": broker_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": result_backend,
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
        # Unacknowledged tasks of a worker that died go back to the queue after this long; the
        # scheduler's heartbeat timeout retries the task instance well before (Airflow's default is a day).
        "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "3600",
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": f"{__name__}.hostname",
    }


def worker_environment(base: dict[str, str], folder: Path, name: str, log_server_port: int) -> dict[str, str]:
    """The environment of one worker: `base` (the services' settings) with its own home, temp folder and name.

    Each worker serves its task logs on a port of its own (one machine has one port 8793);
    the API server reads task logs from the worker that ran them at `hostname:port`, which
    only the names' own machines would resolve, so in this layout task logs are read in the
    worker's folder (`logs/`), not in the UI.
    """
    env = dict(base)
    env.update(
        {
            HOSTNAME_ENV: name,
            "AIRFLOW_HOME": str(folder / "airflow"),
            "TMPDIR": str(folder / "tmp"),
            "INSTROPITCH_CACHE": str(folder / "model-cache"),
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(log_server_port),
        }
    )
    return env


def worker_command(airflow: str, name: str) -> list[str]:
    """`airflow celery worker` named `name` on the default queue."""
    return [airflow, "celery", "worker", "--celery-hostname", name, "--queues", DEFAULT_QUEUE]


def prepare_folder(folder: Path) -> None:
    """The worker's own disk: home, temp folder, model cache."""
    for sub in ("airflow", "tmp", "model-cache"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
