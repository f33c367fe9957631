"""The slim install (requirements-predict.txt) in its own fresh virtual environment: it predicts without TensorFlow.

uv builds the environment from the pinned slim set (the same versions as requirements.txt,
so in CI every wheel is already in uv's cache from `make venv`) plus this checkout
without dependencies, then the `instropitch` command of that environment predicts from an
export folder and from the session's sqlite MLflow registry (twice: the second start reads
the model cache). TensorFlow and pandas must not be installed there, and the whole
environment must stay under the issue's 400 MB.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import ROOT
from support.tones import SR, tone

from instropitch import audio

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MAX_INSTALL_MB = 400


def du_mb(path: Path) -> float:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink()) / 1e6


@pytest.fixture(scope="module")
def slim_venv(tmp_path_factory) -> Path:
    uv = Path(sys.executable).with_name("uv")
    if not uv.exists():
        uv = Path(shutil.which("uv") or "")
    if not uv.is_file():
        pytest.skip("uv is not installed next to the interpreter (make venv installs it)")
    venv = tmp_path_factory.mktemp("slim") / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    steps = [
        [str(uv), "venv", "-q", "--python", sys.executable, str(venv)],
        [
            str(uv),
            "pip",
            "install",
            "-q",
            "--python",
            str(venv / "bin" / "python"),
            "-r",
            str(ROOT / "requirements-predict.txt"),
        ],
        [str(uv), "pip", "install", "-q", "--python", str(venv / "bin" / "python"), "--no-deps", "-e", str(ROOT)],
    ]
    for step in steps:
        done = subprocess.run(step, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{step}: {done.stderr[-3000:]}"
    return venv


def run_slim(venv: Path, args: list[str], **env: str) -> tuple[dict, float]:
    full_env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "INSTROPITCH_EXPORT_DIR")}
    full_env.pop("MLFLOW_TRACKING_URI", None)
    full_env.update(env)
    started = time.perf_counter()
    done = subprocess.run(
        [str(venv / "bin" / "instropitch"), *args], env=full_env, capture_output=True, text=True, timeout=300
    )
    elapsed = time.perf_counter() - started
    assert done.returncode == 0, done.stderr[-3000:]
    (row,) = json.loads(done.stdout)
    return row, elapsed


def test_slim_install_predicts_without_tensorflow(slim_venv, predictor, trained_store, tmp_path):
    missing = subprocess.run(
        [
            str(slim_venv / "bin" / "python"),
            "-c",
            "import importlib.util, json; "
            "print(json.dumps({m: importlib.util.find_spec(m) is None for m in ('tensorflow', 'keras', 'pandas', 'onnxruntime')}))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(missing.stdout) == {"tensorflow": True, "keras": True, "pandas": True, "onnxruntime": False}
    size = du_mb(slim_venv)
    print(f"slim install: {size:.0f} MB")
    assert size <= MAX_INSTALL_MB

    note = tmp_path / "clarinet-D4.wav"
    audio.write_wav(note, tone("ClBb", 62, amp=0.5, seed=44), SR)
    expected = predictor.predict_file(note).to_dict()
    export = predictor.export(tmp_path / "export")

    from_export, export_s = run_slim(slim_venv, ["predict", str(note), "--from-export", str(export), "--json"])
    assert from_export == expected

    cache = str(tmp_path / "cache")
    first, first_s = run_slim(
        slim_venv, ["predict", str(note), "--json"], MLFLOW_TRACKING_URI=trained_store.uri, INSTROPITCH_CACHE=cache
    )
    second, second_s = run_slim(
        slim_venv, ["predict", str(note), "--json"], MLFLOW_TRACKING_URI=trained_store.uri, INSTROPITCH_CACHE=cache
    )
    assert first == second == expected
    assert len(list(Path(cache).rglob("model.onnx"))) == 2
    print(f"slim predict: export {export_s:.2f} s, registry {first_s:.2f} s, registry from the cache {second_s:.2f} s")
