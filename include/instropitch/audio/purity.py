"""How much of a note is its strongest partial: a tone generator's sine is all of it, an instrument never.

Every instrument the models know sounds overtones, breath, bow or reed noise, and its room; a sine from a tone
generator sounds none. Yet the demo's champions answered SoX's sines "Brass, sure" (12 of 78 held 1 s with session
56's, 56 of 78 of 80 ms with session 59's: bench/RESULTS.md, "A pure tone or a short one"). `impurity_db` measures
what lies outside the strongest partial: 80 dB or more below it for SoX's sines, at most 29 dB below for held notes
and real recordings (one tuba render 41.5).

`lowest_fundamental_hz` reads the same spectrum for the lowest fundamental its strong partials allow: a note above
the highest one the pitch model names (C#8) cannot be named, and was named an octave or more down, sure.

Pure numpy (the slim install has no SciPy): one FFT of the pitch window (0.5 s).
"""

from __future__ import annotations

import numpy as np

PARTIAL_BAND = 0.03
"""The strongest partial is the power within 3 % of its frequency, and at least within `LOBE_BINS` FFT bins."""
LOBE_BINS = 5
"""The Blackman-Harris window's main lobe is 4 bins either side; past it, its leakage is 92 dB down."""
LOWEST_HZ = 30.0
"""Below this the spectrum is left out: a DC offset or rumble is not part of a tone."""


def blackman_harris(n: int) -> np.ndarray:
    """The 4-term Blackman-Harris window (symmetric, as `scipy.signal.windows.blackmanharris`)."""
    phase = 2.0 * np.pi * np.arange(n) / max(n - 1, 1)
    return 0.35875 - 0.48829 * np.cos(phase) + 0.14128 * np.cos(2 * phase) - 0.01168 * np.cos(3 * phase)


def _power(y: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray, float] | None:
    """(power, Hz, bin width in Hz) of `y`'s Blackman-Harris spectrum, nothing below `LOWEST_HZ`; None when too
    short to tell."""
    y = np.asarray(y, dtype=np.float64)
    if len(y) < 64:
        return None
    power = np.abs(np.fft.rfft((y - y.mean()) * blackman_harris(len(y)))) ** 2
    hz = np.fft.rfftfreq(len(y), 1.0 / sample_rate)
    power[hz < LOWEST_HZ] = 0.0
    return power, hz, sample_rate / len(y)


def impurity_db(y: np.ndarray, sample_rate: int) -> float | None:
    """dB of the power outside the strongest partial relative to the power in it (-inf: nothing else; None: silence
    or too short to tell)."""
    spectrum = _power(y, sample_rate)
    if spectrum is None:
        return None
    power, hz, step = spectrum
    peak = int(np.argmax(power))
    if power[peak] <= 0.0:
        return None
    band = np.abs(hz - hz[peak]) <= max(PARTIAL_BAND * hz[peak], LOBE_BINS * step)
    inside, outside = float(power[band].sum()), float(power[~band].sum())
    return 10.0 * np.log10(outside / inside) if outside > 0.0 else float("-inf")


STRONG_DB = 30.0
"""A partial within this much of the strongest one counts: a note's fundamental, or enough of its harmonics to imply
it, stands that high."""


def lowest_fundamental_hz(y: np.ndarray, sample_rate: int) -> float | None:
    """The lowest fundamental the strong partials of `y` allow (Hz): the lowest partial, or the least spacing of two
    neighbouring ones (harmonics 2-8 alone still imply their fundamental); None for silence or too short to tell.

    Peaks within `PARTIAL_BAND` of the one below are one partial (an accordion's beating reeds, a vibrato's smeared
    line, a chorus's split one); a spacing only ever lowers the figure."""
    spectrum = _power(y, sample_rate)
    if spectrum is None or spectrum[0].max() <= 0.0:
        return None
    power, hz, _ = spectrum
    strong = power >= power.max() * 10.0 ** (-STRONG_DB / 10.0)
    peaks = hz[1:-1][strong[1:-1] & (power[1:-1] >= power[:-2]) & (power[1:-1] > power[2:])]
    if len(peaks) == 0:
        return None
    partials = [float(peaks[0])]
    for hz_peak in peaks[1:]:
        if hz_peak > partials[-1] * (1.0 + PARTIAL_BAND):
            partials.append(float(hz_peak))
    return min(partials[0], float(np.diff(partials).min(initial=partials[0])))
