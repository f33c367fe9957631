"""A throw-away MLflow store: a sqlite tracking database and local artifacts in one folder.

`throwaway_store(root)` points `MLFLOW_TRACKING_URI` at `root/mlflow.db` and creates the
`instropitch` experiment (artifacts under `root/artifacts`) for the length of a `with`
block, as the pipeline's own stores are laid out. Module- and session-scoped fixtures call
it directly; a single test takes the `mlflow_store` fixture of tests/conftest.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

EXPERIMENT = "instropitch"


@dataclass(frozen=True)
class MlflowStore:
    root: Path
    uri: str
    experiment_id: str


@contextlib.contextmanager
def throwaway_store(root: Path, *, chdir: bool = True) -> Iterator[MlflowStore]:
    """The store in `root`, set as the tracking URI inside the block (and `root` the working folder with `chdir`)."""
    import mlflow

    uri = f"sqlite:///{root}/mlflow.db"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        if chdir:
            mp.chdir(root)
        experiment_id = mlflow.MlflowClient().create_experiment(EXPERIMENT, artifact_location=str(root / "artifacts"))
        yield MlflowStore(root=root, uri=uri, experiment_id=experiment_id)
