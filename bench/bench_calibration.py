"""Benchmark: does the shown instrument confidence mean what it says on notes from elsewhere? (issue 15)

Predicts labelled sets the models never trained on with the champion models
(`Predictor.load`: an export or the registry) and reports per set and pooled, for the
instrument, its family and the pitch answers: accuracy, the expected calibration error (15 bins) of the
raw softmax and of the calibrated confidence shown to people, how many answers are "sure"
and how many of those are right. A set is

* `--fluidsynth NAME=SF2`: the planned notes played by FluidSynth (`bench/external_render.py`,
  code this project did not write: the honest test),
* `--tinysoundfont NAME=SF2`: the same played by TinySoundFont (PyPI; `bench/external_render.py`),
* `--soundfont NAME=SF2`: the same notes rendered by the project's own SF2 player,
* `--data NAME=DIR`: any TinySOL-layout folder with its metadata CSV.

    .venv/bin/python bench/bench_calibration.py --from-export DIR \\
        --fluidsynth fluidr3=/usr/share/sounds/sf2/FluidR3_GM.sf2 --json /tmp/cal.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from external_render import render_folder  # noqa: E402  (a bench module beside this one)


def _named(value: str) -> tuple[str, Path]:
    name, sep, path = value.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{value!r}: expected NAME=PATH")
    return name, Path(path)


def collect_sets(args: argparse.Namespace, work: Path) -> dict[str, Path]:
    """{set name: TinySOL-layout folder}, rendering what has to be rendered."""
    from instropitch import synth

    sets: dict[str, Path] = dict(args.data)
    for name, font in args.fluidsynth:
        sets[name] = render_folder(font, work / name, seed=args.seed, scale=args.scale)
    for name, font in args.tinysoundfont:
        sets[name] = render_folder(font, work / name, seed=args.seed, scale=args.scale, player="tinysoundfont")
    for name, font in args.soundfont:
        synth.render_dataset(
            work / name,
            soundfont=str(font),
            seed=args.seed,
            scale=args.scale,
            conditions=args.conditions,
            progress=False,
        )
        sets[name] = work / name
    return sets


def ranking(confidence: np.ndarray, correct: np.ndarray) -> float | None:
    """AUROC of the confidence for telling right answers from wrong ones (0.5: it says nothing; None: all alike)."""
    from sklearn.metrics import roc_auc_score

    if correct.all() or not correct.any():
        return None
    return float(roc_auc_score(correct, confidence))


def score(predictions: list, rows: list) -> dict[str, dict]:
    """Per answer kind (instrument, its family, pitch): accuracy, ECE of the raw (the family has none) and of the
    shown confidence, the mean shown confidence and how well it ranks right above wrong answers, the sure share
    and its accuracy."""
    from instropitch.ml.calibration import answer_ece
    from instropitch.tinysol import INSTRUMENT_BY_ABBR

    report = {}
    for role, truth, answer, raw_field in (
        ("instrument", [r.instrument_abbr for r in rows], lambda p: p.instrument_abbr, "instrument_confidence_raw"),
        (
            "instrument_family",
            [INSTRUMENT_BY_ABBR[r.instrument_abbr].family for r in rows],
            lambda p: p.instrument_family,
            None,
        ),
        ("pitch", [r.pitch_id for r in rows], lambda p: p.midi, "pitch_confidence_raw"),
    ):
        ok = [(t, p) for t, p in zip(truth, predictions, strict=True) if p.ok]
        correct = np.array([answer(p) == t for t, p in ok])
        shown = np.array([getattr(p, f"{role}_confidence") for _, p in ok])
        sure = np.array([bool(getattr(p, f"{role}_sure")) for _, p in ok])
        report[role] = {
            "n": len(ok),
            "accuracy": float(correct.mean()),
            "ece_raw": answer_ece(np.array([getattr(p, raw_field) for _, p in ok]), correct) if raw_field else None,
            "ece_shown": answer_ece(shown, correct),
            "shown_mean": float(shown.mean()),
            "shown_auroc": ranking(shown, correct),
            "sure_share": float(sure.mean()),
            "sure_accuracy": float(correct[sure].mean()) if sure.any() else None,
        }
    foreign = [p.instrument_foreignness for _, p in ok if p.instrument_foreignness is not None]
    if foreign:  # how unlike the instrument model's training notes the set looks (1: a validation note)
        report["instrument"]["foreignness_median"] = float(np.median(foreign))
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from-export", type=Path, help="an `instropitch export` folder (default: the registry)")
    parser.add_argument("--fluidsynth", type=_named, action="append", default=[], metavar="NAME=SF2")
    parser.add_argument("--tinysoundfont", type=_named, action="append", default=[], metavar="NAME=SF2")
    parser.add_argument("--soundfont", type=_named, action="append", default=[], metavar="NAME=SF2")
    parser.add_argument("--data", type=_named, action="append", default=[], metavar="NAME=DIR")
    parser.add_argument("--scale", type=float, default=0.1, help="share of the 2,913 planned notes per set")
    parser.add_argument("--seed", type=int, default=3, help="manifest seed (the demo trains on seed 0)")
    parser.add_argument("--conditions", default="dry", help="render conditions of --soundfont sets")
    parser.add_argument("--work", type=Path, help="where renders go (default: a temporary folder)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from instropitch import tinysol
    from instropitch.serving.predictor import Predictor

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-calibration-"))
    sets = collect_sets(args, work)
    if not sets:
        parser.error("give at least one --fluidsynth, --tinysoundfont, --soundfont or --data set")
    predictor = Predictor.load(from_export=args.from_export)
    reports, pooled_rows, pooled = {}, [], []
    for name, folder in sets.items():
        rows = tinysol.parse_metadata(folder / tinysol.METADATA_FILENAME).rows
        predictions = predictor.predict_many([(r.path, folder / r.path) for r in rows], top_k=0)
        reports[name] = score(predictions, rows)
        pooled_rows += rows
        pooled += predictions
    if len(sets) > 1:
        reports["pooled"] = score(pooled, pooled_rows)
    for name, report in reports.items():
        for role, r in report.items():
            raw = (
                "  -  " if r["ece_raw"] is None else f"{r['ece_raw']:.3f}"
            )  # a family answer has no softmax of its own
            print(
                f"{name:12s} {role:10s} n {r['n']:4d}  accuracy {r['accuracy']:.1%}  ECE raw {raw} "
                f"shown {r['ece_shown']:.3f} (mean {r['shown_mean']:.2f}, AUROC {r['shown_auroc'] or 0:.2f})  "
                f"sure {r['sure_share']:.0%} of notes, {r['sure_accuracy'] or 0:.1%} right"
                + (f"  foreignness median {r['foreignness_median']:.2f}" if "foreignness_median" in r else "")
            )
    record = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "load_average": os.getloadavg(),
        "sets": {name: str(folder) for name, folder in sets.items()},
        "calibration": {role: m.calibration.to_dict() for role, m in predictor.models.items()},
        "report": reports,
    }
    if args.json:
        args.json.write_text(json.dumps(record, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
