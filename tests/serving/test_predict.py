"""Prediction: the Predictor on registry champions and exports, batching, bad files, the CLI.

The models are real: `train_and_log` trains tiny CNNs on spectrograms of synthesized WAVs
(three instruments with distinct harmonic recipes, six pitches) and registers them in a
sqlite MLflow store, the champions get the alias: the session fixtures `trained_store` and
`predictor` of tests/conftest.py (`support.models.build_trained_store`), shared with the other
serving tests.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from support.tones import SR, tone, wav_bytes

from instropitch import audio


@pytest.fixture
def tracking(trained_store, monkeypatch) -> str:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained_store.uri)
    monkeypatch.delenv("INSTROPITCH_EXPORT_DIR", raising=False)
    return trained_store.uri


def write_batch(folder: Path) -> dict[str, tuple[str, int] | None]:
    """Good notes in several encodings plus a corrupt file and silence; name -> (abbr, midi) or None."""
    folder.mkdir(parents=True, exist_ok=True)
    expected: dict[str, tuple[str, int] | None] = {}
    audio.write_wav(folder / "violin-A4.wav", tone("Vn", 69, amp=0.6, seed=901), SR)
    expected["violin-A4.wav"] = ("Vn", 69)
    audio.write_wav(folder / "flute-E4.wav", tone("Fl", 64, amp=0.4, seed=902), SR)
    expected["flute-E4.wav"] = ("Fl", 64)
    stereo = np.stack([tone("ClBb", 67, amp=0.5, seed=903), tone("ClBb", 67, amp=0.45, seed=903)], axis=1)
    audio.write_wav(folder / "clarinet-G4-stereo24.wav", stereo, SR, bits=24)
    expected["clarinet-G4-stereo24.wav"] = ("ClBb", 67)
    audio.write_wav(folder / "violin-C4-48k.wav", tone("Vn", 60, amp=0.5, seed=904, sr=48000), 48000)
    expected["violin-C4-48k.wav"] = ("Vn", 60)
    (folder / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00")
    expected["corrupt.wav"] = None
    audio.write_wav(folder / "silence.wav", np.zeros(SR, np.float32), SR)
    expected["silence.wav"] = None
    return expected


# -------------------------------------------------------------------- predictor


def test_predict_file_gives_the_documented_json(predictor, trained_store):
    from instropitch.serving.results import Prediction

    result = predictor.predict_file(wav_bytes(tone("Vn", 69, amp=0.5, seed=77)), name="my-note.wav", top_k=3)
    assert isinstance(result, Prediction) and result.ok
    d = result.to_dict()
    assert list(d) == [
        "file",
        "instrument",
        "instrument_abbr",
        "instrument_confidence",
        "note",
        "octave",
        "pitch",
        "midi",
        "pitch_confidence",
        "instrument_sure",
        "pitch_sure",
        "instrument_family",
        "instrument_family_confidence",
        "instrument_family_sure",
        "instrument_confidence_raw",
        "pitch_confidence_raw",
        "instrument_foreignness",
        "pitch_period_hz",
        "pitch_cents",
        "candidates",
        "candidates_level",
        "not_sure_because",
        "top_k",
        "warnings",
    ]
    assert d["warnings"] == [] and d["not_sure_because"] == {}
    assert d["file"] == "my-note.wav"
    assert (d["instrument"], d["instrument_abbr"]) == ("Violin", "Vn")
    assert (d["note"], d["octave"], d["pitch"], d["midi"]) == ("A", 4, "A4", 69)
    assert abs(d["pitch_cents"]) < 10  # the tone is at 440 Hz, give or take its draw
    assert 0.5 < d["instrument_confidence"] <= 1 and 0.5 < d["pitch_confidence"] <= 1
    assert len(d["top_k"]["instrument"]) == 3 and len(d["top_k"]["pitch"]) == 3
    assert d["top_k"]["instrument"][0] == {
        "instrument": "Violin",
        "instrument_abbr": "Vn",
        "confidence": d["instrument_confidence"],
    }
    assert d["top_k"]["pitch"][0] == {
        "pitch": "A4",
        "note": "A",
        "octave": 4,
        "midi": 69,
        "confidence": d["pitch_confidence"],
    }
    confidences = [e["confidence"] for e in d["top_k"]["pitch"]]
    assert confidences == sorted(confidences, reverse=True)
    json.dumps(d)  # plain JSON types only

    described = predictor.describe()
    assert described["source"] == "registry"
    for role in ("pitch", "instrument"):
        info = described["models"][role]
        assert info["version"] == trained_store.versions[role] and info["alias"] == "champion"
        assert info["test_accuracy"] == pytest.approx(trained_store.accuracies[role], abs=1e-6)
        assert info["feature_preset"] == "default"


def test_a_confidence_under_the_threshold_is_not_sure_with_candidates(predictor, monkeypatch, capsys):
    from instropitch import cli
    from instropitch.ml.calibration import Calibration

    note = wav_bytes(tone("Vn", 69, amp=0.5, seed=77))
    for model in (predictor.pitch_model, predictor.instrument_model):  # as versions from before calibration
        monkeypatch.setattr(model, "calibration", Calibration())
    before = predictor.predict_file(note, name="n.wav", top_k=0)
    assert before.instrument_sure is True and before.candidates == {}
    assert before.instrument_confidence == before.instrument_confidence_raw
    softer = Calibration(temperature=4.0, threshold=0.99, fitted_on="heldout_sources")
    monkeypatch.setattr(predictor.instrument_model, "calibration", softer)
    r = predictor.predict_file(note, name="n.wav", top_k=0)
    assert r.instrument == before.instrument  # scaling never changes the answer, only how sure it looks
    assert r.instrument_confidence < r.instrument_confidence_raw == before.instrument_confidence_raw
    assert r.instrument_sure is False and r.pitch_sure is True
    candidates = r.candidates["instrument"]
    assert len(candidates) == 3 and candidates[0]["instrument"] == r.instrument
    assert candidates[0]["confidence"] == r.instrument_confidence and "pitch" not in r.candidates
    table = cli._prediction_table([r.to_dict()])
    assert "not sure: Violin" in table and " / " in table  # the CLI table names the candidates
    assert r.candidates_level == {}  # a calibration without a candidate floor: no promise made


def test_not_sure_lists_the_candidates_its_calibration_cannot_rule_out(predictor, monkeypatch):
    from instropitch import cli
    from instropitch.ml.calibration import Calibration

    note = wav_bytes(tone("Vn", 69, amp=0.5, seed=77))
    soft = {"temperature": 30.0, "threshold": 0.99, "fitted_on": "heldout_sources", "candidate_level": 0.9}
    monkeypatch.setattr(predictor.instrument_model, "calibration", Calibration(**soft, candidate_floor=0.01))
    wide = predictor.predict_file(note, name="n.wav", top_k=0)
    shown = [c["confidence"] for c in wide.candidates["instrument"]]
    assert len(shown) > 3 and min(shown) >= 0.01 and shown == sorted(shown, reverse=True)
    assert all(e["confidence"] < 0.01 for e in predictor.predict_file(note, top_k=14).top_k["instrument"][len(shown) :])
    assert wide.to_dict()["candidates_level"] == {"instrument": 0.9} and "pitch" not in wide.candidates_level
    assert "not sure, 90% one of: Violin" in cli._prediction_table([wide.to_dict()])
    monkeypatch.setattr(predictor.instrument_model, "calibration", Calibration(**soft, candidate_floor=0.99))
    narrow = predictor.predict_file(note, name="n.wav", top_k=0)  # only the answer reaches it: two still listed
    assert [c["instrument"] for c in narrow.candidates["instrument"]][0] == narrow.instrument
    assert len(narrow.candidates["instrument"]) == 2


def test_a_family_is_sure_when_its_instruments_together_reach_the_family_threshold(predictor, monkeypatch):
    from instropitch import cli
    from instropitch.ml.calibration import Calibration
    from instropitch.tinysol import INSTRUMENT_BY_ABBR

    note = wav_bytes(tone("Vn", 69, amp=0.5, seed=77))
    monkeypatch.setattr(predictor.pitch_model, "calibration", Calibration(threshold=1e-6))  # the family stands on it
    soft = {"temperature": 30.0, "threshold": 0.99, "fitted_on": "heldout_sources"}
    monkeypatch.setattr(predictor.instrument_model, "calibration", Calibration(**soft))  # before family thresholds
    r = predictor.predict_file(note, name="n.wav", top_k=14)
    by_family: dict[str, float] = {}
    for e in r.top_k["instrument"]:  # every class: the family's confidence is theirs summed
        family = INSTRUMENT_BY_ABBR[e["instrument_abbr"]].family
        by_family[family] = by_family.get(family, 0.0) + e["confidence"]
    best = max(by_family, key=by_family.get)
    assert r.instrument_family == best and r.instrument_family_confidence == pytest.approx(by_family[best], abs=2e-3)
    assert r.instrument_sure is False and r.instrument_family_sure is False  # no family threshold: never sure
    assert "sure;" not in cli._prediction_table([r.to_dict()])
    reachable = Calibration(**soft, family_threshold=r.instrument_family_confidence - 0.01)
    monkeypatch.setattr(predictor.instrument_model, "calibration", reachable)
    r = predictor.predict_file(note, name="n.wav", top_k=0)
    assert r.instrument_sure is False and r.instrument_family_sure is True
    assert f"{r.instrument_family} " in cli._prediction_table([r.to_dict()])  # "Strings 31%, sure; not sure: ..."
    assert ", sure; not sure" in cli._prediction_table([r.to_dict()])


def test_a_file_with_no_pitched_note_gets_no_sure_instrument_or_family_and_says_why(predictor, monkeypatch):
    """Noise the pitch model is unsure of and YIN finds no period in: an instrument answer that would be sure
    (and a family one) is not, with a warning; a clean tone the pitch model is as unsure of gets none."""
    from instropitch import cli
    from instropitch.ml.calibration import Calibration

    sure_of_all = Calibration(threshold=1e-6, family_threshold=1e-6, fitted_on="heldout_sources")
    monkeypatch.setattr(predictor.instrument_model, "calibration", sure_of_all)
    monkeypatch.setattr(predictor.pitch_model, "calibration", Calibration(threshold=1.0))  # the pitch: never sure
    noise = (0.3 * np.random.default_rng(3).standard_normal(int(1.5 * SR))).astype(np.float32)
    r = predictor.predict_file(wav_bytes(noise), name="noise.wav", top_k=0)
    assert r.ok and not (r.pitch_sure or r.instrument_sure or r.instrument_family_sure)
    assert len(r.warnings) == 1 and r.warnings[0].startswith("no pitched note: ")
    assert "aperiodicity 0.8" in r.warnings[0] or "aperiodicity 0.9" in r.warnings[0]
    assert "sure" not in cli._prediction_table([r.to_dict()]).replace("not sure", "")
    assert r.not_sure_because == {"pitch": "no pitched note", "instrument": "no pitched note"}
    assert "not sure: no pitched note (nearest: " in cli._prediction_table([r.to_dict()])
    tone_ = predictor.predict_file(wav_bytes(tone("Vn", 69, amp=0.5, seed=77)), name="a4.wav", top_k=0)
    assert not tone_.pitch_sure and tone_.warnings == [] and tone_.not_sure_because == {}
    # a sure pitch answer is not checked for a period, but the waveform repeats at none: "no steady period" instead
    monkeypatch.setattr(predictor.pitch_model, "calibration", Calibration(threshold=1e-6))
    r = predictor.predict_file(wav_bytes(noise), name="noise.wav", top_k=0)
    assert not (r.pitch_sure or r.instrument_sure) and len(r.warnings) == 1
    assert r.warnings[0].startswith("no steady period: ")
    assert r.not_sure_because == {"pitch": "no steady period", "instrument": "no steady period"}


def test_an_instrument_answer_read_relative_to_the_note_is_no_surer_than_the_pitch_answer(predictor, monkeypatch):
    """The instrument model reads the spectrum re-centred on the pitch answer (`instrument+harmonics`): when that
    answer is not sure, neither is the instrument or family answer built on it. A model that does not read the note
    keeps its own."""
    from instropitch import cli
    from instropitch.audio import inputs
    from instropitch.ml.calibration import Calibration

    sure_of_all = Calibration(threshold=1e-6, family_threshold=1e-6, fitted_on="heldout_sources")
    monkeypatch.setattr(predictor.instrument_model, "calibration", sure_of_all)
    note = wav_bytes(tone("Fl", 72, amp=0.5, seed=5))
    monkeypatch.setattr(predictor.pitch_model, "calibration", Calibration(threshold=1e-6))
    r = predictor.predict_file(note, top_k=0)
    assert r.pitch_sure and r.instrument_sure and r.instrument_family_sure
    monkeypatch.setattr(predictor.pitch_model, "calibration", Calibration(threshold=1.0))  # the pitch: never sure
    r = predictor.predict_file(note, top_k=0)
    assert not (r.pitch_sure or r.instrument_sure or r.instrument_family_sure) and r.warnings == []
    assert "sure" not in cli._prediction_table([r.to_dict()]).replace("not sure", "")
    assert r.not_sure_because == {}  # unsure by the pitch model's own numbers: they still mean what they say
    monkeypatch.setattr(inputs, "needs_note", lambda which: False)
    r = predictor.predict_file(note, top_k=0)
    assert not r.pitch_sure and r.instrument_sure and r.instrument_family_sure


def test_a_plucked_or_struck_note_gets_no_sure_instrument_or_family_and_says_why(predictor, monkeypatch):
    """A string struck once falls in every band from its attack, as no held instrument the models know does: even a
    calibration sure of everything shows neither its instrument nor its family as sure; its pitch stays sure."""
    from instropitch import cli
    from instropitch.ml.calibration import Calibration

    sure_of_all = Calibration(threshold=1e-6, family_threshold=1e-6, fitted_on="heldout_sources")
    for model in (predictor.instrument_model, predictor.pitch_model):
        monkeypatch.setattr(model, "calibration", sure_of_all)
    t = np.arange(2 * SR) / SR
    string = sum(np.sin(2 * np.pi * k * 196.0 * t) / k * 10 ** (-12 * k * t / 20) for k in range(1, 9))
    r = predictor.predict_file(wav_bytes((0.5 * string / np.abs(string).max()).astype(np.float32)), top_k=0)
    assert r.ok and r.pitch_sure and r.midi == 55 and not (r.instrument_sure or r.instrument_family_sure)
    assert len(r.warnings) == 1 and r.warnings[0].startswith("a plucked or struck note: it dies away evenly, "), (
        r.warnings
    )
    assert " dB within 1 s of its attack" in r.warnings[0]  # it falls fast: the first window says so
    # the models' numbers were fitted on held notes: shown with none, and no promise of how often candidates hold
    assert r.not_sure_because == {"instrument": "a plucked or struck note"} and r.candidates["instrument"]
    assert r.candidates_level == {} and r.instrument_confidence > 0  # `--json` keeps the model's number
    row = cli._prediction_table([r.to_dict()]).splitlines()[1]
    assert "not sure: a plucked or struck note (nearest: " in row and "%" not in row, row
    d = r.to_dict()
    assert cli._confidence(d, "instrument") == "-" and cli._confidence(d, "pitch") == f"{r.pitch_confidence:.2f}"
    held = predictor.predict_file(wav_bytes(tone("Vn", 55, seconds=2.0, amp=0.5, seed=77)), top_k=0)
    assert held.instrument_sure and held.instrument_family_sure and held.warnings == []
    assert held.not_sure_because == {}
    # a bass string rings long (4 dB in its first second, as an electric bass's low notes): struck by its attack
    bass = sum(np.sin(2 * np.pi * k * 55.0 * t) / k * 10 ** (-4 * k**0.5 * t / 20) for k in range(1, 9))
    r = predictor.predict_file(wav_bytes((0.5 * bass / np.abs(bass).max()).astype(np.float32)), top_k=0)
    assert r.ok and not (r.instrument_sure or r.instrument_family_sure), r
    assert r.warnings and r.warnings[0].startswith("a plucked or struck note: it rises to its peak within 4 ms, then ")


def test_a_short_note_or_a_pure_tone_gets_no_sure_instrument_or_family_and_says_why(predictor, monkeypatch):
    """SoX's 80-ms sines read "Brass, sure" and its 1-s sines too (sessions 56 and 59): the models learnt from held
    notes with overtones that fill the instrument window, so even a calibration sure of everything shows neither
    the instrument nor the family of such a file as sure; the pitch answer is not the instrument's to lose."""
    sure_of_everything(predictor, monkeypatch)
    t = np.arange(int(1.5 * SR)) / SR
    sine = predictor.predict_file(wav_bytes((0.5 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)), top_k=0)
    assert sine.ok and sine.midi == 69 and sine.pitch_sure and not (sine.instrument_sure or sine.instrument_family_sure)
    assert sine.not_sure_because == {"instrument": "a pure tone"}
    assert [w.split(" (")[0] for w in sine.warnings] == ["a pure tone: it is one partial"], sine.warnings
    short = tone("Vn", 69, seconds=0.08, amp=0.5, seed=3)
    r = predictor.predict_file(wav_bytes(short), top_k=0)
    assert r.ok and not (r.instrument_sure or r.instrument_family_sure), r
    assert r.not_sure_because.get("instrument") == "a short note"
    assert any(w.startswith("a short note: it holds for 0.0") for w in r.warnings), r.warnings
    staccato = predictor.predict_file(wav_bytes(tone("Vn", 69, seconds=0.8, amp=0.5, seed=3)), top_k=0)
    assert staccato.not_sure_because == {"instrument": "a short note"}, staccato.not_sure_because
    held = predictor.predict_file(wav_bytes(tone("Vn", 69, seconds=1.2, amp=0.5, seed=3)), top_k=0)
    assert held.instrument_sure and held.instrument_family_sure and held.not_sure_because == {}, held


