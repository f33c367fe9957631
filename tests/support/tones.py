"""Synthetic notes with instrument-like timbres, as float arrays and as WAV bytes."""

from __future__ import annotations

import io

import numpy as np

from instropitch import audio

SR = 22050


def tone(abbr: str, midi: int, *, seconds: float = 1.5, amp: float = 0.5, seed: int = 0, sr: int = SR) -> np.ndarray:
    """A synthetic note: flute ~ sine, clarinet ~ odd harmonics, violin ~ sawtooth with a sharp attack."""
    rng = np.random.default_rng(seed)
    f0 = 440.0 * 2 ** ((midi - 69) / 12) * (1 + rng.normal(0, 0.002))
    t = np.arange(int(seconds * sr)) / sr
    if abbr == "Fl":
        partials, attack = {1: 1.0, 2: 0.1}, 0.08
    elif abbr == "ClBb":
        partials, attack = {1: 1.0, 3: 0.6, 5: 0.4, 7: 0.25, 9: 0.15}, 0.03
    else:
        partials, attack = {n: 1.0 / n for n in range(1, 12)}, 0.01
    y = sum(
        a * np.sin(2 * np.pi * n * f0 * t + rng.uniform(0, 2 * np.pi)) for n, a in partials.items() if n * f0 < sr / 2
    )
    y = y * np.minimum(1, t / attack) * np.minimum(1, (seconds - t) / 0.05)
    y = y / np.abs(y).max() * amp + rng.normal(0, 1e-3, len(t))
    return y.astype(np.float32)


def wav_bytes(samples: np.ndarray, sr: int = SR, **kwargs) -> bytes:
    """`samples` as the bytes of a WAV file (`audio.write_wav` options as keywords)."""
    buf = io.BytesIO()
    audio.write_wav(buf, samples, sr, **kwargs)
    return buf.getvalue()
