"""`instropitch_training` after `instropitch_etl`: real Airflow, PostgreSQL and an MLflow store."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from instropitch.data import objectstore
from instropitch.devstack import local_airflow
from instropitch.pipeline.training import model_paths, models_to_train

pytestmark = pytest.mark.e2e

PREFIX = "TinySOL/"
SOURCES = ["TinySOL/", "copy=Copy/"]  # the same notes twice: two sources, so the held-out fits run
EPOCH_LINE = re.compile(
    r"  (pitch|instrument)( without (TinySOL|copy))?( member [12]/2)? epoch [12]/2: "
    r"loss \S+ accuracy \S+ val_loss \S+ val_accuracy \S+"
)


def quick_recipes(folder: Path, project_root: Path) -> Path:
    """The checkout's recipes with one generated tone per MIDI class instead of a dozen: the
    pitch fit then costs a fraction, and the tones still go through the DAG's fits (tests/ml
    covers what they teach). As shipped, the instrument recipe is held out per source, the pitch one is not."""
    folder.mkdir()
    for recipe in sorted((project_root / "models").glob("*.yaml")):
        text = re.sub(r"(?m)^(  synthetic_tones:) *\d+", r"\1 1", recipe.read_text())
        (folder / recipe.name).write_text(text)
    return folder


def without_reads(recipes: Path, folder: Path) -> Path:
    """`recipes` with no `architecture.envelope` read: with 0 epochs, nothing of the model learns."""
    folder.mkdir()
    for recipe in sorted(recipes.glob("*.yaml")):
        (folder / recipe.name).write_text(re.sub(r"(?m)^  envelope:.*\n", "", recipe.read_text()))
    assert "envelope:" in (recipes / "instrument.yaml").read_text()
    assert "envelope:" not in (folder / "instrument.yaml").read_text()
    return folder


def mlflow_client(env: dict[str, str]):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"], registry_uri=env["MLFLOW_TRACKING_URI"])


def asset_events(env: dict[str, str]) -> list[tuple[str, str]]:
    """(asset name, extra) of every Asset event in Airflow's metadata database."""
    db = Path(env["AIRFLOW_HOME"]) / "airflow.db"
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT a.name, e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id ORDER BY e.id"
        ).fetchall()


