"""Spectrograms of one note, described by a small config whose digest says when stored ones are stale.

Each note gives two spectrograms: a pitch one (by default from the middle of the note, where
the tone is steady) and an instrument one (from the start, where the attack tells
instruments apart). A `SpectrogramConfig` fixes everything that shapes one of them; a
`FeatureConfig` pairs the two, and its `digest()` is stored next to the arrays.

With windows placed on the whole file only the seconds each spectrogram needs are read from
the WAV (`audio.read_segment`); placed on the note (`locate_note`, the default), every sample
is read once to find it and the windows are cut from them. The STFT and filterbanks are our
own numpy code with cached filters: this runs for every file of the ETL and must stay at a
few milliseconds per file on one core.

The "cqt" scale is a constant-Q *filterbank*: triangular filters spaced `bins_per_octave`
per octave (each spanning its two neighbours' centres) applied to the power of a long STFT
(`n_fft`). It is ~20× faster than `librosa.cqt` (1 ms vs 20 ms per second of audio at
22,050 Hz) and its peaks move by exactly one band per 1/`bins_per_octave` octave. Below
`sample_rate / n_fft / (2**(1/bins_per_octave) - 1)` Hz (45 Hz for n_fft 8192 at 22,050 Hz,
12 bins per octave) the bands are interpolations of FFT bins rather than resolved.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from instropitch import audio
from instropitch.audio import decay, hum, melody, trim

FEATURES_VERSION = 1
"""Part of every digest: bump it when a code change alters the spectrograms of the same config."""

SCALES: tuple[str, ...] = ("mel", "cqt")
ANCHORS: tuple[str, ...] = ("middle", "start")
NORMALISATIONS: tuple[str, ...] = ("band_max", "example", "max", "none")
A0_HZ = 27.5
"""librosa.note_to_hz('A0'), MIDI 21: the default lowest constant-Q band."""
TOP_DB = 80.0
"""Dynamic range kept by `db=True` (values below peak − 80 dB are raised to it)."""
MAX_DURATION = 60.0

_INT_FIELDS = ("sample_rate", "n_fft", "hop_length", "n_bands", "bins_per_octave")
_FLOAT_FIELDS = ("duration", "start_fraction")


def _as_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value != int(value):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    return int(value)


def _as_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class SpectrogramConfig:
    """Everything that shapes one spectrogram; the output is always `shape` = (n_frames, n_bands).

    The window is `duration` seconds at `sample_rate`, centred on the middle of the note
    (`anchor="middle"`) or beginning at `start_fraction` × the note's duration
    (`anchor="start"`); parts outside the note are silence. Frames are centred
    (librosa's `center=True`), so `n_frames` = 1 + samples // `hop_length`.
    `fmin=None` means 0 Hz for mel and A0 (27.5 Hz) for cqt. `db=True` gives
    10·log10(power) relative to the example's peak, floored at −80 dB; the "band_max" and
    "max" normalisations then subtract the maximum instead of dividing by it. `pcen=True`
    (with `db=False`) compresses the power by per-channel energy normalisation (`pcen`)
    instead: each band divided by its own recent energy, so a fixed colour of the recording
    chain weighs less and the note's onset and changes weigh more.
    """

    sample_rate: int = 22050
    duration: float = 1.0
    anchor: str = "middle"
    start_fraction: float = 0.0
    n_fft: int = 2048
    hop_length: int = 512
    n_bands: int = 128
    scale: str = "mel"
    fmin: float | None = None
    bins_per_octave: int = 12
    db: bool = False
    normalisation: str = "band_max"
    pcen: bool = False

    def __post_init__(self) -> None:
        for name in _INT_FIELDS:
            object.__setattr__(self, name, _as_int(name, getattr(self, name)))
        for name in _FLOAT_FIELDS:
            object.__setattr__(self, name, _as_float(name, getattr(self, name)))
        if self.fmin is not None:
            object.__setattr__(self, "fmin", _as_float("fmin", self.fmin))
        if not isinstance(self.db, (bool, np.bool_)):
            raise ValueError(f"db must be true or false, got {self.db!r}")
        object.__setattr__(self, "db", bool(self.db))
        if not isinstance(self.pcen, (bool, np.bool_)):
            raise ValueError(f"pcen must be true or false, got {self.pcen!r}")
        object.__setattr__(self, "pcen", bool(self.pcen))
        if self.pcen and self.db:
            raise ValueError("pcen and db are two compressions of the power: choose one")

        sr, nyquist = self.sample_rate, self.sample_rate / 2
        if not audio.MIN_SAMPLE_RATE <= sr <= audio.MAX_SAMPLE_RATE:
            raise ValueError(f"sample_rate {sr} is outside {audio.MIN_SAMPLE_RATE}..{audio.MAX_SAMPLE_RATE} Hz")
        if not 0 < self.duration <= MAX_DURATION:
            raise ValueError(f"duration must be in (0, {MAX_DURATION:g}] seconds, got {self.duration}")
        if self.anchor not in ANCHORS:
            raise ValueError(f"unknown anchor {self.anchor!r}; known: {', '.join(ANCHORS)}")
        if not 0 <= self.start_fraction < 1:
            raise ValueError(f"start_fraction must be in [0, 1), got {self.start_fraction}")
        if self.n_fft < 16 or self.n_fft % 2 or self.n_fft > 65536:
            raise ValueError(f"n_fft must be an even number in 16..65536, got {self.n_fft}")
        if self.hop_length < 1:
            raise ValueError(f"hop_length must be at least 1, got {self.hop_length}")
        if not 1 <= self.n_bands <= 1024:
            raise ValueError(f"n_bands must be in 1..1024, got {self.n_bands}")
        if not 1 <= self.bins_per_octave <= 120:
            raise ValueError(f"bins_per_octave must be in 1..120, got {self.bins_per_octave}")
        if self.scale not in SCALES:
            raise ValueError(f"unknown scale {self.scale!r}; known: {', '.join(SCALES)}")
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(f"unknown normalisation {self.normalisation!r}; known: {', '.join(NORMALISATIONS)}")
        if self.n_samples < 1:
            raise ValueError(f"duration {self.duration} s is less than one sample at {sr} Hz")
        fmin = self.fmin_hz
        if self.scale == "cqt":
            if fmin <= 0:
                raise ValueError(f"cqt fmin must be above 0 Hz, got {fmin}")
            top = fmin * 2 ** (self.n_bands / self.bins_per_octave)
            if top > nyquist:
                raise ValueError(
                    f"cqt top band reaches {top:.0f} Hz (fmin {fmin:g} Hz × 2^(n_bands {self.n_bands} / "
                    f"bins_per_octave {self.bins_per_octave})), above the Nyquist frequency {nyquist:g} Hz"
                )
        elif not 0 <= fmin < nyquist:
            raise ValueError(f"mel fmin {fmin:g} Hz must be in [0, Nyquist {nyquist:g} Hz)")

    @property
    def n_samples(self) -> int:
        """Samples analysed (duration × sample_rate, rounded to absorb float error)."""
        return round(self.duration * self.sample_rate)

    @property
    def n_frames(self) -> int:
        return 1 + self.n_samples // self.hop_length

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_frames, self.n_bands)

    @property
    def fmin_hz(self) -> float:
        """`fmin` with its default filled in (0 Hz for mel, A0 = 27.5 Hz for cqt)."""
        if self.fmin is not None:
            return self.fmin
        return A0_HZ if self.scale == "cqt" else 0.0

    def band_frequencies(self) -> np.ndarray:
        """Centre frequency in Hz of each band (for axes of plots and for tests)."""
        if self.scale == "cqt":
            return self.fmin_hz * 2 ** (np.arange(self.n_bands) / self.bins_per_octave)
        return _mel_edges(self.sample_rate, self.n_bands, self.fmin_hz)[1:-1]

    def to_dict(self) -> dict[str, Any]:
        """The fields; `pcen` only when on, so that configs from before it keep their digest."""
        d = dataclasses.asdict(self)
        if not d["pcen"]:
            del d["pcen"]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, where: str = "") -> SpectrogramConfig:
        """Build from a mapping; missing keys take defaults, unknown keys are an error naming them."""
        prefix = f"{where}." if where else ""
        if not isinstance(d, Mapping):
            raise ValueError(f"{where or 'spectrogram config'} must be a mapping, got {type(d).__name__}")
        known = [f.name for f in fields(cls)]
        for key in d:
            if key not in known:
                raise ValueError(
                    f"unknown key {prefix + str(key)!r} in the feature config; known keys: {', '.join(known)}"
                )
        try:
            return cls(**d)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}" if where else str(exc)) from None


@dataclass(frozen=True)
class FeatureConfig:
    """The pitch and the instrument spectrogram configs of a model's input.

    `locate_note=True` places both windows on the part of the file where the note sounds
    (`audio.trim.note_span`, starting `NOTE_PRE_ROLL` s before it) instead of on the whole
    file: a recording with silence before the note keeps its attack in the instrument window.
    """

    pitch: SpectrogramConfig
    instrument: SpectrogramConfig
    locate_note: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.locate_note, (bool, np.bool_)):
            raise ValueError(f"locate_note must be true or false, got {self.locate_note!r}")
        object.__setattr__(self, "locate_note", bool(self.locate_note))

    def to_dict(self) -> dict[str, Any]:
        """Both sections; `locate_note` only when on, so that configs from before it keep their digest."""
        d: dict[str, Any] = {"pitch": self.pitch.to_dict(), "instrument": self.instrument.to_dict()}
        if self.locate_note:
            d["locate_note"] = True
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureConfig:
        """Inverse of `to_dict`; rejects unknown or missing sections and unknown keys."""
        if not isinstance(d, Mapping):
            raise ValueError(
                f"a feature config must be a mapping with 'pitch' and 'instrument', got {type(d).__name__}"
            )
        for key in d:
            if key not in ("pitch", "instrument", "locate_note"):
                raise ValueError(
                    f"unknown key {key!r} in the feature config; known keys: pitch, instrument, locate_note"
                )
        for key in ("pitch", "instrument"):
            if key not in d:
                raise ValueError(f"the feature config has no {key!r} section")
        return cls(
            pitch=SpectrogramConfig.from_dict(d["pitch"], where="pitch"),
            instrument=SpectrogramConfig.from_dict(d["instrument"], where="instrument"),
            locate_note=d.get("locate_note", False),
        )

    def digest(self) -> str:
        """16 hex chars of sha256 over the canonical JSON (and `FEATURES_VERSION`): equal digest, equal arrays."""
        blob = json.dumps({"version": FEATURES_VERSION, **self.to_dict()}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


_MEL = {"scale": "mel", "sample_rate": 22050, "n_fft": 2048, "hop_length": 512, "n_bands": 128}

PCEN_TIME_CONSTANT = 0.4
"""Seconds of the energy each band is divided by (librosa.pcen's defaults, here and below)."""
PCEN_GAIN, PCEN_BIAS, PCEN_POWER, PCEN_EPS = 0.98, 2.0, 0.5, 1e-6
PCEN_SCALE = 2.0**31
"""The power of float audio as librosa.pcen expects it: as if the samples were 32-bit integers."""

PRESETS: dict[str, FeatureConfig] = {
    # The seed project: librosa.feature.melspectrogram defaults (linear power), transposed,
    # each band divided by its maximum over time.
    "seed": FeatureConfig(
        pitch=SpectrogramConfig(**_MEL, duration=0.5, anchor="middle", normalisation="band_max"),
        instrument=SpectrogramConfig(
            **_MEL, duration=1.0, anchor="start", start_fraction=1 / 6, normalisation="band_max"
        ),
    ),
    # First guess for generalisation. Pitch: 96 constant-Q bands, one per semitone from A0
    # (MIDI 21..116, TinySOL spans 28..109), 1 s from the middle, dB, per-example z-score:
    # a transposition is a shift along the band axis. Instrument: log-mel of the first second
    # (attack included), per-example z-score so loudness (pp..ff) is not a cue.
    "default": FeatureConfig(
        pitch=SpectrogramConfig(
            sample_rate=22050,
            duration=1.0,
            anchor="middle",
            n_fft=8192,
            hop_length=512,
            n_bands=96,
            scale="cqt",
            fmin=A0_HZ,
            bins_per_octave=12,
            db=True,
            normalisation="example",
        ),
        instrument=SpectrogramConfig(**_MEL, duration=1.0, anchor="start", db=True, normalisation="example"),
        # Windows on the sounding part: silence before a user's note no longer pushes the attack out
        # of the instrument window (bench/RESULTS.md, "Silence before the note").
        locate_note=True,
    ),
}
# "default" with the instrument's mel bands compressed by PCEN instead of dB (a recipe pair's
# `features: pcen`). Measured, not the default: better on fonts held out of training (51.0 / 44.7 %
# against 48.2 / 39.5 %, three seeds, all through the project's own player), worse on notes that
# FluidSynth played (50.1 % against 58.9 % over six sets): bench/RESULTS.md, "PCEN".
PRESETS["pcen"] = dataclasses.replace(
    PRESETS["default"], instrument=dataclasses.replace(PRESETS["default"].instrument, db=False, pcen=True)
)


def get_preset(name: str) -> FeatureConfig:
    """A named `FeatureConfig` from `PRESETS`."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown feature preset {name!r}; known: {', '.join(PRESETS)}") from None


# ----------------------------------------------------------------------- spectrograms


@functools.lru_cache(maxsize=16)
def _window(n_fft: int) -> np.ndarray:
    """Periodic Hann, as librosa's `get_window("hann", n_fft, fftbins=True)` (scipy.signal costs 2 s to import)."""
    w = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)
    w.flags.writeable = False
    return w


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's default, htk=False): linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0), f * 3 / 200)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), m * 200 / 3)


def _mel_edges(sr: int, n_bands: int, fmin: float) -> np.ndarray:
    return _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(sr / 2), n_bands + 2))


