"""A second SF2 player: TinySoundFont (`tsf.h`, MIT), from PyPI's `tinysoundfont` wheel.

A model trained on one player's renders learns that player too: the same fonts played by
FluidSynth lose up to 10 points of instrument accuracy against the project's own player
(`player`), and adding TinySoundFont renders to training lifted a font nobody trained on,
played by FluidSynth, by 9-10 points in two seeds (bench/RESULTS.md, "TinySoundFont as a
training player"). TinySoundFont interpolates, envelopes and filters its own way, so its
notes are a timbre source of their own.

`make venv` installs the wheel with `--no-deps` (`requirements-fonts.txt`): its one
dependency, `pyaudio`, is for live output, which rendering never uses. Without the wheel,
`available()` is False and the default renders with the project's player alone.
"""

from __future__ import annotations

import functools
import importlib.util

import numpy as np

PLAYER = "tinysoundfont"
PITCHBEND_RANGE_SEMITONES = 2.0
BLOCK = 64
"""Frames rendered between pitch-bend updates (1.5 ms at 44.1 kHz): TinySoundFont's own effect block."""
FLUSH_S = 0.05


def available() -> bool:
    """Whether the `tinysoundfont` wheel is installed."""
    return importlib.util.find_spec("tinysoundfont") is not None


@functools.lru_cache(maxsize=8)
def _synth(soundfont: str, sample_rate: int):
    """One synthesizer per font and rate in each process, font loaded once (tens of MB for some fonts)."""
    import tinysoundfont

    synth = tinysoundfont.Synth(samplerate=sample_rate, gain=0)
    return synth, synth.sfload(soundfont)


def has_program(soundfont: str, program: int, sample_rate: int = 44100) -> bool:
    """Whether the font has a bank-0 preset for the GM `program` (TinySOL's programs all are bank 0)."""
    synth, font = _synth(soundfont, sample_rate)
    return synth.sfpreset_name(font, 0, program) is not None


def play(
    soundfont: str,
    program: int,
    midi: int,
    velocity: int,
    hold_s: float,
    release_s: float,
    sample_rate: int = 44100,
    *,
    detune_cents: float = 0.0,
    vibrato_hz: float = 0.0,
    vibrato_cents: float = 0.0,
    attack_s: float = 0.0,
) -> np.ndarray:
    """One note as mono float32: `hold_s` held, then `release_s` after note-off.

    The same performance as `player.render_voices` is given: a constant detune (channel
    tuning), a sine vibrato faded in over 300 ms (pitch bend, updated every `BLOCK` frames)
    and, for a slower onset, a linear fade-in over `attack_s` (TinySoundFont's envelopes
    cannot be set from outside, so the extra attack shapes the output instead).
    """
    if hold_s < 0 or release_s < 0:
        raise ValueError("hold_s and release_s must be >= 0")
    synth, font = _synth(str(soundfont), sample_rate)
    try:
        synth.program_select(0, font, 0, program)
    except RuntimeError as exc:
        raise ValueError(f"{soundfont}: no bank-0 preset for GM program {program}") from exc
    synth.pitchbend_range(0, PITCHBEND_RANGE_SEMITONES)
    synth.set_tuning(0, detune_cents / 100.0)
    synth.pitchbend(0, 8192)
    n_on = int(round(hold_s * sample_rate))
    n_off = int(round(release_s * sample_rate))
    synth.noteon(0, midi, velocity)
    if vibrato_hz > 0 and vibrato_cents:
        held = _generate_bent(synth, _bends(n_on, sample_rate, vibrato_hz, vibrato_cents), n_on)
    else:
        held = _generate(synth, n_on)
    synth.noteoff(0, midi)
    out = np.concatenate([held, _generate(synth, n_off)])
    synth.sounds_off(0)
    _generate(synth, int(FLUSH_S * sample_rate))  # let the killed voices fade before the next note
    if attack_s > 0:
        n = min(len(out), int(round(attack_s * sample_rate)))
        out[:n] *= np.linspace(0.0, 1.0, n, endpoint=False, dtype=np.float32)
    return out


def _bends(n_on: int, sample_rate: int, vibrato_hz: float, vibrato_cents: float) -> np.ndarray:
    """The pitch-bend value of each `BLOCK` of the held part (the last one shorter): the vibrato at its start."""
    t = np.arange(0, n_on, BLOCK) / sample_rate
    cents = vibrato_cents * np.minimum(t / 0.3, 1.0) * np.sin(2 * np.pi * vibrato_hz * t)
    return np.clip(np.round(8192 + cents / (100 * PITCHBEND_RANGE_SEMITONES) * 8192), 0, 16383).astype(np.int64)


def _generate_bent(synth, bends: np.ndarray, frames: int) -> np.ndarray:
    """`frames` frames as mono, a `BLOCK` rendered after each bend value into one shared buffer: one conversion for
    the note, not one per 1.5 ms (those made a note with a vibrato ~10x slower to render than a steady one)."""
    buffer = memoryview(bytearray(frames * 2 * 4))
    for start, bend in zip(range(0, frames, BLOCK), bends.tolist(), strict=True):
        synth.pitchbend(0, bend)
        synth.generate(min(BLOCK, frames - start), buffer[start * 8 : (start + BLOCK) * 8])
    return _mono(buffer)


def _generate(synth, frames: int) -> np.ndarray:
    """`frames` frames of the interleaved stereo output, as mono."""
    if frames <= 0:
        return np.zeros(0, dtype=np.float32)
    return _mono(synth.generate(frames))


def _mono(stereo) -> np.ndarray:
    """TinySoundFont's interleaved stereo float32 output as mono float32."""
    return np.frombuffer(stereo, dtype=np.float32).reshape(-1, 2).mean(axis=1).astype(np.float32)
