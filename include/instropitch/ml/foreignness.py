"""How unlike its training notes a note looks to a model: the distance of its embedding to the nearest training note.

A softmax says how sure a model is among its classes, not whether the note resembles anything
it learned from: an FM-synthesized clarinet can get "Accordion, 90 %". The CNN's last hidden
layer (the embedding the softmax reads) tells more: a note of a familiar kind lands near some
training note, a foreign one far from all of them. The distance is the cosine distance to the
nearest training note (k-NN with k = 1 on unit-length embeddings: Sun et al., 2022, "Out-of-
distribution detection with deep nearest neighbors"), divided by its median on the model's
validation notes, so that 1 means "as familiar as a validation note" whatever the model: the
calibration learns on held-out fits how much to soften per unit of foreignness, and the
champion applies the same rule to its own distances (`ml.calibration`).

It replaced the Mahalanobis distance to the nearest class mean (Lee et al., 2018), which could
not tell real recordings from the fonts the model trained on (AUROC 0.51; nearest note 0.80)
nor, on a held-out font, a wrong answer from a right one (0.55; nearest note 0.77):
bench/RESULTS.md, "Foreignness: the nearest training note".

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
OUTPUT_NAME = "foreignness"
MAX_NOTES = 8192
"""Training notes kept as neighbours (evenly spaced when there are more): 4 MB of float32 at 128
dimensions in each portable model, one (N x 128) product per batch."""


@dataclass(frozen=True)
class Reference:
    """The training notes as the distance sees them: their embeddings at unit length."""

    notes: np.ndarray  # (n, d), rows of unit length
    scale: float = 1.0  # the median distance of the validation notes

    def distance(self, embeddings: np.ndarray) -> np.ndarray:
        """Cosine distance to the nearest training note, over `scale`."""
        similarity = unit_rows(embeddings) @ self.notes.T
        return (1.0 - similarity.max(axis=1)) / self.scale


def unit_rows(embeddings: np.ndarray) -> np.ndarray:
    """Each row at unit length (a zero row stays zero)."""
    e = np.asarray(embeddings, dtype=np.float64)
    return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)


def fit_reference(embeddings: np.ndarray, validation: np.ndarray) -> Reference:
    """The training `embeddings` (at most `MAX_NOTES`, evenly spaced) as neighbours, scaled on the `validation` ones."""
    e = np.asarray(embeddings, dtype=np.float64)
    if len(e) < 1:
        raise ValueError("a foreignness reference needs at least 1 training note, got 0")
    if len(e) > MAX_NOTES:
        e = e[np.linspace(0, len(e) - 1, MAX_NOTES).round().astype(int)]
    unscaled = Reference(unit_rows(e))
    scale = float(np.median(unscaled.distance(validation))) if len(validation) else 1.0
    return Reference(unscaled.notes, max(scale, 1e-6))


def embedding_model(model: keras.Model) -> keras.Model:
    """`model` answering its embedding (the softmax layer's input) beside the probabilities."""
    import keras

    return keras.Model(model.inputs, [model.output, model.get_layer(EMBEDDING_LAYER).input])


def embed(model: keras.Model, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, embeddings) of `model` on `x`, in batches."""
    probabilities, embeddings = embedding_model(model).predict(np.asarray(x, np.float32), batch_size=256, verbose=0)
    return np.asarray(probabilities, np.float64), np.asarray(embeddings, np.float64)


def fitted_reference(model: keras.Model, x_fit: np.ndarray, x_val: np.ndarray) -> Reference:
    """`fit_reference` on `model`'s embeddings of the notes it was fitted on and of its validation notes."""
    _, fit_embeddings = embed(model, x_fit)
    _, val_embeddings = embed(model, x_val)
    return fit_reference(fit_embeddings, val_embeddings)


def with_foreignness(model: keras.Model, reference: Reference) -> keras.Model:
    """`model` with a second output, `foreignness` (N,): `reference.distance` of each note, in the graph.

    The embedding at unit length, a dense layer whose kernel is the training notes (the
    similarity to each), one minus the largest, over the scale: operators every converter
    takes. For export only: the Keras model logged stays the plain one.
    """
    import keras
    from keras import layers, ops

    factor = 1.0 / reference.scale

    class UnitLength(layers.Layer):
        def call(self, e: Any) -> Any:
            return e / ops.maximum(ops.sqrt(ops.sum(e * e, axis=-1, keepdims=True)), 1e-12)

    class NearestNote(layers.Layer):
        def call(self, similarity: Any) -> Any:
            return (1.0 - ops.max(similarity, axis=-1)) * factor

    similarity = layers.Dense(len(reference.notes), use_bias=False, name="similarity")
    s = similarity(UnitLength(name="unit_length")(model.get_layer(EMBEDDING_LAYER).input))
    similarity.set_weights([reference.notes.T.astype(np.float32)])
    distance = NearestNote(name=OUTPUT_NAME)(s)
    return keras.Model(model.inputs, [model.output, distance], name=model.name)
