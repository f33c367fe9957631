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


def period_s(midi: float) -> float:
    return 1.0 / (440.0 * 2 ** ((midi - 69) / 12))


@pytest.mark.parametrize("seconds", [1.0, 0.08])
@pytest.mark.parametrize("midi", [40, 70, 93])
def test_a_tone_repeats_after_its_period_and_its_multiples_whatever_its_timbre(midi, seconds):
    for harmonics in [(1,), range(1, 20, 2), range(2, 9)]:
        found = periodicity.repeats(tone(midi, seconds, harmonics, seed=midi), SR)
        r = found.at([period_s(midi), 2 * period_s(midi)])
        assert r == pytest.approx([1.0, 1.0], abs=0.05), (harmonics, r)


def test_a_missing_fundamental_tone_does_not_repeat_an_octave_or_two_up():
    """Harmonics 2..8: half its period is the CNN's octave error, a quarter its two-octave one."""
    for midi in (45, 70, 83, 94):
        found = periodicity.repeats(tone(midi, 1.0, range(2, 9), seed=midi), SR)
        half, quarter = found.at([period_s(midi + 12), period_s(midi + 24)])
        assert half < 0.5 and quarter < 0.5, (midi, half, quarter)


def test_the_window_taper_does_not_read_as_a_weaker_repeat_and_lags_past_half_the_frame_are_unknown():
    y = tone(30, 1.0)  # 46 Hz: two periods are ~43 ms, under half the 0.19-s frame
    found = periodicity.repeats(y, SR)
    assert found.at([2 * period_s(30)])[0] == pytest.approx(1.0, abs=0.03)
    assert np.isnan(found.at([0.1])[0])
    short = periodicity.repeats(y[:900], SR)  # 41 ms of note: a 22-ms period is past half of it
    assert np.isnan(short.at([period_s(30)])[0])


def test_noise_repeats_at_no_period_and_silence_or_no_audio_gives_none():
    noise = periodicity.repeats(np.random.default_rng(2).standard_normal(SR), SR)
    assert np.all(np.abs(noise.at([period_s(m) for m in range(30, 100, 7)])) < 0.2)
    assert periodicity.repeats(np.zeros(SR), SR) is None
    assert periodicity.repeats(np.full(SR, np.nan), SR) is None
    assert periodicity.repeats(np.ones(8), SR) is None


def test_the_spectrum_kept_for_repeats_names_the_strongest_partial_and_the_level_of_any_other():
    f0 = 440.0
    t = np.arange(SR) / SR
    y = np.sin(2 * np.pi * f0 * t) + 0.1 * np.sin(2 * np.pi * 3 * f0 * t + 1.0)
    found = periodicity.repeats(y, SR)
    assert found.strongest_hz == pytest.approx(f0, abs=SR / found.n_fft)
    assert found.level_db(f0) == pytest.approx(0.0)
    assert found.level_db(3 * f0) == pytest.approx(-20.0, abs=0.5)
    assert found.level_db(3 * f0 * 1.02) == pytest.approx(-20.0, abs=0.5)  # within the tolerance
    assert found.level_db(2 * f0) == found.floor_db == periodicity.FLOOR_DB  # nothing kept there


def _best_lag(dn: np.ndarray, min_lag: int) -> tuple[float, float]:
    """YIN's pick read one row at a time, as the rule is written: the reference `_best_lags` must match."""
    below = np.flatnonzero(dn[min_lag:] < periodicity.THRESHOLD)
    if not len(below):
        below = np.flatnonzero(dn[min_lag:] <= dn[min_lag:].min() + periodicity.TOLERANCE)
    lag = min_lag + int(below[0])
    while lag + 1 < len(dn) and dn[lag + 1] < dn[lag]:
        lag += 1
    if 0 < lag < len(dn) - 1:
        a, b, c = dn[lag - 1], dn[lag], dn[lag + 1]
        curve = a - 2 * b + c
        shift = 0.5 * (a - c) / curve if curve > 0 else 0.0
        return lag + float(np.clip(shift, -1, 1)), float(b)
    return float(lag), float(dn[lag])


def test_best_lags_reads_every_row_as_best_lag_reads_one():
    rng = np.random.default_rng(0)
    rows = np.concatenate(
        [np.abs(rng.normal(0.5, 0.4, (200, 60))), np.cumsum(rng.normal(0, 0.1, (200, 60)), axis=1) ** 2]
    )
    rows[:, 0] = 1.0
    lags, dips = periodicity._best_lags(rows, 3)
    one_by_one = np.array([_best_lag(row, 3) for row in rows])
    np.testing.assert_allclose(lags, one_by_one[:, 0])
    np.testing.assert_allclose(dips, one_by_one[:, 1])
