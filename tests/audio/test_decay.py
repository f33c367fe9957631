"""Whether a note holds or dies away after its attack: plucked and struck notes fall evenly, held ones do not,
and a held note let go in a room drops at once."""

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


def struck(
    seconds: float = 2.0, f0: float = 196.0, db_per_s: float = 12.0, sr: int = SR, attack_s: float = 0.002
) -> np.ndarray:
    """A string struck once: harmonics that fall from the first sample, the k-th k-times as fast in dB, after a
    linear rise of `attack_s` (a pluck's 2 ms; a slower one is no strike)."""
    t = np.arange(round(seconds * sr)) / sr
    y = sum(np.sin(2 * np.pi * k * f0 * t) / k * 10 ** (-db_per_s * k * t / 20) for k in range(1, 9) if k * f0 < sr / 2)
    return (0.5 * y / np.max(np.abs(y)) * np.minimum(t / attack_s, 1.0)).astype(np.float32)


def let_go_in_a_room(held_s: float = 0.5, rt60_s: float = 1.5, seed: int = 0) -> np.ndarray:
    """A held violin-like note of `held_s`, its sound and a room's echo of it (noise dying by 60 dB in `rt60_s`)."""
    rng = np.random.default_rng(seed)
    note = np.concatenate([tone("Vn", 55, seconds=held_s, seed=seed), np.zeros(2 * SR, dtype=np.float32)])
    t = np.arange(round(1.5 * rt60_s * SR)) / SR
    response = rng.standard_normal(len(t)) * 10 ** (-3 * t / rt60_s) * 0.05
    n = len(note) + len(response) - 1  # convolved through the FFT: directly, 2.6e9 products took 16 s
    echo = np.fft.irfft(np.fft.rfft(note, n) * np.fft.rfft(response, n), n)[: len(note)]
    y = note + echo
    return (0.5 * y / np.max(np.abs(y))).astype(np.float32)


def bands(y: np.ndarray, sr: int = SR) -> float:
    fall = decay.fall_after_attack(y, sr)
    assert fall is not None
    return fall.bands_db


def test_a_held_note_holds_and_a_struck_one_falls_evenly() -> None:
    for abbr, midi in (("Vn", 55), ("Fl", 72), ("ClBb", 50)):
        held = decay.fall_after_attack(tone(abbr, midi, seconds=2.0), SR)
        assert held is not None and abs(held.bands_db) < 1.5, (abbr, held)
        assert not decay.plucked_or_struck(held)
    fall = decay.fall_after_attack(struck(), SR)
    assert fall is not None and fall.bands_db < -12 and decay.plucked_or_struck(fall)
    assert fall.steepest_db < 2 * fall.mean_step_db + 2  # evenly: no step much steeper than the mean
    # a low string rings long: it falls less than 8 dB in its first second, yet its attack was a strike
    slow = decay.fall_after_attack(struck(db_per_s=3.0), SR)
    assert slow is not None and -8 < slow.bands_db < decay.STRUCK_DB and slow.attack_s <= decay.STRUCK_ATTACK_S
    assert slow.later is None  # the note stops before the third window
    assert decay.struck_fall(slow) == (slow.bands_db, decay.LATE_S[1])
    swelling = decay.fall_after_attack(struck(db_per_s=3.0, attack_s=0.03), SR)  # the same fall after a 30-ms rise
    assert swelling is not None and swelling.attack_s > decay.STRUCK_ATTACK_S and not decay.plucked_or_struck(swelling)


def test_the_attack_is_timed_from_20_to_3_db_under_its_peak() -> None:
    """A linear rise of 10 ms reaches -20 dB at 1 ms and -3 dB at 7 ms: 6 ms, read in 2-ms frames (+-2; a note of
    1 kHz, whose period the frames hold twice); silence before the note costs nothing, and a note that starts at its
    peak (a file cut there) rises in no time."""
    for attack_s, lead_s in ((0.002, 0.0), (0.01, 0.0), (0.01, 0.3), (0.03, 0.3)):
        note = struck(f0=1000.0, db_per_s=6.0, attack_s=attack_s)
        fall = decay.fall_after_attack(np.concatenate([np.zeros(round(lead_s * SR), dtype=np.float32), note]), SR)
        assert fall is not None and fall.attack_s == pytest.approx((0.707 - 0.1) * attack_s, abs=0.0025), (
            attack_s,
            lead_s,
        )
    cut = struck(f0=1000.0, db_per_s=6.0)[round(0.05 * SR) :]
    assert decay.fall_after_attack(cut, SR).attack_s == 0.0


