"""Fit one recipe's networks on rows of a snapshot, and read their answers.

`model_rows` is the snapshot as one model sees it (inputs, labels, the fit / validation / test
rows); `fit_model` builds and fits the recipe's CNN (its members and looks joined into one model);
`predict_proba` reads it. The DAG's `train` and `fit_heldout` tasks and every benchmark fit through
here, so a bench figure is what the DAG trains on the same data.

TensorFlow and Keras are imported inside the functions: what imports this module only to plan fits or
read their answers (`ml.heldout`, the DAG's planning tasks, the benches' scoring) does not load them.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from instropitch.ml.snapshot import Snapshot
from instropitch.modelspec import ModelSpec

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelRows:
    """The snapshot as one model sees it: inputs, labels, and which rows fit, validate and test."""

    x: np.ndarray
    y: np.ndarray
    class_names: list[str]
    sources: np.ndarray
    train: np.ndarray
    test: np.ndarray
    fit: np.ndarray
    val: np.ndarray
    band_hz: np.ndarray | None = None
    """Each row's band frequencies (`audio.inputs.band_frequencies`), when the augmentation cuts by Hz."""
    instruments: np.ndarray | None = None
    """Each row's TinySOL instrument, whatever the label: `training.heldout_shared` names instruments."""

    @property
    def input_shape(self) -> tuple[int, int]:
        return int(self.x.shape[1]), int(self.x.shape[2])

    @property
    def source_names(self) -> list[str]:
        return sorted(set(self.sources.tolist()))


def model_rows(spec: ModelSpec, snapshot: Snapshot) -> ModelRows:
    """Check the snapshot fits the spec and carve the validation rows from its training part."""
    if spec.features and snapshot.feature_preset and spec.features != snapshot.feature_preset:
        raise ValueError(
            f"model {spec.name!r} wants features preset {spec.features!r}, "
            f"but the snapshot was computed with {snapshot.feature_preset!r}"
        )
    x_all = snapshot.inputs_for(spec)
    y_all, class_names = snapshot.labels_for(spec)
    train_rows = np.flatnonzero(~snapshot.is_test)
    fit_rows, val_rows = fit_validation_rows(y_all, train_rows, spec.training.validation_split, spec.training.seed)
    return ModelRows(
        x=x_all,
        y=y_all,
        class_names=list(class_names),
        sources=np.asarray(snapshot.source).astype(str),
        train=train_rows,
        test=np.flatnonzero(snapshot.is_test),
        fit=fit_rows,
        val=val_rows,
        band_hz=snapshot.band_frequencies_for(spec) if spec.training.augmentation.lowpass else None,
        instruments=np.asarray(snapshot.instrument).astype(str),
    )


def split_validation(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit rows, validation rows) as positions into `y`: stratified when every class allows it."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(y))
    if len(y) < 2:
        raise ValueError(f"need at least 2 training notes to hold some out for validation, got {len(y)}")
    try:
        return train_test_split(index, test_size=fraction, random_state=seed, stratify=y)
    except ValueError:  # a class with one note, or fewer validation rows than classes
        return train_test_split(index, test_size=fraction, random_state=seed)


