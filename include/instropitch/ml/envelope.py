"""A read of the note's spectrum over time, added to the network's logits (`architecture.envelope`).

On a font it never heard the CNN errs one way, a simple model of four summaries of the instrument spectrogram
(each band's mean over the note, its mean absolute deviation, the mean of the first frames and of the last)
another: alone it is right on 36-49 % of held-out fonts' notes, yet its logits added to the CNN's lift it. It
reads where the energy sits on the absolute frequency axis, which the network, built to find patterns anywhere
on it, weighs less. Two reads (bench/RESULTS.md, four seeds, held-out mean / worst source, the CNN alone 54.2 /
51.2 %):

* `linear` (the instrument recipe's): an L2 logistic regression on the standardised summaries (56.9 / 52.3 %,
  "A linear read of the spectrum beside the network");
* `steps`: gradient-boosted depth-1 trees, i.e. a sum of steps, each adding to the classes' logits where one
  summary is at most a threshold (58.1 / 54.9 %, "Steps in place of the linear read"): a curve per summary where
  the regression has a line. It reads real recordings worse (the champion 58.4 -> 51.5 %, two seeds; not
  known why, perhaps a threshold learnt on rendered fonts transfers less than a slope). Deeper trees read the
  fonts no better (58.4-58.6 / 54.2-55.0 %) and would need a gather that no built-in layer does.

Either is fitted after the network, on the same rows (scikit-learn), then folded into the model as built-in
Keras layers: the model saved, exported to ONNX and served is one graph whose `probabilities` are
softmax(network logits + `weight` x read logits), loadable with no code of this package. The network's
embedding stays the input of its own logits layer (`NETWORK_LOGITS`), where `ml.foreignness` reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from instropitch.ml.foreignness import NETWORK_LOGITS

if TYPE_CHECKING:
    import keras

    from instropitch.modelspec import Envelope, ModelSpec

ATTACK_FRAMES = 8
"""Frames of the note's start summarised apart (~0.19 s at hop 512 / 22,050 Hz): the attack."""
TAIL_FRAMES = 12
"""Frames of the window's end summarised apart (~0.28 s): the sustain or the decay."""
SUMMARIES = 4
"""Per band: mean, mean absolute deviation, attack mean, tail mean."""
UNSEEN_CLASS_LOGIT = -30.0
"""The read's logit for a class no fitted row has (the network has not learnt it either)."""
SHARPNESS = 1e30
"""How steeply a step falls past its threshold: 1 - `SHARPNESS` x (summary - threshold), clipped to 0..1, is 1
where the float32 summary is at most the threshold and 0 where it is above by any normal float32 difference, as
numpy's `<=`. A gentler 1e4 left a band of 1e-4 where a step counted in part: 18 % of the test split's notes
(silent bands sit on their training values) read up to 0.68 logits away from `StepRead.logits`."""
READ_LOGITS = "envelope_logits"
"""The layer of the read's logits (x `weight`) in a model with a read; the network's are `NETWORK_LOGITS`."""
NO_THRESHOLD = 1e6
"""The threshold of a test that always holds (summaries are standardised log-mel values, far below it; times
`SHARPNESS` it stays a finite float32)."""


def summaries(x: np.ndarray, bands: int) -> np.ndarray:
    """(N, `SUMMARIES` x `bands`) of spectrograms `x` (N, frames, >= `bands`): the first `bands` bands' mean over
    the frames, mean absolute deviation from it, mean over the first and over the last frames."""
    s = np.asarray(x, dtype=np.float32)[:, :, :bands]
    mean = s.mean(axis=1)
    attack, tail = (min(n, s.shape[1]) for n in (ATTACK_FRAMES, TAIL_FRAMES))
    deviation = np.abs(s - mean[:, None, :]).mean(axis=1)
    return np.concatenate([mean, deviation, s[:, :attack].mean(axis=1), s[:, -tail:].mean(axis=1)], axis=1)


@dataclass(frozen=True)
class LinearRead:
    """Logits = summaries @ `kernel` + `bias`: a logistic regression folded to read the raw summaries."""

    kernel: np.ndarray
    bias: np.ndarray

    def logits(self, s: np.ndarray) -> np.ndarray:
        return s @ self.kernel + self.bias


