"""The names a training run, a logged model and a registered version carry in MLflow.

One place for the experiment, the artifact names, the tag keys and the pinned requirements,
so the code that writes them (`ml.training`) and the code that reads them (`ml.registry`,
`serving`) cannot drift apart. Only the standard library is imported at module level.
"""

from __future__ import annotations

import contextlib
import os
from importlib import metadata as importlib_metadata
from pathlib import Path

EXPERIMENT = "instropitch"
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
"""MLflow 3's UI opens an experiment of this kind on its training runs, not on the GenAI view."""


def ensure_experiment(name: str = EXPERIMENT) -> str:
    """Create the experiment once (artifacts under `$INSTROPITCH_ARTIFACT_ROOT` when set); return its id.

    The experiment is marked a model-training experiment (also one created before the tag existed).
    """
    import mlflow

    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        root = os.environ.get("INSTROPITCH_ARTIFACT_ROOT")
        location = Path(root).resolve().as_uri() if root and "://" not in root else root
        with contextlib.suppress(Exception):  # created meanwhile by a concurrent task
            mlflow.create_experiment(name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
        experiment = mlflow.get_experiment_by_name(name)
    if experiment.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
        mlflow.MlflowClient().set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return experiment.experiment_id


def missing_sqlite_store(uri: str) -> Path | None:
    """The file a `sqlite:///` tracking URI names when that file does not exist; None otherwise.

    MLflow creates a missing SQLite store on first use (an empty database, and INFO lines
    for its migrations): a command that only reads models or runs should say there are none.
    """
    if not uri.startswith("sqlite:///"):
        return None
    path = uri.removeprefix("sqlite:///").split("?", 1)[0]
    if not path or path == ":memory:" or Path(path).exists():
        return None
    return Path(path)


TAG_FAILURE_REASON = "instropitch.failure_reason"
"""Why a run ended FAILED when it did not end by itself (e.g. its task was killed)."""


def fail_stale_runs(experiment_id: str, filter_string: str, reason: str, *, keep: str | None = None) -> list[str]:
    """Mark RUNNING runs matching `filter_string` (other than `keep`) FAILED, tagged with `reason`; their ids.

    A task killed mid-run (or a server restarted) leaves its run RUNNING forever; the retry
    or the next run calls this before starting its own.
    """
    import mlflow

    client = mlflow.MlflowClient()
    stale = client.search_runs([experiment_id], filter_string=f"{filter_string} and attributes.status = 'RUNNING'")
    closed = []
    for run in stale:
        if run.info.run_id == keep:
            continue
        client.set_tag(run.info.run_id, TAG_FAILURE_REASON, reason)
        client.set_terminated(run.info.run_id, status="FAILED")
        closed.append(run.info.run_id)
    return closed


MODEL_ARTIFACT_NAME = "model"
LABELS_FILENAME = "labels.json"
"""Inside the logged model as `extra_files/labels.json`, and at the run's artifact root."""
METADATA_KEY = "instropitch"
"""Key of the label layout in the logged model's MLmodel `metadata` (see `registry.load_model`)."""
PORTABLE_FILENAME = "model.onnx"
"""The ONNX copy of the Keras model, inside the logged model as `extra_files/model.onnx`."""
PORTABLE_PATH = f"extra_files/{PORTABLE_FILENAME}"
PORTABLE_KEY = "instropitch_portable"
"""MLmodel `metadata` key saying the logged model carries a portable copy: format, file, sha256, opset."""
TAG_PORTABLE = "portable_format"
"""On the version: the format of its portable copy (absent on versions registered before them)."""

TAG_KIND = "instropitch.kind"
TAG_MODEL = "instropitch.model"
TAG_LABEL = "instropitch.label"
TAG_INPUT = "instropitch.input"
TAG_CLASSES = "instropitch.class_names"
TAG_CALIBRATED_ON = "calibration.fitted_on"
"""What the version's confidence calibration was fitted on: `heldout_sources` or `validation`."""
TAG_DATA_DIGEST = "data_digest"
TAG_FEATURE_DIGEST = "feature_digest"
TAG_REGISTERED_MODEL = "registered_model"
TAG_REGISTERED_VERSION = "registered_version"
TAG_RECIPE_DIGEST = "recipe_digest"
"""What trained the version besides its data (`ml.training.recipe_digest`): recipe, epochs, code, libraries."""
TAG_HELDOUT_ACCURACY = "heldout_accuracy"
"""Mean held-out-source accuracy of the recipe (`leave_one_source_out`), on the version."""
TAG_HELDOUT_SOURCES = "heldout_sources"
"""The held-out fits that score came from, comma-separated, each a source or sources held out together
("a+b"): promotion compares like with like, so versions measured with other fits fall back to test accuracy."""


def code_digest() -> str:
    """16 hex chars of sha256 over the `instropitch` package's Python files: other code, other digest.

    Part of a version's recipe digest, so that a deployment of new code trains again on unchanged data.
    """
    import hashlib

    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def pip_requirements(extra: tuple[str, ...] = (), *, keras: bool = True) -> list[str]:
    """Pinned from what is installed (plus `extra` where installed): skips MLflow's slow inference of them.

    `keras=False` (the pyfunc model, which predicts with the portable copies) leaves Keras and TensorFlow out.
    """
    wanted = ["mlflow", "keras", "numpy"] if keras else ["mlflow", "numpy"]
    for tf_dist in ("tensorflow-cpu", "tensorflow") if keras else ():
        try:
            importlib_metadata.version(tf_dist)
            wanted.append(tf_dist)
            break
        except importlib_metadata.PackageNotFoundError:
            continue
    out = [f"{name}=={importlib_metadata.version(name)}" for name in wanted]
    for name in extra:
        try:
            out.append(f"{name}=={importlib_metadata.version(name)}")
        except importlib_metadata.PackageNotFoundError:
            continue
    return out
