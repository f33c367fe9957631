"""The prediction web page and its HTTP API: drop an audio file, see the instrument and the note.

`create_app()` returns a FastAPI app, served by `instropitch serve` (uvicorn, 127.0.0.1 by
default) and mounted in Airflow's API server by `plugins/instropitch_plugin.py`:

* `GET /` the page (`static/index.html`: inline HTML/CSS/JS, no CDN): pick or drop an audio file, see instrument,
  note, octave, confidences, alternatives and the two spectrograms the models saw;
* `POST /predict` a multipart form with the field `file` (or a raw `audio/*` body): WAV,
  FLAC, Ogg, MP3, AIFF or any format libsndfile reads -> the `Prediction` JSON, with
  `warnings` (e.g. a WAV written to a pipe, read despite its header); `?top_k=K`
  alternatives, `?spectrogram=true` adds both model inputs as PNG data URLs under
  `spectrograms`;
* `GET /models` which versions answer, their test accuracies, the feature digest;
* `GET /health` liveness and whether the models are loaded.

Bad input never gives a 500: every error is JSON `{"error": reason, "file": name}` with
413 (over `max_upload_bytes`: refused from `Content-Length` before reading, and by a cap
while streaming the body), 415 (not audio, or not a form/audio body), 422 (empty,
undecodable, silent, too short, longer than `max_duration_s`) or 400 (a broken form).
Everything the file alone can tell (header, samples, silence, length) is answered before
the request waits for the models or a prediction slot. The models load once, lazily (first
request needing them, or at startup with `preload=True`), and are shared by all requests;
a failed load answers 503 and is retried on the next request.

Page and API use relative URLs, so the app works under any prefix (`/instropitch/`).
`create_app(auth=...)` puts authentication in front of `/predict` and `/models` (the Airflow
plugin uses Airflow's); `instropitch serve` has none: it binds to loopback by default.
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
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import asdict, dataclass
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from instropitch import audio
from instropitch.audio.features import ensure_note_length
from instropitch.serving.predictor import DEFAULT_TOP_K, Predictor
from instropitch.serving.results import Prediction

log = logging.getLogger(__name__)

DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_DURATION_S = 60.0
FORM_OVERHEAD_BYTES = 64 * 1024
"""Room for multipart boundaries and part headers on top of the file size limit."""
MAX_TOP_K = 20
RAW_AUDIO_TYPES = frozenset({"application/octet-stream", "application/ogg", "application/x-flac"})
"""Raw body types taken as audio besides every `audio/*` (the bytes decide the format, not the type)."""
NOT_AUDIO_ERRORS = frozenset({"NotAudioError", "NotAWavError"})
"""`Prediction.error_type`s answered 415, like `audio.NotAudioError` from the screening."""


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


@dataclass(frozen=True)
class Limits:
    """What one app accepts; kept on `app.state.limits` for the handlers."""

    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_duration_s: float = DEFAULT_MAX_DURATION_S

    @property
    def body_cap(self) -> int:
        return self.max_upload_bytes + FORM_OVERHEAD_BYTES


def create_app(
    predictor_factory: Callable[[], Predictor] | None = None,
    *,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
    preload: bool = False,
    max_concurrent: int = 2,
    load_retry_s: float = 30.0,
    auth: Sequence[Any] = (),
) -> FastAPI:
    """The page and the API around one lazily loaded `Predictor` (see the module doc).

    `auth` are FastAPI dependencies (`Depends(...)`) that every prediction and model
    listing must pass: the Airflow plugin puts Airflow's own authentication there. The
    page and `/health` stay open (the page holds no data; its requests carry the login).

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

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if preload:
            with suppress(Exception):  # kept in holder.error: /health reports it, requests retry
                await run_in_threadpool(holder.get)
        yield

    app = FastAPI(
        title="InstroPitch",
        description="Which orchestral instrument plays this single-note recording, and which note is it?",
        lifespan=lifespan,
    )
    app.state.predictor_holder = holder
    app.state.limits = Limits(max_upload_bytes, max_duration_s)
    app.state.busy = asyncio.Semaphore(max_concurrent)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _internal_error)
    app.add_api_route("/", page, methods=["GET"], response_class=HTMLResponse, include_in_schema=False)
    app.add_api_route("/health", health, methods=["GET"])
    app.add_api_route("/models", models, methods=["GET"], dependencies=list(auth))
    app.add_api_route("/predict", predict, methods=["POST"], openapi_extra=PREDICT_BODY_SCHEMA, dependencies=list(auth))
    return app


# ------------------------------------------------------------------ error answers


async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return _error(exc.status_code, str(exc.detail))


async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    reasons = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'query')}: {e.get('msg')}" for e in exc.errors()
    )
    return _error(422, reasons or "invalid request")


