"""Mains hum: a steady line at the power grid's 50 or 60 Hz that sounds through a recording, whatever is played.

A cable, an amplifier or a ground loop adds it under every note, and under a quiet one it can be as loud as the note:
the demo's champions then named the hum, sure (G1 or G#1 for 50 Hz, A#1 or B1 for 60 Hz: 4-5 of 333 quiet Merlin
renders with SoX's hum under them, bench/RESULTS.md, "Mains hum"). A note sits where the scale puts it, the hum where
the grid does (within ~0.2 Hz), so the hum is told apart by its frequency: a line within `TOLERANCE_HZ` of 50 or 60 Hz
that stands `LINE_DB` above its neighbourhood and no more than `AUDIBLE_DB` below the whole sound. A held G1 would have
to be 35 cents sharp to sound there.

One FFT of the first `LONGEST_S` seconds at `RATE`, zero-padded so that the line's frequency is read to a few
hundredths of a hertz (numpy and soxr: the slim install has no SciPy).
"""

from __future__ import annotations

import numpy as np

from instropitch.audio.purity import blackman_harris
from instropitch.audio.wav import resample

MAINS_HZ = (50.0, 60.0)
"""The grids' frequencies: 50 Hz in Europe, Africa, most of Asia; 60 Hz in the Americas and parts of Asia."""
TOLERANCE_HZ = 0.25
"""How far a hum line may sit from its grid's frequency: grids hold it within about 0.2 Hz."""
LINE_DB = 20.0
"""How far the line must stand above the median power within `NEIGHBOURHOOD_HZ` of it to be a line, not noise."""
NEIGHBOURHOOD_HZ = 15.0
AUDIBLE_DB = -40.0
"""The line's level (RMS) against the whole file's: fainter hum is no rival to the note. SoX's hum (-46 dBFS peak)
under quiet Merlin renders lay at -45 to -3 dB, the faint lines found in 184 of 2,913 renders of the bench sets at
-90 to -27 (median -64)."""
SHORTEST_S = 1.0
"""Below this the window's main lobe (4 bins either side) spans more than +-4 Hz: a note a semitone from the hum and
the hum merge."""
LONGEST_S = 10.0
RATE = 1000
"""The rate the hum is looked for at: its line and first harmonics lie below 200 Hz."""
PADDING = 4
"""The FFT is this many times the audio's length: bins of a quarter of the resolution, then a parabola through
the peak's three bins."""


def mains_hum(y: np.ndarray, sample_rate: int) -> float | None:
    """The frequency (Hz) of the mains line sounding in mono `y`, or None (no line, too faint, or too short to tell)."""
    y = np.asarray(y, dtype=np.float64)
    if len(y) < SHORTEST_S * sample_rate:
        return None
    y = y[: int(LONGEST_S * sample_rate)]
    mean_square = float(np.mean((y - y.mean()) ** 2))
    if mean_square <= 0.0:
        return None
    y = resample(y, sample_rate, RATE).astype(np.float64)
    window = blackman_harris(len(y))
    n = PADDING * len(y)
    power = np.abs(np.fft.rfft((y - y.mean()) * window, n)) ** 2
    # a sine of amplitude a peaks at (a * sum(window) / 2) ** 2; its mean square is a ** 2 / 2
    line_mean_square = power * 2.0 / window.sum() ** 2
    step = RATE / n
    for mains in MAINS_HZ:
        peak = _line_at(power, step, mains)
        if peak is not None and 10.0 * np.log10(line_mean_square[peak[1]] / mean_square) >= AUDIBLE_DB:
            return peak[0]
    return None


def _line_at(power: np.ndarray, step: float, mains: float) -> tuple[float, int] | None:
    """The frequency and bin of a line within `TOLERANCE_HZ` of `mains` in a power spectrum of bins `step` Hz apart,
    or None."""
    low, high = int(np.floor((mains - TOLERANCE_HZ) / step)), int(np.ceil((mains + TOLERANCE_HZ) / step))
    peak = low + int(np.argmax(power[low : high + 1]))
    if not power[peak - 1] < power[peak] >= power[peak + 1]:
        return None  # the band's top is the slope of something else's peak
    db = 10.0 * np.log10(np.maximum(power[peak - 1 : peak + 2], 1e-300))
    offset = 0.5 * (db[0] - db[2]) / (db[0] - 2.0 * db[1] + db[2])
    hz = (peak + offset) * step
    around = power[int((mains - NEIGHBOURHOOD_HZ) / step) : int((mains + NEIGHBOURHOOD_HZ) / step)]
    floor = float(np.median(around))
    if abs(hz - mains) > TOLERANCE_HZ or floor <= 0.0 or 10.0 * np.log10(power[peak] / floor) < LINE_DB:
        return None
    return float(hz), peak