def test_a_pitch_that_glides_gets_no_sure_pitch_answer_and_says_why(predictor, monkeypatch):
    """A3 -> A4 in 1.5 s read "D#4, sure" (session 53): no held note where the answer is read, so not sure."""
    from instropitch.ml.calibration import Calibration

    monkeypatch.setattr(predictor.pitch_model, "calibration", Calibration(threshold=1e-6, fitted_on="validation"))
    t = np.arange(int(1.5 * SR)) / SR
    phase = 2 * np.pi * np.cumsum(220.0 * 2 ** (t / 1.5)) / SR
    y = sum(np.sin(k * phase) / k for k in range(1, 8))
    r = predictor.predict_file(wav_bytes((0.4 * y / np.abs(y).max()).astype(np.float32)), top_k=0)
    assert r.ok and not r.pitch_sure and r.candidates["pitch"]
    assert [w.split(" from ")[0] for w in r.warnings] == ["the pitch glides"], r.warnings
    # the instrument model reads the spectrum at that pitch: its numbers say nothing of a glide either
    assert r.not_sure_because == {"pitch": "the pitch glides", "instrument": "the pitch glides"}
    assert not r.instrument_sure and not r.instrument_family_sure
    held = predictor.predict_file(wav_bytes(tone("Vn", 57, seconds=1.5, amp=0.5, seed=7)), top_k=0)
    assert held.pitch_sure and held.warnings == [] and held.not_sure_because == {}


