"""The prediction web page and its HTTP API: drop a WAV, see the instrument and the note.

`create_app()` returns a FastAPI app, served by `instropitch serve` (uvicorn, 127.0.0.1 by
default) and mounted in Airflow's API server by `plugins/instropitch_plugin.py`:

* `GET /` the page (inline HTML/CSS/JS, no CDN): pick or drop a WAV, see instrument, note,
  octave, confidences, alternatives and the two spectrograms the models saw;
* `POST /predict` a multipart form with the field `file` (or a raw `audio/wav` body)
  -> the `Prediction` JSON; `?top_k=K` alternatives, `?spectrogram=true` adds both model
  inputs as PNG data URLs under `spectrograms`;
* `GET /models` which versions answer, their test accuracies, the feature digest;
* `GET /health` liveness and whether the models are loaded.

Bad input never gives a 500: every error is JSON `{"error": reason, "file": name}` with
413 (over `max_upload_bytes`: refused from `Content-Length` before reading, and by a cap
while streaming the body), 415 (not a WAV, or not a form/WAV body), 422 (empty,
undecodable, silent, longer than `max_duration_s`) or 400 (a broken form). The models
load once, lazily (first request needing them, or at startup with `preload=True`), and
are shared by all requests; a failed load answers 503 and is retried on the next request.

Page and API use relative URLs, so the app works under any prefix (`/instropitch/`).
There is no authentication: bind to loopback, or put it behind something that has some.
"""

from __future__ import annotations

import asyncio
import base64
import html
import logging
import re
import struct
import threading
import time
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from instropitch import audio
from instropitch.serving.predictor import DEFAULT_TOP_K, Prediction, Predictor

log = logging.getLogger(__name__)

DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_DURATION_S = 60.0
FORM_OVERHEAD_BYTES = 64 * 1024
"""Room for multipart boundaries and part headers on top of the file size limit."""
MAX_TOP_K = 20
RAW_AUDIO_TYPES = frozenset({"audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave", "application/octet-stream"})


class _TooLarge(Exception):
    pass


def _error(status: int, reason: str, file: str | None = None) -> JSONResponse:
    return JSONResponse({"error": reason, "file": file}, status_code=status)


