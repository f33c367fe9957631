"""Benchmark: a note between two notes must not get a sure pitch answer, and its cents must be read right (issue 15).

The pitch CNN names the nearest of 89 notes; its calibration was fitted on notes within ~35 cents of their
names. This moves real notes (`--notes`: TinySOL-layout folders, e.g. `bench/recordings_set.py`'s recordings)
off their pitch with SoX's `speed` (code this project did not write; pitch and length change together, as a
recording played fast or slow) by 25-50 cents either way, and asks the predictor with the "between two notes"
check (`serving.caveats.BETWEEN_NOTES_CENTS`) and without it: how often the nearest note is named, shown sure,
shown sure and wrong. It reads `pitch_cents` against the cents applied (each note's own reading added), on those
notes and on SoX's tone generator (sine, triangle, square; MIDI 28-102, -47 to +47 cents; and the top register,
MIDI 76-105 every 10 cents to +-40, sawtooths too), and counts the notes of every `--notes` folder, as they are, that
the check makes not sure.

    MLFLOW_TRACKING_URI=sqlite:///$PWD/.instropitch/mlflow.db .venv/bin/python bench/bench_tuning.py \
        --notes /tmp/tonejs /tmp/renders/* --moved /tmp/tonejs --json /tmp/tuning.json
"""

from __future__ import annotations

import argparse
import contextlib
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_tones  # noqa: E402  (a bench module beside this one)

CENTS = (25, 36, 40, 42, 44, 46, 48, 50)
"""How far each moved note is moved, either way."""
TONE_CENTS = (-47, -30, -12, 0, 5, 20, 47)
TONE_MIDIS = range(28, 103, 6)
TONE_WAVES = ("sine", "triangle", "square")
TOP_CENTS = range(-40, 41, 10)
TOP_MIDIS = range(76, 106)
TOP_WAVES = ("sine", "triangle", "square", "sawtooth")
"""The top register, every note and 10 cents: SoX's squares and sawtooths there are not band-limited (their
harmonics fold back under the Nyquist frequency at places no harmonic of them), and a detuned pure tone repeats
almost exactly at a subharmonic's period."""


@contextlib.contextmanager
def check_off() -> Iterator[None]:
    """The predictor of session 56: no "between two notes" check (the cents are still read)."""
    from instropitch.serving import caveats

    original = caveats.between_notes
    caveats.between_notes = lambda cents: False
    try:
        yield
    finally:
        caveats.between_notes = original


def labelled(folder: Path) -> dict[str, int]:
    """{path: the MIDI note its metadata names} of a TinySOL-layout folder."""
    import csv

    with open(folder / "TinySOL_metadata.csv", newline="") as f:
        return {
            str(folder / r["Path"]): int(r["Pitch ID"]) for r in csv.DictReader(f) if (folder / r["Path"]).is_file()
        }


def moved(path: str, cents: int, out: Path) -> str:
    """`path` played `cents` faster (slower when negative) by SoX's `speed`, as a WAV in `out`."""
    target = out / f"{Path(path).stem}{cents:+d}c.wav"
    subprocess.run(["sox", path, str(target), "speed", f"{cents}c"], check=True, capture_output=True)
    return str(target)


def tone(wave: str, midi: int, cents: int, out: Path) -> str:
    """SoX's tone generator: `wave` at `midi` + `cents`, 1.5 s, 44.1 kHz."""
    target = out / f"{wave}-{midi}{cents:+d}c.wav"
    hz = 440.0 * 2 ** ((midi - 69) / 12 + cents / 1200)
    command = ["sox", "-n", "-r", "44100", "-c", "1", "-b", "16", str(target), "synth", "1.5", wave, f"{hz:.5f}"]
    subprocess.run([*command, "fade", "0.01", "1.5", "0.01", "norm", "-6"], check=True, capture_output=True)
    return str(target)


def tally(predictions: list, nearest: list[int]) -> dict[str, Any]:
    """How many were answered, named the `nearest` note, shown sure, shown sure and wrong, warned between two notes."""
    made = [(p, n) for p, n in zip(predictions, nearest, strict=True) if p.ok]
    return {
        "n": len(predictions),
        "answered": len(made),
        "nearest": sum(p.midi == n for p, n in made),
        "sure": sum(bool(p.pitch_sure) for p, _ in made),
        "sure_wrong": sum(bool(p.pitch_sure) and p.midi != n for p, n in made),
        "between": sum(p.not_sure_because.get("pitch") == "between two notes" for p, _ in made),
    }


def cents_errors(predictions: list, expected: list[float]) -> dict[str, Any]:
    """How far each prediction's `pitch_cents` is from the cents `expected` of it: how many are unread (or failed),
    the median, 95th-percentile and largest absolute error."""
    read = [p.pitch_cents if p.ok else None for p in predictions]
    errors = np.asarray([abs(r - e) for r, e in zip(read, expected, strict=True) if r is not None])
    return {
        "unread": sum(r is None for r in read),
        "median_error": round(float(np.median(errors)), 2) if len(errors) else None,
        "p95_error": round(float(np.percentile(errors, 95)), 2) if len(errors) else None,
        "max_error": round(float(errors.max()), 2) if len(errors) else None,
    }


