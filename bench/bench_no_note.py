"""Benchmark: a file with no pitched note must not get a sure instrument answer (issue 15).

A user may hand the tool noise, a cymbal, a clap, a breath or a metronome. The models know 14
pitched instruments, so whatever they answer on such a file is wrong, and before session 53 the
family answer of white noise read "Strings 100 %, sure". The predictor now says "no pitched note"
(and shows no instrument or family answer as sure) when the pitch answer is not sure and the
waveform has no period to believe (`Predictor._no_pitch_warning`). This renders such sounds with
SoX (`sox -n ... synth`: code this project did not write; fresh random draws each run) and counts,
per kind, how often the warning comes and how often an answer is still shown as sure. `--notes`
adds TinySOL-layout folders of real notes (e.g. `bench/recordings_set.py`, the demo's renders)
on which the warning must not come: it counts the notes it does come on, and the right
instrument and family answers it would take "sure" from.

    .venv/bin/python bench/bench_no_note.py --from-export DIR --notes /tmp/tonejs --json /tmp/no_note.json
    MLFLOW_TRACKING_URI=sqlite:///$PWD/.instropitch/mlflow.db .venv/bin/python bench/bench_no_note.py
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
"""How the predictor's warning starts."""
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


def no_note_wav(kind: str, draw: int, folder: Path) -> tuple[str, bytes]:
    """One draw of a kind of sound with no pitched note, as (name, WAV bytes)."""
    out = folder / f"{kind.split(' ')[0]}-{draw}.wav"
    command = ["sox", "-n", "-r", str(SR), "-c", "1", "-b", "16", str(out), *KINDS[kind], "norm", "-6"]
    subprocess.run(command, check=True, capture_output=True)
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
    """How many answers were made, warned of as no note, and shown sure (instrument, family, pitch)."""
    made = [p for p in predictions if p.ok]
    return {
        "n": len(predictions),
        "answered": len(made),
        "no_note": sum(any(w.startswith(NO_NOTE) for w in p.warnings) for p in made),
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
    parser.add_argument("--as-before", action="store_true", help="without the check (the predictor of session 52)")
    args = parser.parse_args()
    if shutil.which("sox") is None:
        raise SystemExit("bench_no_note: needs SoX (apt-get install sox)")
    from instropitch.serving.predictor import Predictor
    from instropitch.tinysol import INSTRUMENT_BY_ABBR

    if args.as_before:
        Predictor._no_pitch_warning = lambda *args: None  # type: ignore[method-assign]
    predictor = Predictor.load(from_export=args.from_export)
    started = time.perf_counter()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-no-note-") as tmp:
        sets = {kind: [no_note_wav(kind, d, Path(tmp)) for d in range(args.draws)] for kind in KINDS}
        sets["clicks (metronome)"] = [clicks_wav(d) for d in range(args.draws)]
        for kind, sounds in sets.items():
            results[kind] = tally(predictor.predict_many(sounds, top_k=0))
            r = results[kind]
            print(
                f"{kind:26s} {r['no_note']:3d} of {r['answered']:3d} warned no note; shown sure: instrument "
                f"{r['instrument_sure']}, family {r['family_sure']}, pitch {r['pitch_sure']}  {r['errors'] or ''}"
            )
    for folder in args.notes:
        truth = labelled_instruments(folder)
        predictions = predictor.predict_many(list(truth), top_k=0)
        r = results[f"notes: {folder}"] = tally(predictions)
        warned = [p for p in predictions if p.ok and any(w.startswith(NO_NOTE) for w in p.warnings)]
        r["warned_right_instrument"] = sum(p.instrument_abbr == truth[p.file] for p in warned)
        r["warned_right_family"] = sum(p.instrument_family == INSTRUMENT_BY_ABBR[truth[p.file]].family for p in warned)
        r["warned_files"] = [p.file for p in warned]
        print(
            f"{str(folder):26s} {r['no_note']:3d} of {r['answered']:3d} notes warned no note "
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
