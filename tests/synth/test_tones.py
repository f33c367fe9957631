"""Generated periodic tones: the right pitch, the right partials, reproducible sets."""

from __future__ import annotations

import numpy as np
import pytest
from support.pitch import cents_off, estimate_f0

from instropitch.synth.tones import KINDS, periodic_tone, tone_set


def spectrum_at(y: np.ndarray, freq: float, sr: int = 44100) -> float:
    """Magnitude of `y`'s spectrum at `freq` (Hann window), relative to its peak."""
    mag = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    bin_ = int(round(freq * len(y) / sr))
    return float(mag[bin_ - 2 : bin_ + 3].max() / mag.max())


@pytest.mark.parametrize("kind", ["sine", "square", "triangle", "sawtooth", "naive_square", "naive_sawtooth"])
def test_tones_sound_at_their_note(kind):
    for midi in (40, 69, 90):
        y = periodic_tone(kind, midi, 1.0)
        assert abs(cents_off(estimate_f0(y[4410:-4410]), midi)) < 10, (kind, midi)
        assert np.abs(y).max() == pytest.approx(0.5, rel=1e-3)


def test_partials_are_those_of_each_wave():
    f0 = 220.0  # A3
    square, saw, missing = (periodic_tone(k, 57, 1.0) for k in ("square", "sawtooth", "missing_fundamental"))
    assert spectrum_at(square, 2 * f0) < 0.01 and spectrum_at(square, 3 * f0) > 0.25  # odd harmonics only
    assert spectrum_at(saw, 2 * f0) > 0.4
    assert spectrum_at(missing, f0) < 0.01 and spectrum_at(missing, 2 * f0) > 0.5  # no fundamental


def test_high_notes_stay_below_nyquist_and_short_notes_are_short():
    y = periodic_tone("square", 105, 0.5)  # 3.5 kHz: 5 odd partials fit under 20.9 kHz
    mag = np.abs(np.fft.rfft(y))
    freqs = np.fft.rfftfreq(len(y), 1 / 44100)
    assert mag[freqs > 0.95 * 22050].max() < 1e-3 * mag.max()
    assert len(periodic_tone("sine", 60, 0.06)) == round(0.06 * 44100)


def test_a_tone_set_is_reproducible_and_covers_every_note():
    a = tone_set([30, 60, 90], per_note=4, seed=3)
    b = tone_set([30, 60, 90], per_note=4, seed=3)
    assert [m for m, _ in a] == [30] * 4 + [60] * 4 + [90] * 4
    assert all(np.array_equal(x, y) for (_, x), (_, y) in zip(a, b, strict=True))
    assert len({len(y) for _, y in a}) > 1  # lengths vary
    assert set(KINDS) >= {"sine", "missing_fundamental"}
