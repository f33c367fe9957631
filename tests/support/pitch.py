"""Pitch measurement for rendered notes: a YIN f0 estimate and its distance in cents from a MIDI note."""

from __future__ import annotations

import math

import numpy as np

SR = 44100
"""The default rate of `estimate_f0`: the SoundFont player's."""


def estimate_f0(x: np.ndarray, sr: int = SR, fmin: float = 25.0, fmax: float = 4200.0) -> float:
    """YIN (cumulative mean normalised difference) f0 over the whole range, then refined.

    No expected pitch goes in, so an octave error would show. The coarse lag is refined by
    parabolic interpolation of the YIN curve.
    """
    x = np.asarray(x, dtype=np.float64)
    max_lag, min_lag = int(sr / fmin), int(sr / fmax)
    w = len(x) - max_lag - 1
    assert w > max_lag, "segment too short"
    frame = x[: w + max_lag + 1]
    energy = np.concatenate([[0.0], np.cumsum(frame**2)])
    lags = np.arange(max_lag + 1)
    nfft = 1 << int(np.ceil(np.log2(2 * len(frame))))
    cross = np.fft.irfft(np.fft.rfft(frame, nfft) * np.conj(np.fft.rfft(frame[:w], nfft)), nfft)[: max_lag + 1]
    diff = energy[w] + (energy[lags + w] - energy[lags]) - 2 * cross
    diff[0] = 0.0
    cmnd = np.ones_like(diff)
    cmnd[1:] = diff[1:] * np.arange(1, max_lag + 1) / np.maximum(np.cumsum(diff[1:]), 1e-12)
    below = np.flatnonzero(cmnd[min_lag:max_lag] < 0.15)
    if len(below):
        tau = min_lag + int(below[0])
        while tau + 1 < max_lag and cmnd[tau + 1] < cmnd[tau]:
            tau += 1
    else:
        tau = min_lag + int(np.argmin(cmnd[min_lag:max_lag]))
    a, b, c = cmnd[tau - 1 : tau + 2]
    den = a - 2 * b + c
    return sr / (tau + (0.5 * (a - c) / den if den else 0.0))


def cents_off(f0: float, midi: float) -> float:
    return 1200 * math.log2(f0 / (440.0 * 2 ** ((midi - 69) / 12)))
