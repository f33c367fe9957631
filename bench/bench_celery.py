"""Benchmark: the ETL on Celery workers against the LocalExecutor, and the training DAG on one and two workers.

    nice -n 10 .venv/bin/python bench/bench_celery.py --data .instropitch/data/sources-seed0-scale1 --training-epochs 10

Starts the embedded stack (PostgreSQL, the S3 server) under `--home` (a temp folder by
default, removed afterwards) and uploads `--data`: a TinySOL-layout folder (the source
`TinySOL/`), or a folder of such folders, one source each (what `make demo` renders; the
full single-source set is rendered into the default `--data` when absent). Then, one after
the other on the same machine, the local Airflow services (`devstack.airflow_services`, what
`instropitch up` starts):

(a) with the LocalExecutor (parallelism 4: four task processes under the scheduler);
(b) with the CeleryExecutor: a Valkey broker and `--workers` `airflow celery worker`
    processes of two slots each, each in its own folder as if on its own machine;
(c) with `--training-epochs N`: the CeleryExecutor with one worker, then with two, each
    worker of `--training-slots` slots (1 by default: a fit takes a machine), and in each
    the ETL followed by `instropitch_training` (conf `{"epochs": N}`); with 2+ sources its
    leave-one-source-out fits are mapped tasks the workers share.

In each, `instropitch_etl` is triggered through the REST API v2 on an empty warehouse.
Figures, from the DAG runs and their task instances: wall time (start to end), ETL
throughput (notes / wall time), the Celery/Local throughput ratio (goal ≥ 0.9), the per-task
overhead from queued to started (`queued_when` -> `start_date`: the executor's hand-over,
which the broker adds to on Celery), which worker ran which task, the training DAG's wall
time on one and two workers, and the load average (`uptime`) before and after each run: on
a shared machine the wall times say as much about the neighbours as about the executor.
`--json FILE` also writes the figures.
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
from bench_etl import BUCKET, DEFAULT_DATA, ensure_dataset, load_average

from instropitch import tinysol
from instropitch.devstack import airflow_services, demo, stack

ETL, TRAINING = "instropitch_etl", "instropitch_training"


class Rest:
    """The few REST API v2 calls the benchmark makes (JWT from /auth/token)."""

    def __init__(self, running: airflow_services.AirflowServices) -> None:
        self.base = f"{running.api_url}/api/v2"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {running.token()}"

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        response = self.session.request(method, f"{self.base}{path}", timeout=60, **kwargs)
        response.raise_for_status()
        return response

    def get(self, path: str, **params: Any) -> dict:
        return self._call("GET", path, params=params).json()

    def wait_for_dags(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        for dag_id in (ETL, TRAINING):
            while self.session.get(f"{self.base}/dags/{dag_id}", timeout=60).status_code != 200:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{dag_id} was not parsed within {timeout:.0f} s")
                time.sleep(2)

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self._call("PATCH", f"/dags/{dag_id}", json={"is_paused": paused})

    def forget_asset_events(self, dag_id: str) -> None:
        """Drop the Asset events queued for `dag_id` (the ETL's), so unpausing it starts no run of its own."""
        response = self.session.delete(f"{self.base}/dags/{dag_id}/assets/queuedEvents", timeout=60)
        if response.status_code != 404:  # 404: none queued
            response.raise_for_status()

    def run(self, dag_id: str, conf: dict, timeout: float = 3600) -> tuple[dict, list[dict]]:
        """Trigger the DAG, wait for its end; (the DAG run, its task instances)."""
        run_id = self._call("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf}).json()
        run_id = urllib.parse.quote(run_id["dag_run_id"], safe="")
        deadline = time.monotonic() + timeout
        while (run := self.get(f"/dags/{dag_id}/dagRuns/{run_id}"))["state"] not in ("success", "failed"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{dag_id} still {run['state']} after {timeout:.0f} s")
            time.sleep(2)
        tis = self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", limit=1000)["task_instances"]
        return run, tis


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _seconds(ti: dict) -> float:
    return (_time(ti["end_date"]) - _time(ti["start_date"])).total_seconds()


def run_figures(run: dict, tis: list[dict], spread: tuple[str, ...]) -> dict[str, Any]:
    """Wall time, queue-to-start overheads and, per task in `spread`, its task-seconds and hosts."""
    wall = (_time(run["end_date"]) - _time(run["start_date"])).total_seconds()
    waits = sorted(
        (_time(t["start_date"]) - _time(t["queued_when"])).total_seconds()
        for t in tis
        if t.get("queued_when") and t.get("start_date")
    )
    out: dict[str, Any] = {
        "state": run["state"],
        "wall_s": round(wall, 1),
        "tasks": len(tis),
        "queue_to_start_s_median": round(statistics.median(waits), 2),
        "queue_to_start_s_p90": round(waits[int(0.9 * (len(waits) - 1))], 2),
        "queue_to_start_s_max": round(waits[-1], 2),
    }
    for task_id in spread:
        mine = [t for t in tis if t["task_id"] == task_id and t.get("start_date") and t.get("end_date")]
        hosts: dict[str, int] = {}
        for t in mine:
            hosts[t["hostname"]] = hosts.get(t["hostname"], 0) + 1
        out[task_id] = {"tasks": len(mine), "task_s_sum": round(sum(map(_seconds, mine)), 1), "hosts": hosts}
    return out


def measure(
    services: stack.Services,
    home: Path,
    label: str,
    workers: int,
    etl_conf: dict,
    notes: int,
    training_conf: dict | None = None,
    slots: int | None = None,
) -> dict[str, Any]:
    """Start the services with the given executor, run the ETL on a fresh warehouse (then training), stop them."""
    warehouse_db = f"bench_{label}_{uuid.uuid4().hex[:6]}"
    airflow_services.ensure_database(services, warehouse_db)
    started = time.perf_counter()
    running = airflow_services.start(
        services,
        home / label,
        metadata_db=f"airflow_{label}_{uuid.uuid4().hex[:6]}",
        warehouse_db=warehouse_db,
        celery_workers=workers,
        extra_env={"AIRFLOW__CELERY__WORKER_CONCURRENCY": str(slots)} if slots else None,
    )
    try:
        rest = Rest(running)
        rest.wait_for_dags()
        rest.set_paused(TRAINING, True)  # the ETL's Asset event must not start a training of its own
        out: dict[str, Any] = {"start_services_s": round(time.perf_counter() - started, 1)}
        time.sleep(10)  # let the services' start-up work settle before the clock starts
        out["load_before"] = load_average()
        run, tis = rest.run(ETL, etl_conf)
        out["load_after"] = load_average()
        out["etl"] = run_figures(run, tis, ("transform",)) | {
            "notes_per_s": round(notes / (_time(run["end_date"]) - _time(run["start_date"])).total_seconds(), 1)
        }
        if training_conf is not None and run["state"] == "success":
            rest.forget_asset_events(TRAINING)
            rest.set_paused(TRAINING, False)
            out["training_load_before"] = load_average()
            run, tis = rest.run(TRAINING, training_conf)
            out["training_load_after"] = load_average()
            out["training"] = run_figures(run, tis, ("fit_heldout", "train"))
        return out
    finally:
        airflow_services.stop(running)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="a TinySOL folder or a folder of sources")
    parser.add_argument("--home", type=Path, help="folder for the services (default: a temp folder)")
    parser.add_argument("--shard-size", type=int, default=200, help="objects per transform task (the DAG's default)")
    parser.add_argument("--workers", type=int, default=2, help="Celery workers of the ETL comparison")
    parser.add_argument("--skip-etl", action="store_true", help="no LocalExecutor/Celery ETL comparison")
    parser.add_argument("--training-epochs", type=int, help="also time the training DAG on 1 and 2 workers")
    parser.add_argument("--training-slots", type=int, default=1, help="task slots per worker in the training runs")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    if args.data == DEFAULT_DATA:
        ensure_dataset(args.data)
    folders = demo.dataset_sources(args.data)
    notes = sum(len(tinysol.parse_metadata(f / tinysol.METADATA_FILENAME).rows) for f in folders.values())
    temp_home = args.home is None
    home = Path(tempfile.mkdtemp(prefix="instropitch-bench-celery-")) if temp_home else args.home.resolve()
    figures: dict[str, Any] = {"notes": notes, "sources": list(folders), "shard_size": args.shard_size}
    figures["cpus"] = os.cpu_count()
    os.environ.setdefault(stack.ENV_PROJECT_DIR, str(Path(__file__).resolve().parents[1]))
    services = stack.up(home / "stack")
    ok = True
    try:
        sources, _ = demo.seed_sources(services, folders, BUCKET)
        etl_conf = {"bucket": BUCKET, "sources": sources, "shard_size": args.shard_size}
        runs: list[tuple[str, int, dict | None, int | None]] = []
        if not args.skip_etl:
            runs += [("local", 0, None, None), (f"celery{args.workers}", args.workers, None, None)]
        if args.training_epochs is not None:
            training_conf = {"epochs": args.training_epochs}
            runs += [(f"training_{n}w", n, training_conf, args.training_slots) for n in (1, 2)]
        for label, workers, training_conf, slots in runs:
            print(f"{label}: starting the services ...", flush=True)
            figures[label] = measure(services, home, label, workers, etl_conf, notes, training_conf, slots)
            print(f"{label}: {json.dumps(figures[label])}", flush=True)
            ok &= (
                figures[label]["etl"]["state"]
                == figures[label].get("training", {}).get("state", "success")
                == "success"
            )
        if not args.skip_etl:
            local, celery = figures["local"]["etl"], figures[f"celery{args.workers}"]["etl"]
            figures["etl_throughput_ratio_celery_to_local"] = round(celery["notes_per_s"] / local["notes_per_s"], 3)
        if args.training_epochs is not None and ok:
            one, two = figures["training_1w"]["training"], figures["training_2w"]["training"]
            figures["training_speedup_2w_over_1w"] = round(one["wall_s"] / two["wall_s"], 3)
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
