"""The `instropitch` command's own behaviour, in child processes as a user runs it."""

from __future__ import annotations

import subprocess

import pytest
from support.cli import COMMAND, cli_env
from support.tones import tone, wav_bytes


@pytest.mark.parametrize(
    "command",
    [["predict", "{wav}"], ["export", "--out", "{out}"], ["serve", "--port", "0"], ["runs"]],
    ids=["predict", "export", "serve", "runs"],
)
def test_without_a_store_nothing_is_created_and_one_line_says_where_it_looked(command, tmp_path):
    """MLflow would create an empty ./mlflow.db (and log its migrations) and then find no models."""
    work = tmp_path / "work"
    work.mkdir()
    wav = tmp_path / "x.wav"
    wav.write_bytes(wav_bytes(tone("Fl", 69)))
    argv = [part.format(wav=wav, out=tmp_path / "export") for part in command]
    env = cli_env(drop=("MLFLOW_", "INSTROPITCH_"))
    out = subprocess.run([*COMMAND, *argv], cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stderr
    store = f"sqlite:///{work / 'mlflow.db'}"
    what = "runs" if argv[0] == "runs" else "models"
    assert out.stderr.splitlines() == [
        f"instropitch: no {what}: no MLflow store at {store} "
        f"(set MLFLOW_TRACKING_URI, or {'--tracking-uri' if what == 'runs' else '--from-export DIR'})"
    ]
    assert list(work.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work", "x.wav"]  # no export folder either