def test_a_string_that_rings_long_is_struck_by_the_third_window_and_a_long_held_note_is_not() -> None:
    ringing = decay.fall_after_attack(struck(seconds=3.0, f0=82.4, db_per_s=3.5), SR)  # a low E that rings long
    assert ringing is not None and ringing.bands_db > decay.DIES_AWAY_DB  # not far enough in the first second...
    assert ringing.later is not None and ringing.later.bands_db <= decay.DIES_AWAY_LATER_DB  # ...but by the third
    assert decay.plucked_or_struck(ringing)
    assert decay.struck_fall(ringing) == (ringing.later.bands_db, decay.LATER_S[1])  # read where it is called struck
    fast = decay.fall_after_attack(struck(seconds=3.0), SR)
    assert decay.struck_fall(fast) == (fast.bands_db, decay.LATE_S[1])
    slower = decay.fall_after_attack(struck(seconds=3.0, f0=82.4, db_per_s=1.5), SR)
    assert slower.later.bands_db > decay.DIES_AWAY_LATER_DB and not decay.plucked_or_struck(slower), slower
    for abbr, midi in (("Vc", 40), ("Tbn", 45), ("Fl", 72)):
        held = decay.fall_after_attack(tone(abbr, midi, seconds=3.0), SR)
        assert held.later is not None and abs(held.later.bands_db) < 1.5 and not decay.plucked_or_struck(held), held


def test_a_held_note_let_go_in_a_room_falls_as_far_but_at_once_so_it_is_not_struck() -> None:
    for held_s in (0.4, 0.6):
        fall = decay.fall_after_attack(let_go_in_a_room(held_s), SR)
        assert fall is not None and fall.bands_db < -8  # as far as a struck string...
        assert fall.steepest_db > decay.EVEN_DB and not decay.plucked_or_struck(fall), fall  # ...but not evenly


def test_the_fall_is_read_after_the_attack_wherever_the_note_starts_and_whatever_its_level() -> None:
    y = struck()
    silence = np.random.default_rng(0).standard_normal(round(0.8 * SR)).astype(np.float32) * 1e-4
    assert bands(np.concatenate([silence, y])) == pytest.approx(bands(y), abs=1.0)
    assert bands(y * np.float32(0.01)) == pytest.approx(bands(y), abs=0.1)
    swell = tone("Vn", 55, seconds=2.0) * np.linspace(0.3, 1.0, 2 * SR, dtype=np.float32)  # a crescendo rises
    assert bands(swell) > 2


def test_a_note_too_short_for_the_second_window_is_not_judged() -> None:
    assert decay.fall_after_attack(struck(seconds=0.9), SR) is None
    assert decay.fall_after_attack(tone("Vn", 55, seconds=0.5), SR) is None
    assert decay.fall_after_attack(np.zeros(0, dtype=np.float32), SR) is None
    assert not decay.plucked_or_struck(None) and decay.struck_fall(None) is None


def test_any_sample_rate() -> None:
    for sr in (8000, 48000):
        assert decay.plucked_or_struck(decay.fall_after_attack(struck(sr=sr), sr))
        assert abs(bands(tone("Vn", 55, seconds=2.0, sr=sr), sr)) < 1.5


def test_the_predictors_features_carry_the_fall_and_the_etls_do_not() -> None:
    config = get_preset("default")
    note = wav_bytes(struck())
    assert compute_features(io.BytesIO(note), config, name="s.wav", find_notes=True).fall.bands_db < -12
    assert compute_features(io.BytesIO(note), config, name="s.wav").fall is None


@pytest.mark.skipif(shutil.which("sox") is None, reason="needs SoX (apt-get install sox)")
def test_soxs_plucked_string_falls_and_its_reverb_of_a_short_note_is_let_go(tmp_path) -> None:
    """Code this project did not write. Karplus-Strong as SoX plays it: with its default sustain a low string
    falls slower than a guitar's (-6.5 dB at A2, bench/RESULTS.md), an E5 as fast. Its reverb of a held note cut
    at 0.5 s falls as far, at once."""
    falls = {}
    for note in ("A2", "E5"):
        out = tmp_path / f"{note}.wav"
        subprocess.run(["sox", "-n", "-r", str(SR), "-c", "1", str(out), "synth", "2", "pluck", note], check=True)
        falls[note] = decay.fall_after_attack(*audio.load(out))
    assert falls["A2"].bands_db < -4 and decay.plucked_or_struck(falls["E5"]), falls
    long_a2 = tmp_path / "A2-long.wav"  # 4 s: by the third window its low string has fallen far enough
    subprocess.run(["sox", "-n", "-r", str(SR), "-c", "1", str(long_a2), "synth", "4", "pluck", "A2"], check=True)
    assert decay.plucked_or_struck(decay.fall_after_attack(*audio.load(long_a2)))
    dry, wet = tmp_path / "dry.wav", tmp_path / "wet.wav"
    dry.write_bytes(wav_bytes(np.concatenate([tone("ClBb", 62, seconds=0.5), np.zeros(2 * SR, dtype=np.float32)])))
    subprocess.run(["sox", str(dry), str(wet), "reverb", "60", "norm", "-3"], check=True)
    room = decay.fall_after_attack(*audio.load(wet))
    assert room.bands_db < -8 and not decay.plucked_or_struck(room), room
