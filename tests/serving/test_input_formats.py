"""What users hand in, through the Predictor, the HTTP API and the CLI: other formats, WAVs written to a pipe, silence.

FLAC, Ogg, MP3 and AIFF predict like the WAV of the same samples; a WAV whose header a
streaming writer left unpatched predicts with a warning in the JSON and on stderr; silence
is answered 422 before the models are loaded or a prediction slot is taken.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from support.hostile_wavs import ffmpeg_pipe_wav
from support.tones import SR, tone, wav_bytes

from instropitch import audio

NOTE = np.round(tone("Vn", 69, amp=0.5, seed=123) * 32767).astype(np.int16)
WAV = wav_bytes(NOTE / 32768.0)
STREAMED = ffmpeg_pipe_wav(NOTE.astype("<i2").tobytes())


def encode(samples: np.ndarray, fmt: str, subtype: str) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, SR, format=fmt, subtype=subtype)
    return buf.getvalue()


def _mp3() -> bytes | None:
    try:
        return encode(NOTE, "MP3", "MPEG_LAYER_III")
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        return None  # libsndfile < 1.1 reads MP3 at best, it does not write it


LOSSLESS = {"note.flac": encode(NOTE, "FLAC", "PCM_16"), "note.aiff": encode(NOTE, "AIFF", "PCM_16")}
LOSSY = {"note.ogg": encode(NOTE, "OGG", "VORBIS"), **({"note.mp3": _mp3()} if _mp3() else {})}
MIME = {".flac": "audio/flac", ".aiff": "audio/aiff", ".ogg": "audio/ogg", ".mp3": "audio/mpeg"}


def _answer(d: dict) -> dict:
    """A prediction's JSON without the file name."""
    return {k: v for k, v in d.items() if k != "file"}


class CountingFactory:
    """A predictor factory that counts its calls (and refuses when given no predictor)."""

    def __init__(self, predictor=None):
        self.predictor, self.calls = predictor, 0

    def __call__(self):
        self.calls += 1
        if self.predictor is None:
            raise AssertionError("the models were loaded")
        return self.predictor


def client_for(factory, **kwargs):
    from fastapi.testclient import TestClient

    from instropitch.serving.app import create_app

    return TestClient(create_app(factory, **kwargs), raise_server_exceptions=False)


# -------------------------------------------------------------------------- Predictor


def test_every_format_predicts_like_the_wav(predictor):
    want = predictor.predict_file(WAV, "note.wav")
    assert want.ok and want.warnings == []
    for name, data in LOSSLESS.items():
        got = predictor.predict_file(data, name)
        assert got.ok and got.file == name and _answer(got.to_dict()) == _answer(want.to_dict()), name
    for name, data in LOSSY.items():
        got = predictor.predict_file(data, name, keep_spectrograms=True)
        assert got.ok and (got.instrument_abbr, got.midi) == (want.instrument_abbr, want.midi), name
    # a batch mixing formats, in order
    batch = [("note.wav", WAV), *LOSSLESS.items(), *LOSSY.items(), ("junk.flac", b"fLaC" + bytes(200))]
    results = predictor.predict_many(batch)
    assert [r.file for r in results] == [n for n, _ in batch]
    assert all(r.ok for r in results[:-1])
    assert results[-1].error_type == "NotAudioError" and "looks like FLAC" in results[-1].error


def test_a_streamed_wav_predicts_with_its_warning(predictor):
    got, want = predictor.predict_file(STREAMED, "piped.wav"), predictor.predict_file(WAV, "note.wav")
    assert got.ok and got.warnings == [audio.read_info(STREAMED).warning]
    assert "0xFFFFFFFF" in got.warnings[0]
    assert {**_answer(got.to_dict()), "warnings": []} == _answer(want.to_dict())


def test_narrow_band_audio_predicts_with_a_warning_that_names_its_band(predictor):
    from instropitch.serving.caveats import narrow_band_warning

    phone = np.round(tone("Vn", 69, amp=0.5, seed=123, sr=8000) * 32767).astype(np.int16)
    got = predictor.predict_file(wav_bytes(phone / 32768.0, 8000), "phone.wav")
    assert got.ok and len(got.warnings) == 1
    assert "sampled at 8000 Hz" in got.warnings[0] and "nothing above 4000 Hz" in got.warnings[0]
    assert "11025 Hz" in got.warnings[0]  # what the models read
    features = predictor.features
    wide = [audio.read_info(wav_bytes(NOTE / 32768.0, rate)) for rate in (features.instrument.sample_rate, 48000)]
    assert [narrow_band_warning(info, features) for info in wide] == [None, None]
    assert predictor.predict_file(WAV, "note.wav").warnings == []


# -------------------------------------------------------------------------------- API