def sure_of_everything(predictor, monkeypatch) -> None:
    """Both models' answers shown as sure at any confidence, so that only a check of the audio can take that away."""
    from instropitch.ml.calibration import Calibration

    sure_of_all = Calibration(threshold=1e-6, family_threshold=1e-6, fitted_on="heldout_sources")
    for model in (predictor.instrument_model, predictor.pitch_model):
        monkeypatch.setattr(model, "calibration", sure_of_all)


def chord(midis: tuple[int, ...], seconds: float = 1.5) -> bytes:
    """Equal-tempered notes `midis` at once, five harmonics each falling as 1/k, as WAV bytes."""
    t = np.arange(int(seconds * SR)) / SR
    y = sum(np.sin(2 * np.pi * k * 440 * 2 ** ((m - 69) / 12) * t) / k for m in midis for k in range(1, 6))
    return wav_bytes((0.4 * y / np.abs(y).max()).astype(np.float32))


def test_a_chord_gets_no_sure_pitch_or_instrument_answer_and_says_why(predictor, monkeypatch):
    """C4-E4-G4 at once repeats only every C2's period: the pitch answer is one of the notes at best."""
    sure_of_everything(predictor, monkeypatch)
    r = predictor.predict_file(chord((60, 64, 67)), top_k=0)
    assert r.ok and any(w.startswith("several notes at once") for w in r.warnings), r.warnings
    assert r.not_sure_because == {"pitch": "several notes at once", "instrument": "several notes at once"}
    assert not (r.pitch_sure or r.instrument_sure or r.instrument_family_sure)


