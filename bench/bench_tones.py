"""Benchmark: is every periodic tone a person hears as a pitch named right? (issue 15)

A user checks the tool with a tone generator. Over MIDI 28..105 this renders, at 44.1 kHz:
pure sines, square and triangle waves (band-limited, by their Fourier series), tones whose
fundamental is missing (harmonics 2..8 only, as in low brass and bassoon), and 80 ms sine
notes; each 1 s long (but the short notes), 10 ms fades. It predicts them with the champion
models (`Predictor.load`: an export folder or the registry) and prints the exact note +
octave accuracy per kind, with the misses.

    .venv/bin/python bench/bench_tones.py --from-export DIR --json /tmp/tones.json
    MLFLOW_TRACKING_URI=sqlite:///$PWD/.instropitch/mlflow.db .venv/bin/python bench/bench_tones.py
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

SR = 44100
LOW, HIGH = 28, 105


def tone(kind: str, midi: int, seconds: float = 1.0, sr: int = SR) -> np.ndarray:
    """One test tone of `kind` at `midi`, peak 0.5, band-limited below Nyquist."""
    f0 = 440.0 * 2 ** ((midi - 69) / 12)
    t = np.arange(int(seconds * sr)) / sr
    if kind in ("sine", "short"):
        partials = {1: 1.0}
    elif kind == "square":
        partials = {n: 1 / n for n in range(1, 200, 2)}
    elif kind == "triangle":
        partials = {n: (-1) ** ((n - 1) // 2) / n**2 for n in range(1, 200, 2)}
    elif kind == "missing_fundamental":
        partials = {n: 1.0 for n in range(2, 9)}
    else:
        raise ValueError(kind)
    y = sum(a * np.sin(2 * np.pi * n * f0 * t) for n, a in partials.items() if n * f0 < sr / 2 * 0.95)
    fade = min(int(0.01 * sr), len(t) // 4)
    ramp = np.ones(len(t))
    ramp[:fade] = np.linspace(0, 1, fade)
    ramp[-fade:] = np.linspace(1, 0, fade)
    y = y * ramp
    return (0.5 * y / np.abs(y).max()).astype(np.float32)


KINDS = {"sine": 1.0, "square": 1.0, "triangle": 1.0, "missing_fundamental": 1.0, "short": 0.08}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from-export", type=Path, help="an export folder (default: the registry champions)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from instropitch import audio
    from instropitch.serving.predictor import Predictor

    predictor = Predictor.load(from_export=args.from_export)
    results: dict[str, dict] = {}
    started = time.perf_counter()
    for kind, seconds in KINDS.items():
        notes = []
        for midi in range(LOW, HIGH + 1):
            buf = __import__("io").BytesIO()
            audio.write_wav(buf, tone(kind, midi, seconds), SR)
            notes.append((f"{kind}-{midi}.wav", buf.getvalue()))
        predictions = predictor.predict_many(notes, top_k=0)
        truth = list(range(LOW, HIGH + 1))
        misses = [(m, p.midi, p.error) for m, p in zip(truth, predictions, strict=True) if p.midi != m]
        results[kind] = {
            "accuracy": 1 - len(misses) / len(truth),
            "n": len(truth),
            "misses": misses,
            "sure_share": float(np.mean([bool(p.pitch_sure) for p in predictions if p.ok])),
        }
        print(f"{kind:20s} {results[kind]['accuracy']:6.1%}  misses {misses[:12]}{' ...' if len(misses) > 12 else ''}")
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
