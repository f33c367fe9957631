"""`architecture.envelope`: a read of the instrument spectrogram's summaries (linear or steps), added to the network's
logits."""

from __future__ import annotations

import numpy as np
import pytest
from support.models import INSTRUMENT_SHAPE, three_classes, tiny_recipe

from instropitch.ml.envelope import (
    ATTACK_FRAMES,
    TAIL_FRAMES,
    UNSEEN_CLASS_LOGIT,
    LinearRead,
    StepRead,
    accuracy_alone,
    fit_read,
    summaries,
)
from instropitch.modelspec import Envelope, SpecError, parse_spec

RECIPE = tiny_recipe("envelope")


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


def four_classes_one_missing() -> tuple[np.ndarray, np.ndarray]:
    """60 notes of classes 0, 1 and 3 of 4 (class 2 has no row), told apart by a band's level or its attack."""
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (60, 20, 5)).astype(np.float32)
    y = np.repeat([0, 1, 3], 20)
    x[y == 1, :, 0] += 2.0
    x[y == 3, :5, 2] += 2.0
    return x, y


def test_the_folded_linear_read_answers_as_the_fitted_regression_and_keeps_classes_it_never_saw_unlikely():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = four_classes_one_missing()
    linear = Envelope(read="linear", c=0.5)
    read = fit_read(x, y, 4, 5, linear)
    assert isinstance(read, LinearRead) and read.kernel.shape == (20, 4) and read.bias.shape == (4,)
    reference = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=3000)).fit(summaries(x, 5), y)
    ours = softmax(read.logits(summaries(x, 5)))
    np.testing.assert_allclose(ours[:, [0, 1, 3]], reference.predict_proba(summaries(x, 5)), atol=1e-4)
    assert read.bias[2] == UNSEEN_CLASS_LOGIT and np.all(read.kernel[:, 2] == 0) and ours[:, 2].max() < 1e-9

    two = fit_read(x[:40], y[:40], 2, 5, linear)  # scikit-learn's binary form, spread over two logits
    pair = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=3000)).fit(summaries(x[:40], 5), y[:40])
    np.testing.assert_allclose(
        softmax(two.logits(summaries(x[:40], 5))), pair.predict_proba(summaries(x[:40], 5)), atol=1e-4
    )
    one = fit_read(x[:20], y[:20], 3, 5, linear)
    assert np.all(one.kernel == 0) and one.bias.tolist() == [0.0, UNSEEN_CLASS_LOGIT, UNSEEN_CLASS_LOGIT]


def test_the_folded_step_read_answers_as_the_boosted_stumps_with_one_step_per_distinct_test():
    from sklearn.ensemble import HistGradientBoostingClassifier

    x, y = four_classes_one_missing()
    steps = Envelope(read="steps", rounds=30, learning_rate=0.3)
    s = summaries(x, 5)
    read = fit_read(x, y, 4, 5, steps, seed=7)
    assert isinstance(read, StepRead) and read.values.shape == (len(read.feature), 4)
    tests = list(zip(read.feature.tolist(), read.threshold.tolist(), strict=True))
    assert len(set(tests)) == len(tests) and 1 <= len(tests) <= 30 * 3
    reference = HistGradientBoostingClassifier(
        max_depth=1, max_iter=30, learning_rate=0.3, l2_regularization=1.0, early_stopping=False, random_state=7
    ).fit(s.astype(np.float64), y)
    np.testing.assert_allclose(read.logits(s)[:, [0, 1, 3]], reference.decision_function(s), atol=1e-4)
    assert read.bias[2] == UNSEEN_CLASS_LOGIT and np.all(read.values[:, 2] == 0)
    assert (read.logits(s).argmax(axis=1) == y).mean() > 0.9

    two = fit_read(x[:40], y[:40], 2, 5, steps)  # one tree a round for two classes: spread over two logits
    pair = HistGradientBoostingClassifier(
        max_depth=1, max_iter=30, learning_rate=0.3, l2_regularization=1.0, early_stopping=False, random_state=0
    ).fit(s[:40].astype(np.float64), y[:40])
    logits = two.logits(s[:40])
    np.testing.assert_allclose(logits[:, 1] - logits[:, 0], pair.decision_function(s[:40]), atol=1e-4)
    np.testing.assert_allclose(logits.sum(axis=1), 0.0, atol=1e-4)
    one = fit_read(x[:20], y[:20], 3, 5, steps)  # nothing to tell apart: a constant, as for the linear read
    assert one.bias.tolist() == [0.0, UNSEEN_CLASS_LOGIT, UNSEEN_CLASS_LOGIT]


