"""Benchmark: a file that is not one pitched note must not get a sure answer it cannot have (issue 15).

A user may hand the tool noise, a cymbal, a clap, a breath or a metronome, or a chord. The
models know single notes of 14 pitched instruments. Before session 53 the family answer of white
noise read "Strings 100 %, sure", and a C major triad on C4 read "C2, sure" (the period its notes
share). The predictor now says "no pitched note" (and shows no instrument or family answer as sure)
when the pitch answer is not sure and the waveform has no period to believe
(`Predictor._no_pitch_warning`), and "several notes at once" (the pitch answer not sure) when the
period it would go by is silent at its fundamental and octave (`pitch_evidence.shared_period`).

This renders such sounds with SoX (`sox -n ... synth`: code this project did not write; fresh random
draws each run): noises, and chords of SoX's plucked strings (Karplus-Strong), sines, triangle and
square waves on random roots. It counts, per kind, how often each warning comes and how often an
answer is still shown as sure. `--notes` adds TinySOL-layout folders of real notes (e.g.
`bench/recordings_set.py`, the demo's renders) on which neither warning may come: it counts the
notes they come on. `--as-before` runs the predictor without either check.

    .venv/bin/python bench/bench_not_one_note.py --from-export DIR --notes /tmp/tonejs --json /tmp/not_one.json
    MLFLOW_TRACKING_URI=sqlite:///$PWD/.instropitch/mlflow.db .venv/bin/python bench/bench_not_one_note.py
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

SR = 44100
NO_NOTE = "no pitched note"
SEVERAL = "several notes at once"
"""How the predictor's warnings start."""
KINDS = {
    "white 1.5 s": ["synth", "1.5", "whitenoise"],
    "white 0.3 s": ["synth", "0.3", "whitenoise"],
    "pink 1.5 s": ["synth", "1.5", "pinknoise"],
    "pink 0.3 s": ["synth", "0.3", "pinknoise"],
    "brown 1.5 s": ["synth", "1.5", "brownnoise"],
    "brown 0.3 s": ["synth", "0.3", "brownnoise"],
    "burst (clap, snare)": ["synth", "1.5", "whitenoise", "fade", "q", "0.005", "1.5", "1.4"],
    "cymbal (noise > 3 kHz)": ["synth", "2", "whitenoise", "highpass", "3000", "fade", "q", "0.005", "2", "1.9"],
    "wind (noise 200-800 Hz)": ["synth", "1.5", "whitenoise", "sinc", "200-800"],
    "breath (noise 1-3 kHz)": ["synth", "1.5", "pinknoise", "sinc", "1000-3000", "fade", "t", "0.2", "1.5", "0.4"],
    "rumble (noise < 150 Hz)": ["synth", "1.5", "brownnoise", "sinc", "-150"],
}
"""SoX effects after `sox -n -r 44100 -c 1 -b 16 OUT`, then `norm -6`."""
CHORDS = {"major": (0, 4, 7), "minor": (0, 3, 7), "dominant 7th": (0, 4, 7, 10), "sus4": (0, 5, 7), "fifth": (0, 7)}
"""Semitones above the root."""
WAVES = ("pluck", "sine", "triangle", "square")


def no_note_wav(kind: str, draw: int, folder: Path) -> tuple[str, bytes]:
    """One draw of a kind of sound with no pitched note, as (name, WAV bytes)."""
    out = folder / f"{kind.split(' ')[0]}-{draw}.wav"
    command = ["sox", "-n", "-r", str(SR), "-c", "1", "-b", "16", str(out), *KINDS[kind], "norm", "-6"]
    subprocess.run(command, check=True, capture_output=True)
    return out.name, out.read_bytes()


def chord_wav(chord: str, draw: int, folder: Path) -> tuple[str, bytes]:
    """One chord on a random root (MIDI 40-76) in a random SoX wave, 1.5 s with a 10 ms fade-in, as (name, bytes)."""
    rng = np.random.default_rng(draw)
    root, wave = int(rng.integers(40, 77)), str(rng.choice(WAVES))
    out = folder / f"{chord.replace(' ', '_')}-{wave}-{root}.wav"
    tones = [w for step in CHORDS[chord] for w in (wave, f"%{root + step - 69}")]
    channels = str(len(CHORDS[chord]))
    command = ["sox", "-n", "-r", str(SR), "-c", channels, "-b", "16", str(out), "synth", "1.5", *tones, "remix", "-"]
    subprocess.run([*command, "fade", "0.01", "1.5", "0.3", "norm", "-6"], check=True, capture_output=True)
    return out.name, out.read_bytes()


