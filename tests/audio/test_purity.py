"""A tone generator's sine is one partial; a note with overtones, noise or a room is not."""

from __future__ import annotations

import numpy as np
import pytest

from instropitch.audio import purity

SR = 16000
T = np.arange(SR // 2) / SR


@pytest.mark.parametrize("hz", [41.2, 440.0, 3520.0])
def test_a_sine_is_one_partial_at_any_pitch_whatever_its_offset(hz: float) -> None:
    assert purity.impurity_db(np.sin(2 * np.pi * hz * T), SR) < -80
    assert purity.impurity_db(0.3 + 0.5 * np.sin(2 * np.pi * hz * T), SR) < -80  # a DC offset is no partial


def test_overtones_or_noise_are_the_rest_in_db() -> None:
    overtone = np.sin(2 * np.pi * 440 * T) + 10 ** (-30 / 20) * np.sin(2 * np.pi * 880 * T)
    assert purity.impurity_db(overtone, SR) == pytest.approx(-30, abs=0.5)
    hiss = np.sin(2 * np.pi * 440 * T) + 0.01 * np.random.default_rng(0).standard_normal(len(T))
    assert -45 < purity.impurity_db(hiss, SR) < -25  # white noise 37 dB under the sine, spread over every band


def test_silence_or_a_few_samples_tell_nothing() -> None:
    assert purity.impurity_db(np.zeros(SR // 2), SR) is None
    assert purity.impurity_db(np.sin(np.arange(32)), SR) is None


def test_the_window_is_scipys_blackman_harris() -> None:
    from scipy.signal.windows import blackmanharris

    assert np.allclose(purity.blackman_harris(101), blackmanharris(101))


def _partials(f0: float, numbers, levels_db=None, t=T) -> np.ndarray:
    levels_db = [0.0] * len(numbers) if levels_db is None else levels_db
    return sum(10 ** (db / 20) * np.sin(2 * np.pi * n * f0 * t) for n, db in zip(numbers, levels_db, strict=True))


@pytest.mark.parametrize("hz", [41.2, 440.0, 3520.0, 5000.0])
def test_a_sine_or_a_note_implies_its_own_fundamental(hz: float) -> None:
    assert purity.lowest_fundamental_hz(np.sin(2 * np.pi * hz * T), SR) == pytest.approx(hz, abs=2.5)
    note = _partials(hz, [n for n in range(1, 9) if n * hz < SR / 2 - 100], None)
    assert purity.lowest_fundamental_hz(note, SR) == pytest.approx(hz, abs=2.5)


def test_harmonics_without_their_fundamental_still_imply_it() -> None:
    assert purity.lowest_fundamental_hz(_partials(300.0, range(2, 9)), SR) == pytest.approx(300.0, abs=2.5)
    # a weak fundamental 40 dB down is left out, its harmonics' spacing still names it
    weak = _partials(300.0, [1, 2, 3], [-40.0, 0.0, -6.0])
    assert purity.lowest_fundamental_hz(weak, SR) == pytest.approx(300.0, abs=2.5)


def test_beating_reeds_are_one_partial_not_a_fundamental_of_a_few_hertz() -> None:
    reeds = np.sin(2 * np.pi * 5000.0 * T) + 0.8 * np.sin(2 * np.pi * 5012.0 * T)  # an accordion's musette
    assert purity.lowest_fundamental_hz(reeds, SR) == pytest.approx(5000.0, abs=3.0)
    hiss = np.sin(2 * np.pi * 5000.0 * T) + 0.01 * np.random.default_rng(0).standard_normal(len(T))
    assert purity.lowest_fundamental_hz(hiss, SR) == pytest.approx(5000.0, abs=2.5)  # noise 37 dB down is no partial


def test_no_fundamental_in_silence_or_a_few_samples() -> None:
    assert purity.lowest_fundamental_hz(np.zeros(SR // 2), SR) is None
    assert purity.lowest_fundamental_hz(np.sin(np.arange(32)), SR) is None
