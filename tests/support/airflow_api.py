"""The Airflow REST API v2 as the end-to-end tests drive it (JWT from /auth/token, as the UI gets one),
and the quick model recipes they train."""

from __future__ import annotations

import time
import urllib.parse
from pathlib import Path

import requests
import yaml

from instropitch.devstack import airflow_services
from support import ROOT

RUN_TIMEOUT = 420


class Api:
    def __init__(self, running: airflow_services.AirflowServices):
        self.base = running.api_url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {running.token()}"

    def get(self, path: str, **params) -> dict:
        response = self.session.get(f"{self.base}/api/v2{path}", params=params, timeout=30)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, body: dict) -> dict:
        response = self.session.post(f"{self.base}/api/v2{path}", json=body, timeout=30)
        assert response.status_code < 300, response.text
        return response.json()

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while True:
            response = self.session.get(f"{self.base}/api/v2/dags/{dag_id}", timeout=30)
            if response.status_code == 200:
                return
            assert time.monotonic() < deadline, f"{dag_id} was not parsed within {timeout} s"
            time.sleep(2)

    def runs(self, dag_id: str) -> list[dict]:
        return self.get(f"/dags/{dag_id}/dagRuns", order_by="-run_after", limit=50)["dag_runs"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = RUN_TIMEOUT) -> dict:
        deadline = time.monotonic() + timeout
        quoted = urllib.parse.quote(run_id, safe="")
        while True:
            run = self.get(f"/dags/{dag_id}/dagRuns/{quoted}")
            if run["state"] in ("success", "failed"):
                assert run["state"] == "success", f"{dag_id} {run_id} failed: {self.failed_tasks(dag_id, run_id)}"
                return run
            assert time.monotonic() < deadline, f"{dag_id} {run_id} still {run['state']} after {timeout} s"
            time.sleep(3)

    def failed_tasks(self, dag_id: str, run_id: str) -> list[str]:
        quoted = urllib.parse.quote(run_id, safe="")
        tis = self.get(f"/dags/{dag_id}/dagRuns/{quoted}/taskInstances")["task_instances"]
        return [f"{t['task_id']}[{t['map_index']}]={t['state']}" for t in tis if t["state"] != "success"]

    def xcom(self, dag_id: str, run_id: str, task_id: str, map_index: int | None = None):
        quoted = urllib.parse.quote(run_id, safe="")
        params = {} if map_index is None else {"map_index": map_index}
        path = f"/dags/{dag_id}/dagRuns/{quoted}/taskInstances/{task_id}/xcomEntries/return_value"
        return self.get(path, **params)["value"]

    def wait_for_new_run(self, dag_id: str, known: set[str], run_type: str | None = None, timeout: float = 180) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for run in self.runs(dag_id):
                if run["dag_run_id"] not in known and (run_type is None or run["run_type"] == run_type):
                    return run
            assert time.monotonic() < deadline, f"no new {run_type or ''} run of {dag_id} within {timeout} s"
            time.sleep(2)

    def tries(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> list[dict]:
        """Every try of one task instance (hostname, state, dates), oldest first."""
        quoted = urllib.parse.quote(run_id, safe="")
        path = f"/dags/{dag_id}/dagRuns/{quoted}/taskInstances/{task_id}/{map_index}/tries"
        return sorted(self.get(path)["task_instances"], key=lambda t: t["try_number"])

    def task_instances(self, dag_id: str, run_id: str, task_id: str | None = None) -> list[dict]:
        """The run's task instances (mapped ones each on its own), of one task if `task_id` is given."""
        quoted = urllib.parse.quote(run_id, safe="")
        tis = self.get(f"/dags/{dag_id}/dagRuns/{quoted}/taskInstances", limit=1000)["task_instances"]
        return [t for t in tis if task_id is None or t["task_id"] == task_id]

    def set_paused(self, dag_id: str, paused: bool) -> None:
        response = self.session.patch(f"{self.base}/api/v2/dags/{dag_id}", json={"is_paused": paused}, timeout=30)
        assert response.status_code < 300, response.text


def quick_models(folder: Path, epochs: int = 2) -> Path:
    """The project's model YAMLs with few epochs, one network per fit and one generated tone per MIDI class: the
    Asset-triggered run takes no params, and these tests are about the services, not what the fits learn."""
    folder.mkdir(parents=True)
    for source in sorted((ROOT / "models").glob("*.yaml")):
        spec = yaml.safe_load(source.read_text())
        spec["training"]["epochs"] = epochs
        spec["training"]["members"] = 1
        if spec["training"].get("synthetic_tones"):
            spec["training"]["synthetic_tones"] = 1
        (folder / source.name).write_text(yaml.safe_dump(spec))
    return folder
