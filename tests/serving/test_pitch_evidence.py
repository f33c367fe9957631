"""The period's second opinion on the note: when it is asked, what it weighs, how it combines."""

from __future__ import annotations

import numpy as np
import pytest
from support.tones import tone, wav_bytes

from instropitch.audio.periodicity import Periodicity
from instropitch.serving import pitch_evidence

MIDIS = np.arange(21, 110, dtype=np.float64)


def period(midi: float, aperiodicity: float = 0.02) -> Periodicity:
    return Periodicity(f0_hz=440.0 * 2 ** ((midi - 69) / 12), aperiodicity=aperiodicity, frames=3)


def test_short_or_unsure_answers_are_checked_long_sure_ones_not():
    assert pitch_evidence.needs_check(0.08, 0.99, 0.5)
    assert pitch_evidence.needs_check(2.0, 0.4, 0.5)
    assert not pitch_evidence.needs_check(2.0, 0.99, 0.5)


def test_no_period_to_believe_is_none_measured_or_one_as_aperiodic_as_noise():
    assert pitch_evidence.no_period(None)
    assert pitch_evidence.no_period(period(60, aperiodicity=pitch_evidence.APERIODICITY_GATE + 0.01))
    assert not pitch_evidence.no_period(period(60, aperiodicity=pitch_evidence.APERIODICITY_GATE))
    assert not pitch_evidence.no_period(period(60))


def test_a_note_above_the_period_estimates_reach_still_repeats_at_its_own_period_noise_does_not():
    high = repeats(harmonics(100, range(2, 9)))  # E7 without its fundamental: YIN, low-passed at 4 kHz, sees none
    assert pitch_evidence.repeats_at(high, 100) and not pitch_evidence.repeats_at(high, 99)
    white = repeats(np.random.default_rng(4).standard_normal(22050))
    assert not any(pitch_evidence.repeats_at(white, m) for m in (30, 60, 100))
    assert not pitch_evidence.repeats_at(None, 60)


def test_the_likelihood_peaks_on_the_measured_note_and_says_nothing_when_unsure():
    like = pitch_evidence.likelihood(period(45.2), MIDIS, cnn_top_midi=46)
    assert MIDIS[np.argmax(like)] == 45 and like.min() == pytest.approx(pitch_evidence.FLOOR, abs=1e-9)
    assert pitch_evidence.likelihood(period(45, aperiodicity=0.85), MIDIS, 46) is None  # noise
    breathy = pitch_evidence.likelihood(period(45, aperiodicity=0.6), MIDIS, 46)  # a noisy note still has its period
    assert MIDIS[np.argmax(breathy)] == 45
    assert pitch_evidence.likelihood(None, MIDIS, 46) is None
    assert pitch_evidence.likelihood(period(45), MIDIS, cnn_top_midi=100) is None  # above what YIN sees


def test_a_measured_period_the_waveform_does_not_repeat_at_is_not_believed():
    """YIN read a cello D#2 stopped after 0.3 s as E3 (aperiodicity 0.61), 13 semitones up, where it repeats at 0.12."""
    heard = repeats(harmonics(39, range(1, 8)))
    assert pitch_evidence.likelihood(period(52.3, aperiodicity=0.61), MIDIS, 39, heard) is None
    own = pitch_evidence.likelihood(period(39, aperiodicity=0.61), MIDIS, 52, heard)
    assert own is not None and MIDIS[np.argmax(own)] == 39
    assert pitch_evidence.likelihood(period(52.3, aperiodicity=0.61), MIDIS, 39) is not None  # nothing to read it on


def test_combining_keeps_an_agreeing_answer_and_corrects_a_disagreeing_one_only_with_support():
    cnn = np.full(len(MIDIS), 1e-4)
    cnn[MIDIS == 57] = 0.6  # an octave above the measured 45
    cnn[MIDIS == 45] = 0.2
    cnn /= cnn.sum()
    fixed = pitch_evidence.combine(cnn, pitch_evidence.likelihood(period(45), MIDIS, 57))
    assert MIDIS[np.argmax(fixed)] == 45 and fixed.sum() == pytest.approx(1.0)
    agreeing = pitch_evidence.combine(cnn, pitch_evidence.likelihood(period(57), MIDIS, 57))
    assert MIDIS[np.argmax(agreeing)] == 57 and agreeing.max() > cnn.max()
    sure = np.full(len(MIDIS), 1e-7)
    sure[MIDIS == 57] = 1.0
    assert MIDIS[np.argmax(pitch_evidence.combine(sure, pitch_evidence.likelihood(period(45), MIDIS, 57)))] == 57
    assert pitch_evidence.combine(cnn, None) is cnn


