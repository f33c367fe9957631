"""Benchmark: the ETL over the full synthetic TinySOL (2,913 notes), library steps and the whole DAG.

    .venv/bin/python bench/bench_etl.py --data .instropitch/bench/synth-full

Starts the embedded stack (PostgreSQL from pgserver, moto's S3 server on loopback) under
`--home` (a temp folder by default, removed afterwards), renders the full synthetic set
into `--data` if it is not there yet, uploads it, then measures

(a) the library path on a fresh database: `extract_metadata`, `plan`, `transform_shard`
    over every shard (split into compute = ranged reads + spectrograms, and load = COPY +
    upsert + commit), `build_combined`, `quality_gate`;
(b) the whole `instropitch_etl` DAG with `airflow dags test` on another fresh database
    (mapped transform tasks run one after another in one process).

Goal: ≥ 150 files/s through transform + load, and the whole DAG under 60 s on 2 cores.
Prints a summary; `--json FILE` also writes the figures.

Wall times depend on whatever else runs on the machine, so both parts also report CPU time
per note of every process involved: this one (`client`: GETs, spectrograms, COPY), the S3
server and PostgreSQL (all their processes, from psutil), and in (b) the `airflow dags test`
process. `idle_files_per_s_estimate` = cores × 1000 / total CPU-ms per note: what the
machine would do with nothing else running, if the processes kept every core busy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from instropitch import synth, tinysol
from instropitch.audio import features
from instropitch.data import objectstore, warehouse
from instropitch.devstack import local_airflow, stack
from instropitch.pipeline import etl

BUCKET = "instropitch"
PREFIX = "TinySOL/"
DEFAULT_DATA = Path(".instropitch/bench/synth-full")


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def ensure_dataset(folder: Path) -> None:
    """Render the full synthetic set into `folder` unless its metadata CSV is already there."""
    if (folder / tinysol.METADATA_FILENAME).exists():
        return
    print(f"rendering the full synthetic set into {folder} ...", flush=True)
    summary = synth.render_dataset(folder, workers=0, progress=False)
    print(f"  {summary.files} files in {summary.seconds:.1f} s", flush=True)


def s3_client(services: stack.Services) -> Any:
    return objectstore.make_client(
        services.s3_endpoint, aws_access_key_id=stack.S3_ACCESS_KEY, aws_secret_access_key=stack.S3_SECRET_KEY
    )


def fresh_database(services: stack.Services, name: str) -> Engine:
    """Drop and create database `name`; return an engine on it with the warehouse schema."""
    admin = warehouse.engine_for(services.pg_socket_dir, 5432, services.pg_user, None, services.pg_database)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    engine = warehouse.engine_for(services.pg_socket_dir, 5432, services.pg_user, None, name)
    warehouse.create_schema(engine)
    return engine


class _ServiceCpu:
    """CPU seconds (user + system) used so far by the S3 server and PostgreSQL, all their processes.

    Exited PostgreSQL backends are counted through the postmaster's reaped-children times.
    """

    def __init__(self, services: stack.Services) -> None:
        import psutil

        self._psutil = psutil
        self.s3 = psutil.Process(services.s3_pid)
        pid_file = Path(services.home, "pg", "postmaster.pid")
        self.postgres = psutil.Process(int(pid_file.read_text().split()[0]))

    def _tree(self, root: Any, reaped: bool) -> float:
        total = 0.0
        for proc in [root, *root.children(recursive=True)]:
            try:
                t = proc.cpu_times()
            except self._psutil.NoSuchProcess:
                continue
            total += t.user + t.system
            if reaped:
                total += t.children_user + t.children_system
        return total

    def read(self) -> dict[str, float]:
        return {"s3": self._tree(self.s3, False), "postgres": self._tree(self.postgres, True)}


def cpu_per_note(before: dict[str, float], after: dict[str, float], notes: int) -> dict[str, float]:
    """CPU-ms per note of each process (keys of the two readings), their total, and the idle-machine estimate."""
    n = max(1, notes)
    out = {f"cpu_ms_per_note_{k}": (after[k] - before[k]) / n * 1000 for k in before}
    total = sum(out.values())
    out["cpu_ms_per_note_total"] = total
    out["idle_files_per_s_estimate"] = (os.cpu_count() or 1) * 1000 / max(total, 1e-9)
    return out


def _cpu_reading(services_cpu: _ServiceCpu, **own: float) -> dict[str, float]:
    return {**own, **services_cpu.read()}


class _Probe:
    """Counts ranged GETs and marks when each shard's load (upsert + commit) begins."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.bytes = 0
        self.load_started: float | None = None
        self._fetch = objectstore.RangedObjectReader._fetch
        self._upsert = warehouse.upsert_spectrograms

    def __enter__(self) -> _Probe:
        probe = self

        def fetch(reader: objectstore.RangedObjectReader, start: int, length: int) -> bytes:
            data = probe._fetch(reader, start, length)
            with probe.lock:
                probe.requests += 1
                probe.bytes += len(data)
            return data

        def upsert(conn: Any, notes: Any) -> int:
            probe.load_started = time.perf_counter()
            return probe._upsert(conn, notes)

        objectstore.RangedObjectReader._fetch = fetch  # type: ignore[method-assign]
        warehouse.upsert_spectrograms = upsert  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        objectstore.RangedObjectReader._fetch = self._fetch  # type: ignore[method-assign]
        warehouse.upsert_spectrograms = self._upsert


