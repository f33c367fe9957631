"""Whether a note holds or dies away after its attack: a bowed, blown or bellows note holds, a plucked or
struck string does not.

TinySOL's 14 instruments play held notes (ordinario), and so do the renders the models learn from. A
guitar, piano or harp note is none of them, yet the models answered real recordings of such notes
(npm's tonejs-instrument packages) "Brass, sure" on 57 of 216 (bench/RESULTS.md, "Plucked and struck
notes"). What tells such a note apart needs no model: once struck, every band of its spectrum falls,
the high ones fastest, while a held note keeps its level. `band_decay` measures that fall.

Pure numpy: ten FFTs in each of the two 0.2-s windows it compares, 0.9 ms for a 44.1-kHz note (2026-12-06, load 2.3).
"""

from __future__ import annotations

import numpy as np

from instropitch.audio import trim

PEAK_WITHIN_S = 0.5
"""The attack's peak is the loudest 10-ms frame this soon after the note starts (`trim.note_span`)."""
EARLY_S = (0.1, 0.3)
LATE_S = (0.8, 1.0)
"""The two windows compared, in seconds after the attack's peak: just past the attack, and ~0.7 s on."""
FRAME_S = 0.04
"""Length of the frames whose spectra are averaged in each window (half overlapping)."""
LOWEST_HZ = 55.0
"""The lowest octave band starts at A1; the bands go up an octave at a time to half the sample rate."""
LIVE_DB = 30.0
"""Bands this far below the loudest band of the early window are left out (nothing there to fall)."""
DIES_AWAY_DB = -8.0
"""A note whose bands fall by this much or more (the median) is plucked or struck. Of 3,085 held notes (the demo's
renders of 10 sources, real recordings of 11 instruments) one falls that far, a horn recording; of 216 plucked
and struck recordings, 145 (bench/RESULTS.md, "Plucked and struck notes")."""


def band_decay(y: np.ndarray, sample_rate: int, span: tuple[float, float] | None = None) -> float | None:
    """How much (dB, the median over octave bands) the note in mono audio `y` falls from just after its attack
    (`EARLY_S`) to ~0.7 s later (`LATE_S`); None when the note sounds too briefly for the second window.
    `span`: (start, end) seconds of the note, `trim.note_span`'s when not given.

    Near 0 for a held note (up when it swells), about -10 dB or lower for a plucked or struck one.
    """
    if len(y) < LATE_S[1] * sample_rate:
        return None
    start, end = span or trim.note_span(y, sample_rate)
    hop = max(1, round(0.01 * sample_rate))
    note = np.asarray(y[round(start * sample_rate) : round(end * sample_rate)], dtype=np.float64)
    frames = min(len(note) // hop, round(PEAK_WITHIN_S / 0.01))
    size = round(FRAME_S * sample_rate)
    if frames == 0:
        return None
    peak = int(np.argmax(np.mean(note[: frames * hop].reshape(frames, hop) ** 2, axis=1)))
    if (peak + round(LATE_S[1] / 0.01)) * hop + size > len(note):
        return None
    early, late = (_band_levels(note, sample_rate, peak * hop, window, size) for window in (EARLY_S, LATE_S))
    live = early > early.max() - LIVE_DB
    return float(np.median(late[live] - early[live]))


def plucked_or_struck(decay_db: float | None) -> bool:
    """Whether a note that falls by `decay_db` (`band_decay`) is one no held instrument plays."""
    return decay_db is not None and decay_db <= DIES_AWAY_DB


def _band_levels(note: np.ndarray, sample_rate: int, peak: int, span: tuple[float, float], size: int) -> np.ndarray:
    """dB power of each octave band from `LOWEST_HZ`, averaged over the frames of `span` seconds after sample `peak`."""
    first, last = (peak + round(s * sample_rate) for s in span)
    starts = np.arange(first, last, size // 2)
    frames = np.stack([note[s : s + size] for s in starts]) * np.hanning(size)
    power = np.mean(np.abs(np.fft.rfft(frames, axis=1)) ** 2, axis=0)
    freqs = np.fft.rfftfreq(size, 1 / sample_rate)
    edges = LOWEST_HZ * 2.0 ** np.arange(int(np.log2(sample_rate / 2 / LOWEST_HZ)) + 1)
    bands = [power[(freqs >= lo) & (freqs < hi)].sum() for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    return 10 * np.log10(np.asarray(bands) + 1e-20)
