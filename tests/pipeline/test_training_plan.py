"""How the training DAG splits its work: which leave-one-source-out fits `fit_heldout` is mapped over."""

from __future__ import annotations

from dataclasses import replace

import pytest

from instropitch.pipeline.training import gather_heldout, heldout_fits, load_recipe, model_paths


def test_one_fit_per_model_and_source_as_the_recipes_and_the_param_say(project_root, tmp_path):
    paths = model_paths(models_dir=project_root / "models")
    two = {"sources": ["fluidr3", "TinySOL"]}
    plan = heldout_fits(paths, two)
    # The shipped recipes: the instrument model is held out per source, the pitch model is not.
    assert sorted((p["model_path"].rsplit("/", 1)[-1], p["source"]) for p in plan) == [
        ("instrument.yaml", "TinySOL"),
        ("instrument.yaml", "fluidr3"),
    ]
    forced = heldout_fits(paths, two, leave_one_source_out=True)
    assert sorted(p["model_path"].rsplit("/", 1)[-1] for p in forced) == ["instrument.yaml"] * 2 + ["pitch.yaml"] * 2
    assert heldout_fits(paths, two, leave_one_source_out=False) == []  # a quick run skips them
    assert heldout_fits(paths, two, epochs=0) == []  # an untrained model is not scored
    assert heldout_fits(paths, {"sources": ["TinySOL"]}) == []  # one source: nothing to hold out
    # The demo's four fonts: the two that share samples (MuseScore_General is built on FluidR3) are held out together.
    fonts = {"sources": ["fluidr3mono", "merlin", "mslite", "timgm6mb"]}
    assert [p["source"] for p in heldout_fits(paths, fonts)] == ["fluidr3mono+mslite", "merlin", "timgm6mb"]
    # Each font played by both players: a fit holds out the font with both, else it would hear what it is scored on.
    played = {"sources": [*fonts["sources"], *(f"{name}-tsf" for name in fonts["sources"])]}
    assert [p["source"] for p in heldout_fits(paths, played)] == [
        "fluidr3mono+fluidr3mono-tsf+mslite+mslite-tsf",
        "merlin+merlin-tsf",
        "timgm6mb+timgm6mb-tsf",
    ]

    # param `heldout_sources` (the demo's one fit): the fits blind to one of them; a name the data lacks is an error
    assert [p["source"] for p in heldout_fits(paths, played, only=["timgm6mb"])] == ["timgm6mb+timgm6mb-tsf"]
    assert [p["source"] for p in heldout_fits(paths, played, only=["merlin-tsf", "mslite"])] == [
        "fluidr3mono+fluidr3mono-tsf+mslite+mslite-tsf",
        "merlin+merlin-tsf",
    ]
    with pytest.raises(ValueError, match=r"heldout_sources \['timgm6mb', 'gone'\] for instrument: .*leaves out gone"):
        heldout_fits(paths, played, only=["timgm6mb", "gone"])
    assert heldout_fits(paths, played, leave_one_source_out=False, only=["gone"]) == []  # no fits: nothing to choose

    quiet = tmp_path / "quiet.yaml"  # a recipe that asks for no held-out fits gets none, unless forced
    quiet.write_text(
        (project_root / "models" / "instrument.yaml")
        .read_text()
        .replace("name: instrument", "name: quiet")
        .replace("leave_one_source_out: true", "leave_one_source_out: false")
    )
    assert "leave_one_source_out: false" in quiet.read_text()
    assert heldout_fits([str(quiet)], two) == []
    assert [p["source"] for p in heldout_fits([str(quiet)], two, leave_one_source_out=True)] == ["TinySOL", "fluidr3"]


class Unreadable:
    """What a skipped (zero-length) mapped task hands on: reading it would ask Airflow for XComs that don't exist."""

    def __iter__(self):
        raise AssertionError("read the summaries of fits that never ran")


