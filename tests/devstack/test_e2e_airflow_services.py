"""End to end with real Airflow services (no Docker): api-server, scheduler, dag-processor and
triggerer on a PostgreSQL metadata database, an MLflow tracking server, S3 on loopback.

1. trigger `instropitch_etl` through the REST API v2 (JWT from /auth/token), as the UI does; the
   tables equal those of a run without an executor (`etl_reference`, digest for digest);
2. the combined-table Asset event triggers `instropitch_training` by itself;
3. MLflow over HTTP: both runs, registered versions, `champion` aliases;
4. the ETL again with `airflow dags trigger` (the CLI path): it transforms nothing and publishes no event;
5. a WAV posted to the plugin's predict endpoint on the API server answers instrument and note.
Every process is stopped at the end, also when the test fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests
from support import tables
from support.airflow_api import Api, quick_models

from instropitch.data import objectstore
from instropitch.devstack import airflow_services

pytestmark = pytest.mark.e2e

PREFIX = "TinySOL/"


@pytest.fixture
def warehouse_db(services) -> str:
    name = f"e2e_{uuid.uuid4().hex[:8]}"
    airflow_services.ensure_database(services, name)
    return name


@pytest.fixture
def running(services, warehouse_db, tmp_path, monkeypatch):
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


def test_real_airflow_services_run_the_whole_pipeline(
    running, services, warehouse_db, etl_reference, s3, small_dataset
):
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
    # the LocalExecutor's tables equal a run without an executor (and so the Celery workers' run)
    tables.assert_equal_without_duplicates(tables.digests(services, warehouse_db), etl_reference)

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

    # 4. the CLI path: the ETL again with `airflow dags trigger`; it transforms nothing, the
    #    combined table is unchanged, so `publish` skips: no Asset event, no retraining
    etl_known = {r["dag_run_id"] for r in api.runs("instropitch_etl")}
    subprocess.run(
        [str(Path(sys.executable).with_name("airflow")), "dags", "trigger", "instropitch_etl", "-c", json.dumps(conf)],
        env=running.env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    again = api.wait_for_new_run("instropitch_etl", etl_known, run_type="manual")
    api.wait_for_run("instropitch_etl", again["dag_run_id"])
    assert api.xcom("instropitch_etl", again["dag_run_id"], "plan") == []  # nothing to transform
    assert [t["state"] for t in api.task_instances("instropitch_etl", again["dag_run_id"], "publish")] == ["skipped"]
    assert tables.digests(services, warehouse_db) == etl_reference  # nothing written twice

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
