"""Promotion: the first version becomes champion, a better one replaces it, a worse one never does."""

from __future__ import annotations

import numpy as np
import pytest
from support.mlflow_store import throwaway_store
from support.models import SPEC, synthetic_snapshot

from instropitch.modelspec import parse_spec


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    """v1 untrained -> champion; v2 trained -> replaces it; v3 untrained -> refused."""
    from instropitch.ml import registry
    from instropitch.ml.training import train_and_log

    root = tmp_path_factory.mktemp("mlflow")
    with throwaway_store(root):
        spec = parse_spec(SPEC)
        snap = synthetic_snapshot()
        untrained = train_and_log(spec, snap, epochs_override=0)
        first = registry.promote("inst", untrained.version, snap)
        good = train_and_log(spec, snap)
        second = registry.promote("inst", good.version, snap)
        worse = train_and_log(
            parse_spec({**SPEC, "training": {**SPEC["training"], "seed": 11}}), snap, epochs_override=0
        )
        third = registry.promote("inst", worse.version, snap)
        yield {
            "snap": snap,
            "runs": (untrained, good, worse),
            "decisions": (first, second, third),
            "root": root,
        }


def test_first_version_becomes_champion(story):
    first = story["decisions"][0]
    assert first.promoted
    assert first.champion_version_before is None and first.champion_score is None
    assert "no champion yet" in first.reason
    assert first.new_score == pytest.approx(story["runs"][0].test_accuracy)


def test_better_version_takes_over(story):
    untrained, good, _ = story["runs"]
    second = story["decisions"][1]
    assert good.test_accuracy >= 0.9
    assert second.promoted
    assert second.champion_version_before == "1"
    assert second.champion_score == pytest.approx(untrained.test_accuracy)
    assert second.new_score == pytest.approx(good.test_accuracy)
    assert second.new_score > second.champion_score


def test_worse_version_never_replaces_champion(story):
    import mlflow

    from instropitch.ml.registry import champion_info, load_model

    _, good, worse = story["runs"]
    third = story["decisions"][2]
    assert not third.promoted
    assert third.champion_version_before == good.version
    assert third.new_score < third.champion_score
    assert "stays champion" in third.reason

    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias("instropitch-inst", "champion").version) == good.version
    info = champion_info("inst")
    assert info is not None and info.version == good.version
    assert info.model_uri == "models:/instropitch-inst@champion"
    assert info.test_accuracy == pytest.approx(good.test_accuracy)
    assert info.heldout_accuracy is None  # one source: nothing held out
    champion = load_model(info.model_uri)  # what a predict task does
    snap = story["snap"]
    assert champion.label == "instrument" and champion.class_values[:2] == ["BTb", "Hn"]
    predicted = champion.predict(snap.instrument_spec[snap.is_test])
    assert np.mean(predicted == snap.instrument[snap.is_test]) == pytest.approx(good.test_accuracy)

    # the decision and both scores are on the refused version and on its training run
    version_tags = client.get_model_version("instropitch-inst", worse.version).tags
    run_tags = client.get_run(worse.run_id).data.tags
    for tags in (version_tags, run_tags):
        assert tags["promotion.decision"] == "rejected"
        assert float(tags["promotion.new_score"]) == pytest.approx(third.new_score)
        assert float(tags["promotion.champion_score"]) == pytest.approx(third.champion_score)
        assert tags["promotion.champion_version_before"] == good.version
        assert tags["promotion.snapshot_digest"] == story["snap"].digest
    assert client.get_model_version("instropitch-inst", good.version).tags["promotion.decision"] == "promoted"


def test_ties_keep_the_champion(story, monkeypatch):
    from instropitch.ml import registry

    monkeypatch.setattr(registry, "evaluate", lambda loaded, snapshot: 0.5)
    tie = registry.promote("inst", story["runs"][0].version, story["snap"])
    assert not tie.promoted
    assert tie.new_score == tie.champion_score == 0.5
    assert "ties keep the champion" in tie.reason
    assert registry.champion_info("inst").version == story["runs"][1].version


def test_repromoting_the_champion_changes_nothing(story):
    from instropitch.ml import registry

    good = story["runs"][1]
    again = registry.promote("inst", good.version, story["snap"])
    assert again.promoted and again.champion_version_before == good.version
    assert "already is the champion" in again.reason
    assert registry.champion_info("inst").version == good.version


def test_champion_info_without_model(story):
    from instropitch.ml.registry import champion_info

    assert champion_info("nothing-here") is None


def test_list_runs_side_by_side(story, capsys):
    from instropitch.cli import main
    from instropitch.ml.registry import RUN_COLUMNS, list_runs

    runs = list_runs()
    assert tuple(runs.columns) == RUN_COLUMNS
    assert len(runs) == 3
    assert runs["run_id"].tolist() == [r.run_id for r in reversed(story["runs"])]  # newest first
    assert runs["champion"].tolist() == [False, True, False]
    assert runs["version"].tolist() == ["3", "2", "1"]
    assert set(runs["model"]) == {"inst"}
    assert set(runs["data_digest"]) == {story["snap"].digest}
    assert list_runs(experiment="no-such-experiment").empty

    assert main(["runs", "--max-results", "2"]) == 0
    out = capsys.readouterr().out
    assert story["runs"][1].run_id in out and story["runs"][0].run_id not in out
    assert "champion" in out.splitlines()[0]


def test_cli_finds_the_demo_store_without_a_tracking_uri(tmp_path, monkeypatch):
    """Right after `make demo`, `instropitch runs`/`predict` read its store, not a new ./mlflow.db."""
    import argparse

    from instropitch.cli import _tracking_uri

    monkeypatch.setenv("INSTROPITCH_HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    no_flag = argparse.Namespace(tracking_uri=None)
    assert _tracking_uri(no_flag) is None  # no demo store yet: MLflow's own default
    (tmp_path / "mlflow.db").write_bytes(b"")
    assert _tracking_uri(no_flag) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert _tracking_uri(argparse.Namespace(tracking_uri="http://mlflow:5000")) == "http://mlflow:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://elsewhere:5000")
    assert _tracking_uri(no_flag) is None  # the environment wins; MLflow reads it itself