def test_api_answers_every_format_like_the_wav(predictor):
    client = client_for(CountingFactory(predictor))
    want = client.post("/predict", files={"file": ("note.wav", WAV, "audio/wav")})
    assert want.status_code == 200, want.text
    for name, data in {**LOSSLESS, **LOSSY}.items():
        mime = MIME[Path(name).suffix]
        form = client.post("/predict", files={"file": (name, data, mime)})
        raw = client.post("/predict", content=data, headers={"content-type": mime}, params={"name": name})
        for r in (form, raw):
            assert r.status_code == 200, (name, r.text)
            assert r.json()["file"] == name and r.json()["warnings"] == []
            assert (r.json()["instrument_abbr"], r.json()["midi"]) == (want.json()["instrument_abbr"], 69), name
        if name in LOSSLESS:
            assert _answer(form.json()) == _answer(want.json())
    ogg = client.post("/predict", content=LOSSY["note.ogg"], headers={"content-type": "application/ogg"})
    assert ogg.status_code == 200
    # what no decoder reads stays 415, and the raw body type still has to be audio
    junk = client.post("/predict", files={"file": ("song.flac", b"fLaC" + bytes(300), "audio/flac")})
    assert junk.status_code == 415 and "looks like FLAC" in junk.json()["error"]
    pdf = client.post("/predict", content=LOSSLESS["note.flac"], headers={"content-type": "application/pdf"})
    assert pdf.status_code == 415 and "audio/*" in pdf.json()["error"]


def test_api_carries_the_warning_of_a_streamed_wav(predictor):
    client = client_for(CountingFactory(predictor))
    r = client.post("/predict", files={"file": ("piped.wav", STREAMED, "audio/wav")})
    assert r.status_code == 200, r.text
    assert r.json()["warnings"] == [audio.read_info(STREAMED).warning]
    assert r.json()["pitch"] == client.post("/predict", files={"file": ("n.wav", WAV, "audio/wav")}).json()["pitch"]


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("zeros.wav", wav_bytes(np.zeros(SR * 2))),
        ("dc.wav", wav_bytes(np.full(SR * 2, 0.3))),
        ("zeros.flac", encode(np.zeros(SR * 2, np.int16), "FLAC", "PCM_16")),
        ("piped-zeros.wav", ffmpeg_pipe_wav(bytes(SR * 4))),
    ],
)
def test_silence_is_answered_before_the_models_load(name, data):
    factory = CountingFactory()  # no predictor: loading it fails the test
    client = client_for(factory, max_concurrent=1)
    for r in (
        client.post("/predict", files={"file": (name, data, "audio/wav")}),
        client.post("/predict", content=data, headers={"content-type": "audio/wav"}, params={"name": name}),
    ):
        assert r.status_code == 422, r.text
        assert r.json()["file"] == name and r.json()["error"].startswith("silent: the audio peaks at")
    assert factory.calls == 0
    assert client.get("/health").json()["models"] == "not loaded"


def test_the_page_offers_every_format():
    client = client_for(CountingFactory())
    page = client.get("/").text
    accept = page.split('accept="', 1)[1].split('"', 1)[0]
    assert accept.split(",") == ["audio/*", *sorted(audio.file_extensions())]
    assert ".flac" in accept and ".wav" in accept
    assert "FLAC" in page and "MP3" in page and "r.warnings" in page


# -------------------------------------------------------------------------------- CLI


def test_cli_predicts_a_folder_of_formats_and_prints_warnings_once(
    trained_store, monkeypatch, tmp_path, capsys, caplog
):
    import logging

    from instropitch.cli import main

    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained_store.uri)
    monkeypatch.delenv("INSTROPITCH_EXPORT_DIR", raising=False)
    folder = tmp_path / "takes"
    folder.mkdir()
    for name, data in {"note.wav": WAV, "piped.wav": STREAMED, **LOSSLESS, **LOSSY}.items():
        (folder / name).write_bytes(data)
    (folder / "notes.txt").write_text("not audio")  # not picked from a folder

    warning = audio.read_info(STREAMED).warning
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert main(["predict", str(folder), "--json"]) == 0
    out, err = capsys.readouterr()
    rows = {Path(r["file"]).name: r for r in json.loads(out)}
    assert set(rows) == {"note.wav", "piped.wav", *LOSSLESS, *LOSSY}
    assert all((r["instrument_abbr"], r["midi"]) == (rows["note.wav"]["instrument_abbr"], 69) for r in rows.values())
    assert rows["piped.wav"]["warnings"] == [warning]
    assert err.strip().splitlines() == [f"instropitch: {folder / 'piped.wav'}: warning: {warning}"]
    assert not [r for r in caplog.records if r.name.startswith("instropitch.audio")]  # printed, not logged too
    assert logging.getLogger("instropitch.audio").propagate  # and the logger is back as it was
