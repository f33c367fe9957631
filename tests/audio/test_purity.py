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
