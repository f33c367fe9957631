"""Benchmark: prediction latency, batch throughput and the CLI's cold start (both real CNNs).

    .venv/bin/python bench/bench_predict.py --json /tmp/predict.json
    .venv/bin/python bench/bench_predict.py --export /tmp/bench-export --data /tmp/bench-notes --json /tmp/p.json

Without `--export`, it renders a small synthetic set (`synth.render_dataset`, `--scale`,
~290 notes at 0.1), computes the "default" features, freezes a snapshot and trains the REAL
`models/pitch.yaml` and `models/instrument.yaml` for `--epochs` (1) each into a temp SQLite
MLflow store, promotes both to `champion` (`registry.promote`) and writes
`Predictor.from_registry().export(DIR)` (`--keep-export DIR` keeps it). Accuracy does not
matter here, only the models' size and speed. The build runs in a child process, so the
measuring process holds nothing but the exported predictor.

Measured on the rendered notes of 2-10 s (`--files` N, default 200; `--data` reuses a folder):

1. warm per-file latency: `Predictor.from_export` once, 5 warm-up files, then
   `predict_file` one file at a time (decode + features + both models): p50/p95/mean; then the
   same files split into features (`audio.read_info` + `compute_features`, as `predict_many`
   does), models (both `_Model.proba` on a batch of one) and the rest (`Prediction` building);
2. batch throughput: `predict_many` over all N files at batch sizes 64 (default), 16 and 256,
   plus the features-only and models-only rates at batch 64;
3. CLI cold start: `instropitch predict --from-export DIR one.wav --json` from process start to
   exit, 5 runs, median; plus a phase breakdown in a fresh process and `python -X importtime`'s
   top offenders when the median exceeds 5 s.

Goals (issue): warm p50 <= 20 ms, batch >= 100 files/s. When one is missed, a cProfile of the
loop in question is printed (and kept in the JSON). The load average (1, 5, 15 min) is recorded
next to every figure: the 2 cores are shared with other jobs.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_DIR.parent
VENV_BIN = Path(sys.executable).parent
DEFAULT_MODELS = [PROJECT_ROOT / "models" / "pitch.yaml", PROJECT_ROOT / "models" / "instrument.yaml"]
GOAL_P50_MS = 20.0
GOAL_FILES_PER_S = 100.0
WARMUP = 5
MIN_S, MAX_S = 2.0, 10.0


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {load_average()}] {message}", flush=True)


def quiet_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.pop("INSTROPITCH_EXPORT_DIR", None)
    env.update(extra or {})
    return env


# --------------------------------------------------------------------------- data


def ensure_notes(data: Path, scale: float, seed: int) -> dict[str, Any]:
    """The rendered folder (rendered once, when it has no metadata CSV yet)."""
    from instropitch import synth, tinysol

    csv = data / tinysol.METADATA_FILENAME
    if csv.is_file():
        return {"rendered": False}
    log(f"rendering scale {scale} into {data}")
    summary = synth.render_dataset(data, seed=seed, scale=scale, workers=2, progress=False)
    log(f"rendered {summary.files} notes, {summary.audio_seconds:.0f} s of audio in {summary.seconds:.1f} s")
    return {"rendered": True, "files": summary.files, "render_s": round(summary.seconds, 1)}


def note_rows(data: Path) -> list[Any]:
    from instropitch import tinysol

    return sorted(tinysol.parse_metadata(data / tinysol.METADATA_FILENAME).rows, key=lambda r: r.path)


def bench_files(data: Path, n: int) -> tuple[list[str], dict[str, Any]]:
    """N WAVs of 2-10 s from the folder, spread over the instruments (cycled if fewer)."""
    from instropitch import audio

    paths, durations, sizes = [], [], []
    for row in note_rows(data):
        path = data / row.path
        info = audio.read_info(path)
        if MIN_S <= info.duration <= MAX_S:
            paths.append(str(path))
            durations.append(info.duration)
            sizes.append(path.stat().st_size)
    if not paths:
        raise SystemExit(f"no WAV of {MIN_S}-{MAX_S} s in {data}")
    # interleave so that any prefix (the warm-up, a batch) mixes instruments
    step = max(1, len(paths) // min(n, len(paths)))
    order = [i for start in range(step) for i in range(start, len(paths), step)]
    chosen = [order[i % len(order)] for i in range(n)]
    files = [paths[i] for i in chosen]
    stats = {
        "available": len(paths),
        "used": n,
        "distinct": len(set(chosen)),
        "duration_s": {
            "min": round(min(durations[i] for i in chosen), 2),
            "mean": round(statistics.mean(durations[i] for i in chosen), 2),
            "max": round(max(durations[i] for i in chosen), 2),
        },
        "mean_mb": round(statistics.mean(sizes[i] for i in chosen) / 1e6, 3),
    }
    return files, stats


# -------------------------------------------------------------------------- build


def build_export(data: Path, out: Path, epochs: int, models: list[Path]) -> None:
    """Snapshot of the rendered notes -> train the real YAMLs -> promote -> export (runs in a child)."""
    import numpy as np

    mlflow_dir = Path(tempfile.mkdtemp(prefix="instropitch-bench-predict-mlflow-"))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{mlflow_dir / 'mlflow.db'}"
    os.environ["INSTROPITCH_ARTIFACT_ROOT"] = str(mlflow_dir / "mlartifacts")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        from instropitch.audio import features
        from instropitch.ml import registry
        from instropitch.ml.snapshot import create_snapshot
        from instropitch.ml.training import train_and_log
        from instropitch.modelspec import load_spec
        from instropitch.pipeline.training import ensure_experiment
        from instropitch.serving.predictor import Predictor

        config = features.get_preset("default")
        rows = note_rows(data)
        started = time.perf_counter()
        feats = [features.compute_features(data / r.path, config) for r in rows]
        log(f"features of {len(rows)} notes in {time.perf_counter() - started:.1f} s")
        snapshot = create_snapshot(
            [r.path for r in rows],
            [r.pitch_id for r in rows],
            [r.instrument_abbr for r in rows],
            [r.fold for r in rows],
            np.stack([f.pitch for f in feats]),
            np.stack([f.instrument for f in feats]),
            seed=1,
            feature_digest=config.digest(),
            feature_preset="default",
        )
        ensure_experiment()
        for path in models:
            spec = load_spec(path)
            started = time.perf_counter()
            result = train_and_log(spec, snapshot, epochs_override=epochs)
            decision = registry.promote(spec.name, result.version, snapshot)
            log(
                f"{spec.name}: v{result.version} trained {epochs} epoch(s) in {time.perf_counter() - started:.1f} s, "
                f"test accuracy {result.test_accuracy:.3f}, promoted={decision.promoted}"
            )
        Predictor.from_registry().export(out)
        log(f"exported to {out}")
    finally:
        shutil.rmtree(mlflow_dir, ignore_errors=True)


def export_info(export: Path) -> dict[str, Any]:
    """Model files, parameter counts and input shapes of the export."""
    from instropitch.serving.predictor import Predictor

    predictor = Predictor.from_export(export)
    out: dict[str, Any] = {}
    for role, model in predictor.models.items():
        out[role] = {
            "params": int(model.keras.count_params()),
            "input_shape": list(model.input_shape),
            "classes": len(model.class_names),
            "file_kb": round((export / f"{role}.keras").stat().st_size / 1024, 1),
        }
    return out


# ------------------------------------------------------------------------ measure


def percentiles(values_s: list[float]) -> dict[str, float]:
    ms = sorted(v * 1000 for v in values_s)

    def pct(p: float) -> float:
        k = (len(ms) - 1) * p
        lo, hi = int(k), min(int(k) + 1, len(ms) - 1)
        return ms[lo] + (ms[hi] - ms[lo]) * (k - lo)

    return {
        "n": len(ms),
        "p50_ms": round(pct(0.50), 2),
        "p95_ms": round(pct(0.95), 2),
        "mean_ms": round(statistics.mean(ms), 2),
        "min_ms": round(ms[0], 2),
        "max_ms": round(ms[-1], 2),
    }


def profile_top(func, n: int = 18) -> tuple[str, list[dict[str, Any]]]:
    """Run `func` under cProfile; (printable table, top functions by cumulative time)."""
    prof = cProfile.Profile()
    prof.enable()
    func()
    prof.disable()
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf).strip_dirs().sort_stats("cumulative")
    stats.print_stats(n)
    tottime = io.StringIO()
    pstats.Stats(prof, stream=tottime).strip_dirs().sort_stats("tottime").print_stats(n)
    top = []
    for (file, line, fn), (_cc, nc, tt, ct, _callers) in sorted(
        stats.stats.items(), key=lambda kv: kv[1][3], reverse=True
    )[:40]:
        top.append(
            {"function": f"{file}:{line}:{fn}", "calls": nc, "tottime_s": round(tt, 4), "cumtime_s": round(ct, 4)}
        )
    return buf.getvalue() + "\n--- by tottime ---\n" + tottime.getvalue(), top


def measure_latency(predictor: Any, files: list[str], profile: bool) -> dict[str, Any]:
    import numpy as np

    from instropitch import audio
    from instropitch.audio.features import compute_features

    for path in files[:WARMUP]:
        predictor.predict_file(path)
    load_before = load_average()
    times = []
    for path in files:
        started = time.perf_counter()
        result = predictor.predict_file(path)
        times.append(time.perf_counter() - started)
        if not result.ok:
            raise SystemExit(f"{path}: {result.error}")
    end_to_end = {**percentiles(times), "load_avg": f"{load_before} -> {load_average()}"}
    log(f"predict_file: {end_to_end}")

    # the same path, split: features (header + windows + STFTs), models, Prediction building
    load_before = load_average()
    feat_t, model_t, pitch_t, inst_t, rest_t = [], [], [], [], []
    for path in files:
        t0 = time.perf_counter()
        with audio.open_source(path, path) as src:
            info = audio.read_info(src, max_duration=audio.DEFAULT_MAX_DURATION)
            feats = compute_features(src, predictor.features, info=info)
        x = {
            "pitch": np.stack([feats.pitch]).astype(np.float32, copy=False),
            "instrument": np.stack([feats.instrument]).astype(np.float32, copy=False),
        }
        t1 = time.perf_counter()
        p_pitch = predictor.pitch_model.proba(x[predictor.pitch_model.input])
        t2 = time.perf_counter()
        p_inst = predictor.instrument_model.proba(x[predictor.instrument_model.input])
        t3 = time.perf_counter()
        predictor._prediction(path, p_pitch[0], p_inst[0], 3)
        t4 = time.perf_counter()
        feat_t.append(t1 - t0)
        pitch_t.append(t2 - t1)
        inst_t.append(t3 - t2)
        model_t.append(t3 - t1)
        rest_t.append(t4 - t3)
    split = {
        "features": percentiles(feat_t),
        "models": percentiles(model_t),
        "pitch_model": percentiles(pitch_t),
        "instrument_model": percentiles(inst_t),
        "prediction_building": percentiles(rest_t),
        "load_avg": f"{load_before} -> {load_average()}",
    }
    log(
        "split p50: features {:.2f} ms, models {:.2f} ms (pitch {:.2f}, instrument {:.2f}), rest {:.3f} ms".format(
            split["features"]["p50_ms"],
            split["models"]["p50_ms"],
            split["pitch_model"]["p50_ms"],
            split["instrument_model"]["p50_ms"],
            split["prediction_building"]["p50_ms"],
        )
    )
    out: dict[str, Any] = {"predict_file": end_to_end, "split": split}
    if profile or end_to_end["p50_ms"] > GOAL_P50_MS:
        text, top = profile_top(lambda: [predictor.predict_file(p) for p in files[:100]])
        print(f"\ncProfile of 100 x predict_file:\n{text}", flush=True)
        out["profile_top"] = top
    return out


def measure_batches(predictor: Any, files: list[str], batch_sizes: list[int], profile: bool) -> dict[str, Any]:
    import numpy as np

    from instropitch import audio
    from instropitch.audio.features import compute_features

    out: dict[str, Any] = {"runs": []}
    predictor.predict_many(files[:64], batch_size=64)  # warm: a batch shape of 64 traced once
    for bs in batch_sizes:
        predictor.predict_many(files[: min(bs, len(files))], batch_size=bs)  # warm this batch shape
        load_before = load_average()
        started = time.perf_counter()
        results = predictor.predict_many(files, batch_size=bs)
        seconds = time.perf_counter() - started
        bad = [r for r in results if not r.ok]
        if bad:
            raise SystemExit(f"{bad[0].file}: {bad[0].error}")
        run = {
            "batch_size": bs,
            "files": len(files),
            "seconds": round(seconds, 3),
            "files_per_s": round(len(files) / seconds, 1),
            "load_avg": f"{load_before} -> {load_average()}",
        }
        out["runs"].append(run)
        log(f"predict_many: {run}")

    # where a batch's time goes: features alone, then both models on stacked inputs of 64
    load_before = load_average()
    started = time.perf_counter()
    stacked: dict[str, list[Any]] = {"pitch": [], "instrument": []}
    for path in files:
        with audio.open_source(path, path) as src:
            info = audio.read_info(src, max_duration=audio.DEFAULT_MAX_DURATION)
            feats = compute_features(src, predictor.features, info=info)
        stacked["pitch"].append(feats.pitch)
        stacked["instrument"].append(feats.instrument)
    feat_s = time.perf_counter() - started
    x = {k: np.stack(v).astype(np.float32) for k, v in stacked.items()}
    started = time.perf_counter()
    for i in range(0, len(files), 64):
        predictor.pitch_model.proba(x[predictor.pitch_model.input][i : i + 64])
    pitch_s = time.perf_counter() - started
    started = time.perf_counter()
    for i in range(0, len(files), 64):
        predictor.instrument_model.proba(x[predictor.instrument_model.input][i : i + 64])
    inst_s = time.perf_counter() - started
    out["split_batch64"] = {
        "features_s": round(feat_s, 3),
        "features_ms_per_file": round(feat_s / len(files) * 1000, 2),
        "pitch_model_ms_per_file": round(pitch_s / len(files) * 1000, 2),
        "instrument_model_ms_per_file": round(inst_s / len(files) * 1000, 2),
        "features_only_files_per_s": round(len(files) / feat_s, 1),
        "models_only_files_per_s": round(len(files) / (pitch_s + inst_s), 1),
        "load_avg": f"{load_before} -> {load_average()}",
    }
    log(f"batch split: {out['split_batch64']}")
    default = next((r for r in out["runs"] if r["batch_size"] == 64), out["runs"][0])
    if profile or default["files_per_s"] < GOAL_FILES_PER_S:
        text, top = profile_top(lambda: predictor.predict_many(files, batch_size=64))
        print(f"\ncProfile of predict_many({len(files)} files, batch 64):\n{text}", flush=True)
        out["profile_top"] = top
    return out


def measure_alternatives(predictor: Any, files: list[str]) -> dict[str, Any]:
    """Both models on one file's spectrograms (batch of 1): the eager call `predict` uses vs.

    a `tf.function` with a batch-agnostic input signature, and the TFLite interpreter (a
    conversion of the same Keras models). Nothing here changes the library; it shows what
    the single-file path could cost.
    """
    import numpy as np
    import tensorflow as tf

    from instropitch.audio.features import compute_features

    feats = [compute_features(path, predictor.features) for path in files]
    xs = [
        {
            "pitch": feats[i].pitch[None].astype(np.float32),
            "instrument": feats[i].instrument[None].astype(np.float32),
        }
        for i in range(len(files))
    ]
    models = predictor.models

    def runner_eager(role: str):
        m = models[role]
        return lambda x: np.asarray(m.keras(x, training=False))

    def runner_tf_function(role: str):
        m = models[role]
        sig = [tf.TensorSpec([None, *m.input_shape], tf.float32)]
        fn = tf.function(lambda x: m.keras(x, training=False), input_signature=sig)
        return lambda x: fn(x).numpy()

    def runner_tflite(role: str):
        m = models[role]
        converter = tf.lite.TFLiteConverter.from_keras_model(m.keras)
        interp = tf.lite.Interpreter(model_content=converter.convert(), num_threads=2)
        interp.allocate_tensors()
        inp = interp.get_input_details()[0]["index"]
        out = interp.get_output_details()[0]["index"]

        def run(x):
            interp.set_tensor(inp, x)
            interp.invoke()
            return interp.get_tensor(out)

        return run

    out: dict[str, Any] = {}
    reference: dict[str, list[Any]] = {}
    for name, make in (("eager", runner_eager), ("tf_function", runner_tf_function), ("tflite", runner_tflite)):
        try:
            runners = {role: make(role) for role in models}
        except Exception as exc:  # a conversion that does not work here is a finding, not a crash
            out[name] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
            log(f"alternative {name}: {out[name]['error']}")
            continue
        for x in xs[:WARMUP]:
            for role, run in runners.items():
                run(x[models[role].input])
        load_before = load_average()
        times, outputs = [], {role: [] for role in models}
        for x in xs:
            started = time.perf_counter()
            for role, run in runners.items():
                outputs[role].append(run(x[models[role].input]))
            times.append(time.perf_counter() - started)
        diff = 0.0
        if reference:
            diff = max(float(np.max(np.abs(np.concatenate(outputs[r]) - np.concatenate(reference[r])))) for r in models)
        else:
            reference = outputs
        out[name] = {
            **percentiles(times),
            "max_abs_diff_vs_eager": diff,
            "load_avg": f"{load_before} -> {load_average()}",
        }
        log(f"alternative {name}, both models, batch of 1: {out[name]}")
    return out


PHASES_SCRIPT = r"""
import json, sys, time
t0 = time.perf_counter()
from instropitch import cli
t1 = time.perf_counter()
from instropitch.serving import predictor as predict
t2 = time.perf_counter()
from instropitch.ml.cnn import configure_tensorflow
configure_tensorflow()  # imports tensorflow
t3 = time.perf_counter()
import keras
t4 = time.perf_counter()
p = predict.Predictor.from_export(sys.argv[1])
t5 = time.perf_counter()
r = p.predict_file(sys.argv[2])
t6 = time.perf_counter()
r2 = p.predict_file(sys.argv[2])
t7 = time.perf_counter()
print(json.dumps({"import_cli": t1 - t0, "import_predict_numpy": t2 - t1, "import_tensorflow": t3 - t2,
                  "import_keras": t4 - t3, "load_models": t5 - t4, "first_predict": t6 - t5,
                  "second_predict": t7 - t6, "ok": r.ok}))