async def _internal_error(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("instropitch: internal error")
    return _error(500, f"internal error ({type(exc).__name__})")


# ------------------------------------------------------------------ the handlers


async def _predictor(request: Request) -> Predictor | JSONResponse:
    """The loaded predictor, or the 503 answer saying why there is none (and when to retry)."""
    holder: PredictorHolder = request.app.state.predictor_holder
    try:
        return await run_in_threadpool(holder.get)
    except Exception as exc:
        response = _error(503, f"the models are not available: {str(exc) or type(exc).__name__}")
        response.headers["Retry-After"] = str(max(1, round(holder.retry_s)))
        return response


async def page(request: Request) -> HTMLResponse:
    limits: Limits = request.app.state.limits
    return HTMLResponse(page_html(limits.max_upload_bytes, limits.max_duration_s))


async def health(request: Request) -> JSONResponse:
    holder: PredictorHolder = request.app.state.predictor_holder
    state = holder.state
    body = {"status": "unavailable" if state == "failed" else "ok", "models": state}
    if holder.error and state == "failed":
        body["error"] = holder.error
    return JSONResponse(body, status_code=503 if state == "failed" else 200)


async def models(request: Request) -> JSONResponse:
    predictor = await _predictor(request)
    if isinstance(predictor, JSONResponse):
        return predictor
    limits: Limits = request.app.state.limits
    return JSONResponse({**predictor.describe(), "limits": asdict(limits)})


PREDICT_BODY_SCHEMA = {
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
            "audio/*": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
"""The body `POST /predict` reads by hand (to cap it while streaming), described for the OpenAPI page."""


async def predict(
    request: Request,
    top_k: int = Query(DEFAULT_TOP_K, ge=0, le=MAX_TOP_K, description="alternatives listed per model"),
    spectrogram: bool = Query(False, description="add the model inputs as PNG data URLs"),
    name: str | None = Query(None, description="file name for a raw audio body"),
) -> JSONResponse:
    """Predict one audio file: multipart field `file`, or a raw `audio/*` body."""
    limits: Limits = request.app.state.limits
    upload = await _read_upload(request, limits, name)
    if isinstance(upload, JSONResponse):
        return upload
    file, data = upload
    refused = await run_in_threadpool(_screen, data, file, limits)
    if refused is not None:
        return refused
    predictor = await _predictor(request)
    if isinstance(predictor, JSONResponse):
        return predictor
    async with request.app.state.busy:
        result: Prediction = await run_in_threadpool(
            predictor.predict_file,
            data,
            file,
            top_k=top_k,
            max_duration=limits.max_duration_s,
            keep_spectrograms=spectrogram,
        )
    if not result.ok:
        return _error(415 if result.error_type in NOT_AUDIO_ERRORS else 422, result.error or "unusable", file)
    body: dict[str, Any] = result.to_dict()
    if spectrogram and result.spectrograms:
        body["spectrograms"] = {k: png_data_url(v) for k, v in result.spectrograms.items()}
    return JSONResponse(body)


async def _read_upload(request: Request, limits: Limits, name: str | None) -> tuple[str, bytes] | JSONResponse:
    """(file name, bytes) of a form or raw body, refused early by its declared size or type."""
    length = request.headers.get("content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            return _error(400, f"bad Content-Length header {length[:40]!r}")
        if declared > limits.body_cap:
            return _error(413, _too_large(limits.max_upload_bytes, declared))
    mime = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if mime == "multipart/form-data":
            got = await _read_form(request, limits.body_cap)
            if isinstance(got, JSONResponse):
                return got
            file, data = got
        elif mime.startswith("audio/") or mime in RAW_AUDIO_TYPES:
            file, data = _clean_name(name), await _read_body(request, limits.max_upload_bytes)
        else:
            return _error(
                415,
                f"send the audio file as multipart/form-data with a 'file' field (or as a raw audio/* body), "
                f"not {mime or 'a body without Content-Type'}",
            )
    except _TooLarge:
        return _error(413, _too_large(limits.max_upload_bytes))
    if len(data) > limits.max_upload_bytes:
        return _error(413, _too_large(limits.max_upload_bytes, len(data)), file)
    if not data:
        return _error(422, "empty file: the upload holds no bytes", file)
    return file, data


def _screen(data: bytes, file: str, limits: Limits) -> JSONResponse | None:
    """What the file alone tells (not audio, undecodable, too long or short, NaN, silent), before any model.

    A file refused here never loads the models nor waits for a prediction slot: silence costs
    one decode at the file's own rate (`audio.ensure_file_audible`, the features' threshold).
    """
    try:
        with audio.open_source(data, file) as src:  # one decode of a compressed file for both checks
            info = audio.read_info(src, max_duration=limits.max_duration_s)
            ensure_note_length(info, file)
            audio.ensure_file_audible(src, info=info)
    except audio.NotAudioError as exc:
        return _error(415, exc.reason, file)
    except audio.AudioError as exc:
        return _error(422, exc.reason, file)
    return None


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


__all__ = ["PredictorHolder", "create_app", "page_html", "png_data_url", "spectrogram_png"]


@cache
def _page_template() -> str:
    return resources.files("instropitch.serving").joinpath("static", "index.html").read_text(encoding="utf-8")


def page_html(max_upload_bytes: int, max_duration_s: float) -> str:
    """The upload page (`static/index.html`, inline CSS/JS, no CDN) with this app's limits and formats filled in."""
    accept = ",".join(["audio/*", *sorted(audio.file_extensions())])
    return (
        _page_template()
        .replace("__MAX_UPLOAD_BYTES__", str(int(max_upload_bytes)))
        .replace("__MAX_DURATION__", html.escape(f"{max_duration_s:g}"))
        .replace("__ACCEPT__", html.escape(accept))
    )
