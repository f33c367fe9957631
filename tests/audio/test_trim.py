"""Where the note sounds: silence before and after it found, the note itself never cut."""

from __future__ import annotations

import numpy as np
import pytest

from instropitch.audio import trim
from instropitch.audio.trim import note_span

SR = 22050


def tone(seconds: float, f0: float = 220.0, amp: float = 0.5, swell_db: float = 0.0) -> np.ndarray:
    """A harmonic tone with a 10 ms attack; `swell_db` starts it that far below its end level."""
    t = np.arange(round(seconds * SR)) / SR
    y = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
    gain = 10 ** (-swell_db * (1 - t / seconds) / 20)
    return (amp * y / np.max(np.abs(y)) * np.minimum(t / 0.01, 1.0) * gain).astype(np.float32)


def room(seconds: float, db: float = -70.0, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(round(seconds * SR)) * 10 ** (db / 20)).astype(np.float32)


def test_a_note_that_starts_at_once_spans_the_whole_file() -> None:
    y = tone(2.0)
    assert note_span(y, SR) == (0.0, 2.0)


@pytest.mark.parametrize("lead, tail", [(0.7, 1.0), (0.05, 0.0), (2.5, 0.3)])
def test_room_noise_before_and_after_the_note_is_left_out(lead: float, tail: float) -> None:
    y = np.concatenate([room(lead), tone(1.5), room(tail, seed=1)])
    start, end = note_span(y, SR)
    assert start == pytest.approx(lead, abs=0.011)
    assert end == pytest.approx(lead + 1.5 if tail else len(y) / SR, abs=0.011)


def test_digital_silence_and_a_dc_offset_are_silence_too() -> None:
    y = np.concatenate([np.zeros(SR // 2, np.float32), tone(1.0)]) + 0.2
    start, end = note_span(y, SR)
    assert start == pytest.approx(0.5, abs=0.011) and end == pytest.approx(1.5)


def test_a_quiet_beginning_of_the_note_is_kept() -> None:
    """A swell from 20 dB under its peak is the note, not silence: nothing is cut."""
    assert note_span(tone(2.0, swell_db=20.0), SR)[0] == 0.0


def test_a_noisy_recording_still_finds_the_note() -> None:
    """Room noise 30 dB under the note: the edge is quiet enough to count as silence."""
    y = np.concatenate([room(0.4, db=-36.0), tone(1.0)])
    assert note_span(y, SR)[0] == pytest.approx(0.4, abs=0.011)


def test_a_steady_tone_and_a_tiny_file_span_everything() -> None:
    assert note_span(tone(1.0)[SR // 10 :], SR) == (0.0, pytest.approx(0.9))
    assert note_span(tone(0.05), SR) == (0.0, len(tone(0.05)) / SR)
    assert note_span(room(1.0), SR) == (0.0, 1.0)


def test_a_note_holds_until_it_falls_15_db_under_its_peak_not_while_its_echo_dies() -> None:
    sr = 16000
    t = np.arange(3 * sr) / sr
    tone = 0.5 * np.sin(2 * np.pi * 440.0 * t)
    assert trim.held_seconds(tone[: 2 * sr], sr) == pytest.approx(2.0, abs=0.02)
    # 0.5 s held, then an echo falling 60 dB a second: it holds 0.5 s and 0.25 s of its echo
    echo = tone * np.where(t < 0.5, 1.0, 10 ** (-60 * (t - 0.5) / 20))
    assert trim.held_seconds(echo, sr) == pytest.approx(0.75, abs=0.03)
    silence_around = np.concatenate([np.zeros(sr // 2), tone[: sr // 2], 1e-4 * tone[:sr]])
    assert trim.held_seconds(silence_around, sr) == pytest.approx(0.5, abs=0.03)  # its edge frames smoothed away
    assert trim.held_seconds(np.zeros(0), sr) == 0.0


def test_repeated_notes_hold_one_stroke_each_and_a_deep_tremolo_holds_throughout() -> None:
    sr = 16000
    t = np.arange(sr // 2) / sr
    stroke = np.concatenate([0.5 * np.sin(2 * np.pi * 440.0 * t[: int(0.3 * sr)]), np.zeros(int(0.2 * sr))])
    assert trim.held_seconds(np.tile(stroke, 3), sr) == pytest.approx(0.3, abs=0.03)
    t = np.arange(2 * sr) / sr
    tremolo = np.sin(2 * np.pi * 440.0 * t) * (1 - 0.9 * (0.5 + 0.5 * np.sin(2 * np.pi * 5 * t)))  # dips 20 dB
    assert trim.held_seconds(tremolo, sr) == pytest.approx(2.0, abs=0.05)