def test_a_threshold_between_two_neighbouring_float32_values_keeps_both_on_their_side():
    from instropitch.ml.envelope import float32_at_most

    low = np.nextafter(np.float32(1.5), np.float32(2))  # odd last bit: the midpoint rounds (to even) up
    high = np.nextafter(low, np.float32(2))
    middle = (float(low) + float(high)) / 2  # scikit-learn's threshold: to the nearest float32 it is `high`
    assert np.float32(middle) == high
    (t,) = float32_at_most(np.array([middle]))
    assert t.dtype == np.float32 and low <= t < high
    assert float32_at_most(np.array([0.25, -3.0])).tolist() == [0.25, -3.0]  # exact ones stay


def test_a_step_in_the_graph_holds_exactly_where_numpy_says_its_test_holds():
    """At, one float32 above and one below each threshold: the built-in layers give `StepRead.logits` (a step
    that counted in part near its threshold moved 18 % of a test split's answers)."""
    import keras

    from instropitch.ml.envelope import read_layers

    read = StepRead(
        feature=np.array([0, 1]),
        threshold=np.array([0.5, -1.25], np.float32),
        values=np.array([[1.0, 0.0], [0.0, 2.0]], np.float32),
        bias=np.array([0.25, -0.25], np.float32),
    )
    edges = [
        np.float32(0.5),
        np.nextafter(np.float32(0.5), np.float32(1)),
        np.nextafter(np.float32(0.5), np.float32(0)),
    ]
    s = np.array([[a, b, 7.0] for a in [*edges, -3.0, 3.0] for b in (-1.25, -1.0, -2.0)], np.float32)
    inputs = keras.Input((3,))
    graph = keras.Model(inputs, read_layers(inputs, read, 2.0))
    np.testing.assert_allclose(graph.predict(s, verbose=0), 2.0 * read.logits(s), atol=1e-6)
    assert read.logits(s[:1]).tolist() == [[1.25, 1.75]] and read.logits(s[3:4]).tolist() == [[0.25, 1.75]]


def test_the_recipe_option_is_checked():
    spec = parse_spec({**RECIPE, "architecture": {**RECIPE["architecture"], "envelope": {"weight": 0.25}}})
    assert spec.architecture.envelope == Envelope(weight=0.25, read="linear", c=0.1)
    assert parse_spec(RECIPE).architecture.envelope is None
    steps = {"read": "steps", "rounds": 40, "learning_rate": 0.1}
    parsed = parse_spec({**RECIPE, "architecture": {**RECIPE["architecture"], "envelope": steps}})
    assert parsed.architecture.envelope == Envelope(weight=0.5, read="steps", rounds=40, learning_rate=0.1)
    assert spec.to_params()["architecture.envelope.weight"] == "0.25"
    logged = {k: v for k, v in parsed.to_params().items() if k.startswith("architecture.envelope.")}
    assert logged == {  # only what the read uses: no `c` beside steps
        "architecture.envelope.weight": "0.5",
        "architecture.envelope.read": "steps",
        "architecture.envelope.rounds": "40",
        "architecture.envelope.learning_rate": "0.1",
    }
    assert "architecture.envelope.rounds" not in spec.to_params()
    with pytest.raises(SpecError, match="architecture.envelope.weight"):
        parse_spec({**RECIPE, "architecture": {**RECIPE["architecture"], "envelope": {"weight": 0}}})
    with pytest.raises(SpecError, match="architecture.envelope.c"):
        parse_spec({**RECIPE, "architecture": {**RECIPE["architecture"], "envelope": {"c": -1}}})
    with pytest.raises(SpecError, match="architecture.envelope.read: must be one of linear, steps"):
        parse_spec({**RECIPE, "architecture": {**RECIPE["architecture"], "envelope": {"read": "trees"}}})
    with pytest.raises(SpecError, match="architecture.envelope.c: is for read: linear, not steps"):
        parse_spec({**RECIPE, "architecture": {**RECIPE["architecture"], "envelope": {"read": "steps", "c": 1}}})
    with pytest.raises(SpecError, match="architecture.envelope.rounds: is for read: steps, not linear"):
        parse_spec({**RECIPE, "architecture": {**RECIPE["architecture"], "envelope": {"rounds": 10}}})
    with pytest.raises(SpecError, match="architecture.envelope.learning_rate"):
        parse_spec(
            {**RECIPE, "architecture": {**RECIPE["architecture"], "envelope": {"read": "steps", "learning_rate": 0}}}
        )
    with pytest.raises(SpecError, match="not for input 'pitch'"):
        parse_spec({**RECIPE, "input": "pitch", "architecture": {**RECIPE["architecture"], "envelope": {}}})


