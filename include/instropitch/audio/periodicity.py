"""How periodic a note is and at which period: YIN (de Cheveigné & Kawahara, 2002) in numpy.

The pitch CNN reads a 1-s spectrogram whose FFT resolves a semitone only when the tone fills
enough of the window; it misses on 80 ms low notes (±1 semitone) and on tones whose
fundamental is absent (an octave up). The period read in the time domain has neither
weakness: 80 ms hold two or more periods of the lowest note, and a waveform made of
harmonics 2..8 of f0 still repeats every 1/f0. `estimate` gives that period with YIN's
aperiodicity (0: exactly periodic, about 1: noise), which says how much to believe it.

Pure functions of the samples; the frames of a note go through numpy's real FFT together
(low-pass and cross term in the frequency domain: four transforms, ~0.4 ms a note).

`repeats` answers a narrower question for every note, cheaply (one transform, ~0.13 ms): how
well does the waveform repeat after a given lag? A note at f0 repeats after 1/f0 whatever its
timbre, so an answer whose period the waveform does not repeat at cannot be its pitch.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from instropitch.tinysol import hz_to_midi, midi_to_hz

FMIN_HZ = 25.0
"""Below A0 (27.5 Hz), with room for a flat tuning."""
FMAX_HZ = 1300.0
"""~E6: the shortest period looked for (17 samples at 22,050 Hz). Looking higher (2.5 kHz was
tried) reads missing-fundamental tones of 1.1-1.4 kHz an octave up: under `CUTOFF_HZ` only
their second harmonic is left."""
CUTOFF_HZ = 4000.0
"""Low-pass before the difference function: harmonics of a few samples' period make d'(τ) swing
between neighbouring whole lags (a missing-fundamental tone at 700 Hz dipped deeper at 2T than at T)."""
THRESHOLD = 0.1
"""YIN's absolute threshold on the normalised difference (the paper's value)."""
TOLERANCE = 0.1
"""With no dip under the threshold: how much deeper a longer period's dip must be to be preferred."""
MAX_FRAMES = 3
REPEAT_FRAME = 4096
"""Samples (0.19 s at 22,050 Hz, five periods of A0) from the middle of a note for `repeats`;
lags up to half of it (93 ms) are read. Twice as long cost 0.23 ms a note instead of 0.13."""
FLOOR_DB = -50.0
"""`repeats` keeps the bins of the spectrum down to this far under the strongest."""
PARTIAL_TOLERANCE = 0.03
"""How far (a fraction of its frequency, half a semitone) a partial may sit from where `level_db` looks."""


@dataclass(frozen=True)
class Periodicity:
    """A median f0 over the frames that found a period, and the median aperiodicity of those frames."""

    f0_hz: float
    aperiodicity: float
    frames: int

    @property
    def midi(self) -> float:
        """The f0 as a fractional MIDI number (69 = A4 = 440 Hz)."""
        return float(hz_to_midi(self.f0_hz))


def _frames(y: np.ndarray, length: int, count: int) -> np.ndarray:
    """Up to `count` frames of `length` samples spread evenly over `y` (first and last at its ends)."""
    starts = np.linspace(0, len(y) - length, num=count).round().astype(int)
    return np.stack([y[s : s + length] for s in np.unique(starts)])


