"""Labelled notes rendered by code this project did not write: FluidSynth or TinySoundFont (issue 15).

An evaluation that renders its test notes with the project's own SF2 player shares the
renderer with the training data (envelopes, interpolation, loop handling, filters), and
measures less than it seems. This module plays the same planned notes (`synth.build_manifest`:
instrument, pitch, dynamics, length) through the `fluidsynth` program (Debian package
`fluidsynth`; `apt-get install fluidsynth fluid-soundfont-gm`), one MIDI file per note, and
writes a TinySOL-layout folder with its metadata CSV, so every benchmark can read it as it
reads the project's own renders.

`--player tinysoundfont` plays them with TinySoundFont instead (`tsf.h`, PyPI's `tinysoundfont`
wheel, which `make venv` installs), plainly: no retuning, no conditions. The models scored its
renders within 1-3 points of FluidSynth's (bench/RESULTS.md, "Three players"); since `make demo`
trains on TinySoundFont too (`synth.tsf`), FluidSynth is now the outside player to judge by.

    .venv/bin/python bench/external_render.py --soundfont /usr/share/sounds/sf2/FluidR3_GM.sf2 --out /tmp/fluidr3
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile

from instropitch import synth, tinysol
from instropitch.synth.dataset import VELOCITY
from instropitch.synth.sf2 import SoundFont

SAMPLE_RATE = 44100
RELEASE_S = 0.5
"""Audio kept after the note-off: the release, as a recording would hold it."""


def fluidsynth_binary() -> str:
    """The `fluidsynth` program, or a clear error saying how to get it."""
    binary = shutil.which("fluidsynth")
    if binary is None:
        raise FileNotFoundError("fluidsynth is not installed: apt-get install fluidsynth (Debian package)")
    return binary


GAP_S = 2.0
"""Silence between two notes of one FluidSynth run: longer than any release tail, and than the default reverb's."""


def notes_midi_file(path: Path, notes: list[synth.PlannedNote]) -> list[float]:
    """One General MIDI file playing `notes` one after another (a program change before each); their start times.

    One file per batch, not per note: FluidSynth loads the whole SoundFont at every start
    (hundreds of MB for MuseScore_General), which would cost more than the notes.
    """
    import pretty_midi

    score = pretty_midi.PrettyMIDI(initial_tempo=120)
    starts, t = [], 0.5
    by_program: dict[int, pretty_midi.Instrument] = {}
    for note in notes:
        # One track per program: pretty_midi gives each its own channel and program change.
        track = by_program.setdefault(note.program, pretty_midi.Instrument(program=note.program))
        track.notes.append(
            pretty_midi.Note(velocity=VELOCITY[note.dynamics], pitch=note.midi, start=t, end=t + note.duration_s)
        )
        starts.append(t)
        t += note.duration_s + RELEASE_S + GAP_S
    score.instruments.extend(by_program.values())
    score.write(str(path))
    return starts