def _clean_name(name: str | None) -> str:
    """The file name a client sent, without folders or control characters, at most 255 chars."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = "".join(ch for ch in base if ch.isprintable()).strip()
    return base[:255] or "upload.wav"


# ------------------------------------------------------------------ the predictor


class ModelsUnavailable(RuntimeError):
    """The last attempt to load the models failed and the retry pause has not passed yet."""


class PredictorHolder:
    """Loads the predictor once, on first use, under a lock.

    A failure is kept (`error`) and answered at once for `retry_s` seconds, then the next
    request tries again: a registry that is down is not asked again by every request.
    """

    def __init__(self, factory: Callable[[], Predictor], *, retry_s: float = 30.0):
        self._factory = factory
        self._lock = threading.Lock()
        self._predictor: Predictor | None = None
        self._failed_at: float | None = None
        self.retry_s = retry_s
        self.error: str | None = None
        self.loading = False

    @property
    def state(self) -> str:
        if self._predictor is not None:
            return "loaded"
        if self.loading:
            return "loading"
        return "failed" if self.error else "not loaded"

    def get(self) -> Predictor:
        if self._predictor is not None:
            return self._predictor
        with self._lock:
            if self._predictor is None:
                if self._failed_at is not None and time.monotonic() - self._failed_at < self.retry_s:
                    raise ModelsUnavailable(self.error or "loading failed")
                self.loading = True
                try:
                    self._predictor = self._factory()
                    self.error, self._failed_at = None, None
                except Exception as exc:
                    self.error = str(exc) or type(exc).__name__
                    self._failed_at = time.monotonic()
                    log.warning("instropitch: cannot load the models: %s", self.error)
                    raise
                finally:
                    self.loading = False
        return self._predictor


def _default_factory() -> Predictor:
    return Predictor.load()


# ------------------------------------------------------------------ spectrogram PNG

_MAGMA_ANCHORS = np.array(
    [[0, 0, 4], [28, 16, 68], [79, 18, 123], [129, 37, 129], [181, 54, 122], [229, 80, 100], [251, 135, 97],
     [254, 194, 135], [252, 253, 191]],
    dtype=np.float64,
)  # fmt: skip
_LUT = np.stack(
    [np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(_MAGMA_ANCHORS)), _MAGMA_ANCHORS[:, c]) for c in range(3)],
    axis=1,
).astype(np.uint8)


def spectrogram_png(spec: np.ndarray) -> bytes:
    """(frames, bands) -> an RGB PNG, time left to right, low bands at the bottom, magma colours."""
    s = np.asarray(spec, dtype=np.float64).T[::-1]
    lo, hi = float(s.min()), float(s.max())
    scaled = np.zeros_like(s) if hi - lo < 1e-12 else (s - lo) / (hi - lo)
    rgb = _LUT[np.clip(np.round(scaled * 255), 0, 255).astype(np.uint8)]
    height, width = rgb.shape[:2]
    raw = b"".join(b"\x00" + rgb[row].tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def png_data_url(spec: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(spectrogram_png(spec)).decode("ascii")


# ------------------------------------------------------------------------ the app


def create_app(
    predictor_factory: Callable[[], Predictor] | None = None,
    *,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
    preload: bool = False,
    max_concurrent: int = 2,
    load_retry_s: float = 30.0,
) -> FastAPI:
    """The page and the API around one lazily loaded `Predictor` (see the module doc).

    `predictor_factory` builds it (default: `Predictor.load()`, i.e. `$INSTROPITCH_EXPORT_DIR`
    or the registry champions at `$MLFLOW_TRACKING_URI`). `preload=True` loads it at
    startup (uvicorn runs the lifespan; an app mounted inside another one, as in Airflow,
    does not, and loads on the first request). At most `max_concurrent` predictions run
    at once (the rest wait). After a failed load, requests get 503 at once for
    `load_retry_s` seconds before the next attempt.
    """
    if max_upload_bytes < 1:
        raise ValueError(f"max_upload_bytes must be positive, got {max_upload_bytes}")
    if not max_duration_s > 0:
        raise ValueError(f"max_duration_s must be positive, got {max_duration_s}")
    holder = PredictorHolder(predictor_factory or _default_factory, retry_s=load_retry_s)
    body_cap = max_upload_bytes + FORM_OVERHEAD_BYTES
    busy = asyncio.Semaphore(max_concurrent)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if preload:
            with suppress(Exception):  # kept in holder.error: /health reports it, requests retry
                await run_in_threadpool(holder.get)
        yield

    app = FastAPI(
        title="InstroPitch",
        description="Which orchestral instrument plays this single-note WAV, and which note is it?",
        lifespan=lifespan,
    )
    app.state.predictor_holder = holder

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        reasons = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'query')}: {e.get('msg')}" for e in exc.errors()
        )
        return _error(422, reasons or "invalid request")

    @app.exception_handler(Exception)
    async def _internal_error(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("instropitch: internal error")
        return _error(500, f"internal error ({type(exc).__name__})")

    async def _predictor() -> Predictor | JSONResponse:
        try:
            return await run_in_threadpool(holder.get)
        except Exception as exc:
            response = _error(503, f"the models are not available: {str(exc) or type(exc).__name__}")
            response.headers["Retry-After"] = str(max(1, round(holder.retry_s)))
            return response

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(
            PAGE.replace("__MAX_UPLOAD_BYTES__", str(int(max_upload_bytes))).replace(
                "__MAX_DURATION__", html.escape(f"{max_duration_s:g}")
            )
        )

    @app.get("/health")
    async def health() -> JSONResponse:
        state = holder.state
        body = {"status": "unavailable" if state == "failed" else "ok", "models": state}
        if holder.error and state == "failed":
            body["error"] = holder.error
        return JSONResponse(body, status_code=503 if state == "failed" else 200)

    @app.get("/models")
    async def models() -> JSONResponse:
        predictor = await _predictor()
        if isinstance(predictor, JSONResponse):
            return predictor
        return JSONResponse(
            {
                **predictor.describe(),
                "limits": {"max_upload_bytes": max_upload_bytes, "max_duration_s": max_duration_s},
            }
        )

    @app.post(
        "/predict",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["file"],
                            "properties": {"file": {"type": "string", "format": "binary"}},
                        }
                    },
                    "audio/wav": {"schema": {"type": "string", "format": "binary"}},
                },
            }
        },
    )
    async def predict(
        request: Request,
        top_k: int = Query(DEFAULT_TOP_K, ge=0, le=MAX_TOP_K, description="alternatives listed per model"),
        spectrogram: bool = Query(False, description="add the model inputs as PNG data URLs"),
        name: str | None = Query(None, description="file name for a raw audio/wav body"),
    ) -> JSONResponse:
        """Predict one WAV: multipart field `file`, or a raw `audio/wav` body."""
        length = request.headers.get("content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                return _error(400, f"bad Content-Length header {length[:40]!r}")
            if declared > body_cap:
                return _error(413, _too_large(max_upload_bytes, declared))
        mime = request.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            if mime == "multipart/form-data":
                got = await _read_form(request, body_cap)
                if isinstance(got, JSONResponse):
                    return got
                file, data = got
            elif mime in RAW_AUDIO_TYPES:
                file, data = _clean_name(name), await _read_body(request, max_upload_bytes)
            else:
                return _error(
                    415,
                    f"send the WAV as multipart/form-data with a 'file' field (or as a raw audio/wav body), "
                    f"not {mime or 'a body without Content-Type'}",
                )
        except _TooLarge:
            return _error(413, _too_large(max_upload_bytes))
        if len(data) > max_upload_bytes:
            return _error(413, _too_large(max_upload_bytes, len(data)), file)
        if not data:
            return _error(422, "empty file: the upload holds no bytes", file)
        try:  # the header alone: answers bad files fast, before the models are needed
            audio.read_info(data, name=file, max_duration=max_duration_s)
        except audio.NotAWavError as exc:
            return _error(415, exc.reason, file)
        except audio.AudioError as exc:
            return _error(422, exc.reason, file)

        predictor = await _predictor()
        if isinstance(predictor, JSONResponse):
            return predictor
        async with busy:
            result: Prediction = await run_in_threadpool(
                predictor.predict_file,
                data,
                file,
                top_k=top_k,
                max_duration=max_duration_s,
                keep_spectrograms=spectrogram,
            )
        if not result.ok:
            return _error(415 if result.error_type == "NotAWavError" else 422, result.error or "unusable", file)
        body: dict[str, Any] = result.to_dict()
        if spectrogram and result.spectrograms:
            body["spectrograms"] = {k: png_data_url(v) for k, v in result.spectrograms.items()}
        return JSONResponse(body)

    return app


def _too_large(limit: int, size: int | None = None) -> str:
    got = f"{size:,} bytes" if size is not None else "the upload"
    human = f"{limit / 1048576:.1f} MB" if limit >= 1048576 else f"{limit / 1024:.0f} KB"
    return f"too large: {got} is over the {limit:,}-byte ({human}) limit"


async def _limited(stream: AsyncIterator[bytes], cap: int) -> AsyncIterator[bytes]:
    total = 0
    async for chunk in stream:
        total += len(chunk)
        if total > cap:
            raise _TooLarge
        yield chunk


async def _read_body(request: Request, cap: int) -> bytes:
    parts = [chunk async for chunk in _limited(request.stream(), cap)]
    return b"".join(parts)


async def _read_form(request: Request, cap: int) -> tuple[str, bytes] | JSONResponse:
    """(file name, bytes) of the form's `file` field, reading at most `cap` bytes of body."""
    from starlette.datastructures import UploadFile
    from starlette.formparsers import MultiPartException, MultiPartParser

    parser = MultiPartParser(request.headers, _limited(request.stream(), cap), max_files=1, max_fields=16)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        return _error(400, f"cannot read the form: {exc.message}")
    try:
        upload = form.get("file")
        if upload is None:
            fields = ", ".join(sorted(form.keys())) or "none"
            return _error(422, f"no 'file' field in the form (fields sent: {fields})")
        if not isinstance(upload, UploadFile):
            return _error(422, "the 'file' field is text, not a file upload")
        file = _clean_name(upload.filename)
        return file, await upload.read()
    finally:
        await form.close()


