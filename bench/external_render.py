"""Labelled notes rendered by code this project did not write: FluidSynth (issue 15).

An evaluation that renders its test notes with the project's own SF2 player shares the
renderer with the training data (envelopes, interpolation, loop handling, filters), and
measures less than it seems. This module plays the same planned notes (`synth.build_manifest`:
instrument, pitch, dynamics, length) through the `fluidsynth` program (Debian package
`fluidsynth`; `apt-get install fluidsynth fluid-soundfont-gm`), one MIDI file per note, and
writes a TinySOL-layout folder with its metadata CSV, so every benchmark can read it as it
reads the project's own renders.

    .venv/bin/python bench/external_render.py --soundfont /usr/share/sounds/sf2/FluidR3_GM.sf2 --out /tmp/fluidr3
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile

from instropitch import synth, tinysol
from instropitch.synth.dataset import VELOCITY

SAMPLE_RATE = 44100
RELEASE_S = 0.5
"""Audio kept after the note-off: the release, as a recording would hold it."""


def fluidsynth_binary() -> str:
    """The `fluidsynth` program, or a clear error saying how to get it."""
    binary = shutil.which("fluidsynth")
    if binary is None:
        raise FileNotFoundError("fluidsynth is not installed: apt-get install fluidsynth (Debian package)")
    return binary


def note_midi_file(path: Path, program: int, midi: int, velocity: int, duration_s: float) -> None:
    """A one-note General MIDI file: program change, note on, note off after `duration_s`."""
    import pretty_midi

    score = pretty_midi.PrettyMIDI(initial_tempo=120)
    instrument = pretty_midi.Instrument(program=program)
    instrument.notes.append(pretty_midi.Note(velocity=velocity, pitch=midi, start=0.0, end=duration_s))
    score.instruments.append(instrument)
    score.write(str(path))


def render_note(binary: str, soundfont: Path, note: synth.PlannedNote, out: Path, work: Path) -> bool:
    """Render one planned note with FluidSynth (no reverb, no chorus) into a mono 16-bit WAV.

    False when the font has no sample for that key (FluidSynth plays silence there, where the
    project's player would stretch the nearest sample): the note is left out of the set.
    """
    velocity = VELOCITY[note.dynamics]
    mid = work / f"{note.seed}.mid"
    raw = work / f"{note.seed}.wav"
    note_midi_file(mid, note.program, note.midi, velocity, note.duration_s)
    subprocess.run(
        [
            binary,
            "-ni",
            "-q",
            "-R",
            "0",
            "-C",
            "0",
            "-g",
            "0.6",
            "-r",
            str(SAMPLE_RATE),
            "-F",
            str(raw),
            str(soundfont),
            str(mid),
        ],
        check=True,
        capture_output=True,
    )
    audio, rate = soundfile.read(raw, dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)[: int((note.duration_s + RELEASE_S) * rate)]
    peak = float(np.max(np.abs(mono))) if mono.size else 0.0
    mid.unlink()
    raw.unlink()
    if peak < 1e-4:
        return False
    out.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(out, mono * (0.5 / peak), rate, subtype="PCM_16")
    return True


def render_folder(soundfont: Path, out: Path, seed: int = 3, scale: float = 0.1, threads: int = 2) -> Path:
    """Render the planned notes of (seed, scale) with FluidSynth into a TinySOL-layout folder."""
    binary = fluidsynth_binary()
    notes = synth.build_manifest(seed, scale=scale)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fluidsynth-") as tmp, ThreadPoolExecutor(threads) as pool:
        jobs = [pool.submit(render_note, binary, soundfont, n, out / n.path, Path(tmp)) for n in notes]
        kept = [n for n, job in zip(notes, jobs, strict=True) if job.result()]
    if len(kept) < len(notes):
        print(f"{soundfont.name}: {len(notes) - len(kept)} of {len(notes)} notes left out (no sample for the key)")
    rows = sorted((n.row for n in kept), key=lambda r: r.path)
    tinysol.write_metadata(rows, out / tinysol.METADATA_FILENAME)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--soundfont", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--scale", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    folder = render_folder(args.soundfont, args.out, args.seed, args.scale, args.threads)
    print(f"rendered {len(tinysol.parse_metadata(folder / tinysol.METADATA_FILENAME).rows)} notes into {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
