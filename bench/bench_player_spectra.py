"""Benchmark: does the project's SF2 player sound like the players it did not write? (issue 15)

The training data is rendered by the project's own player (`synth.player`); a font it plays
wrong teaches the model a timbre no user will bring. Each note (per font and instrument, three
pitches over the TinySOL range, pp, p, mf and ff, held 1 s) is played by the project's player, by
TinySoundFont (`synth.tsf`, installed with the project) and, when `pyfluidsynth` and Debian's
`libfluidsynth3` are installed (bench tools, by hand), by FluidSynth without reverb or chorus.
Each render is reduced to its harmonic profile: the level of harmonics 1-12 over 0.2-0.9 s in
dB under the strongest, floored at -60. Reported per font and instrument: the mean absolute
difference in dB between the project's player and each outside player, and the same for the
project's player as it was before (`PAST_PLAYERS`): session 38's (`session38`: without the modulation
LFO, whose TimGM6mb and Merlin strings, brass and reeds did not waver, with the SF2.01 default
velocity-to-cutoff modulator, which FluidSynth and TinySoundFont do not apply, and without the font's
stored modulators, which FluidSynth applies and TinySoundFont does not), and before that (`static`:
its filter also held where initialFilterFc puts it, which left TimGM6mb's and Merlin's string and wind
filters closed). Keys no zone covers are not compared (the outside players are silent there).

    .venv/bin/python bench/bench_player_spectra.py --json /tmp/spectra.json
    .venv/bin/python bench/bench_player_spectra.py --font timgm6mb --instrument Vc --instrument Vn

`--font NAME` picks among the default fonts (`synth.fonts.default_fonts`), or NAME=PATH names any SF2/SF3.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np

SR = 44100
HARMONICS = 12
FLOOR_DB = -60.0
VELOCITIES = {"pp": 36, "p": 56, "mf": 82, "ff": 114}  # synth.dataset.VELOCITY
SILENT = 1e-4
"""Peak under which an outside player's render counts as silence (external_render's threshold)."""


def harmonic_profile(y: np.ndarray, midi: int, sr: int = SR) -> np.ndarray:
    """dB of harmonics 1..HARMONICS under the strongest, over 0.2-0.9 s of the note."""
    from instropitch.tinysol import midi_to_hz

    seg = y[int(0.2 * sr) : int(0.2 * sr) + int(0.7 * sr)]
    spectrum = np.abs(np.fft.rfft(seg * np.hanning(len(seg))))
    freqs = np.fft.rfftfreq(len(seg), 1.0 / sr)
    f0 = float(midi_to_hz(midi))
    levels = []
    for k in range(1, HARMONICS + 1):
        near = (freqs > f0 * k * 0.97) & (freqs < f0 * k * 1.03)
        levels.append(spectrum[near].max() if near.any() and f0 * k < sr / 2 else 0.0)
    levels = np.asarray(levels)
    if levels.max() <= 0:
        return np.full(HARMONICS, FLOOR_DB)
    return np.maximum(20 * np.log10(np.maximum(levels / levels.max(), 1e-12)), FLOOR_DB)


def _session38(v):
    """Session 38's player: the modulation LFO left out, the SF2.01 velocity-to-cutoff modulator applied."""
    from instropitch.synth.sf2 import MIN_FILTER_CENTS

    fc = max(v.filter_fc_cents - 2400.0 * (1.0 - v.velocity / 128.0), MIN_FILTER_CENTS)
    return dataclasses.replace(
        v, filter_fc_cents=fc, mod_lfo_to_pitch_cents=0.0, mod_lfo_to_filter_cents=0.0, mod_lfo_to_volume_cb=0.0
    )


PAST_PLAYERS = {
    "session38": _session38,
    "static": lambda v: dataclasses.replace(_session38(v), mod_env_to_filter_cents=0.0),
}
"""The project's player of earlier sessions, as voice changes: session 38's (`_session38`), and before it
(`static`: the filter held where initialFilterFc and velocity put it)."""


def own(sf, program: int, midi: int, velocity: int, past: str = "") -> np.ndarray:
    """The project's player; `past` (a key of `PAST_PLAYERS`): as it played before, its voices found without
    the font's stored modulators (read since session 39)."""
    from unittest import mock

    from instropitch.synth import player, sf2

    if past:
        defaults_only = sf2.generator_offsets
        with mock.patch.object(sf2, "generator_offsets", lambda _i, _p, key, vel: defaults_only((), (), key, vel)):
            voices, shift = sf.find_voices(program, midi, velocity, 0, True)
        voices = [PAST_PLAYERS[past](v) for v in voices]
    else:
        voices, shift = sf.find_voices(program, midi, velocity, 0, True)
    return player.render_voices(sf, voices, 1.0, SR, 0.5, detune_cents=shift)


