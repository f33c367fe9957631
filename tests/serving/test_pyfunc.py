"""The combined pyfunc model: registered as `instropitch@champion`, loaded in-process, served by MLflow.

`mlflow models serve` starts as soon as the model is registered (it needs ~10-30 s to
import TensorFlow and load), so the in-process test runs while it boots. The server is
killed at the end of the module whatever happens.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from support.tones import tone, wav_bytes

from instropitch.devstack.stack import free_port
from instropitch.serving.pyfunc import OUTPUT_COLUMNS
from instropitch.serving.results import Prediction

SERVE_TIMEOUT_S = 150


@pytest.fixture(scope="module")
def registered(trained_store, predictor):
    """The champions registered as one pyfunc model (`predictor` warms TensorFlow and them, as a full run has)."""
    from instropitch.serving.pyfunc import register_pyfunc

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", trained_store.uri)
        result = register_pyfunc()  # from the registry champions
    return trained_store, result


@pytest.fixture(scope="module")
def served(registered, tmp_path_factory):
    """`mlflow models serve -m models:/instropitch@champion --env-manager local` on a free loopback port."""
    store, _ = registered
    port = free_port()
    log_path = tmp_path_factory.mktemp("mlflow-serve") / "serve.log"
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": store.uri,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "OPENBLAS_NUM_THREADS": "1",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        # MLflow execs `uvicorn` by name: the venv's bin folder must be on PATH
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    env.pop("INSTROPITCH_EXPORT_DIR", None)
    mlflow_bin = str(Path(sys.executable).with_name("mlflow"))
    command = [mlflow_bin, "models", "serve", "-m", "models:/instropitch@champion"]
    command += ["--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, env=env, cwd=store.root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield process, f"http://127.0.0.1:{port}", log_path
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def test_registered_with_alias_signature_and_component_tags(registered, served):
    import mlflow

    store, result = registered
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", store.uri)
        client = mlflow.MlflowClient()
        mv = client.get_model_version_by_alias("instropitch", "champion")
        assert str(mv.version) == result.version
        assert mv.tags["pitch.version"] == store.versions["pitch"]
        assert mv.tags["instrument.version"] == store.versions["instrument"]
        assert float(mv.tags["pitch.test_accuracy"]) == pytest.approx(store.accuracies["pitch"], abs=1e-6)
        info = mlflow.models.get_model_info("models:/instropitch@champion")
        # the portable models: the export artifact holds ONNX only, and the model needs no TensorFlow
        base = client.get_model_version_download_uri("instropitch", mv.version)
        export = [a.path for a in mlflow.artifacts.list_artifacts(f"{base}/artifacts/export")]
        requirements = mlflow.artifacts.load_text(f"{base}/requirements.txt")
    assert sorted(Path(a).name for a in export if Path(a).suffix in (".onnx", ".keras")) == [
        "instrument.onnx",
        "pitch.onnx",
    ]
    assert "onnxruntime==" in requirements
    assert "tensorflow" not in requirements and "keras" not in requirements
    inputs = {c["name"]: c for c in info.signature.inputs.to_dict()}
    outputs = [c["name"] for c in info.signature.outputs.to_dict()]
    assert set(inputs) == {"wav_base64", "path"} and not any(c["required"] for c in inputs.values())
    assert outputs == list(OUTPUT_COLUMNS) and OUTPUT_COLUMNS[-1] == "error"
    answer = Prediction(file="x.wav", instrument="Violin").to_dict()
    assert set(OUTPUT_COLUMNS[:-1]) <= set(answer)  # every column is a field of the documented JSON answer
    assert {"instrument", "pitch", "octave", "instrument_confidence", "instrument_sure"} <= set(OUTPUT_COLUMNS)
    assert {"instrument_family", "instrument_family_sure"} <= set(OUTPUT_COLUMNS)


def test_pyfunc_in_process_mixed_rows(registered, tmp_path, served):
    import mlflow
    import pandas as pd

    from instropitch import audio

    store, _ = registered
    flute = tmp_path / "flute-G4.wav"
    audio.write_wav(flute, tone("Fl", 67, amp=0.5, seed=31), 22050)
    violin = base64.b64encode(wav_bytes(tone("Vn", 62, amp=0.5, seed=32))).decode()
    phone = tmp_path / "violin-8k.wav"
    audio.write_wav(phone, tone("Vn", 62, amp=0.5, seed=32, sr=8000), 8000)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", store.uri)
        model = mlflow.pyfunc.load_model("models:/instropitch@champion")
    frame = pd.DataFrame(
        {
            "wav_base64": [violin, None, "%%% not base64", base64.b64encode(b"plain text").decode(), None, None],
            "path": [None, str(flute), None, None, str(tmp_path / "missing.wav"), str(phone)],
        }
    )
    out = model.predict(frame)
    rows = out.to_dict(orient="records")
    assert [(r["instrument_abbr"], r["pitch"], r["note"], r["octave"], r["midi"]) for r in rows[:2]] == [
        ("Vn", "D4", "D", 4, 62),
        ("Fl", "G4", "G", 4, 67),
    ]
    assert rows[0]["instrument"] == "Violin" and 0 < rows[0]["instrument_confidence"] <= 1
    assert rows[0]["error"] is None
    assert rows[2]["error"] == "wav_base64 is not valid base64" and rows[2]["pitch"] is None
    assert rows[3]["error"].startswith("not an audio file")
    assert rows[4]["error"] == "No such file or directory"
    assert rows[0]["warnings"] == [] and rows[2]["warnings"] is None
    assert rows[0]["not_sure_because"] == {} and rows[2]["not_sure_because"] is None
    assert len(rows[5]["warnings"]) == 1 and rows[5]["warnings"][0].startswith("sampled at 8000 Hz")
    json.dumps(rows)  # None, not NaN: valid JSON

    only_b64 = model.predict(pd.DataFrame({"wav_base64": [violin]}))
    assert only_b64.loc[0, "pitch"] == "D4"
    with pytest.raises(Exception, match="wav_base64"):
        model.predict(pd.DataFrame({"audio": [violin]}))


def test_mlflow_models_serve_answers_on_loopback(served):
    process, url, log_path = served
    deadline = time.monotonic() + SERVE_TIMEOUT_S
    while True:
        if process.poll() is not None:
            pytest.fail(f"mlflow models serve exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as r:
                if r.status == 200:
                    break
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            pytest.fail(
                f"mlflow models serve did not answer /ping in {SERVE_TIMEOUT_S} s:\n{log_path.read_text()[-3000:]}"
            )
        time.sleep(0.5)

    note = base64.b64encode(wav_bytes(tone("ClBb", 65, amp=0.5, seed=33))).decode()
    payload = {"dataframe_records": [{"wav_base64": note}, {"wav_base64": base64.b64encode(b"nope").decode()}]}
    request = urllib.request.Request(
        f"{url}/invocations", data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as r:
        answer = json.load(r)
    good, bad = answer["predictions"]
    assert (good["instrument"], good["instrument_abbr"], good["pitch"], good["note"], good["octave"]) == (
        "Clarinet in Bb",
        "ClBb",
        "F4",
        "F",
        4,
    )
    assert good["midi"] == 65 and good["error"] is None and good["warnings"] == [] and good["not_sure_because"] == {}
    assert bad["error"].startswith("not an audio file") and bad["instrument"] is None