def test_a_short_note_weighs_the_cnn_by_how_much_of_its_window_it_fills():
    smeared = np.full(len(MIDIS), 1e-6)
    smeared[MIDIS == 29] = 0.98  # 80 ms of MIDI 30: the spectrum cannot tell the semitone
    smeared[MIDIS == 30] = 1e-5
    smeared /= smeared.sum()
    measured = pitch_evidence.likelihood(period(30.15, aperiodicity=0.15), MIDIS, 29)
    assert pitch_evidence.window_fill(0.08, 1.0) == pytest.approx(0.08)
    assert pitch_evidence.window_fill(3.0, 1.0) == 1.0
    short = pitch_evidence.combine(smeared, measured, pitch_evidence.window_fill(0.08, 1.0))
    assert MIDIS[np.argmax(short)] == 30
    assert MIDIS[np.argmax(pitch_evidence.combine(smeared, measured, 1.0))] == 29  # a whole window: the CNN holds


def test_a_clean_short_note_the_period_names_is_shown_sure():
    """80 ms: the CNN's probabilities count for little (raised to 0.08); the period's likelihood says how sure."""
    unsure = np.full(len(MIDIS), 1.0 / len(MIDIS))
    unsure[MIDIS == 60] *= 3
    unsure /= unsure.sum()
    shown = pitch_evidence.combine(unsure, pitch_evidence.likelihood(period(60.1), MIDIS, 60), 0.08)
    assert MIDIS[np.argmax(shown)] == 60 and shown.max() >= 0.95  # the sure floor: not "not sure" when clean


def test_the_predictor_checks_a_short_note_against_its_period(predictor, monkeypatch):
    """An unsure CNN answer an octave below a 0.2-s note's period is corrected by the period (the repeat check
    switched off, as it would catch it first); a long note's sure one is not checked against the period, but
    gives way all the same: nothing sounds at its fundamental or its third harmonic (`subharmonic_note`)."""
    from instropitch.audio import periodicity
    from instropitch.ml.calibration import Calibration

    model = predictor.pitch_model
    monkeypatch.setattr(model, "calibration", Calibration(threshold=0.3))  # raw = shown
    classes = [int(v) for v in model.class_values]
    true, wrong = 64, 52

    def leaning_wrong(x):
        p = np.full((len(x), len(classes)), 0.01)
        p[:, classes.index(wrong)] = 0.6
        p[:, classes.index(true)] = 0.3
        return p / p.sum(axis=1, keepdims=True)

    monkeypatch.setattr(model, "proba", leaning_wrong)
    asked: list[int] = []
    estimate = periodicity.estimate
    monkeypatch.setattr(periodicity, "estimate", lambda y, sr: asked.append(len(y)) or estimate(y, sr))
    with monkeypatch.context() as no_repeat:
        no_repeat.setattr(pitch_evidence, "repeated_note", lambda *args: None)
        short = predictor.predict_file(wav_bytes(tone("Fl", true, seconds=0.2, seed=5)), name="short.wav", top_k=0)
    assert short.ok and short.midi == true and short.pitch_confidence > short.pitch_confidence_raw
    assert short.pitch_period_hz == pytest.approx(329.6, rel=0.01)  # E4, as the JSON says
    assert len(asked) == 1
    long_sure = predictor.predict_file(wav_bytes(tone("Fl", true, seconds=1.5, seed=5)), name="long.wav", top_k=0)
    assert len(asked) == 1  # the period was not asked
    assert long_sure.midi == true and long_sure.pitch_confidence_raw == pytest.approx(
        0.3 / (0.9 + 0.01 * (len(classes) - 2)), abs=1e-3
    )


def partials(midi: float, parts: dict[int, float], seconds: float = 1.0, sr: int = 22050) -> np.ndarray:
    """A note with the given amplitude for each harmonic number (those under Nyquist)."""
    f0 = 440.0 * 2 ** ((midi - 69) / 12)
    t = np.arange(int(seconds * sr)) / sr
    return sum(a * np.sin(2 * np.pi * k * f0 * t + k) for k, a in parts.items() if k * f0 < sr / 2)


def harmonics(midi: float, parts: range | tuple, seconds: float = 1.0, sr: int = 22050) -> np.ndarray:
    """A note with the given harmonics at equal amplitude."""
    return partials(midi, dict.fromkeys(parts, 1.0), seconds, sr)


def repeats(y: np.ndarray):
    from instropitch.audio import periodicity

    return periodicity.repeats(y, 22050)