def moved_sets(predictor: Any, notes: dict[str, int], draw: int, out: Path) -> dict[str, Any]:
    """Each of `draw` notes moved by every `CENTS` either way: named, sure, sure and wrong, with the check and
    without; the cents read against each note's own reading plus the cents applied."""
    chosen = random.Random(0).sample(sorted(notes), min(draw, len(notes)))
    own = {p.file: p for p in predictor.predict_many(chosen, top_k=0)}
    chosen = [path for path in chosen if own[path].ok and own[path].pitch_cents is not None]
    results = {}
    for cents in CENTS:
        paths = [moved(path, sign * cents, out) for path in chosen for sign in (1, -1)]
        applied = [own[path].pitch_cents + sign * cents for path in chosen for sign in (1, -1)]
        origins = [path for path in chosen for _ in (1, -1)]
        nearest = [own[path].midi + round(a / 100) for path, a in zip(origins, applied, strict=True)]
        own_midis = [own[path].midi for path in origins]
        predictions = predictor.predict_many(paths, top_k=0)
        r = tally(predictions, nearest)
        with check_off():
            r["as_before"] = tally(predictor.predict_many(paths, top_k=0), nearest)
        expected = [
            a - 100 * (p.midi - o) if p.ok else 0.0 for p, a, o in zip(predictions, applied, own_midis, strict=True)
        ]
        r["cents"] = cents_errors(predictions, expected)
        results[f"moved {cents}"] = r
        print(
            f"moved +-{cents} cents ({r['n']}): nearest named {r['nearest']}; sure {r['sure']} "
            f"({r['as_before']['sure']} without the check), sure and wrong {r['sure_wrong']} "
            f"({r['as_before']['sure_wrong']}); cents read off by {r['cents']['median_error']} (median), "
            f"{r['cents']['p95_error']} (95th), {r['cents']['unread']} unread"
        )
    return results


def tone_sets(
    predictor: Any,
    out: Path,
    waves: tuple[str, ...] = TONE_WAVES,
    midis: range = TONE_MIDIS,
    detunes: Iterable[int] = TONE_CENTS,
    name: str = "SoX",
) -> dict[str, Any]:
    """SoX's `waves` at `midis` + `detunes` (cents): the cents read against the cents played, and the sure answers."""
    results = {}
    for wave in waves:
        played = [(m, c) for m in midis for c in detunes]
        predictions = predictor.predict_many([tone(wave, m, c, out) for m, c in played], top_k=0)
        expected = [c + 100 * (m - p.midi) if p.ok else 0.0 for p, (m, c) in zip(predictions, played, strict=True)]
        r = tally(predictions, [m for m, _ in played])
        r["cents"] = cents_errors(predictions, expected)
        r["misses"] = [f"{m}{c:+d}c -> {p.midi}" for p, (m, c) in zip(predictions, played, strict=True) if p.midi != m]
        results[f"{name} {wave}"] = r
        print(
            f"{name} {wave:8s} ({r['n']}): named {r['nearest']}; cents read off by "
            f"{r['cents']['median_error']} (median), {r['cents']['p95_error']} (95th), {r['cents']['max_error']} (max), {r['cents']['unread']} unread; "
            f"between two notes {r['between']}, sure {r['sure']}, sure and wrong {r['sure_wrong']}"
        )
    return results


def held_sets(predictor: Any, folders: list[Path]) -> dict[str, Any]:
    """The notes of each folder as they are: how far from their names they read, and how many the check takes."""
    results = {}
    for folder in folders:
        notes = labelled(folder)
        predictions = predictor.predict_many(sorted(notes), top_k=0)
        nearest = [notes[p.file] for p in predictions]
        r = tally(predictions, nearest)
        with check_off():
            r["as_before"] = tally(predictor.predict_many(sorted(notes), top_k=0), nearest)
        read = np.asarray([abs(p.pitch_cents) for p in predictions if p.ok and p.pitch_cents is not None])
        r["abs_cents"] = {q: round(float(np.percentile(read, q)), 1) for q in (50, 95, 99, 100)} if len(read) else {}
        r["unread"] = sum(p.ok and p.pitch_cents is None for p in predictions)
        results[f"notes: {folder}"] = r
        print(
            f"{str(folder):40s} {r['n']:5d} notes: |cents| {r['abs_cents']} ({r['unread']} unread); between two "
            f"notes {r['between']}; sure {r['sure']} ({r['as_before']['sure']} without the check)"
        )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from-export", type=Path, help="an export folder (default: the registry champions)")
    parser.add_argument("--notes", type=Path, nargs="*", default=[], help="TinySOL-layout folders of held notes")
    parser.add_argument("--moved", type=Path, nargs="*", default=[], help="folders whose notes are moved off pitch")
    parser.add_argument("--draw", type=int, default=60, help="notes moved from each --moved folder")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if shutil.which("sox") is None:
        raise SystemExit("bench_tuning: needs SoX (apt-get install sox)")
    from instropitch.serving.predictor import Predictor

    predictor = Predictor.load(from_export=args.from_export)
    started = time.perf_counter()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-tuning-") as tmp:
        results.update(tone_sets(predictor, Path(tmp)))
        results.update(tone_sets(predictor, Path(tmp), TOP_WAVES, TOP_MIDIS, TOP_CENTS, "SoX top register"))
        for folder in args.moved:
            results[f"moved: {folder}"] = moved_sets(predictor, labelled(folder), args.draw, Path(tmp))
    results.update(held_sets(predictor, args.notes))
    bench_tones.write_record(args.json, predictor, started, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
