"""`local_airflow.DagTestProgress`: the short lines `make demo` prints while `airflow dags test` runs.

The sample is output of real `instropitch_training` runs (Airflow 3.3), long fields cut; the
failure lines follow what Airflow's code logs (`new_state=failed`, `[DAG TEST] Error running task`).
"""

from __future__ import annotations

from instropitch.devstack.local_airflow import DagTestProgress

RUN = """\
2026-11-30T12:18:51.566667Z [info     ] DAG bundles loaded: dags-folder [airflow.dag_processing.bundles.manager.DagBundlesManager] loc=manager.py:304
2026-11-30T12:18:52.152438Z [info     ] [DAG TEST] starting task_id=model_paths map_index=-1 [airflow.sdk.definitions.dag] loc=dag.py:1501
2026-11-30T12:18:52.153095Z [info     ] [DAG TEST] running task <TaskInstance: instropitch_training.model_paths manual__2026-11-30T12:18:51.964714+00:00 [TaskInstanceState.SCHEDULED] ti_id=01a22c64-c836-7bb6-8541-e325ac0a9dee> [airflow.sdk.definitions.dag] loc=dag.py:1504
2026-11-30T12:18:57.094557Z [info     ] Task started                   [airflow.api_fastapi.execution_api.routes.task_instances] correlation_id=01a22c64-cef7-7a47-8583-ee92c65a0432 hostname=vm loc=task_instances.py:226 previous_state=queued ti_id=01a22c64-c836-7bb6-8541-e325ac0a9dee
2026-11-30T12:18:57.098099Z [info     ] Task instance state updated    [airflow.api_fastapi.execution_api.routes.task_instances] correlation_id=01a22c64-cef7-7a47-8583-ee92c65a0432 loc=task_instances.py:254 rows_affected=1 ti_id=01a22c64-c836-7bb6-8541-e325ac0a9dee
2026-11-30T12:18:57.348882Z [info     ] Done. Returned value was: ['/tmp/fresh-demo/models/instrument.yaml', '/tmp/fresh-demo/models/pitch.yaml'] [airflow.task.operators.airflow.providers.standard.decorators.python._PythonDecoratedOperator] loc=python.py:233
2026-11-30T12:18:57.395488Z [info     ] Task instance state updated    [airflow.api_fastapi.execution_api.routes.task_instances] correlation_id=01a22c64-dcdf-7271-8ba3-2858cdb71002 loc=task_instances.py:485 new_state=success rows_affected=1 ti_id=01a22c64-c836-7bb6-8541-e325ac0a9dee
2026-11-30T12:18:57.400000Z [info     ] [DAG TEST] end task task_id=model_paths map_index=-1 [airflow.sdk.definitions.dag] loc=dag.py:1563
2026-11-30T12:19:08.952162Z [info     ] [DAG TEST] starting task_id=train map_index=0 [airflow.sdk.definitions.dag] loc=dag.py:1501
2026-11-30T12:19:08.964010Z [info     ] Task started                   [airflow.api_fastapi.execution_api.routes.task_instances] correlation_id=01a22c65-0a1b-7d0b-89f7-8059cf38d3f1 hostname=vm loc=task_instances.py:226 previous_state=queued ti_id=01a22c64-c837-7553-8a12-f45a62631e83
2026-11-30T12:19:08.965220Z [info     ] Task instance state updated    [airflow.api_fastapi.execution_api.routes.task_instances] correlation_id=01a22c65-0a1b-7d0b-89f7-8059cf38d3f1 loc=task_instances.py:254 rows_affected=1 ti_id=01a22c64-c837-7553-8a12-f45a62631e83

Downloading artifacts: 100%|██████████| 1/1 [00:00<00:00, 35.98it/s]
WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
2026-11-30T13:17:28.389792Z [info     ] instrument epoch 1/3: loss 2.6402 accuracy 0.0357 val_loss 2.7778 val_accuracy 0.2000 [instropitch.ml.fitting] loc=fitting.py:286
2026-11-30T12:19:23.202000Z [info     ] instrument without fluid epoch 2/3: loss 1.2031 accuracy 0.6210 val_loss 0.9876 val_accuracy 0.7102 [instropitch.ml.fitting] loc=fitting.py:283
2026-11-30T12:22:43.874817Z [info     ] instrument: test accuracy 0.9835, version 1, run 3213453fac1740998c6f8f09bb1b2f70 [instropitch.pipeline.training] loc=training.py:109
2026-11-30T12:22:43.876092Z [info     ] Done. Returned value was: {'model': 'instrument', 'metrics': {'epochs_trained': 71.0, 'best_epoch': 56.0}} [airflow.task.operators.airflow.providers.standard.decorators.python._PythonDecoratedOperator] loc=python.py:233
2026-11-30T12:22:43.952159Z [info     ] Task instance state updated    [airflow.api_fastapi.execution_api.routes.task_instances] correlation_id=01a22c68-51e4-7d20-be01-1f3e7fb14fe3 loc=task_instances.py:485 new_state=success rows_affected=1 ti_id=01a22c64-c837-7553-8a12-f45a62631e83
2026-11-30T12:22:43.963337Z [info     ] [DAG TEST] end task task_id=train map_index=0 [airflow.sdk.definitions.dag] loc=dag.py:1563
2026-11-30T12:22:43.963799Z [info     ] [DAG TEST] starting task_id=train map_index=1 [airflow.sdk.definitions.dag] loc=dag.py:1501
2026-11-30T12:22:58.100000Z [info     ] Task instance state updated    [airflow.api_fastapi.execution_api.routes.task_instances] correlation_id=01a22c68-51e4-7d20-be01-1f3e7fb14fe4 loc=task_instances.py:485 new_state=failed rows_affected=1 ti_id=01a22c65-0a08-7f46-8619-64a522d9b918
2026-11-30T12:22:58.200000Z [info     ] [DAG TEST] end task task_id=train map_index=1 [airflow.sdk.definitions.dag] loc=dag.py:1563
2026-11-30T12:22:58.300000Z [info     ] [DAG TEST] starting task_id=promote map_index=0 [airflow.sdk.definitions.dag] loc=dag.py:1501
2026-11-30T12:22:58.400000Z [error    ] [DAG TEST] Error running task <TaskInstance: instropitch_training.promote manual__2026-11-30T12:18:51.964714+00:00 map_index=0 [running]> [airflow.sdk.definitions.dag] loc=dag.py:1556
Traceback (most recent call last):
RuntimeError: boom
2026-11-30T12:22:58.500000Z [info     ] [DAG TEST] end task task_id=promote map_index=0 [airflow.sdk.definitions.dag] loc=dag.py:1563
2026-11-30T12:24:21.613233Z [info     ] Marking run <DagRun instropitch_training @ 2026-11-30 12:18:51.565842+00:00: manual__2026-11-30T12:18:51.964714+00:00, state:running, queued_at: None. run_type: manual> successful [airflow.models.dagrun.DagRun] loc=dagrun.py:1249
"""


def test_a_line_per_finished_task_and_per_epoch_and_nothing_else():
    watch = DagTestProgress()
    shown = [short for line in RUN.splitlines(keepends=True) if (short := watch.feed(line))]
    assert shown == [
        "  task model_paths: success in 5 s",
        "  instrument epoch 1/3: loss 2.6402 accuracy 0.0357 val_loss 2.7778 val_accuracy 0.2000",
        "  instrument without fluid epoch 2/3: loss 1.2031 accuracy 0.6210 val_loss 0.9876 val_accuracy 0.7102",
        "  task train[0]: success in 215 s",
        "  task train[1]: failed in 14 s",
        "  task promote[0]: failed in 0 s",
    ]


def test_lines_without_a_timestamp_still_end_a_task():
    watch = DagTestProgress()
    assert watch.feed("[DAG TEST] starting task_id=plan map_index=-1 [airflow.sdk.definitions.dag]") is None
    assert (
        watch.feed("[DAG TEST] end task task_id=plan map_index=-1 [airflow.sdk.definitions.dag]")
        == "  task plan: ended"
    )
