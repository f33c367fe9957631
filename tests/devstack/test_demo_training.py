"""What `instropitch demo` asks of the training DAG: one held-out fit of the recipe's several and one network per
fit, unless told otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from instropitch.cli import _demo_heldout, _demo_members
from instropitch.devstack import demo
from instropitch.synth import fonts

SOURCES = ["freepats", "merlin", "timgm6mb", "timgm6mb-tsf"]


def test_the_demo_runs_the_one_fit_blind_to_a_font_that_always_renders():
    options = demo.DemoOptions(home=Path(".instropitch"))
    assert demo.training_conf(options, SOURCES) == ({"members": 1, "heldout_sources": ["timgm6mb"]}, "")
    # TimGM6mb comes from a PyPI package, so the default render always has it (the npm fonts may be missing)
    assert {name for name, package, _ in fonts.PACKAGED_FONTS} >= set(demo.DEMO_HELDOUT)
    every = demo.DemoOptions(home=Path(".instropitch"), epochs=3, heldout_sources=(), members=None)
    assert demo.training_conf(every, SOURCES) == ({"epochs": 3}, "")  # the recipe's fits, as the nightly run


def test_a_held_out_source_without_notes_is_dropped_and_said():
    """A small --scale may deal TimGM6mb no note: the DAG would refuse the name, so the demo drops it."""
    options = demo.DemoOptions(home=Path(".instropitch"))
    conf, note = demo.training_conf(options, ["merlin", "mslite"])
    assert conf == {"members": 1}
    assert (
        note
        == "demo: no notes of timgm6mb in the combined table (sources: merlin, mslite); every held-out fit will run"
    )
    two = demo.DemoOptions(home=Path(".instropitch"), heldout_sources=("merlin", "gone"))
    conf, note = demo.training_conf(two, SOURCES)
    assert conf == {"members": 1, "heldout_sources": ["merlin"]} and note.endswith(
        "only the fits blind to merlin will run"
    )


def test_heldout_option_names_sources_or_all():
    assert _demo_heldout(None, ("timgm6mb",)) == ("timgm6mb",)
    assert _demo_heldout("all", ("timgm6mb",)) == ()
    assert _demo_heldout(" merlin, freepats ,", ("timgm6mb",)) == ("merlin", "freepats")


def test_members_option_counts_networks_or_keeps_the_recipes():
    assert _demo_members(None, demo.DEMO_MEMBERS) == 1
    assert _demo_members("recipe", 1) is None  # each recipe's, as the nightly run
    assert _demo_members("3", 1) == 3
    for bad in ("0", "two", "-1"):
        with pytest.raises(ValueError, match=f"--members '{bad}': expected a number of networks"):
            _demo_members(bad, 1)
