"""Model YAML recipes: the shipped ones parse, and every mistake is named precisely."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml
from support import ROOT

from instropitch.modelspec import MAX_PARAM_LENGTH, ModelSpec, SpecError, load_spec, load_specs, parse_spec

MODELS = ROOT / "models"

SEED_RECIPE = """
name: seed
description: The seed recipe - 32/64/128 conv stack, flatten, one dense layer.
label: instrument
input: instrument
features: seed
architecture:
  conv_blocks:
    - {filters: 32, kernel: 3, pool: 2}
    - {filters: 64, kernel: 3, pool: 2}
    - {filters: 128, kernel: 3, pool: 2}
  batch_norm: true
  pooling: flatten
  dense: [128]
  dropout: 0.5
training:
  epochs: 20
  batch_size: 32
  learning_rate: 1e-3
"""


def write(tmp_path: Path, text: str, name: str = "model.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def minimal(**changes: object) -> dict:
    data = {
        "name": "tiny",
        "label": "midi",
        "input": "pitch",
        "architecture": {"conv_blocks": [{"filters": 8}]},
    }
    data.update(changes)
    return data


def errors_of(tmp_path: Path, data: dict) -> str:
    path = write(tmp_path, yaml.safe_dump(data))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    return str(info.value)


# ----------------------------------------------------------------- shipped recipes


def test_shipped_recipes_parse_and_sort_by_name():
    specs = load_specs(MODELS)
    assert [s.name for s in specs] == sorted(s.name for s in specs)
    by_name = {s.name: s for s in specs}
    assert {"pitch", "instrument"} <= set(by_name)

    pitch = by_name["pitch"]
    assert (pitch.label, pitch.input, pitch.features) == ("midi", "pitch", "default")
    assert pitch.registered_model_name == "instropitch-pitch"
    assert pitch.training.augmentation.freq_shift == 0
    assert pitch.training.early_stopping is not None and pitch.training.early_stopping.monitor == "val_loss"
    assert pitch.training.learning_rate == pytest.approx(1e-3)
    assert pitch.source == MODELS / "pitch.yaml"

    instrument = by_name["instrument"]
    assert (instrument.label, instrument.input) == ("instrument", "instrument+harmonics")
    assert instrument.training.augmentation.freq_shift > 0


def test_seed_recipe_is_expressible(tmp_path):
    spec = load_spec(write(tmp_path, SEED_RECIPE, "seed.yaml"))
    assert [b.filters for b in spec.architecture.conv_blocks] == [32, 64, 128]
    assert spec.architecture.pooling == "flatten"
    assert spec.architecture.conv_blocks[0].kernel == (3, 3)
    assert spec.training.learning_rate == pytest.approx(1e-3)  # `1e-3` is text to PyYAML; still accepted
    assert spec.training.early_stopping is not None  # defaults fill what the file leaves out
    assert spec.features == "seed"


def test_defaults_and_name_from_file(tmp_path):
    data = minimal()
    del data["name"]
    spec = load_spec(write(tmp_path, yaml.safe_dump(data), "my-model.yaml"))
    assert spec.name == "my-model"
    assert spec.features == "default"
    assert spec.training.augmentation.enabled is False
    assert spec.architecture.conv_blocks[0].pool == (2, 2)


def test_early_stopping_can_be_switched_off(tmp_path):
    spec = parse_spec(minimal(training={"early_stopping": None}))
    assert spec.training.early_stopping is None


# ------------------------------------------------------------------ bad recipes


def test_unknown_key_names_file_path_and_suggestion(tmp_path):
    message = errors_of(tmp_path, minimal(training={"epoch": 3}))
    path = tmp_path / "model.yaml"
    assert f"{path}: training.epoch: unknown key (did you mean 'epochs'?)" in message


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"architecture": {"conv_blocks": [{"filters": 8}, {"filter": 16}]}}, "architecture.conv_blocks.1.filter"),
        (
            {"training": {"augmentation": {"gain": 3}}},
            "training.augmentation.gain: unknown key (did you mean 'gain_db'?)",
        ),
        ({"training": {"early_stopping": {"patiance": 3}}}, "did you mean 'patience'?"),
        ({"lable": "midi"}, "lable: unknown key (did you mean 'label'?)"),
    ],
)
def test_unknown_keys_anywhere(tmp_path, changes, expected):
    assert expected in errors_of(tmp_path, minimal(**changes))


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"training": {"epochs": "ten"}}, "training.epochs: must be a whole number"),
        ({"training": {"epochs": True}}, "training.epochs: must be a whole number"),
        ({"training": {"epochs": 0}}, "training.epochs: must be >= 1"),
        ({"training": {"batch_size": 2.5}}, "training.batch_size: must be a whole number"),
        ({"training": {"learning_rate": "fast"}}, "training.learning_rate: must be a number"),
        ({"training": {"learning_rate": 0}}, "training.learning_rate: must be in (0, 1]"),
        ({"training": {"weight_decay": -0.1}}, "training.weight_decay: must be in [0, 1]"),
        ({"training": {"early_stopping": {"monitor": "val_acc"}}}, "did you mean 'val_accuracy'?"),
        ({"architecture": {"conv_blocks": [{"filters": 8}], "dropout": 1.5}}, "architecture.dropout: must be in"),
        ({"architecture": {"conv_blocks": [{"filters": 8}], "batch_norm": "yes"}}, "must be true or false"),
        (
            {"architecture": {"conv_blocks": [{"filters": 8}], "group_norm": 4}},
            "architecture.group_norm: cannot be used with batch_norm",
        ),
        (
            {"architecture": {"conv_blocks": [{"filters": 8}, {"filters": 6}], "batch_norm": False, "group_norm": 4}},
            "architecture.conv_blocks.1.filters: 6 is not a multiple of group_norm (4)",
        ),
        (
            {"architecture": {"conv_blocks": [{"filters": 8}], "pooling": "mean"}},
            "architecture.pooling: must be one of",
        ),
        ({"architecture": {"conv_blocks": [{"filters": 8, "kernel": [3, 3, 3]}]}}, "conv_blocks.0.kernel"),
        ({"architecture": {"conv_blocks": []}}, "architecture.conv_blocks: must be a non-empty list"),
        ({"architecture": {"conv_blocks": [{"filters": 8}], "dense": 128}}, "architecture.dense: must be a list"),
        ({"label": "note"}, "label: must be one of midi, instrument"),
        ({"input": "pitches"}, "did you mean 'pitch'?"),
        ({"name": "Pitch Model"}, "name: 'Pitch Model' must be lower case"),
        ({"training": [1, 2]}, "training: must be a mapping, got list"),
    ],
)
def test_wrong_types_and_ranges(tmp_path, changes, expected):
    assert expected in errors_of(tmp_path, minimal(**changes))


def test_missing_required_keys(tmp_path):
    message = errors_of(tmp_path, {"name": "x", "architecture": {"conv_blocks": [{"kernel": 3}]}})
    assert "label: missing required key" in message
    assert "input: missing required key" in message
    assert "architecture.conv_blocks.0.filters: missing required key" in message


def test_freq_shift_refused_for_pitch_labels(tmp_path):
    message = errors_of(tmp_path, minimal(training={"augmentation": {"freq_shift": 2}}))
    assert "training.augmentation.freq_shift" in message
    assert "changes the note" in message
    ok = parse_spec(minimal(label="instrument", input="instrument", training={"augmentation": {"freq_shift": 2}}))
    assert ok.training.augmentation.freq_shift == 2


def test_synthetic_tones_only_for_pitch_models(tmp_path):
    assert parse_spec(minimal(training={"synthetic_tones": 6})).training.synthetic_tones == 6
    assert parse_spec(minimal()).training.synthetic_tones == 0
    message = errors_of(tmp_path, minimal(label="instrument", input="instrument", training={"synthetic_tones": 2}))
    assert "training.synthetic_tones" in message and "only for label 'midi'" in message


def test_all_problems_reported_at_once(tmp_path):
    message = errors_of(tmp_path, minimal(training={"epoch": 3, "batch_size": -1}, extra=1))
    lines = message.splitlines()
    assert len(lines) == 3
    assert all(line.startswith(str(tmp_path / "model.yaml")) for line in lines)


def test_bad_yaml_and_folders(tmp_path):
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(write(tmp_path, "name: [unclosed\n"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SpecError, match="no model YAML"):
        load_specs(empty)
    twins = tmp_path / "twins"
    twins.mkdir()
    for stem in ("a", "b"):
        write(twins, yaml.safe_dump(minimal()), f"{stem}.yaml")
    with pytest.raises(SpecError, match="'tiny' is also used by"):
        load_specs(twins)


# ------------------------------------------------------------------ params


def test_to_params_is_flat_text_for_mlflow():
    spec: ModelSpec = parse_spec(minimal(description="x" * 2000, training={"augmentation": {"gain_db": 3}}))
    params = spec.to_params()
    assert params["architecture.conv_blocks.0.filters"] == "8"
    assert params["architecture.conv_blocks.0.kernel"] == "[3, 3]"
    assert params["training.augmentation.gain_db"] == "3.0"
    assert params["training.early_stopping.monitor"] == "val_loss"
    assert params["label"] == "midi"
    assert all(isinstance(v, str) and len(v) <= MAX_PARAM_LENGTH for v in params.values())
    assert "source" not in params
    assert all(k == k.strip() and " " not in k for k in params)
