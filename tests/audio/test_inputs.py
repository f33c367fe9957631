"""What each model reads (`audio.inputs`): the note-relative view's shape, alignment and invariance."""

from __future__ import annotations

import numpy as np
import pytest

from instropitch.audio import inputs
from instropitch.audio.features import get_preset
from instropitch.modelspec import INPUTS

DEFAULT = get_preset("default")
FRAMES, BANDS = DEFAULT.pitch.shape  # 44 frames, 96 constant-Q bands from A0 (MIDI 21)
HARMONIC_SEMITONES = (0, 12, 19, 24, 28)


def harmonic_cqt(midi: int, amplitudes=(0.0, -6.0, -20.0, -9.0, -30.0), floor: float = -3.0) -> np.ndarray:
    """A (frames, bands) constant-Q picture of one note: its first partials lit, the rest at `floor`."""
    s = np.full((FRAMES, BANDS), floor, dtype=np.float32)
    for semitones, level in zip(HARMONIC_SEMITONES, amplitudes, strict=True):
        band = midi - 21 + semitones
        if band < BANDS:
            s[:, band] = 3.0 + level / 10.0
    return s


def test_every_spec_input_says_what_it_reads():
    assert set(INPUTS) == {name for name in INPUTS if inputs.spectrograms_read(name)}
    assert inputs.spectrograms_read("instrument+harmonics") == ("instrument", "pitch")
    with pytest.raises(ValueError, match="unknown model input 'timbre'.*instrument\\+harmonics"):
        inputs.spectrograms_read("timbre")


def test_the_note_lands_on_the_same_band_whatever_its_register():
    midis = np.array([40, 55, 67, 81])
    view = inputs.note_relative(np.stack([harmonic_cqt(m) for m in midis]), midis, DEFAULT.pitch)
    assert view.shape == (4, FRAMES, inputs.NOTE_BANDS)
    for i in range(len(midis)):
        for semitones in HARMONIC_SEMITONES:
            if midis[i] - 21 + semitones < BANDS:
                assert view[i, 0, inputs.NOTE_BELOW + semitones] > -2.0, (midis[i], semitones)  # lit, not the floor
    # A transposed timbre gives the same view wherever both notes' partials are inside the spectrogram.
    np.testing.assert_array_equal(view[0, :, : inputs.NOTE_BELOW + 29], view[2, :, : inputs.NOTE_BELOW + 29])


def test_bands_beyond_the_spectrogram_take_the_example_floor():
    top, bottom = 108, 22
    view = inputs.note_relative(np.stack([harmonic_cqt(top), harmonic_cqt(bottom)]), [top, bottom], DEFAULT.pitch)
    floor = -3.0
    above = BANDS - (top - 21) + inputs.NOTE_BELOW  # first view band past the spectrogram's top
    assert np.all(view[0, :, above:] == floor)
    assert np.all(view[1, :, : inputs.NOTE_BELOW - 1] == floor)  # below A0
    assert view[1, 0, inputs.NOTE_BELOW] > 2.0


def test_model_input_builds_what_the_spec_names():
    n = 3
    pitch = np.random.default_rng(0).normal(size=(n, FRAMES, BANDS)).astype(np.float32)
    inst = np.random.default_rng(1).normal(size=(n, *DEFAULT.instrument.shape)).astype(np.float32)
    midi = np.array([50, 60, 70])
    assert inputs.model_input("pitch", pitch, inst, None, DEFAULT) is pitch
    assert inputs.model_input("instrument", pitch, inst, None, DEFAULT) is inst
    both = inputs.model_input("instrument+harmonics", pitch, inst, midi, DEFAULT)
    assert both.shape == (n, *inputs.input_shape("instrument+harmonics", DEFAULT))
    np.testing.assert_array_equal(both[:, :, : inst.shape[2]], inst)
    np.testing.assert_array_equal(both[:, :, inst.shape[2] :], inputs.note_relative(pitch, midi, DEFAULT.pitch))
    assert inputs.input_shape("pitch", DEFAULT) == DEFAULT.pitch.shape
    with pytest.raises(ValueError, match="needs each note's MIDI number"):
        inputs.model_input("instrument+harmonics", pitch, inst, None, DEFAULT)


def test_the_note_relative_view_needs_matching_frames_and_a_semitone_scale():
    seed = get_preset("seed")  # a 0.5-s mel pitch window beside a 1-s instrument window
    with pytest.raises(ValueError, match="same frames"):
        inputs.input_shape("instrument+harmonics", seed)
    with pytest.raises(ValueError, match="constant-Q pitch spectrogram"):
        inputs.note_relative(np.zeros((1, *seed.pitch.shape), np.float32), [60], seed.pitch)
    with pytest.raises(ValueError, match="N notes"):
        inputs.note_relative(np.zeros((2, FRAMES, BANDS), np.float32), [60], DEFAULT.pitch)


def test_band_frequencies_name_the_frequency_each_input_band_holds():
    midi = np.array([40, 60, 83])
    mel = inputs.band_frequencies("instrument", DEFAULT)
    assert mel.shape == (1, DEFAULT.instrument.n_bands)
    np.testing.assert_allclose(mel[0], DEFAULT.instrument.band_frequencies(), rtol=1e-6)
    assert inputs.band_frequencies("pitch", DEFAULT).shape == (1, BANDS)
    both = inputs.band_frequencies("instrument+harmonics", DEFAULT, midi)
    assert both.shape == (3, inputs.input_shape("instrument+harmonics", DEFAULT)[1])
    np.testing.assert_allclose(both[:, : mel.shape[1]], np.repeat(mel, 3, axis=0))
    relative = both[:, mel.shape[1] :]
    # The note's own band holds its fundamental, and every band of the re-centred view holds
    # the constant-Q band that `note_relative` moved there (same frequency).
    np.testing.assert_allclose(relative[:, inputs.NOTE_BELOW], 440.0 * 2 ** ((midi - 69) / 12), rtol=1e-5)
    cqt = DEFAULT.pitch.band_frequencies()
    for row, m in zip(relative, midi, strict=True):
        source = np.arange(inputs.NOTE_BANDS) + (m - 21) - inputs.NOTE_BELOW
        inside = (source >= 0) & (source < BANDS)
        np.testing.assert_allclose(row[inside], cqt[source[inside]], rtol=1e-5)
    with pytest.raises(ValueError, match="needs each note's MIDI number"):
        inputs.band_frequencies("instrument+harmonics", DEFAULT)
