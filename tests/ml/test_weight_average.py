"""`training.weight_average`: the model ends with the running average of its weights, validated as such."""

from __future__ import annotations

import numpy as np
import pytest

from instropitch.ml.cnn import configure_tensorflow

configure_tensorflow()

import keras  # noqa: E402  (after the TensorFlow settings)

from instropitch.ml.weight_average import WARMUP_STEPS, WeightAverage  # noqa: E402


def tiny_fit(momentum: float | None, epochs: int, patience: int | None = None):
    """A linear model fitted by SGD; `seen` is its initial weights, then its weights after every step.
    None: without averaging."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype("float32")
    y = (x @ np.array([1.0, -2.0, 0.5], dtype="float32"))[:, None] + 0.1 * rng.normal(size=(64, 1)).astype("float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    seen: list[list[np.ndarray]] = [[v.numpy().copy() for v in model.trainable_variables]]  # the initial weights
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: seen.append([v.numpy().copy() for v in model.trainable_variables])
    )
    val = (x[:16], y[:16])
    callbacks = [record] if momentum is None else [WeightAverage(momentum, val), record]
    if patience:
        callbacks.append(keras.callbacks.EarlyStopping(patience=patience, restore_best_weights=True))
    history = model.fit(x, y, batch_size=16, epochs=epochs, shuffle=False, verbose=0, callbacks=callbacks).history
    return model, history, seen, val


def test_the_model_ends_with_the_average_of_every_steps_weights_and_validates_it():
    model, history, seen, val = tiny_fit(0.9, epochs=3)
    average = [np.array(w) for w in seen[0]]
    for n, weights in enumerate(seen[1:], start=1):
        m = min(0.9, n / (WARMUP_STEPS + n))
        average = [m * a + (1 - m) * w for a, w in zip(average, weights, strict=True)]
    ended = [v.numpy() for v in model.trainable_variables]
    assert all(np.allclose(a, e, atol=1e-6) for a, e in zip(average, ended, strict=True))
    assert not np.allclose(ended[0], seen[-1][0])  # not the last step's weights
    assert len(history["val_loss"]) == 3  # every epoch validated, on the average
    assert history["val_loss"][-1] == pytest.approx(model.evaluate(*val, verbose=0), rel=1e-5)
    # each epoch trains on from the weights the steps left, not from the average put in for validation
    _, _, plain, _ = tiny_fit(None, epochs=3)
    assert all(
        np.array_equal(a, b) for step, other in zip(seen, plain, strict=True) for a, b in zip(step, other, strict=True)
    )


def test_early_stopping_keeps_the_best_average():
    model, history, _, val = tiny_fit(0.95, epochs=6, patience=2)
    assert min(history["val_loss"]) == pytest.approx(model.evaluate(*val, verbose=0), rel=1e-5)


def test_a_momentum_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match="momentum"):
        WeightAverage(1.0, None)


def test_the_recipe_key_takes_a_momentum_below_one(project_root):
    import yaml

    from instropitch.modelspec import SpecError, parse_spec

    recipe = yaml.safe_load((project_root / "models" / "instrument.yaml").read_text())
    spec = parse_spec(recipe)  # the instrument recipe asks for it
    assert spec.training.weight_average == 0.99 and spec.to_params()["training.weight_average"] == "0.99"
    del recipe["training"]["weight_average"]
    assert parse_spec(recipe).training.weight_average == 0.0  # off unless asked
    recipe["training"]["weight_average"] = 1.0
    with pytest.raises(SpecError, match="weight_average"):
        parse_spec(recipe)
