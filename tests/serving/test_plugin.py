"""The Airflow plugin: Airflow's own plugins manager finds the app and the views, and mounts the app.

Runs in a subprocess with a throw-away AIRFLOW_HOME and the repository's `plugins/` as
the plugins folder, exactly as the API server would load it. Loading the plugin must not
import TensorFlow (every Airflow component imports plugins), and predicting (the portable
models of an export) must not either.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = r"""
import json, sys
from airflow import plugins_manager

info = plugins_manager.get_plugin_info()
errors = plugins_manager.get_import_errors()
heavy = sorted(m for m in ("tensorflow", "keras", "mlflow") if m in sys.modules)

from fastapi import FastAPI
from fastapi.testclient import TestClient
from airflow.api_fastapi.app import init_plugins

from airflow.api_fastapi.app import init_auth_manager
from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

app = FastAPI()
init_plugins(app)  # what Airflow's API server does with `fastapi_apps`
auth_manager = init_auth_manager(app)
token = auth_manager.generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"))
client = TestClient(app)
health = client.get("/instropitch/health")
page = client.get("/instropitch/")
anonymous = client.post("/instropitch/predict", files={"file": ("a.txt", b"plain text")})
anonymous_models = client.get("/instropitch/models")
forged = client.post(
    "/instropitch/predict", files={"file": ("a.txt", b"plain text")}, headers={"Authorization": "Bearer x.y.z"}
)
not_wav = client.post(
    "/instropitch/predict", files={"file": ("a.txt", b"plain text")}, headers={"Authorization": f"Bearer {token}"}
)
from_cookie = client.post("/instropitch/predict", files={"file": ("a.txt", b"plain text")}, cookies={"_token": token})
import os
with open(os.environ["TEST_WAV"], "rb") as f:
    wav = f.read()
predicted = client.post(
    "/instropitch/predict", files={"file": ("note.wav", wav, "audio/wav")}, headers={"Authorization": f"Bearer {token}"}
)
heavy_after_predict = sorted(m for m in ("tensorflow", "keras") if m in sys.modules)
print("RESULT " + json.dumps({
    "plugins": info,
    "errors": errors,
    "heavy_after_load": heavy,
    "health": [health.status_code, health.json()],
    "page": [page.status_code, "InstroPitch" in page.text],
    "not_wav": [not_wav.status_code, not_wav.json()],
    "anonymous": [anonymous.status_code, anonymous_models.status_code],
    "forged": forged.status_code,
    "from_cookie": from_cookie.status_code,
    "predicted": [predicted.status_code, predicted.json()],
    "heavy_after_predict": heavy_after_predict,
}, default=str))
"""


def test_airflow_lists_and_mounts_the_plugin(project_root, tmp_path, predictor):
    from support.tones import SR, tone

    from instropitch import audio

    export = predictor.export(tmp_path / "export")
    note = tmp_path / "violin-A4.wav"
    audio.write_wav(note, tone("Vn", 69, amp=0.6, seed=901), SR)
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(project_root / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "INSTROPITCH_MLFLOW_UI_URL": "http://mlflow.example:5001",
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'never-created.db'}",
        "INSTROPITCH_EXPORT_DIR": str(export),
        "TEST_WAV": str(note),
    }
    # A metadata database, as the API server has: a token's check asks it whether the token was revoked.
    migrated = subprocess.run(
        [str(Path(sys.executable).with_name("airflow")), "db", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=180, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(lines[-1][len("RESULT ") :])

    assert result["errors"] == {}
    (plugin,) = [p for p in result["plugins"] if p["name"] == "instropitch"]
    assert plugin["source"].endswith("instropitch_plugin.py")
    assert plugin["fastapi_apps"] == [
        {"app": "fastapi.applications.FastAPI", "url_prefix": "/instropitch", "name": "InstroPitch predict"}
    ]
    views = {v["name"]: v for v in plugin["external_views"]}
    assert views["MLflow"]["href"] == "http://mlflow.example:5001"
    assert "url_route" not in views["MLflow"]  # a link, not an iframe
    assert views["InstroPitch predict"] == {
        "name": "InstroPitch predict",
        "href": "instropitch/",
        "url_route": "instropitch",
        "destination": "nav",
    }

    assert result["heavy_after_load"] == []  # no TensorFlow, Keras or MLflow just for loading plugins
    assert result["health"] == [200, {"status": "ok", "models": "not loaded"}]
    assert result["page"] == [200, True]
    assert result["anonymous"] == [401, 401]  # predictions and model listings need an Airflow login
    assert result["forged"] in (401, 403)
    assert result["not_wav"][0] == 415 and result["not_wav"][1]["file"] == "a.txt"  # logged in: answered
    assert result["from_cookie"] == 415  # the UI's session cookie counts as a login
    status, body = result["predicted"]
    assert status == 200 and (body["instrument_abbr"], body["midi"]) == ("Vn", 69), body
    assert result["heavy_after_predict"] == []  # the portable models: no TensorFlow in the API server
    assert not (tmp_path / "never-created.db").exists()  # nothing touched MLflow
