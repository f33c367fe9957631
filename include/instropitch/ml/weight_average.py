"""A moving average of a model's weights over its training steps, validated and kept in their place.

The weights of the last step sit wherever the last batches pushed them; their running average
sits nearer the middle of the low-loss region the steps wander in, and such flat points hold
better on domains never trained on (SWAD: Cha et al., "Domain Generalization by Seeking Flat
Minima", NeurIPS 2021). Keras' own `use_ema` averages too, but swaps the average in only at
the end of `fit`, after early stopping has chosen its weights from the raw ones; here every
epoch is validated on the average, so early stopping watches, keeps and restores averages.

Imported by `ml.fitting.fit_model` when the recipe sets `training.weight_average` (Keras loads here).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

WARMUP_STEPS = 10
"""Step n (from 1) averages with momentum min(m, n / (WARMUP_STEPS + n)), so that the
random initial weights fade out within an epoch instead of lingering for ~1 / (1 - m) steps."""


class WeightAverage(keras.callbacks.Callback):
    """Averages the trainable weights after every batch; at each epoch's end puts the average in
    the model, validates it (`val_*` in the epoch's logs, for the callbacks after this one) and
    leaves it there until the next epoch starts, so early stopping saves the average. At the end
    of training the average stays (or whichever weights early stopping restores after it).

    Give it the validation data instead of `fit(validation_data=...)`: Keras would validate the
    last step's weights. It must come before the callbacks that read `val_*`.
    """

    def __init__(self, momentum: float, validation_data: Any):
        super().__init__()
        if not 0.0 < momentum < 1.0:
            raise ValueError(f"weight average momentum must be in (0, 1), got {momentum}")
        self.momentum = momentum
        self.validation_data = validation_data
        self._average: list[Any] = []
        self._trained: list[np.ndarray] | None = None
        self._steps = 0

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._average = [keras.Variable(v.numpy(), trainable=False) for v in self.model.trainable_variables]  # a copy
        self._trained, self._steps = None, 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if self._trained is not None:  # back to the weights the steps left, to go on training from them
            for variable, value in zip(self.model.trainable_variables, self._trained, strict=True):
                variable.assign(value)
            self._trained = None

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._steps += 1
        m = min(self.momentum, self._steps / (WARMUP_STEPS + self._steps))
        for average, variable in zip(self._average, self.model.trainable_variables, strict=True):
            average.assign(m * average.value + (1.0 - m) * variable.value)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self._trained = [v.numpy() for v in self.model.trainable_variables]
        for variable, average in zip(self.model.trainable_variables, self._average, strict=True):
            variable.assign(average.value)
        data = self.validation_data  # a dataset, or (x, y) arrays
        x, y = data if isinstance(data, tuple) else (data, None)
        scores = self.model.evaluate(x, y, verbose=0, return_dict=True)
        if logs is not None:
            logs.update({f"val_{name}": float(value) for name, value in scores.items()})
