"""A linear read of the note's spectrum over time, added to the network's logits (`architecture.envelope`).

On a font it never heard the CNN errs one way, a logistic regression on four summaries of the instrument
spectrogram (each band's mean over the note, its mean absolute deviation, the mean of the first frames and of
the last) another: alone it is right on 36-49 % of held-out fonts' notes, yet its log-probabilities added to the
CNN's lift the CNN's 54.2 % to 56.9 % (four seeds, every one up; bench/RESULTS.md, "A linear read of the
spectrum beside the network"). It reads where the energy sits on the absolute frequency axis, which the network,
built to find patterns anywhere on it, weighs less.

The regression is fitted after the network, on the same rows (scikit-learn; L2; standardised summaries), then
folded into the model as built-in Keras layers: the model saved, exported to ONNX and served is one graph whose
`probabilities` are softmax(network logits + `weight` x regression logits). The network's embedding stays the
input of its own logits layer (`NETWORK_LOGITS`), where `ml.foreignness` reads it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from instropitch.ml.foreignness import NETWORK_LOGITS

if TYPE_CHECKING:
    import keras

    from instropitch.modelspec import ModelSpec

ATTACK_FRAMES = 8
"""Frames of the note's start summarised apart (~0.19 s at hop 512 / 22,050 Hz): the attack."""
TAIL_FRAMES = 12
"""Frames of the window's end summarised apart (~0.28 s): the sustain or the decay."""
SUMMARIES = 4
"""Per band: mean, mean absolute deviation, attack mean, tail mean."""
UNSEEN_CLASS_LOGIT = -30.0
"""The regression's logit for a class no fitted row has (the network has not learnt it either)."""


def summaries(x: np.ndarray, bands: int) -> np.ndarray:
    """(N, `SUMMARIES` x `bands`) of spectrograms `x` (N, frames, >= `bands`): the first `bands` bands' mean over
    the frames, mean absolute deviation from it, mean over the first and over the last frames."""
    s = np.asarray(x, dtype=np.float32)[:, :, :bands]
    mean = s.mean(axis=1)
    attack, tail = (min(n, s.shape[1]) for n in (ATTACK_FRAMES, TAIL_FRAMES))
    deviation = np.abs(s - mean[:, None, :]).mean(axis=1)
    return np.concatenate([mean, deviation, s[:, :attack].mean(axis=1), s[:, -tail:].mean(axis=1)], axis=1)


def fit_read(
    x: np.ndarray, y: np.ndarray, n_classes: int, bands: int, c: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(kernel (`SUMMARIES` x `bands`, `n_classes`), bias) of an L2 logistic regression (scikit-learn's `C` = `c`)
    on the standardised `summaries` of `x`, folded so that it reads the raw summaries: logits = s @ kernel + bias."""
    from sklearn.linear_model import LogisticRegression

    s = summaries(x, bands).astype(np.float64)
    mean, std = s.mean(axis=0), s.std(axis=0)
    std[std < 1e-6] = 1.0
    labels = np.asarray(y).astype(int)
    present = np.unique(labels)
    kernel = np.zeros((s.shape[1], n_classes))
    bias = np.full(n_classes, UNSEEN_CLASS_LOGIT)
    if len(present) == 1:  # nothing to tell apart: the one class seen
        bias[present[0]] = 0.0
        return kernel.astype(np.float32), bias.astype(np.float32)
    regression = LogisticRegression(C=c, max_iter=3000, random_state=seed).fit((s - mean) / std, labels)
    coef, intercept = regression.coef_, regression.intercept_
    if len(present) == 2:  # scikit-learn keeps one row for two classes: the second's logit over the first's
        coef, intercept = np.stack([-coef[0] / 2, coef[0] / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
    kernel[:, present] = (coef / std).T
    bias[present] = intercept - coef @ (mean / std)
    return kernel.astype(np.float32), bias.astype(np.float32)


def with_envelope(
    model: keras.Model, kernel: np.ndarray, bias: np.ndarray, bands: int, weight: float, spec: ModelSpec
) -> keras.Model:
    """`model` whose softmax reads its own logits plus `weight` x the regression's (`fit_read`), in one graph."""
    import keras
    from keras import layers

    from instropitch.ml.cnn import compile_model, embedding_layer

    inputs = keras.Input(shape=model.input_shape[1:], name="spectrogram", dtype="float32")
    network_weights = model.get_layer("probabilities").get_weights()
    own = layers.Dense(int(network_weights[1].shape[0]), name=NETWORK_LOGITS)
    logits = own(embedding_layer(model, "network")(inputs))
    read = layers.Dense(int(bias.shape[0]), name="envelope_logits")
    envelope = read(summary_layers(inputs, bands))
    outputs = layers.Activation("softmax", name="probabilities")(layers.Add(name="logits")([logits, envelope]))
    joined = keras.Model(inputs, outputs, name=model.name)
    own.set_weights(network_weights)
    read.set_weights([weight * kernel, weight * bias])
    compile_model(joined, spec)
    joined.optimizer.build(joined.trainable_variables)  # saves cleanly, as a fitted model does
    return joined


def summary_layers(x: Any, bands: int) -> Any:
    """`summaries` of `x` (N, frames, bands in all) in built-in layers (a saved model needs no code)."""
    from keras import layers

    frames, total = (int(n) for n in x.shape[1:])
    s = x
    if total > bands:  # the instrument spectrogram leads the input; the bands after it are not read
        s = layers.Permute((2, 1), name="envelope_by_band")(s)
        s = layers.Cropping1D((0, total - bands), name="envelope_bands")(s)
        s = layers.Permute((2, 1), name="envelope_by_frame")(s)
    mean = layers.GlobalAveragePooling1D(name="envelope_mean")(s)
    gap = layers.Subtract(name="envelope_gap")([s, layers.Reshape((1, bands), name="envelope_mean_frame")(mean)])
    size = layers.Add(name="envelope_size")(
        [layers.ReLU(name="envelope_above")(gap), layers.ReLU(name="envelope_below")(layers.Rescaling(-1.0)(gap))]
    )
    deviation = layers.GlobalAveragePooling1D(name="envelope_deviation")(size)
    attack, tail = (min(n, frames) for n in (ATTACK_FRAMES, TAIL_FRAMES))
    start = layers.GlobalAveragePooling1D(name="envelope_attack")(
        layers.Cropping1D((0, frames - attack), name="envelope_start")(s)
    )
    end = layers.GlobalAveragePooling1D(name="envelope_tail")(
        layers.Cropping1D((frames - tail, 0), name="envelope_end")(s)
    )
    return layers.Concatenate(name="envelope_summaries")([mean, deviation, start, end])