@functools.lru_cache(maxsize=8)
def _low_pass(n_fft: int, cutoff: float) -> np.ndarray:
    """Gains of the rfft bins: 1 up to half of `cutoff` (a fraction of the rate), a raised-cosine fall to 0 at it."""
    bins = np.arange(n_fft // 2 + 1) / n_fft
    edge = np.cos(np.pi / 2 * np.log2(np.maximum(bins, 1e-12) / (cutoff / 2))) ** 2
    gains = np.where(bins <= cutoff / 2, 1.0, np.where(bins < cutoff, edge, 0.0))
    gains.flags.writeable = False
    return gains


def _normalised_difference(frames: np.ndarray, window: int, max_lag: int, cutoff: float) -> np.ndarray:
    """YIN's cumulative-mean-normalised difference d'(τ), τ = 0..max_lag, one row per frame.

    The frames are low-passed (`_low_pass`) in the same FFT. The cross term Σ x_j x_{j+τ}
    (j < window) is one product of spectra: for τ <= max_lag it reads only the frame's samples.
    """
    n_fft = 1 << (window + max_lag + window - 1).bit_length()
    spectrum = np.fft.rfft(frames.astype(np.float64), n_fft) * _low_pass(n_fft, cutoff)
    x = np.fft.irfft(spectrum, n_fft)
    head = np.zeros_like(x)
    head[:, :window] = x[:, :window]
    cross = np.fft.irfft(spectrum * np.conj(np.fft.rfft(head, n_fft)), n_fft)[:, : max_lag + 1]
    x = x[:, : frames.shape[1]]
    energy = np.cumsum(np.concatenate([np.zeros((len(x), 1)), x**2], axis=1), axis=1)
    e_head = energy[:, window : window + 1]
    e_lag = energy[:, window : window + max_lag + 1] - energy[:, : max_lag + 1]
    d = np.maximum(e_head + e_lag - 2 * cross, 0.0)
    running = np.cumsum(d[:, 1:], axis=1)
    out = np.ones_like(d)
    lags = np.arange(1, max_lag + 1)
    np.divide(d[:, 1:] * lags, running, out=out[:, 1:], where=running > 0)
    return out


def _best_lags(dn: np.ndarray, min_lag: int) -> tuple[np.ndarray, np.ndarray]:
    """(fractional lag, d' there) of each row of `dn`: the first dip under `THRESHOLD`, else the first within
    `TOLERANCE` of the lowest; then downhill to the dip's bottom, and a parabola through it and its neighbours.

    The second rule keeps a short note faded in and out (its d' stays above the threshold
    everywhere) from reading at twice or three times its period, whose dips are a little deeper.
    """
    rows, width = dn.shape
    seg = dn[:, min_lag:]
    below = seg < THRESHOLD
    near = seg <= seg.min(axis=1, keepdims=True) + TOLERANCE
    lag = min_lag + np.where(below.any(axis=1), below.argmax(axis=1), near.argmax(axis=1))
    # then downhill to the dip's bottom: the first j >= lag where d' stops falling
    stops = np.concatenate([dn[:, 1:] >= dn[:, :-1], np.ones((rows, 1), bool)], axis=1)
    stops &= np.arange(width)[None, :] >= lag[:, None]
    lag = stops.argmax(axis=1)
    at = np.arange(rows)
    inside = (lag > 0) & (lag < width - 1)
    a, b, c = dn[at, np.maximum(lag - 1, 0)], dn[at, lag], dn[at, np.minimum(lag + 1, width - 1)]
    curve = a - 2 * b + c
    shift = np.where(inside & (curve > 0), 0.5 * (a - c) / np.where(curve > 0, curve, 1.0), 0.0)
    return lag + np.clip(shift, -1, 1), b


def estimate(
    y: np.ndarray,
    sample_rate: int,
    *,
    fmin: float = FMIN_HZ,
    fmax: float = FMAX_HZ,
    cutoff_hz: float = CUTOFF_HZ,
    max_frames: int = MAX_FRAMES,
) -> Periodicity | None:
    """The period of mono audio `y`, or None when it is too short to hold two periods of `fmin`.

    Frames hold two lowest periods (`window` = max lag = sample_rate / fmin); up to
    `max_frames` of them are spread over `y`. f0 and aperiodicity are medians over the frames
    whose dip fell under the threshold (over all frames when none did).
    """
    y = np.asarray(y, dtype=np.float64)
    max_lag = int(math.ceil(sample_rate / fmin))
    min_lag = max(2, int(sample_rate / fmax))
    window = max_lag
    if len(y) < window + max_lag or not np.isfinite(y).all() or not np.any(y):
        return None
    frames = _frames(y - y.mean(), window + max_lag, max_frames)
    dn = _normalised_difference(frames, window, max_lag, min(cutoff_hz, sample_rate / 2) / sample_rate)
    found = np.stack(_best_lags(dn, min_lag), axis=1)
    periodic = found[:, 1] < THRESHOLD
    chosen = found[periodic] if periodic.any() else found
    f0 = float(midi_to_hz(np.median(hz_to_midi(sample_rate / chosen[:, 0]))))
    return Periodicity(f0_hz=f0, aperiodicity=float(np.median(chosen[:, 1])), frames=len(chosen))


def track_frame(sample_rate: float, fmin: float = FMIN_HZ) -> int:
    """Samples in one frame of `track`: two periods of `fmin`."""
    return 2 * int(math.ceil(sample_rate / fmin))


TRACK_HOP_S = 0.05
"""Seconds between the frames of `track`."""
TRACK_BLOCK = 128
"""Frames `track` sends through the FFT together (memory stays at a block: a file may be minutes long)."""


def track(
    y: np.ndarray,
    sample_rate: float,
    *,
    hop_s: float = TRACK_HOP_S,
    quiet_db: float | None = None,
    fmin: float = FMIN_HZ,
    fmax: float = FMAX_HZ,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(start s, f0 as fractional MIDI, aperiodicity, level dB) of a frame every `hop_s`, each two lowest periods long.

    `estimate`'s YIN along the whole of `y`, frame by frame, for what changes over time (a second
    note). Frames more than `quiet_db` under the loudest are not analysed (f0 NaN, aperiodicity 1):
    a note's tail and the room cost nothing. Empty arrays when `y` holds no whole frame.
    """
    y = np.asarray(y, dtype=np.float64)
    length = track_frame(sample_rate, fmin)
    max_lag = length // 2
    min_lag = max(2, int(sample_rate / fmax))
    hop = max(1, round(hop_s * sample_rate))
    starts = np.arange(0, len(y) - length + 1, hop)
    power = np.concatenate([[0.0], np.cumsum(y**2)])
    level = 10 * np.log10((power[starts + length] - power[starts]) / length + 1e-20)
    analysed = (
        np.flatnonzero(level >= level.max() - quiet_db)
        if quiet_db is not None and len(starts)
        else np.arange(len(starts))
    )
    midi, aperiodicity = np.full(len(starts), np.nan), np.ones(len(starts))
    cutoff = min(CUTOFF_HZ, sample_rate / 2) / sample_rate
    for first in range(0, len(analysed), TRACK_BLOCK):
        block = analysed[first : first + TRACK_BLOCK]
        frames = np.stack([y[s : s + length] for s in starts[block]])
        frames -= frames.mean(axis=1, keepdims=True)
        lags, aperiodicity[block] = _best_lags(_normalised_difference(frames, max_lag, max_lag, cutoff), min_lag)
        midi[block] = hz_to_midi(sample_rate / lags)
    return starts / sample_rate, midi, aperiodicity, level


@dataclass(frozen=True)
class Repeats:
    """A note's autocorrelation, kept as the strong bins of its power spectrum (read at any lag by `at`)."""

    bins: np.ndarray
    weights: np.ndarray
    """Each kept bin's share of the frame's power (one-sided: doubled but bin 0)."""
    n_fft: int
    frame: int
    sample_rate: int
    floor_db: float = FLOOR_DB
    """Bins this far under the strongest were dropped: `level_db` reads nothing there as this."""

    def at(self, periods_s: np.ndarray | list[float]) -> np.ndarray:
        """How well the waveform repeats after each period (1: exactly, 0: no relation, -1: inverted); NaN beyond half the frame.

        The Wiener-Khinchin sum of the kept bins at the fractional lag, over the Hann window's own
        autocorrelation (Boersma, 1993), so the window's taper does not read as a weaker repeat.
        """
        lags = np.atleast_1d(np.asarray(periods_s, dtype=np.float64)) * self.sample_rate
        phase = (2 * np.pi / self.n_fft) * np.outer(lags, self.bins)
        r = np.cos(phase) @ self.weights
        q = lags / self.frame
        window = (1 - q) * (2 / 3 + np.cos(2 * np.pi * q) / 3) + np.sin(2 * np.pi * q) / (2 * np.pi)
        return np.where(q <= 0.5, r / np.maximum(window, 1e-12), np.nan)

    @property
    def strongest_hz(self) -> float:
        """The frequency of the strongest partial (the kept bin with the most power)."""
        return float(self.bins[int(np.argmax(self.weights))]) * self.sample_rate / self.n_fft

    def level_db(self, hz: float, tolerance: float = PARTIAL_TOLERANCE) -> float:
        """The strongest power within `tolerance` of `hz` (a fraction; at least the Hann window's main lobe,
        2 / frame of the rate each side), in dB under the strongest partial; `floor_db` where nothing was kept."""
        bin_hz = self.sample_rate / self.n_fft
        reach = max(tolerance * hz, 2.0 * self.sample_rate / self.frame)
        near = np.abs(self.bins * bin_hz - hz) <= reach
        if not near.any():
            return self.floor_db
        return float(10.0 * np.log10(self.weights[near].max() / self.weights.max()))


@functools.lru_cache(maxsize=8)
def _hann(m: int) -> np.ndarray:
    """The symmetric Hann window of `m` samples Boersma's correction assumes (read-only: cached)."""
    w = 0.5 - 0.5 * np.cos(2 * np.pi * (np.arange(m) + 0.5) / m)
    w.flags.writeable = False
    return w


def repeats(
    y: np.ndarray, sample_rate: int, *, frame: int = REPEAT_FRAME, floor_db: float = FLOOR_DB
) -> Repeats | None:
    """The autocorrelation of the middle `frame` samples of `y` (all of a shorter note); None for silence or non-finite audio.

    Bins more than `floor_db` under the strongest are dropped: they change a tone's repeat by
    under 1 % and would make reading many lags cost a transform each.
    """
    y = np.asarray(y, dtype=np.float64)
    if len(y) < 16 or not np.isfinite(y).all():
        return None
    m = min(len(y), frame)
    start = (len(y) - m) // 2
    x = y[start : start + m]
    n_fft = 1 << (2 * m - 1).bit_length()
    spectrum = np.fft.rfft((x - x.mean()) * _hann(m), n_fft)
    power = spectrum.real**2 + spectrum.imag**2
    power[1:] *= 2.0
    total = power.sum()
    if total <= 0:
        return None
    bins = np.flatnonzero(power >= power.max() * 10 ** (floor_db / 10))
    return Repeats(
        bins=bins, weights=power[bins] / total, n_fft=n_fft, frame=m, sample_rate=sample_rate, floor_db=floor_db
    )