def test_a_sure_answer_the_waveform_does_not_repeat_at_nor_at_any_note_is_not_sure(predictor, monkeypatch):
    """An equal-tempered A minor triad repeats at no note's period: whatever the CNN answers, and however sure, no one
    note sounds steadily; the answer says so, with no period to show."""
    sure_of_everything(predictor, monkeypatch)
    r = predictor.predict_file(chord((57, 60, 64)), top_k=0)
    assert r.ok and not (r.pitch_sure or r.instrument_sure or r.instrument_family_sure)
    assert r.not_sure_because == {"pitch": "no steady period", "instrument": "no steady period"}
    assert r.pitch_period_hz is None
    period_ms = 1000 / (440 * 2 ** ((r.midi - 69) / 12))
    assert (
        f"no steady period: the waveform repeats neither after {r.pitch}'s period ({period_ms:.1f} ms) nor after any "
        "note's, as one note held steadily would (several notes at once, a bell, noise?), so the pitch answer is not "
        "sure"
    ) in r.warnings
    one = predictor.predict_file(chord((57,)), top_k=0)  # one note: sure, as before
    assert one.ok and one.pitch_sure and one.midi == 57 and one.not_sure_because == {}


def detuned(cents: float, seconds: float = 1.5) -> bytes:
    """A violin-like A4 (sawtooth partials) `cents` off 440 Hz, as WAV bytes."""
    t = np.arange(int(seconds * SR)) / SR
    f0 = 440.0 * 2 ** (cents / 1200)
    y = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 10)) * np.minimum(1, t / 0.02)
    return wav_bytes((0.4 * y / np.abs(y).max()).astype(np.float32))


def test_a_note_halfway_between_two_gets_no_sure_pitch_answer_and_says_why(predictor, monkeypatch):
    """A4 47 cents sharp: either name is a guess, so neither is sure whatever the model's confidence; 20 cents sharp
    is still A4, and the cents are shown either way (`pitch_cents`, the CLI's cents column)."""
    from instropitch import cli

    sure_of_everything(predictor, monkeypatch)
    near = predictor.predict_file(detuned(20), top_k=0)
    assert near.ok and near.pitch_sure and near.midi == 69 and near.warnings == [] and near.not_sure_because == {}
    assert near.pitch_cents == pytest.approx(20, abs=1.5)
    assert cli._prediction_table([near.to_dict()]).splitlines()[1].split()[-2] == "+20"
    r = predictor.predict_file(detuned(47), top_k=0)
    assert r.ok and r.midi == 69 and not r.pitch_sure  # named the nearer note, whichever the CNN named
    assert r.pitch_cents == pytest.approx(47, abs=1.5)
    assert r.not_sure_because == {"pitch": "between two notes", "instrument": "between two notes"}
    assert r.warnings == [
        f"between two notes: it sounds {r.pitch_cents:.0f} cents above A4, nearly halfway to A#4, so the "
        "pitch answer is not sure (the waveform's period, over the pitch window)"
    ]
    # the candidates are the two notes it sits between, the answer first, whatever the CNN's runner-up
    assert [c["pitch"] for c in r.candidates["pitch"]] == ["A4", "A#4"]
    assert "not sure: between two notes (nearest: A4 / A#4)" in cli._prediction_table([r.to_dict()])


def test_a_note_is_named_the_nearest_note_whichever_neighbour_the_model_names(predictor, monkeypatch):
    """60 cents above A4 is A#4 40 cents flat: the period decides when the CNN names the note further away, and the
    answer may be sure (it is not between two notes)."""
    from instropitch.ml.calibration import Calibration

    sure_of_all = Calibration(threshold=1e-6, family_threshold=1e-6, fitted_on="heldout_sources")
    monkeypatch.setattr(predictor.pitch_model, "calibration", sure_of_all)
    classes = np.asarray(predictor.pitch_model.class_values)
    far = np.where(classes == 69, 1.0, 1e-4)  # the CNN sure of A4
    monkeypatch.setattr(predictor.pitch_model, "proba", lambda x: np.tile(far / far.sum(), (len(x), 1)))
    r = predictor.predict_file(detuned(60), top_k=0)
    assert r.ok and r.midi == 70 and r.pitch_sure and r.not_sure_because == {}, (r.midi, r.not_sure_because)
    assert r.pitch_cents == pytest.approx(-40, abs=1.5)
    assert r.pitch_period_hz == pytest.approx(440.0 * 2 ** (60 / 1200), rel=2e-3)


@pytest.mark.parametrize(
    ("cents", "between"), [(None, False), (0.0, False), (44.9, False), (-44.9, False), (45.0, True), (-60.0, True)]
)
def test_between_notes_from_45_cents_either_way(cents, between):
    from instropitch.serving.caveats import between_notes, between_notes_warning

    assert between_notes(cents) is between
    assert (between_notes_warning(cents, 69) is not None) is between


@pytest.mark.parametrize(
    ("unpitched", "plucked", "glide", "expected"),
    [
        (False, False, False, {}),
        (True, True, True, {"pitch": "no pitched note", "instrument": "no pitched note"}),
        (False, True, True, {"pitch": "the pitch glides", "instrument": "a plucked or struck note"}),
        (False, True, False, {"instrument": "a plucked or struck note"}),
        (False, False, True, {"pitch": "the pitch glides"}),
    ],
)
def test_overruled_names_each_answer_a_check_takes_and_why(unpitched, plucked, glide, expected):
    from instropitch.serving.caveats import overruled

    assert overruled(unpitched=unpitched, plucked=plucked, glide=glide, chord=False) == expected
    unsteady = overruled(unpitched=unpitched, plucked=plucked, glide=glide, chord=False, unrepeated=True)
    assert unsteady == {"pitch": expected.get("pitch", "no steady period"), **expected}
    between = overruled(unpitched=unpitched, plucked=plucked, glide=glide, chord=False, between=True)
    assert between == {"pitch": expected.get("pitch", "between two notes"), **expected}
    for key, reason in (("short", "a short note"), ("pure", "a pure tone")):
        found = overruled(unpitched=unpitched, plucked=plucked, glide=glide, chord=False, **{key: True})
        assert found == {**expected, "instrument": expected.get("instrument", reason)}


@pytest.mark.parametrize(
    ("held", "impurity", "warned"), [(0.08, -20.0, 1), (0.94, -49.9, 1), (0.95, -50.0, 1), (0.95, -49.9, 0)]
)
def test_a_note_too_short_to_fill_the_instrument_window_and_a_pure_tone_from_50_db_down(held, impurity, warned):
    from instropitch.audio.features import PRESETS
    from instropitch.serving.caveats import pure_tone_warning, short_note_warning, shortest_note

    default = PRESETS["default"]
    assert shortest_note(default) == pytest.approx(0.95)  # the 1-s window from 0.05 s before the onset
    assert [short_note_warning(held, default), pure_tone_warning(impurity)].count(None) == 2 - warned
    assert short_note_warning(None, default) is None and pure_tone_warning(None) is None
    assert pure_tone_warning(float("-inf")) == (
        "a pure tone: it is one partial (nothing else), as a tone generator's sine is; every instrument the models "
        "know sounds overtones, so no instrument answer is shown as sure"
    )


