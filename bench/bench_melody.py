"""Benchmark: does the "several notes" warning (`audio.melody`) stay quiet on single notes and speak on phrases?

Two questions, on TinySOL-layout sets (renders by FluidSynth, real recordings, rooms: any set):

- single notes: every file of every `--data` set is one note; a warning there is a false alarm
  (vibrato, a slide, the room, an octave slip of the period estimate);
- phrases: `--phrases` times, 2-4 notes of one instrument of a set, at different pitches, are cut
  to 0.3-1.0 s each and joined with a 20 ms cross-fade (legato, as a player would), sometimes
  repeating a note; the warning must name them.

It runs the predictor of an export (`instropitch export`) on every file, as a user would, and
reports the rates, examples of the alarms and misses, and the time per file.

    .venv/bin/instropitch export --out /tmp/export
    .venv/bin/python bench/bench_melody.py --export /tmp/export --data fluidr3mono=/tmp/fs_fluidr3mono --data rec=/tmp/tonejs

Results: bench/RESULTS.md, "Several notes in one file".
"""

from __future__ import annotations

import argparse
import io
import json
import os
import time
from pathlib import Path

import numpy as np
import soundfile

from instropitch import tinysol
from instropitch.serving.predictor import Predictor

FADE_S = 0.02
SAID = "holds "
"""How the several-notes warning starts (`audio.melody.several_notes_warning`)."""


def warned(predictor: Predictor, source: Path | bytes, name: str) -> str | None:
    """The several-notes warning the predictor gives this file, or None."""
    result = predictor.predict_file(source, name)
    if not result.ok:
        raise SystemExit(f"{name}: {result.error}")
    return next((w for w in result.warnings if w.startswith(SAID)), None)


def phrase(clips: list[np.ndarray], rate: int) -> np.ndarray:
    """The clips one after another, each fading into the next over `FADE_S`."""
    fade = int(FADE_S * rate)
    out = clips[0]
    ramp = np.linspace(0.0, 1.0, fade)
    for clip in clips[1:]:
        out = np.concatenate([out[:-fade], out[-fade:] * (1 - ramp) + clip[:fade] * ramp, clip[fade:]])
    return out


def make_phrases(folder: Path, count: int, rng: np.random.Generator) -> list[tuple[bytes, list[int]]]:
    """`count` phrases of 2-4 notes of one instrument of `folder`; each with its notes' MIDI numbers."""
    rows = tinysol.parse_metadata(folder / tinysol.METADATA_FILENAME).rows
    by_instrument: dict[str, list[tinysol.MetadataRow]] = {}
    for row in rows:
        by_instrument.setdefault(row.instrument_abbr, []).append(row)
    playable = [k for k, v in by_instrument.items() if len({r.pitch_id for r in v}) >= 2]
    out = []
    for _ in range(count):
        notes = by_instrument[playable[rng.integers(len(playable))]]
        chosen = [
            notes[i] for i in rng.choice(len(notes), size=min(len(notes), int(rng.integers(2, 5))), replace=False)
        ]
        if len({r.pitch_id for r in chosen}) < 2:
            continue
        clips, rate = [], 0
        for row in chosen:
            x, rate = soundfile.read(folder / row.path, dtype="float64", always_2d=True)
            x = x.mean(axis=1)
            clips.append(x[: int(rate * rng.uniform(0.3, 1.0))] / max(np.abs(x).max(), 1e-9) * rng.uniform(0.3, 0.9))
        buf = io.BytesIO()
        soundfile.write(buf, phrase(clips, rate), rate, format="WAV", subtype="PCM_16")
        out.append((buf.getvalue(), [r.pitch_id for r in chosen]))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", type=Path, required=True, help="the models, as `instropitch export` wrote them")
    parser.add_argument("--data", action="append", required=True, metavar="NAME=DIR", help="a TinySOL-layout set")
    parser.add_argument("--phrases", type=int, default=100, help="phrases made from each set")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    predictor = Predictor.from_export(args.export)
    report: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "load_average": os.getloadavg(), "sets": {}}
    for spec in args.data:
        name, folder = spec.split("=", 1)
        folder = Path(folder)
        rows = tinysol.parse_metadata(folder / tinysol.METADATA_FILENAME).rows
        started = time.perf_counter()
        alarms = []
        for row in rows:
            said = warned(predictor, folder / row.path, row.path)
            if said:
                alarms.append(f"{row.path} ({row.pitch}): {said}")
        single_s = (time.perf_counter() - started) / max(len(rows), 1)
        made = make_phrases(folder, args.phrases, rng)
        found, missed = 0, []
        for data, midis in made:
            said = warned(predictor, data, "phrase.wav")
            found += said is not None
            if not said:
                missed.append(f"{[tinysol.midi_to_pitch(m) for m in midis]}")
        report["sets"][name] = {
            "notes": len(rows),
            "false_alarms": len(alarms),
            "phrases": len(made),
            "found": found,
            "ms_per_note": round(1000 * single_s, 1),
            "alarm_examples": alarms[:5],
            "missed_examples": missed[:5],
        }
        print(
            f"{name:16s} single notes {len(rows):4d}: {len(alarms)} warned ({100 * len(alarms) / max(len(rows), 1):.1f} %)"
            f"  |  phrases {len(made):3d}: {found} warned ({100 * found / max(len(made), 1):.1f} %)"
            f"  |  {1000 * single_s:.1f} ms a note (the whole prediction)",
            flush=True,
        )
        for line in alarms[:3] + missed[:3]:
            print("    ", line)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
