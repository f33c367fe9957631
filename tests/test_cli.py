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


def test_fonts_list_names_every_font_as_soundfont_takes_it(tmp_path):
    """`fonts list` prints NAME=PATH lines, fetched npm fonts included (the fetch: tests/data/test_download.py)."""
    cache = tmp_path / "fonts"
    cache.mkdir()
    (cache / "FluidR3Mono_GM.sf3").write_bytes(b"RIFF")
    env = cli_env(INSTROPITCH_FONTS_DIR=str(cache))
    out = subprocess.run([*COMMAND, "fonts", "list"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("timgm6mb=") and lines[0].endswith("TimGM6mb.sf2  [packaged (default)]")
    assert f"fluidr3mono={cache / 'FluidR3Mono_GM.sf3'}  [npm (instropitch fonts fetch)]" in lines
