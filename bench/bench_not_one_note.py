"""Benchmark: a file that is not one pitched note must not get a sure answer it cannot have (issue 15).

A user may hand the tool noise, a cymbal, a clap, a breath or a metronome, a chord, or a glide. The
models know single notes of 14 pitched instruments. Before session 53 the family answer of white
noise read "Strings 100 %, sure", and a C major triad on C4 read "C2, sure" (the period its notes
share). The predictor now says "no pitched note" (and shows no instrument or family answer as sure)
when the pitch answer is not sure and the waveform has no period to believe
(`pitch_evidence.unpitched`), and "several notes at once" (the pitch answer not sure) when the
period it would go by is silent at its fundamental and octave (`pitch_evidence.shared_period`), or at its
fundamental, 5th and 7th harmonics while its 2nd and 3rd sound (two notes a fifth apart, since session 56:
`pitch_evidence.fifth_period`).
Since session 54 a pitch that glides where the answer is read (`audio.melody.glide`: a siren, a slide)
is not shown as sure either (a glide A3 -> A4 read "D#4, sure").

This renders such sounds with SoX (`sox -n ... synth`: code this project did not write; fresh random
draws each run): noises, and chords of SoX's plucked strings (Karplus-Strong), sines, triangle and
square waves on random roots, and glides (SoX's sweeps of a sine, sawtooth or triangle). It counts, per kind, how often each warning comes and how often an
answer is still shown as sure. Notes on which no warning may come: `bench_tones.py`'s test tones
(sines, squares, triangles, sawtooths, missing-fundamental, 80 ms and aliased tones over MIDI 28-105),
and `--notes` TinySOL-layout folders of real notes (e.g. `bench/recordings_set.py`, the demo's
renders). Every set is also predicted without the checks (the predictor before them).

    .venv/bin/python bench/bench_not_one_note.py --from-export DIR --notes /tmp/tonejs --json /tmp/not_one.json
    MLFLOW_TRACKING_URI=sqlite:///$PWD/.instropitch/mlflow.db .venv/bin/python bench/bench_not_one_note.py
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_tones  # noqa: E402  (a bench module beside this one)

SR = 44100
NO_NOTE = "no pitched note"
SEVERAL = "several notes at once"
PLUCKED = "a plucked or struck note"
GLIDES = "the pitch glides"
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


def glide_wav(draw: int, folder: Path) -> tuple[str, bytes]:
    """A glide of 3-12 semitones up or down from a random start (MIDI 45-75) over 1-3 s, in a random SoX wave."""
    rng = np.random.default_rng(draw)
    start, interval = int(rng.integers(45, 76)), int(rng.integers(3, 13)) * int(rng.choice([-1, 1]))
    wave, seconds = str(rng.choice(WAVES[1:])), float(rng.uniform(1.0, 3.0))
    out = folder / f"glide-{wave}-{start}-{interval:+d}.wav"
    sweep = "-".join(f"{440 * 2 ** ((m - 69) / 12):.2f}" for m in (start, start + interval))  # Hz, a linear sweep
    command = ["sox", "-n", "-r", str(SR), "-c", "1", "-b", "16", str(out), "synth", f"{seconds:.2f}", wave, sweep]
    subprocess.run([*command, "fade", "0.01", f"{seconds:.2f}", "0.05", "norm", "-6"], check=True, capture_output=True)
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


def labelled_notes(folder: Path) -> list[str]:
    """Every note of a TinySOL-layout folder (its metadata CSV)."""
    with open(folder / "TinySOL_metadata.csv", newline="") as f:
        return [str(folder / r["Path"]) for r in csv.DictReader(f) if (folder / r["Path"]).is_file()]


def tally(predictions: list) -> dict:
    """How many answers were made, warned of as no note, as several or as plucked, shown sure (instrument, family,
    pitch), and overruled by a check (`not_sure_because`: shown with no number), where the model said >= 50 %."""
    made = [p for p in predictions if p.ok]
    return {
        "n": len(predictions),
        "answered": len(made),
        "no_note": sum(any(w.startswith(NO_NOTE) for w in p.warnings) for p in made),
        "several": sum(any(w.startswith(SEVERAL) for w in p.warnings) for p in made),
        "plucked": sum(any(w.startswith(PLUCKED) for w in p.warnings) for p in made),
        "glides": sum(any(w.startswith(GLIDES) for w in p.warnings) for p in made),
        "instrument_sure": sum(p.instrument_sure for p in made),
        "family_sure": sum(p.instrument_family_sure for p in made),
        "pitch_sure": sum(p.pitch_sure for p in made),
        "overruled": sum(bool(p.not_sure_because) for p in made),
        "numbers_withheld": sum(
            any(getattr(p, f"{role}_confidence") >= 0.5 for role in p.not_sure_because) for p in made
        ),
        "errors": sorted({str(p.error).split(":")[0] for p in predictions if not p.ok}),
    }


def tally_with_and_without(predictor: Any, sounds: list, off: Callable[[], contextlib.AbstractContextManager]) -> dict:
    """`tally` of the predictor's answers on `sounds`, with the answers inside `off()` (a check taken out) under
    "as_before"."""
    r = tally(predictor.predict_many(sounds, top_k=0))
    with off():
        r["as_before"] = tally(predictor.predict_many(sounds, top_k=0))
    return r


def run_sets(
    predictor: Any, sets: dict[str, list], off: Callable[[], contextlib.AbstractContextManager], warned: Callable
) -> dict[str, dict]:
    """`tally_with_and_without` of each set, printed a line each: `warned(tally)` says what was warned of."""
    results = {}
    for kind, sounds in sets.items():
        r = results[kind] = tally_with_and_without(predictor, sounds, off)
        before = r["as_before"]
        print(
            f"{kind:28s} {warned(r)}; shown sure (without the check): instrument {r['instrument_sure']} "
            f"({before['instrument_sure']}), family {r['family_sure']} ({before['family_sure']}), "
            f"pitch {r['pitch_sure']} ({before['pitch_sure']}); overruled {r['overruled']}, of them shown with no "
            f"number where the model said >= 50 %: {r['numbers_withheld']}  {r['errors'] or ''}"
        )
    return results


@contextlib.contextmanager
def checks_off() -> Iterator[None]:
    """The predictor of session 52: no no-pitched-note check, no shared-period one (a chord's, a fifth's), no
    glide."""
    from instropitch.audio import melody
    from instropitch.serving import pitch_evidence

    originals = pitch_evidence.unpitched, pitch_evidence.shared_period, pitch_evidence.fifth_period
    glide = melody.glide_warning
    pitch_evidence.unpitched = pitch_evidence.shared_period = pitch_evidence.fifth_period = lambda *args: False
    melody.glide_warning = lambda *args: None
    try:
        yield
    finally:
        pitch_evidence.unpitched, pitch_evidence.shared_period, pitch_evidence.fifth_period = originals
        melody.glide_warning = glide


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from-export", type=Path, help="an export folder (default: the registry champions)")
    parser.add_argument("--notes", type=Path, nargs="*", default=[], help="TinySOL-layout folders of real notes")
    parser.add_argument("--draws", type=int, default=20, help="draws of each kind of sound")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if shutil.which("sox") is None:
        raise SystemExit("bench_not_one_note: needs SoX (apt-get install sox)")
    from instropitch.serving.predictor import Predictor

    predictor = Predictor.load(from_export=args.from_export)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-not-one-note-") as tmp:
        sets = {kind: [no_note_wav(kind, d, Path(tmp)) for d in range(args.draws)] for kind in KINDS}
        sets["clicks (metronome)"] = [clicks_wav(d) for d in range(args.draws)]
        sets.update({f"chord: {c}": [chord_wav(c, d, Path(tmp)) for d in range(args.draws)] for c in CHORDS})
        sets["glide"] = [glide_wav(d, Path(tmp)) for d in range(4 * args.draws)]
        for kind, seconds in {**bench_tones.KINDS, **bench_tones.EXTRA_KINDS}.items():
            made = [
                (f"{kind}-{m}.wav", bench_tones.tone_wav(kind, m, seconds, Path(tmp) / f"{kind}-{m}.wav"))
                for m in range(bench_tones.LOW, bench_tones.HIGH + 1)
            ]
            sets[f"notes: {kind} tones"] = made
        for folder in args.notes:
            sets[f"notes: {folder}"] = [(path, path) for path in labelled_notes(folder)]
        results = run_sets(
            predictor,
            sets,
            checks_off,
            lambda r: (
                f"{r['no_note']:3d} / {r['several']:3d} / {r['glides']:3d} of {r['answered']:4d} warned no note / "
                "several / glides"
            ),
        )
    bench_tones.write_record(args.json, predictor, started, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
