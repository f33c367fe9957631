"""Train one `ModelSpec` on a `Snapshot` and record everything about it in one MLflow run.

The run holds the spec (params and the YAML itself), per-epoch curves, test metrics and
reports, and the Keras model with its signature, input example, label layout and ONNX copy
(`ml.portable`: what prediction loads); the model is registered as `instropitch-{spec.name}`. Promotion is a separate step
(`registry.promote`), so training never changes what is served. The networks are fitted by
`ml.fitting`; the leave-one-source-out fits whose answers score the model on unheard sources and fit its
calibration are `ml.heldout`'s; the test reports are `ml.reports`'.

TensorFlow, Keras, MLflow and matplotlib are imported inside the functions: the Airflow
scheduler imports this module while parsing DAGs.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from instropitch.ml.calibration import (
    HELDOUT_SOURCES,
    Calibration,
    calibrate,
    chance_ece,
    cross_fitted,
    reliability_figure,
)
from instropitch.ml.class_prior import prior_table
from instropitch.ml.envelope import accuracy_alone
from instropitch.ml.fitting import (
    ModelRows,
    band_hz_of,
    fit_model,
    model_rows,
    predict_classes,
    predict_proba,
    synthetic_tone_rows,
    taught_labels,
)
from instropitch.ml.foreignness import Reference, fitted_reference
from instropitch.ml.heldout import (
    Answers,
    familiar_answers,
    fit_labels,
    heldout_scores,
    heldout_source_probabilities,
    heldout_sources,
    per_source,
    pooled,
    source_metrics,
)
from instropitch.ml.reports import (
    accuracy_by_instrument,
    classification_table,
    confusion_figure,
    evaluation_metrics,
    misclassified_figure,
)
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
    TAG_RECIPE_DIGEST,
    TAG_REGISTERED_MODEL,
    TAG_REGISTERED_VERSION,
    code_digest,
    ensure_experiment,
    fail_stale_runs,
    pip_requirements,
)
from instropitch.modelspec import ModelSpec
from instropitch.tinysol import family_indices

if TYPE_CHECKING:
    import keras

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


def recipe_digest(spec: ModelSpec, epochs: int) -> str:
    """16 hex chars of sha256 over the recipe's settings, the epochs that ran, the code (`code_digest`) and the
    versions of the libraries that fit it (`pip_requirements`: Keras, TensorFlow, NumPy, MLflow).

    With the data digest, what a version learnt from: equal digests on the same data teach nothing new.
    """
    import hashlib

    learnt_by = {
        "recipe": spec.to_params(),
        "epochs": int(epochs),
        "code": code_digest(),
        "libraries": pip_requirements(),
    }
    blob = json.dumps(learnt_by, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


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
        TAG_RECIPE_DIGEST: recipe_digest(spec, epochs),
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
    """Params (the recipe and the data it saw), the recipe's YAML, the label layout and, with
    `architecture.logit_adjustment`, each class's share of the rows the model learns from and what it takes out."""
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
    if spec.architecture.logit_adjustment:  # what `fitting.fit_model` adjusts by
        taught = taught_labels(rows.y[rows.fit], rows.y[rows.val])
        mlflow.log_text(prior_table(taught, rows.class_names, spec.architecture.logit_adjustment), "class_prior.csv")


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
    heldout = heldout_scores(spec, rows.y, predicted)

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
    # with an envelope read: each side of the model's sum alone, to see what the read adds
    alone = accuracy_alone(model, rows.x[rows.test], y_test)
    metrics.update({f"test_accuracy_{side}_alone": value for side, value in alone.items()})
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
        metrics["calibration.heldout_ece_chance"] = chance_ece(honest.scaled.max(axis=1))  # its floor at this count
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
    mlflow.log_text(accuracy_by_instrument(snapshot, rows.test, y_test == y_pred), "accuracy_by_instrument.csv")
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
