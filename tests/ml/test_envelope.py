"""`architecture.envelope`: a linear read of the instrument spectrogram's summaries, added to the network's logits."""

from __future__ import annotations

import numpy as np
import pytest
from support.models import INSTRUMENT_SHAPE, three_classes

from instropitch.ml.envelope import ATTACK_FRAMES, TAIL_FRAMES, UNSEEN_CLASS_LOGIT, fit_read, summaries
from instropitch.modelspec import SpecError, parse_spec

RECIPE = {
    "name": "envelope",
    "label": "instrument",
    "input": "instrument",
    "architecture": {"conv_blocks": [{"filters": 4, "pool": 2}], "dense": [8], "pooling": "flatten", "dropout": 0.0},
    "training": {"batch_size": 16, "early_stopping": None, "learning_rate": 0.01},
}


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_summaries_are_each_bands_mean_spread_attack_and_tail_of_the_leading_bands():
    x = np.zeros((2, 20, 6), np.float32)
    x[0, :, 0] = np.arange(20)  # a rising band
    x[1, :ATTACK_FRAMES, 1] = 4.0  # energy at the start only
    x[:, :, 4:] = 99.0  # bands past the instrument spectrogram are not read
    s = summaries(x, 4)
    assert s.shape == (2, 16)
    mean, deviation, attack, tail = s[:, :4], s[:, 4:8], s[:, 8:12], s[:, 12:]
    assert mean[0, 0] == pytest.approx(9.5) and deviation[0, 0] == pytest.approx(5.0)
    assert attack[0, 0] == pytest.approx(3.5) and tail[0, 0] == pytest.approx(np.mean(np.arange(20 - TAIL_FRAMES, 20)))
    assert attack[1, 1] == 4.0 and tail[1, 1] == 0.0 and mean[1, 1] == pytest.approx(4.0 * ATTACK_FRAMES / 20)
    assert np.all(s[:, [2, 3, 6, 7]] == 0.0)


def test_the_folded_read_answers_as_the_fitted_regression_and_keeps_classes_it_never_saw_unlikely():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (60, 20, 5)).astype(np.float32)
    y = np.repeat([0, 1, 3], 20)  # class 2 of 4 has no row
    x[y == 1, :, 0] += 2.0
    x[y == 3, :5, 2] += 2.0
    kernel, bias = fit_read(x, y, 4, 5, c=0.5)
    assert kernel.shape == (20, 4) and bias.shape == (4,)
    reference = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=3000)).fit(summaries(x, 5), y)
    ours = softmax(summaries(x, 5) @ kernel + bias)
    np.testing.assert_allclose(ours[:, [0, 1, 3]], reference.predict_proba(summaries(x, 5)), atol=1e-4)
    assert bias[2] == UNSEEN_CLASS_LOGIT and np.all(kernel[:, 2] == 0) and ours[:, 2].max() < 1e-9

    two = fit_read(x[:40], y[:40], 2, 5, c=0.5)  # scikit-learn's binary form, spread over two logits
    pair = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=3000)).fit(summaries(x[:40], 5), y[:40])
    np.testing.assert_allclose(
        softmax(summaries(x[:40], 5) @ two[0] + two[1]), pair.predict_proba(summaries(x[:40], 5)), atol=1e-4
    )
    one_kernel, one_bias = fit_read(x[:20], y[:20], 3, 5, c=0.5)
    assert np.all(one_kernel == 0) and one_bias.tolist() == [0.0, UNSEEN_CLASS_LOGIT, UNSEEN_CLASS_LOGIT]


def test_the_recipe_option_is_checked():
    spec = parse_spec({**RECIPE, "architecture": {**RECIPE["architecture"], "envelope": {"weight": 0.25}}})
    assert (spec.architecture.envelope.weight, spec.architecture.envelope.c) == (0.25, 0.1)
    assert parse_spec(RECIPE).architecture.envelope is None
    assert spec.to_params()["architecture.envelope.weight"] == "0.25"
    with pytest.raises(SpecError, match="architecture.envelope.weight"):
        parse_spec({**RECIPE, "architecture": {**RECIPE["architecture"], "envelope": {"weight": 0}}})
    with pytest.raises(SpecError, match="architecture.envelope.c"):
        parse_spec({**RECIPE, "architecture": {**RECIPE["architecture"], "envelope": {"c": -1}}})
    with pytest.raises(SpecError, match="not for input 'pitch'"):
        parse_spec({**RECIPE, "input": "pitch", "architecture": {**RECIPE["architecture"], "envelope": {}}})


def test_a_fit_with_an_envelope_read_adds_its_logits_in_one_graph_and_keeps_the_networks_embedding(tmp_path):
    """The model's answers are softmax(network logits + weight x read logits) in the saved Keras model and its ONNX
    export; the embedding `ml.foreignness` reads is the network's, as without the read."""
    import keras

    from instropitch.ml.envelope import summary_layers
    from instropitch.ml.fitting import fit_model
    from instropitch.ml.foreignness import NETWORK_LOGITS, embed, fitted_reference, with_foreignness
    from instropitch.ml.portable import run_onnx_outputs, to_onnx

    weight = 0.5
    spec = parse_spec({**RECIPE, "architecture": {**RECIPE["architecture"], "envelope": {"weight": weight}}})
    plain = parse_spec(RECIPE)
    x, y = three_classes(1)
    read, _ = fit_model(spec, x[:40], y[:40], x[40:], y[40:], 3, epochs=2)
    alone, _ = fit_model(plain, x[:40], y[:40], x[40:], y[40:], 3, epochs=2)

    probabilities, embeddings = embed(read, x)
    plain_probabilities, plain_embeddings = embed(alone, x)
    np.testing.assert_allclose(embeddings, plain_embeddings, rtol=1e-5, atol=1e-5)  # same seed, same network
    network = read.get_layer(NETWORK_LOGITS).get_weights()
    np.testing.assert_allclose(network[0], alone.get_layer("probabilities").get_weights()[0])
    kernel, bias = fit_read(x, y, 3, INSTRUMENT_SHAPE[1], 0.1, seed=plain.training.seed)
    expected = softmax(
        embeddings @ network[0] + network[1] + weight * (summaries(x, INSTRUMENT_SHAPE[1]) @ kernel + bias)
    )
    np.testing.assert_allclose(probabilities, expected, rtol=1e-4, atol=1e-5)
    assert not np.allclose(probabilities, plain_probabilities, atol=1e-3)

    graph = keras.Model(read.inputs, summary_layers(read.inputs[0], INSTRUMENT_SHAPE[1] - 8))
    np.testing.assert_allclose(graph.predict(x, verbose=0), summaries(x, INSTRUMENT_SHAPE[1] - 8), rtol=1e-5, atol=1e-4)

    read.save(tmp_path / "read.keras")
    loaded = keras.models.load_model(tmp_path / "read.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), probabilities, rtol=1e-5, atol=1e-6)
    reference = fitted_reference(read, x[:40], y[:40], x[40:])
    exported, distance = run_onnx_outputs(to_onnx(with_foreignness(read, reference), check=x[:4]), x)
    np.testing.assert_allclose(exported, probabilities, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(distance, reference.distance(plain_embeddings), rtol=1e-3, atol=1e-3)
