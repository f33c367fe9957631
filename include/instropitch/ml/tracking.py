"""The names a training run, a logged model and a registered version carry in MLflow.

One place for the experiment, the artifact names, the tag keys and the pinned requirements,
so the code that writes them (`ml.training`) and the code that reads them (`ml.registry`,
`serving`) cannot drift apart. Only the standard library is imported at module level.
"""

from __future__ import annotations

import os
from importlib import metadata as importlib_metadata
from pathlib import Path

EXPERIMENT = "instropitch"


def ensure_experiment(name: str = EXPERIMENT) -> str:
    """Create the experiment once (artifacts under `$INSTROPITCH_ARTIFACT_ROOT` when set); return its id."""
    import mlflow

    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    root = os.environ.get("INSTROPITCH_ARTIFACT_ROOT")
    location = Path(root).resolve().as_uri() if root and "://" not in root else root
    try:
        return mlflow.create_experiment(name, artifact_location=location)
    except Exception:  # created meanwhile by a concurrent task
        return mlflow.get_experiment_by_name(name).experiment_id


MODEL_ARTIFACT_NAME = "model"
LABELS_FILENAME = "labels.json"
"""Inside the logged model as `extra_files/labels.json`, and at the run's artifact root."""
METADATA_KEY = "instropitch"
"""Key of the label layout in the logged model's MLmodel `metadata` (see `registry.load_model`)."""

TAG_KIND = "instropitch.kind"
TAG_MODEL = "instropitch.model"
TAG_LABEL = "instropitch.label"
TAG_INPUT = "instropitch.input"
TAG_CLASSES = "instropitch.class_names"
TAG_DATA_DIGEST = "data_digest"
TAG_FEATURE_DIGEST = "feature_digest"
TAG_REGISTERED_MODEL = "registered_model"
TAG_REGISTERED_VERSION = "registered_version"
TAG_HELDOUT_ACCURACY = "heldout_accuracy"
"""Mean held-out-source accuracy of the recipe (`leave_one_source_out`), on the version."""
TAG_HELDOUT_SOURCES = "heldout_sources"
"""Comma-separated sources that held-out score was measured on (promotion compares like with like)."""


def pip_requirements(extra: tuple[str, ...] = ()) -> list[str]:
    """Pinned from what is installed (plus `extra` where installed): skips MLflow's slow inference of them."""
    wanted = ["mlflow", "keras", "numpy"]
    for tf_dist in ("tensorflow-cpu", "tensorflow"):
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