def test_a_tone_above_the_period_estimates_reach_is_a_pitched_note(predictor, monkeypatch):
    """E7 with harmonics 2-4 only, answered E7 but not sure: YIN finds no period up there, the waveform
    repeats at E7's all the same, so it is no "no pitched note"; noise answered E7 is."""
    from instropitch.ml.calibration import Calibration

    model = predictor.pitch_model
    monkeypatch.setattr(model, "calibration", Calibration(threshold=1.0))
    classes = [int(v) for v in model.class_values]

    def unsure_e7(x):
        p = np.full((len(x), len(classes)), 0.01)
        p[:, classes.index(100)] = 0.3
        return p / p.sum(axis=1, keepdims=True)

    monkeypatch.setattr(model, "proba", unsure_e7)
    f0, t = 440.0 * 2 ** (31 / 12), np.arange(int(1.5 * SR)) / SR
    high = sum(np.sin(2 * np.pi * k * f0 * t) for k in (2, 3, 4) if k * f0 < SR / 2)
    r = predictor.predict_file(wav_bytes((0.3 * high / np.abs(high).max()).astype(np.float32)), top_k=0)
    assert r.midi == 100 and not r.pitch_sure and r.warnings == []
    noise = (0.3 * np.random.default_rng(3).standard_normal(int(1.5 * SR))).astype(np.float32)
    r = predictor.predict_file(wav_bytes(noise), top_k=0)
    assert r.midi == 100 and r.warnings and r.warnings[0].startswith("no pitched note: ")


def test_the_answers_own_map_reaches_the_shown_confidence_and_models_says_how_it_is_made(predictor, monkeypatch):
    from instropitch.ml.calibration import Calibration, map_top_answer
    from instropitch.serving.predictor import calibration_summary
    from instropitch.tinysol import family_indices

    note = wav_bytes(tone("Fl", 72, amp=0.5, seed=5))
    model = predictor.instrument_model
    families = tuple(family_indices(model.class_names))
    tempered = Calibration(temperature=3.0, threshold=1.0, family_threshold=0.95, fitted_on="heldout_sources")
    monkeypatch.setattr(model, "calibration", tempered)
    before = predictor.predict_file(note, name="n.wav", top_k=14)
    mapped = Calibration(**{**tempered.to_dict(), "top_slope": 0.5, "top_bias": -0.3, "families": families})
    monkeypatch.setattr(model, "calibration", mapped)
    after = predictor.predict_file(note, name="n.wav", top_k=14)
    shown = {e["instrument_abbr"]: e["confidence"] for e in before.top_k["instrument"]}
    expected = map_top_answer(np.array([[shown[a] for a in model.class_names]]), 0.5, -0.3, families)[0]
    assert after.instrument == before.instrument  # the map never changes the answer
    assert after.instrument_confidence == pytest.approx(expected.max(), abs=2e-3) != before.instrument_confidence
    assert after.instrument_confidence_raw == before.instrument_confidence_raw  # --json keeps the softmax's own
    summary = calibration_summary(mapped)
    assert summary["scaling"] == "T = 3.00, top answer 0.50 x logit -0.30" and summary["sure_at"] is None
    assert summary["family_sure_at"] == 0.95 and summary["fitted_on"] == "heldout_sources"
    assert summary["familiar_notes"] == 0 and calibration_summary(Calibration(familiar_n=7))["familiar_notes"] == 7


def test_a_model_that_answers_foreignness_softens_the_notes_unlike_its_training(
    predictor, trained_store, tracking, monkeypatch
):
    """The instrument model's ONNX copy with the foreignness output (`ml.foreignness`): the
    confidence shown falls with the note's distance from the training notes, the answer stays."""
    from instropitch.ml import registry
    from instropitch.ml.calibration import Calibration
    from instropitch.ml.foreignness import embed, fit_reference, with_foreignness
    from instropitch.ml.portable import to_onnx
    from instropitch.serving.portable import OnnxModel

    model = registry.load_model(f"models:/instropitch-instrument/{trained_store.versions['instrument']}").model
    note = wav_bytes(tone("Vn", 69, amp=0.5, seed=77))
    plain = predictor.predict_file(note, name="n.wav", top_k=0)
    assert plain.instrument_foreignness is None  # one source: no held-out fits, no foreignness

    x = predictor.model_inputs(
        {
            k: v[None]
            for k, v in predictor.predict_file(note, name="n.wav", keep_spectrograms=True).spectrograms.items()
        },
        np.array([plain.midi]),
    )["instrument"]
    _, embedding = embed(model, x)
    rng = np.random.default_rng(0)
    spread = embedding + rng.normal(0, 0.1, (40, embedding.shape[1]))  # training notes around this one
    references = {  # the note among the training notes, or far from all of them
        "familiar": fit_reference(spread, np.zeros(40, int), spread),
        "foreign": fit_reference(spread + 50, np.zeros(40, int), spread + 50),
    }
    softer = Calibration(temperature=1.0, foreign_slope=1.0, threshold=0.5, fitted_on="heldout_sources")
    monkeypatch.setattr(predictor.instrument_model, "calibration", softer)
    shown = {}
    for kind, reference in references.items():
        net = OnnxModel(to_onnx(with_foreignness(model, reference)))
        monkeypatch.setattr(predictor.instrument_model, "net", net)
        shown[kind] = predictor.predict_file(note, name="n.wav", top_k=0)
    assert shown["familiar"].instrument_foreignness < 0.2 < 100 < shown["foreign"].instrument_foreignness
    assert shown["familiar"].instrument == shown["foreign"].instrument == plain.instrument
    assert shown["familiar"].instrument_confidence >= plain.instrument_confidence_raw - 1e-3  # T ~ foreignness: sharper
    assert shown["foreign"].instrument_confidence < 0.2 and shown["foreign"].instrument_sure is False
    assert shown["foreign"].candidates["instrument"]  # "not sure", with the top candidates
    assert shown["foreign"].to_dict()["instrument_foreignness"] == shown["foreign"].instrument_foreignness


def test_predict_many_calls_each_model_once_per_batch(predictor, tmp_path):
    expected = write_batch(tmp_path)
    files = [str(tmp_path / name) for name in expected] + [str(tmp_path / "violin-A4.wav")]

    calls: dict[str, list[int]] = {"pitch": [], "instrument": []}

    class Counting:
        """Counts a model's `answer` calls (`proba` goes through it): one call is one pass of the network over a batch."""

        def __init__(self, role, answer):
            self.role, self.answer = role, answer

        def __call__(self, x):
            calls[self.role].append(len(x))
            return self.answer(x)

    try:
        for role, model in predictor.models.items():
            model.answer = Counting(role, model.answer)
        results = predictor.predict_many(files)
        assert calls == {"pitch": [5], "instrument": [5]}  # 7 files, 2 unusable, one call each
        calls["pitch"].clear(), calls["instrument"].clear()
        again = predictor.predict_many(files, batch_size=3)
        assert calls == {"pitch": [3, 1, 1], "instrument": [3, 1, 1]}
    finally:
        for model in predictor.models.values():
            model.__dict__.pop("answer", None)

    assert [r.file for r in results] == files  # input order, failures in place
    assert [r.to_dict() for r in again] == [r.to_dict() for r in results]
    for r in results:
        want = expected[Path(r.file).name]
        if want is None:
            assert not r.ok
        else:
            assert r.ok, r.error
            assert (r.instrument_abbr, r.midi) == want, r.file


