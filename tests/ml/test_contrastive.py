"""`training.contrastive`: a supervised contrastive loss on the embedding, beside the cross-entropy."""

from __future__ import annotations

import numpy as np
import pytest
from support.models import INSTRUMENT_SHAPE, three_classes, tiny_recipe

from instropitch.modelspec import SpecError, parse_spec

RECIPE = tiny_recipe("pull")


def test_the_loss_is_low_when_each_class_sits_together_and_ignores_notes_alone_in_their_class():
    from instropitch.ml.contrastive import supervised_contrastive_loss

    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2, 3], 8)
    centres = rng.normal(0, 1, (4, 16))
    together = centres[labels] + rng.normal(0, 0.05, (32, 16))
    apart = rng.normal(0, 1, (32, 16))
    low, high = (float(supervised_contrastive_loss(e.astype(np.float32), labels)) for e in (together, apart))
    # together: each note finds its 7 classmates and nothing else, log 7 (the least there is); apart: about log 31,
    # every other note of the batch as likely
    assert low < np.log(7) + 0.05 and high > np.log(31) - 0.5
    assert float(supervised_contrastive_loss((10 * together).astype(np.float32), labels)) == pytest.approx(low)
    # a note alone in its class has nothing to be pulled to: it adds nothing (here, nothing at all)
    assert float(supervised_contrastive_loss(apart.astype(np.float32), np.arange(32))) == 0.0


def test_a_contrastive_fit_steps_the_recipes_own_network_and_keeps_it_plain():
    """The term changes the weights (same seed, same data), and what comes back is the recipe's network: it saves,
    converts and answers like any other; the history's loss stays the cross-entropy."""
    from instropitch.ml.contrastive import ContrastiveFit
    from instropitch.ml.fitting import fit_model
    from instropitch.ml.portable import run_onnx_outputs, to_onnx

    spec = parse_spec({**RECIPE, "training": {**RECIPE["training"], "contrastive": 0.5}})
    plain = parse_spec(RECIPE)
    assert spec.training.contrastive == 0.5 and plain.training.contrastive == 0.0
    with pytest.raises(SpecError, match="training.contrastive"):
        parse_spec({**RECIPE, "training": {"contrastive": -1}})
    x, y = three_classes(1)
    pulled, history = fit_model(spec, x[:40], y[:40], x[40:], y[40:], 3, epochs=3)
    alone, _ = fit_model(plain, x[:40], y[:40], x[40:], y[40:], 3, epochs=3)
    assert type(pulled) is type(alone) and not isinstance(pulled, ContrastiveFit)
    assert {"loss", "accuracy", "val_loss"} <= set(history)
    assert not np.allclose(
        pulled.get_layer("probabilities").get_weights()[0], alone.get_layer("probabilities").get_weights()[0]
    )
    answers = pulled.predict(x[40:], verbose=0)
    (onnx_answers,) = run_onnx_outputs(to_onnx(pulled, check=x[:4]), x[40:])
    np.testing.assert_allclose(onnx_answers, answers, rtol=1e-4, atol=1e-5)


def test_a_projection_head_is_fitted_beside_the_network_and_not_kept():
    """With `contrastive_head` the loss reads a head's output: the network's weights move differently from the
    loss on the embedding itself, the head's own weights move too, and none of the head is in the model kept."""
    import keras

    from instropitch.ml.cnn import build_model
    from instropitch.ml.contrastive import ContrastiveFit, contrastive_fit
    from instropitch.ml.fitting import fit_model

    with pytest.raises(SpecError, match="training.contrastive_head"):
        parse_spec({**RECIPE, "training": {"contrastive_head": 16}})
    headed = parse_spec({**RECIPE, "training": {**RECIPE["training"], "contrastive": 0.5, "contrastive_head": 16}})
    bare = parse_spec({**RECIPE, "training": {**RECIPE["training"], "contrastive": 0.5}})
    assert headed.training.contrastive_head == 16 and bare.training.contrastive_head == 0
    x, y = three_classes(2)
    with_head, _ = fit_model(headed, x[:40], y[:40], x[40:], y[40:], 3, epochs=2)
    without, _ = fit_model(bare, x[:40], y[:40], x[40:], y[40:], 3, epochs=2)
    assert not any(layer.name == "projection_head" for layer in with_head.layers)
    assert len(with_head.weights) == len(without.weights)
    assert not np.allclose(
        with_head.get_layer("probabilities").get_weights()[0], without.get_layer("probabilities").get_weights()[0]
    )

    keras.utils.set_random_seed(3)
    model = build_model(headed, INSTRUMENT_SHAPE, 3)
    fit = contrastive_fit(model, headed)
    assert isinstance(fit, ContrastiveFit) and fit.head is not None
    before = [w.copy() for w in fit.head.get_weights()]
    fit.fit(x[:32], y[:32], batch_size=16, epochs=1, verbose=0, shuffle=False)
    assert any(not np.allclose(a, b) for a, b in zip(before, fit.head.get_weights(), strict=True))
    # the saved model's optimizer steps the network alone: no slot of the head's (8 -> 8 -> 16) in it
    assert (8, 16) not in {tuple(v.shape) for v in model.optimizer.variables}
    assert (8, 16) in {tuple(v.shape) for v in fit.head_optimizer.variables}
