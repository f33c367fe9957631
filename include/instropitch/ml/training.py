"""Train one `ModelSpec` on a `Snapshot` and record everything about it in one MLflow run.

The run holds the spec (params and the YAML itself), per-epoch curves, test metrics and
reports, and the Keras model with its signature, input example, label layout and ONNX copy
(`ml.portable`: what prediction loads); the model is registered as `instropitch-{spec.name}`. Promotion is a separate step
(`registry.promote`), so training never changes what is served.

TensorFlow, Keras, MLflow and matplotlib are imported inside the functions: the Airflow
scheduler imports this module while parsing DAGs.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from instropitch.ml.calibration import (
    HELDOUT_SOURCES,
    Calibration,
    Familiar,
    calibrate,
    cross_fitted,
    reliability_figure,
)
from instropitch.ml.foreignness import Reference, fitted_reference
from instropitch.ml.snapshot import Snapshot, class_layout, mlflow_dataset
from instropitch.ml.tracking import (
    LABELS_FILENAME,
    METADATA_KEY,
    MODEL_ARTIFACT_NAME,
    PORTABLE_FILENAME,
    PORTABLE_KEY,
    PORTABLE_PATH,
    TAG_CALIBRATED_ON,
    TAG_CLASSES,
    TAG_DATA_DIGEST,
    TAG_FEATURE_DIGEST,
    TAG_HELDOUT_ACCURACY,
    TAG_HELDOUT_SOURCES,
    TAG_INPUT,
    TAG_KIND,
    TAG_LABEL,
    TAG_MODEL,
    TAG_PORTABLE,
    TAG_REGISTERED_MODEL,
    TAG_REGISTERED_VERSION,
    ensure_experiment,
    fail_stale_runs,
    pip_requirements,
)
from instropitch.modelspec import ModelSpec
from instropitch.tinysol import family_indices

if TYPE_CHECKING:
    import keras
    import pandas as pd

MAX_MISCLASSIFIED_SHOWN = 8
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    """What a train task hands on (all small: safe for XCom)."""

    run_id: str
    model_uri: str
    version: str | None
    test_accuracy: float
    metrics: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (for XCom)."""
        return asdict(self)


# ------------------------------------------------------------------------ helpers


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


def label_info(spec: ModelSpec, snapshot: Snapshot, input_shape: tuple[int, int]) -> dict[str, Any]:
    """The label layout a predictor needs: stored in the model's metadata and as labels.json."""
    values, names = class_layout(spec.label)
    return {
        "spec_name": spec.name,
        "label": spec.label,
        "input": spec.input,
        "class_names": names,
        "class_values": values,
        "input_shape": [int(n) for n in input_shape],
        "features": spec.features,
        "feature_digest": snapshot.feature_digest,
        "data_digest": snapshot.digest,
    }


# ----------------------------------------------------------------------- reports


