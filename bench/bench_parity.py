"""Benchmark: do the portable (ONNX) models answer as the Keras models they were converted from?

    .venv/bin/python bench/bench_parity.py --keras-export DIR --data demo=.instropitch/data/sources-seed0-scale1 \
        --render mixed=mixed:1 --render distant=distant,player:2 --per-source 300 --json /tmp/parity.json

`--keras-export` is an export folder of format version 1 (`pitch.keras`, `instrument.keras`,
as `instropitch export` wrote before portable models; e.g. the one the pyfunc model of
`make demo` logged). The ONNX models are made from it by the library's own path
(`Predictor.from_export` converts a Keras export with `ml.portable.to_onnx`), or read from
`--export` (a version 2 export of the same models). Notes come from several sources:
`--data NAME=DIR` (a rendered TinySOL-layout folder) and `--render NAME=CONDITIONS:SEED`
(rendered here with `synth.render_dataset` at `--scale`, the default SoundFont, those
recording conditions). For every note both spectrograms are computed once and fed to both
runtimes; per source and overall: top-1 agreement for pitch and instrument, the largest
probability difference, and the share of notes over 1e-4.

`--fft-check` also recomputes the features with scipy's FFT (what the feature code used
before prediction dropped scipy for its start-up time) and reports how often the ONNX
models' answers change.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

TOLERANCE = 1e-4


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {load_average()}] {message}", flush=True)


def source_files(data: Path, n: int) -> list[Path]:
    from instropitch import tinysol

    rows = sorted(tinysol.parse_metadata(data / tinysol.METADATA_FILENAME).rows, key=lambda r: r.path)
    step = max(1, len(rows) // n)
    return [data / r.path for r in rows[::step][:n]]


def features_of(files: list[Path], config: Any) -> dict[str, np.ndarray]:
    from instropitch.audio.features import compute_features

    rows: dict[str, list[np.ndarray]] = {"pitch": [], "instrument": []}
    for path in files:
        feats = compute_features(path, config)
        rows["pitch"].append(feats.pitch)
        rows["instrument"].append(feats.instrument)
    return {k: np.stack(v).astype(np.float32) for k, v in rows.items()}


def compare(keras_p: np.ndarray, onnx_p: np.ndarray) -> dict[str, Any]:
    diff = np.abs(keras_p - onnx_p).max(axis=1)
    return {
        "notes": len(diff),
        "top1_agree": int(np.sum(keras_p.argmax(1) == onnx_p.argmax(1))),
        "max_abs_diff": float(diff.max()),
        "p99_abs_diff": float(np.quantile(diff, 0.99)),
        "notes_over_tolerance": int(np.sum(diff > TOLERANCE)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keras-export", type=Path, required=True, help="a version 1 export (.keras models)")
    parser.add_argument("--export", type=Path, help="a version 2 export (.onnx) of the same models; default: convert")
    parser.add_argument("--data", action="append", default=[], metavar="NAME=DIR", help="a rendered source folder")
    parser.add_argument("--render", action="append", default=[], metavar="NAME=CONDITIONS:SEED", help="render a source")
    parser.add_argument("--scale", type=float, default=0.1, help="render scale of --render sources")
    parser.add_argument("--per-source", type=int, default=300, help="notes used per source (evenly spaced)")
    parser.add_argument("--fft-check", action="store_true", help="also compare features computed with scipy's FFT")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from instropitch import synth
    from instropitch.ml.cnn import configure_tensorflow
    from instropitch.serving.predictor import Predictor

    figures: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "load_avg_start": load_average(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "tolerance": TOLERANCE,
        "sources": {},
    }
    temp = Path(tempfile.mkdtemp(prefix="instropitch-bench-parity-"))
    try:
        sources: dict[str, Path] = {}
        for item in args.data:
            name, _, folder = item.partition("=")
            sources[name] = Path(folder)
        for item in args.render:
            name, _, spec = item.partition("=")
            conditions, _, seed = spec.partition(":")
            out = temp / name
            started = time.perf_counter()
            synth.render_dataset(
                out, seed=int(seed or 0), scale=args.scale, conditions=conditions.split(","), workers=2, progress=False
            )
            log(f"rendered {name} ({conditions}, seed {seed}) in {time.perf_counter() - started:.1f} s")
            sources[name] = out

        onnx = Predictor.from_export(args.export) if args.export else Predictor.from_export(args.keras_export)
        configure_tensorflow()
        import keras

        keras_models = {
            role: keras.saving.load_model(args.keras_export / f"{role}.keras", compile=False) for role in onnx.models
        }
        totals: dict[str, list[dict[str, Any]]] = {"pitch": [], "instrument": []}
        for name, folder in sources.items():
            files = source_files(folder, args.per_source)
            x = onnx.model_inputs(features_of(files, onnx.features))
            per_role: dict[str, Any] = {}
            for role, model in onnx.models.items():
                xs = x[role]
                keras_p = np.asarray(keras_models[role].predict(xs, batch_size=256, verbose=0), np.float64)
                onnx_p = model.proba(xs)
                per_role[role] = compare(keras_p, onnx_p)
                totals[role].append(per_role[role])
            if args.fft_check:
                import scipy.fft

                numpy_rfft = np.fft.rfft
                np.fft.rfft = scipy.fft.rfft  # the feature code's FFT before this change
                try:
                    x_old = onnx.model_inputs(features_of(files, onnx.features))
                finally:
                    np.fft.rfft = numpy_rfft
                for role, model in onnx.models.items():
                    new, old = model.proba(x[role]), model.proba(x_old[role])
                    per_role[role]["scipy_fft_features"] = {
                        "max_abs_feature_diff": float(np.abs(x[role] - x_old[role]).max()),
                        "top1_agree": int(np.sum(new.argmax(1) == old.argmax(1))),
                        "max_abs_prob_diff": float(np.abs(new - old).max()),
                    }
            figures["sources"][name] = {"folder": str(folder), "notes": len(files), **per_role}
            log(f"{name}: {json.dumps(figures['sources'][name])}")
        figures["overall"] = {
            role: {
                "notes": sum(r["notes"] for r in rows),
                "top1_agree": sum(r["top1_agree"] for r in rows),
                "max_abs_diff": max(r["max_abs_diff"] for r in rows),
                "notes_over_tolerance": sum(r["notes_over_tolerance"] for r in rows),
            }
            for role, rows in totals.items()
        }
        figures["load_avg_end"] = load_average()
        print(json.dumps(figures["overall"], indent=1))
        if args.json:
            args.json.write_text(json.dumps(figures, indent=1))
            log(f"wrote {args.json}")
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
