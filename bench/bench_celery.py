"""Benchmark: the full synthetic ETL (2,913 notes) on two Celery workers against the LocalExecutor.

    nice -n 10 .venv/bin/python bench/bench_celery.py --data .instropitch/bench/synth-full

Starts the embedded stack (PostgreSQL, the S3 server) under `--home` (a temp folder by
default, removed afterwards), renders the full synthetic set into `--data` if it is not
there yet and uploads it. Then, one after the other on the same machine, the local Airflow
services (`devstack.airflow_services`, what `instropitch up` starts):

(a) with the LocalExecutor (parallelism 4: four task processes under the scheduler);
(b) with the CeleryExecutor: a Valkey broker and two `airflow celery worker` processes of
    two slots each (four in all), each in its own folder as if on its own machine;

and in each one `instropitch_etl` is triggered through the REST API v2 on an empty warehouse.
Figures, from the DAG run and its task instances: the run's wall time (start to end),
throughput (notes / wall time), the Celery/Local throughput ratio (goal ≥ 0.9), the
per-task overhead from queued to started (`queued_when` -> `start_date`: the executor's
hand-over, which the broker adds to on Celery), where the transform shards ran, and the load
average (`uptime`) before and after each run: on a shared machine the wall times say as much
about the neighbours as about the executor. `--json FILE` also writes the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.parse
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
from bench_etl import BUCKET, DEFAULT_DATA, PREFIX, ensure_dataset, load_average, s3_client

from instropitch import tinysol
from instropitch.data import objectstore
from instropitch.devstack import airflow_services, stack

DAG_ID = "instropitch_etl"


class Rest:
    """The few REST API v2 calls the benchmark makes (JWT from /auth/token)."""

    def __init__(self, running: airflow_services.AirflowServices) -> None:
        self.base = f"{running.api_url}/api/v2"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {running.token()}"

    def get(self, path: str, **params: Any) -> dict:
        response = self.session.get(f"{self.base}{path}", params=params, timeout=60)
        response.raise_for_status()
        return response.json()

    def wait_for_dag(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while self.session.get(f"{self.base}/dags/{DAG_ID}", timeout=60).status_code != 200:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{DAG_ID} was not parsed within {timeout:.0f} s")
            time.sleep(2)

    def run_etl(self, conf: dict, timeout: float = 1800) -> tuple[dict, list[dict]]:
        """Trigger the ETL, wait for its end; (the DAG run, its task instances)."""
        response = self.session.post(
            f"{self.base}/dags/{DAG_ID}/dagRuns", json={"logical_date": None, "conf": conf}, timeout=60
        )
        response.raise_for_status()
        run_id = urllib.parse.quote(response.json()["dag_run_id"], safe="")
        deadline = time.monotonic() + timeout
        while (run := self.get(f"/dags/{DAG_ID}/dagRuns/{run_id}"))["state"] not in ("success", "failed"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{DAG_ID} still {run['state']} after {timeout:.0f} s")
            time.sleep(2)
        tis = self.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances", limit=1000)["task_instances"]
        return run, tis


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def run_figures(run: dict, tis: list[dict], notes: int) -> dict[str, Any]:
    """Wall time, throughput and queue-to-start overheads of one DAG run."""
    wall = (_time(run["end_date"]) - _time(run["start_date"])).total_seconds()
    waits = sorted(
        (_time(t["start_date"]) - _time(t["queued_when"])).total_seconds()
        for t in tis
        if t.get("queued_when") and t.get("start_date")
    )
    transforms = [t for t in tis if t["task_id"] == "transform"]
    hosts: dict[str, int] = {}
    for t in transforms:
        hosts[t["hostname"]] = hosts.get(t["hostname"], 0) + 1
    return {
        "state": run["state"],
        "wall_s": round(wall, 1),
        "notes_per_s": round(notes / wall, 1),
        "tasks": len(tis),
        "queue_to_start_s_median": round(statistics.median(waits), 2),
        "queue_to_start_s_p90": round(waits[int(0.9 * (len(waits) - 1))], 2),
        "queue_to_start_s_max": round(waits[-1], 2),
        "transform_tasks": len(transforms),
        "transform_s_sum": round(
            sum((_time(t["end_date"]) - _time(t["start_date"])).total_seconds() for t in transforms), 1
        ),
        "transform_hosts": hosts,
    }


def measure(services: stack.Services, home: Path, celery_workers: int, conf: dict, notes: int) -> dict[str, Any]:
    """Start the services with the given executor, run the ETL on a fresh warehouse database, stop them."""
    label = f"celery{celery_workers}" if celery_workers else "local"
    warehouse_db = f"bench_{label}_{uuid.uuid4().hex[:6]}"
    airflow_services.ensure_database(services, warehouse_db)
    started = time.perf_counter()
    running = airflow_services.start(
        services,
        home / label,
        metadata_db=f"airflow_{label}_{uuid.uuid4().hex[:6]}",
        warehouse_db=warehouse_db,
        celery_workers=celery_workers,
    )
    try:
        rest = Rest(running)
        rest.wait_for_dag()
        out: dict[str, Any] = {"start_services_s": round(time.perf_counter() - started, 1)}
        time.sleep(10)  # let the services' start-up work settle before the clock starts
        out["load_before"] = load_average()
        run, tis = rest.run_etl(conf)
        out["load_after"] = load_average()
        out |= run_figures(run, tis, notes)
        return out
    finally:
        airflow_services.stop(running)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="full synthetic set (rendered if absent)")
    parser.add_argument("--home", type=Path, help="folder for the services (default: a temp folder)")
    parser.add_argument("--shard-size", type=int, default=200, help="objects per transform task (the DAG's default)")
    parser.add_argument("--workers", type=int, default=2, help="Celery workers")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    ensure_dataset(args.data)
    notes = len(tinysol.parse_metadata(args.data / tinysol.METADATA_FILENAME).rows)
    temp_home = args.home is None
    home = Path(tempfile.mkdtemp(prefix="instropitch-bench-celery-")) if temp_home else args.home.resolve()
    figures: dict[str, Any] = {"notes": notes, "shard_size": args.shard_size, "cpus": os.cpu_count()}
    os.environ.setdefault(stack.ENV_PROJECT_DIR, str(Path(__file__).resolve().parents[1]))
    services = stack.up(home / "stack")
    try:
        objectstore.upload_folder(s3_client(services), BUCKET, PREFIX, args.data)
        conf = {"bucket": BUCKET, "sources": [PREFIX], "shard_size": args.shard_size}
        for label, workers in (("local", 0), ("celery", args.workers)):
            print(f"{label}: starting the services ...", flush=True)
            figures[label] = measure(services, home, workers, conf, notes)
            print(f"{label}: {json.dumps(figures[label])}", flush=True)
        ok = figures["local"]["state"] == figures["celery"]["state"] == "success"
        figures["throughput_ratio_celery_to_local"] = round(
            figures["celery"]["notes_per_s"] / figures["local"]["notes_per_s"], 3
        )
    finally:
        stack.down(home / "stack")
        if temp_home:
            shutil.rmtree(home, ignore_errors=True)
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
