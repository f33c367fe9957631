"""Benchmark: is every periodic tone a person hears as a pitch named right? (issue 15)

A user checks the tool with a tone generator. Over MIDI 28..105 this has SoX (`sox -n ...
synth`, Debian's sox: code this project did not write, unlike the tones it trains on) render
at 44.1 kHz: pure sines, square and triangle waves, tones whose fundamental is missing
(harmonics 2..8 mixed, as in low brass and bassoon), and 80 ms sine notes; 1 s each (but the
short ones), 10 ms fades. It predicts them with the champion models (`Predictor.load`: an
export folder or the registry) and prints the exact note + octave accuracy per kind, with
the misses.

    .venv/bin/python bench/bench_tones.py --from-export DIR --json /tmp/tones.json
    MLFLOW_TRACKING_URI=sqlite:///$PWD/.instropitch/mlflow.db .venv/bin/python bench/bench_tones.py
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

SR = 44100
LOW, HIGH = 28, 105


def sox_tone(kind: str, midi: int, seconds: float, out: Path) -> bytes:
    """The WAV bytes SoX renders for one test tone (peak -6 dBFS)."""
    f0 = 440.0 * 2 ** ((midi - 69) / 12)
    if kind == "missing_fundamental":
        partials = [n * f0 for n in range(2, 9) if n * f0 < 0.45 * SR]
        synth = [w for f in partials for w in ("sine", f"{f:.4f}")]
        remix = ["remix", "-"] if len(partials) > 1 else []
        channels = ["-c", str(len(partials))]
    else:
        synth = ["square" if kind == "square" else "triangle" if kind == "triangle" else "sine", f"{f0:.4f}"]
        remix, channels = [], ["-c", "1"]
    command = ["sox", "-n", "-r", str(SR), *channels, "-b", "16", str(out), "synth", f"{seconds}", *synth, *remix]
    command += ["fade", "0.01", f"{seconds}", "0.01", "norm", "-6"]
    subprocess.run(command, check=True, capture_output=True)
    return out.read_bytes()


KINDS = {"sine": 1.0, "square": 1.0, "triangle": 1.0, "missing_fundamental": 1.0, "short": 0.08}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from-export", type=Path, help="an export folder (default: the registry champions)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from instropitch.serving.predictor import Predictor

    predictor = Predictor.load(from_export=args.from_export)
    results: dict[str, dict] = {}
    started = time.perf_counter()
    if shutil.which("sox") is None:
        raise SystemExit("bench_tones: needs SoX (apt-get install sox)")
    tmp = Path(tempfile.mkdtemp(prefix="bench-tones-"))
    for kind, seconds in KINDS.items():
        notes = [
            (f"{kind}-{midi}.wav", sox_tone(kind, midi, seconds, tmp / f"{kind}-{midi}.wav"))
            for midi in range(LOW, HIGH + 1)
        ]
        predictions = predictor.predict_many(notes, top_k=0)
        truth = list(range(LOW, HIGH + 1))
        misses = [(m, p.midi, p.error) for m, p in zip(truth, predictions, strict=True) if p.midi != m]
        results[kind] = {
            "accuracy": 1 - len(misses) / len(truth),
            "n": len(truth),
            "misses": misses,
            "sure_share": float(np.mean([bool(p.pitch_sure) for p in predictions if p.ok])),
            "sure_accuracy": float(
                np.mean([p.midi == m for m, p in zip(truth, predictions, strict=True) if p.ok and p.pitch_sure] or [0])
            ),
        }
        print(
            f"{kind:20s} {results[kind]['accuracy']:6.1%}  sure {results[kind]['sure_share']:4.0%} of notes, "
            f"{results[kind]['sure_accuracy']:6.1%} of those right"
        )
        print(f"{'':20s} misses {misses[:12]}{' ...' if len(misses) > 12 else ''}")
    record = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "load_average": os.getloadavg(),
        "seconds": round(time.perf_counter() - started, 1),
        "models": predictor.describe()["models"],
        "results": results,
    }
    if args.json:
        args.json.write_text(json.dumps(record, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