def test_gather_checks_every_planned_fit_answered():
    planned = [{"model_path": "m/pitch.yaml", "source": s} for s in ("a", "b")]

    def summary(source: str, accuracy: float) -> dict:
        return {"model_path": "m/pitch.yaml", "model": "pitch", "source": source, "n": 10, "heldout_accuracy": accuracy}

    done = [summary("b", 0.5), summary("a", 0.75)]  # mapped tasks finish in any order
    assert gather_heldout(planned, [{**s, "fit_time_s": 1.0} for s in done]) == {"pitch": {"a": 0.75, "b": 0.5}}
    assert gather_heldout([], Unreadable()) == {}
    with pytest.raises(ValueError, match=r"without an answer: \[\('m/pitch.yaml', 'b'\)\]"):
        gather_heldout(planned, [{**summary("a", 0.75), "fit_time_s": 1.0}])


def test_the_members_param_overrides_the_recipe_and_mlflow_keeps_what_ran(project_root):
    path = str(project_root / "models" / "instrument.yaml")
    shipped = load_recipe(path)
    assert shipped.training.members == 2 and shipped.source == project_root / "models" / "instrument.yaml"
    assert load_recipe(path, None) == shipped and load_recipe(path, 2).source == shipped.source  # nothing overridden
    one = load_recipe(path, 1)
    assert one.training.members == 1 and one.source is None  # its YAML says 2: MLflow logs the settings instead
    assert one.training == replace(shipped.training, members=1) and one.architecture == shipped.architecture
    with pytest.raises(ValueError, match="members must be 1 or more, not 0"):
        load_recipe(path, 0)


def test_a_model_is_unchanged_when_its_newest_version_learnt_this_data_with_this_recipe(tmp_path, monkeypatch):
    import yaml
    from support.mlflow_store import throwaway_store
    from support.models import SPEC, synthetic_snapshot

    from instropitch.ml import registry, training
    from instropitch.modelspec import parse_spec
    from instropitch.pipeline.training import models_to_train, unchanged_models

    recipe = tmp_path / "inst.yaml"
    recipe.write_text(yaml.safe_dump(SPEC))
    paths = [str(recipe)]
    with throwaway_store(tmp_path):
        snap = synthetic_snapshot()

        def unchanged(digest: str = snap.digest, epochs: int | None = 0, **kwargs) -> dict[str, str]:
            return unchanged_models(paths, digest, snap.sources, epochs, **kwargs)

        assert unchanged() == {}  # no version yet
        version = training.train_and_log(load_recipe(str(recipe)), snap, epochs_override=0).version
        assert unchanged() == {}  # a version that promotion never judged (the run failed after registering it)
        registry.promote("inst", version, snap)
        assert unchanged() == {str(recipe): f"inst (as version {version})"}

        assert unchanged(digest="other data") == {}
        assert unchanged(epochs=None) == {}  # the recipe's 8 epochs, not the version's 0
        assert unchanged(members=2) == {}
        assert unchanged(leave_one_source_out=True) == unchanged()  # one source: no fit planned, as the version had
        monkeypatch.setattr(training, "code_digest", lambda: "new code")
        assert unchanged() == {}  # a deployment of other code
        monkeypatch.undo()

        # the newest version is what counts: one of another recipe (a manual run's, judged and rejected) came after
        other = training.train_and_log(
            parse_spec({**SPEC, "training": {**SPEC["training"], "seed": 11}}), snap, epochs_override=0
        )
        registry.promote("inst", other.version, snap)
        assert int(other.version) == int(version) + 1 and unchanged() == {}

        # only a nightly run asks (and reads the table to); manual and Asset-triggered runs train what they are given
        def connect():
            raise AssertionError("only a run that skips unchanged models reads the table")

        assert models_to_train(paths, "manual", connect) == paths
        assert models_to_train(paths, "asset_triggered", connect) == paths
        assert models_to_train(paths, "scheduled", connect, only_if_changed=False) == paths  # the param decides
