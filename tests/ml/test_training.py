"""Snapshots, the CNN builder and `train_and_log` on a tiny learnable synthetic problem.

The problem: a bright band across a noisy dB spectrogram, its frequency position set by
the label. Any working CNN learns it in a few epochs, so failures here are wiring bugs.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from support import ROOT
from support.mlflow_store import throwaway_store
from support.models import INSTRUMENT_SHAPE, PITCH_SHAPE, synthetic_arrays

from instropitch.ml.snapshot import (
    MIDI_CLASSES,
    Snapshot,
    create_snapshot,
    download_snapshot,
    log_snapshot,
    strata,
)
from instropitch.modelspec import load_spec, parse_spec
from instropitch.tinysol import INSTRUMENT_ABBRS, INSTRUMENTS

MODELS = ROOT / "models"

TINY_YAML = """
# A third recipe, written by the test: it must train with no code change.
name: tiny
label: midi
input: pitch
features: synthetic
architecture:
  conv_blocks:
    - {filters: 8, kernel: 3, pool: 2}
    - {filters: 16, kernel: 3, pool: [2, 1]}
  batch_norm: true
  pooling: time_avg
  dense: [16]
  dropout: 0.1
training:
  epochs: 6
  batch_size: 16
  learning_rate: 0.01
  validation_split: 0.2
  seed: 7
  early_stopping: {monitor: val_loss, patience: 3}
  augmentation: {gain_db: 3, noise: 0.5, time_shift: 1}