@pytest.mark.parametrize("midi", [40, 58, 70, 83, 93, 94])
def test_a_sure_answer_the_waveform_does_not_repeat_at_gives_way_to_the_note_it_does(midi):
    """A missing fundamental read an octave or two up, or a fifth off (the CNN's misses in bench_tones)."""
    heard = repeats(harmonics(midi, range(2, 9)))
    for cnn_answer in (midi + 12, midi + 24, midi - 7):
        if cnn_answer <= MIDIS.max():
            assert pitch_evidence.repeated_note(heard, MIDIS, cnn_answer) == midi, cnn_answer


def test_an_answer_the_waveform_repeats_at_is_left_alone_where_its_note_sounds():
    """Right answers are not touched, whatever the partials; nor is a note whose 2nd partial is its strongest
    (a bassoon: it repeats after half its period as well as after its period)."""
    for midi, parts in [(45, (1,)), (64, range(1, 12)), (76, range(1, 20, 2)), (70, range(2, 9))]:
        heard = repeats(harmonics(midi, parts))
        assert pitch_evidence.repeated_note(heard, MIDIS, midi) is None
    bassoon = repeats(partials(52, {1: 0.3, 2: 1.0, 3: 0.5, 4: 0.6, 5: 0.2}))
    assert bassoon.at([1.0 / bassoon.strongest_hz])[0] > pitch_evidence.REPEAT_MISSED
    assert pitch_evidence.repeated_note(bassoon, MIDIS, 52) is None


def test_a_pure_tone_answered_an_octave_or_a_twelfth_down_gives_way_to_its_note():
    """A sine repeats after two or three of its periods, but the answer an octave or a twelfth down is silent at its
    fundamental and at its harmonics between the sine's (the demo's CNN answered A#1 for a pure F3)."""
    heard = repeats(harmonics(53, (1,)))
    for cnn_answer in (53 - 12, 53 - 19, 53 - 24):
        assert pitch_evidence.repeated_note(heard, MIDIS, cnn_answer) == 53, cnn_answer
    assert pitch_evidence.repeated_note(heard, MIDIS, 53) is None


def db(levels: list[float]) -> dict[int, float]:
    """Harmonic amplitudes 1, 2, ... from their levels in dB."""
    return {k: 10 ** (level / 20) for k, level in enumerate(levels, start=1)}


LOW_STRING = db([-25.7, -1.6, -18.8, 0.0, -34.7, -15.9])
"""MS Lite's contrabass F#1, its first six harmonics: the 2nd and 4th loudest (read F#2, sure, by CNN and product)."""


def test_a_low_string_read_an_octave_up_gives_way_to_its_note():
    """The octave's period repeats too, but its answer cannot sound 1.5 times its fundamental: the lower note does."""
    heard = repeats(partials(30, LOW_STRING))
    assert pitch_evidence.repeats_at(heard, 42)
    assert pitch_evidence.octave_below_note(heard, MIDIS, 42) == 30
    softer = repeats(partials(30, db([-21.6, 0.0, -26.1, -19.5, -30.8, -18.9])))  # the same font, TinySoundFont's
    assert pitch_evidence.octave_below_note(softer, MIDIS, 42) == 30
    quiet_third = repeats(partials(30, db([-21.6, 0.0, -30.0, -19.5, -30.8, -18.9])))  # a trombone's -29.8 dB at most
    assert pitch_evidence.octave_below_note(quiet_third, MIDIS, 42) is None
    assert pitch_evidence.repeated_note(heard, MIDIS, 42) is None  # it repeats at the answer's period
    check = pitch_evidence.octave_below_check(heard, MIDIS, 42)
    assert check is not None and check.cnn_weight == 0.0 and MIDIS[np.argmax(check.likelihood)] == 30
    assert pitch_evidence.octave_below_check(heard, MIDIS, 30) is None
    g1 = repeats(partials(31, LOW_STRING))  # at G1 a 50-Hz hum's 3rd harmonic would sound there as well
    assert pitch_evidence.octave_below_note(g1, MIDIS, 43) == 31
    assert pitch_evidence.octave_below_note(g1, MIDIS, 43, hum_hz=50.0) is None
    assert pitch_evidence.octave_below_note(g1, MIDIS, 43, hum_hz=60.0) == 31
    measured = pitch_evidence.octave_checked(heard, MIDIS, period(42))
    assert measured is not None and measured.midi == pytest.approx(30)
    assert pitch_evidence.octave_checked(heard, MIDIS, period(30)) == period(30)
    assert pitch_evidence.octave_checked(heard, MIDIS, None) is None


