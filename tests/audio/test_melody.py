"""Several notes in one file (`audio.melody`): found in a phrase, never in one note however it wavers."""

from __future__ import annotations

import numpy as np
import pytest
from support.tones import SR, tone, wav_bytes

from instropitch.audio import features, melody, periodicity

CONFIG = features.get_preset("default")


def legato(*notes: np.ndarray) -> np.ndarray:
    return np.concatenate(notes)


def vibrato_note(midi: float, seconds: float, depth_semitones: float, rate_hz: float = 5.5) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    f = 440 * 2 ** ((midi - 69 + depth_semitones * np.sin(2 * np.pi * rate_hz * t)) / 12)
    phase = 2 * np.pi * np.cumsum(f) / SR
    y = sum(np.sin(k * phase) / k for k in range(1, 8))
    return (0.4 * y / np.abs(y).max() * np.minimum(1, t / 0.03)).astype(np.float32)


def test_track_reads_the_pitch_frame_by_frame():
    y = legato(tone("Vn", 60, seconds=0.6, seed=1), tone("Vn", 67, seconds=0.6, seed=2))
    times, midi, aperiodicity, level = periodicity.track(y, SR)
    assert np.allclose(np.diff(times), periodicity.TRACK_HOP_S, atol=1 / SR)  # whole samples
    early, late = midi[(times > 0.1) & (times < 0.4)], midi[(times > 0.7) & (times < 1.0)]
    assert np.allclose(early, 60, atol=0.1) and np.allclose(late, 67, atol=0.1)
    assert aperiodicity[(times > 0.1) & (times < 0.4)].max() < melody.PERIODIC
    assert [len(a) for a in periodicity.track(y[:100], SR)] == [0, 0, 0, 0]  # shorter than one frame
    quiet = np.concatenate([y, y[: SR // 2] * 1e-3])  # a tail 60 dB down: not analysed
    _, midi, aperiodicity, level = periodicity.track(quiet, SR, quiet_db=30.0)
    assert np.isnan(midi[-3:]).all() and (aperiodicity[-3:] == 1).all() and level[-3:].max() < level.max() - 30


def test_a_phrase_is_read_as_its_notes_in_order():
    y = legato(*(tone("ClBb", m, seconds=0.5, seed=m) for m in (60, 64, 67, 64)))
    notes = melody.notes_held(y, SR)
    assert [n.name for n in notes] == ["C4", "E4", "G4", "E4"]
    assert [round(n.start_s, 1) for n in notes] == [0.0, 0.5, 1.0, 1.5]
    said = melody.several_notes_warning(notes, (0.5, 1.5))
    assert said == (
        "holds 4 notes (C4 at 0.00 s, E4 at 0.50 s, G4 at 1.00 s, E4 at 1.50 s); the answer is for one note, "
        "read from 0.50-1.50 s: cut the file to the note you mean"
    )


@pytest.mark.parametrize(
    "y",
    [
        pytest.param(tone("Vn", 45, seconds=3.0), id="one note"),
        pytest.param(vibrato_note(62.3, 2.0, 0.5), id="wide vibrato"),
        pytest.param(vibrato_note(62.3, 2.0, 0.5, rate_hz=2.0), id="wide, slow vibrato"),
        pytest.param(
            legato(tone("Fl", 72, seconds=0.15, seed=3), tone("Fl", 74, seconds=1.5, seed=4)), id="grace note"
        ),
        pytest.param(legato(tone("Vn", 57, seconds=1.0, seed=5), tone("Vn", 69, seconds=1.0, seed=6)), id="octave"),
        pytest.param(np.random.default_rng(0).standard_normal(SR).astype(np.float32) * 0.3, id="noise"),
    ],
)
def test_one_note_however_it_wavers_is_one_note(y):
    assert melody.several_notes_warning(melody.notes_held(y, SR), (0.0, 1.0)) is None


def test_a_long_file_is_tracked_at_a_bounded_cost():
    y = legato(tone("Vn", 60, seconds=30.0, seed=1), tone("Vn", 65, seconds=30.0, seed=2))
    notes = melody.notes_held(y, SR)
    assert [n.name for n in notes] == ["C4", "F4"]
    silence = np.zeros(60 * melody.ANALYSIS_RATE)
    times = periodicity.track(silence, melody.ANALYSIS_RATE, hop_s=60 / melody.MAX_FRAMES)[0]
    assert len(times) <= melody.MAX_FRAMES


def test_features_find_the_notes_only_when_asked():
    data = wav_bytes(legato(tone("Vn", 60, seconds=0.8, seed=1), tone("Vn", 64, seconds=0.8, seed=2)))
    plain = features.compute_features(data, CONFIG)
    found = features.compute_features(data, CONFIG, find_notes=True)
    assert plain.notes is None and [n.name for n in found.notes] == ["C4", "E4"]
    np.testing.assert_array_equal(plain.pitch, found.pitch)  # the spectrograms do not change
    start, end = found.pitch_window
    assert 0.0 <= start < end <= 1.6 and end - start == pytest.approx(min(CONFIG.pitch.duration, 1.6), abs=0.01)


def test_readings_under_the_answer_in_a_whole_ratio_are_its_subharmonics():
    # a note above the period estimate's reach (C7) read at C6 (1/2) and F5 (1/3): one note, the answer
    c6, f5 = melody.HeldNote(0.1, 0.6, 84.1), melody.HeldNote(0.65, 2.0, 77.0)
    assert melody.several_notes_warning([c6, f5], (0.5, 1.5)) is not None  # without the answer: two notes
    assert melody.several_notes_warning([c6, f5], (0.5, 1.5), answer_midi=96.0) is None
    # a note of its own beside them is still one more note, and the answered note itself is kept
    d4, c7 = melody.HeldNote(2.0, 3.0, 62.0), melody.HeldNote(0.0, 2.0, 95.9)
    said = melody.several_notes_warning([c7, c6, d4], (0.5, 1.5), answer_midi=96.0)
    assert said is not None and said.startswith("holds 2 notes (C7 at 0.00 s, D4 at 2.00 s)")


def glide_note(start_midi: float, end_midi: float, seconds: float) -> np.ndarray:
    """A sawtooth-like tone whose pitch moves evenly (in semitones) from one note to another."""
    t = np.arange(int(seconds * SR)) / SR
    f = 440 * 2 ** ((start_midi + (end_midi - start_midi) * t / seconds - 69) / 12)
    phase = 2 * np.pi * np.cumsum(f) / SR
    y = sum(np.sin(k * phase) / k for k in range(1, 8))
    return (0.4 * y / np.abs(y).max() * np.minimum(1, t / 0.03)).astype(np.float32)


def test_a_pitch_that_glides_is_found_where_the_answer_is_read_and_said():
    course = melody.pitch_course(glide_note(57, 69, 1.5), SR)  # A3 -> A4
    moved = melody.glide(course, (0.25, 1.25))
    assert moved is not None and moved[1] - moved[0] > 4  # upwards, most of the window's 8 semitones
    assert 58 <= moved[0] < moved[1] <= 68
    said = melody.glide_warning(moved, (0.25, 1.25))
    assert said.startswith("the pitch glides from ") and "where the answer was read (0.25-1.25 s)" in said
    down = melody.glide(melody.pitch_course(glide_note(72, 62, 1.5), SR), (0.25, 1.25))
    assert down is not None and down[0] > down[1]
    assert melody.glide(course, (1.6, 2.6)) is None  # nothing of it in that window
    slow = melody.glide(melody.pitch_course(glide_note(57, 60, 1.8), SR), (0.4, 1.4))  # 1.7 semitones a second
    assert slow is not None and 1.5 <= slow[1] - slow[0] <= 1.8
    assert melody.glide_warning(None, (0.0, 1.0)) is None


@pytest.mark.parametrize(
    "y",
    [
        pytest.param(tone("Vn", 45, seconds=3.0), id="one note"),
        pytest.param(vibrato_note(62.3, 2.0, 0.5), id="wide vibrato"),
        pytest.param(vibrato_note(62.3, 2.0, 0.5, rate_hz=2.0), id="wide, slow vibrato"),
        pytest.param(legato(*(tone("ClBb", m, seconds=0.3, seed=m) for m in (60, 62, 64, 65, 67))), id="a scale"),
        pytest.param(glide_note(60, 61, 1.5), id="a semitone bend"),
    ],
)
def test_a_held_note_a_vibrato_a_scale_or_a_bend_is_no_glide(y):
    assert melody.glide(melody.pitch_course(y, SR), (0.0, len(y) / SR)) is None


def test_features_carry_the_glide_in_the_pitch_window_only_when_asked():
    data = wav_bytes(glide_note(57, 69, 1.5))
    assert features.compute_features(data, CONFIG).glide is None
    found = features.compute_features(data, CONFIG, find_notes=True)
    assert found.glide is not None and found.glide[1] > found.glide[0]