def test_the_instrument_model_reads_timbre_relative_to_the_pitch_answer(predictor):
    from instropitch.serving.results import confidence

    assert predictor.instrument_model.input == "instrument+harmonics"  # as the shipped recipe
    result = predictor.predict_file(wav_bytes(tone("Fl", 64, amp=0.5, seed=7)), "flute.wav", keep_spectrograms=True)
    stacked = {k: v[None] for k, v in result.spectrograms.items()}
    heard = predictor.instrument_model.proba(predictor.model_inputs(stacked, np.array([result.midi]))["instrument"])[0]
    assert result.instrument_confidence_raw == confidence(heard.max())
    assert predictor.instrument_model.class_values[int(heard.argmax())] == result.instrument_abbr
    # Re-centred on another note, the same spectrograms read differently.
    elsewhere = predictor.instrument_model.proba(
        predictor.model_inputs(stacked, np.array([result.midi + 7]))["instrument"]
    )[0]
    assert np.abs(np.log(elsewhere) - np.log(heard)).max() > 0.1  # log: the tiny model's top answer saturates
    # By default the notes are the pitch model's answers.
    np.testing.assert_allclose(
        predictor.instrument_model.proba(predictor.model_inputs(stacked)["instrument"])[0], heard
    )


def test_silence_before_a_note_leaves_the_answer_as_it_was(predictor):
    """A user's recording starts before the note: the predictor places its windows on the note."""
    assert predictor.features.locate_note  # the models' preset says so, and the predictor keeps it
    note = tone("Fl", 64, amp=0.5, seed=7)
    room = np.random.default_rng(3).standard_normal(round(SR * 0.8)).astype(np.float32) * 3e-5
    cut = predictor.predict_file(wav_bytes(note), "cut.wav")
    recorded = predictor.predict_file(wav_bytes(np.concatenate([room, note])), "recorded.wav")
    assert (recorded.instrument_abbr, recorded.midi) == (cut.instrument_abbr, cut.midi)
    assert recorded.instrument_confidence_raw == pytest.approx(cut.instrument_confidence_raw, abs=0.02)


def test_a_phrase_is_answered_for_one_note_with_a_warning_naming_them_all(predictor):
    phrase = np.concatenate([tone("Vn", 60, seconds=0.7, seed=11), tone("Vn", 64, seconds=0.7, seed=12)])
    result = predictor.predict_file(wav_bytes(phrase), "phrase.wav")
    assert result.ok and result.midi in (60, 64)
    [said] = result.warnings
    assert said.startswith("holds 2 notes (C4 at 0.00 s, E4 at 0.70 s); the answer is for one note, read from ")
    assert predictor.predict_file(wav_bytes(tone("Vn", 60, seconds=1.4, seed=11)), "note.wav").warnings == []


def test_unusable_files_give_error_results_not_exceptions(predictor, tmp_path):
    write_batch(tmp_path)
    (tmp_path / "notes.txt").write_text("this is not audio")
    sources = [
        str(tmp_path / "silence.wav"),
        str(tmp_path / "corrupt.wav"),
        str(tmp_path / "missing.wav"),
        str(tmp_path / "notes.txt"),
        str(tmp_path),
        ("empty.wav", b""),
        ("too-long.wav", wav_bytes(np.full(8000 * 5, 0.1, np.float32), 8000)),
    ]
    results = predictor.predict_many(sources, max_duration=3.0)
    by_name = {Path(r.file).name: r for r in results}
    assert all(not r.ok for r in results)
    assert by_name["silence.wav"].error.startswith("silent")
    assert by_name["silence.wav"].error_type == "SilentAudioError"
    assert by_name["corrupt.wav"].error.startswith("truncated")
    assert by_name["missing.wav"].error == "No such file or directory"
    assert by_name["notes.txt"].error.startswith("not an audio file") and "text" in by_name["notes.txt"].error
    assert by_name[tmp_path.name].error == "Is a directory"
    assert by_name["empty.wav"].error == "empty file (0 bytes)"
    assert by_name["too-long.wav"].error.startswith("too long")
    assert by_name["silence.wav"].to_dict() == {
        "file": str(tmp_path / "silence.wav"),
        "error": by_name["silence.wav"].error,
    }


def test_versions_and_aliases_select_other_models(trained_store, tracking):
    from instropitch.cli import parse_versions
    from instropitch.serving.predictor import Predictor
    from instropitch.serving.results import PredictorError

    assert parse_versions("pitch=2, instrument=@champion") == {"pitch": "2", "instrument": "@champion"}
    assert parse_versions("") == {}
    for bad in ("pitch", "bass=2", "pitch=two", "pitch=@"):
        with pytest.raises(ValueError, match="bad model version|ROLE"):
            parse_versions(bad)

    chosen = Predictor.from_registry({"pitch": "2"})
    models = chosen.describe()["models"]
    assert models["pitch"]["version"] == "2" and models["pitch"]["alias"] is None
    assert models["pitch"]["test_accuracy"] == 0.5
    assert models["instrument"]["version"] == trained_store.versions["instrument"]
    assert models["instrument"]["alias"] == "champion"

    with pytest.raises(PredictorError, match=r"no alias 'nope' of registered model 'instropitch-pitch'.*--from-export"):
        Predictor.from_registry(alias="nope")
    with pytest.raises(PredictorError, match="no version 99 of registered model 'instropitch-instrument'"):
        Predictor.from_registry({"instrument": "99"})


def test_changed_features_are_refused(trained_store, tracking, monkeypatch):
    import dataclasses

    from instropitch.audio.features import get_preset
    from instropitch.serving import predictor as predict

    real = get_preset("default")
    changed = dataclasses.replace(real, pitch=dataclasses.replace(real.pitch, n_fft=4096))
    monkeypatch.setattr(predict, "get_preset", lambda name: changed)
    with pytest.raises(predict.PredictorError, match="changed since training"):
        predict.Predictor.from_registry()


