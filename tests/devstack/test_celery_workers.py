"""Each Celery worker of the local services is laid out as a machine of its own."""

from __future__ import annotations

import socket

from instropitch.devstack import celery_workers


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