def test_the_predictor_names_a_low_string_whose_period_reads_an_octave_up(predictor, monkeypatch):
    """TimGM6mb's contrabass F2: the CNN was right but unsure, YIN read F3 (its loud 2nd harmonic) and the product
    showed F3, sure. The period is doubled where the lower note's 3rd harmonic sounds (`octave_checked`)."""
    from instropitch.audio import periodicity
    from instropitch.ml.calibration import Calibration

    model = predictor.pitch_model
    monkeypatch.setattr(model, "calibration", Calibration(threshold=0.5))
    classes = [int(v) for v in model.class_values]
    true = 41

    def unsure_of_f2(x):
        p = np.full((len(x), len(classes)), 0.001)
        p[:, classes.index(true)], p[:, classes.index(true + 12)] = 0.45, 0.4
        return p / p.sum(axis=1, keepdims=True)

    monkeypatch.setattr(model, "proba", unsure_of_f2)
    y = partials(true, db([-19.5, -2.2, -19.6, 0.0, -20.4, -7.6]), seconds=1.5)
    assert periodicity.estimate(y, 22050).midi == pytest.approx(true + 12, abs=0.1)  # YIN's octave
    result = predictor.predict_file(wav_bytes((0.3 * y / np.abs(y).max()).astype(np.float32)), name="cb.wav", top_k=0)
    assert result.ok and result.midi == true and result.pitch_period_hz == pytest.approx(87.3, rel=0.01)


def test_a_plateau_at_one_and_a_half_times_the_answer_is_no_harmonic_of_the_note_below():
    """A real contrabass E2 with an echo read -20.6 dB there, but its bow noise as loud half a harmonic either side
    (1.25 and 1.75 times the answer): a plateau, not E1's 3rd harmonic. The same sound over the low string's own."""
    lower_hz = 440.0 * 2 ** ((30 - 69) / 12)
    t = np.arange(22050) / 22050

    def with_sides(amplitude: float):
        sides = sum(amplitude * np.sin(2 * np.pi * k * lower_hz * t + k) for k in (2.5, 3.5))
        return repeats(partials(30, LOW_STRING) + sides)

    plateau = with_sides(0.115)  # as loud as the 3rd harmonic (-18.8 dB)
    assert plateau.at([1 / lower_hz])[0] >= plateau.at([0.5 / lower_hz])[0]  # it repeats as well an octave down
    assert plateau.level_db(3 * lower_hz, pitch_evidence.HARMONIC_TOLERANCE) >= pitch_evidence.OCTAVE_BELOW_DB
    assert pitch_evidence.octave_below_note(plateau, MIDIS, 42) is None
    assert pitch_evidence.octave_below_note(with_sides(0.05), MIDIS, 42) == 30  # 6.5 dB under it: a peak


@pytest.mark.parametrize(
    "parts",
    [(1,), range(1, 12), range(1, 20, 2), range(2, 9), {1: 0.3, 2: 1.0, 3: 0.5, 4: 0.6, 5: 0.2}],
    ids=["sine", "sawtooth", "square", "missing fundamental", "bassoon"],
)
def test_a_note_answered_right_is_not_moved_an_octave_down_whatever_its_timbre(parts):
    """No harmonic of a note lies at 1.5 or 2.5 times its fundamental."""
    for midi in (28, 40, 57, 69, 84):
        y = partials(midi, parts) if isinstance(parts, dict) else harmonics(midi, parts)
        assert pitch_evidence.octave_below_note(repeats(y), MIDIS, midi) is None, midi


def test_a_fifth_answered_at_its_lower_note_moves_to_the_period_the_two_share_and_is_named_a_fifth():
    """C4 + a softer G4 repeats at C4's period (0.87), but sounds 1.5 times C4: the answer moves to C3, which
    `fifth_period` names as a fifth's."""
    fifth = repeats(chord([60]) + 0.3 * chord([67]))
    assert pitch_evidence.repeats_at(fifth, 60)
    assert pitch_evidence.octave_below_note(fifth, MIDIS, 60) == 48
    assert pitch_evidence.fifth_period(fifth, 48)
    assert pitch_evidence.octave_below_note(None, MIDIS, 60) is None
    assert pitch_evidence.octave_below_note(repeats(partials(30, LOW_STRING)), MIDIS, 30) is None  # A0 is no class


def test_a_slow_waveform_does_not_repeat_at_a_short_lag_it_never_dipped_before():
    """A 52 Hz sine is near 1 at B7's tiny period (it has hardly moved): that answer gives way to its note."""
    heard = repeats(harmonics(32, (1,)))
    assert heard.at([1.0 / (440.0 * 2 ** ((107 - 69) / 12))])[0] > 0.99
    assert pitch_evidence.repeated_note(heard, MIDIS, 107) == 32
    assert pitch_evidence.repeated_note(heard, MIDIS, 32) is None