def tinysoundfont(path: Path, program: int, midi: int, velocity: int) -> np.ndarray:
    from instropitch.synth import tsf

    return tsf.play(str(path), program, midi, velocity, 1.0, 0.5, SR)


def fluidsynth_player():
    """A function playing one note through FluidSynth, or None when it is not installed."""
    try:
        import fluidsynth
    except (ImportError, OSError):
        return None

    def play(path: Path, program: int, midi: int, velocity: int) -> np.ndarray:
        synth = fluidsynth.Synth(samplerate=float(SR))
        try:
            synth.setting("synth.reverb.active", 0)
            synth.setting("synth.chorus.active", 0)
            synth.program_select(0, synth.sfload(str(path)), 0, program)
            synth.noteon(0, midi, velocity)
            held = synth.get_samples(SR)
            synth.noteoff(0, midi)
            tail = synth.get_samples(SR // 2)
        finally:
            synth.delete()
        return np.concatenate([held, tail]).astype(np.float32)[::2] / 32768.0  # left channel

    return play


def pitches(inst) -> list[int]:
    """Low, middle and high notes of the instrument's TinySOL range."""
    return [inst.midi_low + 4, (inst.midi_low + inst.midi_high) // 2, inst.midi_high - 4]


def compare(name: str, path: Path, abbrs: list[str], fs) -> dict[str, dict[str, float]]:
    """{instrument: {reference: mean |dB| difference}} for one font."""
    from instropitch.synth.dataset import GM_PROGRAMS
    from instropitch.synth.sf2 import SoundFont
    from instropitch.tinysol import INSTRUMENT_BY_ABBR

    sf = SoundFont.load(path)
    out: dict[str, dict[str, float]] = {}
    for abbr in abbrs:
        program, inst = GM_PROGRAMS[abbr], INSTRUMENT_BY_ABBR[abbr]
        try:
            sf.preset(program)
        except KeyError:
            continue
        diffs: dict[str, list[float]] = {}
        for midi in pitches(inst):
            for velocity in VELOCITIES.values():
                mine = harmonic_profile(own(sf, program, midi, velocity), midi)
                before = {past: harmonic_profile(own(sf, program, midi, velocity, past), midi) for past in PAST_PLAYERS}
                renders = {"tsf": tinysoundfont(path, program, midi, velocity)}
                if fs is not None:
                    renders["fluidsynth"] = fs(path, program, midi, velocity)
                # A key no zone covers: the outside players are silent where the project's plays the nearest
                # sample (external_render leaves such notes out too); nothing to compare.
                refs = {ref: harmonic_profile(y, midi) for ref, y in renders.items() if np.max(np.abs(y)) >= SILENT}
                for ref, profile in refs.items():
                    diffs.setdefault(ref, []).append(float(np.mean(np.abs(mine - profile))))
                    for past, theirs in before.items():
                        diffs.setdefault(f"{past}_vs_{ref}", []).append(float(np.mean(np.abs(theirs - profile))))
        out[abbr] = {key: float(np.mean(values)) for key, values in diffs.items()}
        cells = ", ".join(f"{key} {value:.1f}" for key, value in out[abbr].items())
        print(f"{name} {abbr}: {cells}", flush=True)
    return out


def main() -> int:
    from instropitch.synth.fonts import default_fonts
    from instropitch.tinysol import INSTRUMENT_ABBRS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--font", action="append", default=[], metavar="NAME[=PATH]")
    parser.add_argument("--instrument", action="append", default=[], choices=INSTRUMENT_ABBRS)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    known = default_fonts()
    fonts: dict[str, Path] = {}
    for spec in args.font or list(known):
        name, sep, path = spec.partition("=")
        if sep:
            fonts[name] = Path(path)
        elif name in known:
            fonts[name] = known[name]
        else:
            raise SystemExit(f"--font {name}: not a default font here ({', '.join(known) or 'none'}); use NAME=PATH")
    fs = fluidsynth_player()
    print(f"FluidSynth: {'yes' if fs else 'not installed (pyfluidsynth + libfluidsynth3)'}")
    started = time.perf_counter()
    report = {name: compare(name, path, args.instrument or list(INSTRUMENT_ABBRS), fs) for name, path in fonts.items()}
    for name, per_inst in report.items():
        keys = sorted({k for cells in per_inst.values() for k in cells})
        means = {k: float(np.mean([cells[k] for cells in per_inst.values() if k in cells])) for k in keys}
        print(f"{name}: " + ", ".join(f"{k} {v:.1f} dB" for k, v in means.items()))
    print(f"{time.perf_counter() - started:.0f} s, load {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps({"fonts": {k: str(v) for k, v in fonts.items()}, "report": report}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
