"""`ml.snapshot`: the stratified and fold splits, the file round trip, label layout, the rows a recipe reads.

Tiny synthetic arrays (`support.models.synthetic_arrays`); one test fits a network for an epoch, to see the rows reach it.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from support.models import INSTRUMENT_SHAPE, PITCH_SHAPE, synthetic_arrays

from instropitch.ml.snapshot import MIDI_CLASSES, Snapshot, create_snapshot, strata
from instropitch.modelspec import parse_spec
from instropitch.tinysol import INSTRUMENT_ABBRS, INSTRUMENTS


def test_split_is_stratified_on_instrument_and_pitch():
    midis = (40, 45, 50, 55, 60, 65)
    paths, midi, inst, fold, pitch, spec = synthetic_arrays(n=192, midis=midis, instruments=("Vn", "Fl", "Ob", "Hn"))
    snap = create_snapshot(paths, midi, inst, fold, pitch, spec, seed=3)
    assert snap.stratify == "instrument+midi"
    assert snap.n_test == 48  # 24 (instrument, midi) pairs x 8 notes
    for column in (snap.instrument, snap.midi):
        everywhere = Counter(column.tolist())
        in_test = Counter(column[snap.is_test].tolist())
        for key, count in everywhere.items():
            assert in_test[key] / snap.n_test == pytest.approx(count / len(snap), abs=0.03)
    joint = Counter(zip(snap.instrument[snap.is_test].tolist(), snap.midi[snap.is_test].tolist(), strict=True))
    assert len(set(joint.values())) <= 2  # every (instrument, midi) pair gets its share, +-1


def test_split_is_reproducible_and_order_independent():
    arrays = synthetic_arrays(n=120)
    a = create_snapshot(*arrays, seed=42, feature_digest="f1")
    again = create_snapshot(*arrays, seed=42, feature_digest="f1")
    order = np.random.default_rng(1).permutation(120)
    shuffled = create_snapshot(*(x[order] for x in arrays), seed=42, feature_digest="f1")
    other_seed = create_snapshot(*arrays, seed=43, feature_digest="f1")

    assert list(a.paths) == sorted(a.paths)
    for b in (again, shuffled):
        assert b.digest == a.digest
        np.testing.assert_array_equal(b.paths, a.paths)
        np.testing.assert_array_equal(b.is_test, a.is_test)
        np.testing.assert_array_equal(b.pitch, a.pitch)
    assert not np.array_equal(other_seed.is_test, a.is_test)
    assert other_seed.digest != a.digest
    pitch_changed = arrays[4].copy()
    pitch_changed[0, 0, 0] += 1e-3
    assert create_snapshot(*arrays[:4], pitch_changed, arrays[5], seed=42).digest != a.digest


def test_rare_strata_fall_back_to_instrument():
    paths, midi, inst, fold, pitch, spec = synthetic_arrays(n=80)
    midi = midi.copy()
    midi[0], midi[1] = 30, 31  # two pairs seen once each: joined in their instrument's `rare` stratum
    keys = strata(inst, midi)
    assert keys[0] == f"{inst[0]}|rare" or keys[0] == "rare"
    assert Counter(keys.tolist())[keys[0]] >= 2
    snap = create_snapshot(paths, midi, inst, fold, pitch, spec)
    assert snap.stratify == "instrument+midi"
    # 16 notes = 8 (instrument, midi) pairs of 2, but only 4 test notes: stratify by instrument
    rows = slice(2, 18)
    small = create_snapshot(paths[rows], midi[rows], inst[rows], fold[rows], pitch[rows], spec[rows])
    assert small.stratify == "instrument"
    assert Counter(small.instrument[small.is_test].tolist()) == {"Vn": 2, "Fl": 2}


def test_save_load_round_trip_is_bit_exact(tmp_path):
    snap = create_snapshot(*synthetic_arrays(n=40), seed=5, feature_digest="abc", feature_preset="seed")
    path = snap.save(tmp_path / "snap.npz")
    with np.load(path, allow_pickle=False) as raw:  # plain arrays only
        assert raw["paths"].dtype.kind == "U"
    back = Snapshot.load(path)
    for name in ("paths", "midi", "instrument", "fold", "pitch", "instrument_spec", "is_test"):
        a, b = getattr(snap, name), getattr(back, name)
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == b.tobytes()
    assert (back.seed, back.test_size, back.digest, back.feature_digest, back.feature_preset, back.stratify) == (
        snap.seed,
        snap.test_size,
        snap.digest,
        snap.feature_digest,
        snap.feature_preset,
        snap.stratify,
    )


def test_labels_have_a_fixed_layout():
    snap = create_snapshot(*synthetic_arrays(n=40))
    y, names = snap.labels_for("midi")
    assert len(names) == len(MIDI_CLASSES) == 89 and names[0] == "A0" and names[-1] == "C#8"
    assert max(i.midi_high for i in INSTRUMENTS) == MIDI_CLASSES[-1]  # every TinySOL note has a class
    assert [MIDI_CLASSES[i] for i in y] == snap.midi.tolist()
    y, names = snap.labels_for("instrument")
    assert names == list(INSTRUMENT_ABBRS)
    assert [names[i] for i in y] == snap.instrument.tolist()
    assert snap.inputs_for("instrument") is snap.instrument_spec


def _default_preset_snapshot(seed: int, **kwargs):
    """40 rows of random spectrograms in the "default" preset's shapes; (snapshot, config, its arrays)."""
    from instropitch.audio.features import get_preset

    config = get_preset("default")
    paths, midi, inst, fold, _, _ = synthetic_arrays(n=40)
    rng = np.random.default_rng(seed)
    pitch = rng.normal(size=(40, *config.pitch.shape)).astype(np.float32)
    spec = rng.normal(size=(40, *config.instrument.shape)).astype(np.float32)
    arrays = (paths, midi, inst, fold, pitch, spec)
    return create_snapshot(*arrays, feature_preset="default", **kwargs), config, arrays


