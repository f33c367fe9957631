"""Whether a note holds or dies away after its attack: plucked and struck notes fall, held ones do not."""

from __future__ import annotations

import io
import shutil
import subprocess

import numpy as np
import pytest
from support.tones import tone, wav_bytes

from instropitch import audio
from instropitch.audio import decay
from instropitch.audio.features import compute_features, get_preset

SR = 22050


def struck(seconds: float = 2.0, f0: float = 196.0, db_per_s: float = 12.0, sr: int = SR) -> np.ndarray:
    """A string struck once: harmonics that fall from the first sample, the k-th k-times as fast in dB."""
    t = np.arange(round(seconds * sr)) / sr
    y = sum(np.sin(2 * np.pi * k * f0 * t) / k * 10 ** (-db_per_s * k * t / 20) for k in range(1, 9) if k * f0 < sr / 2)
    return (0.5 * y / np.max(np.abs(y)) * np.minimum(t / 0.002, 1.0)).astype(np.float32)


def test_a_held_note_holds_and_a_struck_one_falls() -> None:
    for abbr, midi in (("Vn", 55), ("Fl", 72), ("ClBb", 50)):
        held = decay.band_decay(tone(abbr, midi, seconds=2.0), SR)
        assert held is not None and abs(held) < 1.5, (abbr, held)
        assert not decay.plucked_or_struck(held)
    fall = decay.band_decay(struck(), SR)
    assert fall is not None and fall < -12 and decay.plucked_or_struck(fall)
    slow = decay.band_decay(struck(db_per_s=3.0), SR)  # a low string rings long: not called struck
    assert slow is not None and -8 < slow < -2 and not decay.plucked_or_struck(slow)


def test_the_fall_is_read_after_the_attack_wherever_the_note_starts_and_whatever_its_level() -> None:
    y = struck()
    at_once = decay.band_decay(y, SR)
    silence = np.random.default_rng(0).standard_normal(round(0.8 * SR)).astype(np.float32) * 1e-4
    late = decay.band_decay(np.concatenate([silence, y]), SR)
    quiet = decay.band_decay(y * np.float32(0.01), SR)
    assert late == pytest.approx(at_once, abs=1.0) and quiet == pytest.approx(at_once, abs=0.1)
    swell = tone("Vn", 55, seconds=2.0) * np.linspace(0.3, 1.0, 2 * SR, dtype=np.float32)  # a crescendo rises
    assert decay.band_decay(swell, SR) > 2


def test_a_note_too_short_for_the_second_window_is_not_judged() -> None:
    assert decay.band_decay(struck(seconds=0.9), SR) is None
    assert decay.band_decay(tone("Vn", 55, seconds=0.5), SR) is None
    assert decay.band_decay(np.zeros(0, dtype=np.float32), SR) is None
    assert not decay.plucked_or_struck(None)


def test_any_sample_rate() -> None:
    for sr in (8000, 48000):
        assert decay.band_decay(struck(sr=sr), sr) < -12
        assert abs(decay.band_decay(tone("Vn", 55, seconds=2.0, sr=sr), sr)) < 1.5


def test_the_predictors_features_carry_the_fall_and_the_etls_do_not() -> None:
    config = get_preset("default")
    note = wav_bytes(struck())
    assert compute_features(io.BytesIO(note), config, name="s.wav", find_notes=True).decay_db < -12
    assert compute_features(io.BytesIO(note), config, name="s.wav").decay_db is None


@pytest.mark.skipif(shutil.which("sox") is None, reason="needs SoX (apt-get install sox)")
def test_soxs_plucked_string_falls(tmp_path) -> None:
    """Karplus-Strong as SoX plays it (code this project did not write): with SoX's default sustain a low string
    falls slower than a guitar's (-6.5 dB at A2, bench/RESULTS.md), an E5 as fast."""
    falls = {}
    for note in ("A2", "E5"):
        out = tmp_path / f"{note}.wav"
        subprocess.run(["sox", "-n", "-r", str(SR), "-c", "1", str(out), "synth", "2", "pluck", note], check=True)
        falls[note] = decay.band_decay(*audio.load(out))
    assert falls["A2"] < -4 and decay.plucked_or_struck(falls["E5"]), falls
