"""Benchmark: train both models (models/*.yaml) on the full synthetic TinySOL's combined table.

    .venv/bin/python bench/bench_training.py --data .instropitch/bench/synth-full

Runs the ETL library steps on the embedded stack (see `bench_etl.py`), freezes the combined
table with `training_pipeline.make_snapshot` into an MLflow store (SQLite + local
artifacts under `--mlflow-dir`, a temp folder by default), stops the stack, then trains
each model YAML with `training_pipeline.train` in its own process, as the training DAG's
mapped `train` tasks do. Per model it reports the process's wall time, the fit time, the
epochs run (early stopping), s/epoch, the peak RSS of the training process, and the test
metrics (pitch: exact, note-only, octave-only accuracy; instrument: accuracy, macro F1).

Goal: both models together under 5 minutes on 2 CPU cores, with high test accuracy.

To compare configurations without re-running the ETL, keep the store and reuse it:

    .venv/bin/python bench/bench_training.py --mlflow-dir /tmp/bench-mlflow            # ETL + snapshot + train
    .venv/bin/python bench/bench_training.py --mlflow-dir /tmp/bench-mlflow --reuse \\
        --models /tmp/trial/pitch-small.yaml --epochs 3                                  # train only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_DIR.parent
DEFAULT_MODELS = [PROJECT_ROOT / "models" / "pitch.yaml", PROJECT_ROOT / "models" / "instrument.yaml"]
SNAPSHOT_FILE = "snapshot.json"


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def mlflow_env(mlflow_dir: Path) -> dict[str, str]:
    return {
        "MLFLOW_TRACKING_URI": f"sqlite:///{mlflow_dir / 'mlflow.db'}",
        "INSTROPITCH_ARTIFACT_ROOT": str(mlflow_dir / "mlartifacts"),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }


def make_snapshot(data: Path, home: Path | None, mlflow_dir: Path) -> dict[str, Any]:
    """ETL library steps on a fresh stack, then a snapshot of the combined table in the MLflow store."""
    sys.path.insert(0, str(BENCH_DIR))
    import bench_etl

    from instropitch.audio import features
    from instropitch.data import objectstore
    from instropitch.devstack import stack
    from instropitch.pipeline import training as training_pipeline

    bench_etl.ensure_dataset(data)
    temp_home = home is None
    home = Path(tempfile.mkdtemp(prefix="instropitch-bench-train-")) if temp_home else home.resolve()
    services = stack.up(home)
    try:
        client = bench_etl.s3_client(services)
        objectstore.upload_folder(client, bench_etl.BUCKET, bench_etl.PREFIX, data)
        engine = bench_etl.fresh_database(services, "bench_training")
        started = time.perf_counter()
        etl_figures = bench_etl.run_library(
            services, client, engine, features.get_preset("default"), shard_size=200, workers=4, quiet=True
        )
        print(f"ETL: {etl_figures['combined_rows']} rows in {time.perf_counter() - started:.1f} s", flush=True)
        os.environ.update(mlflow_env(mlflow_dir))
        started = time.perf_counter()
        info = training_pipeline.make_snapshot(engine, run_label="bench")
        info["snapshot_s"] = time.perf_counter() - started
        engine.dispose()
    finally:
        stack.down(home)
        if temp_home:
            shutil.rmtree(home, ignore_errors=True)
    (mlflow_dir / SNAPSHOT_FILE).write_text(json.dumps(info, indent=1))
    print(f"snapshot: {info['notes']} notes in {info['snapshot_s']:.1f} s -> {info['snapshot_uri']}", flush=True)
    return info


def child(model: str, snapshot_json: Path, epochs: int | None) -> int:
    """Train one model in this process and print its figures as one JSON line."""
    started = time.perf_counter()
    from instropitch.pipeline import training as training_pipeline

    info = json.loads(snapshot_json.read_text())
    result = training_pipeline.train(model, info, epochs=epochs)
    wall = time.perf_counter() - started
    metrics = result["metrics"]
    epochs_run = int(metrics.get("epochs_trained", 0))
    figures = {
        "model": result["model"],
        "yaml": model,
        "wall_s": wall,
        "fit_s": metrics["training_time_s"],
        "epochs": epochs_run,
        "best_epoch": int(metrics.get("best_epoch", -1)),
        "s_per_epoch": metrics["training_time_s"] / max(1, epochs_run),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        **{k: v for k, v in metrics.items() if k.startswith("test_")},
    }
    print("RESULT " + json.dumps(figures), flush=True)
    return 0


def train_all(models: list[Path], mlflow_dir: Path, epochs: int | None, threads: int | None) -> list[dict[str, Any]]:
    env = {**os.environ, **mlflow_env(mlflow_dir)}
    if threads:
        env["INSTROPITCH_TF_THREADS"] = str(threads)
    results = []
    for model in models:
        command = [sys.executable, __file__, "--child", str(model), "--mlflow-dir", str(mlflow_dir)]
        if epochs is not None:
            command += ["--epochs", str(epochs)]
        load_before = load_average()
        process = subprocess.run(command, env=env, capture_output=True, text=True)
        lines = [line for line in process.stdout.splitlines() if line.startswith("RESULT ")]
        if process.returncode != 0 or not lines:
            print(process.stdout[-3000:], process.stderr[-5000:], sep="\n", file=sys.stderr)
            raise RuntimeError(f"training {model} failed (exit {process.returncode})")
        figures = json.loads(lines[-1][len("RESULT ") :])
        figures["load_before"], figures["load_after"] = load_before, load_average()
        figures["children_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        results.append(figures)
        print(format_result(figures), flush=True)
    return results


def format_result(f: dict[str, Any]) -> str:
    if "test_note_accuracy" in f:
        scores = f"exact {f['test_accuracy']:.4f}  note {f['test_note_accuracy']:.4f}  octave {f['test_octave_accuracy']:.4f}"
    else:
        scores = f"accuracy {f['test_accuracy']:.4f}  macro F1 {f['test_macro_f1']:.4f}"
    return (
        f"{f['model']:11s} {Path(f['yaml']).name:24s} wall {f['wall_s']:6.1f} s  fit {f['fit_s']:6.1f} s  "
        f"epochs {f['epochs']:2d} (best {f['best_epoch'] + 1})  {f['s_per_epoch']:5.2f} s/epoch  "
        f"peak RSS {f['peak_rss_mb']:5.0f} MB  {scores}  load {f['load_before']} -> {f['load_after']}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=PROJECT_ROOT / ".instropitch/bench/synth-full")
    parser.add_argument("--home", type=Path, help="folder for the embedded stack (default: a temp folder)")
    parser.add_argument("--mlflow-dir", type=Path, help="MLflow store (SQLite + artifacts); default: a temp folder")
    parser.add_argument("--reuse", action="store_true", help=f"reuse {SNAPSHOT_FILE} in --mlflow-dir (no ETL)")
    parser.add_argument("--models", nargs="+", type=Path, default=DEFAULT_MODELS, help="model YAML files")
    parser.add_argument("--epochs", type=int, help="override every model's epochs (e.g. 3 to compare s/epoch)")
    parser.add_argument("--threads", type=int, help="INSTROPITCH_TF_THREADS for the training processes")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        return child(args.child, args.mlflow_dir / SNAPSHOT_FILE, args.epochs)

    temp_store = args.mlflow_dir is None
    mlflow_dir = Path(tempfile.mkdtemp(prefix="instropitch-bench-mlflow-")) if temp_store else args.mlflow_dir
    mlflow_dir = mlflow_dir.resolve()
    mlflow_dir.mkdir(parents=True, exist_ok=True)
    print(f"machine {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"load average at start: {load_average()}", flush=True)
    try:
        if args.reuse and (mlflow_dir / SNAPSHOT_FILE).exists():
            info = json.loads((mlflow_dir / SNAPSHOT_FILE).read_text())
        else:
            info = make_snapshot(args.data.resolve(), args.home, mlflow_dir)
        started = time.perf_counter()
        results = train_all([m.resolve() for m in args.models], mlflow_dir, args.epochs, args.threads)
        total = time.perf_counter() - started
    finally:
        if temp_store:
            shutil.rmtree(mlflow_dir, ignore_errors=True)
    print(f"all models: {total:.1f} s wall ({total / 60:.2f} min); load average now {load_average()}")
    print(f"peak RSS: this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    if args.json:
        args.json.write_text(json.dumps({"snapshot": info, "total_s": total, "models": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