"""


def measure_cold_start(export: Path, wav: str, runs: int) -> dict[str, Any]:
    exe = VENV_BIN / "instropitch"
    cmd = [str(exe), "predict", "--from-export", str(export), wav, "--json"]
    env = quiet_env()
    load_before = load_average()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - started)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
        json.loads(proc.stdout)
    out: dict[str, Any] = {
        "command": " ".join(cmd),
        "runs_s": [round(t, 3) for t in times],
        "median_s": round(statistics.median(times), 3),
        "min_s": round(min(times), 3),
        "load_avg": f"{load_before} -> {load_average()}",
    }
    log(f"cold start: {out}")

    proc = subprocess.run(
        [sys.executable, "-c", PHASES_SCRIPT, str(export), wav], env=env, capture_output=True, text=True
    )
    if proc.returncode == 0:
        phases = json.loads(proc.stdout.strip().splitlines()[-1])
        out["phases_s"] = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in phases.items()}
        log(f"cold start phases: {out['phases_s']}")
    else:
        out["phases_error"] = proc.stderr[-1000:]

    if out["median_s"] > 5.0:
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "instropitch.cli", *cmd[1:]],
            env=env,
            capture_output=True,
            text=True,
        )
        rows = []
        for line in proc.stderr.splitlines():
            if not line.startswith("import time:") or "cumulative" in line:
                continue
            parts = line[len("import time:") :].split("|")
            if len(parts) != 3:
                continue
            self_us, cum_us, name = parts
            depth = (len(name) - len(name.lstrip()) - 1) // 2
            rows.append(
                {"module": name.strip(), "depth": depth, "self_ms": int(self_us) / 1000, "cum_ms": int(cum_us) / 1000}
            )
        top_level = sorted((r for r in rows if r["depth"] <= 1), key=lambda r: r["cum_ms"], reverse=True)[:15]
        self_heavy = sorted(rows, key=lambda r: r["self_ms"], reverse=True)[:15]
        out["importtime_top_cumulative"] = top_level
        out["importtime_top_self"] = self_heavy
        print("\n-X importtime, top cumulative (depth <= 1):", flush=True)
        for r in top_level:
            print(f"  {r['cum_ms']:9.1f} ms  {'  ' * r['depth']}{r['module']}")
        print("-X importtime, top self:")
        for r in self_heavy:
            print(f"  {r['self_ms']:9.1f} ms  {r['module']}")
    return out


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export", type=Path, help="an existing export folder (default: build one)")
    parser.add_argument("--keep-export", type=Path, help="where to build the export (kept); default a temp folder")
    parser.add_argument("--data", type=Path, help="a rendered TinySOL-layout folder to use/reuse (default: temp)")
    parser.add_argument("--scale", type=float, default=0.1, help="render scale when --data has no notes yet")
    parser.add_argument("--seed", type=int, default=0, help="render seed")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per model when building the export")
    parser.add_argument("--files", type=int, default=200, help="WAVs measured (cycled when fewer are rendered)")
    parser.add_argument("--batch-sizes", default="64,16,256", help="predict_many batch sizes (first: default 64)")
    parser.add_argument("--cold-runs", type=int, default=5, help="CLI cold-start runs (median)")
    parser.add_argument("--profile", action="store_true", help="profile even when the goals are met")
    parser.add_argument(
        "--alternatives", action="store_true", help="time tf.function/TFLite even when the p50 goal is met"
    )
    parser.add_argument("--skip-cold-start", action="store_true", help="no CLI cold-start runs")
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.build_only:  # the child process of the build step
        build_export(args.data, args.keep_export, args.epochs, DEFAULT_MODELS)
        return 0

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    temp = Path(tempfile.mkdtemp(prefix="instropitch-bench-predict-"))
    figures: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "load_avg_start": load_average(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    try:
        data = (args.data or temp / "notes").resolve()
        figures["data"] = {"folder": str(data), **ensure_notes(data, args.scale, args.seed)}
        if args.export:
            export = args.export.resolve()
            figures["export"] = {"folder": str(export), "built": False}
        else:
            export = (args.keep_export or temp / "export").resolve()
            started = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--build-only",
                    "--data",
                    str(data),
                    "--keep-export",
                    str(export),
                    "--epochs",
                    str(args.epochs),
                ],
                env=quiet_env(),
                check=True,
            )
            figures["export"] = {
                "folder": str(export),
                "built": True,
                "build_s": round(time.perf_counter() - started, 1),
            }
        figures["models"] = export_info(export)
        log(f"models: {figures['models']}")

        files, file_stats = bench_files(data, args.files)
        figures["files"] = file_stats
        log(f"files: {file_stats}")

        from instropitch.serving.predictor import Predictor

        load_before = load_average()
        started = time.perf_counter()
        predictor = Predictor.from_export(export)
        figures["from_export_s"] = {"seconds": round(time.perf_counter() - started, 3), "load_avg": load_before}

        figures["latency"] = measure_latency(predictor, files, args.profile)
        batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
        figures["throughput"] = measure_batches(predictor, files, batch_sizes, args.profile)
        if args.alternatives or figures["latency"]["predict_file"]["p50_ms"] > GOAL_P50_MS:
            figures["alternatives"] = measure_alternatives(predictor, files[:100])
        if not args.skip_cold_start:
            figures["cold_start"] = measure_cold_start(export, files[0], args.cold_runs)
        figures["load_avg_end"] = load_average()

        p50 = figures["latency"]["predict_file"]["p50_ms"]
        default = figures["throughput"]["runs"][0]["files_per_s"]
        figures["goals"] = {
            "warm_p50_ms": {"goal": GOAL_P50_MS, "value": p50, "met": p50 <= GOAL_P50_MS},
            "batch_files_per_s": {"goal": GOAL_FILES_PER_S, "value": default, "met": default >= GOAL_FILES_PER_S},
        }
        print(json.dumps(figures["goals"], indent=1))
        if args.json:
            args.json.write_text(json.dumps(figures, indent=1))
            log(f"wrote {args.json}")
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