def evaluation_metrics(spec: ModelSpec, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Accuracy and macro F1; for pitch models also note-only and octave-only accuracy."""
    from sklearn.metrics import f1_score

    metrics = {
        "test_accuracy": float(np.mean(y_true == y_pred)) if len(y_true) else 0.0,
        "test_macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)) if len(y_true) else 0.0,
    }
    if spec.label == "midi":
        values = np.asarray(class_layout("midi")[0])
        true_midi, pred_midi = values[y_true], values[y_pred]
        metrics["test_note_accuracy"] = float(np.mean(true_midi % 12 == pred_midi % 12)) if len(y_true) else 0.0
        metrics["test_octave_accuracy"] = float(np.mean(true_midi // 12 == pred_midi // 12)) if len(y_true) else 0.0
    return metrics


def classification_table(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str]) -> pd.DataFrame:
    """Per-class precision / recall / F1 / support for classes seen in the test set or predicted."""
    import pandas as pd
    from sklearn.metrics import classification_report

    labels = sorted(set(y_true.tolist()) | set(y_pred.tolist()))
    report = classification_report(
        y_true, y_pred, labels=labels, target_names=[class_names[i] for i in labels], output_dict=True, zero_division=0
    )
    table = pd.DataFrame(report).T
    table.index.name = "class"
    return table


def confusion_figure(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str], title: str) -> Any:
    """Confusion matrix over the classes that occur (most of the 89 pitch classes would be empty)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix

    labels = sorted(set(y_true.tolist()) | set(y_pred.tolist()))
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    size = min(4 + 0.18 * len(labels), 22)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(cm, cmap="Blues", interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    names = [class_names[i] for i in labels]
    font = 8 if len(labels) <= 30 else 5
    ax.set_xticks(range(len(labels)), names, rotation=90, fontsize=font)
    ax.set_yticks(range(len(labels)), names, fontsize=font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if len(labels) <= 20:
        for i in range(len(labels)):
            for j in range(len(labels)):
                if cm[i, j]:
                    color = "white" if cm[i, j] > cm.max() / 2 else "black"
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7, color=color)
    fig.tight_layout()
    return fig


def misclassified_figure(
    x: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, paths: np.ndarray, class_names: list[str]
) -> Any:
    """Spectrograms of up to 8 wrongly predicted test notes, titled true -> predicted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wrong = np.flatnonzero(y_true != y_pred)[:MAX_MISCLASSIFIED_SHOWN]
    if len(wrong) == 0:
        fig, ax = plt.subplots(figsize=(4, 1.5))
        ax.text(0.5, 0.5, "no misclassified test notes", ha="center", va="center")
        ax.axis("off")
        return fig
    cols = min(4, len(wrong))
    rows = int(np.ceil(len(wrong) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, wrong, strict=False):
        ax.axis("on")
        ax.imshow(x[i].T, origin="lower", aspect="auto", cmap="magma")
        ax.set_title(f"true {class_names[y_true[i]]} / pred {class_names[y_pred[i]]}", fontsize=9)
        ax.set_xlabel(str(paths[i]).rsplit("/", 1)[-1][:40], fontsize=6)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def _accuracy_by_instrument(snapshot: Snapshot, test_rows: np.ndarray, correct: np.ndarray) -> str:
    import pandas as pd

    frame = pd.DataFrame({"instrument": snapshot.instrument[test_rows], "correct": correct})
    table = frame.groupby("instrument")["correct"].agg(["mean", "size"])
    return table.rename(columns={"mean": "accuracy", "size": "n_test"}).to_csv()


# ------------------------------------------------------------------------ training


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
    averages shifted looks at its input (`cnn.average_band_shifts`).
    """
    from instropitch.ml.cnn import average_band_shifts, join_members

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
    return average_band_shifts(join_members([model for model, _ in fits], spec), spec), fits[0][1]


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
        history = model.fit(
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


def predict_classes(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """Class index per row (argmax of the softmax), in batches."""
    return np.argmax(predict_proba(model, x), axis=1).astype(np.int64)


GROUP_SEPARATOR = "+"
"""Joins the sources one held-out fit leaves out ("fluidr3mono+timgm6mb"); never in a source name."""


def heldout_sources(spec: ModelSpec, source_names: list[str], epochs: int, override: bool | None = None) -> list[str]:
    """What `spec` holds out, one fit each: a source, or a group of them joined by
    `GROUP_SEPARATOR`. Groups come from the recipe's `heldout_together` (sources held out as
    one; names the data lacks are dropped), or, with more sources than its `heldout_groups`,
    round-robin over the sorted names. None with fewer than 2 fits to make, 0 epochs, or the
    recipe's `leave_one_source_out` off (`override`, when not None, replaces that setting)."""
    wanted = spec.training.leave_one_source_out if override is None else override
    names = sorted(set(source_names))
    if not (wanted and len(names) > 1 and epochs > 0):
        return []
    groups = spec.training.heldout_groups
    if groups >= 2 and len(names) > groups:
        return [GROUP_SEPARATOR.join(names[i::groups]) for i in range(groups)]
    together = [sorted(set(group) & set(names)) for group in spec.training.heldout_together]
    absent = sorted({name for group in spec.training.heldout_together for name in group} - set(names))
    if absent:  # a font not installed here, or a misspelt name: then its relatives would be held out apart
        log.info("heldout_together: no data from %s (sources: %s)", ", ".join(absent), ", ".join(names))
    joined = {name for group in together for name in group}
    fits = [GROUP_SEPARATOR.join(group) for group in together if group] + [n for n in names if n not in joined]
    return sorted(fits) if len(fits) > 1 else []  # holding out everything leaves nothing to train on


def fits_leaving_out(fits: list[str], only: Sequence[str]) -> list[str]:
    """The held-out labels of `fits` that leave out any of the sources `only` names (every fit when it is empty).

    A quick run (the demo) may run one fit of the recipe's several: it still calibrates and scores on a
    source it never heard, at a fraction of the time. Every source of the data is in some fit, so a name no fit
    leaves out is not a source of the data: an error, not a silent no-op.
    """
    if not only or not fits:
        return list(fits)
    members = {fit: set(held_out_members(fit)) for fit in fits}
    unknown = sorted(set(only) - set().union(*members.values()))
    if unknown:
        raise ValueError(f"no held-out fit leaves out {', '.join(unknown)} (the fits: {', '.join(fits) or 'none'})")
    return [fit for fit in fits if members[fit] & set(only)]


def held_out_members(held_out: str) -> list[str]:
    """The sources a held-out label (`heldout_sources`) stands for."""
    return held_out.split(GROUP_SEPARATOR)


def fit_labels(sources: np.ndarray, fits: Iterable[str]) -> np.ndarray:
    """Each of `sources` as the held-out label of the fit that answered it ("a+b" for a group).

    The calibration's honest figures (`calibration.cross_fitted`) hold out a fit's answers together: scoring
    one player of a font with a calibration fitted on its other player's answers would flatter it.
    """
    label = {name: fit for fit in fits for name in held_out_members(fit)}
    return np.array([label.get(name, name) for name in np.asarray(sources).astype(str)])


class Answers(NamedTuple):
    """What a model answered on some rows of the snapshot: the rows, their class probabilities
    and, for models fitted with a foreignness reference (`ml.foreignness`), each row's foreignness.
    A held-out fit's answers also carry what it answered on the test rows of the sources it trained on
    (`familiar`: `calibration.Familiar`)."""

    rows: np.ndarray
    proba: np.ndarray
    foreignness: np.ndarray | None = None
    familiar: Answers | None = None

    def subset(self, mask: np.ndarray) -> Answers:
        """These rows' answers (without `familiar`: they belong to the fit, not to some of its rows)."""
        return Answers(self.rows[mask], self.proba[mask], None if self.foreignness is None else self.foreignness[mask])


def per_source(answers: dict[str, Answers], sources: np.ndarray) -> dict[str, Answers]:
    """{source: answers} from answers keyed by held-out label: a group's answers split by the
    source of each row, so every source is scored and calibrated on its own."""
    out: dict[str, Answers] = {}
    for held_out, answer in answers.items():
        answer = Answers(*answer)
        for name in held_out_members(held_out):
            out[name] = answer.subset(np.asarray(sources)[answer.rows].astype(str) == name)
    return dict(sorted(out.items()))


def familiar_answers(answers: dict[str, Answers], y: np.ndarray) -> Familiar | None:
    """The familiar answers of every fit in `answers` (keyed by held-out label), each labelled with its fit; None
    unless every fit brings them with their foreignness (fits stored before them bring none)."""
    parts = {label: a.familiar for label, a in answers.items()}
    if not parts or any(f is None or f.foreignness is None for f in parts.values()):
        return None
    return Familiar(
        np.concatenate([f.proba for f in parts.values()]),
        np.asarray(y)[np.concatenate([f.rows for f in parts.values()])],
        np.concatenate([f.foreignness for f in parts.values()]),
        np.concatenate([[label] * len(f.rows) for label, f in parts.items()]),
    )


def pooled(answers: dict[str, Answers]) -> tuple[Answers, np.ndarray]:
    """All `answers` as one (foreignness only when every part has it) and the source of each row."""
    parts = list(answers.values())
    foreign = [a.foreignness for a in parts]
    return Answers(
        np.concatenate([a.rows for a in parts]),
        np.concatenate([a.proba for a in parts]),
        None if any(f is None for f in foreign) else np.concatenate(foreign),
    ), np.concatenate([[name] * len(a.rows) for name, a in answers.items()])


def fit_without_source(
    spec: ModelSpec,
    x: np.ndarray,
    y: np.ndarray,
    sources: np.ndarray,
    train_rows: np.ndarray,
    n_classes: int,
    held_out: str,
    *,
    epochs: int,
    extra: tuple[np.ndarray, np.ndarray] | None = None,
    never_train: Sequence[str] = (),
    band_hz: np.ndarray | None = None,
    instruments: np.ndarray | None = None,
) -> Answers:
    """Fit on the training rows of every source but `held_out` (one, or a group: `held_out_members`);
    its answers on every row of `held_out`, with their foreignness to this fit, and on the test rows of the
    sources it trained on (`Answers.familiar`).

    No row of a held-out source (train or test part) is seen in fitting or early stopping,
    nor a row another source plays from samples it shares with the held-out one
    (`shared_sample_rows`), so the answers are what the recipe does on recordings unlike its
    training data. `never_train` names sources left out of the fit even when not held out: a
    benchmark's outside renders, scored only by the fit blind to the font they play. `band_hz`:
    as `ModelRows.band_hz` (all rows); `instruments`: as `ModelRows.instruments`.
    """
    from instropitch.ml.foreignness import embed

    t = spec.training
    members = held_out_members(held_out)
    heard = ~np.isin(sources, [*members, *never_train]) & ~shared_sample_rows(spec, held_out, sources, instruments)
    rows = train_rows[heard[train_rows]]
    fit_rows, val_rows = fit_validation_rows(y, rows, t.validation_split, t.seed)
    model, _ = fit_model(
        spec,
        x[fit_rows],
        y[fit_rows],
        x[val_rows],
        y[val_rows],
        n_classes,
        epochs=epochs,
        groups=sources[fit_rows],
        extra=extra,
        label=f"{spec.name} without {held_out}",
        band_hz=band_hz_of(band_hz, fit_rows),
    )
    target = np.flatnonzero(np.isin(sources, members))
    reference = fitted_reference(model, x[fit_rows], y[fit_rows], x[val_rows])
    proba, embeddings = embed(model, x[target])
    tested = np.ones(len(y), dtype=bool)
    tested[train_rows] = False
    known = np.flatnonzero(heard & tested)  # notes of fonts it learnt, never fitted on
    familiar = None
    if len(known):
        known_proba, known_embeddings = embed(model, x[known])
        familiar = Answers(known, known_proba, reference.distance(known_embeddings))
    return Answers(target, proba, reference.distance(embeddings), familiar)


def shared_sample_rows(
    spec: ModelSpec, held_out: str, sources: np.ndarray, instruments: np.ndarray | None
) -> np.ndarray:
    """Per row: played by another source from samples it shares with `held_out` (`training.heldout_shared`).

    A fit blind to `held_out` must not train on these rows: their samples are the held-out notes' own.
    """
    members = set(held_out_members(held_out))
    shared = [entry for entry in spec.training.heldout_shared if members & set(entry.sources)]
    out = np.zeros(len(sources), dtype=bool)
    if not shared:
        return out
    if instruments is None:
        raise ValueError(f"holding out {held_out!r} under training.heldout_shared needs each row's instrument")
    for entry in shared:
        others = [name for name in entry.sources if name not in members]
        out |= np.isin(sources, others) & np.isin(instruments, entry.instruments)
    return out


def heldout_source_probabilities(
    spec: ModelSpec,
    x: np.ndarray,
    y: np.ndarray,
    sources: np.ndarray,
    train_rows: np.ndarray,
    n_classes: int,
    *,
    epochs: int,
    extra: tuple[np.ndarray, np.ndarray] | None = None,
    band_hz: np.ndarray | None = None,
    instruments: np.ndarray | None = None,
) -> dict[str, Answers]:
    """`fit_without_source` for each source (or group: `heldout_sources`) in turn, in this process
    (the DAG maps them as tasks instead).

    Returns {held-out label: its fit's `Answers`} (`per_source` splits them by source); empty with fewer than
    2 sources.
    """
    answers = {
        held_out: fit_without_source(
            spec,
            x,
            y,
            sources,
            train_rows,
            n_classes,
            held_out,
            epochs=epochs,
            extra=extra,
            band_hz=band_hz,
            instruments=instruments,
        )
        for held_out in heldout_sources(spec, sources.tolist(), max(epochs, 1), override=True)
    }
    return answers


def leave_one_source_out(spec: ModelSpec, *data: Any, epochs: int) -> dict[str, dict[str, float]]:
    """{source: metrics (as `evaluation_metrics`, plus `n`)} of `heldout_source_probabilities`.

    `data` is (x, y, sources, train_rows, n_classes), as that function takes them.
    """
    predicted = heldout_source_probabilities(spec, *data, epochs=epochs)
    return _heldout_scores(spec, data[1], per_source(predicted, data[2]))


def _heldout_scores(spec: ModelSpec, y: np.ndarray, predicted: dict[str, Answers]) -> dict[str, dict[str, float]]:
    return {
        name: {"n": float(len(a.rows)), **evaluation_metrics(spec, y[a.rows], np.argmax(a.proba, axis=1))}
        for name, a in predicted.items()
    }


def source_metrics(heldout: dict[str, dict[str, float]], in_distribution: dict[str, float]) -> dict[str, float]:
    """MLflow metrics per source (`source.<name>.test_accuracy`, `.heldout_accuracy`) and the
    summary `heldout_accuracy` (mean over sources; what promotion compares) and its minimum."""
    metrics = {f"source.{name}.test_accuracy": value for name, value in in_distribution.items()}
    for name, scores in heldout.items():
        for key, value in scores.items():
            if key.startswith("test_"):
                metrics[f"source.{name}.heldout_{key.removeprefix('test_')}"] = value
    if heldout:
        accuracies = [scores["test_accuracy"] for scores in heldout.values()]
        metrics["heldout_accuracy"] = float(np.mean(accuracies))
        metrics["heldout_min_accuracy"] = float(np.min(accuracies))
    return metrics


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


def train_and_log(
    spec: ModelSpec,
    snapshot: Snapshot,
    *,
    epochs_override: int | None = None,
    parent_run_id: str | None = None,
    experiment: str = "instropitch",
    register: bool = True,
    snapshot_uri: str | None = None,
    heldout: dict[str, Answers] | None = None,
    heldout_time_s: float = 0.0,
) -> TrainResult:
    """Train `spec` on the snapshot's training part and log one MLflow run (see module doc).

    The test part is only predicted once, after training; early stopping watches a
    validation split carved from the training part. `epochs_override` (e.g. 1 in smoke
    tests, 0 for an untrained baseline) replaces `spec.training.epochs`. The tracking
    server comes from `MLFLOW_TRACKING_URI`. `snapshot_uri` (where the snapshot is stored)
    is what the run's dataset input points at. A run of the same model under the same
    parent left RUNNING by an earlier, killed attempt is marked FAILED first.

    `heldout` ({source: its `Answers`}, from `fit_without_source` run
    elsewhere, e.g. the DAG's mapped `fit_heldout` tasks, which took `heldout_time_s`) replaces
    the leave-one-source-out fits this function would otherwise run itself; {} means none.
    """
    from instropitch.ml.cnn import configure_tensorflow

    configure_tensorflow()
    import mlflow

    epochs = spec.training.epochs if epochs_override is None else int(epochs_override)
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    rows = model_rows(spec, snapshot)
    info = label_info(spec, snapshot, rows.input_shape)
    run_tags = {
        TAG_KIND: "train",
        TAG_MODEL: spec.name,
        TAG_LABEL: spec.label,
        TAG_INPUT: spec.input,
        TAG_DATA_DIGEST: snapshot.digest,
        TAG_FEATURE_DIGEST: snapshot.feature_digest,
        TAG_CLASSES: ",".join(rows.class_names),
    }
    if parent_run_id:
        experiment_id = mlflow.MlflowClient().get_run(parent_run_id).info.experiment_id
        fail_stale_runs(
            experiment_id,
            f"tags.mlflow.parentRunId = '{parent_run_id}' and tags.`{TAG_MODEL}` = '{spec.name}'",
            "interrupted: left RUNNING by an earlier attempt of this task (killed worker or restarted server)",
        )
    else:
        experiment_id = ensure_experiment(experiment)
    with mlflow.start_run(
        experiment_id=experiment_id,
        run_name=f"train-{spec.name}",
        parent_run_id=parent_run_id,
        nested=mlflow.active_run() is not None,
        tags=run_tags,
        description=spec.description or None,
    ) as run:
        _log_recipe_and_data(spec, snapshot, rows, epochs, info)
        mlflow.log_input(mlflow_dataset(snapshot, snapshot_uri), context="training")
        fitted = _fit_and_score(spec, rows, epochs, snapshot.feature_preset, heldout, heldout_time_s)
        metrics = fitted.metrics
        mlflow.log_metrics(metrics)
        info["calibration"] = fitted.calibration.to_dict()
        mlflow.log_dict(info, LABELS_FILENAME)  # the layout again, now with the calibration
        mlflow.set_tag(TAG_CALIBRATED_ON, fitted.calibration.fitted_on)
        _log_reports(spec, snapshot, rows, fitted.y_pred, metrics)
        _log_figure(
            reliability_figure(
                fitted.calibration_answers.proba,
                fitted.calibration_y,
                fitted.calibration,
                f"{spec.name}: confidence",
                foreignness=fitted.calibration_answers.foreignness,
            ),
            "reliability_diagram.png",
        )
        model_uri, version, model_id = _log_model(spec, fitted.model, rows, info, fitted.reference, register=register)
        test_metrics = {k: v for k, v in metrics.items() if k.startswith("test_") or k.endswith("heldout_accuracy")}
        mlflow.log_metrics(test_metrics, model_id=model_id)  # shown on the logged model's page
        if version is not None:
            _tag_version(spec, version, run_tags, metrics, fitted.heldout_fits)
            model_uri = f"models:/{spec.registered_model_name}/{version}"
    return TrainResult(
        run_id=run.info.run_id,
        model_uri=model_uri,
        version=version,
        test_accuracy=metrics["test_accuracy"],
        metrics=metrics,
    )


def _log_recipe_and_data(
    spec: ModelSpec, snapshot: Snapshot, rows: ModelRows, epochs: int, info: dict[str, Any]
) -> None:
    """Params (the recipe and the data it saw), the recipe's YAML and the label layout."""
    import mlflow
    import yaml

    mlflow.log_params(spec.to_params())
    mlflow.log_params(
        {
            "training.epochs_effective": epochs,
            "data.n_fit": len(rows.fit),
            "data.n_val": len(rows.val),
            "data.n_test": len(rows.test),
            "data.input_shape": f"{rows.input_shape[0]}x{rows.input_shape[1]}",
            "data.n_classes": len(rows.class_names),
            "data.snapshot_seed": snapshot.seed,
            "data.test_size": snapshot.test_size,
            "data.stratify": snapshot.stratify,
            "data.feature_preset": snapshot.feature_preset,
            "data.sources": ",".join(rows.source_names)[:500],
        }
    )
    if spec.source is not None and spec.source.exists():
        mlflow.log_artifact(str(spec.source), artifact_path="spec")
    else:
        mlflow.log_text(yaml.safe_dump(spec.to_params(), sort_keys=False), f"spec/{spec.name}.yaml")
    mlflow.log_dict(info, LABELS_FILENAME)


@dataclass
class _Fitted:
    """The model, its metrics and test answers, and the answers its confidences are calibrated on."""

    model: Any
    metrics: dict[str, float]
    y_pred: np.ndarray
    calibration: Calibration
    calibration_answers: Answers
    calibration_y: np.ndarray
    reference: Reference | None = None
    """Where the model's foreignness is measured from, when its calibration reads it (`ml.foreignness`)."""
    heldout_fits: str = ""
    """The held-out fits its held-out scores come from, the version's tag: "a+b,c" ("" if none). Two scores
    compare only when their fits held out the same sources the same way: a fit blind to one font reads it
    higher than a fit blind to two (bench/RESULTS.md, "Leave one font family out"), and a quick run's one fit
    is not the recipe's four."""


def _fit_and_score(
    spec: ModelSpec,
    rows: ModelRows,
    epochs: int,
    feature_preset: str = "",
    predicted: dict[str, Answers] | None = None,
    heldout_time: float = 0.0,
) -> _Fitted:
    """Leave-one-source-out fits (unless `predicted` brings their answers), the model itself,
    every metric of both, the calibration.

    The calibration is fitted on the held-out-source answers when there are some (notes
    unlike the training data, as a user's are), else on the validation rows.
    """
    n_classes = len(rows.class_names)
    tones = synthetic_tone_rows(spec, feature_preset)
    if predicted is None:
        started = time.perf_counter()
        predicted = {}
        fits = heldout_sources(spec, rows.source_names, epochs)
        if fits:
            predicted = heldout_source_probabilities(
                spec,
                rows.x,
                rows.y,
                rows.sources,
                rows.train,
                n_classes,
                epochs=epochs,
                extra=tones,
                band_hz=rows.band_hz,
                instruments=rows.instruments,
            )
        heldout_time = time.perf_counter() - started
    else:
        fits = sorted(predicted)  # by held-out label: a quick run may bring one fit of the recipe's several
    familiar = familiar_answers(predicted, rows.y)
    predicted = per_source(predicted, rows.sources)  # the answers come by held-out label, maybe a group
    heldout = _heldout_scores(spec, rows.y, predicted)

    started = time.perf_counter()
    model, history = fit_model(
        spec,
        rows.x[rows.fit],
        rows.y[rows.fit],
        rows.x[rows.val],
        rows.y[rows.val],
        n_classes,
        epochs=epochs,
        groups=rows.sources[rows.fit],
        callbacks=[_mlflow_callback()],
        extra=tones,
        band_hz=band_hz_of(rows.band_hz, rows.fit),
    )
    training_time = time.perf_counter() - started

    y_test, test_sources = rows.y[rows.test], rows.sources[rows.test]
    y_pred = predict_classes(model, rows.x[rows.test])
    metrics = evaluation_metrics(spec, y_test, y_pred)
    in_distribution = {
        name: float(np.mean(y_pred[test_sources == name] == y_test[test_sources == name]))
        for name in rows.source_names
        if np.any(test_sources == name)
    }
    metrics.update(source_metrics(heldout, in_distribution))
    metrics["training_time_s"] = training_time
    if heldout:
        metrics["heldout_training_time_s"] = heldout_time  # the sum over the fits, wherever they ran
    metrics.update(_history_metrics(spec, history))

    reference = None
    families = family_indices(rows.class_names) if spec.label == "instrument" else None  # a family answer too
    if predicted:
        cal, cal_groups = pooled(predicted)
        cal_y = rows.y[cal.rows]
        # the honest figures of the calibration as built: the same answers, familiar ones and families
        fitted_on = {"foreignness": cal.foreignness, "familiar": familiar, "families": families}
        calibration = calibrate(cal.proba, cal_y, HELDOUT_SOURCES, **fitted_on)
        by_fit = fit_labels(cal_groups, fits)
        honest = cross_fitted(cal.proba, cal_y, by_fit, **fitted_on)  # one calibration per fit, on the others'
        metrics["calibration.heldout_ece"] = honest.ece()
        hold, size = honest.candidates()
        metrics["calibration.heldout_candidates_hold"], metrics["calibration.heldout_candidates"] = hold, size
        metrics["calibration.heldout_sure"], metrics["calibration.heldout_sure_accuracy"] = honest.sure()
        if families is not None:
            sure, right = honest.family_sure()
            metrics["calibration.heldout_family_sure"] = sure
            metrics["calibration.heldout_family_sure_accuracy"] = right
        if honest.familiar_ece() is not None:  # how a note of a font it learnt is shown
            metrics["calibration.familiar_ece"] = honest.familiar_ece()
        if cal.foreignness is not None:  # the champion answers its own foreignness, the calibration reads it
            reference = fitted_reference(model, rows.x[rows.fit], rows.y[rows.fit], rows.x[rows.val])
    else:
        cal = Answers(rows.val, predict_proba(model, rows.x[rows.val]))
        calibration = calibrate(cal.proba, rows.y[cal.rows], "validation", families=families)
    numbers = {k: v for k, v in calibration.to_dict().items() if isinstance(v, int | float)}  # not fitted_on, families
    metrics.update({f"calibration.{k}": float(v) for k, v in numbers.items()})
    return _Fitted(model, metrics, y_pred, calibration, cal, rows.y[cal.rows], reference, ",".join(fits))


def _mlflow_callback() -> keras.callbacks.Callback:
    """The epoch curves in MLflow (step = epoch), logged synchronously.

    Not `mlflow.keras.MlflowCallback`: it logs asynchronously, so a tracking server that
    dies mid-training goes unnoticed until the end (tests/ml/test_training_faults.py needs
    the task to fail at the next epoch).
    """
    import keras
    import mlflow

    def log_epoch(epoch: int, logs: dict | None = None) -> None:
        values = {k: float(v) for k, v in (logs or {}).items() if np.isscalar(v) or np.ndim(v) == 0}
        if values:
            mlflow.log_metrics(values, step=epoch)

    return keras.callbacks.LambdaCallback(on_epoch_end=log_epoch)


def _history_metrics(spec: ModelSpec, history: dict[str, list[float]]) -> dict[str, float]:
    """Epochs trained, the best epoch by the early-stopping monitor, and the last epoch's numbers."""
    out = {"epochs_trained": float(len(history.get("loss", [])))}
    if history.get("val_loss"):
        monitor = spec.training.early_stopping.monitor if spec.training.early_stopping else "val_loss"
        curve = history[monitor]
        out["best_epoch"] = float(np.argmin(curve) if monitor == "val_loss" else np.argmax(curve))
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            if history.get(key):
                out[f"final_{key}"] = float(history[key][-1])
    return out


def _log_reports(
    spec: ModelSpec, snapshot: Snapshot, rows: ModelRows, y_pred: np.ndarray, metrics: dict[str, float]
) -> None:
    """What people look at: per-class table, accuracy by instrument, confusion matrix, misclassified notes."""
    import mlflow

    y_test = rows.y[rows.test]
    if not len(y_test):
        return
    mlflow.log_text(classification_table(y_test, y_pred, rows.class_names).to_csv(), "classification_report.csv")
    mlflow.log_text(_accuracy_by_instrument(snapshot, rows.test, y_test == y_pred), "accuracy_by_instrument.csv")
    title = f"{spec.name}: test accuracy {metrics['test_accuracy']:.3f}"
    _log_figure(confusion_figure(y_test, y_pred, rows.class_names, title), "confusion_matrix.png")
    _log_figure(
        misclassified_figure(rows.x[rows.test], y_test, y_pred, snapshot.paths[rows.test], rows.class_names),
        "misclassified.png",
    )


def _log_model(
    spec: ModelSpec,
    model: keras.Model,
    rows: ModelRows,
    info: dict[str, Any],
    reference: Reference | None = None,
    *,
    register: bool,
) -> tuple[str, str | None, str]:
    """Log the Keras model with signature, example, label layout and its ONNX copy; (model URI, version or None, model id).

    The ONNX copy (`extra_files/model.onnx`, checked against the Keras model on training
    rows) is what every prediction path loads: prediction needs no TensorFlow. With a
    `reference` it also answers each note's foreignness (`ml.foreignness.with_foreignness`).
    """
    import hashlib

    import mlflow
    from mlflow.models import infer_signature

    from instropitch.ml.foreignness import with_foreignness
    from instropitch.ml.portable import ONNX_OPSET, to_onnx

    example = rows.x[rows.fit][:2].astype(np.float32)
    signature = infer_signature(example, model.predict(example, verbose=0))
    portable_model = model if reference is None else with_foreignness(model, reference)
    onnx_bytes = to_onnx(portable_model, check=rows.x[rows.fit][:64])
    portable = {
        "format": "onnx",
        "file": PORTABLE_PATH,
        "sha256": hashlib.sha256(onnx_bytes).hexdigest(),
        "opset": ONNX_OPSET,
    }
    with tempfile.TemporaryDirectory() as tmp:
        labels_file = Path(tmp) / LABELS_FILENAME
        labels_file.write_text(json.dumps(info, indent=1))
        onnx_file = Path(tmp) / PORTABLE_FILENAME
        onnx_file.write_bytes(onnx_bytes)
        # mlflow.tensorflow, not mlflow.keras: the Keras-3 flavour's log_model fails with an
        # input example in MLflow 3.17 (mlflow/mlflow#16183). Both save the same .keras file.
        model_info = mlflow.tensorflow.log_model(
            model,
            name=MODEL_ARTIFACT_NAME,
            signature=signature,
            input_example=example,
            registered_model_name=spec.registered_model_name if register else None,
            pip_requirements=pip_requirements(),
            metadata={METADATA_KEY: info, PORTABLE_KEY: portable},
            extra_files=[str(labels_file), str(onnx_file)],
        )
    version = model_info.registered_model_version if register else None
    return model_info.model_uri, (str(version) if version else None), model_info.model_id


def _tag_version(
    spec: ModelSpec, version: str, run_tags: dict[str, str], metrics: dict[str, float], heldout_fits: str
) -> None:
    """The run names its version; the version carries the run's tags, its scores and the recipe's description."""
    import mlflow

    client = mlflow.MlflowClient()
    mlflow.set_tags({TAG_REGISTERED_MODEL: spec.registered_model_name, TAG_REGISTERED_VERSION: version})
    version_tags = {k: v for k, v in run_tags.items() if k != TAG_KIND}
    version_tags["test_accuracy"] = f"{metrics['test_accuracy']:.6f}"
    version_tags[TAG_PORTABLE] = "onnx"
    if "heldout_accuracy" in metrics:
        version_tags[TAG_HELDOUT_ACCURACY] = f"{metrics['heldout_accuracy']:.6f}"
        version_tags[TAG_HELDOUT_SOURCES] = heldout_fits
    for key, value in version_tags.items():
        client.set_model_version_tag(spec.registered_model_name, version, key, value)
    if spec.description:
        client.update_model_version(spec.registered_model_name, version, description=spec.description)


def _log_figure(fig: Any, name: str) -> None:
    import matplotlib.pyplot as plt
    import mlflow

    try:
        mlflow.log_figure(fig, name)
    finally:
        plt.close(fig)
