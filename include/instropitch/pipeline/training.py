"""The steps behind the `instropitch_training` DAG, one function per task.

`snapshot` freezes the combined table into one train/test split stored as an MLflow
artifact of a parent run; every `fit_heldout` task (one per model and held-out source),
every `train` task (one per `models/*.yaml`) and every `promote` reads that same artifact,
so both models are trained and judged on the same notes. Only small JSON (URIs, versions,
scores) crosses task boundaries; the held-out fits' answers go through the parent run
(`instropitch.ml.heldout`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import Engine

from instropitch.data import warehouse
from instropitch.ml.tracking import ensure_experiment, fail_stale_runs

if TYPE_CHECKING:
    from instropitch.ml.snapshot import Snapshot
    from instropitch.modelspec import ModelSpec

log = logging.getLogger(__name__)

REFERENCE_DIR = "reference"
"""Sub-folder of models/ with recipes trained only when named (e.g. `reference/seed-pitch`)."""


def model_paths(names: list[str] | None = None, models_dir: Path | None = None) -> list[str]:
    """YAML files of the models to train: all of `models/`, or those named (unknown name -> error).

    A name may also be `reference/<name>`: a recipe of `models/reference/` (the seed project's,
    kept for comparison), which the nightly run does not train by itself.
    """
    from instropitch.modelspec import load_specs
    from instropitch.modelspec import models_dir as default_models_dir

    folder = models_dir or default_models_dir()
    specs = load_specs(folder)
    if names:
        known = {s.name: s for s in specs}
        if (folder / REFERENCE_DIR).is_dir() and any(n.startswith(f"{REFERENCE_DIR}/") for n in names):
            known.update({f"{REFERENCE_DIR}/{s.name}": s for s in load_specs(folder / REFERENCE_DIR)})
        unknown = sorted(set(names) - set(known))
        if unknown:
            raise ValueError(f"unknown model(s) {unknown}; models/ holds {sorted(known)}")
        specs = [known[n] for n in names]
    return [str(s.source) for s in specs]


SPLITS = ("stratified", "folds")
"""`stratified`: the seed project's seeded 75/25 split; `folds`: TinySOL's own, one `Fold` as the test part."""


def read_snapshot(
    engine: Engine, seed: int = 42, test_size: float = 0.25, split: str = "stratified", test_fold: int = 0
) -> Snapshot:
    """The combined table (every source in it), split: what `make_snapshot` stores, and its digest.

    `split="folds"` tests on fold `test_fold` (TinySOL's protocol: run each fold, report the mean).
    Each row keeps its source (`Snapshot.source`), so training can hold a source out.
    """
    from instropitch.audio.features import PRESETS
    from instropitch.ml.snapshot import create_snapshot

    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    rows = list(warehouse.iter_combined(engine))
    if not rows:
        raise ValueError("instruments_notes_spectrogram is empty: run instropitch_etl first")
    digests = {r.feature_digest for r in rows}
    if len(digests) != 1:
        raise ValueError(f"the combined table mixes feature configs {sorted(digests)}")
    (feature_digest,) = digests
    preset = next((name for name, config in PRESETS.items() if config.digest() == feature_digest), "")
    return create_snapshot(
        [r.path for r in rows],
        [r.midi for r in rows],
        [r.instrument for r in rows],
        [r.fold for r in rows],
        np.stack([r.pitch_spectrogram for r in rows]),
        np.stack([r.instrument_spectrogram for r in rows]),
        seed=seed,
        test_size=test_size,
        test_fold=test_fold if split == "folds" else None,
        feature_digest=feature_digest,
        feature_preset=preset,
        source=[r.source for r in rows],
    )


def make_snapshot(
    engine: Engine,
    run_label: str = "",
    seed: int = 42,
    test_size: float = 0.25,
    split: str = "stratified",
    test_fold: int = 0,
) -> dict[str, Any]:
    """Read the combined table and split it (`read_snapshot`); store the snapshot under a new parent run."""
    import mlflow

    from instropitch.ml.snapshot import log_snapshot

    snapshot = read_snapshot(engine, seed, test_size, split, test_fold)
    experiment_id = ensure_experiment()
    stale = fail_stale_runs(
        experiment_id,
        "tags.`instropitch.kind` = 'pipeline'",
        "interrupted: left RUNNING by an earlier training run (killed task or restarted server)",
    )
    for run_id in stale:  # and the model runs under them that never ended either
        fail_stale_runs(
            experiment_id,
            f"tags.mlflow.parentRunId = '{run_id}'",
            "interrupted together with its parent run (left RUNNING by an earlier training run)",
        )
    client = mlflow.MlflowClient()
    parent = client.create_run(
        experiment_id,
        run_name=f"training {run_label}".strip(),
        tags={"instropitch.kind": "pipeline", "airflow.run_id": run_label},
    )
    uri = log_snapshot(snapshot, run_id=parent.info.run_id)
    log.info(
        "snapshot %s: %d notes (%d test), digest %s, stratified by %s, rows per source %s",
        uri,
        len(snapshot),
        snapshot.n_test,
        snapshot.digest,
        snapshot.stratify,
        snapshot.source_counts(),
    )
    return {
        "snapshot_uri": uri,
        "parent_run_id": parent.info.run_id,
        "digest": snapshot.digest,
        "notes": len(snapshot),
        "sources": sorted(snapshot.source_counts()),
    }


def _effective_epochs(spec: ModelSpec, epochs: int | None) -> int:
    return spec.training.epochs if epochs is None else int(epochs)


def load_recipe(model_path: str, members: int | None = None) -> ModelSpec:
    """The recipe at `model_path`, its `training.members` replaced by `members` (the DAG param) unless None.

    An overridden recipe has no `source`: MLflow then keeps the settings that ran, not the YAML file.
    """
    from instropitch.modelspec import load_spec

    spec = load_spec(model_path)
    if members is None or members == spec.training.members:
        return spec
    if members < 1:
        raise ValueError(f"members must be 1 or more, not {members}")
    return replace(spec, training=replace(spec.training, members=int(members)), source=None)


def heldout_fits(
    model_paths: list[str],
    snapshot_info: dict[str, Any],
    epochs: int | None = None,
    leave_one_source_out: bool | None = None,
    only: Sequence[str] = (),
) -> list[dict[str, str]]:
    """One {model_path, source} per leave-one-source-out fit to run: the DAG maps `fit_heldout` over them.

    Empty with one source, 0 epochs, or the recipes' `leave_one_source_out` off;
    `leave_one_source_out` (the DAG param), when not None, overrides every recipe's setting.
    `only` (the DAG param `heldout_sources`) keeps the fits that leave out one of these sources.
    """
    from instropitch.ml.heldout import fits_leaving_out, heldout_sources
    from instropitch.modelspec import load_spec

    plan = []
    for path in model_paths:
        spec = load_spec(path)
        planned = heldout_sources(spec, snapshot_info["sources"], _effective_epochs(spec, epochs), leave_one_source_out)
        try:
            sources = fits_leaving_out(planned, only)
        except ValueError as exc:
            raise ValueError(f"heldout_sources {list(only)} for {spec.name}: {exc}") from exc
        plan.extend({"model_path": path, "source": source} for source in sources)
    return plan


NIGHTLY_RUN_TYPE = "scheduled"
"""Airflow's `run_type` of a run the timetable made (not `manual` or `asset_triggered`)."""


def models_to_train(
    model_paths: list[str],
    run_type: str,
    connect: Callable[[], Engine],
    *,
    only_if_changed: bool | None = None,
    seed: int = 42,
    split: str = "stratified",
    test_fold: int = 0,
    epochs: int | None = None,
    members: int | None = None,
    leave_one_source_out: bool | None = None,
    only: Sequence[str] = (),
) -> list[str]:
    """The recipes this run trains: every one, except that a nightly run skips a recipe with nothing new to learn.

    A nightly run reads the table as `snapshot` would (`read_snapshot` on `connect()`, nothing stored) and drops
    what `unchanged_models` finds: on a night the ETL published changed data, the Asset-triggered
    run has trained on it before 02:00. Manual and Asset-triggered runs train everything asked.
    `only_if_changed` (the DAG param), when not None, decides instead of the run type.
    """
    if not (run_type == NIGHTLY_RUN_TYPE if only_if_changed is None else only_if_changed):
        return list(model_paths)
    snapshot = read_snapshot(connect(), seed, split=split, test_fold=test_fold)
    unchanged = unchanged_models(
        model_paths, snapshot.digest, snapshot.sources, epochs, members, leave_one_source_out, only
    )
    if unchanged:
        log.info("not trained again, nothing new to learn: %s", ", ".join(unchanged.values()))
    return [path for path in model_paths if path not in unchanged]


def unchanged_models(
    model_paths: list[str],
    digest: str,
    sources: list[str],
    epochs: int | None = None,
    members: int | None = None,
    leave_one_source_out: bool | None = None,
    only: Sequence[str] = (),
) -> dict[str, str]:
    """{path: "name (as version N)"} of the recipes whose newest version learnt the snapshot `digest` with the
    same recipe digest (settings, epochs, code, libraries), the same held-out fits, and was judged by `promote`."""
    from instropitch.ml.registry import TAG_DECISION, latest_version_tags
    from instropitch.ml.tracking import TAG_DATA_DIGEST, TAG_HELDOUT_SOURCES, TAG_RECIPE_DIGEST
    from instropitch.ml.training import recipe_digest

    plan = heldout_fits(model_paths, {"sources": sources}, epochs, leave_one_source_out, only)
    unchanged = {}
    for path in model_paths:
        spec = load_recipe(path, members)
        latest = latest_version_tags(spec.name)
        wanted = {
            TAG_DATA_DIGEST: digest,
            TAG_RECIPE_DIGEST: recipe_digest(spec, _effective_epochs(spec, epochs)),
            TAG_HELDOUT_SOURCES: ",".join(sorted(p["source"] for p in plan if p["model_path"] == path)),
        }
        if latest is not None and TAG_DECISION in latest[1] and _learnt_from(latest[1]) == wanted:
            unchanged[path] = f"{spec.name} (as version {latest[0]})"
    return unchanged


def _learnt_from(tags: dict[str, str]) -> dict[str, str]:
    """A version's data digest, recipe digest and held-out fits (sorted), as `unchanged_models` compares them."""
    from instropitch.ml.tracking import TAG_DATA_DIGEST, TAG_HELDOUT_SOURCES, TAG_RECIPE_DIGEST

    fits = ",".join(sorted(f for f in tags.get(TAG_HELDOUT_SOURCES, "").split(",") if f))
    return {
        TAG_DATA_DIGEST: tags.get(TAG_DATA_DIGEST, ""),
        TAG_RECIPE_DIGEST: tags.get(TAG_RECIPE_DIGEST, ""),
        TAG_HELDOUT_SOURCES: fits,
    }


def fit_heldout(
    model_path: str,
    source: str,
    snapshot_info: dict[str, Any],
    epochs: int | None = None,
    members: int | None = None,
) -> dict:
    """Fit one model without `source`; store its answers on that source in the parent run; their summary."""
    from instropitch.ml import heldout
    from instropitch.ml.snapshot import download_snapshot

    spec = load_recipe(model_path, members)
    snapshot = download_snapshot(snapshot_info["snapshot_uri"])
    answers = heldout.fit(spec, snapshot, source, _effective_epochs(spec, epochs))
    heldout.log_answers(answers, snapshot_info["parent_run_id"])
    summary = {"model_path": model_path, **answers.summary()}
    log.info(
        "%s without %s: accuracy %.4f on its %d notes", spec.name, source, summary["heldout_accuracy"], summary["n"]
    )
    return summary


def gather_heldout(planned: list[dict[str, str]], summaries: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """{model: {source: held-out accuracy}} of the `fit_heldout` tasks, after checking every planned fit answered.

    `summaries` is only read when fits were planned: with none, `fit_heldout` was skipped and
    has no XCom to read.
    """
    if not planned:
        log.info("no leave-one-source-out fits in this run")
        return {}
    done = list(summaries)
    missing = sorted({(p["model_path"], p["source"]) for p in planned} - {(s["model_path"], s["source"]) for s in done})
    if missing or len(done) != len(planned):
        raise ValueError(f"held-out fits without an answer: {missing or 'some'} ({len(done)} of {len(planned)})")
    scores: dict[str, dict[str, float]] = {}
    for s in sorted(done, key=lambda s: (s["model"], s["source"])):
        scores.setdefault(s["model"], {})[s["source"]] = s["heldout_accuracy"]
        log.info(
            "%s without %s: %.4f on %d notes (fit %.0f s)",
            s["model"],
            s["source"],
            s["heldout_accuracy"],
            s["n"],
            s["fit_time_s"],
        )
    return scores


def train(
    model_path: str,
    snapshot_info: dict[str, Any],
    epochs: int | None = None,
    heldout_scores: dict[str, dict[str, float]] | None = None,
    members: int | None = None,
) -> dict[str, Any]:
    """Train one model YAML on the shared snapshot as a child run; register its version.

    `heldout_scores` (from `gather_heldout`) says which sources this model was held out on
    by the `fit_heldout` tasks: their answers are read from the parent run, scored per source
    and pooled for the calibration, as if fitted here. None: run those fits here, one after
    another, as the recipe asks (what the benchmarks do). `members` overrides the recipe's
    `training.members` (give the held-out fits the same, or the calibration reads other networks).
    """
    from instropitch.ml import heldout
    from instropitch.ml.snapshot import download_snapshot
    from instropitch.ml.training import train_and_log

    spec = load_recipe(model_path, members)
    snapshot = download_snapshot(snapshot_info["snapshot_uri"])
    answers = None
    if heldout_scores is not None:
        sources = sorted(heldout_scores.get(spec.name, {}))
        answers = heldout.load_answers(snapshot_info["parent_run_id"], spec, sources, snapshot)
    result = train_and_log(
        spec,
        snapshot,
        epochs_override=epochs,
        parent_run_id=snapshot_info["parent_run_id"],
        snapshot_uri=snapshot_info["snapshot_uri"],
        heldout=None if answers is None else {source: a.answers() for source, a in answers.items()},
        heldout_time_s=sum(a.fit_time_s for a in (answers or {}).values()),
    )
    log.info(
        "%s: test accuracy %.4f, version %s, run %s", spec.name, result.test_accuracy, result.version, result.run_id
    )
    return {"model": spec.name, **result.to_dict()}


def promote(trained: dict[str, Any], snapshot_info: dict[str, Any]) -> dict[str, Any]:
    """Give the new version `champion` only if it beats the current one on the same test split."""
    from instropitch.ml import registry
    from instropitch.ml.snapshot import download_snapshot

    snapshot = download_snapshot(snapshot_info["snapshot_uri"])
    decision = registry.promote(trained["model"], trained["version"], snapshot)
    log.info("%s v%s: %s", trained["model"], trained["version"], decision.reason)
    return decision.to_dict()


FAILED_TASK_STATES = frozenset({"failed", "upstream_failed"})


def close_parent(snapshot_info: dict[str, Any], task_states: dict[str, str | None] | None = None) -> str:
    """Mark the parent run FINISHED, or FAILED (with the reason as a tag); return the status.

    FAILED when a task of the DAG run failed (`task_states`: task id -> Airflow state, as
    the teardown sees them; a task that died before its child run existed shows only
    there), when a child run did not finish, or when there is no child run at all.
    """
    import mlflow

    from instropitch.ml.tracking import TAG_FAILURE_REASON

    client = mlflow.MlflowClient()
    parent = client.get_run(snapshot_info["parent_run_id"])
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    failed_tasks = sorted(t for t, state in (task_states or {}).items() if state in FAILED_TASK_STATES)
    unfinished = sorted(c.info.run_name or c.info.run_id for c in children if c.info.status != "FINISHED")
    reasons = []
    if failed_tasks:
        reasons.append(f"failed tasks: {', '.join(failed_tasks)}")
    if unfinished:
        reasons.append(f"child runs not finished: {', '.join(unfinished)}")
    if not children:
        reasons.append("no model was trained")
    status = "FAILED" if reasons else "FINISHED"
    if reasons:
        client.set_tag(parent.info.run_id, TAG_FAILURE_REASON, "; ".join(reasons)[:5000])
    client.set_terminated(parent.info.run_id, status=status)
    log.info("parent run %s: %s%s", parent.info.run_id, status, f" ({'; '.join(reasons)})" if reasons else "")
    return status


def publish_serving_model(decisions: list[dict[str, Any]]) -> dict[str, Any]:
    """Register the combined pyfunc `instropitch@champion` when a champion CNN changed (or none exists yet).

    `mlflow models serve -m models:/instropitch@champion` then answers with the current
    champions; an unchanged pair leaves the serving model as it is.
    """
    import mlflow

    from instropitch.serving.pyfunc import PYFUNC_MODEL_NAME, register_pyfunc

    client = mlflow.MlflowClient()
    try:
        current = client.get_model_version_by_alias(PYFUNC_MODEL_NAME, "champion").version
    except Exception:  # no registered model or no alias yet
        current = None
    if current is not None and not any(d.get("promoted") for d in decisions):
        log.info("%s@champion v%s kept: no champion changed", PYFUNC_MODEL_NAME, current)
        return {"registered": False, "version": str(current)}
    registered = register_pyfunc()
    log.info("%s v%s registered as champion (%s)", registered.name, registered.version, registered.components)
    return {"registered": True, "version": registered.version}
