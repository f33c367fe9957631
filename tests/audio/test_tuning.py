"""How far a note sounds from the note it is named, in cents, from its period: precise where the period is
believed, folded onto the note where YIN reads a subharmonic, None where the period says nothing of the note."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from instropitch import audio
from instropitch.audio import tuning

SR = 22050


def note(hz: float, seconds: float = 1.0, harmonics: tuple[int, ...] = tuple(range(1, 9)), vibrato_cents: float = 0.0):
    """A tone at `hz` (its `harmonics`, amplitudes 1/k), with a 5.5-Hz vibrato of +-`vibrato_cents` if asked."""
    t = np.arange(round(seconds * SR)) / SR
    f = hz * 2 ** (vibrato_cents * np.sin(2 * np.pi * 5.5 * t) / 1200)
    phase = 2 * np.pi * np.cumsum(f) / SR
    y = sum(np.sin(k * phase) / k for k in harmonics if k * hz < SR / 2)
    return (0.4 * y / np.max(np.abs(y))).astype(np.float32)


@pytest.mark.parametrize("cents", [-48.0, -20.0, 0.0, 7.0, 33.0, 47.0])
@pytest.mark.parametrize("midi", [33, 57, 81])
def test_a_detuned_tone_reads_its_cents_within_one(midi, cents):
    hz = 440.0 * 2 ** ((midi - 69) / 12 + cents / 1200)
    assert tuning.cents_off(note(hz), SR, midi) == pytest.approx(cents, abs=1.0)


def test_the_cents_are_against_the_note_named_so_the_neighbour_reads_them_from_its_side():
    hz = 440.0 * 2 ** (47 / 1200)
    assert tuning.cents_off(note(hz), SR, 70) == pytest.approx(-53, abs=1.0)  # A#4: 53 cents below it


def test_a_tone_without_its_fundamental_reads_at_its_period():
    hz = 110.0 * 2 ** (30 / 1200)
    assert tuning.cents_off(note(hz, harmonics=(2, 3, 4, 5, 6)), SR, 45) == pytest.approx(30, abs=1.0)


def test_a_high_note_read_at_a_subharmonic_of_its_period_is_folded_onto_it():
    """C7 (2,093 Hz) is above YIN's reach (1.3 kHz): it reads half the frequency, and the note's multiple of it."""
    hz = 440.0 * 2 ** (27 / 12 + 25 / 1200)
    assert hz > 1300
    assert tuning.cents_off(note(hz, harmonics=(1, 2)), SR, 96) == pytest.approx(25, abs=1.5)


def test_vibrato_averages_out():
    assert tuning.cents_off(note(440.0, vibrato_cents=40.0), SR, 69) == pytest.approx(0, abs=5.0)


def test_noise_and_a_period_of_another_note_give_none():
    rng = np.random.default_rng(3)
    assert tuning.cents_off(rng.normal(0, 0.2, SR).astype(np.float32), SR, 69) is None
    assert tuning.cents_off(note(440.0), SR, 64) is None  # E4: A4 is no whole multiple of it
    assert tuning.cents_off(np.zeros(SR, dtype=np.float32), SR, 69) is None
    assert tuning.cents_off(note(440.0)[:100], SR, 69) is None  # too short for a period


@pytest.mark.skipif(shutil.which("sox") is None, reason="needs SoX")
def test_sox_speed_moves_a_tone_by_the_cents_it_is_asked(tmp_path):
    """SoX (code this project did not write) plays a tone 46 cents sharp: read as such."""
    source, moved = tmp_path / "a4.wav", tmp_path / "a4-up.wav"
    audio.write_wav(source, note(440.0, seconds=2.0), SR)
    subprocess.run(["sox", str(source), str(moved), "speed", "46c"], check=True, capture_output=True)
    y, rate = audio.load(moved, SR)
    assert tuning.cents_off(y, rate, 69) == pytest.approx(46, abs=1.0)


def test_the_neighbour_a_note_leans_to_is_above_when_sharp_and_below_otherwise() -> None:
    assert tuning.leaning_neighbour(69, 40.0) == 70
    assert tuning.leaning_neighbour(69, -40.0) == 68
    assert tuning.leaning_neighbour(69, None) == 68  # no reading: below, as the answer's runner-up list had it