@pytest.mark.parametrize("envelope", [{"read": "linear"}, {"read": "steps", "rounds": 20}])
def test_a_fit_with_an_envelope_read_adds_its_logits_in_one_graph_and_keeps_the_networks_embedding(tmp_path, envelope):
    """The model's answers are softmax(network logits + weight x read logits) in the saved Keras model and its ONNX
    export; the embedding `ml.foreignness` reads is the network's, as without the read."""
    import keras

    from instropitch.ml.envelope import summary_layers
    from instropitch.ml.fitting import fit_model
    from instropitch.ml.foreignness import NETWORK_LOGITS, embed, fitted_reference, with_foreignness
    from instropitch.ml.portable import run_onnx_outputs, to_onnx

    weight = 0.5
    spec = parse_spec(
        {**RECIPE, "architecture": {**RECIPE["architecture"], "envelope": {"weight": weight, **envelope}}}
    )
    plain = parse_spec(RECIPE)
    x, y = three_classes(1)
    read, _ = fit_model(spec, x[:40], y[:40], x[40:], y[40:], 3, epochs=2)
    alone, _ = fit_model(plain, x[:40], y[:40], x[40:], y[40:], 3, epochs=2)

    probabilities, embeddings = embed(read, x)
    plain_probabilities, plain_embeddings = embed(alone, x)
    np.testing.assert_allclose(embeddings, plain_embeddings, rtol=1e-5, atol=1e-5)  # same seed, same network
    network = read.get_layer(NETWORK_LOGITS).get_weights()
    np.testing.assert_allclose(network[0], alone.get_layer("probabilities").get_weights()[0])
    fitted = fit_read(x, y, 3, INSTRUMENT_SHAPE[1], spec.architecture.envelope, seed=plain.training.seed)
    expected = softmax(embeddings @ network[0] + network[1] + weight * fitted.logits(summaries(x, INSTRUMENT_SHAPE[1])))
    np.testing.assert_allclose(probabilities, expected, rtol=1e-4, atol=1e-5)
    assert not np.allclose(probabilities, plain_probabilities, atol=1e-3)
    sides = accuracy_alone(read, x, y)  # each side of the sum by itself, as training logs them
    assert sides == {
        "network": pytest.approx(np.mean((embeddings @ network[0] + network[1]).argmax(axis=1) == y)),
        "read": pytest.approx(np.mean(fitted.logits(summaries(x, INSTRUMENT_SHAPE[1])).argmax(axis=1) == y)),
    }
    assert accuracy_alone(alone, x, y) == {}  # no read

    graph = keras.Model(read.inputs, summary_layers(read.inputs[0], INSTRUMENT_SHAPE[1] - 8))
    np.testing.assert_allclose(graph.predict(x, verbose=0), summaries(x, INSTRUMENT_SHAPE[1] - 8), rtol=1e-5, atol=1e-4)

    read.save(tmp_path / "read.keras")
    loaded = keras.models.load_model(tmp_path / "read.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), probabilities, rtol=1e-5, atol=1e-6)
    reference = fitted_reference(read, x[:40], y[:40], x[40:])
    exported, distance = run_onnx_outputs(to_onnx(with_foreignness(read, reference), check=x[:4]), x)
    np.testing.assert_allclose(exported, probabilities, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(distance, reference.distance(plain_embeddings), rtol=1e-3, atol=1e-3)