def test_find_audio_expands_folders_and_globs(tmp_path):
    from instropitch.cli import find_audio

    (tmp_path / "a" / "deep").mkdir(parents=True)
    for name in ("a/one.wav", "a/deep/two.WAV", "a/deep/three.flac", "a/four.Mp3", "a/skip.txt", "b.wav", "c.wav"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    files, missing = find_audio(
        [
            str(tmp_path / "a"),
            str(tmp_path / "*.wav"),
            str(tmp_path / "b.wav"),  # already matched by the glob: not twice
            str(tmp_path / "nothing-*.wav"),
            str(tmp_path / "gone.wav"),
            str(tmp_path / "empty"),
            str(tmp_path / "a" / "skip.txt"),  # named explicitly: kept, the prediction will judge it
        ]
    )
    rel = [os.path.relpath(f, tmp_path) for f in files]
    assert rel == ["a/deep/three.flac", "a/deep/two.WAV", "a/four.Mp3", "a/one.wav", "b.wav", "c.wav", "a/skip.txt"]
    reasons = [m.split(": ", 1)[1] for m in missing]
    assert reasons[:2] == ["no file matches", "no such file or folder"]
    assert reasons[2].startswith("no audio files (") and ".flac" in reasons[2] and ".wav" in reasons[2]


# --------------------------------------------------------------------------- CLI


def test_cli_predicts_a_mixed_batch(trained_store, tracking, tmp_path, capsys):
    from instropitch.cli import main

    expected = write_batch(tmp_path / "batch")
    code = main(["predict", str(tmp_path / "batch"), str(tmp_path / "nowhere.wav")])
    out, err = capsys.readouterr()
    assert code == 1
    err_lines = err.strip().splitlines()
    assert f"instropitch: {tmp_path / 'nowhere.wav'}: no such file or folder" in err_lines
    assert any(line.startswith(f"instropitch: {tmp_path / 'batch' / 'corrupt.wav'}: truncated") for line in err_lines)
    assert any(line.startswith(f"instropitch: {tmp_path / 'batch' / 'silence.wav'}: silent") for line in err_lines)
    assert len(err_lines) == 3

    lines = out.strip().splitlines()
    assert lines[0].split() == ["file", "instrument", "conf", "pitch", "note", "octave", "midi", "cents", "conf"]
    rows = {Path(line.split()[0]).name: line for line in lines[1:]}
    assert set(rows) == {name for name, want in expected.items() if want}
    from instropitch.tinysol import INSTRUMENT_BY_ABBR, midi_to_pitch

    for name, want in expected.items():
        if want:
            abbr, midi = want
            # the tiny test models calibrate on too few notes to be sure: the answer leads the candidates
            name_ = INSTRUMENT_BY_ABBR[abbr].name
            assert f"{name_} ({abbr})" in rows[name] or f"not sure: {name_} " in rows[name], rows[name]
            assert f" {midi_to_pitch(midi)} " in rows[name] and f" {midi} " in rows[name]
            cents = rows[name].split()[-2]  # the test tones are in tune, give or take their draw
            assert cents[0] in "+-" and abs(int(cents)) < 10, rows[name]


def test_cli_json_and_json_lines(trained_store, tracking, tmp_path, capsys):
    from instropitch.cli import main

    expected = write_batch(tmp_path)
    assert main(["predict", str(tmp_path / "*.wav"), "--json", "--top-k", "2"]) == 1
    out, err = capsys.readouterr()
    array = json.loads(out)
    assert [Path(r["file"]).name for r in array] == sorted(expected)
    for r in array:
        want = expected[Path(r["file"]).name]
        if want is None:
            assert set(r) == {"file", "error"}
            assert f"instropitch: {r['file']}: {r['error']}" in err
        else:
            assert (r["instrument_abbr"], r["midi"]) == want
            assert len(r["top_k"]["pitch"]) == 2

    assert main(["predict", str(tmp_path / "violin-A4.wav"), str(tmp_path / "flute-E4.wav"), "--jsonl"]) == 0
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.strip().splitlines()]
    assert [(r["instrument_abbr"], r["pitch"]) for r in rows] == [("Vn", "A4"), ("Fl", "E4")]
    assert err == ""


