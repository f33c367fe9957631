"""`ml.training.train_and_log` and its MLflow run, on a tiny learnable synthetic problem.

The problem: a bright band across a noisy dB spectrogram, its frequency position set by the label. Any working
CNN learns it in a few epochs, so failures here are wiring bugs.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from support.mlflow_store import throwaway_store
from support.models import PITCH_SHAPE, SPEC, synthetic_arrays

from instropitch.ml.snapshot import MIDI_CLASSES, create_snapshot, download_snapshot, log_snapshot
from instropitch.modelspec import load_spec, parse_spec

TINY_YAML = """
# A third recipe, written by the test: it must train with no code change.
name: tiny
label: midi
input: pitch
features: synthetic
architecture:
  conv_blocks:
    - {filters: 8, kernel: 3, pool: 2}
    - {filters: 16, kernel: 3, pool: [2, 1]}
  batch_norm: true
  pooling: time_avg
  dense: [16]
  dropout: 0.1
training:
  epochs: 6
  batch_size: 16
  learning_rate: 0.01
  validation_split: 0.2
  seed: 7
  early_stopping: {monitor: val_loss, patience: 3}
  augmentation: {gain_db: 3, noise: 0.5, time_shift: 1}
"""


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    """A throw-away MLflow store (sqlite + local artifacts) for this module."""
    root = tmp_path_factory.mktemp("mlflow")
    with throwaway_store(root):
        yield root


@pytest.fixture(scope="module")
def trained(tracking):
    import mlflow

    from instropitch.ml.training import train_and_log

    recipe = tracking / "tiny.yaml"
    recipe.write_text(textwrap.dedent(TINY_YAML))
    spec = load_spec(recipe)
    snap = create_snapshot(*synthetic_arrays(n=160), seed=1, feature_digest="feat123", feature_preset="synthetic")
    parent = mlflow.MlflowClient().create_run(mlflow.get_experiment_by_name("instropitch").experiment_id)
    result = train_and_log(spec, snap, parent_run_id=parent.info.run_id)
    return spec, snap, result, parent.info.run_id


def test_train_and_log_learns_and_registers(trained):
    spec, snap, result, _ = trained
    assert result.version == "1"
    assert result.model_uri == "models:/instropitch-tiny/1"
    assert result.test_accuracy >= 0.9
    for key in ("test_accuracy", "test_macro_f1", "test_note_accuracy", "test_octave_accuracy", "training_time_s"):
        assert key in result.metrics
    assert result.metrics["test_note_accuracy"] >= result.test_accuracy
    assert result.metrics["training_time_s"] > 0


def test_run_records_params_curves_tags_and_parent(trained):
    import mlflow

    spec, snap, result, parent_id = trained
    client = mlflow.MlflowClient()
    run = client.get_run(result.run_id)
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    assert params["architecture.conv_blocks.1.pool"] == "[2, 1]"
    assert params["training.augmentation.time_shift"] == "1"
    assert int(params["data.n_test"]) == snap.n_test
    assert int(params["data.n_fit"]) + int(params["data.n_val"]) == len(snap) - snap.n_test
    assert metrics["test_accuracy"] == pytest.approx(result.test_accuracy)
    for key in ("test_macro_f1", "test_note_accuracy", "test_octave_accuracy", "training_time_s"):
        assert key in metrics
    assert not [key for key in metrics if key.endswith("_alone")]  # no envelope read: no sides to score apart
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        history = client.get_metric_history(result.run_id, key)
        assert [m.step for m in history] == list(range(len(history))) and len(history) >= 1
    assert tags["data_digest"] == snap.digest
    assert tags["feature_digest"] == "feat123"
    assert tags["instropitch.class_names"].split(",")[:2] == ["A0", "A#0"]
    assert tags["registered_version"] == "1"
    assert tags["mlflow.parentRunId"] == parent_id

    version = client.get_model_version("instropitch-tiny", "1")
    assert version.run_id == result.run_id
    assert version.tags["data_digest"] == snap.digest
    assert version.tags["instropitch.label"] == "midi"


def test_run_artifacts(trained):
    import mlflow

    spec, snap, result, _ = trained
    client = mlflow.MlflowClient()
    names = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"classification_report.csv", "confusion_matrix.png", "misclassified.png", "labels.json", "spec"} <= names
    assert "reliability_diagram.png" in names
    labels = json.loads(
        Path(mlflow.artifacts.download_artifacts(run_id=result.run_id, artifact_path="labels.json")).read_text()
    )
    assert labels["calibration"]["fitted_on"] == "validation"  # one source: the validation rows
    assert labels["calibration"]["n"] == int(client.get_run(result.run_id).data.params["data.n_val"])
    assert [a.path for a in client.list_artifacts(result.run_id, "spec")] == ["spec/tiny.yaml"]
    local = Path(mlflow.artifacts.download_artifacts(run_id=result.run_id, artifact_path="classification_report.csv"))
    report = local.read_text().splitlines()
    assert report[0].startswith("class,precision,recall,f1-score,support")
    assert any(line.startswith("C4,") for line in report)
    for png in ("confusion_matrix.png", "misclassified.png", "reliability_diagram.png"):
        data = Path(mlflow.artifacts.download_artifacts(run_id=result.run_id, artifact_path=png)).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"


def test_logged_model_has_signature_example_and_labels(trained):
    import mlflow

    from instropitch.ml.registry import load_model

    spec, snap, result, _ = trained
    info = mlflow.models.get_model_info(result.model_uri)
    assert list(info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == [-1, *PITCH_SHAPE]
    assert list(info.signature.outputs.to_dict()[0]["tensor-spec"]["shape"]) == [-1, len(MIDI_CLASSES)]
    assert info.saved_input_example_info is not None
    assert info.metadata["instropitch"]["class_names"][39] == "C4"
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{result.model_uri}/extra_files/labels.json"))
    assert json.loads(local.read_text())["class_values"][39] == 60

    loaded = load_model(result.model_uri)
    test_x = snap.pitch[snap.is_test]
    assert np.mean(loaded.predict(test_x) == snap.midi[snap.is_test]) == pytest.approx(result.test_accuracy)


def test_snapshot_travels_as_an_mlflow_artifact(tracking):
    snap = create_snapshot(*synthetic_arrays(n=30), feature_digest="x")
    uri = log_snapshot(snap)
    assert uri.startswith("runs:/") and uri.endswith("/snapshot/snapshot.npz")
    back = download_snapshot(uri)
    assert back.digest == snap.digest
    assert back.pitch.tobytes() == snap.pitch.tobytes()


def test_features_preset_mismatch_is_refused(tracking):
    from instropitch.ml.training import train_and_log

    spec = parse_spec(
        {"name": "x", "label": "midi", "input": "pitch", "architecture": {"conv_blocks": [{"filters": 4}]}}
    )
    snap = create_snapshot(*synthetic_arrays(n=20), feature_preset="seed")
    with pytest.raises(ValueError, match="features preset 'default'"):
        train_and_log(spec, snap)


def test_model_paths_find_reference_recipes_only_by_name():
    from instropitch.modelspec import models_dir
    from instropitch.pipeline.training import model_paths

    everything = [Path(p).name for p in model_paths()]
    assert everything == ["instrument.yaml", "pitch.yaml"]  # the nightly set: models/*.yaml only
    (seed,) = model_paths(["reference/seed-pitch"])
    assert Path(seed) == models_dir() / "reference" / "seed-pitch.yaml"
    with pytest.raises(ValueError, match="unknown model"):
        model_paths(["reference/nope"])


def test_run_names_its_snapshot_as_dataset_input_and_scores_its_logged_model(trained):
    import mlflow

    spec, snap, result, _ = trained
    client = mlflow.MlflowClient()
    (dataset_input,) = client.get_run(result.run_id).inputs.dataset_inputs
    assert dataset_input.dataset.digest == snap.digest[:16]
    assert dataset_input.dataset.source_type == "instropitch_snapshot"
    assert {t.key: t.value for t in dataset_input.tags}["mlflow.data.context"] == "training"
    model_id = mlflow.models.get_model_info(f"runs:/{result.run_id}/model").model_id
    model_metrics = {m.key: m.value for m in client.get_logged_model(model_id).metrics}
    assert model_metrics["test_accuracy"] == pytest.approx(result.test_accuracy)  # shown on the model's page


def test_a_run_left_running_by_a_killed_attempt_is_failed_by_the_retry(tracking):
    import mlflow

    from instropitch.ml.tracking import TAG_FAILURE_REASON
    from instropitch.ml.training import train_and_log

    recipe = tracking / "tiny.yaml"
    recipe.write_text(textwrap.dedent(TINY_YAML))
    spec = load_spec(recipe)
    snap = create_snapshot(*synthetic_arrays(n=60), seed=2, feature_digest="feat123", feature_preset="synthetic")
    client = mlflow.MlflowClient()
    experiment_id = mlflow.get_experiment_by_name("instropitch").experiment_id
    parent = client.create_run(experiment_id).info.run_id
    killed = client.create_run(experiment_id, tags={"mlflow.parentRunId": parent, "instropitch.model": "tiny"})
    other_model = client.create_run(experiment_id, tags={"mlflow.parentRunId": parent, "instropitch.model": "other"})

    retry = train_and_log(spec, snap, parent_run_id=parent, epochs_override=0, register=False)

    stale = client.get_run(killed.info.run_id)
    assert stale.info.status == "FAILED"
    assert "earlier attempt" in stale.data.tags[TAG_FAILURE_REASON]
    assert client.get_run(other_model.info.run_id).info.status == "RUNNING"  # another task's run is not ours
    assert client.get_run(retry.run_id).info.status == "FINISHED"


def test_the_experiment_opens_on_training_runs(tmp_path):
    import mlflow

    from instropitch.ml.tracking import ensure_experiment

    with throwaway_store(tmp_path):  # an experiment created before the kind tag existed
        experiment_id = ensure_experiment("instropitch")
        assert mlflow.get_experiment(experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
        fresh = ensure_experiment("another")
        assert mlflow.get_experiment(fresh).tags["mlflow.experimentKind"] == "custom_model_development"


def test_the_parent_run_fails_when_a_task_failed_even_without_a_child_run(tracking):
    import mlflow

    from instropitch.ml.tracking import TAG_FAILURE_REASON
    from instropitch.pipeline.training import close_parent

    client = mlflow.MlflowClient()
    experiment_id = mlflow.get_experiment_by_name("instropitch").experiment_id

    def parent_with_finished_child() -> str:
        parent = client.create_run(experiment_id).info.run_id
        child = client.create_run(experiment_id, tags={"mlflow.parentRunId": parent})
        client.set_terminated(child.info.run_id)
        return parent

    ok = parent_with_finished_child()
    assert close_parent({"parent_run_id": ok}, {"snapshot": "success", "train_0": "success"}) == "FINISHED"
    failed = parent_with_finished_child()  # train_1 died before its child run existed
    states = {"snapshot": "success", "train_0": "success", "train_1": "failed", "promote_1": "upstream_failed"}
    assert close_parent({"parent_run_id": failed}, states) == "FAILED"
    run = client.get_run(failed)
    assert run.info.status == "FAILED"
    assert run.data.tags[TAG_FAILURE_REASON] == "failed tasks: promote_1, train_1"
    empty = client.create_run(experiment_id).info.run_id
    assert close_parent({"parent_run_id": empty}, {}) == "FAILED"
    assert "no model was trained" in client.get_run(empty).data.tags[TAG_FAILURE_REASON]


def test_the_recipe_digest_follows_the_recipe_the_epochs_the_code_and_the_libraries(monkeypatch):
    from instropitch.ml import training

    spec = parse_spec(SPEC)
    digest = training.recipe_digest(spec, 8)
    assert len(digest) == 16 and digest == training.recipe_digest(parse_spec(SPEC), 8)
    assert training.recipe_digest(spec, 7) != digest
    assert training.recipe_digest(replace(spec, training=replace(spec.training, members=2)), 8) != digest
    with monkeypatch.context() as m:
        m.setattr(training, "code_digest", lambda: "0" * 16)
        assert training.recipe_digest(spec, 8) != digest
    monkeypatch.setattr(training, "pip_requirements", lambda: ["keras==9.9.9"])
    assert training.recipe_digest(spec, 8) != digest
