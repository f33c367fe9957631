"""The training notes' mix of classes, taken partly back out of a model's answers (`architecture.logit_adjustment`).

A model fitted on TinySOL answers by TinySOL's mix: the accordion is 24 % of its notes, so every unsure answer
leans to it. A user's file is not drawn from that mix (the 172 real recordings hold no accordion at all).
Post-hoc logit adjustment (Menon et al., 2021, "Long-tail learning via logit adjustment") subtracts
tau x log(each class's share of the rows the model was fitted on) from its logits: tau 0 answers by the training
mix, 1 as if every class were equally likely, 0.5 halfway (in log odds; the instrument recipe's). bench/RESULTS.md,
"The class prior, halfway out": held out 56.9 -> 56.6 % by notes, 57.1 -> 58.4 % every instrument alike, the real
recordings 58.4 -> 60.8 %.

The shift is a constant per class, folded into the bias of the layer that writes the network's logits, so the
model saved, exported and served does it with no code; the embedding `ml.foreignness` reads does not move.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from instropitch.ml.foreignness import EMBEDDING_LAYER, NETWORK_LOGITS

if TYPE_CHECKING:
    import keras


def logit_adjustment(y: np.ndarray, n_classes: int, tau: float) -> np.ndarray:
    """Per class, -`tau` x log(its share of labels `y`), centred on the classes `y` holds; 0 for the others
    (a class the model never saw keeps its own low logit)."""
    counts = np.bincount(np.asarray(y, np.int64), minlength=n_classes).astype(np.float64)
    present = counts > 0
    log_share = np.log(counts[present] / counts.sum())
    adjustment = np.zeros(n_classes)
    adjustment[present] = -tau * (log_share - log_share.mean())
    return adjustment


def prior_table(y: np.ndarray, class_names: list[str], tau: float) -> str:
    """CSV, a line per class: its rows among labels `y`, their share and the logit adjustment at `tau` (what a model
    version took out of its answers, logged beside it)."""
    counts = np.bincount(np.asarray(y, np.int64), minlength=len(class_names))
    adjustment = logit_adjustment(y, len(class_names), tau)
    lines = [
        f"{name},{n},{n / counts.sum():.4f},{a:.4f}" for name, n, a in zip(class_names, counts, adjustment, strict=True)
    ]
    return "\n".join(["class,rows,share,adjustment", *lines]) + "\n"


def with_logit_adjustment(model: keras.Model, adjustment: np.ndarray) -> keras.Model:
    """`model` with `adjustment` added to its logits: the bias of the network's logits layer (`NETWORK_LOGITS`
    beside a read, else the `probabilities` softmax) moves; changed in place and returned."""
    names = {layer.name for layer in model.layers}
    layer = model.get_layer(NETWORK_LOGITS if NETWORK_LOGITS in names else EMBEDDING_LAYER)
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel, (bias + adjustment).astype(bias.dtype)])
    return model
