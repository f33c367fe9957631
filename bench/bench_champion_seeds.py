"""Benchmark: the champion fit of a recipe over several seeds, on its test split and on outside sets (issue 15).

`bench_heldout_seeds.py` scores fits that never heard a font; this scores the model a user gets: one fit on the
whole training part of a snapshot (as the training DAG's `train` task fits it), per seed, on

* the snapshot's test split (in-distribution: the ≥ 99 % goal), and
* each `--data NAME=DIR` (a TinySOL-layout folder of audio no fit trained on: FluidSynth renders from
  `bench/external_render.py`, real recordings from `bench/recordings_set.py`, their narrow-band copies from
  `bench/narrow_band_set.py`...), with the expected calibration error of the raw softmax.

One seed moves the real recordings by up to 13 points (bench/RESULTS.md, "Narrow-band audio"), so a recipe
change is judged on the mean over three seeds, each seed fitted on the same rows:

    .venv/bin/python bench/bench_champion_seeds.py --snapshot SNAPSHOT.npz --seeds 1,2,42 \\
        --data tonejs=/tmp/sets/tonejs --data fs_merlin=/tmp/sets/fs_merlin --cache /tmp/sets-cache \\
        --set training.augmentation.lowpass=0 --json /tmp/lowpass0.json

`--set KEY=VALUE` changes the recipe (`--spec`, default models/instrument.yaml) as in `bench_heldout_seeds.py`.
A fit takes ~2-3 minutes on 2 cores; the sets' spectrograms are computed once into `--cache`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_heldout_seeds import load_recipe  # noqa: E402  (a bench module beside this one)


def outside_sets(spec: Any, named: list[str], cache: Path | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{name: (model inputs, class index per note)} of each `NAME=DIR`, read as the recipe's features."""
    from instropitch.ml.evaluation import load_labelled_folder
    from instropitch.ml.snapshot import class_layout

    values, _ = class_layout(spec.label)
    sets = {}
    for item in named:
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            raise SystemExit(f"--data {item!r}: expected NAME=DIR")
        labelled = load_labelled_folder(folder, spec.features or "default", name=name, cache_dir=cache)
        labels = getattr(labelled, spec.label).tolist()
        unknown = sorted(set(labels) - set(values))
        if unknown:
            raise SystemExit(f"--data {name}: labels the model has no class for: {unknown}")
        sets[name] = (labelled.inputs(spec.input), np.array([values.index(v) for v in labels]))
    return sets


def seed_scores(spec: Any, snapshot: Any, sets: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """The champion fit of `spec` on `snapshot`: test accuracy, and accuracy and raw ECE on every outside set."""
    from instropitch.ml import calibration, fitting

    rows = fitting.model_rows(spec, snapshot)
    started = time.perf_counter()
    model, history = fitting.fit_model(
        spec,
        rows.x[rows.fit],
        rows.y[rows.fit],
        rows.x[rows.val],
        rows.y[rows.val],
        len(rows.class_names),
        epochs=spec.training.epochs,
        groups=rows.sources[rows.fit],
        extra=fitting.synthetic_tone_rows(spec, snapshot.feature_preset),
        band_hz=fitting.band_hz_of(rows.band_hz, rows.fit),
    )
    scores: dict[str, Any] = {
        "test": float(np.mean(fitting.predict_classes(model, rows.x[rows.test]) == rows.y[rows.test])),
        "epochs": len(history.get("loss", [])),
        "fit_s": time.perf_counter() - started,
        "load": os.getloadavg()[0],
        "sets": {},
        "ece_raw": {},
    }
    for name, (x, y) in sets.items():
        proba = fitting.predict_proba(model, x)
        scores["sets"][name] = float(np.mean(proba.argmax(axis=1) == y))
        scores["ece_raw"][name] = calibration.expected_calibration_error(proba, y)
    return scores


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--snapshot", type=Path, required=True, help="a training run's snapshot/snapshot.npz")
    parser.add_argument("--seeds", default="1,2,42")
    parser.add_argument("--spec", type=Path, default=Path("models/instrument.yaml"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="change the recipe")
    parser.add_argument("--data", action="append", default=[], metavar="NAME=DIR", help="an outside set")
    parser.add_argument("--cache", type=Path, default=None, help="keep the sets' spectrograms here")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    args = parser.parse_args()

    from instropitch.ml.cnn import configure_tensorflow
    from instropitch.ml.snapshot import Snapshot

    configure_tensorflow()
    snapshot = Snapshot.load(args.snapshot)
    seeds = [int(s) for s in args.seeds.split(",")]
    sets = outside_sets(load_recipe(args.spec, args.set, seeds[0]), args.data, args.cache)
    by_seed: dict[int, dict[str, Any]] = {}
    for seed in seeds:
        scores = seed_scores(load_recipe(args.spec, args.set, seed), snapshot, sets)
        by_seed[seed] = scores
        cells = ", ".join(f"{name} {100 * acc:.1f}" for name, acc in scores["sets"].items())
        print(
            f"seed {seed}: test {100 * scores['test']:.1f}; {cells} "
            f"({scores['epochs']} epochs, {scores['fit_s']:.0f} s, load {scores['load']:.1f})",
            flush=True,
        )
    mean = {
        "test": float(np.mean([s["test"] for s in by_seed.values()])),
        "sets": {name: float(np.mean([s["sets"][name] for s in by_seed.values()])) for name in sets},
    }
    cells = ", ".join(f"{name} {100 * acc:.1f}" for name, acc in mean["sets"].items())
    print(f"mean over seeds {args.seeds}: test {100 * mean['test']:.1f}; {cells}")
    if args.json:
        report = {"recipe": str(args.spec), "set": args.set, "snapshot": snapshot.digest, "by_seed": by_seed}
        args.json.write_text(json.dumps({**report, "mean": mean}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