def test_cli_model_version_and_errors(trained_store, tracking, tmp_path, capsys):
    from instropitch.cli import main

    note = tmp_path / "violin-A4.wav"
    audio.write_wav(note, tone("Vn", 69, seed=5), SR)
    assert main(["predict", str(note), "--json", "--model-version", "pitch=2"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["pitch"] == "A4"

    assert main(["predict", str(note), "--model-version", "pitch=two"]) == 1
    assert "bad model version 'pitch=two'" in capsys.readouterr().err
    assert main(["predict", str(note), "--model-version", "pitch=42"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("instropitch: no version 42 of registered model 'instropitch-pitch'")
    assert main(["predict", str(tmp_path / "none-*.wav")]) == 1
    err = capsys.readouterr().err
    assert "no file matches" in err and "no audio files to predict" in err


def test_cli_progress_bar_only_on_a_terminal(predictor, trained_store, tracking, tmp_path, capsys, monkeypatch):
    from instropitch.cli import main

    for i in range(21):
        audio.write_wav(tmp_path / f"n{i:02d}.wav", tone("Fl", 62, amp=0.3, seed=i), SR)

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["predict", str(tmp_path), "--batch-size", "8"]) == 0
    assert "21/21" in terminal.getvalue()
    assert len(capsys.readouterr().out.strip().splitlines()) == 22

    terminal.seek(0), terminal.truncate()
    assert main(["predict", str(tmp_path), "--jsonl"]) == 0
    assert terminal.getvalue() == ""  # no bar with JSON output
    assert len(capsys.readouterr().out.strip().splitlines()) == 21


# ------------------------------------------------------------------------ export


def test_export_then_predict_without_mlflow(trained_store, tracking, tmp_path, capsys, monkeypatch):
    import mlflow

    from instropitch.cli import main
    from instropitch.serving.predictor import Predictor

    out = tmp_path / "export"
    # an instrument champion promoted on its held-out-source score: that score is not its test accuracy
    client, version = mlflow.MlflowClient(), trained_store.versions["instrument"]
    before = client.get_model_version("instropitch-instrument", version).tags
    client.set_model_version_tag("instropitch-instrument", version, "promotion.new_score", "0.47")
    client.set_model_version_tag("instropitch-instrument", version, "heldout_accuracy", "0.47")
    try:
        assert main(["export", "--out", str(out)]) == 0
    finally:
        for key in ("promotion.new_score", "heldout_accuracy"):
            if key in before:
                client.set_model_version_tag("instropitch-instrument", version, key, before[key])
            else:
                client.delete_model_version_tag("instropitch-instrument", version, key)
    printed = capsys.readouterr().out
    assert f"exported to {out}" in printed and "instropitch-pitch v1" in printed
    assert "held-out-source accuracy 0.4700" in printed
    assert sorted(p.name for p in out.iterdir()) == [
        "features.json",
        "instrument.onnx",
        "labels.json",
        "manifest.json",
        "pitch.onnx",
    ]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "instropitch-export"
    for role in ("pitch", "instrument"):
        assert manifest["models"][role]["version"] == trained_store.versions[role]
        assert manifest["models"][role]["test_accuracy"] == pytest.approx(trained_store.accuracies[role], abs=1e-6)
    assert manifest["models"]["instrument"]["heldout_accuracy"] == 0.47
    assert manifest["models"]["pitch"]["heldout_accuracy"] is None
    labels = json.loads((out / "labels.json").read_text())
    assert labels["pitch"]["label"] == "midi" and len(labels["pitch"]["class_names"]) == 89

    # no MLflow from here on: no tracking URI, and any use of the client or artifacts fails loudly
    monkeypatch.delenv("MLFLOW_TRACKING_URI")

    def forbidden(*args, **kwargs):
        raise AssertionError("predicting from an export must not touch MLflow")

    monkeypatch.setattr(mlflow, "MlflowClient", forbidden)
    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", forbidden)
    note = tmp_path / "clarinet-D4.wav"
    audio.write_wav(note, tone("ClBb", 62, amp=0.5, seed=44), SR)
    assert main(["predict", str(note), "--from-export", str(out), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["instrument"], row["pitch"], row["note"], row["octave"]) == ("Clarinet in Bb", "D4", "D", 4)

    monkeypatch.setenv("INSTROPITCH_EXPORT_DIR", str(out))
    loaded = Predictor.load()
    assert (
        loaded.source == "export" and loaded.describe()["models"]["pitch"]["version"] == trained_store.versions["pitch"]
    )
    assert loaded.predict_file(note).to_dict() == {**row, "file": str(note)}

    # re-exporting over an export replaces it; any other folder is refused
    loaded.export(out)
    assert Predictor.from_export(out).describe()["feature_digest"] == manifest["feature_digest"]


def test_export_refuses_a_folder_that_is_not_an_export(predictor, tmp_path):
    from instropitch.serving.predictor import Predictor
    from instropitch.serving.results import PredictorError

    other = tmp_path / "precious"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(PredictorError, match="not an instropitch export"):
        predictor.export(other)
    assert (other / "keep.txt").read_text() == "mine"
    with pytest.raises(PredictorError, match="no manifest.json"):
        Predictor.from_export(other)
    broken = predictor.export(tmp_path / "broken")
    shutil.copy(broken / "pitch.onnx", broken / "instrument.onnx")  # the wrong model in the instrument slot
    with pytest.raises(PredictorError, match="instrument"):
        Predictor.from_export(broken)


@pytest.mark.parametrize(
    ("role", "model_input", "message"),
    [
        ("pitch", "instrument+harmonics", "cannot read 'instrument\\+harmonics', an input built from the note"),
        ("instrument", "timbre", "unknown model input 'timbre'"),
    ],
)
def test_a_layout_with_an_input_the_role_cannot_read_is_refused(role, model_input, message):
    from instropitch.serving.predictor import _model_from_layout
    from instropitch.serving.results import ModelInfo, PredictorError

    layout = {"label": "midi" if role == "pitch" else "instrument", "input": model_input}
    layout |= {"class_names": ["A0"], "input_shape": [44, 200]}
    with pytest.raises(PredictorError, match=message):
        _model_from_layout(role, b"", layout, ModelInfo(role=role), "v9")


@pytest.mark.parametrize(
    ("midi", "hum_hz", "at"),
    [(31, 50.0, True), (32, 50.0, True), (30, 50.0, False), (33, 50.0, False), (34, 60.0, True), (35, 60.0, True)]
    + [(36, 60.0, False), (43, 50.0, False), (47, 60.0, False), (31, None, False)],
)
def test_a_pitch_answer_within_a_semitone_of_the_hum_may_be_the_hums(midi, hum_hz, at):
    from instropitch.serving.caveats import at_hum, mains_hum_warning, overruled

    assert at_hum(hum_hz, midi) is at
    assert (mains_hum_warning(hum_hz, midi) is not None) is at
    assert overruled(unpitched=False, plucked=False, glide=False, chord=False, hum=at) == (
        {"pitch": "mains hum"} if at else {}
    )
    # the hum explains the other pitch checks' findings: its reason goes first
    assert overruled(unpitched=False, plucked=False, glide=True, chord=True, unrepeated=True, hum=True) == {
        "pitch": "mains hum"
    }


def test_a_pitch_answer_at_the_mains_hum_is_not_sure_and_says_why(predictor, monkeypatch):
    """A quiet A4 under a loud line at a grid's frequency, the pitch model sure of the note at the line: not sure,
    the hum named; a loud A4 over a quieter line, the model sure of A4: sure. The tiny models know C4-A4 only, so
    the grid is moved to 267 Hz (C4 + 36 cents, as 50 Hz is G1 + 35)."""
    from instropitch.audio import hum
    from instropitch.ml.calibration import Calibration

    monkeypatch.setattr(hum, "MAINS_HZ", (267.0,))
    monkeypatch.setattr(predictor.pitch_model, "calibration", Calibration(threshold=1e-6, fitted_on="heldout_sources"))
    classes = np.asarray(predictor.pitch_model.class_values)
    t = np.arange(int(2.0 * SR)) / SR
    a4 = sum(np.sin(2 * np.pi * 440.0 * k * t) / k for k in range(1, 6))
    line, a4 = np.sin(2 * np.pi * 267.0 * t), a4 / np.abs(a4).max()
    for midi, sure, y in ((60, False, 0.3 * line + 0.1 * a4), (69, True, 0.03 * line + 0.3 * a4)):
        said = np.where(classes == midi, 1.0, 1e-4)
        monkeypatch.setattr(predictor.pitch_model, "proba", lambda x, p=said: np.tile(p / p.sum(), (len(x), 1)))
        r = predictor.predict_file(wav_bytes(y.astype(np.float32)), top_k=0)
        assert r.ok and r.midi == midi and r.pitch_sure is sure, (r.midi, r.not_sure_because, r.warnings)
        hum_warnings = [w for w in r.warnings if w.startswith("mains hum: a steady 267.0-Hz line")]
        assert len(hum_warnings) == (0 if sure else 1), r.warnings
        assert r.not_sure_because.get("pitch") == (None if sure else "mains hum"), r.not_sure_because


@pytest.mark.parametrize(
    ("lowest_hz", "highest", "above"),
    [(4700.0, 109, True), (4560.0, 109, False), (4435.0, 109, False), (460.0, 69, True), (None, 69, False)],
)
def test_a_note_above_the_highest_the_pitch_model_names_cannot_be_named(lowest_hz, highest, above):
    from instropitch.serving.caveats import above_range, above_range_warning, overruled

    assert above_range(lowest_hz, highest) is above
    warning = above_range_warning(lowest_hz, highest)
    assert (warning is not None) is above
    if above:
        assert warning.startswith(f"above the highest note: its partials imply no fundamental below {lowest_hz:.0f} Hz")
        assert "C#8 (4435 Hz)" in warning if highest == 109 else "A4 (440 Hz)" in warning
    # every other pitch finding follows from it: its reason goes first
    assert overruled(unpitched=False, plucked=False, glide=True, chord=True, hum=True, above=above) == {
        "pitch": "above the highest note" if above else "mains hum"
    }


def test_a_tone_above_the_pitch_models_highest_note_is_not_sure_and_says_why(predictor, monkeypatch):
    """SoX's sines over C#8 were named an octave or more down, sure: the pitch model names nothing higher. A sine at
    D#8 with the model sure of D#7 is not sure, and says why; an A4 with the model sure of A4 is."""
    sure_of_everything(predictor, monkeypatch)
    classes = np.asarray(predictor.pitch_model.class_values)
    assert classes.max() == 109
    t = np.arange(int(1.5 * SR)) / SR
    for midi, told, sure in ((111, 99, False), (69, 69, True)):
        said = np.where(classes == told, 1.0, 1e-4)
        monkeypatch.setattr(predictor.pitch_model, "proba", lambda x, p=said: np.tile(p / p.sum(), (len(x), 1)))
        hz = 440.0 * 2 ** ((midi - 69) / 12)
        r = predictor.predict_file(wav_bytes((0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)), top_k=0)
        assert r.ok and r.pitch_sure is sure, (midi, r.midi, r.not_sure_because, r.warnings)
        assert r.not_sure_because.get("pitch") == (None if sure else "above the highest note"), r.not_sure_because
        assert r.not_sure_because.get("instrument") == "a pure tone"  # its own reason, which says more of it
        assert not (r.instrument_sure or r.instrument_family_sure)
        above = [w for w in r.warnings if w.startswith("above the highest note: its partials imply no fundamental")]
        assert len(above) == (0 if sure else 1), r.warnings