def test_the_note_relative_input_is_centred_on_each_rows_labelled_note():
    from instropitch.audio.inputs import note_relative

    snap, config, arrays = _default_preset_snapshot(4)
    x = snap.inputs_for("instrument+harmonics")
    bands = config.instrument.n_bands
    assert x.shape == (40, config.instrument.n_frames, bands + 72)
    np.testing.assert_array_equal(x[:, :, :bands], snap.instrument_spec)
    np.testing.assert_array_equal(x[:, :, bands:], note_relative(snap.pitch, snap.midi, config.pitch))
    with pytest.raises(ValueError, match="names none"):
        create_snapshot(*arrays).inputs_for("instrument+harmonics")


def test_a_lowpass_recipe_fits_with_each_rows_own_band_frequencies():
    """A note-centred input loses its own bands under one cut-off: the rows carry their frequencies to the fit."""
    from instropitch.audio.inputs import band_frequencies
    from instropitch.ml import heldout
    from instropitch.ml.fitting import model_rows

    snap, config, _ = _default_preset_snapshot(5, source=np.array(["a", "b"] * 20))
    recipe = {
        "name": "lp",
        "label": "instrument",
        "input": "instrument+harmonics",
        "features": "default",
        "architecture": {"conv_blocks": [{"filters": 4, "kernel": 3, "pool": 4}], "dense": [8]},
        "training": {"epochs": 1, "batch_size": 16, "early_stopping": None, "augmentation": {"lowpass": 0.5}},
    }
    spec = parse_spec(recipe)
    rows = model_rows(spec, snap)
    np.testing.assert_array_equal(rows.band_hz, band_frequencies(spec.input, config, snap.midi))
    assert model_rows(parse_spec({**recipe, "training": {"epochs": 1}}), snap).band_hz is None
    answers = heldout.fit(spec, snap, "a", epochs=1)
    assert answers.proba.shape == (20, len(INSTRUMENTS)) and np.all(snap.source[answers.rows] == "a")


def test_bad_rows_are_refused():
    paths, midi, inst, fold, pitch, spec = synthetic_arrays(n=20)
    with pytest.raises(ValueError, match="unique"):
        create_snapshot(np.array([paths[0]] * 20), midi, inst, fold, pitch, spec)
    with pytest.raises(ValueError, match="unknown instrument"):
        create_snapshot(paths, midi, np.array(["Kazoo"] * 20), fold, pitch, spec)
    with pytest.raises(ValueError, match="outside 21..109"):
        create_snapshot(paths, np.full(20, 120), inst, fold, pitch, spec)
    with pytest.raises(ValueError, match="rows"):
        create_snapshot(paths, midi[:-1], inst, fold, pitch, spec)