def clicks_wav(draw: int) -> tuple[str, bytes]:
    """A metronome: clicks every 0.25-0.6 s over 2 s (numpy: SoX has no click train), 16-bit WAV bytes."""
    import soundfile

    rng = np.random.default_rng(draw)
    y = np.zeros(2 * SR, dtype=np.float32)
    y[:: int(SR * rng.uniform(0.25, 0.6))] = 0.5
    buffer = io.BytesIO()
    soundfile.write(buffer, y, SR, format="WAV", subtype="PCM_16")
    return f"clicks-{draw}.wav", buffer.getvalue()


def labelled_instruments(folder: Path) -> dict[str, str]:
    """Every note of a TinySOL-layout folder (its metadata CSV) -> its instrument's abbreviation."""
    with open(folder / "TinySOL_metadata.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if (folder / r["Path"]).is_file()]
    return {str(folder / r["Path"]): r["Instrument (abbr.)"] for r in rows}


def tally(predictions: list) -> dict:
    """How many answers were made, warned of as no note or as several, and shown sure (instrument, family, pitch)."""
    made = [p for p in predictions if p.ok]
    return {
        "n": len(predictions),
        "answered": len(made),
        "no_note": sum(any(w.startswith(NO_NOTE) for w in p.warnings) for p in made),
        "several": sum(any(w.startswith(SEVERAL) for w in p.warnings) for p in made),
        "instrument_sure": sum(p.instrument_sure for p in made),
        "family_sure": sum(p.instrument_family_sure for p in made),
        "pitch_sure": sum(p.pitch_sure for p in made),
        "errors": sorted({str(p.error).split(":")[0] for p in predictions if not p.ok}),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from-export", type=Path, help="an export folder (default: the registry champions)")
    parser.add_argument("--notes", type=Path, nargs="*", default=[], help="TinySOL-layout folders of real notes")
    parser.add_argument("--draws", type=int, default=20, help="draws of each kind of sound")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--as-before", action="store_true", help="without the checks (the predictor of session 52)")
    args = parser.parse_args()
    if shutil.which("sox") is None:
        raise SystemExit("bench_not_one_note: needs SoX (apt-get install sox)")
    from instropitch.serving import pitch_evidence
    from instropitch.serving.predictor import Predictor
    from instropitch.tinysol import INSTRUMENT_BY_ABBR

    if args.as_before:
        Predictor._no_pitch_warning = lambda *args: None  # type: ignore[method-assign]
        pitch_evidence.shared_period = lambda *args: False
    predictor = Predictor.load(from_export=args.from_export)
    started = time.perf_counter()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-not-one-note-") as tmp:
        sets = {kind: [no_note_wav(kind, d, Path(tmp)) for d in range(args.draws)] for kind in KINDS}
        sets["clicks (metronome)"] = [clicks_wav(d) for d in range(args.draws)]
        sets.update({f"chord: {c}": [chord_wav(c, d, Path(tmp)) for d in range(args.draws)] for c in CHORDS})
        for kind, sounds in sets.items():
            results[kind] = tally(predictor.predict_many(sounds, top_k=0))
            r = results[kind]
            print(
                f"{kind:26s} {r['no_note']:3d} / {r['several']:3d} of {r['answered']:3d} warned no note / several; "
                f"shown sure: instrument "
                f"{r['instrument_sure']}, family {r['family_sure']}, pitch {r['pitch_sure']}  {r['errors'] or ''}"
            )
    for folder in args.notes:
        truth = labelled_instruments(folder)
        predictions = predictor.predict_many(list(truth), top_k=0)
        r = results[f"notes: {folder}"] = tally(predictions)
        warned = [p for p in predictions if p.ok and any(w.startswith((NO_NOTE, SEVERAL)) for w in p.warnings)]
        r["warned_right_instrument"] = sum(p.instrument_abbr == truth[p.file] for p in warned)
        r["warned_right_family"] = sum(p.instrument_family == INSTRUMENT_BY_ABBR[truth[p.file]].family for p in warned)
        r["warned_files"] = [p.file for p in warned]
        print(
            f"{str(folder):26s} {r['no_note']:3d} / {r['several']:3d} of {r['answered']:3d} notes warned no note / several "
            f"(right instrument {r['warned_right_instrument']}, family {r['warned_right_family']} among them)"
        )
    record = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "as_before": args.as_before,
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