@dataclass(frozen=True)
class StepRead:
    """Logits = `bias` + the sum of `values[u]` over the tests u that hold (summary `feature[u]` <= `threshold[u]`):
    gradient-boosted depth-1 trees, each a step on one summary, merged where two test the same threshold."""

    feature: np.ndarray
    threshold: np.ndarray
    values: np.ndarray
    bias: np.ndarray

    def logits(self, s: np.ndarray) -> np.ndarray:
        return (s[:, self.feature] <= self.threshold).astype(np.float32) @ self.values + self.bias


Read = LinearRead | StepRead


def fit_read(x: np.ndarray, y: np.ndarray, n_classes: int, bands: int, envelope: Envelope, seed: int = 0) -> Read:
    """The read `envelope` names, fitted on the `summaries` of `x`; a class no row has gets `UNSEEN_CLASS_LOGIT`."""
    s = summaries(x, bands).astype(np.float64)
    labels = np.asarray(y).astype(int)
    present = np.unique(labels)
    if len(present) == 1:  # nothing to tell apart: the one class seen
        bias = np.full(n_classes, UNSEEN_CLASS_LOGIT, np.float32)
        bias[present[0]] = 0.0
        return LinearRead(np.zeros((s.shape[1], n_classes), np.float32), bias)
    if envelope.read == "steps":
        return fit_steps(s, labels, present, n_classes, envelope.rounds, envelope.learning_rate, seed)
    return fit_linear(s, labels, present, n_classes, envelope.c, seed)


def fit_linear(
    s: np.ndarray, labels: np.ndarray, present: np.ndarray, n_classes: int, c: float, seed: int
) -> LinearRead:
    """An L2 logistic regression (scikit-learn's `C` = `c`) on standardised summaries `s`, folded so that it reads
    the raw summaries."""
    from sklearn.linear_model import LogisticRegression

    mean, std = s.mean(axis=0), s.std(axis=0)
    std[std < 1e-6] = 1.0
    regression = LogisticRegression(C=c, max_iter=3000, random_state=seed).fit((s - mean) / std, labels)
    kernel = np.zeros((s.shape[1], n_classes))
    bias = np.full(n_classes, UNSEEN_CLASS_LOGIT)
    coef = _by_class(regression.coef_.T, present).T
    kernel[:, present] = (coef / std).T
    bias[present] = _by_class(regression.intercept_[None, :], present)[0] - coef @ (mean / std)
    return LinearRead(kernel.astype(np.float32), bias.astype(np.float32))


def fit_steps(
    s: np.ndarray, labels: np.ndarray, present: np.ndarray, n_classes: int, rounds: int, learning_rate: float, seed: int
) -> StepRead:
    """Gradient-boosted depth-1 trees on summaries `s` (scikit-learn's `HistGradientBoostingClassifier`, `rounds`
    rounds, all of them: no early stopping), folded into one step per distinct test."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    boosted = HistGradientBoostingClassifier(
        max_depth=1,
        max_iter=rounds,
        learning_rate=learning_rate,
        l2_regularization=1.0,
        early_stopping=False,
        random_state=seed,
    ).fit(s, labels)
    # scikit-learn keeps the fitted trees in private attributes (stable since 0.21, pinned in requirements.txt);
    # tests/ml/test_envelope.py checks the fold against its public decision_function
    columns = len(boosted._predictors[0])  # one tree per class a round; one for two classes
    raw_bias = np.asarray(boosted._baseline_prediction, np.float64).reshape(-1).copy()
    steps: dict[tuple[int, float], np.ndarray] = {}
    for trees in boosted._predictors:
        for column, tree in enumerate(trees):
            root = tree.nodes[0]
            if root["is_leaf"]:  # no split worth making: a constant
                raw_bias[column] += root["value"]
                continue
            left, right = tree.nodes[root["left"]]["value"], tree.nodes[root["right"]]["value"]
            raw_bias[column] += right
            test = (int(root["feature_idx"]), float(root["num_threshold"]))
            steps.setdefault(test, np.zeros(columns))[column] += left - right
    if not steps:  # one test that always holds and adds nothing: the graph keeps its shape
        steps[(0, NO_THRESHOLD)] = np.zeros(columns)
    tests = sorted(steps)
    values = np.zeros((len(tests), n_classes))
    values[:, present] = _by_class(np.stack([steps[t] for t in tests]), present)
    bias = np.full(n_classes, UNSEEN_CLASS_LOGIT)
    bias[present] = _by_class(raw_bias[None, :], present)[0]
    return StepRead(
        np.array([f for f, _ in tests], np.int64),
        float32_at_most(np.array([t for _, t in tests])),
        values.astype(np.float32),
        bias.astype(np.float32),
    )


def float32_at_most(threshold: np.ndarray) -> np.ndarray:
    """The largest float32 at most each float64 `threshold`. scikit-learn's thresholds lie between two training
    values; rounded to the nearest float32 one could land on the upper value and send it left, rounded down every
    float32 summary falls on the side it fell on in the fit."""
    t = np.asarray(threshold, np.float64)
    rounded = t.astype(np.float32)
    return np.where(rounded.astype(np.float64) > t, np.nextafter(rounded, np.float32(-np.inf)), rounded)


def _by_class(raw: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Columns of scikit-learn's raw scores, one per `present` class; for two classes it keeps one column, the
    second's logit over the first's, spread here as -raw/2 and +raw/2."""
    if len(present) == 2 and raw.shape[1] == 1:
        return np.concatenate([-raw / 2, raw / 2], axis=1)
    return raw


