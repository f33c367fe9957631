"""The period of a note in the time domain (YIN): right on any periodic tone, silent about noise."""

from __future__ import annotations

import numpy as np
import pytest

from instropitch.audio import periodicity

SR = 22050


def tone(midi: float, seconds: float, harmonics: range | tuple = (1,), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    f0 = 440.0 * 2 ** ((midi - 69) / 12)
    t = np.arange(int(seconds * SR)) / SR
    return sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6.3)) for k in harmonics if k * f0 < SR / 2)


@pytest.mark.parametrize("seconds", [1.0, 0.08])
@pytest.mark.parametrize(
    "harmonics",
    [(1,), range(1, 20, 2), range(2, 9)],  # sine, square-like (odd harmonics), missing fundamental
    ids=["sine", "odd", "missing_fundamental"],
)
def test_every_periodic_tone_from_28_to_88_is_named_to_the_semitone(harmonics, seconds):
    wrong = []
    for midi in range(28, 89, 3):
        found = periodicity.estimate(tone(midi, seconds, harmonics, seed=midi), SR)
        if found is None or round(found.midi) != midi or found.aperiodicity > 0.1:
            wrong.append((midi, found))
    assert wrong == []


def test_the_estimate_is_finer_than_a_semitone():
    found = periodicity.estimate(tone(45.3, 0.5), SR)
    assert found.midi == pytest.approx(45.3, abs=0.05)
    assert found.f0_hz == pytest.approx(440 * 2 ** ((45.3 - 69) / 12), rel=0.003)


def test_noise_is_aperiodic_and_too_little_audio_or_silence_gives_none():
    noise = periodicity.estimate(np.random.default_rng(1).standard_normal(SR), SR)
    assert noise is not None and noise.aperiodicity > 0.5
    assert periodicity.estimate(tone(60, 0.05), SR) is None  # under two periods of the lowest note
    assert periodicity.estimate(np.zeros(SR), SR) is None
    assert periodicity.estimate(np.full(SR, np.nan), SR) is None


def test_gain_and_a_dc_offset_do_not_move_it():
    y = tone(52, 0.3, range(1, 6))
    a, b = periodicity.estimate(y, SR), periodicity.estimate(0.01 * y + 0.3, SR)
    assert a.midi == pytest.approx(b.midi, abs=1e-6)