# ------------------------------------------------------------------------ the page

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>InstroPitch: which instrument, which note?</title>
<style>
  :root { --fg: #1d2330; --muted: #5d6678; --accent: #7b2cbf; --bg: #f7f6fb; --card: #fff; --bad: #b00020; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 16px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
  main { max-width: 920px; margin: 0 auto; padding: 24px 16px 48px; }
  h1 { margin: 0; font-size: 28px; } .sub { margin: 4px 0 20px; color: var(--muted); }
  #drop { display: block; border: 2px dashed #b9a6d6; border-radius: 14px; padding: 36px 16px; text-align: center;
          background: var(--card); cursor: pointer; transition: background .15s, border-color .15s; }
  #drop.over, #drop:focus-within { background: #f1e9fb; border-color: var(--accent); outline: none; }
  #drop strong { color: var(--accent); } #drop small { display: block; color: var(--muted); margin-top: 6px; }
  #file { position: absolute; width: 1px; height: 1px; opacity: 0; }
  #status { min-height: 1.5em; margin: 14px 2px; color: var(--muted); } #status.error { color: var(--bad); font-weight: 600; }
  .cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(260px, 1fr)); gap: 14px; margin-bottom: 14px; }
  .card { background: var(--card); border-radius: 14px; padding: 16px 18px; box-shadow: 0 1px 3px rgba(0,0,0,.08); }
  .card h2, .card h3 { margin: 0 0 6px; font-size: 13px; text-transform: uppercase; letter-spacing: .06em; color: var(--muted); }
  .big { font-size: 34px; font-weight: 700; line-height: 1.15; } .detail { color: var(--muted); }
  .bar { height: 8px; background: #ece7f3; border-radius: 4px; margin: 10px 0 4px; overflow: hidden; }
  .bar span { display: block; height: 100%; width: 0; background: var(--accent); }
  ol { margin: 0; padding-left: 20px; } li span { color: var(--muted); float: right; }
  figure { margin: 0; } figure img { width: 100%; height: 180px; image-rendering: pixelated; border-radius: 6px; background: #000; }
  figcaption { font-size: 13px; color: var(--muted); margin-top: 4px; }
  footer { margin-top: 24px; font-size: 13px; color: var(--muted); }
</style>
</head>
<body data-state="idle">
<main>
  <h1>InstroPitch</h1>
  <p class="sub">Which of 14 orchestral instruments plays this note, and which note is it?</p>
  <label id="drop" for="file">
    <strong>Drop a WAV file here</strong> or click to choose one
    <small>One note, WAV (PCM or float), up to <span id="max-mb"></span> MB and __MAX_DURATION__ s.</small>
    <input type="file" id="file" accept=".wav,audio/wav,audio/x-wav,audio/wave">
  </label>
  <p id="status" role="status" aria-live="polite"></p>
  <section id="result" hidden>
    <div class="cards">
      <div class="card"><h2>Instrument</h2>
        <div class="big" id="instrument"></div><div class="detail" id="instrument-abbr"></div>
        <div class="bar"><span id="instrument-bar"></span></div><div class="detail">confidence <b id="instrument-conf"></b></div>
      </div>
      <div class="card"><h2>Note</h2>
        <div class="big" id="pitch"></div>
        <div class="detail">note <b id="note"></b> &middot; octave <b id="octave"></b> &middot; MIDI <b id="midi"></b></div>
        <div class="bar"><span id="pitch-bar"></span></div><div class="detail">confidence <b id="pitch-conf"></b></div>
      </div>
    </div>
    <div class="cards">
      <div class="card"><h3>Most likely instruments</h3><ol id="top-instrument"></ol></div>
      <div class="card"><h3>Most likely notes</h3><ol id="top-pitch"></ol></div>
    </div>
    <div class="cards">
      <div class="card"><h3>What the instrument model saw</h3><figure><img id="spec-instrument" alt="instrument spectrogram">
        <figcaption>Log-frequency bands (low at the bottom) over time, from the start of the note.</figcaption></figure></div>
      <div class="card"><h3>What the pitch model saw</h3><figure><img id="spec-pitch" alt="pitch spectrogram">
        <figcaption>Frequency bands (low at the bottom) over time, from the middle of the note.</figcaption></figure></div>
    </div>
  </section>
  <footer id="models">Models: loading&hellip;</footer>
</main>
<script>
"use strict";
const MAX_BYTES = __MAX_UPLOAD_BYTES__;
const base = location.pathname.endsWith("/") ? location.pathname : location.pathname + "/";
const $ = (id) => document.getElementById(id);
const pct = (x) => (100 * x).toFixed(1) + "%";
$("max-mb").textContent = (MAX_BYTES / 1048576).toFixed(0);

function status(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
  if (isError) document.body.dataset.state = "error";
}

function fillList(el, items, label) {
  el.replaceChildren();
  for (const item of items) {
    const li = document.createElement("li");
    li.textContent = label(item);
    const conf = document.createElement("span");
    conf.textContent = pct(item.confidence);
    li.appendChild(conf);
    el.appendChild(li);
  }
}

function show(r) {
  $("instrument").textContent = r.instrument;
  $("instrument-abbr").textContent = r.instrument_abbr;
  $("instrument-conf").textContent = pct(r.instrument_confidence);
  $("instrument-bar").style.width = pct(r.instrument_confidence);
  $("pitch").textContent = r.pitch;
  $("note").textContent = r.note;
  $("octave").textContent = r.octave;
  $("midi").textContent = r.midi;
  $("pitch-conf").textContent = pct(r.pitch_confidence);
  $("pitch-bar").style.width = pct(r.pitch_confidence);
  fillList($("top-instrument"), r.top_k.instrument || [], (i) => i.instrument + " (" + i.instrument_abbr + ")");
  fillList($("top-pitch"), r.top_k.pitch || [], (p) => p.pitch + " (MIDI " + p.midi + ")");
  const specs = r.spectrograms || {};
  $("spec-instrument").src = specs.instrument || "";
  $("spec-pitch").src = specs.pitch || "";
  $("result").hidden = false;
  status(r.file + ": " + r.instrument + ", " + r.pitch, false);
  document.body.dataset.state = "done";
}

async function send(file) {
  if (!file) return;
  $("result").hidden = true;
  document.body.dataset.state = "busy";
  if (file.size > MAX_BYTES) {
    status(file.name + ": " + file.size.toLocaleString() + " bytes is over the " + MAX_BYTES.toLocaleString() + "-byte limit", true);
    return;
  }
  status("Listening to " + file.name + "\\u2026", false);
  const form = new FormData();
  form.append("file", file, file.name);
  let response, body;
  try {
    response = await fetch(base + "predict?spectrogram=true&top_k=5", { method: "POST", body: form });
    body = await response.json();
  } catch (err) {
    status(file.name + ": no answer from the server (" + err + ")", true);
    return;
  }
  if (!response.ok || body.error) {
    status((body.file || file.name) + ": " + (body.error || response.statusText), true);
    return;
  }
  show(body);
}

const drop = $("drop");
$("file").addEventListener("change", (e) => { send(e.target.files[0]); e.target.value = ""; });
for (const type of ["dragenter", "dragover"]) {
  drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add("over"); });
}
for (const type of ["dragleave", "drop"]) {
  drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.remove("over"); });
}
drop.addEventListener("drop", (e) => { if (e.dataTransfer && e.dataTransfer.files.length) send(e.dataTransfer.files[0]); });

fetch(base + "models").then((r) => r.json()).then((m) => {
  if (m.error) { $("models").textContent = "Models: " + m.error; return; }
  const parts = Object.entries(m.models).map(([role, info]) => {
    const acc = info.test_accuracy == null ? "n/a" : pct(info.test_accuracy);
    const name = info.registered_model || role;
    return role + ": " + name + (info.version ? " v" + info.version : "") + " (test accuracy " + acc + ")";
  });
  $("models").textContent = "Models (" + m.source + "): " + parts.join(" \\u00b7 ");
}).catch((err) => { $("models").textContent = "Models: not reachable (" + err + ")"; });
</script>
</body>
</html>
"""

__all__ = ["PAGE", "PredictorHolder", "create_app", "png_data_url", "spectrogram_png"]
