"""Each Celery worker of the local services is laid out as a machine of its own."""

from __future__ import annotations

import socket
import subprocess
import time

import pytest

from instropitch.devstack import airflow_services, celery_workers


def test_each_worker_has_its_own_name_home_temp_folder_and_log_port(tmp_path):
    base = {"AIRFLOW_HOME": "/services/airflow", "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000"}
    one = celery_workers.worker_environment(base, tmp_path / "worker-1", "worker-1", 41001)
    two = celery_workers.worker_environment(base, tmp_path / "worker-2", "worker-2", 41002)
    for key in ("AIRFLOW_HOME", "TMPDIR", "INSTROPITCH_CACHE", celery_workers.HOSTNAME_ENV):
        assert one[key] != two[key] != base.get(key)
    assert one["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] != two["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"]
    assert one["MLFLOW_TRACKING_URI"] == two["MLFLOW_TRACKING_URI"] == base["MLFLOW_TRACKING_URI"]  # shared
    assert base == {"AIRFLOW_HOME": "/services/airflow", "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000"}


def test_task_instances_record_the_worker_name(monkeypatch):
    settings = celery_workers.celery_settings("redis://127.0.0.1:1/0", "db+postgresql://u@/airflow?host=/s")
    module, _, function = settings["AIRFLOW__CORE__HOSTNAME_CALLABLE"].rpartition(".")
    hostname = getattr(__import__(module, fromlist=[function]), function)
    monkeypatch.setenv(celery_workers.HOSTNAME_ENV, "worker-7")
    assert hostname() == "worker-7"
    monkeypatch.delenv(celery_workers.HOSTNAME_ENV)
    assert hostname() == socket.getfqdn()
    assert settings["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"


def test_worker_command_names_the_celery_node():
    command = celery_workers.worker_command("/venv/bin/airflow", "worker-2")
    assert command[1:3] == ["celery", "worker"]
    assert command[command.index("--celery-hostname") + 1] == "worker-2"


def test_a_worker_counts_as_started_once_this_start_says_ready(tmp_path):
    """A restarted worker appends to its log: an earlier start's `ready.` line must not count, and a worker
    that exits before it is ready (e.g. its start-up question to a broker that is restarting) is an error."""
    running = airflow_services.AirflowServices(tmp_path, "http://127.0.0.1:1", "http://127.0.0.1:2", "pw", {})
    log = running.log("worker-1")
    log.parent.mkdir(parents=True)
    log.write_bytes(b"celery@worker-1 ready.\n")  # the start before
    offset = log.stat().st_size
    ready_later = f"sleep 1; echo 'celery@worker-1 ready.' >> {log}; sleep 30"
    running.processes["worker-1"] = subprocess.Popen(["sh", "-c", ready_later])
    try:
        started = time.monotonic()
        airflow_services.wait_worker_ready(running, "worker-1", offset, timeout=20)
        assert time.monotonic() - started >= 0.9  # waited for this start's line
    finally:
        running.processes["worker-1"].kill()
        running.processes["worker-1"].wait()

    offset = log.stat().st_size
    running.processes["worker-1"] = subprocess.Popen(
        ["sh", "-c", "echo 'Connection refused' >> " + str(log) + "; exit 3"]
    )
    with pytest.raises(RuntimeError, match="worker-1 exited with 3 before it was ready"):
        airflow_services.wait_worker_ready(running, "worker-1", offset, timeout=20)