def with_envelope(model: keras.Model, read: Read, bands: int, weight: float, spec: ModelSpec) -> keras.Model:
    """`model` whose softmax reads its own logits plus `weight` x the read's (`fit_read`), in one graph."""
    import keras
    from keras import layers

    from instropitch.ml.cnn import compile_model, embedding_layer

    inputs = keras.Input(shape=model.input_shape[1:], name="spectrogram", dtype="float32")
    network_weights = model.get_layer("probabilities").get_weights()
    own = layers.Dense(int(network_weights[1].shape[0]), name=NETWORK_LOGITS)
    logits = own(embedding_layer(model, "network")(inputs))
    own.set_weights(network_weights)
    envelope = read_layers(summary_layers(inputs, bands), read, weight)
    outputs = layers.Activation("softmax", name="probabilities")(layers.Add(name="logits")([logits, envelope]))
    joined = keras.Model(inputs, outputs, name=model.name)
    compile_model(joined, spec)
    joined.optimizer.build(joined.trainable_variables)  # saves cleanly, as a fitted model does
    return joined


def read_layers(s: Any, read: Read, weight: float) -> Any:
    """`weight` x `read.logits` of summaries `s` in built-in layers. A step is Dense (summary - threshold), then
    clip(1 - `SHARPNESS` x that, 0, 1): 1 where the test holds, else 0."""
    from keras import layers

    logits = layers.Dense(int(read.bias.shape[0]), name=READ_LOGITS)
    if isinstance(read, LinearRead):
        out = logits(s)
        logits.set_weights([weight * read.kernel, weight * read.bias])
        return out
    tests = layers.Dense(len(read.feature), name="envelope_tests")
    gap = tests(s)
    select = np.zeros((int(s.shape[-1]), len(read.feature)), np.float32)
    select[read.feature, np.arange(len(read.feature))] = 1.0
    tests.set_weights([select, -read.threshold])
    held = layers.ReLU(max_value=1.0, name="envelope_steps")(
        layers.Rescaling(-SHARPNESS, offset=1.0, name="envelope_sharpen")(gap)
    )
    out = logits(held)
    logits.set_weights([weight * read.values, weight * read.bias])
    return out


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


def accuracy_alone(model: keras.Model, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Accuracy on (`x`, `y`) of the network's logits alone and of the read's alone, where `model` has a read (else
    {}): what each side of the sum gets right by itself, logged beside the model's own accuracy."""
    import keras

    names = {layer.name for layer in model.layers}
    if not {NETWORK_LOGITS, READ_LOGITS} <= names:
        return {}
    parts = keras.Model(model.inputs, [model.get_layer(NETWORK_LOGITS).output, model.get_layer(READ_LOGITS).output])
    network, read = parts.predict(x, verbose=0, batch_size=256)
    return {"network": float(np.mean(network.argmax(axis=1) == y)), "read": float(np.mean(read.argmax(axis=1) == y))}
