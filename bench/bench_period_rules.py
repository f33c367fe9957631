"""Benchmark: which answers do the period checks move, asked at the label? (issue 15)

No model is needed: this asks `serving.pitch_evidence.repeated_note` (run on every note the
product answers) with answers whose truth is known, on the audio the predictor reads (the pitch
window's samples, `audio.periodicity.repeats`).

- Every note of TinySOL-layout folders (`--notes`: FluidSynth renders, recordings, rooms, the
  demo's own renders), with its label as the answer: a note returned there would move a right
  answer. The count must stay 0 (or be explained) whatever a change to the checks does.
- With `--aliased`: SciPy's square, sawtooth and 25 % pulse waves (`bench_tones.naive_tone`, not
  band-limited) over MIDI 28..105 at 16, 22.05, 44.1 and 48 kHz, with every answer 12 or more
  semitones under the note: how many give way to the note, by how many times the answer is
  under the strongest partial (the CNN's misses on these waves were 2-4 times under).

    .venv/bin/python bench/bench_period_rules.py --notes /tmp/fs_merlin /tmp/rooms_fs_merlin --aliased --json /tmp/r.json

Results: bench/RESULTS.md, "Pitch: a room's notch is not a subharmonic".
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_tones import HIGH, LOW, NAIVE, labelled_notes, naive_tone  # noqa: E402  (a bench module beside this one)

RATES = (16000, 22050, 44100, 48000)
CLASSES = np.arange(28, 110, dtype=np.float64)
"""The notes TinySOL's instruments play (MIDI 28..109), as the pitch model's classes."""


def heard(source: str | bytes, name: str):
    """What the predictor's checks read of one file: the repeats of its pitch window's audio."""
    from instropitch import audio
    from instropitch.audio import periodicity
    from instropitch.audio.features import compute_features, get_preset

    config = get_preset("default")
    with audio.open_source(source, name) as src:
        feats = compute_features(src, config, info=audio.read_info(src), keep_audio=True, find_notes=False)
    return periodicity.repeats(feats.pitch_audio, config.pitch.sample_rate)


def right_answers_moved(folder: Path) -> dict:
    """The notes of `folder` whose label `repeated_note` would replace, with what it gives."""
    from instropitch.serving import pitch_evidence

    paths, truth = labelled_notes(folder)
    moved = []
    for path, midi in zip(paths, truth, strict=True):
        note = pitch_evidence.repeated_note(heard(path, path), CLASSES, float(midi))
        if note is not None:
            moved.append((Path(path).name, midi, note))
    return {"notes": len(paths), "moved": moved}


def aliased_answers_corrected() -> dict:
    """Answers 12+ semitones under an aliased wave, by times under its strongest partial: asked, given back the note."""
    from instropitch.serving import pitch_evidence
    from instropitch.tinysol import midi_to_hz

    counts: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    tmp = Path(tempfile.mkdtemp(prefix="bench-period-rules-"))
    for rate in RATES:
        for kind in NAIVE:
            for midi in range(LOW, HIGH + 1):
                out = tmp / f"{kind}-{midi}.wav"
                repeats = heard(naive_tone(kind, float(midi_to_hz(midi)), 1.0, out, rate), out.name)
                for answer in range(LOW, midi - 11):
                    times = round(repeats.strongest_hz / float(midi_to_hz(answer)))
                    bucket = str(times) if times <= 4 else "5+"
                    counts[bucket][0] += 1
                    counts[bucket][1] += pitch_evidence.repeated_note(repeats, CLASSES, float(answer)) == midi
    return {k: {"answers": n, "given_back": r} for k, (n, r) in sorted(counts.items())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notes", type=Path, nargs="*", default=[], help="TinySOL-layout folders")
    parser.add_argument("--aliased", action="store_true", help="also the aliased waves under their notes")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    started = time.perf_counter()
    record: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "sets": {}}
    for folder in args.notes:
        result = record["sets"][str(folder)] = right_answers_moved(folder)
        print(f"{folder}: {len(result['moved'])} of {result['notes']} right answers moved {result['moved'][:6]}")
    if args.aliased:
        record["aliased"] = aliased_answers_corrected()
        for times, r in record["aliased"].items():
            print(
                f"aliased, answer {times} times under the strongest partial: {r['given_back']} of {r['answers']} given back"
            )
    record["seconds"] = round(time.perf_counter() - started, 1)
    record["load_average"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
