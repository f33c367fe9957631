"""Foreignness: the distance of a note's embedding to the nearest training note, in numpy and baked into the models."""

from __future__ import annotations

import numpy as np
import pytest

from instropitch.ml.foreignness import fit_reference


def clusters(n_per: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three classes in 8 dimensions, each around its own direction."""
    rng = np.random.default_rng(seed)
    centres = np.abs(np.random.default_rng(99).normal(0, 6, size=(3, 8)))
    y = np.repeat(np.arange(3), n_per)
    return centres[y] + rng.normal(size=(len(y), 8)), y


def test_validation_like_notes_sit_near_one_and_foreign_ones_far():
    e, _ = clusters()
    val, _ = clusters(seed=1)
    ref = fit_reference(e, clusters(seed=2)[0])
    assert np.median(ref.distance(val)) == pytest.approx(1.0, rel=0.25)
    far = -e[:50]  # the opposite direction
    assert ref.distance(far).min() > 20 * np.median(ref.distance(val))


def test_the_distance_is_to_the_nearest_training_note_whatever_the_length():
    e, _ = clusters()
    ref = fit_reference(e, clusters(seed=1)[0])
    np.testing.assert_allclose(ref.distance(e[:20]), 0.0, atol=1e-9)  # a training note is its own neighbour
    np.testing.assert_allclose(ref.distance(3.0 * e[:20]), 0.0, atol=1e-9)  # a louder copy: the same direction
    odd = e[:1] + np.eye(8)[0] * 2.0
    assert ref.distance(odd)[0] > 0.0


def test_many_training_notes_are_thinned_evenly(monkeypatch):
    from instropitch.ml import foreignness

    monkeypatch.setattr(foreignness, "MAX_NOTES", 50)
    e, _ = clusters()
    ref = fit_reference(e, e[:10])
    assert ref.notes.shape == (50, 8)
    np.testing.assert_allclose(np.linalg.norm(ref.notes, axis=1), 1.0)
    np.testing.assert_allclose(ref.notes[[0, -1]], foreignness.unit_rows(e[[0, -1]]))  # first and last kept


def test_no_training_notes_are_refused():
    with pytest.raises(ValueError, match="at least 1"):
        fit_reference(np.zeros((0, 4)), np.zeros((1, 4)))


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
    ref = fitted_reference(model, x[:60], x[60:])
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
