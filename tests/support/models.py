"""Tiny learnable data, recipes and a trained registry store, shared by the ML and serving tests.

* `SPEC`, `INSTRUMENTS`, `synthetic_snapshot()`: a small instrument CNN recipe and a snapshot
  it learns in a few epochs (the instrument is the position of a bright band in frequency);
* `synthetic_arrays()`: the rows `create_snapshot` takes, pitch and instrument both learnable;
* `build_trained_store(root)`: real tiny CNNs trained on spectrograms of synthesized WAVs
  (three instruments with distinct harmonic recipes, six pitches), registered in a sqlite
  MLflow store with the `champion` alias; the session fixture `trained_store` of
  tests/conftest.py builds it once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from instropitch import audio
from instropitch.ml.snapshot import create_snapshot
from instropitch.modelspec import parse_spec
from instropitch.tinysol import midi_to_pitch
from support.mlflow_store import throwaway_store
from support.tones import SR, tone

# ------------------------------------------------------------- a tiny instrument recipe


INSTRUMENTS = ("Vn", "Fl", "Ob", "Hn")
SNAPSHOT_SHAPE = (10, 24)

SPEC = {
    "name": "inst",
    "label": "instrument",
    "input": "instrument",
    "architecture": {
        "conv_blocks": [{"filters": 8, "kernel": 3, "pool": 2}],
        "pooling": "time_avg",
        "dense": [16],
        "dropout": 0.0,
    },
    "training": {
        "epochs": 8,
        "batch_size": 16,
        "learning_rate": 0.01,
        "seed": 3,
        "early_stopping": None,
        "augmentation": {"gain_db": 2, "freq_shift": 1},
    },
}


def synthetic_snapshot(n: int = 160):
    """Instrument = position of a bright band in frequency; midi varies but is irrelevant here."""
    rng = np.random.default_rng(0)
    instrument = np.array([INSTRUMENTS[i % 4] for i in range(n)])
    midi = np.array([(60, 64)[(i // 4) % 2] for i in range(n)])
    paths = np.array([f"{a}/ordinario/note-{i:04d}.wav" for i, a in enumerate(instrument)])
    spec = rng.normal(-70.0, 3.0, (n, *SNAPSHOT_SHAPE)).astype(np.float32)
    for i in range(n):
        b = 2 + 6 * INSTRUMENTS.index(instrument[i])
        spec[i, :, b : b + 2] += 40.0
    pitch = rng.normal(-70.0, 3.0, (n, 8, 16)).astype(np.float32)
    return create_snapshot(paths, midi, instrument, np.zeros(n, int), pitch, spec, seed=2, feature_digest="fd")


# ------------------------------------------------------------- rows for create_snapshot


PITCH_SHAPE = (12, 32)
INSTRUMENT_SHAPE = (10, 24)


def tiny_recipe(name: str) -> dict:
    """A recipe of one small instrument network that `three_classes` fits in seconds (no early stopping)."""
    return {
        "name": name,
        "label": "instrument",
        "input": "instrument",
        "architecture": {
            "conv_blocks": [{"filters": 4, "pool": 2}],
            "dense": [8],
            "pooling": "flatten",
            "dropout": 0.0,
        },
        "training": {"batch_size": 16, "early_stopping": None, "learning_rate": 0.01},
    }


def three_classes(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """48 instrument-shaped dB spectrograms and their labels, 16 of each of three classes a small network tells
    apart (class 1 louder in bands 0-19, class 2 above): rows 0-39 to fit, 40-47 to validate."""
    rng = np.random.default_rng(seed)
    x = rng.normal(-60, 5, (48, *INSTRUMENT_SHAPE)).astype(np.float32)
    y = np.repeat([0, 1, 2], 16)
    x[y == 1, :, :20] += 10.0
    x[y == 2, :, 20:40] += 10.0
    return x, y


def synthetic_arrays(n: int = 160, midis=(48, 55, 60, 67), instruments=("Vn", "Fl"), seed: int = 0):
    """Rows of a tiny data set: MIDI -> band position in `pitch`, instrument -> band in `instrument_spec`."""
    rng = np.random.default_rng(seed)
    midi = np.array([midis[i % len(midis)] for i in range(n)])
    instrument = np.array([instruments[(i // len(midis)) % len(instruments)] for i in range(n)])
    paths = np.array(
        [
            f"{a}/ordinario/{a}-ord-{midi_to_pitch(m)}-{i:04d}.wav"
            for i, (a, m) in enumerate(zip(instrument, midi, strict=True))
        ]
    )
    pitch = rng.normal(-70.0, 3.0, (n, *PITCH_SHAPE)).astype(np.float32)
    inst = rng.normal(-70.0, 3.0, (n, *INSTRUMENT_SHAPE)).astype(np.float32)
    for i in range(n):
        b = 3 + 7 * midis.index(midi[i])
        pitch[i, :, b : b + 2] += 40.0
        c = 4 + 8 * instruments.index(instrument[i])
        inst[i, :, c : c + 2] += 40.0
    fold = np.arange(n) % 5
    return paths, midi, instrument, fold, pitch, inst


# ------------------------------------------------------------------ the trained store

TRAIN_INSTRUMENTS = ("Fl", "ClBb", "Vn")
TRAIN_PITCHES = (60, 62, 64, 65, 67, 69)
TRAIN_AMPLITUDES = (0.2, 0.5, 0.8)
TRAINING = {"epochs": 25, "batch_size": 16, "learning_rate": 0.01, "seed": 3, "early_stopping": None}
SPECS = {
    "pitch": {"label": "midi", "input": "pitch", "pool": [2, 1]},
    # as models/instrument.yaml: the note-relative input, and an envelope read beside the network
    "instrument": {
        "label": "instrument",
        "input": "instrument+harmonics",
        "pool": 2,
        "envelope": {"weight": 0.5},
    },
}


@dataclass
class TrainedStore:
    root: Path
    uri: str
    train_dir: Path
    versions: dict[str, str]  # role -> champion version
    accuracies: dict[str, float]


def build_trained_store(root: Path) -> TrainedStore:
    """Champions `instropitch-pitch` v1 and `instropitch-instrument` v1 (plus a pitch v2 with no alias).

    Slow (two CNNs trained, 54 WAVs rendered): the session fixture `trained_store` builds it once.
    """
    import mlflow

    from instropitch.audio.features import compute_features, get_preset
    from instropitch.ml.training import train_and_log

    train_dir = root / "train"
    train_dir.mkdir()
    config = get_preset("default")
    rows: dict[str, list] = {"paths": [], "midi": [], "instrument": [], "pitch": [], "spec": []}
    for abbr in TRAIN_INSTRUMENTS:
        for midi in TRAIN_PITCHES:
            for k, amp in enumerate(TRAIN_AMPLITUDES):
                path = train_dir / f"{abbr}-{midi}-{k}.wav"
                audio.write_wav(path, tone(abbr, midi, amp=amp, seed=midi * 10 + k), SR)
                feats = compute_features(path, config)
                rows["paths"].append(str(path))
                rows["midi"].append(midi)
                rows["instrument"].append(abbr)
                rows["pitch"].append(feats.pitch)
                rows["spec"].append(feats.instrument)
    n = len(rows["paths"])
    snapshot = create_snapshot(
        rows["paths"],
        rows["midi"],
        rows["instrument"],
        np.zeros(n, int),
        np.stack(rows["pitch"]),
        np.stack(rows["spec"]),
        seed=1,
        feature_digest=config.digest(),
        feature_preset="default",
    )
    versions: dict[str, str] = {}
    accuracies: dict[str, float] = {}
    with throwaway_store(root, chdir=False) as store:
        client = mlflow.MlflowClient()
        for role, spec in SPECS.items():
            model_spec = parse_spec(
                {
                    "name": role,
                    "label": spec["label"],
                    "input": spec["input"],
                    "architecture": {
                        "conv_blocks": [{"filters": 8, "kernel": 3, "pool": spec["pool"]}],
                        "batch_norm": False,
                        "pooling": "time_avg",
                        "dense": [32],
                        "dropout": 0.0,
                        "envelope": spec.get("envelope"),
                    },
                    "training": TRAINING,
                }
            )
            result = train_and_log(model_spec, snapshot)
            assert result.test_accuracy >= 0.9, f"the tiny {role} model did not learn: {result.metrics}"
            client.set_registered_model_alias(f"instropitch-{role}", "champion", result.version)
            versions[role] = result.version
            accuracies[role] = result.test_accuracy
        # pitch v2: the same weights registered again, a lower recorded accuracy, no alias
        v1 = client.get_model_version("instropitch-pitch", versions["pitch"])
        v2 = client.create_model_version(
            "instropitch-pitch", v1.source, run_id=v1.run_id, tags={"test_accuracy": "0.5"}
        )
        assert str(v2.version) == "2"
    return TrainedStore(root=root, uri=store.uri, train_dir=train_dir, versions=versions, accuracies=accuracies)
