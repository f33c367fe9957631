"""Foreignness: the distance of a note's embedding to the nearest class, in numpy and baked into the models."""

from __future__ import annotations

import numpy as np
import pytest

from instropitch.ml.foreignness import fit_reference


def clusters(n_per: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three classes in 8 dimensions, stretched unevenly (the covariance matters)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 6, size=(3, 8))
    stretch = np.linspace(0.3, 3.0, 8)
    y = np.repeat(np.arange(3), n_per)
    return centres[y] + rng.normal(size=(len(y), 8)) * stretch, y


def test_validation_like_notes_sit_near_one_and_foreign_ones_far():
    e, y = clusters()
    val, _ = clusters(seed=1)
    ref = fit_reference(e, y, clusters(seed=2)[0])
    assert np.median(ref.distance(val)) == pytest.approx(1.0, rel=0.25)
    far = e[:50] + 40.0
    assert ref.distance(far).min() > 20 * np.median(ref.distance(val))


def test_the_distance_is_mahalanobis_a_stretched_axis_counts_less():
    e, y = clusters()
    ref = fit_reference(e, y, e)
    mean0 = e[y == 0].mean(axis=0)
    along_wide, along_narrow = mean0.copy(), mean0.copy()
    along_wide[7] += 6.0  # the axis with spread 3
    along_narrow[0] += 6.0  # the axis with spread 0.3
    d = ref.distance(np.stack([mean0, along_wide, along_narrow]))
    assert d[0] < d[1] < d[2]


def test_a_class_without_training_notes_still_gets_a_mean():
    e, y = clusters()
    y = np.where(y == 2, 3, y)  # class 2 has no notes, class 3 does
    ref = fit_reference(e, y, e)
    assert ref.means.shape[0] == 4
    assert np.all(np.isfinite(ref.distance(e)))


def test_too_few_notes_are_refused():
    with pytest.raises(ValueError, match="at least 2"):
        fit_reference(np.zeros((1, 4)), np.array([0]), np.zeros((1, 4)))


def test_the_baked_output_equals_the_numpy_distance_in_keras_and_onnx():
    import keras

    from instropitch.ml.foreignness import OUTPUT_NAME, embed, fitted_reference, with_foreignness
    from instropitch.ml.portable import to_onnx
    from instropitch.serving.portable import OnnxModel

    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(6, 5), name="spectrogram")
    hidden = keras.layers.Dense(16, activation="relu", name="dense1")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="probabilities")(hidden))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(90, 6, 5)).astype(np.float32)
    y = np.repeat(np.arange(3), 30)
    ref = fitted_reference(model, x[:60], y[:60], x[60:])
    _, emb = embed(model, x)
    expected = ref.distance(emb)

    both = with_foreignness(model, ref)
    proba, foreign = both.predict(x, verbose=0)
    np.testing.assert_allclose(proba, model.predict(x, verbose=0), atol=1e-6)
    np.testing.assert_allclose(foreign, expected, rtol=1e-3, atol=1e-3)

    net = OnnxModel(to_onnx(both, check=x[:16]))
    assert net.answers_foreignness
    p, f = net.answer(x)
    np.testing.assert_allclose(f, expected, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(net(x), p)
    assert OUTPUT_NAME == "foreignness"

    plain = OnnxModel(to_onnx(model))
    assert not plain.answers_foreignness and plain.answer(x)[1] is None
