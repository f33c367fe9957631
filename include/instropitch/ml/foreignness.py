"""How unlike its training notes a note looks to a model: the distance of its embedding to the nearest class.

A softmax says how sure a model is among its classes, not whether the note resembles anything
it learned from: an FM-synthesized clarinet can get "Accordion, 90 %". The CNN's last hidden
layer (the embedding the softmax reads) tells more: notes of a familiar kind land near the
mean of their class, foreign ones far from every class. The distance is Mahalanobis with one
covariance shared by the classes (Lee et al., 2018, "A simple unified framework for detecting
out-of-distribution samples"), divided by its median on the model's validation notes, so that
1 means "as familiar as a validation note" whatever the model: the calibration learns on
held-out fits how much to soften per unit of foreignness, and the champion applies the same
rule to its own distances (`ml.calibration`).

The distance is baked into the portable model as a second output (`with_foreignness`), so
prediction computes it in the same ONNX run as the probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import keras

EMBEDDING_LAYER = "probabilities"
"""The softmax layer: its input is the embedding."""
NETWORK_LOGITS = "network_logits"
"""Where the softmax reads more than the network (`ml.envelope`), the network's own logits layer: its input is
the embedding."""
OUTPUT_NAME = "foreignness"
SHRINKAGE = 0.1
"""Share of the covariance replaced by its mean variance: a 128-d covariance from a few thousand
notes is noisy in its small directions, which would dominate the inverse."""


@dataclass(frozen=True)
class Reference:
    """The training notes as the distance sees them: a whitening and the whitened class means."""

    whitening: np.ndarray  # (d, d): u = e @ whitening
    means: np.ndarray  # (classes, d), whitened
    scale: float = 1.0  # the median distance of the validation notes

    def distance(self, embeddings: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance to the nearest class mean, over `scale`."""
        u = np.asarray(embeddings, dtype=np.float64) @ self.whitening
        return ((u[:, None, :] - self.means[None]) ** 2).sum(axis=2).min(axis=1) / self.scale


def fit_reference(embeddings: np.ndarray, labels: np.ndarray, validation: np.ndarray) -> Reference:
    """The class means and shared covariance of the training `embeddings`, scaled on the `validation` ones.

    A class without training notes takes the mean of all of them (it can still be answered).
    """
    e = np.asarray(embeddings, dtype=np.float64)
    y = np.asarray(labels)
    if len(e) < 2:
        raise ValueError(f"a foreignness reference needs at least 2 training notes, got {len(e)}")
    n_classes = int(y.max()) + 1
    means = np.stack([e[y == c].mean(axis=0) if np.any(y == c) else e.mean(axis=0) for c in range(n_classes)])
    residual = e - means[y]
    cov = residual.T @ residual / len(e)
    cov = (1 - SHRINKAGE) * cov + SHRINKAGE * (np.trace(cov) / len(cov) + 1e-9) * np.eye(len(cov))
    whitening = np.linalg.inv(np.linalg.cholesky(cov)).T  # cov^-1 = W W^T
    unscaled = Reference(whitening, means @ whitening)
    scale = float(np.median(unscaled.distance(validation))) if len(validation) else 1.0
    return Reference(whitening, means @ whitening, max(scale, 1e-9))


def embedding_tensor(model: keras.Model) -> Any:
    """The network's embedding in `model`: the input of its logits layer (`NETWORK_LOGITS` or the softmax)."""
    names = {layer.name for layer in model.layers}
    return model.get_layer(NETWORK_LOGITS if NETWORK_LOGITS in names else EMBEDDING_LAYER).input


def embedding_model(model: keras.Model) -> keras.Model:
    """`model` answering its embedding (`embedding_tensor`) beside the probabilities."""
    import keras

    return keras.Model(model.inputs, [model.output, embedding_tensor(model)])


def embed(model: keras.Model, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, embeddings) of `model` on `x`, in batches."""
    probabilities, embeddings = embedding_model(model).predict(np.asarray(x, np.float32), batch_size=256, verbose=0)
    return np.asarray(probabilities, np.float64), np.asarray(embeddings, np.float64)


def fitted_reference(model: keras.Model, x_fit: np.ndarray, y_fit: np.ndarray, x_val: np.ndarray) -> Reference:
    """`fit_reference` on `model`'s embeddings of the notes it was fitted on and of its validation notes."""
    _, fit_embeddings = embed(model, x_fit)
    _, val_embeddings = embed(model, x_val)
    return fit_reference(fit_embeddings, y_fit, val_embeddings)


def with_foreignness(model: keras.Model, reference: Reference) -> keras.Model:
    """`model` with a second output, `foreignness` (N,): `reference.distance` of each note, in the graph.

    A dense layer (the whitening), then the squared distance to each whitened class mean, its
    minimum over the classes, over the scale: operators every converter takes. For export
    only: the Keras model logged stays the plain one.
    """
    import keras
    from keras import layers, ops

    means = reference.means.astype(np.float32)
    factor = 1.0 / reference.scale

    class NearestClass(layers.Layer):
        def call(self, u: Any) -> Any:
            gaps = ops.expand_dims(u, 1) - ops.convert_to_tensor(means)[None, :, :]
            return ops.min(ops.sum(gaps * gaps, axis=-1), axis=-1) * factor

    whiten = layers.Dense(reference.whitening.shape[1], use_bias=False, name="whiten")
    u = whiten(embedding_tensor(model))
    whiten.set_weights([reference.whitening.astype(np.float32)])
    distance = NearestClass(name=OUTPUT_NAME)(u)
    return keras.Model(model.inputs, [model.output, distance], name=model.name)