def render_batch(
    binary: str, soundfont: Path, notes: list[synth.PlannedNote], out: Path, work: Path, effects: bool = False
) -> list[bool]:
    """Render a batch of planned notes in one FluidSynth run; cut one mono 16-bit WAV each.

    Dry by default (no reverb, no chorus); `effects` leaves FluidSynth's reverb and chorus on at
    their default settings, as a user who plays a note through it without options would hear it.
    False for a note the font has no sample for (FluidSynth plays silence there, where the
    project's player would stretch the nearest sample): it is left out of the set.
    """
    mid = work / f"{notes[0].seed}.mid"
    raw = work / f"{notes[0].seed}.wav"
    starts = notes_midi_file(mid, notes)
    result = subprocess.run(
        [
            binary,
            "-ni",
            "-q",
            "-R",
            "1" if effects else "0",
            "-C",
            "1" if effects else "0",
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
        text=True,
    )
    failed = "Failed to load" in result.stderr + result.stdout
    if failed:  # FluidSynth then plays its default font instead, silently: refuse
        raise RuntimeError(f"FluidSynth cannot load {soundfont}: {result.stderr.strip().splitlines()[:2]}")
    audio, rate = soundfile.read(raw, dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    mid.unlink()
    raw.unlink()
    kept = []
    for note, start in zip(notes, starts, strict=True):
        first = int(start * rate)
        kept.append(write_clip(mono[first : first + int((note.duration_s + RELEASE_S) * rate)], note, out, rate))
    return kept


def write_clip(clip: np.ndarray, note: synth.PlannedNote, out: Path, rate: int) -> bool:
    """The note's WAV (mono 16-bit, peak -6 dBFS) under `out`; False, and nothing written, when it is silent."""
    peak = float(np.max(np.abs(clip))) if clip.size else 0.0
    if peak < 1e-4:
        return False
    (out / note.path).parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(out / note.path, clip * (0.5 / peak), rate, subtype="PCM_16")
    return True


def render_batch_tinysoundfont(soundfont: Path, notes: list[synth.PlannedNote], out: Path) -> list[bool]:
    """`render_batch` with TinySoundFont: each note alone on channel 0, then its release, then
    silence until the voice is gone; the same mono 16-bit WAVs, the same notes left out."""
    import tinysoundfont

    player = tinysoundfont.Synth(samplerate=SAMPLE_RATE, gain=-6)
    font = player.sfload(str(soundfont))
    kept = []
    for note in notes:
        try:
            player.program_select(0, font, 0, note.program)
        except RuntimeError:  # no such preset in the font
            kept.append(False)
            continue
        player.noteon(0, note.midi, VELOCITY[note.dynamics])
        held = np.frombuffer(player.generate(int(note.duration_s * SAMPLE_RATE)), dtype=np.float32)
        player.noteoff(0, note.midi)
        tail = np.frombuffer(player.generate(int(RELEASE_S * SAMPLE_RATE)), dtype=np.float32)
        player.sounds_off(0)
        player.generate(int(GAP_S * SAMPLE_RATE))
        clip = np.concatenate([held, tail]).reshape(-1, 2).mean(axis=1)  # interleaved stereo
        kept.append(write_clip(clip, note, out, SAMPLE_RATE))
    return kept


PLAYERS = ("fluidsynth", "tinysoundfont")


def render_folder(
    soundfont: Path,
    out: Path,
    seed: int = 3,
    scale: float = 0.1,
    batch: int = 60,
    keep_borrowed: bool = False,
    player: str = "fluidsynth",
    effects: bool = False,
) -> Path:
    """Render the planned notes of (seed, scale) with `player` (`PLAYERS`) into a TinySOL-layout folder.

    Notes of an instrument whose preset plays another one's samples (`synth.borrowed_instruments`)
    are left out unless `keep_borrowed`: their label is not in their sound. `effects`: FluidSynth's
    reverb and chorus on (`render_batch`).
    """
    if player not in PLAYERS:
        raise ValueError(f"unknown player {player!r}; known: {', '.join(PLAYERS)}")
    if effects and player != "fluidsynth":
        raise ValueError("effects: only FluidSynth's reverb and chorus are played (--player fluidsynth)")
    binary = fluidsynth_binary() if player == "fluidsynth" else ""
    notes = synth.build_manifest(seed, scale=scale)
    sf = SoundFont.load(soundfont)
    borrowed = synth.borrowed_instruments(sf)
    for abbr, lender in sorted(borrowed.items()):
        left = "kept" if keep_borrowed else "left out"
        print(f"{soundfont.name}: {abbr} plays {lender}'s samples; its notes are {left}")
    lacking = synth.lacking_instruments(sf)
    if lacking:
        print(f"{soundfont.name}: no preset for {', '.join(sorted(lacking))}; their notes are left out")
    notes = [n for n in notes if n.row.instrument_abbr not in lacking | (set() if keep_borrowed else set(borrowed))]
    out.mkdir(parents=True, exist_ok=True)
    kept: list[synth.PlannedNote] = []
    with tempfile.TemporaryDirectory(prefix="fluidsynth-") as tmp:
        for i in range(0, len(notes), batch):
            part = notes[i : i + batch]
            if player == "fluidsynth":
                played = render_batch(binary, soundfont, part, out, Path(tmp), effects)
            else:
                played = render_batch_tinysoundfont(soundfont, part, out)
            kept += [n for n, ok in zip(part, played, strict=True) if ok]
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
    parser.add_argument(
        "--keep-borrowed", action="store_true", help="keep the notes of presets that play another's samples"
    )
    parser.add_argument("--player", choices=PLAYERS, default="fluidsynth")
    parser.add_argument("--effects", action="store_true", help="FluidSynth's default reverb and chorus on (dry if not)")
    args = parser.parse_args()
    folder = render_folder(
        args.soundfont,
        args.out,
        args.seed,
        args.scale,
        keep_borrowed=args.keep_borrowed,
        player=args.player,
        effects=args.effects,
    )
    print(f"rendered {len(tinysol.parse_metadata(folder / tinysol.METADATA_FILENAME).rows)} notes into {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