def test_noise_and_a_low_rumble_name_no_note():
    rng = np.random.default_rng(4)
    white = rng.standard_normal(22050)
    rumble = np.convolve(white, np.ones(200) / 200, mode="same")  # under ~100 Hz: "repeats" at every short lag
    for y in (white, rumble):
        assert pitch_evidence.repeated_note(repeats(y), MIDIS, 60) is None
    assert pitch_evidence.repeated_note(None, MIDIS, 60) is None


def test_the_predictor_replaces_a_sure_answer_the_waveform_does_not_repeat_at(predictor, monkeypatch):
    """A 1.5-s missing-fundamental note the CNN is sure is an octave up: the repeat check names it."""
    from instropitch.ml.calibration import Calibration

    model = predictor.pitch_model
    monkeypatch.setattr(model, "calibration", Calibration(threshold=0.5))
    classes = [int(v) for v in model.class_values]
    true = 70

    def sure_octave_up(x):
        p = np.full((len(x), len(classes)), 1e-6)
        p[:, classes.index(true + 12)] = 1.0
        return p / p.sum(axis=1, keepdims=True)

    monkeypatch.setattr(model, "proba", sure_octave_up)
    y = harmonics(true, range(2, 9), seconds=1.5)
    result = predictor.predict_file(wav_bytes((0.3 * y / np.abs(y).max()).astype(np.float32)), name="mf.wav", top_k=0)
    assert result.ok and result.midi == true and result.pitch_confidence_raw < 1e-3
    assert result.pitch_period_hz == pytest.approx(466.16, rel=0.001)


def chord(midis: list[int], seconds: float = 1.0) -> np.ndarray:
    """Notes sounding at once, each with harmonics 1-6 falling off as 1/k."""
    return sum(partials(m, {k: 1.0 / k for k in range(1, 7)}, seconds) for m in midis)


def test_a_period_silent_at_its_fundamental_and_octave_is_shared_by_several_notes_not_a_note():
    triad = repeats(chord([60, 64, 67]))  # just intonation: C4, E4, G4 are C2's 4th, 5th and 6th harmonics
    assert pitch_evidence.shared_period(triad, 36, 60)
    assert pitch_evidence.shared_period(repeats(chord([60, 65])), 41, 60)  # a fourth: F2's 3rd and 4th
    missing = repeats(harmonics(46, range(2, 9)))  # its octave sounds: a note
    assert not pitch_evidence.shared_period(missing, 46, 58)
    bass = repeats(partials(33, {3: 1.0, 4: 0.8, 5: 0.6}))  # silent fundamental and octave, answered there
    assert not pitch_evidence.shared_period(bass, 33, 33)
    assert pitch_evidence.shared_period(triad, 36, 36)  # answered at the period itself: its 3rd is silent too
    assert not pitch_evidence.shared_period(None, 36, 60)
    # a pure E6 30 cents sharp "repeats" at 2.875 of its periods, A#4's: no note sounds at a harmonic of A#4
    sine = repeats(partials(88.3, {1: 1.0}, seconds=1.5))
    assert float(sine.at([1 / 466.16])[0]) > pitch_evidence.REPEAT_MISSED
    assert not pitch_evidence.shared_period(sine, 70, 70)
    check = pitch_evidence.shared_check(65.4, MIDIS)
    cnn = np.linspace(1, 2, len(MIDIS)) / np.linspace(1, 2, len(MIDIS)).sum()
    assert check.shared and np.allclose(pitch_evidence.combine(cnn, check.likelihood, check.cnn_weight), cnn)


def test_the_predictor_says_a_chord_holds_several_notes_and_is_not_sure_of_its_pitch(predictor, monkeypatch):
    """A C major triad the CNN answers C4 with: without the check the period C2 they share would be shown sure."""
    from instropitch.ml.calibration import Calibration

    model = predictor.pitch_model
    monkeypatch.setattr(model, "calibration", Calibration(threshold=0.5))
    classes = [int(v) for v in model.class_values]

    def sure_of_c4(x):
        p = np.full((len(x), len(classes)), 1e-4)
        p[:, classes.index(60)] = 1.0
        return p / p.sum(axis=1, keepdims=True)

    monkeypatch.setattr(model, "proba", sure_of_c4)
    y = chord([60, 64, 67], seconds=1.5)
    result = predictor.predict_file(wav_bytes((0.3 * y / np.abs(y).max()).astype(np.float32)), name="c.wav", top_k=0)
    assert result.ok and result.midi == 60 and not result.pitch_sure
    assert result.pitch_period_hz == pytest.approx(65.41, rel=0.01)
    assert [w for w in result.warnings if w.startswith("several notes at once")]
    with monkeypatch.context() as before:
        before.setattr(pitch_evidence, "shared_period", lambda *args: False)
        unchecked = predictor.predict_file(wav_bytes((0.3 * y / np.abs(y).max()).astype(np.float32)), top_k=0)
    assert unchecked.midi == 36 and unchecked.pitch_sure  # C2, sure: what the check is for

    def sure_of_c2(x):  # the CNN answers the period itself: the waveform repeats there
        p = np.full((len(x), len(classes)), 1e-4)
        p[:, classes.index(36)] = 1.0
        return p / p.sum(axis=1, keepdims=True)

    monkeypatch.setattr(model, "proba", sure_of_c2)
    at_period = predictor.predict_file(wav_bytes((0.3 * y / np.abs(y).max()).astype(np.float32)), top_k=0)
    assert at_period.midi == 36 and not at_period.pitch_sure
    assert [w for w in at_period.warnings if w.startswith("several notes at once (a chord?)")]


