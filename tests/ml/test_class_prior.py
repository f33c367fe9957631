"""`architecture.logit_adjustment`: the fit rows' class mix taken partly back out of a model's logits."""

from __future__ import annotations

import numpy as np
import pytest
from support.models import three_classes, tiny_recipe

from instropitch.ml.class_prior import logit_adjustment
from instropitch.modelspec import SpecError, parse_spec

RECIPE = tiny_recipe("prior")
FIT = np.r_[0:16, 16:24, 32:36]  # three_classes' rows: 16 of class 0, 8 of class 1, 4 of class 2
VALIDATION = np.r_[40:44]  # 4 more of class 2: the model learns from shares 1/2, 1/4, 1/4


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def test_the_adjustment_is_minus_tau_log_share_centred_and_leaves_an_unseen_class_alone():
    y = np.array([0, 0, 0, 0, 1, 1, 3, 3])  # shares 1/2, 1/4, 0, 1/4 of four classes
    full = logit_adjustment(y, 4, 1.0)
    assert full[1] - full[0] == pytest.approx(np.log(2))  # a class half as common gains log 2
    assert full[3] == pytest.approx(full[1])
    assert full[2] == 0.0  # never seen: the model's own (low) logit decides
    assert full[[0, 1, 3]].sum() == pytest.approx(0.0)
    np.testing.assert_allclose(logit_adjustment(y, 4, 0.5), full / 2)
    np.testing.assert_array_equal(logit_adjustment(y, 4, 0.0), np.zeros(4))
    np.testing.assert_array_equal(logit_adjustment(np.array([2, 0, 1]), 3, 1.0), np.zeros(3))  # already even


@pytest.mark.parametrize("envelope", [None, {"read": "linear"}])
def test_a_fit_with_the_adjustment_answers_its_logits_moved_by_it_in_the_saved_and_exported_model(tmp_path, envelope):
    """The same fit with and without the key: log-probabilities apart by the adjustment (up to a constant per
    note), the embedding `ml.foreignness` reads unmoved; the model saved by Keras and its ONNX export agree."""
    import keras

    from instropitch.ml.fitting import fit_model
    from instropitch.ml.foreignness import embed
    from instropitch.ml.portable import run_onnx_outputs, to_onnx

    architecture = {**RECIPE["architecture"], "envelope": envelope}
    plain = parse_spec({**RECIPE, "architecture": architecture})
    spec = parse_spec({**RECIPE, "architecture": {**architecture, "logit_adjustment": 1.0}})
    x, y = three_classes(2)
    args = (x[FIT], y[FIT], x[VALIDATION], y[VALIDATION], 3)
    adjusted, _ = fit_model(spec, *args, epochs=2)
    alone, _ = fit_model(plain, *args, epochs=2)

    probabilities, embeddings = embed(adjusted, x)
    plain_probabilities, plain_embeddings = embed(alone, x)
    np.testing.assert_allclose(embeddings, plain_embeddings, rtol=1e-5, atol=1e-5)
    shift = logit_adjustment(np.concatenate([y[FIT], y[VALIDATION]]), 3, 1.0)
    assert shift[1] - shift[0] == pytest.approx(np.log(2))
    expected = np.exp(log_softmax(np.log(plain_probabilities) + shift))
    np.testing.assert_allclose(probabilities, expected, rtol=1e-4, atol=1e-6)
    assert np.mean(probabilities[:, 0]) < np.mean(plain_probabilities[:, 0])  # the common class leans less

    adjusted.save(tmp_path / "adjusted.keras")
    loaded = keras.models.load_model(tmp_path / "adjusted.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), probabilities, rtol=1e-5, atol=1e-6)
    (exported,) = run_onnx_outputs(to_onnx(adjusted, check=x[:4]), x)
    np.testing.assert_allclose(exported, probabilities, rtol=1e-4, atol=1e-5)


def test_the_recipe_key_is_checked_and_logged():
    spec = parse_spec({**RECIPE, "architecture": {**RECIPE["architecture"], "logit_adjustment": 0.5}})
    assert spec.architecture.logit_adjustment == 0.5
    assert spec.to_params()["architecture.logit_adjustment"] == "0.5"
    assert parse_spec(RECIPE).architecture.logit_adjustment == 0.0
    with pytest.raises(SpecError, match="architecture.logit_adjustment"):
        parse_spec({**RECIPE, "architecture": {**RECIPE["architecture"], "logit_adjustment": -0.5}})