def fit_validation_rows(y: np.ndarray, rows: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`rows` split into (fit rows, validation rows), each kept in `rows`' order.

    Keeping the order matters for reproducibility: the training shuffle is seeded, so the
    same rows in another order give another model. The DAG and the accuracy bench both
    call this, so a bench figure is what the DAG trains on the same data.
    """
    fit_pos, val_pos = split_validation(y[rows], fraction, seed)
    return rows[np.sort(fit_pos)], rows[np.sort(val_pos)]


def band_hz_of(band_hz: np.ndarray | None, rows: np.ndarray) -> np.ndarray | None:
    """The band frequencies (`ModelRows.band_hz`) of `rows`: one row shared by all stays as it is."""
    return band_hz if band_hz is None or len(band_hz) == 1 else band_hz[rows]


MEMBER_SEED_STRIDE = 1000
"""Member k of an ensemble (`training.members`) fits from seed `seed` + k x this: apart from the next seeds' members."""


def fit_model(
    spec: ModelSpec,
    x_fit: np.ndarray,
    y_fit: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    n_classes: int,
    *,
    epochs: int,
    groups: np.ndarray | None = None,
    callbacks: list[Any] | None = None,
    extra: tuple[np.ndarray, np.ndarray] | None = None,
    label: str | None = None,
    band_hz: np.ndarray | None = None,
) -> tuple[keras.Model, dict[str, list[float]]]:
    """Build `spec`'s CNN and fit it (seeded; early stopping on the validation rows).

    `groups` are the fit rows' sources, for source-balanced batches (`training.balance`).
    `extra` (inputs, labels) are fitted on too, spread over the groups (e.g. `synthetic_tone_rows`).
    `band_hz`: the fit rows' band frequencies, for an augmentation that cuts by Hz (`ModelRows.band_hz`).
    Each epoch is logged as one line named `label` (default: the spec's name).
    Returns the model (best weights when early stopping is on; computing in float32 whatever
    `training.precision` fitted it in) and the Keras history. With `training.members` N > 1, N
    networks are fitted one after another and joined (`cnn.join_members`); `callbacks` and the
    history returned are the first one's. With `architecture.band_shift_average` the returned model
    averages shifted looks at its input (`cnn.average_band_shifts`); with `architecture.envelope` its softmax
    also reads a model of the fit and validation rows' spectra (`with_envelope_read`); with
    `architecture.logit_adjustment` its logits lean less to the classes those rows hold most (`ml.class_prior`).
    """
    from instropitch.ml.cnn import average_band_shifts, join_members

    rows = (x_fit, y_fit, x_val, y_val)  # the notes an envelope read learns from (before any extra rows join them)
    if extra is not None and len(extra[1]):
        if band_hz is not None and len(band_hz) != 1:
            raise ValueError("extra rows cannot be fitted beside per-row band frequencies (a note-centred input)")
        groups = np.full(len(y_fit), "data") if groups is None else np.asarray(groups).astype(str)
        x_fit = np.concatenate([x_fit, extra[0].astype(x_fit.dtype)])
        y_fit = np.concatenate([y_fit, extra[1]])
        names = np.unique(groups)  # spread over the sources: balanced batches must not give them a share of their own
        groups = np.concatenate([groups, names[np.arange(len(extra[1])) % len(names)]])
    t, name = spec.training, label or spec.name
    fits = [
        _fit_network(
            replace(spec, training=replace(t, seed=(t.seed + k * MEMBER_SEED_STRIDE) % 2**31)),
            (x_fit, y_fit, x_val, y_val),
            n_classes,
            epochs=epochs,
            groups=groups,
            callbacks=callbacks if k == 0 else None,
            label=name if t.members == 1 else f"{name} member {k + 1}/{t.members}",
            band_hz=band_hz,
        )
        for k in range(t.members)
    ]
    model = average_band_shifts(join_members([model for model, _ in fits], spec), spec)
    model = with_envelope_read(model, spec, *rows, n_classes)
    if spec.architecture.logit_adjustment:
        from instropitch.ml.class_prior import logit_adjustment, with_logit_adjustment

        adjustment = logit_adjustment(taught_labels(rows[1], rows[3]), n_classes, spec.architecture.logit_adjustment)
        model = with_logit_adjustment(model, adjustment)
    return model, fits[0][1]


def taught_labels(y_fit: np.ndarray, y_val: np.ndarray) -> np.ndarray:
    """The labels a `fit_model` model's class prior is taken from: its fit and validation rows (as its read's),
    without the extra rows. `ml.training` logs the prior from the same, as `class_prior.csv`."""
    return np.concatenate([y_fit, y_val])


def with_envelope_read(
    model: keras.Model,
    spec: ModelSpec,
    x_fit: np.ndarray,
    y_fit: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    n_classes: int,
) -> keras.Model:
    """`model` with `architecture.envelope`'s read fitted on the fit and validation rows and added to its logits
    (`ml.envelope`); `model` itself when the recipe has none."""
    envelope = spec.architecture.envelope
    if envelope is None:
        return model
    from instropitch.audio.features import get_preset
    from instropitch.ml.envelope import fit_read, with_envelope

    x, y = np.concatenate([x_fit, x_val]), np.concatenate([y_fit, y_val])
    bands = min(get_preset(spec.features).instrument.n_bands, int(x.shape[2]))  # the instrument spectrogram leads
    read = fit_read(x, y, n_classes, bands, envelope, spec.training.seed)
    return with_envelope(model, read, bands, envelope.weight, spec)


def _fit_network(
    spec: ModelSpec,
    data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    n_classes: int,
    *,
    epochs: int,
    groups: np.ndarray | None,
    callbacks: list[Any] | None,
    label: str,
    band_hz: np.ndarray | None,
) -> tuple[keras.Model, dict[str, list[float]]]:
    """One network of `fit_model`, from `spec.training.seed`, as a float32 model."""
    from instropitch.ml.cnn import as_float32, build_model, compute_policy, configure_tensorflow, make_dataset

    configure_tensorflow()
    import keras

    x_fit, y_fit, x_val, y_val = data
    t = spec.training
    keras.utils.set_random_seed(t.seed)
    input_shape = (int(x_fit.shape[1]), int(x_fit.shape[2]))
    model = build_model(
        spec,
        input_shape,
        n_classes,
        input_mean=float(x_fit.mean()),
        input_std=float(x_fit.std() or 1.0),
        dtype_policy=compute_policy(t.precision),
    )
    fit_ds = make_dataset(x_fit, y_fit, spec, n_classes, training=True, seed=t.seed, groups=groups, band_hz=band_hz)
    val_ds = make_dataset(x_val, y_val, spec, n_classes, training=False)
    callbacks = list(callbacks or [])
    if t.reduce_lr_on_plateau is not None:
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss",
                factor=t.reduce_lr_on_plateau.factor,
                patience=t.reduce_lr_on_plateau.patience,
                min_lr=t.learning_rate / 64,
            )
        )
    if t.lr_schedule == "cosine":
        callbacks.append(keras.callbacks.LearningRateScheduler(partial(cosine_rate, t.learning_rate, epochs)))
    if t.early_stopping is not None:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=t.early_stopping.monitor, patience=t.early_stopping.patience, restore_best_weights=True
            )
        )
    callbacks.append(_epoch_log(label, epochs))
    if t.weight_average:  # validates the averaged weights itself, before any callback reads val_*
        from instropitch.ml.weight_average import WeightAverage

        callbacks.insert(0, WeightAverage(t.weight_average, val_ds))
    if epochs > 0:
        fitted = model
        if t.contrastive:  # the same network's weights, stepped on a loss with a contrastive term
            from instropitch.ml.contrastive import contrastive_fit

            fitted = contrastive_fit(model, spec)
        history = fitted.fit(
            fit_ds,
            validation_data=None if t.weight_average else val_ds,
            epochs=epochs,
            callbacks=callbacks,
            shuffle=False,
            verbose=0,
        ).history
    else:
        history = {}
        model.optimizer.build(model.trainable_variables)  # saves cleanly even untrained
    return as_float32(model, spec), history


