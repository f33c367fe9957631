"""Leave-one-source-out: fits each blind to one source (or a group of them), their answers, and those
answers stored as units of work of their own, one per model and held-out source.

`heldout_sources` says which fits a recipe makes on the data; `fit_without_source` makes one (never a
row of the held-out source, nor one another source plays from its samples, in fitting or early
stopping) and answers on every row it never heard, with each row's foreignness, and on the test rows
of the sources it trained on (`Answers.familiar`). The champion's calibration and its held-out
figures are fitted and scored on these answers (`ml.training`).

The training DAG maps the fits as tasks, so that workers share them, instead of each `train`
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

import logging
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from instropitch.ml.calibration import Familiar
from instropitch.ml.fitting import band_hz_of, fit_model, fit_validation_rows, model_rows, synthetic_tone_rows
from instropitch.ml.foreignness import fitted_reference
from instropitch.ml.reports import evaluation_metrics
from instropitch.ml.snapshot import Snapshot
from instropitch.modelspec import ModelSpec

log = logging.getLogger(__name__)

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
    return heldout_scores(spec, data[1], per_source(predicted, data[2]))


def heldout_scores(spec: ModelSpec, y: np.ndarray, predicted: dict[str, Answers]) -> dict[str, dict[str, float]]:
    """{source: metrics (as `reports.evaluation_metrics`, plus `n`)} of answers split by source (`per_source`)."""
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


# ------------------------------------------------------------------ stored answers

ARTIFACT_DIR = "heldout"


@dataclass(frozen=True)
class HeldoutAnswers:
    """What one model of `spec` fitted without `source` answered on every row of `source`.

    `source` may be a group of sources (`heldout_sources`: "a+b"): the answers then
    cover the rows of each; `per_source` splits them for scoring."""

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

    `never_train`: sources no fit trains on (`fit_without_source`), for benchmarks."""
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
