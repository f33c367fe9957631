"""`ml.fitting`: fitting one recipe's networks (learning-rate schedules, the epoch log, precision, members,
generated tones).

The problem: a bright band across a noisy dB spectrogram, its frequency position set by the label. Any working
CNN learns it in a few epochs, so failures here are wiring bugs.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from support.models import INSTRUMENT_SHAPE

from instropitch.ml.snapshot import MIDI_CLASSES
from instropitch.modelspec import parse_spec


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
