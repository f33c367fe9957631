"""Accuracy benchmark: the model configurations and the baselines on notes they never trained on.

Two protocols (both print tables and write JSON; results are recorded in bench/RESULTS.md):

* ``--protocol ood`` (issue 7): train on the stratified 75/25 split of one synthetic set
  (TimGM6mb, seed 0, dry: what ``make demo`` trains on) and score on its test part
  (in-distribution) and on sets the models never saw: the same manifest rendered with
  another seed under recording conditions (rooms, microphone, distance, player), the same
  files resampled to 32 kHz, and every other SoundFont given with ``--soundfont``.
* ``--protocol folds`` (issue 15): TinySOL's own protocol on the ``make demo`` set, each of
  the five ``Fold`` values once the test part (re-tuned neighbours never straddle it), and
  the mean, beside the DAG's stratified 75/25 split.
* ``--protocol loso`` (issue 9): one source per SoundFont (seed 1, conditions mixed); for
  each source, a model trained on the training part of all sources (in-distribution: its
  score on that source's test part) and a model trained on the other sources only
  (held-out: its score on every note of that source).

Every CNN goes through ``instropitch.ml.fitting.fit_model`` with the rows in the DAG's order
(``fitting.fit_validation_rows``): on the same data and thread count a bench figure is
the test accuracy the training DAG logs (checked: 0.9808 both, ``make demo``, one thread).
A recipe whose input is built from the note (``instrument+harmonics``) is fed the labelled
note, as in the training DAG; the product feeds it the pitch model's answer, right on
99.7-100 % of notes from unseen sources. ``--seeds 42,1,2`` trains each CNN once per seed and adds a mean row: one seed is one
draw, and the instrument recipe's draws spread over a point or more. The baselines are
``instropitch.ml.baselines`` (pYIN for pitch, MFCC statistics + logistic regression for
instrument). Renders and features are cached under ``--work``.

    .venv/bin/python bench/accuracy/run.py --protocol ood --json /tmp/ood.json
    .venv/bin/python bench/accuracy/run.py --protocol loso --scale 0.5 --json /tmp/loso.json \\
        --soundfont fluidr3=/usr/share/sounds/sf2/FluidR3_GM.sf2 ...
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODELS = [ROOT / "models" / "pitch.yaml", ROOT / "models" / "instrument.yaml"]
REFERENCE_MODELS = [
    ROOT / "models" / "reference" / "seed-pitch.yaml",
    ROOT / "models" / "reference" / "seed-instrument.yaml",
]
OOD_CONDITIONS = "room,hall,mic,distant,player,mixed"
SUBSET_SEED = 7
"""Seed of the stratified `--fraction` subset of each loso source (not the 75/25 split's 42)."""
PYIN_NOTES = 200
"""pYIN costs ~0.1 s a note: it is scored on this many notes per set (a fixed, seeded sample)."""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------ data sets


def render(out: Path, fonts: dict[str, str], *, seed: int, scale: float, conditions: str) -> Path:
    """Render once (a folder whose metadata CSV exists is reused)."""
    from instropitch import synth
    from instropitch.tinysol import METADATA_FILENAME

    first = out / next(iter(fonts)) if len(fonts) > 1 else out
    if not (first / METADATA_FILENAME).is_file():
        log(f"rendering {out.name} ({', '.join(fonts)}, seed {seed}, scale {scale}, {conditions})")
        synth.render_dataset(out, soundfont=fonts, seed=seed, scale=scale, conditions=conditions, progress=False)
    return out


def resampled_copy(src: Path, dst: Path, sample_rate: int) -> Path:
    """The same notes as 16-bit WAVs at another sample rate (the metadata CSV copied as is)."""
    from instropitch import audio, tinysol

    if (dst / tinysol.METADATA_FILENAME).is_file():
        return dst
    log(f"resampling {src.name} to {sample_rate} Hz")
    for wav in src.rglob("*.wav"):
        y, _ = audio.load(wav, sample_rate)
        target = dst / wav.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        with wave.open(str(target), "wb") as handle:
            handle.setnchannels(1)
            handle.setsampwidth(2)
            handle.setframerate(sample_rate)
            handle.writeframes(np.clip(np.rint(y * 32767), -32768, 32767).astype("<i2").tobytes())
    (dst / tinysol.METADATA_FILENAME).write_bytes((src / tinysol.METADATA_FILENAME).read_bytes())
    return dst


class Set:
    """One labelled folder with its spectrograms per feature preset and MFCC vectors, cached."""

    def __init__(self, name: str, folder: Path, cache: Path):
        self.name, self.folder, self.cache = name, folder, cache
        self._features: dict[str, object] = {}

    def features(self, preset: str):
        from instropitch.ml.evaluation import load_labelled_folder

        if preset not in self._features:
            self._features[preset] = load_labelled_folder(self.folder, preset, name=self.name, cache_dir=self.cache)
        return self._features[preset]

    @property
    def labels(self):
        return self.features("default")

    def mfcc(self) -> np.ndarray:
        path = self.cache / f"mfcc-{self.name}-{len(self.labels)}.npy"
        if path.is_file():
            return np.load(path)
        from instropitch.ml.baselines import mfcc_matrix

        log(f"MFCCs of {self.name}")
        matrix = mfcc_matrix([self.folder / p for p in self.labels.paths])
        np.save(path, matrix)
        return matrix


# ------------------------------------------------------------------------ models


def class_index(spec, data) -> tuple[np.ndarray, list]:
    from instropitch.ml.snapshot import class_layout

    values, _ = class_layout(spec.label)
    truth = data.midi if spec.label == "midi" else data.instrument
    lookup = {v: i for i, v in enumerate(values)}
    return np.array([lookup[v] for v in truth.tolist()]), list(values)


def train_cnn(spec, sets_rows: list[tuple[Set, np.ndarray]], epochs: int | None):
    """Fit `spec` on the given rows of the given sets (validation split carved from them)."""
    from instropitch.ml import fitting

    xs, ys, groups, hz = [], [], [], []
    for s, rows in sets_rows:
        data = s.features(spec.features)
        y, values = class_index(spec, data)
        xs.append(data.inputs(spec.input)[rows])
        ys.append(y[rows])
        groups.append(np.full(len(rows), s.name))
        band_hz = data.band_frequencies(spec.input)
        hz.append(np.broadcast_to(band_hz, (len(data), band_hz.shape[1]))[rows])
    x, y, g, band_hz = (np.concatenate(a) for a in (xs, ys, groups, hz))
    fit_pos, val_pos = fitting.fit_validation_rows(
        y, np.arange(len(y)), spec.training.validation_split, spec.training.seed
    )
    started = time.perf_counter()
    model, history = fitting.fit_model(
        spec,
        x[fit_pos],
        y[fit_pos],
        x[val_pos],
        y[val_pos],
        len(values),
        epochs=spec.training.epochs if epochs is None else epochs,
        groups=g[fit_pos],
        band_hz=band_hz[fit_pos],
    )
    log(
        f"  {spec.name}: {len(history.get('loss', []))} epochs on {len(fit_pos)} notes in {time.perf_counter() - started:.0f} s"
    )
    return model, values


def seeded_specs(path: Path, seeds: list[int]) -> list[tuple[str, object]]:
    """(label, spec) per training seed: the spec as written when no seeds are given.

    One seed is one draw of the training shuffle, augmentation and initial weights; the
    spread over a few seeds says which differences between recipes are real.
    """
    import dataclasses

    from instropitch.modelspec import load_spec

    spec = load_spec(path)
    if not seeds:
        return [(f"cnn {spec.name}", spec)]
    return [
        (f"cnn {spec.name} seed {s}", dataclasses.replace(spec, training=dataclasses.replace(spec.training, seed=s)))
        for s in seeds
    ]


def add_seed_means(results: dict) -> None:
    """For models trained with several seeds, a row with the mean of every metric over the seeds."""
    groups: dict[str, list[str]] = {}
    for label in results:
        head, sep, _ = label.rpartition(" seed ")
        if sep:
            groups.setdefault(head, []).append(label)
    for head, labels in groups.items():
        if len(labels) < 2:
            continue
        row = {}
        for column in results[labels[0]]:
            reports = [results[label][column] for label in labels]
            row[column] = {k: float(np.mean([r[k] for r in reports])) for k in reports[0]}
            row[column]["spread"] = float(np.ptp([_headline(r) for r in reports]))
        results[f"{head} (mean of {len(labels)} seeds)"] = row


PREDICTIONS: dict[str, tuple[np.ndarray, np.ndarray]] = {}
"""set name -> (true, predicted) of the last `score_cnn` call on it, for confusion matrices."""
PROBABILITIES: dict[str, dict[str, np.ndarray]] = {}
"""set name -> the last `score_cnn` call's class probabilities, labels and notes (`--save-probabilities`)."""


def score_cnn(spec, model, values: list, s: Set, rows: np.ndarray | None = None) -> dict[str, float]:
    from instropitch.ml import fitting
    from instropitch.ml.evaluation import instrument_report, pitch_report

    data = s.features(spec.features)
    rows = np.arange(len(data)) if rows is None else rows
    proba = fitting.predict_proba(model, data.inputs(spec.input)[rows])
    predicted = np.asarray(values)[proba.argmax(axis=1)]
    truth = data.midi[rows] if spec.label == "midi" else data.instrument[rows]
    PREDICTIONS[s.name] = (truth, predicted)
    PROBABILITIES[s.name] = {
        "proba": proba,
        "values": np.asarray(values),
        "midi": data.midi[rows],
        "instrument": data.instrument[rows],
    }
    if spec.label == "midi":
        return pitch_report(data.midi[rows], predicted.astype(np.int64))
    return instrument_report(data.instrument[rows], predicted)


def score_pyin(s: Set, rows: np.ndarray) -> dict[str, float]:
    from instropitch.ml.baselines import pyin_midi
    from instropitch.ml.evaluation import pitch_report

    rng = np.random.default_rng(0)
    sample = np.sort(rng.choice(rows, size=min(PYIN_NOTES, len(rows)), replace=False))
    predicted = np.array([pyin_midi(s.folder / p) for p in s.labels.paths[sample]])
    return pitch_report(s.labels.midi[sample], predicted)


def fit_mfcc(sets_rows: list[tuple[Set, np.ndarray]]):
    from instropitch.ml.baselines import MfccLogisticRegression

    x = np.concatenate([s.mfcc()[rows] for s, rows in sets_rows])
    y = np.concatenate([s.labels.instrument[rows] for s, rows in sets_rows])
    return MfccLogisticRegression().fit(x, y)


def score_mfcc(model, s: Set, rows: np.ndarray | None = None) -> dict[str, float]:
    from instropitch.ml.evaluation import instrument_report

    rows = np.arange(len(s.labels)) if rows is None else rows
    return instrument_report(s.labels.instrument[rows], model.predict(s.mfcc()[rows]))


def split(
    s: Set, test_size: float = 0.25, seed: int = 42, test_fold: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The DAG's split: `snapshot.create_snapshot` (stratified by instrument x MIDI, seeded, or
    TinySOL's `test_fold`); (train rows, test rows) as positions in the set."""
    from instropitch.ml.snapshot import create_snapshot

    d = s.labels
    snap = create_snapshot(
        d.paths,
        d.midi,
        d.instrument,
        d.fold,
        d.pitch[:, :1, :1],
        d.instrument_spec[:, :1, :1],
        seed=seed,
        test_size=test_size,
        test_fold=test_fold,
    )
    order = np.searchsorted(d.paths, snap.paths)  # both sorted by path
    return np.sort(order[~snap.is_test]), np.sort(order[snap.is_test])


# ------------------------------------------------------------------------ protocols


def protocol_ood(args, fonts: dict[str, str]) -> dict:
    from instropitch.synth.sf2 import default_soundfont_path

    work, cache = args.work, args.work / "cache"
    base_font = {"timgm6mb": str(default_soundfont_path())}
    train_set = Set(
        "in-distribution",
        render(work / "timgm6mb-seed0-dry", base_font, seed=0, scale=args.scale, conditions="dry"),
        cache,
    )
    eval_sets = {}
    if not args.in_distribution_only:
        conditions = render(
            work / "timgm6mb-seed1-conditions", base_font, seed=1, scale=args.scale, conditions=OOD_CONDITIONS
        )
        eval_sets["conditions"] = Set("conditions", conditions, cache)
        eval_sets["32 kHz"] = Set(
            "32 kHz", resampled_copy(conditions, work / "timgm6mb-seed1-conditions-32k", 32000), cache
        )
    for name, path in fonts.items():
        if name != "timgm6mb" and not args.in_distribution_only:
            eval_sets[name] = Set(
                name,
                render(work / f"{name}-seed1-dry", {name: path}, seed=1, scale=args.scale, conditions="dry"),
                cache,
            )
    train_rows, test_rows = split(train_set)
    results: dict[str, dict[str, dict[str, float]]] = {}

    def evaluate_everywhere(label: str, scorer) -> None:
        results[label] = {"in-distribution": scorer(train_set, test_rows)}
        for name, s in eval_sets.items():
            results[label][name] = scorer(s, np.arange(len(s.labels)))
        log(f"{label}: " + ", ".join(f"{k} {_headline(v):.3f}" for k, v in results[label].items()))

    for path in args.models + (REFERENCE_MODELS if args.reference else []):
        for label, spec in seeded_specs(path, args.seeds):
            model, values = train_cnn(spec, [(train_set, train_rows)], args.epochs)
            evaluate_everywhere(
                label,
                lambda s, rows, spec=spec, model=model, values=values: score_cnn(spec, model, values, s, rows),
            )
    add_seed_means(results)
    if not args.no_baselines:
        mfcc = fit_mfcc([(train_set, train_rows)])
        evaluate_everywhere("baseline mfcc+logreg", lambda s, rows: score_mfcc(mfcc, s, rows))
    if not (args.no_pyin or args.no_baselines):
        evaluate_everywhere("baseline pyin", score_pyin)
    return results


def protocol_folds(args, fonts: dict[str, str]) -> dict:
    """TinySOL's own protocol on the `make demo` set: each `Fold` once the test part, and the mean;
    next to it the DAG's seeded stratified 75/25 split, for comparison."""
    from instropitch.synth.sf2 import default_soundfont_path

    work, cache = args.work, args.work / "cache"
    base_font = {"timgm6mb": str(default_soundfont_path())}
    data = Set(
        "demo", render(work / "timgm6mb-seed0-dry", base_font, seed=0, scale=args.scale, conditions="dry"), cache
    )
    splits = {"stratified 75/25": split(data)}
    splits.update({f"fold {k}": split(data, test_fold=k) for k in sorted(set(data.labels.fold.tolist()))})
    results: dict[str, dict[str, dict[str, float]]] = {}
    for path in args.models:
        for label, spec in seeded_specs(path, args.seeds):
            results[label] = {}
            for name, (train_rows, test_rows) in splits.items():
                model, values = train_cnn(spec, [(data, train_rows)], args.epochs)
                results[label][name] = score_cnn(spec, model, values, data, test_rows)
            folds = [v for k, v in results[label].items() if k.startswith("fold ")]
            results[label]["folds mean"] = {key: float(np.mean([f[key] for f in folds])) for key in folds[0]}
            log(f"{label}: " + ", ".join(f"{k} {_headline(v):.3f}" for k, v in results[label].items()))
    add_seed_means(results)
    return results


def protocol_loso(args, fonts: dict[str, str]) -> dict:
    work, cache = args.work, args.work / "cache"
    folder = args.sources_dir or render(
        work / f"sources-seed1-scale{args.scale:g}", fonts, seed=1, scale=args.scale, conditions=args.conditions
    )
    sources = {name: Set(name, folder / name, cache) for name in fonts}
    splits = {}
    for name, s in sources.items():
        # A stratified subset (the same rule as the DAG's split) when --fraction < 1, then 75/25.
        # Its own seed: with the split's seed, --fraction 0.25 would keep exactly the test part.
        keep = split(s, test_size=args.fraction, seed=SUBSET_SEED)[1] if args.fraction < 1 else np.arange(len(s.labels))
        train, test = split(s)
        splits[name] = (np.intersect1d(train, keep), np.intersect1d(test, keep))
    results: dict[str, dict[str, dict[str, float]]] = {}
    heldout_predictions: dict[str, list] = {}

    def run(label: str, fit, scorer) -> None:
        results[label] = {}
        if not args.heldout_only:
            model = fit([(s, splits[n][0]) for n, s in sources.items()])
            for name, s in sources.items():
                results[label][f"{name} in-distribution"] = scorer(model, s, splits[name][1])
        for held_out, s in sources.items():
            if args.heldout and held_out not in args.heldout:
                continue
            model = fit([(o, splits[n][0]) for n, o in sources.items() if n != held_out])
            results[label][f"{held_out} held-out"] = scorer(model, s, np.union1d(*splits[held_out]))
            heldout_predictions.setdefault(label, []).append(PREDICTIONS.pop(held_out, None))
            if args.save_probabilities and held_out in PROBABILITIES:
                args.save_probabilities.mkdir(parents=True, exist_ok=True)
                name = f"{label.replace(' ', '_')}-{held_out}.npz"
                np.savez(args.save_probabilities / name, **PROBABILITIES.pop(held_out))
            log(f"{label}: {held_out} held-out {_headline(results[label][f'{held_out} held-out']):.3f}")

    for path in args.models:
        for label, spec in seeded_specs(path, args.seeds):
            run(
                label,
                lambda rows, spec=spec: train_cnn(spec, rows, args.epochs),
                lambda fitted, s, rows, spec=spec: score_cnn(spec, fitted[0], fitted[1], s, rows),
            )
    add_seed_means(results)
    if not args.no_baselines:
        run("baseline mfcc+logreg", fit_mfcc, score_mfcc)
    if args.confusion:
        save_confusion(heldout_predictions, args.confusion)
    return results


def save_confusion(heldout_predictions: dict[str, list], out: Path) -> None:
    """The first instrument CNN's held-out predictions, all sources pooled, as a confusion matrix PNG."""
    from instropitch.ml.reports import confusion_figure
    from instropitch.ml.snapshot import class_layout

    for label, pairs in heldout_predictions.items():
        pairs = [p for p in pairs if p is not None]
        if not label.startswith("cnn ") or not pairs or pairs[0][0].dtype.kind not in "UO":
            continue
        names = class_layout("instrument")[1]
        index = {n: i for i, n in enumerate(names)}
        true = np.array([index[v] for p in pairs for v in p[0].tolist()])
        pred = np.array([index[v] for p in pairs for v in p[1].tolist()])
        title = f"{label}: held-out sources pooled, accuracy {np.mean(true == pred):.3f}"
        confusion_figure(true, pred, names, title).savefig(out, dpi=110)
        log(f"confusion matrix of {label} -> {out}")
        return


def _headline(report: dict[str, float]) -> float:
    return report.get("exact", report.get("accuracy", float("nan")))


def print_table(results: dict) -> None:
    columns: list[str] = []
    for row in results.values():
        columns += [c for c in row if c not in columns]
    print("| model | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for label, row in results.items():
        cells = [f"{_headline(row[c]):.3f}" if c in row else "" for c in columns]
        print(f"| {label} | " + " | ".join(cells) + " |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--protocol", choices=("ood", "loso", "folds"), required=True)
    parser.add_argument("--work", type=Path, default=ROOT / ".instropitch" / "bench" / "accuracy")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the 2,913-note manifest per set")
    parser.add_argument(
        "--soundfont", action="append", default=[], metavar="NAME=PATH", help="another SF2 (repeatable)"
    )
    parser.add_argument("--models", type=Path, nargs="+", default=DEFAULT_MODELS)
    parser.add_argument("--reference", action="store_true", help="also the seed project's recipe (models/reference)")
    parser.add_argument("--epochs", type=int, default=None, help="cap every model's epochs")
    parser.add_argument("--conditions", default="mixed", help="render conditions of the loso sources")
    parser.add_argument("--sources-dir", type=Path, help="loso: an existing multi-source render (one folder per font)")
    parser.add_argument("--fraction", type=float, default=1.0, help="loso: a stratified fraction of each source")
    parser.add_argument("--no-pyin", action="store_true", help="skip the slow pYIN baseline")
    parser.add_argument("--no-baselines", action="store_true", help="CNNs only (no MFCC+LR, no pYIN)")
    parser.add_argument(
        "--seeds",
        type=lambda v: [int(s) for s in v.split(",")],
        default=[],
        help="train each CNN once per seed: 42,1,2",
    )
    parser.add_argument("--heldout-only", action="store_true", help="loso: skip the model trained on every source")
    parser.add_argument(
        "--heldout", type=lambda v: v.split(","), default=[], help="loso: hold out only these sources: a,b"
    )
    parser.add_argument("--in-distribution-only", action="store_true", help="ood: score on the test split only")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--save-probabilities",
        type=Path,
        metavar="DIR",
        help="loso: each CNN's held-out class probabilities, labels and notes as DIR/<label>-<source>.npz",
    )
    parser.add_argument("--confusion", type=Path, help="loso: PNG of the instrument CNN's held-out confusion matrix")
    args = parser.parse_args()

    from instropitch.ml.cnn import configure_tensorflow
    from instropitch.synth.sf2 import default_soundfont_path

    configure_tensorflow()
    fonts = {"timgm6mb": str(default_soundfont_path())}
    for item in args.soundfont:
        name, _, path = item.partition("=")
        fonts[name] = path
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / "cache").mkdir(exist_ok=True)
    started = time.perf_counter()
    protocols = {"ood": protocol_ood, "loso": protocol_loso, "folds": protocol_folds}
    results = protocols[args.protocol](args, fonts)
    print_table(results)
    record = {
        "protocol": args.protocol,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}",
        "load_average_end": os.getloadavg()[0],
        "seconds": round(time.perf_counter() - started, 1),
        "scale": args.scale,
        "epochs_cap": args.epochs,
        "seeds": args.seeds,
        "fonts": fonts,
        "results": results,
    }
    if args.json:
        args.json.write_text(json.dumps(record, indent=1))
    log(f"done in {record['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
