"""
### instropitch_training

Trains every model in `models/*.yaml` (pitch and instrument CNNs) on the combined table
and keeps the best one of each as the MLflow registry alias `champion`.

Runs nightly at 02:00 UTC **or** as soon as `instropitch_etl` publishes a changed
`instruments_notes_spectrogram` Asset; trigger it by hand with params to train only some
models, to override the epochs (`airflow dags trigger instropitch_training -c '{"epochs": 3}'`) or to skip the
leave-one-source-out fits of a quick run (`{"leave_one_source_out": false}`), or to run only the fits blind
to some sources (`{"heldout_sources": ["timgm6mb"]}`: what `instropitch demo` does, one fit of four), or to fit
one network where a recipe averages several (`{"members": 1}`: the demo does this too, to stay within 10 minutes).

1. `model_paths` — the model YAMLs to train: all (or those named by param `models`), except that the nightly
   run reads the table and skips a model whose newest version learnt that very snapshot with the same recipe,
   epochs, code, libraries and held-out fits (on a night the ETL published new data, the Asset-triggered run
   trained on it before 02:00). Param `only_if_changed` asks the same of any run (true) or of none (false). With none
   left, the rest is skipped and nothing is stored in MLflow.
2. `snapshot` — the combined table frozen into one seeded, stratified 75/25 split, or with `split: folds` TinySOL's
   own protocol (fold `test_fold` is the test part; re-tuned neighbours never straddle it) — an MLflow artifact
   of a parent run.
3. `fit_heldout` — with two sources or more in the table: mapped over (model, source) as planned by
   `heldout_fits`, one task per model of a recipe that never sees that source (leave-one-source-out),
   so that workers share them. Each stores its answers on that source (probabilities and labels) as
   `heldout/<model>/<source>.npz` in the parent run (a retry overwrites it) and returns its score.
   None with one source, 0 epochs, or param `leave_one_source_out` false (null: each recipe's setting);
   param `heldout_sources` keeps only the fits blind to those sources.
4. `gather_heldout` — checks every planned fit answered; their scores by model and source.
5. `train` — mapped over the model YAMLs: one child MLflow run each, registered as `instropitch-<name>`.
   It reads its model's held-out answers back: `source.<name>.heldout_accuracy`, their mean
   `heldout_accuracy`, and the confidence calibration fitted on the pooled answers (else on validation
   rows), logged with the model. Batches draw evenly from the sources. It waits for the held-out fits
   because the calibration is part of the logged model.
6. `promote` — mapped: the new version becomes `champion` only if it beats the current one: on the
   held-out-source accuracy when both were held out on the same sources by the same fits, else on the same test split.
7. `publish_serving_model` — registers the combined pyfunc `instropitch@champion` when a champion changed.
8. `close_parent` — a teardown: marks the parent run FINISHED, or FAILED when any task of the run failed
   (the reason lists them); the run's own state comes from the work tasks, so a failed `fit_heldout` or
   `train` fails the run.

Tracking server from `MLFLOW_TRACKING_URI`; warehouse from connection `postgres_default`.
Logic lives in `instropitch.pipeline.training` (include/instropitch/pipeline/training.py).
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import (
    Asset,
    AssetOrTimeSchedule,
    CronTriggerTimetable,
    Param,
    dag,
    get_current_context,
    task,
)
from airflow.sdk.configuration import conf
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

# Seconds before a failed task's retry; `[instropitch] training_retry_delay` in airflow.cfg or
# AIRFLOW__INSTROPITCH__TRAINING_RETRY_DELAY (the fault e2e tests shorten it).
RETRY_DELAY = timedelta(seconds=conf.getint("instropitch", "training_retry_delay", fallback=60))

# Named by the table it stands for. A name-only Asset (no URI scheme) keeps DAG parsing
# fast: a scheme makes Airflow load every provider's URI handlers (~1.4 s) at parse time.
COMBINED_TABLE = Asset(name="instruments_notes_spectrogram")


@dag(
    dag_id="instropitch_training",
    # run_immediately=timedelta(0): a deployment started 02:00-04:24 waits for the next night (see the ETL DAG)
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 2 * * *", timezone="UTC", run_immediately=timedelta(0)),
        assets=COMBINED_TABLE,
    ),
    catchup=False,  # no start_date: nothing runs for past dates when the DAG is unpaused
    max_active_runs=1,
    doc_md=__doc__,
    tags=["instropitch", "training", "mlflow"],
    default_args={"owner": "instropitch", "retries": 2, "retry_delay": RETRY_DELAY},
    params={
        "models": Param(
            [],
            type="array",
            items={"type": "string"},
            description="model names to train (empty: every models/*.yaml; reference/seed-pitch etc. for the seed recipe)",
        ),
        "epochs": Param(
            None, type=["null", "integer"], minimum=0, maximum=1000, description="override every model's epochs"
        ),
        "members": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            maximum=16,
            description="override every model's training.members, networks averaged (null: each recipe's; the demo: 1)",
        ),
        "only_if_changed": Param(
            None,
            type=["null", "boolean"],
            description="skip a model whose newest version learnt this data with this recipe (null: nightly runs only)",
        ),
        "seed": Param(42, type="integer", description="seed of the train/test split"),
        "split": Param(
            "stratified",
            enum=["stratified", "folds"],
            description="stratified: the seeded 75/25 split; folds: TinySOL's protocol, `test_fold` is the test part",
        ),
        "test_fold": Param(0, type="integer", minimum=0, maximum=4, description="with split=folds: the test fold"),
        "leave_one_source_out": Param(
            None,
            type=["null", "boolean"],
            description="held-out-source fits (2+ sources): null = each recipe's setting, false skips them (quick runs)",
        ),
        "heldout_sources": Param(
            [],
            type="array",
            items={"type": "string"},
            description="only the held-out fits blind to these sources (empty: every fit; the demo runs one)",
        ),
    },
)
def instropitch_training():
    @task
    def model_paths() -> list[str]:
        from instropitch.pipeline import training as training_pipeline
        from instropitch.pipeline.connections import warehouse_engine

        context = get_current_context()
        params = context["params"]
        return training_pipeline.models_to_train(
            training_pipeline.model_paths(params["models"] or None),
            context["dag_run"].run_type,
            warehouse_engine,  # called on nightly runs only: the Postgres hook takes seconds to import
            only_if_changed=params["only_if_changed"],
            seed=params["seed"],
            split=params["split"],
            test_fold=params["test_fold"],
            epochs=params["epochs"],
            members=params["members"],
            leave_one_source_out=params["leave_one_source_out"],
            only=params["heldout_sources"],
        )

    @task
    def snapshot(paths: list[str]) -> dict:
        from instropitch.pipeline import training as training_pipeline
        from instropitch.pipeline.connections import warehouse_engine

        if not paths:  # a nightly run with nothing new to learn (model_paths' log says why): store nothing
            raise AirflowSkipException("no model to train: each learnt this snapshot with this recipe already")
        context = get_current_context()
        params = context["params"]
        return training_pipeline.make_snapshot(
            warehouse_engine(),
            context["run_id"],
            seed=params["seed"],
            split=params["split"],
            test_fold=params["test_fold"],
        )

    @task
    def heldout_fits(paths: list[str], snapshot_info: dict) -> list[dict]:
        from instropitch.pipeline import training as training_pipeline

        params = get_current_context()["params"]
        try:
            return training_pipeline.heldout_fits(
                paths, snapshot_info, params["epochs"], params["leave_one_source_out"], params["heldout_sources"]
            )
        except ValueError as exc:  # a source the data does not have: a retry would fail the same way
            raise AirflowFailException(str(exc)) from exc

    # No per-run cap: workers share these fits; each machine bounds its own share (LocalExecutor
    # `parallelism`, Celery `worker_concurrency`).
    @task
    def fit_heldout(model_path: str, source: str, snapshot_info: dict) -> dict:
        from instropitch.pipeline import training as training_pipeline

        params = get_current_context()["params"]
        try:
            return training_pipeline.fit_heldout(model_path, source, snapshot_info, params["epochs"], params["members"])
        except ValueError as exc:  # the recipe does not fit the data: a retry would fail the same way
            raise AirflowFailException(f"{model_path} without {source}: {exc}") from exc

    # with no held-out fit planned, fit_heldout is skipped and this still runs (heldout_fits succeeded); with no
    # model to train, heldout_fits is skipped too, and so is this
    @task(trigger_rule="none_failed_min_one_success")
    def gather_heldout(planned: list[dict], summaries: list[dict]) -> dict:
        from instropitch.pipeline import training as training_pipeline

        return training_pipeline.gather_heldout(planned, summaries)

    @task(max_active_tis_per_dagrun=2)
    def train(model_path: str, snapshot_info: dict, heldout_scores: dict) -> dict:
        from instropitch.pipeline import training as training_pipeline

        params = get_current_context()["params"]
        try:
            return training_pipeline.train(
                model_path, snapshot_info, params["epochs"], heldout_scores, params["members"]
            )
        except ValueError as exc:  # the recipe does not fit the data: a retry would fail the same way
            raise AirflowFailException(f"{model_path}: {exc}") from exc

    @task
    def promote(trained: dict, snapshot_info: dict) -> dict:
        from instropitch.pipeline import training as training_pipeline

        return training_pipeline.promote(trained, snapshot_info)

    @task
    def publish_serving_model(decisions: list[dict]) -> dict:
        from instropitch.pipeline import training as training_pipeline

        return training_pipeline.publish_serving_model(list(decisions))

    @task(retries=0)
    def close_parent(snapshot_info: dict) -> None:
        from instropitch.pipeline import training as training_pipeline

        ti = get_current_context()["ti"]
        states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id]).get(ti.run_id, {})
        training_pipeline.close_parent(snapshot_info, states)

    paths = model_paths()
    frozen = snapshot(paths)
    planned = heldout_fits(paths, frozen)
    summaries = fit_heldout.partial(snapshot_info=frozen).expand_kwargs(planned)
    scores = gather_heldout(planned, summaries)
    trained = train.partial(snapshot_info=frozen, heldout_scores=scores).expand(model_path=paths)
    decisions = promote.partial(snapshot_info=frozen).expand(trained=trained)
    # A teardown: it runs whatever happened, and the run's state is decided by the work tasks.
    publish_serving_model(decisions) >> close_parent(frozen).as_teardown(setups=frozen)


instropitch_training()