def test_a_period_silent_at_its_fundamental_5th_and_7th_harmonics_is_two_notes_a_fifth_apart():
    fifth = repeats(chord([60, 67]))  # C4 + G4: C3's 2nd and 3rd harmonics (to 0.1 %) and their multiples
    assert pitch_evidence.fifth_period(fifth, 48)
    assert not pitch_evidence.fifth_period(fifth, 60) and not pitch_evidence.fifth_period(fifth, 36)
    missing = repeats(harmonics(48, range(2, 9)))  # a C3 with no fundamental sounds its 5th and 7th: a note
    assert not pitch_evidence.fifth_period(missing, 48)
    bright = repeats(partials(48, {2: 1.0, 3: 0.8, 4: 0.5, 5: 0.03, 6: 0.3}))  # its 5th at -30 dB: sounds
    assert not pitch_evidence.fifth_period(bright, 48)
    assert not pitch_evidence.fifth_period(repeats(harmonics(48, (2,))), 48)  # its octave alone: no 3rd
    assert not pitch_evidence.fifth_period(fifth, 100)  # its 7th above Nyquist: undecided
    assert not pitch_evidence.fifth_period(None, 48)
    check = pitch_evidence.shared_evidence(fifth, 130.81, 48, MIDIS)
    assert check.shared and check.fifth and np.all(check.likelihood == 1.0)  # the CNN's answer stands
    triad = pitch_evidence.shared_evidence(repeats(chord([60, 64, 67])), 65.41, 60, MIDIS)
    assert triad.shared and not triad.fifth
    assert pitch_evidence.shared_evidence(missing, 130.81, 48, MIDIS) is None


def test_the_predictor_says_a_fifth_holds_two_notes_and_is_not_sure_of_its_pitch(predictor, monkeypatch):
    """C4 + G4 the CNN answers C3 (as a missing-fundamental tone): the waveform repeats there, so only the silent
    5th and 7th harmonics tell the fifth from a note. Answered C4, the waveform does not repeat there: C3 found."""
    from instropitch.ml.calibration import Calibration

    model = predictor.pitch_model
    monkeypatch.setattr(model, "calibration", Calibration(threshold=0.5))
    classes = [int(v) for v in model.class_values]

    def sure_of(midi):
        def proba(x):
            p = np.full((len(x), len(classes)), 1e-4)
            p[:, classes.index(midi)] = 1.0
            return p / p.sum(axis=1, keepdims=True)

        return proba

    y = chord([60, 67], seconds=1.5)
    wav = wav_bytes((0.3 * y / np.abs(y).max()).astype(np.float32))
    for answered in (48, 60):  # the shared period, and the lower note (where the waveform does not repeat)
        monkeypatch.setattr(model, "proba", sure_of(answered))
        result = predictor.predict_file(wav, name="fifth.wav", top_k=0)
        assert result.ok and result.midi == answered and not result.pitch_sure
        assert result.not_sure_because["pitch"] == "several notes at once"
        assert result.pitch_period_hz == pytest.approx(130.81, rel=0.01)
        said = [w for w in result.warnings if w.startswith("several notes at once (a fifth, C4 and G4?)")]
        assert said and "5th and 7th harmonics" in said[0], result.warnings
    monkeypatch.setattr(model, "proba", sure_of(48))
    with monkeypatch.context() as before:
        before.setattr(pitch_evidence, "fifth_period", lambda *args: False)
        unchecked = predictor.predict_file(wav, top_k=0)
    assert unchecked.midi == 48 and unchecked.pitch_sure  # C3, sure: what the check is for


