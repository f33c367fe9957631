"""A SoundFont from recordings of single notes: how a sample library of plain audio files reaches the players.

Some sample libraries are neither SF2 nor GUS patches but one audio file per note, named by
its note (npm's `tonejs-instrument-*` packages: VSCO 2, Freesound and Karoryfer recordings of
real players). Written once as an SF2, they play like any font: each key sounds the
recording nearest in pitch, moved to the key by the player (as a browser sampler does), and
the recording ends the note when it ends (no loop: a recording has no steady cycle marked).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from instropitch.synth.sf2_write import SampleZone, lend_presets, write_soundfont

ENVELOPE = {"attack_s": 0.002, "decay_s": 0.001, "sustain_cb": 0.0, "release_s": 0.25}
"""Full level while the key is held: the recording carries its own attack and decay; a short release."""


def nearest_key_ranges(roots: Sequence[int]) -> list[tuple[int, int]]:
    """Key range of each recording (sorted, distinct MIDI roots) when every key plays the nearest one,
    a key half-way between two playing the lower; the ends reach keys 0 and 127."""
    if not roots or list(roots) != sorted(set(roots)):
        raise ValueError(f"roots must be distinct and sorted, got {list(roots)}")
    bounds = [(low + high) // 2 for low, high in zip(roots, roots[1:], strict=False)]
    lows = [0] + [b + 1 for b in bounds]
    highs = bounds + [127]
    return list(zip(lows, highs, strict=True))


def recording_zones(notes: Mapping[int, np.ndarray], sample_rate: int, name: str) -> list[SampleZone]:
    """SF2 zones playing mono recordings ({MIDI root: points in [-1, 1]}) over the whole keyboard."""
    roots = sorted(notes)
    return [
        SampleZone(
            name=f"{name[:15]}{root}",
            data=np.asarray(notes[root], dtype=np.float32),
            sample_rate=sample_rate,
            root_key=root,
            pitch_correction=0,
            loop=None,
            key_range=key_range,
            **ENVELOPE,
        )
        for root, key_range in zip(roots, nearest_key_ranges(roots), strict=True)
    ]


def write_recordings_soundfont(
    instruments: Mapping[int, tuple[str, Mapping[int, np.ndarray]]],
    sample_rate: int,
    out: str | Path,
    name: str,
    lend: Mapping[int, int] | None = None,
) -> Path:
    """Write {GM program: (instrument name, {MIDI root: recording})} as one SF2 at `out`; `lend` as in
    `sf2_write.lend_presets`."""
    presets = {program: f"{program:03d} {label}" for program, (label, _) in instruments.items()}
    zones = {
        presets[program]: recording_zones(notes, sample_rate, label) for program, (label, notes) in instruments.items()
    }
    return write_soundfont(out, name, zones, lend_presets(presets, lend))