def folds_case():
    """Real TinySOL names: G1 resampled from F#1 (R100u), G#1 fine-tuned (T16u), A1 resampled down from A#1."""
    rows = [  # path, midi, fold
        ("Brass/Bass_Tuba/ordinario/BTb-ord-F#1-pp-N-N.wav", 30, 2),
        ("Brass/Bass_Tuba/ordinario/BTb-ord-G1-pp-N-R100u.wav", 31, 4),  # origin in fold 2
        ("Brass/Bass_Tuba/ordinario/BTb-ord-G#1-pp-N-T16u.wav", 32, 3),  # tuned, not a neighbour
        ("Brass/Bass_Tuba/ordinario/BTb-ord-A1-pp-N-R100d.wav", 33, 0),  # origin A#1, same fold
        ("Brass/Bass_Tuba/ordinario/BTb-ord-A#1-pp-N-N.wav", 34, 0),
        ("Brass/Bass_Tuba/ordinario/BTb-ord-B1-pp-N-N.wav", 35, 1),
        ("Brass/Bass_Tuba/ordinario/BTb-ord-C2-pp-N-N.wav", 36, 4),
        ("Brass/Bass_Tuba/ordinario/BTb-ord-F#1-ff-N-N.wav", 30, 4),  # another take: not G1's origin
    ]
    n = len(rows)
    paths, midi, fold = (np.array(c) for c in zip(*rows, strict=True))
    rng = np.random.default_rng(0)
    pitch = rng.normal(size=(n, *PITCH_SHAPE)).astype(np.float32)
    spec = rng.normal(size=(n, *INSTRUMENT_SHAPE)).astype(np.float32)
    return paths, midi, np.array(["BTb"] * n), fold, pitch, spec


def test_fold_split_tests_on_one_fold_and_never_splits_a_resampled_pair():
    paths, midi, inst, fold, pitch, spec = folds_case()
    snap = create_snapshot(paths, midi, inst, fold, pitch, spec, test_fold=4)
    kept = {p.rsplit("/", 1)[-1]: bool(t) for p, t in zip(snap.paths, snap.is_test, strict=True)}
    # G1 (fold 4) is F#1 (fold 2) shifted a semitone: testing on it would test on a training note
    assert "BTb-ord-G1-pp-N-R100u.wav" not in kept
    assert kept == {
        "BTb-ord-F#1-pp-N-N.wav": False,
        "BTb-ord-G#1-pp-N-T16u.wav": False,
        "BTb-ord-A1-pp-N-R100d.wav": False,  # with its origin, on the same side
        "BTb-ord-A#1-pp-N-N.wav": False,
        "BTb-ord-B1-pp-N-N.wav": False,
        "BTb-ord-C2-pp-N-N.wav": True,
        "BTb-ord-F#1-ff-N-N.wav": True,
    }
    assert snap.stratify == "fold 4" and snap.test_size == pytest.approx(2 / 7)
    assert (snap.fold[snap.is_test] == 4).all() and (snap.fold[~snap.is_test] != 4).all()
    # the same pair in another fold's split: G1 is now a training note with its origin in the test part
    fold2 = create_snapshot(paths, midi, inst, fold, pitch, spec, test_fold=2)
    assert not any(p.endswith("G1-pp-N-R100u.wav") for p in fold2.paths)
    # a split where both sit on the training side keeps the pair
    fold1 = create_snapshot(paths, midi, inst, fold, pitch, spec, test_fold=1)
    assert any(p.endswith("G1-pp-N-R100u.wav") for p in fold1.paths) and len(fold1) == 8
    with pytest.raises(ValueError, match="no row is in fold 7"):
        create_snapshot(paths, midi, inst, fold, pitch, spec, test_fold=7)


def test_resampled_pairs_are_matched_within_their_own_source_only():
    paths, midi, inst, fold, pitch, spec = folds_case()
    two = lambda a: np.concatenate([a, a])  # noqa: E731
    fold_b = fold.copy()
    fold_b[0] = 4  # in source b, F#1 sits with G1 in fold 4
    source = np.array(["a"] * len(paths) + ["b"] * len(paths))
    snap = create_snapshot(
        two(paths),
        two(midi),
        two(inst),
        np.concatenate([fold, fold_b]),
        two(pitch),
        two(spec),
        source=source,
        test_fold=4,
    )
    g1 = [s for s, p in zip(snap.source, snap.paths, strict=True) if p.endswith("G1-pp-N-R100u.wav")]
    assert g1 == ["b"]  # dropped in a (origin in train), kept in b (origin in the test fold too)
