"""How far a note sounds from the note it is named: cents (100 to a semitone), from the waveform's period.

The pitch CNN names the nearest of 89 notes and its calibration was fitted on notes played within ~35 cents of
their names. A note halfway between two (an instrument tuned apart, a slowed recording, a tone generator at
452 Hz) is named either way: real recordings moved by SoX's `speed` 44-50 cents off their notes were named
"sure" and a semitone wrong on 22 of 480 (bench/RESULTS.md, "Between two notes").

The period says where the note sits. YIN (`periodicity.track`) every `HOP_S` over the pitch window, each frame's
frequency folded onto the note (above ~1.3 kHz YIN reads a subharmonic: its whole multiple nearest the note), and
the mean of their cents: a vibrato's swing averages out over its cycles where a few frames' median would land on
one side of it. A steady tone is read again where it repeats after a whole number of periods at least `REFINE_S`
long (the autocorrelation's peak over the window's middle): a fraction of a cent, where YIN's own reading of a short
period is off by 1-3 (A5 at 22 kHz repeats every 25 samples).

Pure numpy: about 1 ms a note.
"""

from __future__ import annotations

import math

import numpy as np

from instropitch.audio import periodicity
from instropitch.audio.wav import resample
from instropitch.tinysol import midi_to_hz

HOP_S = 0.04
"""Seconds between YIN's frames: 25 over the 1-s pitch window, four or more to each cycle of a 6-Hz vibrato (every
20 ms read the same, at twice the cost: 9 ms for A1)."""
HIGHEST_HZ = 3000.0
"""Notes above it (G7 and up) are not read: the low-pass before YIN (`periodicity.CUTOFF_HZ`) takes their
fundamental, and G#7 read 6 cents flat."""
LOWEST_RATIO = 0.45
"""YIN looks for periods up to 1 / (this x the note's frequency): the note's, and the octave under it."""
SUBHARMONIC_HZ = 400.0
"""...and up to 1 / this at least, so that a note above YIN's reach (`periodicity.FMAX_HZ`) shows a subharmonic."""
LOUD_DB = 20.0
"""Frames this far under the window's loudest are the note's tail or the room, and are not read (as in `melody`)."""
BELIEVED_APERIODICITY = 0.3
"""Frames this aperiodic or more are not read (noise, a transition, detuned reeds beating)."""
BELIEVED_SHARE = 0.5
"""The cents are read when at least this share of the frames analysed is believed and near the note (`REACH`)."""
REACH = 0.04
"""How far (a fraction, ~70 cents) a frame's whole multiple may sit from the named note and still be its tuning:
beyond, the period names another note and its cents would mean nothing."""
STEADY_CENTS = 6.0
REFINE_S = 0.02
REFINE_SPAN_S = 0.5
"""A tone whose frames spread less than `STEADY_CENTS` (standard deviation: YIN's own error on a high note is 2-4)
is read again where it repeats after the whole number of periods nearest `REFINE_S`, over `REFINE_SPAN_S` of the
window's middle: there YIN's error of ~0.05 sample on a period is a fraction of a cent. A pitch that wanders keeps
the frames' mean over the whole window (a recorded cello E2 read 40 cents flat so, 44 over the middle half second)."""
SEARCH = 0.006
"""The peak is looked for this far (a fraction: ~10 cents, what YIN's frames miss by on a high note) either side of
where the frames' mean puts it, three samples at least, half a period at most."""
REPEATS = 0.95
"""...and must repeat this well there (the normalised autocorrelation): a steady tone does (0.99 and more); one
that does not keeps the frames' mean."""
FINEST_LAG = 40
"""A period shorter than this many samples is read again on the audio resampled to hold that many: between whole
lags the autocorrelation of a period of 8 samples peaks far above what they read (0.89 for a steady F#7)."""


def cents_off(y: np.ndarray, sample_rate: int, midi: float) -> float | None:
    """How many cents mono audio `y` sounds above (negative: below) MIDI note `midi`, from its period; None when
    too few of its frames hold a believed period near the note (noise, a chord, another note, too short), or the
    note is above `HIGHEST_HZ`."""
    y = np.asarray(y, dtype=np.float64)
    note_hz = float(midi_to_hz(midi))
    if note_hz > HIGHEST_HZ:
        return None
    fmin = min(LOWEST_RATIO * note_hz, SUBHARMONIC_HZ)
    _, frame_midi, aperiodicity, _ = periodicity.track(y, sample_rate, hop_s=HOP_S, quiet_db=LOUD_DB, fmin=fmin)
    analysed = np.isfinite(frame_midi)
    if not analysed.any():
        return None
    frame_hz = midi_to_hz(frame_midi[analysed & (aperiodicity < BELIEVED_APERIODICITY)])
    heard_hz = frame_hz * np.maximum(1, np.round(note_hz / frame_hz))
    near = heard_hz[np.abs(heard_hz / note_hz - 1.0) <= REACH]
    if len(near) < max(1, BELIEVED_SHARE * analysed.sum()):
        return None
    cents = 1200.0 * np.log2(near / note_hz)
    if np.std(cents) >= STEADY_CENTS:
        return float(np.mean(cents))
    span = min(len(y), round(REFINE_SPAN_S * sample_rate))
    middle = y[(len(y) - span) // 2 :][:span]
    heard_hz = sample_rate / _refined_lag(middle, sample_rate / (note_hz * 2 ** (np.mean(cents) / 1200)), sample_rate)
    return float(1200.0 * np.log2(heard_hz / note_hz))


def leaning_neighbour(midi: int, cents: float | None) -> int:
    """The note next to `midi` that a note `cents` off it leans towards (above when sharp, else below)."""
    return midi + (1 if (cents or 0.0) > 0 else -1)


def _refined_lag(y: np.ndarray, lag: float, sample_rate: int) -> float:
    """The period `lag` (samples) read again where `y` repeats after the whole number of them nearest `REFINE_S`:
    the normalised autocorrelation's peak there, parabolic between whole lags, over that number. `lag` itself when
    `y` is too short for it, or does not repeat there by `REPEATS` within `SEARCH`. A short period is read on `y`
    resampled (`FINEST_LAG`)."""
    if lag < FINEST_LAG:
        finer = math.ceil(FINEST_LAG / lag)
        y = resample(y, sample_rate, finer * sample_rate).astype(np.float64)
        return _refined_lag(y, finer * lag, finer * sample_rate) / finer
    periods = max(1, math.ceil(REFINE_S * sample_rate / lag))
    reach = min(max(3, math.ceil(SEARCH * periods * lag)), int(lag // 2))
    lags = np.arange(round(periods * lag) - reach, round(periods * lag) + reach + 1)
    n = len(y) - int(lags[-1])
    if lags[0] < 1 or n < len(y) // 2:
        return lag
    head = y[:n]
    tails = np.stack([y[k : k + n] for k in lags])
    r = tails @ head / np.sqrt(np.sum(tails**2, axis=1) * (head @ head) + 1e-30)
    best = int(np.argmax(r))
    if best in (0, len(r) - 1) or r[best] < REPEATS:
        return lag
    curve = r[best - 1] - 2 * r[best] + r[best + 1]
    shift = 0.5 * (r[best - 1] - r[best + 1]) / curve if curve < 0 else 0.0
    return float((lags[best] + shift) / periods)