def local_compute(folder: Path, config: features.FeatureConfig, n: int = 300) -> tuple[float, float]:
    """(wall ms, CPU ms) per file of `compute_features` on local files, one thread (the transform's CPU floor)."""
    rows = tinysol.parse_metadata(folder / tinysol.METADATA_FILENAME).rows[:: max(1, 2913 // n)][:n]
    features.compute_features(folder / rows[0].path, config)  # warm the filter caches
    started, cpu = time.perf_counter(), time.process_time()
    for row in rows:
        features.compute_features(folder / row.path, config)
    return (time.perf_counter() - started) / len(rows) * 1000, (time.process_time() - cpu) / len(rows) * 1000


def run_library(
    services: stack.Services,
    client: Any,
    engine: Engine,
    config: features.FeatureConfig,
    *,
    shard_size: int,
    workers: int,
    quiet: bool = False,
) -> dict[str, Any]:
    """The DAG's steps through the library, timed one by one."""
    out: dict[str, Any] = {}
    started = time.perf_counter()
    summary = etl.extract_metadata(client, engine, BUCKET, PREFIX)
    out["extract_s"] = time.perf_counter() - started

    started = time.perf_counter()
    planned = etl.plan(client, engine, BUCKET, PREFIX, config.digest(), shard_size=shard_size)
    out["plan_s"] = time.perf_counter() - started
    out["files"] = planned.to_transform
    out["shards"] = len(planned.shards)

    compute = load = 0.0
    loaded = rejected = 0
    services_cpu = _ServiceCpu(services)
    with _Probe() as probe:
        cpu0 = os.times()
        before = _cpu_reading(services_cpu, client=time.process_time())
        started = time.perf_counter()
        for i, shard in enumerate(planned.shards, start=1):
            t0 = time.perf_counter()
            probe.load_started = None
            result = etl.transform_shard(client, engine, BUCKET, shard, config, workers=workers)
            t1 = time.perf_counter()
            split = probe.load_started or t1
            compute += split - t0
            load += t1 - split
            loaded += result.loaded
            rejected += result.rejected
            if not quiet:
                print(
                    f"  shard {i}/{len(planned.shards)}: {len(shard)} files in {t1 - t0:.1f} s "
                    f"(compute {split - t0:.1f}, load {t1 - split:.2f})",
                    flush=True,
                )
        out["transform_load_s"] = time.perf_counter() - started
        cpu1 = os.times()
        engine.dispose()  # its PostgreSQL backend exits, so its CPU time is counted (reaped)
        time.sleep(0.5)
        after = _cpu_reading(services_cpu, client=time.process_time())
    out["compute_s"], out["load_s"] = compute, load
    out["loaded"], out["rejected"] = loaded, rejected
    out["s3_gets"], out["s3_mb"] = probe.requests, probe.bytes / 1e6
    out["bench_cpu_s"] = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    n = max(1, planned.to_transform)
    out |= cpu_per_note(before, after, n)
    out["files_per_s"] = n / out["transform_load_s"]
    out["compute_files_per_s"] = n / max(compute, 1e-9)
    out["load_files_per_s"] = n / max(load, 1e-9)

    started = time.perf_counter()
    combined = etl.build_combined(engine, config.digest())
    out["build_combined_s"] = time.perf_counter() - started
    out["combined_rows"] = combined["rows"]

    started = time.perf_counter()
    etl.quality_gate(engine, summary.csv_rows)
    out["quality_gate_s"] = time.perf_counter() - started
    out["library_total_s"] = sum(
        out[k] for k in ("extract_s", "plan_s", "transform_load_s", "build_combined_s", "quality_gate_s")
    )
    return out


def run_dag(services: stack.Services, home: Path, shard_size: int) -> dict[str, Any]:
    """The whole `instropitch_etl` DAG with `airflow dags test` on a fresh database."""
    out: dict[str, Any] = {}
    engine = fresh_database(services, "bench_dag")
    env = local_airflow.environment(services, {"AIRFLOW_HOME": str(home / "airflow")})
    postgres = json.loads(env["AIRFLOW_CONN_POSTGRES_DEFAULT"])
    postgres["schema"] = "bench_dag"
    env["AIRFLOW_CONN_POSTGRES_DEFAULT"] = json.dumps(postgres)
    started = time.perf_counter()
    local_airflow.migrate(env)
    out["airflow_migrate_s"] = time.perf_counter() - started
    services_cpu = _ServiceCpu(services)

    def airflow_cpu() -> float:  # the `airflow dags test` process, once it has exited (reaped)
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    before = _cpu_reading(services_cpu, airflow=airflow_cpu())
    result = local_airflow.dags_test(
        "instropitch_etl", env, {"bucket": BUCKET, "prefix": PREFIX, "shard_size": shard_size}
    )
    engine.dispose()
    time.sleep(0.5)
    after = _cpu_reading(services_cpu, airflow=airflow_cpu())
    out["dag_s"] = result.seconds
    out["dag_ok"] = result.ok
    kept = DEFAULT_DATA.parent / result.log_path.name  # the stack's home may be a temp folder
    kept.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(result.log_path, kept)
    out["dag_log"] = str(kept)
    log = result.log_path.read_text(errors="replace")
    shard_seconds = [
        float(line.split(" in ")[1].split(" s ")[0]) for line in log.splitlines() if "shard loaded" in line
    ]
    out["dag_transform_tasks"] = len(shard_seconds)
    out["dag_transform_s"] = sum(shard_seconds)
    out["dag_rows"] = warehouse.table_counts(engine)["instruments_notes_spectrogram"]
    engine.dispose()
    out |= {f"dag_{k}": v for k, v in cpu_per_note(before, after, out["dag_rows"]).items()}
    if not result.ok:
        print(result.tail(60), file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="full synthetic set (rendered if absent)")
    parser.add_argument("--home", type=Path, help="folder for the embedded stack (default: a temp folder)")
    parser.add_argument("--shard-size", type=int, default=200, help="objects per shard (the DAG's default: 200)")
    parser.add_argument("--workers", type=int, default=4, help="transform_shard's workers (the DAG's default: 4)")
    parser.add_argument("--skip-dag", action="store_true", help="only the library path")
    parser.add_argument("--skip-library", action="store_true", help="only the DAG")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    ensure_dataset(args.data)
    config = features.get_preset("default")
    temp_home = args.home is None
    home = Path(tempfile.mkdtemp(prefix="instropitch-bench-etl-")) if temp_home else args.home.resolve()
    figures: dict[str, Any] = {"load_average_start": load_average(), "shard_size": args.shard_size}
    figures["workers"] = args.workers
    services = stack.up(home)
    try:
        client = s3_client(services)
        started = time.perf_counter()
        uploaded = objectstore.upload_folder(client, BUCKET, PREFIX, args.data)
        figures["upload_s"], figures["uploaded"] = time.perf_counter() - started, uploaded
        figures["local_compute_ms_per_file"], figures["local_compute_cpu_ms_per_file"] = local_compute(
            args.data, config
        )
        if not args.skip_library:
            engine = fresh_database(services, "bench_library")
            try:
                figures |= run_library(
                    services, client, engine, config, shard_size=args.shard_size, workers=args.workers, quiet=args.quiet
                )
            finally:
                engine.dispose()
            figures["load_average_after_library"] = load_average()
        if not args.skip_dag:
            figures |= run_dag(services, home, args.shard_size)
            figures["load_average_after_dag"] = load_average()
    finally:
        stack.down(home)
        if temp_home:
            shutil.rmtree(home, ignore_errors=True)

    print(f"machine    {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    for key, value in figures.items():
        print(f"{key:28s} {value:.3f}" if isinstance(value, float) else f"{key:28s} {value}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    ok = figures.get("dag_ok", True) and figures.get("rejected", 0) == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
