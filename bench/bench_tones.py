"""Benchmark: is every periodic tone a person hears as a pitch named right? (issue 15)

A user checks the tool with a tone generator. Over MIDI 28..105 this has SoX (`sox -n ...
synth`, Debian's sox: code this project did not write, unlike the tones it trains on) render
at 44.1 kHz: pure sines, square and triangle waves, tones whose fundamental is missing
(harmonics 2..8 mixed, as in low brass and bassoon; those under 0.45 x the rate, two at least:
`makes_a_tone`), and 80 ms sine notes; 1 s each (but the short ones), 10 ms fades. `--more` adds
SoX's sawtooth and SciPy's square, sawtooth and 25 % pulse waves sampled as they are (aliased, as a
few lines of numpy make them), `--rates` other sample rates, `--high` a higher top note (the pitch model names
nothing above C#8, MIDI 109: such a note must not be answered sure). It predicts them with the champion
models (`Predictor.load`: an export folder or the registry) and prints the exact note + octave
accuracy per kind, with the misses.

    .venv/bin/python bench/bench_tones.py --from-export DIR --json /tmp/tones.json
    .venv/bin/python bench/bench_tones.py --from-export DIR --more --rates 16000,22050,44100,48000 --json /tmp/more.json
    .venv/bin/python bench/bench_tones.py --from-export DIR --notes /tmp/ext/fluidr3 /tmp/ext/opl3 --json /tmp/t.json
    .venv/bin/python bench/bench_tones.py --from-export DIR --high 120 --json /tmp/above.json

Every set is predicted three times: as the product answers (the CNN; its answer replaced when
the waveform does not repeat at its period, checked against the period when the note is short
or the answer unsure: `serving.pitch_evidence`), without the repeat check (`no_repeat`) and by
the CNN alone, so the table shows what each check adds. `--notes` adds TinySOL-layout
folders (e.g. FluidSynth renders, `bench/external_render.py`): real-instrument notes on which
the check must not cost anything. Their label is the key pressed, and a font may play a key off
its pitch (TimGM6mb's accordion sounds 40-70 cents flat from D5 up in every player: between two
notes, and the measures of its two detuned layers disagree on which is nearer). Notes more than
50 cents off their key (`synth.dataset.centre_tuning_error`, as the training render measures its
voices) are counted, and the accuracy is also given without them ("in tune").
    MLFLOW_TRACKING_URI=sqlite:///$PWD/.instropitch/mlflow.db .venv/bin/python bench/bench_tones.py
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

SR = 44100
LOW, HIGH = 28, 105


def tone_wav(kind: str, midi: int, seconds: float, out: Path, sr: int = SR) -> bytes:
    """The WAV bytes of one test tone (peak -6 dBFS): rendered by SoX, or by SciPy for the aliased kinds."""
    f0 = 440.0 * 2 ** ((midi - 69) / 12)
    if kind in NAIVE:
        return naive_tone(kind, f0, seconds, out, sr)
    if kind == "missing_fundamental":
        partials = missing_fundamental_partials(f0, sr)
        synth = [w for f in partials for w in ("sine", f"{f:.4f}")]
        remix = ["remix", "-"] if len(partials) > 1 else []
        channels = ["-c", str(len(partials))]
    else:
        synth = [kind if kind in ("square", "triangle", "sawtooth") else "sine", f"{f0:.4f}"]
        remix, channels = [], ["-c", "1"]
    command = ["sox", "-n", "-r", str(sr), *channels, "-b", "16", str(out), "synth", f"{seconds}", *synth, *remix]
    command += ["fade", "0.01", f"{seconds}", "0.01", "norm", "-6"]
    subprocess.run(command, check=True, capture_output=True)
    return out.read_bytes()


def naive_tone(kind: str, f0: float, seconds: float, out: Path, sr: int) -> bytes:
    """SciPy's square, sawtooth or 25 % pulse wave, sampled as is (not band-limited: what a few lines of
    code make; above ~D6 their harmonics fold back under Nyquist), 10 ms fades, peak -6 dBFS, 16 bits."""
    import scipy.signal
    import soundfile

    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * f0 * t
    y = {
        "naive_square": lambda: scipy.signal.square(phase),
        "naive_sawtooth": lambda: scipy.signal.sawtooth(phase),
        "naive_pulse25": lambda: scipy.signal.square(phase, duty=0.25),
    }[kind]()
    fade = np.minimum(1.0, np.minimum(t, seconds - t) / 0.01)
    soundfile.write(out, 0.5 * y * fade, sr, subtype="PCM_16")
    return out.read_bytes()


def missing_fundamental_partials(f0: float, sr: int) -> list[float]:
    """The harmonics 2..8 of `f0` a missing-fundamental tone mixes: those under 0.45 x the sample rate."""
    return [n * f0 for n in range(2, 9) if n * f0 < 0.45 * sr]


def makes_a_tone(kind: str, midi: int, sr: int) -> bool:
    """Whether `kind` at `midi` is the tone it names at rate `sr`: a missing-fundamental tone needs two of its
    harmonics at least (with only its 2nd, at 16 kHz above MIDI 98, it is a pure tone an octave up, above MIDI 109,
    and heard as that: left out)."""
    if kind != "missing_fundamental":
        return True
    return len(missing_fundamental_partials(440.0 * 2 ** ((midi - 69) / 12), sr)) >= 2


NAIVE = ("naive_square", "naive_sawtooth", "naive_pulse25")
KINDS = {"sine": 1.0, "square": 1.0, "triangle": 1.0, "missing_fundamental": 1.0, "short": 0.08}
EXTRA_KINDS = {"sawtooth": 1.0, **{kind: 1.0 for kind in NAIVE}}
"""With `--more`: SoX's sawtooth and SciPy's aliased waves (every note a person hears as a pitch)."""


def labelled_notes(folder: Path) -> tuple[list[str], list[int]]:
    """Every note of a TinySOL-layout folder (its metadata CSV), with its MIDI number."""
    import csv

    with open(folder / "TinySOL_metadata.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if (folder / r["Path"]).is_file()]
    return [str(folder / r["Path"]) for r in rows], [int(r["Pitch ID"]) for r in rows]


def off_key(paths: list[str], truth: list[int]) -> list[bool]:
    """Which notes sound more than 50 cents off the key their label names."""
    from instropitch import audio
    from instropitch.synth.dataset import centre_tuning_error

    off = []
    for path, midi in zip(paths, truth, strict=True):
        y, sr = audio.load(path)
        off.append(abs(centre_tuning_error(y, midi, sr)) > 50)
    return off


MODES = ("product", "no_repeat", "cnn_only")


@contextlib.contextmanager
def period_check(mode: str) -> Iterator[None]:
    """The product as it is, without the repeat check (`no_repeat`), or the CNN alone (`cnn_only`)."""
    from instropitch.serving import pitch_evidence
    from instropitch.serving.predictor import Predictor

    originals = Predictor._period_evidence, pitch_evidence.repeated_note
    if mode == "cnn_only":
        Predictor._period_evidence = lambda *args: (None, None)  # type: ignore[method-assign]
    elif mode == "no_repeat":
        pitch_evidence.repeated_note = lambda *args: None
    try:
        yield
    finally:
        Predictor._period_evidence, pitch_evidence.repeated_note = originals  # type: ignore[method-assign]


def score(predictions: list, truth: list[int]) -> dict:
    """Exact note + octave accuracy, the misses (truth, answer, error), and how the sure answers fare."""
    misses = [(m, p.midi, p.error) for m, p in zip(truth, predictions, strict=True) if p.midi != m]
    sure = [p.midi == m for m, p in zip(truth, predictions, strict=True) if p.ok and p.pitch_sure]
    return {
        "accuracy": 1 - len(misses) / len(truth),
        "n": len(truth),
        "misses": misses,
        "sure_share": len(sure) / len(truth),
        "sure_accuracy": float(np.mean(sure)) if sure else 0.0,
        "sure_wrong": int(len(sure) - sum(sure)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from-export", type=Path, help="an export folder (default: the registry champions)")
    parser.add_argument("--notes", type=Path, nargs="*", default=[], help="TinySOL-layout folders to score too")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--more", action="store_true", help="also sawtooth and aliased square/sawtooth/pulse waves")
    parser.add_argument(
        "--rates",
        default=str(SR),
        help="comma-separated sample rates of the tones (default 44100), e.g. 16000,22050,44100,48000",
    )
    parser.add_argument("--high", type=int, default=HIGH, help=f"the top MIDI note of the tones (default {HIGH})")
    args = parser.parse_args()

    from instropitch.serving.predictor import Predictor

    predictor = Predictor.load(from_export=args.from_export)
    results: dict[str, dict] = {}
    started = time.perf_counter()
    if shutil.which("sox") is None:
        raise SystemExit("bench_tones: needs SoX (apt-get install sox)")
    tmp = Path(tempfile.mkdtemp(prefix="bench-tones-"))
    sets: dict[str, tuple[list, list[int]]] = {}
    kinds = {**KINDS, **(EXTRA_KINDS if args.more else {})}
    for rate in (int(r) for r in args.rates.split(",")):
        for kind, seconds in kinds.items():
            truth = [m for m in range(LOW, args.high + 1) if makes_a_tone(kind, m, rate)]
            if len(truth) < args.high + 1 - LOW:
                print(f"{kind}@{rate}: {args.high + 1 - LOW - len(truth)} notes left out (`makes_a_tone`)")
            notes = [(f"{kind}-{m}.wav", tone_wav(kind, m, seconds, tmp / f"{kind}-{m}.wav", rate)) for m in truth]
            sets[kind if rate == SR else f"{kind}@{rate}"] = (notes, truth)
    tones = set(sets)
    for folder in args.notes:
        sets[folder.name if folder.name not in sets else f"{folder.parent.name}/{folder.name}"] = labelled_notes(folder)
    for name, (notes, truth) in sets.items():
        results[name] = {}
        off = off_key(notes, truth) if name not in tones else [False] * len(truth)
        for mode in MODES:
            with period_check(mode):
                started_mode = time.perf_counter()
                predictions = predictor.predict_many(notes, top_k=0)
                seconds_mode = time.perf_counter() - started_mode
            results[name][mode] = score(predictions, truth)
            results[name][mode]["seconds"] = round(seconds_mode, 2)
            r = results[name][mode]
            if any(off):
                kept = [i for i, o in enumerate(off) if not o]
                in_tune = score([predictions[i] for i in kept], [truth[i] for i in kept])
                r["in_tune"] = {"off_key": int(sum(off)), "accuracy": in_tune["accuracy"]}
            print(
                f"{name:20s} {mode:9s} {r['accuracy']:6.1%} of {r['n']}  sure {r['sure_share']:4.0%} of notes, "
                f"{r['sure_accuracy']:6.1%} of those right ({r['sure_wrong']} wrong)  ({seconds_mode:.1f} s)"
                + (
                    f"; in tune {r['in_tune']['accuracy']:.1%} (without the {r['in_tune']['off_key']} notes"
                    " > 50 cents off their key)"
                    if "in_tune" in r
                    else ""
                )
            )
            print(f"{'':30s} misses {r['misses'][:12]}{' ...' if len(r['misses']) > 12 else ''}")
    write_record(args.json, predictor, started, results)
    return 0


def write_record(path: Path | None, predictor: Any, started: float, results: dict) -> None:
    """A run's JSON record at `path` (none when None): when, the load, its seconds, the models, the results."""
    record = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "load_average": os.getloadavg(),
        "seconds": round(time.perf_counter() - started, 1),
        "models": predictor.describe()["models"],
        "results": results,
    }
    if path:
        path.write_text(json.dumps(record, indent=1, default=str))


if __name__ == "__main__":
    raise SystemExit(main())
