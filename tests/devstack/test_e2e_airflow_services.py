"""End to end with real Airflow services (no Docker): api-server, scheduler, dag-processor and
triggerer on a PostgreSQL metadata database, an MLflow tracking server, S3 on loopback.

1. trigger `instropitch_etl` through the REST API v2 (JWT from /auth/token), as the UI does;
2. the combined-table Asset event triggers `instropitch_training` by itself;
3. MLflow over HTTP: both runs, registered versions, `champion` aliases;
4. both DAGs again with `airflow dags trigger` (the CLI path): the second ETL transforms nothing;
5. a WAV posted to the plugin's predict endpoint on the API server answers instrument and note.
Every process is stopped at the end, also when the test fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.parse
import uuid
from pathlib import Path

import pytest
import requests
import yaml
from support import ROOT

from instropitch.data import objectstore
from instropitch.devstack import airflow_services

pytestmark = pytest.mark.e2e

PREFIX = "TinySOL/"
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

    def xcom(self, dag_id: str, run_id: str, task_id: str):
        quoted = urllib.parse.quote(run_id, safe="")
        return self.get(f"/dags/{dag_id}/dagRuns/{quoted}/taskInstances/{task_id}/xcomEntries/return_value")["value"]

    def wait_for_new_run(self, dag_id: str, known: set[str], run_type: str | None = None, timeout: float = 180) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for run in self.runs(dag_id):
                if run["dag_run_id"] not in known and (run_type is None or run["run_type"] == run_type):
                    return run
            assert time.monotonic() < deadline, f"no new {run_type or ''} run of {dag_id} within {timeout} s"
            time.sleep(2)


def quick_models(folder: Path, epochs: int = 2) -> Path:
    """The project's model YAMLs with few epochs: the Asset-triggered run takes no params."""
    folder.mkdir(parents=True)
    for source in sorted((ROOT / "models").glob("*.yaml")):
        spec = yaml.safe_load(source.read_text())
        spec["training"]["epochs"] = epochs
        (folder / source.name).write_text(yaml.safe_dump(spec))
    return folder


@pytest.fixture
def running(services, s3, small_dataset, tmp_path, monkeypatch):
    warehouse_db = f"e2e_{uuid.uuid4().hex[:8]}"
    airflow_services.ensure_database(services, warehouse_db)
    monkeypatch.setenv("INSTROPITCH_MODELS_DIR", str(quick_models(tmp_path / "models")))
    home = tmp_path / "services"
    started = airflow_services.start(
        services, home, metadata_db=f"airflow_{uuid.uuid4().hex[:8]}", warehouse_db=warehouse_db
    )
    try:
        yield started
    finally:
        airflow_services.stop(started)
        for name in started.processes:
            log = started.log(name)
            if log.exists():  # keep the evidence next to pytest's tmp folder
                print(f"--- {name} log tail ---\n{log.read_text(errors='replace')[-1500:]}")


def test_real_airflow_services_run_the_whole_pipeline(running, s3, small_dataset):
    bucket = f"e2e-{uuid.uuid4().hex[:10]}"
    objectstore.upload_folder(s3, bucket, PREFIX, small_dataset)
    conf = {"bucket": bucket, "sources": [PREFIX], "shard_size": 10}
    api = Api(running)
    api.wait_for_dag("instropitch_etl")
    api.wait_for_dag("instropitch_training")

    # 1. REST API, as the UI triggers
    training_before = {r["dag_run_id"] for r in api.runs("instropitch_training")}
    run = api.post("/dags/instropitch_etl/dagRuns", {"logical_date": None, "conf": conf})
    api.wait_for_run("instropitch_etl", run["dag_run_id"])
    shards = api.xcom("instropitch_etl", run["dag_run_id"], "plan")
    assert sum(len(s) for s in shards) > 0

    # 2. the Asset event triggers training by itself
    triggered = api.wait_for_new_run("instropitch_training", training_before, run_type="asset_triggered")
    api.wait_for_run("instropitch_training", triggered["dag_run_id"])

    # 3. MLflow over HTTP
    for name in ("instropitch-pitch", "instropitch-instrument"):
        response = requests.get(
            f"{running.mlflow_url}/api/2.0/mlflow/registered-models/alias",
            params={"name": name, "alias": "champion"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        version = response.json()["model_version"]
        run_info = requests.get(
            f"{running.mlflow_url}/api/2.0/mlflow/runs/get", params={"run_id": version["run_id"]}, timeout=30
        ).json()["run"]
        metrics = {m["key"]: m["value"] for m in run_info["data"]["metrics"]}
        assert 0.0 <= metrics["test_accuracy"] <= 1.0

    # 4. the CLI path: both DAGs again; the second ETL transforms nothing
    etl_known = {r["dag_run_id"] for r in api.runs("instropitch_etl")}
    training_known = {r["dag_run_id"] for r in api.runs("instropitch_training")}
    for dag_id, dag_conf in (("instropitch_etl", conf), ("instropitch_training", {"epochs": 1})):
        subprocess.run(
            [str(Path(sys.executable).with_name("airflow")), "dags", "trigger", dag_id, "-c", json.dumps(dag_conf)],
            env=running.env,
            check=True,
            capture_output=True,
            timeout=120,
        )
    again = api.wait_for_new_run("instropitch_etl", etl_known, run_type="manual")
    api.wait_for_run("instropitch_etl", again["dag_run_id"])
    assert api.xcom("instropitch_etl", again["dag_run_id"], "plan") == []  # nothing to transform
    retrain = api.wait_for_new_run("instropitch_training", training_known, run_type="manual")
    api.wait_for_run("instropitch_training", retrain["dag_run_id"])

    # 5. the plugin's predict endpoint on the API server: Airflow's login required, as for its own API
    wav = next(small_dataset.rglob("*.wav"))
    upload = {"file": (wav.name, wav.read_bytes(), "audio/wav")}
    predict_url = f"{running.api_url}/instropitch/predict"
    anonymous = requests.post(predict_url, files=upload, timeout=120)
    assert anonymous.status_code == 401, anonymous.text
    assert requests.get(f"{running.api_url}/instropitch/models", timeout=30).status_code == 401
    forged = requests.post(predict_url, files=upload, headers={"Authorization": "Bearer not-a-jwt"}, timeout=30)
    assert forged.status_code in (401, 403), forged.text
    assert requests.get(f"{running.api_url}/instropitch/health", timeout=30).status_code == 200  # liveness stays open
    token = running.token()
    response = requests.post(predict_url, files=upload, headers={"Authorization": f"Bearer {token}"}, timeout=120)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["instrument"] and answer["pitch"] and isinstance(answer["octave"], int)
    # the page's own requests carry the UI's session cookie
    from_page = requests.get(f"{running.api_url}/instropitch/models", cookies={"_token": token}, timeout=120)
    assert from_page.status_code == 200, from_page.text
