"""What each model reads, built from a note's two spectrograms (and, for one input, its note).

* ``pitch``: the pitch spectrogram (constant-Q in the "default" preset).
* ``instrument``: the instrument spectrogram (log-mel of the first second).
* ``instrument+harmonics``: the instrument spectrogram with, beside it on the band axis, the
  pitch spectrogram re-centred on the note (`note_relative`). A note at MIDI m has its
  partials at m, m+12, m+19, m+24, ... semitones, so in the re-centred view each harmonic
  falls in the same band whatever the note: the instrument model reads the harmonic profile
  (a clarinet's weak even harmonics, a string's bright upper partials) directly instead of
  learning it once per register. Which note comes from the label in training and from the
  pitch model's answer in prediction (right on 99.7-100 % of notes from unseen sources).
  Held-out-source accuracy rose with it (bench/RESULTS.md, "Timbre read relative to the note").
"""

from __future__ import annotations

import numpy as np

from instropitch.audio.features import FeatureConfig, SpectrogramConfig
from instropitch.tinysol import hz_to_midi

NOTE_BELOW = 12
"""Semitones kept below the note (room for a subharmonic, the noise under the fundamental)."""
NOTE_BANDS = 72
"""Semitones of the re-centred view: from `NOTE_BELOW` under the note to five octaves above it."""

_READS: dict[str, tuple[str, ...]] = {
    "pitch": ("pitch",),
    "instrument": ("instrument",),
    "instrument+harmonics": ("instrument", "pitch"),
}
"""Every input a model spec may name (`modelspec.INPUTS`, kept equal by a test) and the
spectrograms it is built from; not imported from `modelspec`, whose YAML parser a
prediction process never needs."""


def spectrograms_read(which: str) -> tuple[str, ...]:
    """The `FeatureConfig` slots (``pitch``/``instrument``) an input is built from."""
    try:
        return _READS[which]
    except KeyError:
        raise ValueError(f"unknown model input {which!r}; known: {', '.join(_READS)}") from None


def needs_note(which: str) -> bool:
    """Whether the input depends on the note (the label in training, the pitch answer in prediction)."""
    return which == "instrument+harmonics"


def _same_frames(which: str, pitch_frames: int, instrument_frames: int) -> None:
    if pitch_frames != instrument_frames:
        raise ValueError(
            f"the {which!r} input puts both spectrograms side by side: they need the same frames, "
            f"got {pitch_frames} (pitch) and {instrument_frames} (instrument)"
        )


def _semitone_bands(config: SpectrogramConfig) -> tuple[float, int]:
    """(MIDI number of band 0, bands per semitone) of a constant-Q config; other scales cannot be re-centred."""
    steps = config.bins_per_octave / 12
    if config.scale != "cqt" or steps != int(steps):
        raise ValueError(
            "the note-relative view needs a constant-Q pitch spectrogram with a whole number of bands "
            f"per semitone; this one is {config.scale} with {config.bins_per_octave} bins per octave"
        )
    return float(hz_to_midi(config.fmin_hz)), int(steps)


def note_relative(pitch: np.ndarray, midi: np.ndarray, config: SpectrogramConfig) -> np.ndarray:
    """(N, frames, bands) constant-Q spectrograms -> (N, frames, `NOTE_BANDS` x bands per semitone),
    each shifted so its note's band sits `NOTE_BELOW` semitones from the start.

    Bands outside the spectrogram take the example's floor (its minimum), as the training
    augmentation fills what a shift vacates.
    """
    pitch = np.asarray(pitch, dtype=np.float32)
    midi = np.asarray(midi, dtype=np.float64).reshape(-1)
    if pitch.ndim != 3 or len(pitch) != len(midi):
        raise ValueError(f"expected (N, frames, bands) spectrograms and N notes, got {pitch.shape} and {len(midi)}")
    first_midi, steps = _semitone_bands(config)
    width, below = NOTE_BANDS * steps, NOTE_BELOW * steps
    n, frames, bands = pitch.shape
    floor = pitch.reshape(n, -1).min(axis=1) if n else np.zeros(0, np.float32)
    out = np.repeat(floor[:, None, None], frames * width, axis=1).reshape(n, frames, width).astype(np.float32)
    starts = np.rint((midi - first_midi) * steps).astype(np.int64) - below
    for i, start in enumerate(starts):
        lo, hi = max(0, start), min(bands, start + width)
        if lo < hi:
            out[i, :, lo - start : hi - start] = pitch[i, :, lo:hi]
    return out


def model_input(
    which: str, pitch: np.ndarray, instrument: np.ndarray, midi: np.ndarray | None, config: FeatureConfig
) -> np.ndarray:
    """A batch of what a model with input `which` reads, from (N, frames, bands) spectrograms."""
    if which == "pitch":
        return pitch
    if which == "instrument":
        return instrument
    spectrograms_read(which)
    if midi is None:
        raise ValueError(f"the {which!r} input needs each note's MIDI number")
    _same_frames(which, pitch.shape[1], instrument.shape[1])
    relative = note_relative(pitch, midi, config.pitch)
    return np.concatenate([np.asarray(instrument, dtype=np.float32), relative], axis=2)


def band_frequencies(which: str, config: FeatureConfig, midi: np.ndarray | None = None) -> np.ndarray:
    """Centre frequency in Hz of every band of input `which`: (1, bands) when the same for every
    note, else (N, bands), one row per note of `midi` (the re-centred view moves with the note).

    What a training change that acts in Hz (`Augmentation.lowpass`) needs to know of each example.
    """
    if which in ("pitch", "instrument"):
        return getattr(config, which).band_frequencies()[None, :].astype(np.float32)
    spectrograms_read(which)
    if midi is None:
        raise ValueError(f"the {which!r} input needs each note's MIDI number")
    steps = _semitone_bands(config.pitch)[1]
    offsets = np.arange(NOTE_BANDS * steps) / steps - NOTE_BELOW
    semitones = np.asarray(midi, dtype=np.float64).reshape(-1, 1) + offsets[None, :]
    relative = 440.0 * 2.0 ** ((semitones - 69.0) / 12.0)
    mel = np.broadcast_to(config.instrument.band_frequencies(), (len(relative), config.instrument.n_bands))
    return np.concatenate([mel, relative], axis=1).astype(np.float32)


def input_shape(which: str, config: FeatureConfig) -> tuple[int, int]:
    """(frames, bands) of one example of input `which` under `config`."""
    if which == "pitch":
        return config.pitch.shape
    if which == "instrument":
        return config.instrument.shape
    spectrograms_read(which)
    _same_frames(which, config.pitch.n_frames, config.instrument.n_frames)
    steps = _semitone_bands(config.pitch)[1]
    return config.instrument.n_frames, config.instrument.n_bands + NOTE_BANDS * steps