def synthetic_tone_rows(spec: ModelSpec, feature_preset: str) -> tuple[np.ndarray, np.ndarray] | None:
    """`training.synthetic_tones` generated tones per MIDI class as (pitch spectrograms, class indices).

    Computed by the same feature code as the data (`feature_preset`); None when the recipe
    asks for none.
    """
    if not spec.training.synthetic_tones:
        return None
    import io

    from instropitch import audio
    from instropitch.audio.features import compute_features, get_preset
    from instropitch.audio.inputs import model_input
    from instropitch.ml.snapshot import class_layout
    from instropitch.synth.tones import tone_set

    if not feature_preset:
        raise ValueError(f"model {spec.name!r}: synthetic_tones needs the snapshot's feature preset, it names none")
    config = get_preset(feature_preset)
    values, _ = class_layout("midi")
    xs, ys = [], []
    for midi, samples in tone_set(list(values), spec.training.synthetic_tones, seed=spec.training.seed):
        buffer = io.BytesIO()
        audio.write_wav(buffer, samples, 44100)
        tone = compute_features(buffer.getvalue(), config)
        xs.append(model_input(spec.input, tone.pitch[None], tone.instrument[None], np.array([midi]), config)[0])
        ys.append(values.index(midi))
    return np.stack(xs).astype(np.float32), np.asarray(ys, dtype=np.int64)


def predict_proba(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """Class probabilities per row (the softmax), in batches."""
    n_classes = int(model.output_shape[-1])
    if len(x) == 0:
        return np.zeros((0, n_classes), dtype=np.float64)
    return np.asarray(model.predict(x, batch_size=256, verbose=0), dtype=np.float64)


def predict_classes(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """Class index per row (argmax of the softmax), in batches."""
    return np.argmax(predict_proba(model, x), axis=1).astype(np.int64)


EPOCH_LOG_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")


COSINE_FLOOR = 0.01
"""`lr_schedule: cosine` ends at this fraction of the recipe's learning rate."""


def cosine_rate(rate: float, epochs: int, epoch: int, _current: float | None = None) -> float:
    """The learning rate of `epoch` (0-based) of `epochs`: half a cosine from `rate` to `rate * COSINE_FLOOR`.

    Per epoch, not per step, so the schedule does not depend on the batch count (source-balanced
    epochs and the held-out fits have other sizes than the champion's)."""
    progress = min(epoch / max(epochs - 1, 1), 1.0)
    return rate * (COSINE_FLOOR + (1.0 - COSINE_FLOOR) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def _epoch_log(label: str, epochs: int) -> keras.callbacks.Callback:
    """One log line per epoch: Keras fits silently here (`verbose=0`), and a DAG run should show progress."""
    import keras

    def log_epoch(epoch: int, logs: dict[str, float] | None = None) -> None:
        numbers = " ".join(f"{key} {logs[key]:.4f}" for key in EPOCH_LOG_KEYS if key in (logs or {}))
        log.info("%s epoch %d/%d: %s", label, epoch + 1, epochs, numbers)

    return keras.callbacks.LambdaCallback(on_epoch_end=log_epoch)
