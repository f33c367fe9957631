"""The portable (ONNX) models: logged with every version, equal to the Keras models, cached, light to load.

The registry is the session's `trained_store` (tiny real CNNs, trained and registered by
`train_and_log`, so each version carries its ONNX copy). A version registered before
portable copies is made here by logging a Keras model the old way.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support import ROOT
from support.tones import SR, tone, wav_bytes

from instropitch import audio

PARITY_TOLERANCE = 1e-4


@pytest.fixture
def tracking(trained_store, monkeypatch) -> str:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained_store.uri)
    monkeypatch.delenv("INSTROPITCH_EXPORT_DIR", raising=False)
    return trained_store.uri


def notes(predictor, n_per: int = 2) -> dict[str, np.ndarray]:
    """Spectrograms (as the predictor computes them) of notes of every trained instrument and some other pitches."""
    from instropitch.audio.features import compute_features

    rows: dict[str, list[np.ndarray]] = {"pitch": [], "instrument": []}
    for i, (abbr, midi) in enumerate([(a, m) for a in ("Fl", "ClBb", "Vn") for m in (60, 63, 66, 69)][: 6 * n_per]):
        feats = compute_features(wav_bytes(tone(abbr, midi, amp=0.3 + 0.05 * i, seed=500 + i)), predictor.features)
        rows["pitch"].append(feats.pitch)
        rows["instrument"].append(feats.instrument)
    return {k: np.stack(v) for k, v in rows.items()}


def test_onnx_models_answer_as_the_keras_models(predictor, trained_store, tracking):
    from instropitch.ml import registry

    x = predictor.model_inputs(notes(predictor))
    for role, model in predictor.models.items():
        keras_model = registry.load_model(f"models:/instropitch-{role}/{trained_store.versions[role]}")
        spectrograms = x[role]
        expected = keras_model.predict_proba(spectrograms).astype(np.float64)
        got = model.proba(spectrograms)
        assert got.shape == expected.shape
        assert np.array_equal(got.argmax(axis=1), expected.argmax(axis=1)), role
        assert np.abs(got - expected).max() <= PARITY_TOLERANCE, role


def test_every_registered_version_carries_its_onnx_copy(trained_store, tracking, tmp_path):
    import hashlib

    import mlflow
    import yaml

    from instropitch.ml.tracking import METADATA_KEY, PORTABLE_KEY, TAG_PORTABLE

    client = mlflow.MlflowClient()
    for role, version in trained_store.versions.items():
        name = f"instropitch-{role}"
        assert client.get_model_version(name, version).tags[TAG_PORTABLE] == "onnx"
        base = client.get_model_version_download_uri(name, version)
        mlmodel = yaml.safe_load(
            Path(mlflow.artifacts.download_artifacts(f"{base}/MLmodel", dst_path=tmp_path)).read_text()
        )
        portable = mlmodel["metadata"][PORTABLE_KEY]
        assert portable["format"] == "onnx" and portable["file"] == "extra_files/model.onnx"
        onnx = Path(mlflow.artifacts.download_artifacts(f"{base}/{portable['file']}", dst_path=tmp_path)).read_bytes()
        assert hashlib.sha256(onnx).hexdigest() == portable["sha256"]
        assert mlmodel["metadata"][METADATA_KEY]["label"] in ("midi", "instrument")


def test_the_second_registry_load_comes_from_the_cache(trained_store, tracking, tmp_path, monkeypatch):
    import mlflow

    from instropitch.serving.predictor import Predictor

    monkeypatch.setenv("INSTROPITCH_CACHE", str(tmp_path / "cache"))
    first = Predictor.from_registry()
    cached = sorted(p.parent.parts[-2:] for p in (tmp_path / "cache").rglob("model.onnx"))
    assert cached == [("instropitch-instrument", "1"), ("instropitch-pitch", "1")]

    def forbidden(*args, **kwargs):
        raise AssertionError("a cached version must not be downloaded again")

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", forbidden)
    second = Predictor.from_registry()
    note = tmp_path / "n.wav"
    audio.write_wav(note, tone("Vn", 64, seed=3), SR)
    assert second.predict_file(note).to_dict() == first.predict_file(note).to_dict()
    assert second.describe() == first.describe()

    # a damaged entry is a miss, not a wrong model
    for path in (tmp_path / "cache").rglob("model.onnx"):
        path.write_bytes(b"not onnx")
    monkeypatch.undo()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained_store.uri)
    monkeypatch.setenv("INSTROPITCH_CACHE", str(tmp_path / "cache"))
    assert Predictor.from_registry().predict_file(note).to_dict() == first.predict_file(note).to_dict()


def test_a_version_from_before_portable_copies_is_converted_once(
    predictor, trained_store, mlflow_store, tmp_path, monkeypatch, caplog
):
    """Logged as training did before this change (no ONNX in it): converted with a log line, then cached."""
    import mlflow

    from instropitch.ml import portable, registry
    from instropitch.ml.tracking import METADATA_KEY
    from instropitch.serving.predictor import Predictor

    with monkeypatch.context() as mp:  # the Keras models of the trained store
        mp.setenv("MLFLOW_TRACKING_URI", trained_store.uri)
        keras_models = {role: registry.load_model(m.info.source_uri).model for role, m in predictor.models.items()}
    client = mlflow.MlflowClient()
    with mlflow.start_run(experiment_id=mlflow_store.experiment_id):
        for role, model in predictor.models.items():
            info = mlflow.tensorflow.log_model(
                keras_models[role],
                name=f"model-{role}",
                registered_model_name=f"instropitch-{role}",
                metadata={METADATA_KEY: model.layout},
            )
            client.set_registered_model_alias(f"instropitch-{role}", "champion", info.registered_model_version)
    monkeypatch.setenv("INSTROPITCH_CACHE", str(tmp_path / "cache"))
    with caplog.at_level(logging.WARNING, logger="instropitch.serving"):
        old = Predictor.from_registry()
    assert sum("registered before portable models" in r.getMessage() for r in caplog.records) == 2
    x = predictor.model_inputs(notes(predictor, n_per=1))
    for role, model in old.models.items():
        assert np.abs(model.proba(x[role]) - predictor.models[role].proba(x[role])).max() <= 1e-5

    def forbidden(*args, **kwargs):
        raise AssertionError("the converted copy is cached: no second conversion")

    monkeypatch.setattr(portable, "to_onnx", forbidden)
    caplog.clear()
    Predictor.from_registry()
    assert not [r for r in caplog.records if "registered before portable models" in r.getMessage()]


def test_cli_predicts_from_an_export_without_tensorflow(predictor, tmp_path):
    """A fresh process: the whole predict command never imports TensorFlow, Keras, pandas or MLflow."""
    export = predictor.export(tmp_path / "export")
    note = tmp_path / "violin-A4.wav"
    audio.write_wav(note, tone("Vn", 69, amp=0.6, seed=901), SR)
    script = (
        "import json, sys\n"
        "from instropitch.cli import main\n"
        f"code = main(['predict', {str(note)!r}, '--from-export', {str(export)!r}, '--json'])\n"
        "heavy = sorted(m for m in ('tensorflow', 'keras', 'pandas', 'mlflow', 'scipy', 'sklearn') if m in sys.modules)\n"
        "print('RESULT ' + json.dumps({'code': code, 'heavy': heavy}))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "include"), os.environ.get("PYTHONPATH", "")])}
    env.pop("INSTROPITCH_EXPORT_DIR", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    printed, result = done.stdout.rsplit("RESULT ", 1)
    assert json.loads(result) == {"code": 0, "heavy": []}
    (row,) = json.loads(printed)
    assert (row["instrument_abbr"], row["midi"]) == ("Vn", 69)
    assert row == predictor.predict_file(note).to_dict()
