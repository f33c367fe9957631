"""Leave-one-source-out fits as units of work of their own: one per model and held-out source.

The training DAG maps them as tasks, so that workers share them, instead of each `train`
task running S fits one after another. A fit's answers (class probabilities, true labels and
foreignness of every row of the source it never saw) go to `heldout/<model>/<source>.npz`, an artifact
of the pipeline's parent run, next to the snapshot; the model's `train` task reads them back
to score each source and to fit the calibration on the pooled answers. Beside them go the fit's
answers on the test rows of the sources it trained on (`familiar_*`): the calibration's temperature
is fitted on those too (`calibration.Familiar`).

An artifact rather than XCom: the answers grow as rows x classes (a 2,913-note source x 89
pitch classes is 2 MB of float64, several times that as JSON), and XCom travels through
Airflow's API server into its metadata database. A retried fit writes the same path again,
so a re-run leaves neither a duplicate nor an extra MLflow run; what crosses XCom is the
small summary of `HeldoutAnswers.summary`.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from instropitch.ml.snapshot import Snapshot
from instropitch.ml.training import Answers, fit_without_source, held_out_members, model_rows, synthetic_tone_rows
from instropitch.modelspec import ModelSpec

ARTIFACT_DIR = "heldout"


@dataclass(frozen=True)
class HeldoutAnswers:
    """What one model of `spec` fitted without `source` answered on every row of `source`.

    `source` may be a group of sources (`training.heldout_sources`: "a+b"): the answers then
    cover the rows of each; `training.per_source` splits them for scoring."""

    model: str
    source: str
    rows: np.ndarray  # positions in the snapshot
    proba: np.ndarray  # class probabilities per row
    labels: np.ndarray  # true class index per row
    data_digest: str  # the snapshot's: answers from another snapshot must never mix in
    fit_time_s: float
    foreignness: np.ndarray | None = None  # per row, to the fit (`ml.foreignness`); None in older files
    familiar: Answers | None = None  # on the test rows of the sources it trained on; None in older files

    def answers(self) -> Answers:
        """As `ml.training` takes them."""
        return Answers(self.rows, self.proba, self.foreignness, self.familiar)

    def summary(self) -> dict[str, Any]:
        """Small and JSON-able (XCom): the score, not the answers."""
        accuracy = float(np.mean(np.argmax(self.proba, axis=1) == self.labels)) if len(self.labels) else 0.0
        return {
            "model": self.model,
            "source": self.source,
            "n": len(self.rows),
            "heldout_accuracy": accuracy,
            "fit_time_s": round(self.fit_time_s, 1),
            "artifact": artifact_path(self.model, self.source),
        }


def artifact_path(model: str, source: str) -> str:
    """Where the answers of `model` without `source` live in the parent run."""
    return f"{ARTIFACT_DIR}/{model}/{source}.npz"


def fit(
    spec: ModelSpec, snapshot: Snapshot, source: str, epochs: int, never_train: Sequence[str] = ()
) -> HeldoutAnswers:
    """Fit `spec` on the snapshot's training rows of every other source; answer on all of `source` (or its group).

    `never_train`: sources no fit trains on (`training.fit_without_source`), for benchmarks."""
    rows = model_rows(spec, snapshot)
    members = held_out_members(source)
    if not set(members) <= set(rows.source_names) or len(set(rows.source_names) - {*members, *never_train}) < 1:
        raise ValueError(f"cannot hold out {source!r}: the snapshot's sources are {rows.source_names}")
    started = time.perf_counter()
    answers = fit_without_source(
        spec,
        rows.x,
        rows.y,
        rows.sources,
        rows.train,
        len(rows.class_names),
        source,
        epochs=epochs,
        extra=synthetic_tone_rows(spec, snapshot.feature_preset),
        never_train=never_train,
        band_hz=rows.band_hz,
        instruments=rows.instruments,
    )
    elapsed = time.perf_counter() - started
    return HeldoutAnswers(
        spec.name,
        source,
        answers.rows,
        answers.proba,
        rows.y[answers.rows],
        snapshot.digest,
        elapsed,
        answers.foreignness,
        answers.familiar,
    )


def log_answers(answers: HeldoutAnswers, run_id: str) -> str:
    """Store the answers under `run_id` (the pipeline's parent run), replacing an earlier attempt's; the path."""
    import mlflow

    path = artifact_path(answers.model, answers.source)
    folder, name = path.rsplit("/", 1)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / name
        with local.open("wb") as f:  # a file object: np.savez would not add .npz to a name that has it anyway
            np.savez_compressed(
                f,
                rows=answers.rows,
                proba=answers.proba,
                labels=answers.labels,
                data_digest=np.str_(answers.data_digest),
                fit_time_s=np.float64(answers.fit_time_s),
                **({} if answers.foreignness is None else {"foreignness": answers.foreignness}),
                **familiar_arrays(answers.familiar),
            )
        mlflow.MlflowClient().log_artifact(run_id, str(local), artifact_path=folder)
    return path


def familiar_arrays(familiar: Answers | None) -> dict[str, np.ndarray]:
    """A fit's familiar answers as the arrays its stored file holds (none without them or their foreignness)."""
    if familiar is None or familiar.foreignness is None:
        return {}
    return {
        "familiar_rows": familiar.rows,
        "familiar_proba": familiar.proba,
        "familiar_foreignness": familiar.foreignness,
    }


def _read_familiar(data: Any, path: str, held_out: np.ndarray, n_rows: int, n_classes: int) -> Answers | None:
    """The familiar answers of a stored file (None in files written before them), checked: rows of this snapshot
    outside the held-out ones, one probability row and one foreignness per row."""
    if "familiar_rows" not in data.files:
        return None
    familiar = Answers(data["familiar_rows"], data["familiar_proba"], data["familiar_foreignness"])
    rows = familiar.rows
    outside = len(rows) > 0 and (rows.min() < 0 or rows.max() >= n_rows)
    if outside or np.isin(rows, held_out).any() or familiar.proba.shape != (len(rows), n_classes):
        raise ValueError(f"{path}: its familiar answers are not on rows of the sources its fit trained on")
    if len(familiar.foreignness) != len(rows):
        raise ValueError(f"{path} holds {len(familiar.foreignness)} familiar foreignness values for {len(rows)} rows")
    return familiar


def load_answers(run_id: str, spec: ModelSpec, sources: list[str], snapshot: Snapshot) -> dict[str, HeldoutAnswers]:
    """{source: answers} of `spec`'s model for each of `sources`, checked against `snapshot`.

    A missing file, answers from another snapshot or labels that are not the snapshot's
    raise ValueError: the calibration and the scores must come from this run's fits.
    """
    import mlflow

    y, _ = snapshot.labels_for(spec)
    out: dict[str, HeldoutAnswers] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for source in sources:
            path = artifact_path(spec.name, source)
            try:
                local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path, dst_path=tmp)
            except Exception as exc:  # MLflow raises several types for a missing artifact
                raise ValueError(f"no held-out answers {path} in run {run_id}: did fit_heldout run?") from exc
            expected = np.flatnonzero(np.isin(np.asarray(snapshot.source).astype(str), held_out_members(source)))
            with np.load(local) as data:
                answers = HeldoutAnswers(
                    spec.name,
                    source,
                    data["rows"],
                    data["proba"],
                    data["labels"],
                    str(data["data_digest"]),
                    float(data["fit_time_s"]),
                    data["foreignness"] if "foreignness" in data.files else None,
                    _read_familiar(data, path, expected, len(y), data["proba"].shape[1]),
                )
            if answers.data_digest != snapshot.digest:
                raise ValueError(f"{path} answers snapshot {answers.data_digest}, not {snapshot.digest}")
            if not np.array_equal(answers.rows, expected) or len(answers.proba) != len(expected):
                raise ValueError(f"{path} does not cover the rows of source {source!r} in this snapshot")
            if answers.foreignness is not None and len(answers.foreignness) != len(expected):
                raise ValueError(f"{path} holds {len(answers.foreignness)} foreignness values for {len(expected)} rows")
            if not np.array_equal(answers.labels, y[expected]):
                raise ValueError(f"{path} holds other labels than the snapshot's for {spec.name!r}")
            out[source] = answers
    return out