def _mel_basis(sr: int, n_fft: int, n_bands: int, fmin: float) -> np.ndarray:
    """`librosa.filters.mel(sr, n_fft, n_bands, fmin)` (Slaney scale and area norm) without importing librosa."""
    edges = _mel_edges(sr, n_bands, fmin)
    freqs = np.arange(n_fft // 2 + 1) * (sr / n_fft)
    ramps = edges[:, None] - freqs[None, :]
    width = np.diff(edges)[:, None]
    rise = -ramps[:-2] / width[:-1]
    fall = ramps[2:] / width[1:]
    weights = np.maximum(0.0, np.minimum(rise, fall)) * (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.astype(np.float32)


def _logfreq_basis(sr: int, n_fft: int, n_bands: int, fmin: float, bins_per_octave: int) -> np.ndarray:
    """Triangles from each band's lower to upper neighbour centre, at least ±1 FFT bin wide, peak 1."""
    freqs = np.arange(n_fft // 2 + 1) * (sr / n_fft)
    df = sr / n_fft
    centre = fmin * 2.0 ** (np.arange(n_bands) / bins_per_octave)
    step = 2.0 ** (1 / bins_per_octave)
    left = np.maximum(centre - centre / step, df)[:, None]
    right = np.maximum(centre * step - centre, df)[:, None]
    rise = (freqs[None, :] - (centre[:, None] - left)) / left
    fall = ((centre[:, None] + right) - freqs[None, :]) / right
    return np.maximum(0.0, np.minimum(rise, fall)).astype(np.float32)


def _scipy_compiled(package: str, name: str) -> Any:
    """scipy's compiled module `scipy.<package>.<name>` (FFT, CSR product), loaded without its Python packages.

    `import scipy.fft` / `scipy.sparse` cost ~0.5 / 0.8 s (their array-API layers, scipy.special),
    most of a CLI prediction's start; the compiled modules alone load in a few ms and compute
    exactly what `scipy.fft.rfft` and `csr_array @ dense` compute with them. numpy's FFT is no
    substitute: 5x slower on float32 frames of 8192 and not bit-identical. If the file is not
    where this scipy keeps it, the ordinary import (slow, same numbers).
    """
    import importlib
    import importlib.machinery
    import importlib.util
    from pathlib import Path

    full = f"scipy.{package}.{name}"
    try:
        root = importlib.util.find_spec("scipy").submodule_search_locations[0]
        folder = Path(root, *package.split("."))
        path = next(
            folder / (name + suffix)
            for suffix in importlib.machinery.EXTENSION_SUFFIXES
            if (folder / (name + suffix)).is_file()
        )
        loader = importlib.machinery.ExtensionFileLoader(full, str(path))
        module = importlib.util.module_from_spec(importlib.util.spec_from_file_location(full, path, loader=loader))
        loader.exec_module(module)
        return module
    except Exception:  # another layout or platform: the package import always works
        return importlib.import_module(full)


_LOAD_LOCK = threading.Lock()
_LOADED: dict[tuple[str, str], Any] = {}


def _compiled_once(package: str, name: str) -> Any:
    """`_scipy_compiled`, once per process whichever thread asks first.

    The feature threads of an ETL shard or a prediction batch ask at the same moment; two
    threads initialising the same extension at once can leave one of them a module without
    its functions (seen: `pypocketfft` without `r2c` in a fresh `make demo`).
    """
    with _LOAD_LOCK:
        if (package, name) not in _LOADED:
            _LOADED[package, name] = _scipy_compiled(package, name)
        return _LOADED[package, name]


@functools.cache
def _pocketfft() -> Any:
    return _compiled_once("fft._pocketfft", "pypocketfft")


@functools.cache
def _sparsetools() -> Any:
    return _compiled_once("sparse", "_sparsetools")


@dataclass(frozen=True)
class _Filters:
    """The filters as a CSR matrix, applied by scipy's compiled CSR product (what `csr_array @ x` runs).

    Sparse on purpose: the filters are ~2 % non-zero, and a dense matmul would go through
    OpenBLAS threads that stall badly when every core already runs an ETL worker.
    """

    n_bins: int
    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray

    def apply(self, power_t: np.ndarray) -> np.ndarray:
        """(bins, frames) power -> (bands, frames) band energies."""
        dtype = np.result_type(self.data, power_t)
        x = np.ascontiguousarray(power_t, dtype=dtype)
        out = np.zeros((len(self.indptr) - 1, x.shape[1]), dtype=dtype)
        _sparsetools().csr_matvecs(
            len(self.indptr) - 1,
            self.n_bins,
            x.shape[1],
            self.indptr,
            self.indices,
            self.data.astype(dtype),
            x.ravel(),
            out.ravel(),
        )
        return out


@functools.lru_cache(maxsize=16)
def _basis(
    scale: str, sr: int, n_fft: int, n_bands: int, fmin: float, bins_per_octave: int
) -> tuple[_Filters, int, int]:
    """(the filters over the used FFT bins, first FFT bin used, last + 1), built once per config."""
    if scale == "mel":
        basis = _mel_basis(sr, n_fft, n_bands, fmin)
    else:
        basis = _logfreq_basis(sr, n_fft, n_bands, fmin, bins_per_octave)
    used = np.flatnonzero(basis.any(axis=0))
    lo, hi = (int(used[0]), int(used[-1]) + 1) if len(used) else (0, 1)
    window = basis[:, lo:hi]
    rows, cols = np.nonzero(window)  # row-major: band after band, bins ascending (CSR order)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n_bands))]).astype(np.int32)
    return _Filters(hi - lo, indptr, cols.astype(np.int32), window[rows, cols]), lo, hi


class _Scratch(threading.local):
    """Each thread's work arrays for `_stft_power`, kept from one call to the next.

    A pitch window's frames and spectrum are ~1.4 MB each; allocated afresh on every call,
    their pages were faulted in every time, which cost as much as the FFT itself (1.8 vs
    1.0 ms of CPU per window with reused arrays). Thread-local, so the feature threads of a
    batch never share one; a few configs, so a few arrays per thread.
    """

    def __init__(self) -> None:
        self.arrays: dict[tuple[str, tuple[int, ...], str], np.ndarray] = {}

    def get(self, what: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        key = (what, shape, np.dtype(dtype).str)
        array = self.arrays.get(key)
        if array is None:
            array = self.arrays[key] = np.empty(shape, dtype=dtype)
        return array


_SCRATCH = _Scratch()


def _stft_power(y: np.ndarray, n_fft: int, hop_length: int, lo: int = 0, hi: int | None = None) -> np.ndarray:
    """|STFT|² of FFT bins `lo..hi` (default all n_fft//2 + 1) as (bins, frames), centred frames with zero padding.

    librosa's defaults (`center=True`, zero padding, periodic Hann), `n_samples` = len(y).
    Laid out as the filters read it: the frames are windowed into columns and transformed
    along axis 0, so the bins come out as rows and neither the spectrum nor the power is
    copied into another layout (each transform is the same, bit for bit). The squares are
    taken on the interleaved (re, im) pairs: the same values as `real**2 + imag**2`, without
    strided temporaries. Every array is this thread's scratch (`_Scratch`): the result is
    valid until the thread's next call.
    """
    half = n_fft // 2
    n_bins = half + 1
    hi = n_bins if hi is None else hi
    n_frames = 1 + len(y) // hop_length
    padded = _SCRATCH.get("padded", (len(y) + 2 * half,), y.dtype)
    padded[:half] = 0
    padded[half : half + len(y)] = y
    padded[half + len(y) :] = 0
    step = padded.itemsize
    columns = np.ndarray((n_fft, n_frames), padded.dtype, buffer=padded, strides=(step, hop_length * step))
    frames = _SCRATCH.get("frames", (n_frames, n_fft), y.dtype).T  # each frame contiguous
    np.multiply(columns, _window(n_fft)[:, None], out=frames)
    # scipy.fft.rfft(frames, axis=0), called as scipy calls it (forward, no normalisation, 1 thread)
    complex_type = np.result_type(y.dtype, np.complex64)
    spectrum = _SCRATCH.get("spectrum", (n_bins, n_frames), complex_type)
    spec = _pocketfft().r2c(frames, (0,), True, 0, spectrum, 1)[lo:hi]
    real_type = spec.real.dtype
    squares = np.square(spec.view(real_type), out=_SCRATCH.get("squares", (hi - lo, 2 * n_frames), real_type))
    return np.add(squares[:, 0::2], squares[:, 1::2], out=_SCRATCH.get("power", (hi - lo, n_frames), real_type))


def _normalise(s: np.ndarray, how: str, db: bool) -> np.ndarray:
    if how == "example":
        mean, std = float(s.mean()), float(s.std())
        return (s - mean) / std if std > 1e-8 else s - mean
    if how == "max":
        peak = s.max()
        if db:
            return s - peak
        return s / peak if peak > 0 else s
    if how == "band_max":
        peak = s.max(axis=0, keepdims=True)
        if db:
            return s - peak
        return np.divide(s, peak, out=np.zeros_like(s), where=peak > 0)
    return s


def pcen(power: np.ndarray, sample_rate: int, hop_length: int) -> np.ndarray:
    """Per-channel energy normalisation of a (n_frames, n_bands) power spectrogram, as `librosa.pcen`
    with its defaults: each band over a one-pole average of its own energy (`PCEN_TIME_CONSTANT`),
    then a root compression. The average starts where librosa's does (a steady state at 1)."""
    s = np.asarray(power, dtype=np.float64) * PCEN_SCALE
    t_frames = PCEN_TIME_CONSTANT * sample_rate / hop_length
    b = (math.sqrt(1 + 4 * t_frames**2) - 1) / (2 * t_frames**2)
    smooth = np.empty_like(s)
    level = np.ones(s.shape[1])
    for i, frame in enumerate(s):
        level = b * frame + (1 - b) * level
        smooth[i] = level
    return (s / (PCEN_EPS + smooth) ** PCEN_GAIN + PCEN_BIAS) ** PCEN_POWER - PCEN_BIAS**PCEN_POWER


def spectrogram(y: np.ndarray, config: SpectrogramConfig) -> np.ndarray:
    """float32 (n_frames, n_bands) of mono audio at `config.sample_rate`.

    `y` is cut or zero-padded at the end to exactly `config.n_samples`, so the shape is
    always `config.shape`. Raises ValueError on NaN/inf input; the output is always finite.
    """
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise ValueError(f"expected mono audio (1-D), got shape {y.shape}")
    if not np.isfinite(y).all():
        raise ValueError("audio contains NaN or infinite samples")
    n = config.n_samples
    if len(y) < n:
        y = np.concatenate([y, np.zeros(n - len(y), dtype=y.dtype)])
    basis, lo, hi = _basis(
        config.scale, config.sample_rate, config.n_fft, config.n_bands, config.fmin_hz, config.bins_per_octave
    )
    power_t = _stft_power(y[:n], config.n_fft, config.hop_length, lo, hi)
    s = np.maximum(basis.apply(power_t).T, 0.0)
    if config.db:
        peak = float(s.max())
        s = 10.0 * np.log10(np.maximum(s, 1e-10)) - 10.0 * math.log10(max(peak, 1e-10))
        s = np.maximum(s, -TOP_DB)
    elif config.pcen:
        s = pcen(s, config.sample_rate, config.hop_length)
    s = _normalise(s, config.normalisation, config.db)
    return np.ascontiguousarray(s, dtype=np.float32)


# --------------------------------------------------------------------------- features


@dataclass
class Features:
    """The two spectrograms of one note, with the note's duration and the file's sample rate."""

    pitch: np.ndarray
    instrument: np.ndarray
    duration: float
    sample_rate: int
    pitch_audio: np.ndarray | None = None
    """The pitch window's samples (at the pitch config's rate, the part inside the file), when asked for."""
    pitch_window: tuple[float, float] = (0.0, 0.0)
    """Seconds of the file (start, end) the pitch spectrogram was read from."""
    notes: list[melody.HeldNote] | None = None
    """The notes the file holds over time (`melody.notes_held`), when asked for: more than one is worth a warning."""
    glide: tuple[float, float] | None = None
    """(from, to) MIDI of a glide in the pitch window (`melody.glide`), when the notes are asked for."""
    fall: decay.Fall | None = None
    """How the note falls after its attack (`decay.fall_after_attack`), when the notes are asked for: a plucked or
    struck string dies away, the held notes the models know do not."""
    held: float | None = None
    """Seconds the note holds near its peak level (`trim.held_seconds`), when the notes are asked for."""
    hum: float | None = None
    """Hz of the mains hum sounding through the file (`hum.mains_hum`), when the notes are asked for."""


NOTE_PRE_ROLL = 0.05
"""Seconds kept before the first sounding frame (`locate_note`): the frame is 10 ms and the attack
rises through it. The training renders' onsets lie at 0.03 s (median) to 0.12 s, so 89-95 % of
their windows still start at the file's first sample and the rest by at most 70 ms later."""


def _window_start(config: SpectrogramConfig, span: tuple[float, float]) -> float:
    start, end = span
    if config.anchor == "middle":
        return (start + end) / 2 - config.duration / 2
    return start + config.start_fraction * (end - start)


def _window_span(note: tuple[float, float] | None, info: audio.WavInfo) -> tuple[float, float]:
    """Seconds of the file the windows are placed on: from just before the `note` (`trim.note_span`), or all of it."""
    if note is None:
        return 0.0, info.duration
    start, end = note
    return max(0.0, start - NOTE_PRE_ROLL), end


def _segments(
    info: audio.WavInfo, config: FeatureConfig, span: tuple[float, float]
) -> list[tuple[str, SpectrogramConfig, float, float]]:
    """(what, config, start s, length s) of each window, in the same rounding `read_segment` uses."""
    out = []
    for what, cfg in (("pitch", config.pitch), ("instrument", config.instrument)):
        start = round(_window_start(cfg, span) * cfg.sample_rate)
        out.append((what, cfg, start / cfg.sample_rate, cfg.n_samples / cfg.sample_rate))
    return out


def needed_byte_ranges(info: audio.WavInfo, config: FeatureConfig) -> list[tuple[int, int]]:
    """(offset, length) of the audio bytes `compute_features` reads, sorted and merged.

    The header (bytes 0..`info.data_offset`) is read by `audio.read_info` and is not listed.
    With `locate_note`, every sample is read to find the note.
    """
    if config.locate_note:
        return [info.byte_range(0, info.n_frames)] if info.n_frames else []
    ranges = sorted(
        audio.segment_byte_range(info, start, length, cfg.sample_rate)
        for _, cfg, start, length in _segments(info, config, (0.0, info.duration))
    )
    merged: list[list[int]] = []
    for offset, length in ranges:
        if length <= 0:
            continue
        if merged and offset <= merged[-1][0] + merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], offset + length - merged[-1][0])
        else:
            merged.append([offset, length])
    return [(o, n) for o, n in merged]


MIN_NOTE_DURATION = 0.05
"""Seconds; anything shorter is a click, not a note (refused with `audio.TooShortError`)."""


def ensure_note_length(info: audio.WavInfo, name: str) -> None:
    """Raise `audio.TooShortError` below `MIN_NOTE_DURATION` (a click: no pitch or timbre to tell)."""
    if info.duration < MIN_NOTE_DURATION:
        raise audio.TooShortError(
            name, f"too short: {info.duration * 1000:.1f} ms, a note lasts at least {MIN_NOTE_DURATION * 1000:.0f} ms"
        )


def compute_features(
    source: audio.Source,
    config: FeatureConfig,
    *,
    name: str | None = None,
    info: audio.WavInfo | None = None,
    silence_threshold: float = audio.SILENCE_THRESHOLD,
    keep_audio: bool = False,
    find_notes: bool = False,
) -> Features:
    """Both spectrograms of a note, reading the header once, then every sample (`locate_note`) or
    only the seconds each window needs.

    `keep_audio` keeps the pitch window's samples too (`Features.pitch_audio`, for a period
    estimate in the time domain); `find_notes` reads the pitch over the whole file (`Features.notes`,
    `Features.glide`) and how the note's level moves after its attack (`Features.fall`).
    Raises `audio.AudioError` subclasses for unusable files, including `SilentAudioError` when a window
    to analyse is silent (so no spectrogram is normalised by zero).
    """
    with audio.open_source(source, name) as src:
        info = info or audio.read_info(src)
        ensure_note_length(info, src.name)
        arrays = {}
        kept = None
        # Locating the note reads every sample once; the windows are then cut from them.
        frames = audio.read_frames(src, 0, info.n_frames, info=info) if config.locate_note or find_notes else None
        located = frames if config.locate_note else None
        note = trim.note_span(frames, info.sample_rate) if frames is not None else None
        window = (0.0, 0.0)
        for what, cfg, start, length in _segments(
            info, config, _window_span(note if config.locate_note else None, info)
        ):
            if located is None:
                y = audio.read_segment(src, start, length, cfg.sample_rate, info=info)
            else:
                y = audio.cut_segment(located, info, start, length, cfg.sample_rate)
            if what == "pitch":
                kept = y if keep_audio else None
                window = (max(start, 0.0), min(start + length, info.duration))
            audio.ensure_audible(
                y, src.name, f"the {what} window ({length:.2f} s from {max(start, 0.0):.2f} s)", silence_threshold
            )
            left = -round(start * cfg.sample_rate)
            if left > 0:  # a short note: the window starts before the file does
                y = np.concatenate([np.zeros(left, dtype=np.float32), y])
            arrays[what] = spectrogram(y, cfg)
    return Features(
        pitch=arrays["pitch"],
        instrument=arrays["instrument"],
        duration=info.duration,
        sample_rate=info.sample_rate,
        pitch_audio=kept,
        pitch_window=window,
        **(_whole_file(frames, info.sample_rate, note, window) if find_notes and frames is not None else {}),
    )


def _whole_file(
    frames: np.ndarray, sample_rate: int, note: tuple[float, float], window: tuple[float, float]
) -> dict[str, Any]:
    """What the predictor reads of the whole file besides the windows: its notes, a glide, the fall after the attack,
    how long the note holds, a mains hum."""
    course = melody.pitch_course(frames, sample_rate)
    return {
        "notes": melody.held_notes(course),
        "glide": melody.glide(course, window),
        "fall": decay.fall_after_attack(frames, sample_rate, note),
        "held": trim.held_seconds(frames, sample_rate),
        "hum": hum.mains_hum(frames, sample_rate),
    }
