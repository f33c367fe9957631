"""The HTTP API and page: FastAPI's TestClient, a real uvicorn on loopback, and headless Chromium.

Every bad input must come back as JSON `{"error", "file"}` with 413/415/422/400, never a
500, and the upload limit must hold before the body is read.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import socket
import struct
import subprocess
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from support.tones import SR, tone, wav_bytes

from instropitch.devstack.http_server import running_app
from instropitch.devstack.stack import free_port
from instropitch.serving.predictor import calibration_summary

CHROMIUM = "/usr/bin/chromium"


class CountingFactory:
    def __init__(self, predictor=None, error: Exception | None = None):
        self.predictor, self.error, self.calls = predictor, error, 0

    def __call__(self):
        self.calls += 1
        if self.error is not None:
            raise self.error
        return self.predictor


def client_for(factory, **kwargs):
    from fastapi.testclient import TestClient

    from instropitch.serving.app import create_app

    return TestClient(create_app(factory, **kwargs), raise_server_exceptions=False)


GOOD = None


def good_wav() -> bytes:
    global GOOD
    if GOOD is None:
        GOOD = wav_bytes(tone("Vn", 69, amp=0.5, seed=123))
    return GOOD


def upload(client, data: bytes, name: str = "note.wav", ctype: str = "audio/wav", **params):
    return client.post("/predict", files={"file": (name, data, ctype)}, params=params)


def png_size(data_url: str) -> tuple[int, int]:
    prefix = "data:image/png;base64,"
    assert data_url.startswith(prefix)
    png = base64.b64decode(data_url[len(prefix) :])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    # the IDAT really decodes to height rows of 1 + 3 * width bytes
    idat_len = struct.unpack(">I", png[33:37])[0]
    assert png[37:41] == b"IDAT"
    assert len(zlib.decompress(png[41 : 41 + idat_len])) == height * (1 + 3 * width)
    return width, height


# ----------------------------------------------------------------- TestClient


def test_good_upload_predicts_and_shows_spectrograms(predictor):
    factory = CountingFactory(predictor)
    client = client_for(factory)
    assert client.get("/health").json() == {"status": "ok", "models": "not loaded"}
    assert factory.calls == 0  # lazy

    r = upload(client, good_wav(), name="C:\\Users\\me\\violin A4.wav", spectrogram="true", top_k=5)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["file"] == "violin A4.wav"  # folders stripped
    assert (body["instrument"], body["instrument_abbr"], body["pitch"], body["note"], body["octave"], body["midi"]) == (
        "Violin",
        "Vn",
        "A4",
        "A",
        4,
        69,
    )
    assert len(body["top_k"]["pitch"]) == 5
    # The page shows the two spectrograms as computed (the instrument model reads more: its note-relative view).
    assert png_size(body["spectrograms"]["pitch"]) == predictor.features.pitch.shape
    assert png_size(body["spectrograms"]["instrument"]) == predictor.features.instrument.shape

    plain = upload(client, good_wav()).json()
    assert "spectrograms" not in plain and len(plain["top_k"]["instrument"]) == 3
    raw = client.post("/predict", content=good_wav(), headers={"content-type": "audio/wav"}, params={"name": "raw.wav"})
    assert raw.status_code == 200 and raw.json()["file"] == "raw.wav" and raw.json()["pitch"] == "A4"
    assert factory.calls == 1  # loaded once, shared

    assert client.get("/health").json() == {"status": "ok", "models": "loaded"}
    models = client.get("/models").json()
    assert models["source"] == "registry"
    assert models["models"]["pitch"]["version"] == "1" and models["models"]["pitch"]["alias"] == "champion"
    assert models["models"]["instrument"]["test_accuracy"] >= 0.9
    assert models["limits"]["max_upload_bytes"] == 20 * 1024 * 1024
    shown = models["calibration"]["instrument"]  # how the shown confidence is made, and when it is "sure"
    assert shown == calibration_summary(predictor.models["instrument"].calibration) and shown["scaling"].startswith(
        "T = "
    )
    assert set(models["calibration"]) == {"pitch", "instrument"}


def test_bad_uploads_get_json_errors_never_500(predictor):
    factory = CountingFactory(predictor)
    client = client_for(factory, max_upload_bytes=100_000, max_duration_s=3.0)

    def check(response, status: int, reason: str, file: str | None):
        assert response.status_code == status, response.text
        body = response.json()
        assert set(body) == {"error", "file"} and body["file"] == file
        assert reason in body["error"], body["error"]

    # too large: refused from Content-Length, the model never loads
    check(upload(client, b"RIFF" + bytes(300_000)), 413, "over the 100,000-byte", None)
    # a file just over the limit (the form's size is within its allowance for boundaries): named
    check(upload(client, b"RIFF" + bytes(100_000), name="big.wav"), 413, "100,004 bytes is over", "big.wav")
    # ... and without Content-Length (chunked), by the streaming cap
    chunks = (bytes(16_384) for _ in range(20))
    check(client.post("/predict", content=chunks, headers={"content-type": "audio/wav"}), 413, "too large", None)
    boundary = "b0undary"

    def chunked_form():
        yield f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n\r\n'.encode()
        for _ in range(20):
            yield bytes(16_384)
        yield f"\r\n--{boundary}--\r\n".encode()

    big_form = client.post(
        "/predict", content=chunked_form(), headers={"content-type": f"multipart/form-data; boundary={boundary}"}
    )
    check(big_form, 413, "too large", None)
    # not audio
    check(
        upload(client, b"hello, I am text", name="notes.txt", ctype="text/plain"), 415, "not an audio file", "notes.txt"
    )
    check(upload(client, b"ID3\x04" + bytes(100), name="song.mp3"), 415, "MP3", "song.mp3")
    check(client.post("/predict", json={"wav": "x"}), 415, "multipart/form-data", None)
    # empty, undecodable, silent, too long
    check(upload(client, b""), 422, "empty file", "note.wav")
    check(upload(client, good_wav()[:30], name="cut.wav"), 422, "truncated", "cut.wav")
    check(upload(client, good_wav()[:300], name="click.wav"), 422, "too short", "click.wav")  # read to its end
    check(upload(client, wav_bytes(np.zeros(SR, np.float32)), name="quiet.wav"), 422, "silent", "quiet.wav")
    check(
        upload(client, wav_bytes(np.full(8000 * 4, 0.1, np.float32), 8000), name="long.wav"),
        422,
        "too long",
        "long.wav",
    )
    nan = wav_bytes(np.full(4000, 0.1, np.float32), 8000, bits=32, encoding="float").replace(
        struct.pack("<f", 0.1), struct.pack("<f", float("nan")), 10
    )
    check(upload(client, nan, name="nan.wav"), 422, "NaN", "nan.wav")
    # a form without the file, a text field, a broken form
    check(client.post("/predict", files={"audio": ("x.wav", good_wav())}), 422, "no 'file' field", None)
    check(client.post("/predict", data={"file": "x"}, files={"other": ("a", b"b")}), 422, "text, not a file", None)
    check(client.post("/predict", content=b"junk", headers={"content-type": "multipart/form-data"}), 400, "form", None)
    check(client.post("/predict", params={"top_k": 99}, files={"file": ("a.wav", good_wav())}), 422, "top_k", None)
    check(client.get("/nowhere"), 404, "Not Found", None)
    assert factory.calls == 0  # every one is answered from the file alone, before the models


def test_unavailable_models_answer_503_and_retry(predictor):
    from instropitch.serving.results import PredictorError

    factory = CountingFactory(error=PredictorError("no alias 'champion' of registered model 'instropitch-pitch'"))
    client = client_for(factory, load_retry_s=3600)
    r = upload(client, good_wav())
    assert r.status_code == 503 and r.headers["retry-after"] == "3600"
    assert r.json() == {
        "error": "the models are not available: no alias 'champion' of registered model 'instropitch-pitch'",
        "file": None,
    }
    health = client.get("/health")
    assert health.status_code == 503 and health.json()["models"] == "failed"
    assert client.get("/models").status_code == 503
    assert upload(client, b"not a wav").status_code == 415  # bad input is still judged without models
    assert factory.calls == 1  # the registry is not asked again within the retry pause

    factory.error, factory.predictor = None, predictor  # e.g. a champion got promoted meanwhile
    client.app.state.predictor_holder.retry_s = 0  # the pause is over
    assert upload(client, good_wav()).status_code == 200
    assert factory.calls == 2
    assert client.get("/health").json() == {"status": "ok", "models": "loaded"}


def test_page_is_self_contained():
    client = client_for(CountingFactory(error=RuntimeError("unused")), max_upload_bytes=5 * 1024 * 1024)
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    for element in (
        'id="file"',
        'id="drop"',
        'id="instrument"',
        'id="pitch"',
        'id="spec-pitch"',
        'id="spec-instrument"',
    ):
        assert element in page
    assert "const MAX_BYTES = 5242880;" in page
    assert "src=" not in page.replace(".src = specs", "")  # no external scripts, styles or images
    assert "http://" not in page and "https://" not in page
    assert 'fetch(base + "predict' in page and 'fetch(base + "models")' in page  # relative: works under a prefix


def test_cli_serve_binds_loopback_by_default(predictor, trained_store, monkeypatch, capsys):
    import uvicorn
    from fastapi.testclient import TestClient

    from instropitch.cli import main
    from instropitch.serving import predictor as predict

    seen: dict = {}

    def fake_run(app, host, port, **kwargs):
        seen.update(host=host, port=port)
        with TestClient(app) as client:  # runs the lifespan: preload
            seen["health"] = client.get("/health").json()

    def fake_load(cls, **kwargs):
        seen["load"] = kwargs
        return predictor

    monkeypatch.setattr(uvicorn, "run", fake_run)
    monkeypatch.setattr(predict.Predictor, "load", classmethod(fake_load))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained_store.uri)  # serve refuses a store that does not exist
    assert main(["serve"]) == 0
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8000
    assert seen["health"] == {"status": "ok", "models": "loaded"}
    assert "no authentication" not in capsys.readouterr().err

    seen.clear()
    assert main(["serve", "--host", "0.0.0.0", "--port", "8123", "--model-version", "pitch=2"]) == 0
    assert seen["host"] == "0.0.0.0" and seen["port"] == 8123
    assert seen["load"]["versions"] == {"pitch": "2"}
    assert "no authentication" in capsys.readouterr().err


# ------------------------------------------------------------------ real server


def raw_exchange(port: int, head: bytes, body_parts: list[bytes]) -> tuple[int, dict]:
    """Send a request by hand (so the body can stop short) and read status and JSON body."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(head)
        for part in body_parts:
            sock.sendall(part)
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _content_length(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    header, _, payload = data.partition(b"\r\n\r\n")
    return int(header.split(b" ")[1]), json.loads(payload)


def _content_length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == b"content-length":
            return int(value)
    return 1 << 30


def test_real_uvicorn_on_loopback(predictor):
    import httpx

    from instropitch.serving.app import create_app

    factory = CountingFactory(predictor)
    app = create_app(factory, max_upload_bytes=200_000, preload=True)
    with running_app(app) as (url, port, _pid):
        assert factory.calls == 1  # preloaded at startup
        with httpx.Client(base_url=url, timeout=30) as http:
            r = http.post("/predict", files={"file": ("violin.wav", good_wav(), "audio/wav")})
            assert r.status_code == 200 and (r.json()["instrument"], r.json()["pitch"]) == ("Violin", "A4")
            assert http.post("/predict", files={"file": ("a.txt", b"text, not audio")}).status_code == 415
            empty = http.post("/predict", files={"file": ("empty.wav", b"")})
            assert empty.status_code == 422 and empty.json() == {
                "error": "empty file: the upload holds no bytes",
                "file": "empty.wav",
            }
            assert http.get("/models").json()["models"]["pitch"]["version"] == "1"
            assert "InstroPitch" in http.get("/").text

        # 413 from the header alone: no body byte is sent, the answer comes anyway
        status, body = raw_exchange(
            port,
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=zz\r\n"
            b"Content-Length: 50000000\r\n\r\n",
            [],
        )
        assert status == 413 and "50,000,000 bytes" in body["error"]
        # 413 while streaming a chunked body: the server stops reading past the cap
        chunk = bytes(64 * 1024)
        status, body = raw_exchange(
            port,
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\nTransfer-Encoding: chunked\r\n\r\n",
            [f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" for _ in range(4)],
        )
        assert status == 413 and body["error"].startswith("too large")
    assert factory.calls == 1


# --------------------------------------------------------------- headless page


_CDP_IDS = itertools.count(1)


def _cdp(ws, method: str, params: dict | None = None) -> dict:
    """One Chrome DevTools Protocol command; returns its result (events in between are skipped)."""
    msg_id = next(_CDP_IDS)
    ws.send(json.dumps({"id": msg_id, "method": method, "params": params or {}}))
    while True:
        reply = json.loads(ws.recv(timeout=30))
        if reply.get("id") == msg_id:
            assert "error" not in reply, reply
            return reply["result"]


@pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason=f"{CHROMIUM} is missing: install Debian's `chromium` package to run the page in a headless browser",
)
def test_page_in_headless_chromium(predictor, tmp_path, monkeypatch):
    """Pick a WAV in the page's file input (as a person would) and read what the page shows."""
    import urllib.request

    from websockets.sync.client import connect

    from instropitch.ml.calibration import Calibration
    from instropitch.serving.app import create_app

    for model in (predictor.pitch_model, predictor.instrument_model):  # sure answers first (the tiny test
        monkeypatch.setattr(model, "calibration", Calibration())  # models calibrate on too few notes to be sure)

    note = tmp_path / "violin-A4.wav"
    note.write_bytes(good_wav())
    app = create_app(CountingFactory(predictor))
    with running_app(app) as (url, _port, _pid):
        debug_port = free_port()
        browser = subprocess.Popen(
            [
                CHROMIUM,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                f"--user-data-dir={tmp_path / 'profile'}",
                f"--remote-debugging-port={debug_port}",
                "--remote-allow-origins=*",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 30
            targets = None
            while targets is None:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{debug_port}/json/list", timeout=2) as r:
                        targets = [t for t in json.load(r) if t.get("type") == "page"]
                except OSError:
                    assert browser.poll() is None and time.monotonic() < deadline, "chromium did not start"
                    time.sleep(0.2)
            with connect(targets[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=15) as ws:
                _cdp(ws, "Page.enable")
                _cdp(ws, "Page.navigate", {"url": url + "/"})

                def evaluate(expression: str):
                    return _cdp(ws, "Runtime.evaluate", {"expression": expression, "returnByValue": True})[
                        "result"
                    ].get("value")

                deadline = time.monotonic() + 30
                while evaluate("document.readyState") != "complete" or not evaluate(
                    "!!document.getElementById('file')"
                ):
                    assert time.monotonic() < deadline, "the page did not load"
                    time.sleep(0.1)
                root = _cdp(ws, "DOM.getDocument")["root"]["nodeId"]
                node = _cdp(ws, "DOM.querySelector", {"nodeId": root, "selector": "#file"})["nodeId"]
                _cdp(ws, "DOM.setFileInputFiles", {"nodeId": node, "files": [str(note)]})
                deadline = time.monotonic() + 60
                while evaluate("document.body.dataset.state") not in ("done", "error"):
                    assert time.monotonic() < deadline, "no result on the page"
                    time.sleep(0.2)
                assert evaluate("document.getElementById('status').textContent").startswith("violin-A4.wav")
                assert evaluate("document.body.dataset.state") == "done"
                assert evaluate("document.getElementById('instrument').textContent") == "Violin"
                assert evaluate("document.getElementById('pitch').textContent") == "A4"
                assert evaluate("document.getElementById('note').textContent") == "A"
                assert evaluate("document.getElementById('octave').textContent") == "4"
                assert evaluate("document.getElementById('instrument-conf').textContent").endswith("%")
                assert evaluate("document.getElementById('spec-pitch').naturalWidth") > 0
                assert evaluate("document.getElementById('models').textContent").startswith("Models (registry)")
                # an answer under the model's threshold reads "not sure", with the candidates
                unsure = predictor.predict_file(note, name="violin-A4.wav", top_k=3).to_dict()
                unsure["instrument_sure"] = unsure["instrument_family_sure"] = False
                unsure["candidates"] = {
                    "instrument": [
                        {"instrument": "Violin", "instrument_abbr": "Vn", "confidence": 0.41},
                        {"instrument": "Viola", "instrument_abbr": "Va", "confidence": 0.3},
                    ]
                }
                evaluate(f"show({json.dumps(unsure)})")
                shown = evaluate("document.getElementById('instrument').textContent")
                assert shown == "Not sure: Violin 41.0% or Viola 30.0%", shown
                unsure["candidates_level"] = {"instrument": 0.9}  # its calibration says how often they hold
                evaluate(f"show({json.dumps(unsure)})")
                shown = evaluate("document.getElementById('instrument').textContent")
                assert shown == "Not sure, 90.0% one of: Violin 41.0% or Viola 30.0%", shown
                # its family may be sure when the instrument is not
                unsure.update(
                    instrument_family="Strings", instrument_family_confidence=0.97, instrument_family_sure=True
                )
                evaluate(f"show({json.dumps(unsure)})")
                shown = evaluate("document.getElementById('instrument').textContent")
                assert shown == "Strings 97.0%, sure. Not sure, 90.0% one of: Violin 41.0% or Viola 30.0%", shown
                assert evaluate("document.getElementById('instrument').classList.contains('unsure')")
                assert evaluate("document.getElementById('pitch').textContent") == "A4"  # the pitch model was sure
                assert evaluate("document.getElementById('top-instrument').textContent").count("%") == 3
                # a check of the audio overruled the model: its candidates with no number, its confidence none
                unsure.update(instrument_family_sure=False, not_sure_because={"instrument": "a plucked or struck note"})
                evaluate(f"show({json.dumps(unsure)})")
                shown = evaluate("document.getElementById('instrument').textContent")
                assert shown == "Not sure: a plucked or struck note (nearest: Violin or Viola)", shown
                assert evaluate("document.getElementById('instrument-conf').textContent") == "none for such a sound"
                assert "%" not in evaluate("document.getElementById('top-instrument').textContent")
                assert evaluate("document.getElementById('pitch-conf').textContent").endswith("%")
                # how far the note sounds from the note named
                for cents, text in ((47.2, "+47 cents"), (-12.6, "\u221213 cents"), (3.0, "in tune"), (None, "")):
                    unsure["pitch_cents"] = cents
                    evaluate(f"show({json.dumps(unsure)})")
                    shown = evaluate("document.getElementById('cents').textContent")
                    assert shown == (text or "tuning unknown"), shown
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(browser.pid, 9)
            browser.wait(timeout=10)
            shutil.rmtree(tmp_path / "profile", ignore_errors=True)


def test_png_encoder_orientation():
    from instropitch.serving.app import spectrogram_png

    spec = np.zeros((4, 3), np.float32)
    spec[:, 0] = 1.0  # lowest band bright
    png = spectrogram_png(spec)
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (4, 3)
    idat_len = struct.unpack(">I", png[33:37])[0]
    rows = zlib.decompress(png[41 : 41 + idat_len])
    stride = 1 + 3 * width
    bottom, top = rows[2 * stride + 1 : 3 * stride], rows[1:stride]
    assert bottom[:3] == bytes([252, 253, 191]) and top[:3] == bytes([0, 0, 4])  # low band at the bottom, bright