def test_a_clean_tone_a_semitone_off_the_answer_takes_its_place_a_detuned_one_does_not():
    """Pure tones repeat exactly at their own period and clearly worse a semitone away; the CNN slips there."""
    for midi in (29, 52, 88):
        heard = repeats(harmonics(midi, (1,)))
        assert pitch_evidence.repeated_note(heard, MIDIS, midi - 1) == midi
        assert pitch_evidence.repeated_note(heard, MIDIS, midi + 1) == midi
        assert pitch_evidence.repeated_note(heard, MIDIS, midi) is None
    detuned = repeats(harmonics(64.3, range(1, 8)))  # 30 cents sharp: still nearest to 64
    assert pitch_evidence.repeated_note(detuned, MIDIS, 64) is None
    check = pitch_evidence.repeat_check(repeats(harmonics(52, (1,))), MIDIS, 51)
    assert MIDIS[np.argmax(check.likelihood)] == 52 and check.cnn_weight == 0.0
    assert check.f0_hz == pytest.approx(164.81, rel=1e-4)


def naive_wave(midi: float, shape: str, seconds: float = 1.0, sr: int = 22050) -> np.ndarray:
    """A tone generator's square or sawtooth, not band-limited: its harmonics above Nyquist fold back."""
    phase = (440.0 * 2 ** ((midi - 69) / 12) * np.arange(int(seconds * sr)) / sr) % 1.0
    return np.where(phase < 0.5, 1.0, -1.0) if shape == "square" else 2.0 * phase - 1.0


@pytest.mark.parametrize("midi, shape", [(93, "square"), (98, "square"), (100, "sawtooth"), (105, "sawtooth")])
def test_an_answer_under_an_aliased_tone_that_is_silent_at_its_note_gives_way_to_the_strongest_partial(midi, shape):
    """The waveform repeats at two or three of its periods, but nothing sounds at the answer's fundamental."""
    heard = repeats(naive_wave(midi, shape))
    for cnn_answer in (midi - 12, midi - 19, midi - 24):
        assert pitch_evidence.repeated_note(heard, MIDIS, cnn_answer) == midi, cnn_answer
    assert pitch_evidence.repeated_note(heard, MIDIS, midi) is None


@pytest.mark.parametrize("midi", [38, 88])
def test_a_silent_fundamental_under_a_strong_partial_is_a_subharmonic_only_when_the_harmonics_between_are_silent(
    midi,
):
    """A bass note's fundamental can sit 45 dB under its 2nd partial, and a room can notch a clarinet E6's (it read
    -45 dB in a simulated room): their 3rd harmonic still sounds, which no subharmonic of the 2nd partial has.
    Without the odd harmonics, in any register, the answer is the partial's subharmonic. A missing fundamental
    is left alone: no single partial's period repeats."""
    notched = {1: 10 ** (-45 / 20), 2: 1.0, 3: 0.22, 4: 0.3, 5: 0.1}
    heard = repeats(partials(midi, notched))
    assert heard.level_db(440.0 * 2 ** ((midi - 69) / 12)) < pitch_evidence.SUBHARMONIC_DB
    assert heard.at([1.0 / heard.strongest_hz])[0] > pitch_evidence.REPEAT_MISSED
    assert pitch_evidence.repeated_note(heard, MIDIS, midi) is None
    assert pitch_evidence.subharmonic_note(heard, MIDIS, midi) is None
    even_only = {k: a for k, a in notched.items() if k % 2 == 0 or k == 1}
    assert pitch_evidence.repeated_note(repeats(partials(midi, even_only)), MIDIS, midi) == midi + 12
    quiet_odd = {**notched, 3: 10 ** (-30 / 20), 5: 10 ** (-30 / 20)}  # under SOUNDING_HARMONIC_DB: silent
    assert pitch_evidence.repeated_note(repeats(partials(midi, quiet_odd)), MIDIS, midi) == midi + 12
    for missing in (midi, 82, 90, 94):
        assert pitch_evidence.repeated_note(repeats(harmonics(missing, range(2, 9))), MIDIS, missing) is None


def test_far_above_its_subharmonic_a_partial_counts_only_above_the_period_estimates_reach():
    """Five or more times under the strongest partial the harmonics between are not read (an aliased wave's
    fold-backs land near them): there only a partial above FMAX_HZ over a silent fundamental decides."""
    high = repeats(partials(100, {1: 1.0, 2: 0.3}))  # E7 (2.6 kHz): C5 (m = 5) is its silent subharmonic
    assert pitch_evidence.subharmonic_note(high, MIDIS, 72) == 100
    low = repeats(partials(76, {1: 1.0, 2: 0.3}))  # E5 (659 Hz) under FMAX_HZ: C3 stays for the other checks
    assert pitch_evidence.subharmonic_note(low, MIDIS, 48) is None


