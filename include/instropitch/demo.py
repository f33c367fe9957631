"""`make demo`: the whole pipeline on one machine with embedded services and no Docker.

Renders the synthetic TinySOL (once), starts PostgreSQL and the S3 server, uploads the
dataset, runs `instropitch_etl` then `instropitch_training` with real Airflow
(`airflow dags test`), and prints what landed where.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from instropitch import local_airflow, objectstore, stack

BUCKET = objectstore.DEFAULT_BUCKET
PREFIX = objectstore.DEFAULT_PREFIX


@dataclass
class DemoOptions:
    home: Path
    scale: float = 1.0
    seed: int = 0
    epochs: int | None = None
    train: bool = True
    keep_running: bool = False


def dataset_dir(home: Path, seed: int, scale: float) -> Path:
    return home / "data" / f"synth-seed{seed}-scale{scale:g}"


def ensure_dataset(folder: Path, seed: int, scale: float) -> Path:
    """Render the synthetic TinySOL into `folder` unless a complete render is already there."""
    from instropitch import synth
    from instropitch.tinysol import METADATA_FILENAME

    if (folder / METADATA_FILENAME).exists():
        print(f"dataset: reusing {folder}")
        return folder
    print(f"dataset: rendering synthetic TinySOL (scale {scale:g}) into {folder}")
    print(f"dataset: {synth.render_dataset(folder, seed=seed, scale=scale)}")
    return folder


def seed_bucket(services: stack.Services, folder: Path, bucket: str = BUCKET, prefix: str = PREFIX) -> int:
    """Upload a TinySOL-layout folder to the embedded S3 server (unchanged objects are skipped)."""
    client = objectstore.make_client(
        services.s3_endpoint, aws_access_key_id=stack.S3_ACCESS_KEY, aws_secret_access_key=stack.S3_SECRET_KEY
    )
    return objectstore.upload_folder(client, bucket, prefix, folder)


def _summary_etl(services: stack.Services) -> str:
    from sqlalchemy import text

    from instropitch import warehouse

    engine = warehouse.engine_for(services.pg_socket_dir, 5432, services.pg_user, None, services.pg_database)
    counts = warehouse.table_counts(engine)
    with engine.connect() as conn:
        stages = dict(conn.execute(text("SELECT stage, count(*) FROM etl_rejects GROUP BY stage")).all())
    engine.dispose()
    lines = [f"  {table:<32} {n:>6} rows" for table, n in counts.items()]
    lines.append(f"  rejects by stage: {stages or 'none'}")
    return "\n".join(lines)


def _summary_training(services: stack.Services) -> str:
    from instropitch import registry

    lines = []
    for name in ("pitch", "instrument"):
        info = registry.champion_info(name)
        if info is None:
            lines.append(f"  instropitch-{name}: no champion")
            continue
        accuracy = "n/a" if info.test_accuracy is None else f"{info.test_accuracy:.4f}"
        lines.append(f"  {info.model_name} v{info.version} is champion: test accuracy {accuracy} ({info.model_uri})")
    return "\n".join(lines)


def run(options: DemoOptions) -> int:
    """Run the demo; return a process exit status."""
    import os

    home = options.home.resolve()
    started = time.perf_counter()
    folder = ensure_dataset(dataset_dir(home, options.seed, options.scale), options.seed, options.scale)
    services = stack.up(home)
    print(f"stack: PostgreSQL on {services.pg_socket_dir}, S3 API on {services.s3_endpoint}")
    try:
        uploaded = seed_bucket(services, folder)
        print(f"s3: {uploaded} objects uploaded to s3://{BUCKET}/{PREFIX}")
        env = local_airflow.environment(services)
        os.environ.update({k: v for k, v in env.items() if k.startswith(("MLFLOW_", "INSTROPITCH_"))})
        local_airflow.migrate(env)

        etl = local_airflow.dags_test("instropitch_etl", env, {"bucket": BUCKET, "prefix": PREFIX})
        print(
            f"airflow: instropitch_etl {'succeeded' if etl.ok else 'FAILED'} in {etl.seconds:.0f} s (log {etl.log_path})"
        )
        if not etl.ok:
            print(etl.tail())
            return 1
        print(_summary_etl(services))

        if options.train:
            conf = {"epochs": options.epochs} if options.epochs is not None else {}
            training = local_airflow.dags_test("instropitch_training", env, conf)
            print(
                f"airflow: instropitch_training {'succeeded' if training.ok else 'FAILED'} "
                f"in {training.seconds:.0f} s (log {training.log_path})"
            )
            if not training.ok:
                print(training.tail())
                return 1
            print(_summary_training(services))
        print(f"done in {time.perf_counter() - started:.0f} s")
        print(f"MLflow UI: .venv/bin/mlflow ui --backend-store-uri {services.mlflow_uri}  (then http://127.0.0.1:5000)")
        return 0
    finally:
        if not options.keep_running:
            stack.down(home)
