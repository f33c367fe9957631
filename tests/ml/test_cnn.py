"""`ml.cnn`: the networks a recipe builds, their datasets and augmentation, and what is averaged in the graph.

Tiny inputs: failures here are wiring bugs, not accuracy.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from support import ROOT
from support.models import INSTRUMENT_SHAPE

from instropitch.modelspec import load_spec, parse_spec

MODELS = ROOT / "models"


SEED_ARCHITECTURE = {
    "conv_blocks": [{"filters": 32}, {"filters": 64}, {"filters": 128}],
    "pooling": "flatten",
    "dense": [128],
    "dropout": 0.5,
}


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