def test_a_measured_period_that_is_a_silent_subharmonic_gives_way_to_the_strongest_partial():
    """YIN reads several periods of an aliased high square as one (A#4 under an F#7 square): the partial decides."""
    heard = repeats(naive_wave(102, "square"))
    check = pitch_evidence.subharmonic_check(heard, MIDIS, period(102 - 28), 78)
    assert MIDIS[np.argmax(check.likelihood)] == 102 and check.cnn_weight == 0.0
    assert pitch_evidence.subharmonic_check(heard, MIDIS, period(102 - 28), 102) is None  # agrees: the CNN stands
    assert pitch_evidence.subharmonic_check(heard, MIDIS, period(102), 78) is None
    assert pitch_evidence.subharmonic_check(heard, MIDIS, None, 78) is None
    assert pitch_evidence.subharmonic_check(None, MIDIS, period(74), 78) is None


def test_a_neighbour_the_waveform_repeats_at_exactly_is_not_taken_when_it_is_a_silent_subharmonic():
    """A pure F#6 10 cents sharp repeats at B4's period (three of its own) within 0.5 %, and a CNN's C5 next to it
    does not: the neighbour B4 is silent under the sine, a twelfth down, so the sine's own note is taken."""
    heard = repeats(harmonics(90.1, (1,)))
    assert heard.at([1.0 / (440.0 * 2 ** ((71 - 69) / 12))])[0] >= pitch_evidence.REPEAT_EXACT
    assert pitch_evidence.repeated_note(heard, MIDIS, 72) == 90
    assert pitch_evidence.repeated_note(heard, MIDIS, 90) is None
    assert pitch_evidence.repeated_note(repeats(harmonics(52, (1,))), MIDIS, 51) == 52  # a sounding neighbour stays


def test_a_note_named_more_than_half_a_semitone_off_is_named_the_nearer_note():
    """A note's name is the nearest note's: 60 cents above A4 is A#4 40 cents flat, decided by the period alone."""
    check = pitch_evidence.nearest_check(60.0, 69.0, MIDIS)
    assert MIDIS[np.argmax(check.likelihood)] == 70 and check.cnn_weight == 0.0
    assert check.f0_hz == pytest.approx(440.0 * 2**0.05)
    assert MIDIS[np.argmax(pitch_evidence.nearest_check(-50.5, 69.0, MIDIS).likelihood)] == 68
    for cents in (None, 0.0, 49.9, 50.0, -50.0):
        assert pitch_evidence.nearest_check(cents, 69.0, MIDIS) is None, cents
    assert pitch_evidence.nearest_check(60.0, float(MIDIS.max()), MIDIS) is None  # no class above the top one


def test_a_fold_back_near_a_subharmonics_fundamental_does_not_sound_it():
    """A tone generator's sawtooth 30 cents under F#7 at 44.1 kHz (read at 22.05 kHz, as the predictor does) folds a
    harmonic back 1-3 % from F#6's fundamental, -33 dB under the tone: a note's fundamental would sit at its partial's
    half exactly, and nothing sounds there, so F#6 is a silent subharmonic still."""
    from instropitch.audio.wav import resample

    heard = repeats(resample(naive_wave(101.7, "sawtooth", sr=44100), 44100, 22050))
    assert heard.level_db(440.0 * 2 ** ((90 - 69) / 12)) > pitch_evidence.SUBHARMONIC_DB  # within 3 %: the fold-back
    assert pitch_evidence.repeated_note(heard, MIDIS, 90) == 102
    assert pitch_evidence.repeated_note(heard, MIDIS, 102) is None


def test_a_waveform_that_repeats_at_no_notes_period_holds_no_one_steady_note():
    """An equal-tempered minor triad repeats at none of its notes' periods nor at any shared one (its notes share
    none); a note repeats at its own, a missing fundamental's too."""
    triad = sum(harmonics(m, range(1, 6)) for m in (57, 60, 64))
    heard = repeats(triad)
    for answer in (57, 60, 64):
        assert pitch_evidence.unrepeated(heard, MIDIS, answer), answer
    assert not pitch_evidence.unrepeated(repeats(harmonics(57, range(1, 6))), MIDIS, 57)
    assert not pitch_evidence.unrepeated(repeats(harmonics(57, range(2, 9))), MIDIS, 57)
    assert not pitch_evidence.unrepeated(None, MIDIS, 57)
    check = pitch_evidence.unrepeated_check(MIDIS)
    assert check.unrepeated and not check.shared and check.f0_hz is None and check.cnn_weight == 1.0
    assert np.all(check.likelihood == 1.0)  # it says nothing of which note: the CNN's probabilities stand
