"""A supervised contrastive loss on the embedding, beside the cross-entropy, for fitting only.

On a font it never heard, the instrument model reads a horn as an oboe: what it learnt of a horn is partly
the fonts' own sound. The loss of Khosla et al. ("Supervised Contrastive Learning", NeurIPS 2020), on
the embedding the softmax reads, pulls the notes of one class in a batch together, whichever source
plays them (batches draw from every source: `training.balance`), and pushes the other classes' away.
The model kept is the recipe's own network: `ContrastiveFit` only changes how its weights are stepped (with
`training.contrastive_head`, through a projection head fitted beside it and thrown away).

Imported by `ml.fitting` when the recipe sets `training.contrastive` (Keras loads here).
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from instropitch.ml.cnn import compile_model, embedding_layer
from instropitch.modelspec import ModelSpec

TEMPERATURE = 0.1
"""Divides the cosine similarities (Khosla et al.'s value): lower weighs the hardest pairs more."""


def supervised_contrastive_loss(embedding: Any, labels: Any, temperature: float = TEMPERATURE) -> Any:
    """Mean over the batch's notes that have another of their class: -mean log p(that other | the note), p the
    softmax over every other note of the batch of the cosine similarity / `temperature`."""
    z = tf.math.l2_normalize(tf.cast(embedding, tf.float32), axis=1)
    n = tf.shape(z)[0]
    itself = tf.eye(n, dtype=tf.bool)
    similarity = tf.where(itself, -1e9, tf.matmul(z, z, transpose_b=True) / temperature)
    log_p = similarity - tf.reduce_logsumexp(similarity, axis=1, keepdims=True)
    labels = tf.reshape(labels, [-1])
    positive = tf.logical_and(tf.equal(labels[:, None], labels[None, :]), tf.logical_not(itself))
    count = tf.reduce_sum(tf.cast(positive, tf.float32), axis=1)
    per_note = -tf.reduce_sum(tf.where(positive, log_p, 0.0), axis=1) / tf.maximum(count, 1.0)
    has = tf.cast(count > 0, tf.float32)
    return tf.reduce_sum(per_note * has) / tf.maximum(tf.reduce_sum(has), 1.0)


class ContrastiveFit(keras.Model):
    """Fits `model` (inputs -> ... -> `embedding` -> `probabilities` softmax) on its compiled loss plus `weight` x
    `supervised_contrastive_loss` of its embedding; answers, validates and saves as `model` does (its variables
    are the ones stepped). Labels may be class indices or one-hot / mixup rows (then the dominant class)."""

    def __init__(self, model: keras.Model, weight: float, temperature: float = TEMPERATURE, head: int = 0):
        super().__init__(name=model.name)
        self.network = model
        self.embed = embedding_layer(model, f"{model.name}_embedding")
        self.weight = weight
        self.temperature = temperature
        self.head = projection_head(int(self.embed.outputs[0].shape[-1]), head) if head else None
        # the head is thrown away after the fit: its own optimizer keeps its slots out of the saved model's
        self.head_optimizer = (
            keras.optimizers.Adam(float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))) if head else None
        )

    def call(self, x: Any, training: bool = False) -> Any:
        return self.network(x, training=training)

    def train_step(self, data: Any) -> dict[str, Any]:
        x, y = data
        with tf.GradientTape() as tape:
            embedding = self.embed(x, training=True)
            y_pred = self.network.get_layer("probabilities")(embedding)
            loss = self.compute_loss(x=x, y=y, y_pred=y_pred, training=True)
            labels = tf.argmax(y, axis=-1) if len(y.shape) == 2 else y
            pulled = self.head(embedding, training=True) if self.head is not None else embedding
            total = loss + self.weight * supervised_contrastive_loss(pulled, labels, self.temperature)
        variables = self.network.trainable_variables
        head = self.head.trainable_variables if self.head is not None else []
        gradients = tape.gradient(total, variables + head)
        self.optimizer.apply(gradients[: len(variables)], variables)
        if head:
            self.head_optimizer.apply(gradients[len(variables) :], head)
        self._loss_tracker.update_state(loss, sample_weight=tf.shape(x)[0])  # `loss` stays the cross-entropy
        return self.compute_metrics(x, y, y_pred)


def projection_head(width: int, size: int) -> keras.Model:
    """Khosla et al.'s projection: the loss reads a small MLP's output (`width` -> ReLU `width` -> `size`), so the
    embedding the softmax reads is shaped by the loss without having to be the space where classes cluster."""
    inputs = keras.Input((width,))
    hidden = keras.layers.Dense(width, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(size)(hidden), name="projection_head")


def contrastive_fit(model: keras.Model, spec: ModelSpec) -> keras.Model:
    """What `fit` is called on: `model` compiled as the recipe compiles it, stepping `model`'s own optimizer (the
    saved model's), plus `training.contrastive` x the contrastive term."""
    fit = ContrastiveFit(model, spec.training.contrastive, head=spec.training.contrastive_head)
    compile_model(fit, spec, optimizer=model.optimizer)
    return fit
