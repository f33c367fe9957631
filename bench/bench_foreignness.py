"""Benchmark: can a note's foreignness tell the calibration how far to trust the champion? (issue 15)

The shown instrument confidence is calibrated on held-out fits (trained without some fonts),
which are weaker than the champion (trained on all of them): one temperature fitted on them
softens the champion too much where it is good. This benchmark trains, on one snapshot, the
recipe's held-out group fits and the champion, measures each note's foreignness to the model
that answers it (`ml.foreignness`: Mahalanobis to the nearest class mean in the embedding; for
comparison the cosine distance to the nearest training note and to the 10th nearest, Sun et al.,
2022), and scores calibration
schemes fitted on the held-out fits' answers on sets rendered by FluidSynth that no model saw:

* one temperature (what shipped before), fitted on the held-out answers, or on those pooled
  with the fits' validation answers;
* a temperature that grows with foreignness, T = t x foreignness^b, on the same pools.

For each: the expected calibration error per set, and how many answers are "sure" (at the
threshold chosen on the calibration pool) and how many of those are right. Also the AUROC of
each score for telling wrong answers from right ones, and held-out notes from validation notes.

    .venv/bin/python bench/bench_foreignness.py --snapshot SNAPSHOT.npz \\
        --data gmbank=/tmp/ext/gmbank --data opl3=/tmp/ext/opl3 --work /tmp/ood --json /tmp/ood.json

`--snapshot` is a training snapshot (`snapshot/snapshot.npz` of a training run's parent);
`--data` folders are TinySOL-layout sets (`bench/external_render.py`). Models are kept in
`--work` and reused when run again.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

SCORES = ("mahalanobis", "nearest", "knn")


def _named(value: str) -> tuple[str, Path]:
    name, sep, path = value.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{value!r}: expected NAME=DIR")
    return name, Path(path)


def knn_distance(reference: np.ndarray, k: int = 10):
    """Cosine distance to the k-th nearest reference embedding (Sun et al., 2022)."""
    ref = reference / np.linalg.norm(reference, axis=1, keepdims=True).clip(1e-9)

    def distance(e: np.ndarray) -> np.ndarray:
        q = e / np.linalg.norm(e, axis=1, keepdims=True).clip(1e-9)
        return 1 - np.sort(q @ ref.T, axis=1)[:, -k]

    return distance


def set_inputs(folder: Path, spec, feature_preset: str, class_names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The instrument model's inputs for a TinySOL-layout set (re-centred on the true note) and labels."""
    from instropitch import tinysol
    from instropitch.audio.features import compute_features, get_preset
    from instropitch.audio.inputs import model_input

    config = get_preset(feature_preset)
    xs, ys = [], []
    for row in tinysol.parse_metadata(folder / tinysol.METADATA_FILENAME).rows:
        feats = compute_features((folder / row.path).read_bytes(), config)
        xs.append(
            model_input(spec.input, feats.pitch[None], feats.instrument[None], np.array([row.pitch_id]), config)[0]
        )
        ys.append(class_names.index(row.instrument_abbr))
    return np.stack(xs).astype(np.float32), np.array(ys)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--snapshot", type=Path, required=True)
    parser.add_argument("--model", type=Path, default=Path("models/instrument.yaml"))
    parser.add_argument("--data", type=_named, action="append", default=[], metavar="NAME=DIR")
    parser.add_argument("--work", type=Path, required=True, help="where the fitted models are kept")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import keras

    from instropitch.ml import training as tr
    from instropitch.ml.calibration import (
        apply_temperature,
        choose_threshold,
        expected_calibration_error,
        fit_foreign_temperature,
        fit_temperature,
        foreign_temperatures,
    )
    from instropitch.ml.foreignness import embed, fit_reference
    from instropitch.ml.snapshot import Snapshot
    from instropitch.modelspec import load_spec

    spec = load_spec(args.model)
    snapshot = Snapshot.load(args.snapshot)
    rows = tr.model_rows(spec, snapshot)
    args.work.mkdir(parents=True, exist_ok=True)
    fits = {g: g for g in tr.heldout_sources(spec, rows.source_names, spec.training.epochs)} | {"champion": None}

    def fit_and_validation_rows(held_out: str | None) -> tuple[np.ndarray, np.ndarray]:
        if held_out is None:
            return rows.fit, rows.val
        kept = rows.train[~np.isin(rows.sources[rows.train], tr.held_out_members(held_out))]
        return tr.fit_validation_rows(rows.y, kept, spec.training.validation_split, spec.training.seed)

    answers: dict[str, tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]] = {}
    external = {name: set_inputs(folder, spec, snapshot.feature_preset, rows.class_names) for name, folder in args.data}
    for name, held_out in fits.items():
        fit_rows, val_rows = fit_and_validation_rows(held_out)
        path = args.work / f"{name}.keras"
        if not path.exists():
            model, _ = tr.fit_model(
                spec,
                rows.x[fit_rows],
                rows.y[fit_rows],
                rows.x[val_rows],
                rows.y[val_rows],
                len(rows.class_names),
                epochs=spec.training.epochs,
                groups=rows.sources[fit_rows],
                label=name,
                band_hz=tr.band_hz_of(rows.band_hz, fit_rows),
            )
            model.save(path)
        model = keras.models.load_model(path)
        _, e_fit = embed(model, rows.x[fit_rows])
        _, e_val = embed(model, rows.x[val_rows])
        scorers = {"mahalanobis": fit_reference(e_fit, rows.y[fit_rows], e_val).distance}
        for name, raw in (("nearest", knn_distance(e_fit, k=1)), ("knn", knn_distance(e_fit))):
            scale = float(np.median(raw(e_val)))
            scorers[name] = lambda e, raw=raw, s=scale: raw(e) / s

        def answer(x: np.ndarray, model=model, scorers=scorers) -> tuple[np.ndarray, dict[str, np.ndarray]]:
            p, e = embed(model, x)
            return p, {k: f(e) for k, f in scorers.items()}

        if held_out is None:
            for set_name, (x, y) in external.items():
                answers[f"champion on {set_name}"] = (*answer(x), y)
            answers["champion on its test rows"] = (*answer(rows.x[rows.test]), rows.y[rows.test])
        else:
            target = np.flatnonzero(np.isin(rows.sources, tr.held_out_members(held_out)))
            answers[f"without {held_out}: held out"] = (*answer(rows.x[target]), rows.y[target])
            answers[f"without {held_out}: validation"] = (*answer(rows.x[val_rows]), rows.y[val_rows])

    def pool(keys: list[str], score: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return tuple(
            np.concatenate(parts)
            for parts in zip(*((answers[k][0], answers[k][1][score], answers[k][2]) for k in keys), strict=True)
        )

    held = [k for k in answers if k.endswith(": held out")]
    held_val = held + [k for k in answers if k.endswith(": validation")]
    scored = [k for k in answers if k.startswith("champion on ")]
    report: dict[str, dict] = {"schemes": {}, "auroc": {}}
    for score in SCORES:
        for pool_name, keys in (("held-out", held), ("held-out + validation", held_val)):
            p, f, y = pool(keys, score)
            t = fit_temperature(p, y)
            ts, slope = fit_foreign_temperature(p, f, y)
            floor = float(f.min())
            schemes = {
                f"one temperature ({pool_name}): T = {t:.2f}": lambda p, f, t=t: apply_temperature(p, t),
                f"foreign temperature ({pool_name}, {score}): T = {ts:.2f} x f^{slope:.2f}": (
                    lambda p, f, ts=ts, slope=slope, floor=floor: apply_temperature(
                        p, foreign_temperatures(ts, slope, f, floor)
                    )
                ),
            }
            for scheme, scale in schemes.items():
                if scheme in report["schemes"]:
                    continue
                q = scale(p, f)
                threshold = choose_threshold(q.max(axis=1), q.argmax(axis=1) == y)
                line = {"threshold": threshold}
                for k in scored:
                    pk, fk, yk = answers[k][0], answers[k][1][score], answers[k][2]
                    qk = scale(pk, fk)
                    ok, sure = qk.argmax(axis=1) == yk, qk.max(axis=1) >= threshold
                    line[k] = {
                        "accuracy": float(ok.mean()),
                        "ece": expected_calibration_error(qk, yk),
                        "sure_share": float(sure.mean()),
                        "sure_accuracy": float(ok[sure].mean()) if sure.any() else None,
                    }
                external_keys = [k for k in scored if "test rows" not in k]
                if external_keys:
                    qs = [scale(answers[k][0], answers[k][1][score]) for k in external_keys]
                    line["pooled sets"] = {
                        "ece": expected_calibration_error(
                            np.concatenate(qs), np.concatenate([answers[k][2] for k in external_keys])
                        )
                    }
                report["schemes"][scheme] = line
    from sklearn.metrics import roc_auc_score

    for k, (p, f, y) in answers.items():
        wrong = p.argmax(axis=1) != y
        if wrong.all() or not wrong.any():
            continue
        report["auroc"][f"wrong answers, {k}"] = {
            "confidence": float(roc_auc_score(wrong, -p.max(axis=1))),
            **{s: float(roc_auc_score(wrong, v)) for s, v in f.items()},
        }
    for held_key in held:
        val_key = held_key.replace(": held out", ": validation")
        label = np.r_[np.zeros(len(answers[val_key][2])), np.ones(len(answers[held_key][2]))]
        report["auroc"][f"held out vs validation, {held_key.split(':')[0]}"] = {
            "confidence": float(roc_auc_score(label, -np.r_[answers[val_key][0].max(1), answers[held_key][0].max(1)])),
            **{s: float(roc_auc_score(label, np.r_[answers[val_key][1][s], answers[held_key][1][s]])) for s in SCORES},
        }
    for scheme, line in report["schemes"].items():
        print(f"{scheme}  (sure at >= {line['threshold']:.2f})")
        for k, r in line.items():
            if isinstance(r, dict) and "accuracy" in r:
                sure = f"{r['sure_share']:.0%} sure, {r['sure_accuracy'] or 0:.0%} of those right"
                print(f"    {k:34s} accuracy {r['accuracy']:.1%}  ECE {r['ece']:.3f}  {sure}")
        if "pooled sets" in line:
            print(f"    {'pooled sets':34s} ECE {line['pooled sets']['ece']:.3f}")
    for k, r in report["auroc"].items():
        print(f"AUROC {k:50s} " + "  ".join(f"{s} {v:.3f}" for s, v in r.items()))
    record = {"date": time.strftime("%Y-%m-%d %H:%M"), "load_average": os.getloadavg(), **report}
    if args.json:
        args.json.write_text(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