def test_training_after_etl_logs_registers_and_promotes(
    airflow_env, engine, s3, bucket, small_dataset, tmp_path, project_root
):
    airflow_env = {**airflow_env, "INSTROPITCH_MODELS_DIR": str(quick_recipes(tmp_path / "quick", project_root))}
    assert "synthetic_tones: 1 " in (tmp_path / "quick" / "pitch.yaml").read_text()
    objectstore.upload_folder(s3, bucket, PREFIX, small_dataset)
    objectstore.upload_folder(s3, bucket, "Copy/", small_dataset)
    before = len(asset_events(airflow_env))
    etl = local_airflow.dags_test("instropitch_etl", airflow_env, {"bucket": bucket, "sources": SOURCES})
    assert etl.ok, etl.tail(60)
    events = asset_events(airflow_env)[before:]
    assert [name for name, _ in events] == ["instruments_notes_spectrogram"]  # the outlet fired

    shown: list[str] = []
    first = local_airflow.dags_test("instropitch_training", airflow_env, {"epochs": 2}, progress=shown.append)
    assert first.ok, first.tail(80)
    # what `make demo` prints while it runs: a line per finished task, a line per epoch
    finished = [re.sub(r" in \d+ s$", "", line) for line in shown if line.startswith("  task ")]
    assert sorted(finished) == [  # mapped tasks run in any order
        "  task close_parent: success",
        "  task fit_heldout[0]: success",  # one per held-out source of the instrument model
        "  task fit_heldout[1]: success",
        "  task gather_heldout: success",
        "  task heldout_fits: success",
        "  task model_paths: success",
        "  task promote[0]: success",
        "  task promote[1]: success",
        "  task publish_serving_model: success",
        "  task snapshot: success",
        "  task train[0]: success",
        "  task train[1]: success",
    ], shown
    epochs = [line for line in shown if not line.startswith("  task ")]
    assert all(EPOCH_LINE.fullmatch(line) for line in epochs), shown
    # the instrument recipe averages two networks (training.members), fitted one after the other: 3 fits x 2 x 2
    # epochs, and the pitch fit's 2
    assert sum(" member " in line for line in epochs) == 12 and len(epochs) == 14, shown

    client = mlflow_client(airflow_env)
    experiment = client.get_experiment_by_name("instropitch")
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.`instropitch.kind` = 'train'")
    assert sorted(r.data.tags["instropitch.model"] for r in runs) == ["instrument", "pitch"]
    parents = {r.data.tags.get("mlflow.parentRunId") for r in runs}
    assert len(parents) == 1 and None not in parents  # one parent run groups the pair
    parent_id = parents.pop()
    assert client.get_run(parent_id).info.status == "FINISHED"
    children = client.search_runs([experiment.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'")
    assert sorted(c.info.run_id for c in children) == sorted(r.info.run_id for r in runs)  # fits add no runs
    # the held-out fits' answers, in the parent run beside the snapshot
    answers = [a.path for a in client.list_artifacts(parent_id, "heldout/instrument")]
    assert answers == ["heldout/instrument/TinySOL.npz", "heldout/instrument/copy.npz"]
    assert [a.path for a in client.list_artifacts(parent_id, "heldout/pitch")] == []
    assert len({r.data.tags["data_digest"] for r in runs}) == 1  # both models saw the same snapshot
    for run in runs:
        metrics = run.data.metrics
        assert 0.0 <= metrics["test_accuracy"] <= 1.0 and "test_macro_f1" in metrics
        assert run.data.tags["data_digest"]
        history = client.get_metric_history(run.info.run_id, "loss")
        assert len(history) == 2  # per-epoch
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"confusion_matrix.png", "misclassified.png", "classification_report.csv"} <= artifacts
        if run.data.tags["instropitch.model"] == "pitch":  # no held-out fits: calibrated on validation rows
            assert "heldout_accuracy" not in metrics and run.data.tags["calibration.fitted_on"] == "validation"
            continue
        # the same layout as when train ran the held-out fits itself
        held_out = [metrics[f"source.{s}.heldout_accuracy"] for s in ("TinySOL", "copy")]
        assert metrics["heldout_accuracy"] == pytest.approx(sum(held_out) / 2)
        assert metrics["heldout_training_time_s"] > 0
        assert run.data.tags["calibration.fitted_on"] == "heldout_sources"
        assert metrics["calibration.familiar_n"] > 0  # the fits' answers on the test rows of what they trained on
        version = client.get_model_version(run.data.tags["registered_model"], run.data.tags["registered_version"])
        assert version.tags["heldout_sources"] == "TinySOL,copy"
        assert float(version.tags["heldout_accuracy"]) == pytest.approx(metrics["heldout_accuracy"], abs=1e-6)
    pitch_run = next(r for r in runs if r.data.tags["instropitch.model"] == "pitch")
    assert {"test_note_accuracy", "test_octave_accuracy"} <= set(pitch_run.data.metrics)
    for name in ("instropitch-pitch", "instropitch-instrument"):
        champion = client.get_model_version_by_alias(name, "champion")
        assert str(champion.version) == "1"

    serving = client.get_model_version_by_alias(
        "instropitch", "champion"
    )  # the combined pyfunc for `mlflow models serve`
    assert str(serving.version) == "1"

    # the nightly run after it (here asked by param, as the 02:00 run does by itself) has nothing new to learn on
    # this table with these settings: the versions' recipe digests, computed in the Airflow tasks, match this
    # checkout's. It trains nothing and stores nothing in MLflow; the run succeeds.
    shown.clear()
    nightly = local_airflow.dags_test(
        "instropitch_training", airflow_env, {"epochs": 2, "only_if_changed": True}, progress=shown.append
    )
    assert nightly.ok, nightly.tail(80)
    ran = [re.sub(r" in \d+ s$", "", line) for line in shown if line.startswith("  task ")]
    assert ran == ["  task model_paths: success", "  task snapshot: skipped"], shown
    assert "nothing new to learn: instrument (as version 1), pitch (as version 1)" in nightly.log_path.read_text()
    assert len(client.search_runs([experiment.experiment_id], "tags.`instropitch.kind` = 'pipeline'")) == 1
    with pytest.MonkeyPatch.context() as mp:  # the recipes' own epochs are not what ran: both would train
        mp.setenv("MLFLOW_TRACKING_URI", airflow_env["MLFLOW_TRACKING_URI"])
        paths = model_paths(models_dir=tmp_path / "quick")
        assert models_to_train(paths, "scheduled", lambda: engine) == paths

    # a deliberately worse model (0 epochs: untrained, and no linear read of the spectra beside it, which is fitted
    # whatever the epochs and alone can beat 2 epochs of the network on this tiny set) never takes `champion`
    # (no held-out fits: none with 0 epochs, and the param skips them; fit_heldout is skipped, train runs)
    worse = local_airflow.dags_test(
        "instropitch_training",
        {**airflow_env, "INSTROPITCH_MODELS_DIR": str(without_reads(tmp_path / "quick", tmp_path / "worse"))},
        {"epochs": 0, "leave_one_source_out": False},
    )
    assert worse.ok, worse.tail(80)
    for name in ("instropitch-pitch", "instropitch-instrument"):
        assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
        latest = client.get_model_version(name, "2")
        assert latest.tags["promotion.decision"] == "rejected"
        assert latest.tags["promotion.new_score"] and latest.tags["promotion.champion_score"]  # both scores recorded
    assert str(client.get_model_version_by_alias("instropitch", "champion").version) == "1"  # nothing changed

    # a model that cannot train fails the run (not only its task); the parent run says why,
    # and no champion moves (the other model trains with 0 epochs: rejected)
    models = tmp_path / "models"
    models.mkdir()
    recipe = (tmp_path / "quick" / "pitch.yaml").read_text()
    (models / "pitch.yaml").write_text(recipe)
    (models / "broken.yaml").write_text(
        recipe.replace("name: pitch", "name: broken").replace("features: default", "features: seed")
    )
    shown.clear()
    failing = local_airflow.dags_test(
        "instropitch_training",
        {**airflow_env, "INSTROPITCH_MODELS_DIR": str(models)},
        {"epochs": 0},
        progress=shown.append,
    )
    assert not failing.ok, failing.tail(80)
    assert any(line.startswith("  task train[0]: failed in ") for line in shown), shown  # broken.yaml sorts first
    assert "wants features preset 'seed'" in failing.log_path.read_text()
    parents = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`instropitch.kind` = 'pipeline'", order_by=["start_time DESC"]
    )
    latest = parents[0]
    assert latest.info.status == "FAILED", latest.data.tags
    assert "train" in latest.data.tags["instropitch.failure_reason"]
    assert [p.info.status for p in parents[1:]] == ["FINISHED", "FINISHED"]  # earlier runs untouched
    for name in ("instropitch-pitch", "instropitch-instrument"):
        assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
    assert str(client.get_model_version_by_alias("instropitch", "champion").version) == "1"
    assert experiment.tags.get("mlflow.experimentKind") == "custom_model_development"  # opens on training runs

    # what the demo runs: one held-out fit of the recipe's several (param `heldout_sources`), one network where the
    # recipe averages two (param `members`); the version says which fit its held-out score comes from, so promotion
    # does not set it against the champion's two-fit score
    shown.clear()
    quick = {**airflow_env, "INSTROPITCH_MODELS_DIR": str(tmp_path / "quick")}
    one = local_airflow.dags_test(
        "instropitch_training",
        quick,
        {"epochs": 1, "models": ["instrument"], "heldout_sources": ["copy"], "members": 1},
        progress=shown.append,
    )
    assert one.ok, one.tail(80)
    assert [re.sub(r" in \d+ s$", "", line) for line in shown if line.startswith("  task fit_heldout")] == [
        "  task fit_heldout[0]: success"
    ]
    assert [line.split(" epoch ")[0] for line in shown if " epoch " in line] == [
        "  instrument without copy",
        "  instrument",
    ]
    latest = client.get_model_version("instropitch-instrument", "3")
    assert latest.tags["heldout_sources"] == "copy"
    overridden = client.get_run(latest.run_id)
    assert overridden.data.params["training.members"] == "1"  # MLflow keeps the settings that ran
    calibrated = overridden.data.metrics  # one fit: its honest figure is fitted on its own answers, as the version's
    assert calibrated["calibration.heldout_ece"] == pytest.approx(calibrated["calibration.ece"])
    assert [a.path for a in client.list_artifacts(latest.run_id, "spec")] == ["spec/instrument.yaml"]
    assert latest.tags["promotion.basis"] == "test_accuracy"  # not the held-out score of other fits
    # (a `heldout_sources` name no fit leaves out fails the task: tests/ml, `fits_leaving_out`)