"""

SEED_ARCHITECTURE = {
    "conv_blocks": [{"filters": 32}, {"filters": 64}, {"filters": 128}],
    "pooling": "flatten",
    "dense": [128],
    "dropout": 0.5,
}


# ------------------------------------------------------------------------ snapshot


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


# --------------------------------------------------------------------------- CNN


@pytest.mark.parametrize(
    ("recipe", "shape", "n_classes"),
    [("pitch", (44, 96), 89), ("instrument", (44, 128), 14), ("seed", (44, 128), 14), ("pitch", (3, 20), 89)],
)
def test_build_model_shapes(recipe, shape, n_classes):
    from instropitch.ml.cnn import build_model

    if recipe == "seed":
        spec = parse_spec(
            {"name": "seed", "label": "instrument", "input": "instrument", "architecture": SEED_ARCHITECTURE}
        )
    else:
        spec = load_spec(MODELS / f"{recipe}.yaml")
    model = build_model(spec, shape, n_classes, input_mean=-50.0, input_std=20.0)
    assert model.input_shape == (None, *shape)
    assert model.output_shape == (None, n_classes)
    probs = np.asarray(model(np.full((2, *shape), -50.0, dtype=np.float32), training=False))
    assert probs.shape == (2, n_classes)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert model.optimizer is not None and model.loss is not None


def test_group_norm_reads_each_example_alone_in_training_as_at_inference():
    """No batch statistics: a note is answered the same alone or among others, training or not
    (batch norm's moving averages of augmented batches were the collapse's cause)."""
    from instropitch.ml.cnn import build_model

    architecture = {**SEED_ARCHITECTURE, "batch_norm": False, "group_norm": 4, "dropout": 0.0}
    spec = parse_spec({"name": "gn", "label": "instrument", "input": "instrument", "architecture": architecture})
    model = build_model(spec, (12, 16), 14, input_mean=-50.0, input_std=20.0)
    assert sum(type(layer).__name__ == "GroupNormalization" for layer in model.layers) == 3
    batch = np.random.default_rng(0).normal(-50.0, 20.0, (5, 12, 16)).astype(np.float32)
    alone = np.asarray(model(batch[:1], training=True))
    among = np.asarray(model(batch, training=True))[:1]
    served = np.asarray(model(batch, training=False))[:1]
    np.testing.assert_allclose(alone, among, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(alone, served, rtol=1e-5, atol=1e-6)


def test_weight_decay_shrinks_the_weights_apart_from_the_gradient():
    """`training.weight_decay` trains with AdamW: a step with a zero gradient still pulls every kernel
    towards zero by learning_rate x weight_decay; without it (Adam) such a step moves nothing."""
    import keras

    from instropitch.ml.cnn import build_model, compile_model

    moved = {}
    for decay in (0.0, 0.5):
        training = {"learning_rate": 0.01, "weight_decay": decay, "early_stopping": None}
        spec = parse_spec(
            {
                "name": "wd",
                "label": "instrument",
                "input": "instrument",
                "architecture": SEED_ARCHITECTURE,
                "training": training,
            }
        )
        model = build_model(spec, (12, 16), 14, input_mean=-50.0, input_std=20.0)
        compile_model(model, spec)
        kernel = model.trainable_variables[0]
        before = np.asarray(kernel).copy()
        model.optimizer.apply_gradients([(keras.ops.zeros_like(kernel), kernel)])
        moved[decay] = (type(model.optimizer).__name__, np.asarray(kernel) / before)
    assert moved[0.0][0] == "Adam" and np.allclose(moved[0.0][1], 1.0)
    assert moved[0.5][0] == "AdamW" and np.allclose(moved[0.5][1], 1 - 0.01 * 0.5)


ONEDNN_ON = "oneDNN custom operations are on"
"""What TensorFlow logs at import when its oneDNN kernels are on."""


@pytest.mark.parametrize(("setting", "on"), [(None, True), ("0", False)])
def test_tensorflow_runs_onednn_kernels_unless_the_user_turned_them_off(setting, on):
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "0"  # let TensorFlow say which kernels it runs
    if setting is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = setting
    script = "from instropitch.ml.cnn import configure_tensorflow; configure_tensorflow(); import tensorflow"
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert (ONEDNN_ON in out.stderr) is on, out.stderr


def test_augmentation_runs_only_in_training():
    from instropitch.ml.cnn import make_dataset

    spec = parse_spec(
        {
            "name": "aug",
            "label": "instrument",
            "input": "instrument",
            "architecture": {"conv_blocks": [{"filters": 4}]},
            "training": {"batch_size": 8, "augmentation": {"gain_db": 6, "noise": 1, "time_shift": 2, "freq_shift": 2}},
        }
    )
    x = np.random.default_rng(0).normal(-60, 5, (8, *INSTRUMENT_SHAPE)).astype(np.float32)
    y = np.arange(8) % 3
    ((xt, _),) = make_dataset(x, y, spec, 14, training=True, seed=1).take(1)
    ((xe, ye),) = make_dataset(x, y, spec, 14, training=False).take(1)
    assert xt.shape == xe.shape == x.shape
    np.testing.assert_array_equal(np.asarray(xe), x)  # evaluation data untouched, in order
    np.testing.assert_array_equal(np.asarray(ye), y)
    assert not np.allclose(np.sort(np.asarray(xt).ravel()), np.sort(x.ravel()))


def test_mixup_trains_with_soft_labels():
    from instropitch.ml.cnn import build_model, make_dataset

    spec = parse_spec(
        {
            "name": "mix",
            "label": "instrument",
            "input": "instrument",
            "architecture": {"conv_blocks": [{"filters": 4}], "dense": []},
            "training": {"batch_size": 8, "augmentation": {"mixup": True, "gain_db": 1}},
        }
    )
    x = np.random.default_rng(0).normal(-60, 5, (16, *INSTRUMENT_SHAPE)).astype(np.float32)
    y = np.arange(16) % 3
    ((_, soft),) = make_dataset(x, y, spec, 14, training=True, seed=1).take(1)
    assert soft.shape == (8, 14)
    np.testing.assert_allclose(np.asarray(soft).sum(axis=1), 1.0, rtol=1e-5)
    model = build_model(spec, INSTRUMENT_SHAPE, 14, input_mean=-60.0, input_std=5.0)
    history = model.fit(make_dataset(x, y, spec, 14, training=True, seed=1), epochs=1, shuffle=False, verbose=0).history
    assert np.isfinite(history["loss"][0])
    assert model.evaluate(make_dataset(x, y, spec, 14, training=False), verbose=0, return_dict=True)["accuracy"] >= 0


def test_reduce_lr_on_plateau_lowers_the_step_when_validation_stalls():
    from instropitch.ml.fitting import fit_model
    from instropitch.modelspec import SpecError

    recipe = {
        "name": "plateau",
        "label": "instrument",
        "input": "instrument",
        "architecture": {"conv_blocks": [{"filters": 2}], "dense": []},
        "training": {"batch_size": 16, "learning_rate": 0.01, "early_stopping": None},
    }
    assert parse_spec(recipe).training.reduce_lr_on_plateau is None  # off unless asked for
    with pytest.raises(SpecError, match="reduce_lr_on_plateau.factor"):
        parse_spec({**recipe, "training": {"reduce_lr_on_plateau": {"factor": 1.5}}})
    spec = parse_spec({**recipe, "training": {**recipe["training"], "reduce_lr_on_plateau": {"patience": 1}}})
    assert (spec.training.reduce_lr_on_plateau.factor, spec.training.reduce_lr_on_plateau.patience) == (0.5, 1)
    rng = np.random.default_rng(0)
    x = rng.normal(-60, 5, (32, *INSTRUMENT_SHAPE)).astype(np.float32)
    y = rng.integers(0, 3, 32)  # labels unrelated to the input: validation loss cannot keep improving
    model, history = fit_model(spec, x[:24], y[:24], x[24:], y[24:], 3, epochs=8)
    rates = history["learning_rate"]
    assert rates[0] == pytest.approx(0.01) and min(rates) <= 0.005 + 1e-9
    assert min(rates) >= 0.01 / 64 - 1e-9  # floored at learning_rate / 64


def test_cosine_schedule_falls_from_the_rate_to_its_floor_over_the_epochs():
    from instropitch.ml.fitting import COSINE_FLOOR, cosine_rate, fit_model
    from instropitch.modelspec import SpecError

    rates = [cosine_rate(0.01, 5, epoch) for epoch in range(5)]
    assert rates[0] == pytest.approx(0.01) and rates[-1] == pytest.approx(0.01 * COSINE_FLOOR)
    assert rates[2] == pytest.approx(0.01 * (1 + COSINE_FLOOR) / 2)  # half way: the mean of both ends
    assert all(a > b for a, b in zip(rates, rates[1:], strict=False))
    assert cosine_rate(0.01, 5, 9) == pytest.approx(0.01 * COSINE_FLOOR)  # past the end: stays at the floor
    assert cosine_rate(0.01, 1, 0) == pytest.approx(0.01)

    recipe = {
        "name": "cosine",
        "label": "instrument",
        "input": "instrument",
        "architecture": {"conv_blocks": [{"filters": 2}], "dense": []},
        "training": {"batch_size": 16, "learning_rate": 0.01, "early_stopping": None, "lr_schedule": "cosine"},
    }
    spec = parse_spec(recipe)
    assert spec.training.lr_schedule == "cosine"
    assert parse_spec({**recipe, "training": {"epochs": 3}}).training.lr_schedule == "constant"  # the default
    with pytest.raises(SpecError, match="lr_schedule"):
        parse_spec({**recipe, "training": {"lr_schedule": "linear"}})
    with pytest.raises(SpecError, match="not both"):
        parse_spec({**recipe, "training": {**recipe["training"], "reduce_lr_on_plateau": {"patience": 1}}})
    rng = np.random.default_rng(0)
    x = rng.normal(-60, 5, (32, *INSTRUMENT_SHAPE)).astype(np.float32)
    y = rng.integers(0, 3, 32)
    _, history = fit_model(spec, x[:24], y[:24], x[24:], y[24:], 3, epochs=4)
    np.testing.assert_allclose(history["learning_rate"], [cosine_rate(0.01, 4, e) for e in range(4)], rtol=1e-5)


def test_fit_logs_a_line_per_epoch(caplog):
    """What `make demo` shows of a training as it runs (Keras itself fits silently)."""
    from instropitch.ml.fitting import fit_model

    spec = parse_spec(
        {
            "name": "quiet",
            "label": "instrument",
            "input": "instrument",
            "architecture": {"conv_blocks": [{"filters": 2}], "dense": []},
            "training": {"batch_size": 16, "early_stopping": None},
        }
    )
    rng = np.random.default_rng(0)
    x = rng.normal(-60, 5, (32, *INSTRUMENT_SHAPE)).astype(np.float32)
    y = rng.integers(0, 3, 32)
    with caplog.at_level(logging.INFO, logger="instropitch.ml.fitting"):
        _, history = fit_model(spec, x[:24], y[:24], x[24:], y[24:], 3, epochs=2)
    lines = [r.getMessage() for r in caplog.records if r.name == "instropitch.ml.fitting"]
    assert lines == [
        f"quiet epoch {n + 1}/2: "
        + " ".join(f"{key} {history[key][n]:.4f}" for key in ("loss", "accuracy", "val_loss", "val_accuracy"))
        for n in range(2)
    ]


# ------------------------------------------------------------------ train_and_log


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    """A throw-away MLflow store (sqlite + local artifacts) for this module."""
    root = tmp_path_factory.mktemp("mlflow")
    with throwaway_store(root):
        yield root


@pytest.fixture(scope="module")
def trained(tracking):
    import mlflow

    from instropitch.ml.training import train_and_log

    recipe = tracking / "tiny.yaml"
    recipe.write_text(textwrap.dedent(TINY_YAML))
    spec = load_spec(recipe)
    snap = create_snapshot(*synthetic_arrays(n=160), seed=1, feature_digest="feat123", feature_preset="synthetic")
    parent = mlflow.MlflowClient().create_run(mlflow.get_experiment_by_name("instropitch").experiment_id)
    result = train_and_log(spec, snap, parent_run_id=parent.info.run_id)
    return spec, snap, result, parent.info.run_id


def test_train_and_log_learns_and_registers(trained):
    spec, snap, result, _ = trained
    assert result.version == "1"
    assert result.model_uri == "models:/instropitch-tiny/1"
    assert result.test_accuracy >= 0.9
    for key in ("test_accuracy", "test_macro_f1", "test_note_accuracy", "test_octave_accuracy", "training_time_s"):
        assert key in result.metrics
    assert result.metrics["test_note_accuracy"] >= result.test_accuracy
    assert result.metrics["training_time_s"] > 0


def test_run_records_params_curves_tags_and_parent(trained):
    import mlflow

    spec, snap, result, parent_id = trained
    client = mlflow.MlflowClient()
    run = client.get_run(result.run_id)
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    assert params["architecture.conv_blocks.1.pool"] == "[2, 1]"
    assert params["training.augmentation.time_shift"] == "1"
    assert int(params["data.n_test"]) == snap.n_test
    assert int(params["data.n_fit"]) + int(params["data.n_val"]) == len(snap) - snap.n_test
    assert metrics["test_accuracy"] == pytest.approx(result.test_accuracy)
    for key in ("test_macro_f1", "test_note_accuracy", "test_octave_accuracy", "training_time_s"):
        assert key in metrics
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        history = client.get_metric_history(result.run_id, key)
        assert [m.step for m in history] == list(range(len(history))) and len(history) >= 1
    assert tags["data_digest"] == snap.digest
    assert tags["feature_digest"] == "feat123"
    assert tags["instropitch.class_names"].split(",")[:2] == ["A0", "A#0"]
    assert tags["registered_version"] == "1"
    assert tags["mlflow.parentRunId"] == parent_id

    version = client.get_model_version("instropitch-tiny", "1")
    assert version.run_id == result.run_id
    assert version.tags["data_digest"] == snap.digest
    assert version.tags["instropitch.label"] == "midi"


def test_run_artifacts(trained):
    import mlflow

    spec, snap, result, _ = trained
    client = mlflow.MlflowClient()
    names = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"classification_report.csv", "confusion_matrix.png", "misclassified.png", "labels.json", "spec"} <= names
    assert "reliability_diagram.png" in names
    labels = json.loads(
        Path(mlflow.artifacts.download_artifacts(run_id=result.run_id, artifact_path="labels.json")).read_text()
    )
    assert labels["calibration"]["fitted_on"] == "validation"  # one source: the validation rows
    assert labels["calibration"]["n"] == int(client.get_run(result.run_id).data.params["data.n_val"])
    assert [a.path for a in client.list_artifacts(result.run_id, "spec")] == ["spec/tiny.yaml"]
    local = Path(mlflow.artifacts.download_artifacts(run_id=result.run_id, artifact_path="classification_report.csv"))
    report = local.read_text().splitlines()
    assert report[0].startswith("class,precision,recall,f1-score,support")
    assert any(line.startswith("C4,") for line in report)
    for png in ("confusion_matrix.png", "misclassified.png", "reliability_diagram.png"):
        data = Path(mlflow.artifacts.download_artifacts(run_id=result.run_id, artifact_path=png)).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"


def test_logged_model_has_signature_example_and_labels(trained):
    import mlflow

    from instropitch.ml.registry import load_model

    spec, snap, result, _ = trained
    info = mlflow.models.get_model_info(result.model_uri)
    assert list(info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == [-1, *PITCH_SHAPE]
    assert list(info.signature.outputs.to_dict()[0]["tensor-spec"]["shape"]) == [-1, len(MIDI_CLASSES)]
    assert info.saved_input_example_info is not None
    assert info.metadata["instropitch"]["class_names"][39] == "C4"
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{result.model_uri}/extra_files/labels.json"))
    assert json.loads(local.read_text())["class_values"][39] == 60

    loaded = load_model(result.model_uri)
    test_x = snap.pitch[snap.is_test]
    assert np.mean(loaded.predict(test_x) == snap.midi[snap.is_test]) == pytest.approx(result.test_accuracy)


def test_snapshot_travels_as_an_mlflow_artifact(tracking):
    snap = create_snapshot(*synthetic_arrays(n=30), feature_digest="x")
    uri = log_snapshot(snap)
    assert uri.startswith("runs:/") and uri.endswith("/snapshot/snapshot.npz")
    back = download_snapshot(uri)
    assert back.digest == snap.digest
    assert back.pitch.tobytes() == snap.pitch.tobytes()


def test_features_preset_mismatch_is_refused(tracking):
    from instropitch.ml.training import train_and_log

    spec = parse_spec(
        {"name": "x", "label": "midi", "input": "pitch", "architecture": {"conv_blocks": [{"filters": 4}]}}
    )
    snap = create_snapshot(*synthetic_arrays(n=20), feature_preset="seed")
    with pytest.raises(ValueError, match="features preset 'default'"):
        train_and_log(spec, snap)


def test_model_paths_find_reference_recipes_only_by_name():
    from instropitch.modelspec import models_dir
    from instropitch.pipeline.training import model_paths

    everything = [Path(p).name for p in model_paths()]
    assert everything == ["instrument.yaml", "pitch.yaml"]  # the nightly set: models/*.yaml only
    (seed,) = model_paths(["reference/seed-pitch"])
    assert Path(seed) == models_dir() / "reference" / "seed-pitch.yaml"
    with pytest.raises(ValueError, match="unknown model"):
        model_paths(["reference/nope"])


def test_run_names_its_snapshot_as_dataset_input_and_scores_its_logged_model(trained):
    import mlflow

    spec, snap, result, _ = trained
    client = mlflow.MlflowClient()
    (dataset_input,) = client.get_run(result.run_id).inputs.dataset_inputs
    assert dataset_input.dataset.digest == snap.digest[:16]
    assert dataset_input.dataset.source_type == "instropitch_snapshot"
    assert {t.key: t.value for t in dataset_input.tags}["mlflow.data.context"] == "training"
    model_id = mlflow.models.get_model_info(f"runs:/{result.run_id}/model").model_id
    model_metrics = {m.key: m.value for m in client.get_logged_model(model_id).metrics}
    assert model_metrics["test_accuracy"] == pytest.approx(result.test_accuracy)  # shown on the model's page


def test_a_run_left_running_by_a_killed_attempt_is_failed_by_the_retry(tracking):
    import mlflow

    from instropitch.ml.tracking import TAG_FAILURE_REASON
    from instropitch.ml.training import train_and_log

    recipe = tracking / "tiny.yaml"
    recipe.write_text(textwrap.dedent(TINY_YAML))
    spec = load_spec(recipe)
    snap = create_snapshot(*synthetic_arrays(n=60), seed=2, feature_digest="feat123", feature_preset="synthetic")
    client = mlflow.MlflowClient()
    experiment_id = mlflow.get_experiment_by_name("instropitch").experiment_id
    parent = client.create_run(experiment_id).info.run_id
    killed = client.create_run(experiment_id, tags={"mlflow.parentRunId": parent, "instropitch.model": "tiny"})
    other_model = client.create_run(experiment_id, tags={"mlflow.parentRunId": parent, "instropitch.model": "other"})

    retry = train_and_log(spec, snap, parent_run_id=parent, epochs_override=0, register=False)

    stale = client.get_run(killed.info.run_id)
    assert stale.info.status == "FAILED"
    assert "earlier attempt" in stale.data.tags[TAG_FAILURE_REASON]
    assert client.get_run(other_model.info.run_id).info.status == "RUNNING"  # another task's run is not ours
    assert client.get_run(retry.run_id).info.status == "FINISHED"


def test_the_experiment_opens_on_training_runs(tmp_path):
    import mlflow

    from instropitch.ml.tracking import ensure_experiment

    with throwaway_store(tmp_path):  # an experiment created before the kind tag existed
        experiment_id = ensure_experiment("instropitch")
        assert mlflow.get_experiment(experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
        fresh = ensure_experiment("another")
        assert mlflow.get_experiment(fresh).tags["mlflow.experimentKind"] == "custom_model_development"


def test_the_parent_run_fails_when_a_task_failed_even_without_a_child_run(tracking):
    import mlflow

    from instropitch.ml.tracking import TAG_FAILURE_REASON
    from instropitch.pipeline.training import close_parent

    client = mlflow.MlflowClient()
    experiment_id = mlflow.get_experiment_by_name("instropitch").experiment_id

    def parent_with_finished_child() -> str:
        parent = client.create_run(experiment_id).info.run_id
        child = client.create_run(experiment_id, tags={"mlflow.parentRunId": parent})
        client.set_terminated(child.info.run_id)
        return parent

    ok = parent_with_finished_child()
    assert close_parent({"parent_run_id": ok}, {"snapshot": "success", "train_0": "success"}) == "FINISHED"
    failed = parent_with_finished_child()  # train_1 died before its child run existed
    states = {"snapshot": "success", "train_0": "success", "train_1": "failed", "promote_1": "upstream_failed"}
    assert close_parent({"parent_run_id": failed}, states) == "FAILED"
    run = client.get_run(failed)
    assert run.info.status == "FAILED"
    assert run.data.tags[TAG_FAILURE_REASON] == "failed tasks: promote_1, train_1"
    empty = client.create_run(experiment_id).info.run_id
    assert close_parent({"parent_run_id": empty}, {}) == "FAILED"
    assert "no model was trained" in client.get_run(empty).data.tags[TAG_FAILURE_REASON]


# ------------------------------------------------------------------ TinySOL's folds


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


def test_synthetic_tones_are_spectrograms_of_every_midi_class():
    from instropitch.audio.features import get_preset
    from instropitch.ml.fitting import synthetic_tone_rows

    recipe = {"name": "tones", "label": "midi", "input": "pitch", "architecture": {"conv_blocks": [{"filters": 4}]}}
    spec = parse_spec({**recipe, "training": {"synthetic_tones": 1, "seed": 4}})
    assert synthetic_tone_rows(parse_spec(recipe), "default") is None  # asked for none
    x, y = synthetic_tone_rows(spec, "default")
    assert x.shape == (len(MIDI_CLASSES), *get_preset("default").pitch.shape)
    assert sorted(y.tolist()) == list(range(len(MIDI_CLASSES)))  # one tone per class
    assert np.isfinite(x).all()
    again, _ = synthetic_tone_rows(spec, "default")
    np.testing.assert_array_equal(x, again)  # seeded
    with pytest.raises(ValueError, match="feature preset"):
        synthetic_tone_rows(spec, "")


@pytest.mark.parametrize(
    ("precision", "flags", "policy"),
    [
        ("auto", {"avx2", "avx512_bf16"}, "mixed_bfloat16"),
        ("auto", {"avx2", "amx_bf16"}, "mixed_bfloat16"),
        ("auto", {"avx2", "avx512f"}, "float32"),
        ("auto", set(), "float32"),
        ("float32", {"avx512_bf16"}, "float32"),
        ("mixed_bfloat16", set(), "mixed_bfloat16"),
    ],
)
def test_compute_policy_reads_auto_off_the_cpu(precision, flags, policy):
    from instropitch.ml.cnn import compute_policy

    assert compute_policy(precision, flags) == policy


def test_a_fit_in_bfloat16_keeps_a_float32_model_that_answers_as_it_did():
    """Mixed precision is for the fit only: what is saved and exported computes in float32."""
    from instropitch.ml.cnn import as_float32, build_model
    from instropitch.ml.fitting import fit_model

    recipe = {
        "name": "mixed",
        "label": "instrument",
        "input": "instrument",
        "architecture": {"conv_blocks": [{"filters": 4, "pool": 2}], "dense": [8], "pooling": "flatten"},
        "training": {"batch_size": 16, "early_stopping": None, "precision": "mixed_bfloat16"},
    }
    spec = parse_spec(recipe)
    assert spec.training.precision == "mixed_bfloat16"
    assert parse_spec({**recipe, "training": {}}).training.precision == "float32"  # the default
    rng = np.random.default_rng(0)
    x = rng.normal(-60, 5, (32, *INSTRUMENT_SHAPE)).astype(np.float32)
    y = rng.integers(0, 3, 32)

    mixed = build_model(spec, INSTRUMENT_SHAPE, 3, input_mean=-60.0, input_std=5.0, dtype_policy="mixed_bfloat16")
    assert mixed.get_layer("conv1").compute_dtype == "bfloat16"
    assert mixed.get_layer("probabilities").compute_dtype == "float32"
    plain = as_float32(mixed, spec)
    assert {layer.dtype_policy.name for layer in plain.layers} == {"float32"}
    # the same weights and input scaling: the answers differ only by bfloat16's rounding
    np.testing.assert_allclose(plain.predict(x, verbose=0), mixed.predict(x, verbose=0), atol=0.02)
    assert as_float32(plain, spec) is plain

    model, history = fit_model(spec, x[:24], y[:24], x[24:], y[24:], 3, epochs=2)
    assert len(history["loss"]) == 2 and np.isfinite(history["loss"]).all()
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
    assert model.optimizer.built


def test_precision_must_be_a_known_policy():
    from instropitch.modelspec import SpecError

    recipe = {
        "name": "p",
        "label": "instrument",
        "input": "instrument",
        "architecture": {"conv_blocks": [{"filters": 2}]},
    }
    with pytest.raises(SpecError, match="training.precision: must be one of float32, mixed_bfloat16, auto"):
        parse_spec({**recipe, "training": {"precision": "bf16"}})


def test_members_are_fitted_apart_and_joined_into_one_model_of_their_mean_logits(tmp_path):
    """`training.members`: the joined model answers softmax(mean of the members' logits), keeps an
    `embedding` for the foreignness, saves, loads and converts as one network does."""
    import keras

    from instropitch.ml.cnn import build_model, join_members
    from instropitch.ml.fitting import fit_model
    from instropitch.ml.foreignness import embed, fitted_reference, with_foreignness
    from instropitch.ml.portable import run_onnx_outputs, to_onnx
    from instropitch.modelspec import SpecError

    recipe = {
        "name": "pair",
        "label": "instrument",
        "input": "instrument",
        "architecture": {"conv_blocks": [{"filters": 4, "pool": 2}], "dense": [6], "pooling": "flatten"},
        "training": {"batch_size": 16, "early_stopping": None, "members": 2},
    }
    spec = parse_spec(recipe)
    assert spec.training.members == 2 and parse_spec({**recipe, "training": {}}).training.members == 1
    with pytest.raises(SpecError, match="training.members"):
        parse_spec({**recipe, "training": {"members": 0}})
    rng = np.random.default_rng(0)
    x = rng.normal(-60, 5, (32, *INSTRUMENT_SHAPE)).astype(np.float32)
    y = rng.integers(0, 3, 32)

    one = parse_spec({**recipe, "training": {**recipe["training"], "members": 1}})
    first, _ = fit_model(one, x[:24], y[:24], x[24:], y[24:], 3, epochs=2)
    joined, history = fit_model(spec, x[:24], y[:24], x[24:], y[24:], 3, epochs=2)
    assert len(history["loss"]) == 2
    assert [layer.name for layer in joined.layers][1:] == ["member1", "member2", "embedding", "probabilities"]
    # member 1 is the one-network fit (same seed); member 2 starts elsewhere
    np.testing.assert_allclose(joined.get_layer("member1").get_weights()[0], first.get_weights()[0], atol=1e-6)
    assert not np.allclose(joined.get_layer("member2").get_weights()[0], first.get_weights()[0])

    kernel, bias = joined.get_layer("probabilities").get_weights()
    assert kernel.shape == (12, 3)
    proba = joined.predict(x, verbose=0)
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    # two networks joined: the softmax of their mean logits (the normalised geometric mean of their answers)
    pair = [build_model(one, INSTRUMENT_SHAPE, 3, input_mean=-60.0, input_std=5.0) for _ in range(2)]
    logs = np.mean([np.log(m.predict(x, verbose=0)) for m in pair], axis=0)
    expected = np.exp(logs) / np.exp(logs).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(join_members(pair, one).predict(x, verbose=0), expected, atol=1e-5)
    assert join_members([first], one) is first

    probabilities, embeddings = embed(joined, x)
    assert embeddings.shape == (32, 12)
    np.testing.assert_allclose(probabilities, proba, atol=1e-6)
    reference = fitted_reference(joined, x[:24], y[:24], x[24:])
    exported = with_foreignness(joined, reference)
    onnx_proba, onnx_foreign = run_onnx_outputs(to_onnx(exported), x)
    np.testing.assert_allclose(onnx_proba, proba, atol=1e-4)
    np.testing.assert_allclose(onnx_foreign, reference.distance(embeddings), rtol=1e-3, atol=1e-3)

    joined.save(tmp_path / "joined.keras")
    loaded = keras.saving.load_model(tmp_path / "joined.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), proba, atol=1e-6)


def test_band_shift_average_answers_the_mean_logits_of_shifted_looks(tmp_path):
    """`architecture.band_shift_average`: the model reads its input moved by -K..K bands (edges at the
    note's floor, as the augmentation moves it) and answers softmax(mean logits); one graph of built-in
    layers that keeps an `embedding`, saves, loads and converts as one network does."""
    import keras

    from instropitch.ml.cnn import average_band_shifts, build_model, shift_bands
    from instropitch.ml.fitting import fit_model
    from instropitch.ml.foreignness import embed, fitted_reference, with_foreignness
    from instropitch.ml.portable import run_onnx_outputs, to_onnx
    from instropitch.modelspec import SpecError

    recipe = {
        "name": "looks",
        "label": "instrument",
        "input": "instrument",
        "architecture": {"conv_blocks": [{"filters": 4, "pool": 2}], "dense": [6], "band_shift_average": 2},
        "training": {"batch_size": 16, "early_stopping": None},
    }
    spec = parse_spec(recipe)
    assert spec.architecture.band_shift_average == 2
    with pytest.raises(SpecError, match="architecture.band_shift_average"):
        parse_spec({**recipe, "architecture": {**recipe["architecture"], "band_shift_average": -1}})
    rng = np.random.default_rng(1)
    x = rng.normal(-60, 5, (32, *INSTRUMENT_SHAPE)).astype(np.float32)

    def moved(x: np.ndarray, k: int) -> np.ndarray:  # what `cnn._shift` does at step k
        out = np.roll(x, k, axis=2)
        floor = x.min(axis=(1, 2), keepdims=True)
        if k > 0:
            out[:, :, :k] = floor
        elif k < 0:
            out[:, :, k:] = floor
        return out

    inputs = keras.Input(INSTRUMENT_SHAPE)
    looks = keras.Model(inputs, [shift_bands(inputs, k) for k in (-2, 1)])
    for got, k in zip(looks.predict(x, verbose=0), (-2, 1), strict=True):
        np.testing.assert_allclose(got, moved(x, k), atol=1e-4)

    plain = parse_spec({**recipe, "architecture": {**recipe["architecture"], "band_shift_average": 0}})
    network = build_model(plain, INSTRUMENT_SHAPE, 3, input_mean=-60.0, input_std=5.0)
    assert average_band_shifts(network, plain) is network
    averaged = average_band_shifts(network, spec)
    logs = np.mean([np.log(network.predict(moved(x, k), verbose=0)) for k in range(-2, 3)], axis=0)
    expected = np.exp(logs) / np.exp(logs).sum(axis=1, keepdims=True)
    proba = averaged.predict(x, verbose=0)
    np.testing.assert_allclose(proba, expected, atol=1e-5)
    assert not np.allclose(proba, network.predict(x, verbose=0), atol=1e-3)  # the looks differ

    fitted, history = fit_model(spec, x[:24], rng.integers(0, 3, 24), x[24:], rng.integers(0, 3, 8), 3, epochs=1)
    assert len(history["loss"]) == 1 and fitted.get_layer("embedding").name == "embedding"
    probabilities, embeddings = embed(fitted, x)
    assert embeddings.shape == (32, 6)
    reference = fitted_reference(fitted, x[:24], np.zeros(24, int), x[24:])
    onnx_proba, onnx_foreign = run_onnx_outputs(to_onnx(with_foreignness(fitted, reference)), x)
    np.testing.assert_allclose(onnx_proba, probabilities, atol=1e-4)
    np.testing.assert_allclose(onnx_foreign, reference.distance(embeddings), rtol=1e-3, atol=1e-3)
    fitted.save(tmp_path / "looks.keras")
    loaded = keras.saving.load_model(tmp_path / "looks.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), probabilities, atol=1e-6)
