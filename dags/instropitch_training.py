"""
### instropitch_training

Trains every model in `models/*.yaml` (pitch and instrument CNNs) on the combined table
and keeps the best one of each as the MLflow registry alias `champion`.

Runs nightly at 02:00 UTC **or** as soon as `instropitch_etl` publishes a changed
`instruments_notes_spectrogram` Asset; trigger it by hand with params to train only some
models or to override the epochs (`airflow dags trigger instropitch_training -c '{"epochs": 3}'`).

1. `snapshot` — the combined table frozen into one seeded, stratified 75/25 split, or with `split: folds` TinySOL's
   own protocol (fold `test_fold` is the test part; re-tuned neighbours never straddle it) — an MLflow artifact
   of a parent run.
2. `train` — mapped over the model YAMLs: one child MLflow run each, registered as `instropitch-<name>`.
   With two sources or more in the table, each run also trains one model per source that never
   sees it (leave-one-source-out) and logs `source.<name>.heldout_accuracy` and their mean
   `heldout_accuracy`; batches draw evenly from the sources.
3. `promote` — mapped: the new version becomes `champion` only if it beats the current one: on the
   held-out-source accuracy when both were held out on the same sources, else on the same test split.
4. `publish_serving_model` — registers the combined pyfunc `instropitch@champion` when a champion changed.
5. `close_parent` — a teardown: marks the parent run FINISHED, or FAILED when any task of the run failed;
   the run's own state comes from the work tasks, so a failed `train` fails the run.

Tracking server from `MLFLOW_TRACKING_URI`; warehouse from connection `postgres_default`.
Logic lives in `instropitch.pipeline.training` (include/instropitch/pipeline/training.py).
"""

from __future__ import annotations

from datetime import timedelta

from airflow.exceptions import AirflowFailException
from airflow.sdk import (
    Asset,
    AssetOrTimeSchedule,
    CronTriggerTimetable,
    Param,
    dag,
    get_current_context,
    task,
)

# Named by the table it stands for. A name-only Asset (no URI scheme) keeps DAG parsing
# fast: a scheme makes Airflow load every provider's URI handlers (~1.4 s) at parse time.
COMBINED_TABLE = Asset(name="instruments_notes_spectrogram")


@dag(
    dag_id="instropitch_training",
    schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable("0 2 * * *", timezone="UTC"), assets=COMBINED_TABLE),
    catchup=False,  # no start_date: nothing runs for past dates when the DAG is unpaused
    max_active_runs=1,
    doc_md=__doc__,
    tags=["instropitch", "training", "mlflow"],
    default_args={"owner": "instropitch", "retries": 2, "retry_delay": timedelta(minutes=1)},
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
        "seed": Param(42, type="integer", description="seed of the train/test split"),
        "split": Param(
            "stratified",
            enum=["stratified", "folds"],
            description="stratified: the seeded 75/25 split; folds: TinySOL's protocol, `test_fold` is the test part",
        ),
        "test_fold": Param(0, type="integer", minimum=0, maximum=4, description="with split=folds: the test fold"),
    },
)
def instropitch_training():
    @task
    def snapshot() -> dict:
        from instropitch.pipeline import training as training_pipeline
        from instropitch.pipeline.connections import warehouse_engine

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
    def model_paths() -> list[str]:
        from instropitch.pipeline import training as training_pipeline

        return training_pipeline.model_paths(get_current_context()["params"]["models"] or None)

    @task(max_active_tis_per_dagrun=2)
    def train(model_path: str, snapshot_info: dict) -> dict:
        from instropitch.pipeline import training as training_pipeline

        try:
            return training_pipeline.train(model_path, snapshot_info, get_current_context()["params"]["epochs"])
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

    frozen = snapshot()
    trained = train.partial(snapshot_info=frozen).expand(model_path=model_paths())
    decisions = promote.partial(snapshot_info=frozen).expand(trained=trained)
    # A teardown: it runs whatever happened, and the run's state is decided by the work tasks.
    publish_serving_model(decisions) >> close_parent(frozen).as_teardown(setups=frozen)


instropitch_training()
