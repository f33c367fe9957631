"""Where the note sounds in a recording: the silence a person leaves before and after playing.

A user's WAV is rarely cut at the note's onset, as every training render is: a recording starts
when the button is pressed. The instrument window is the note's first second, so 0.2-1.5 s
of room noise before the note moved it off the attack and cost most instrument answers
(FluidR3Mono played by FluidSynth 96.2 -> 36.8 %, real recordings 42.4 -> 16.3 %; bench/RESULTS.md,
"Silence before the note"). `note_span` finds the note as librosa.effects.trim does, by the
level of short frames, but calls an edge silent only when it is far below the note's peak, so a
note that starts at once (every render, every trimmed sample) keeps its first frame.

Pure numpy: 1.9 ms for a 5-s note at 44.1 kHz (2026-12-03, load 0.2), so the ETL and the predictor run it on every file.
"""

from __future__ import annotations

import numpy as np

FRAME_SECONDS = 0.01
"""Length of the frames whose level is compared."""
EDGE_SECONDS = 0.05
"""The level of an edge of the file is the median over its first (or last) 50 ms."""
EDGE_QUIET_DB = 25.0
"""An edge at least this far below the peak is silence before (or after) the note; a louder edge
is the note itself, and the span reaches the file's edge."""
RISE_DB = 6.0
"""The note starts at the first frame this far above the silent edge (and ends after the last)."""
FLOOR_BELOW_PEAK_DB = 60.0
"""Frames further below the peak than this never count as the note (digital silence at the edge)."""


def frame_levels(y: np.ndarray, hop: int) -> np.ndarray:
    """dB power of consecutive `hop`-sample frames (the mean removed: a DC offset is not sound)."""
    n = len(y) // hop
    frames = (np.asarray(y[: n * hop], dtype=np.float64) - float(np.mean(y))).reshape(n, hop)
    return 10 * np.log10(np.mean(frames**2, axis=1) + 1e-20)


def _first_sounding(levels: np.ndarray, edge: int, peak: float) -> int:
    """Frames of silence before the note, reading `levels` from its start."""
    quiet = float(np.median(levels[:edge]))
    if quiet > peak - EDGE_QUIET_DB:
        return 0
    sounding = np.flatnonzero(levels >= max(quiet + RISE_DB, peak - FLOOR_BELOW_PEAK_DB))
    return int(sounding[0]) if len(sounding) else 0


def note_span(y: np.ndarray, sample_rate: int) -> tuple[float, float]:
    """(start, end) in seconds of the part of `y` where the note sounds; (0, duration) when no silence frames it."""
    duration = len(y) / sample_rate
    hop = max(1, round(sample_rate * FRAME_SECONDS))
    edge = max(1, round(EDGE_SECONDS / FRAME_SECONDS))
    levels = frame_levels(y, hop)
    if len(levels) < 2 * edge:
        return 0.0, duration
    peak = float(levels.max())
    start = _first_sounding(levels, edge, peak)
    after = _first_sounding(levels[::-1], edge, peak)
    if start + after >= len(levels):
        return 0.0, duration
    return start * hop / sample_rate, (duration if after == 0 else (len(levels) - after) * hop / sample_rate)


HELD_DB = 15.0
"""A note holds while its level (10-ms frames, smoothed over 30 ms) stays within this of its peak..."""
GAP_DB = 30.0
"""...and without a gap: a frame this far under the peak ends it (a repeated note's silence between strokes; a
90 % tremolo dips 20 dB)."""


def held_seconds(y: np.ndarray, sample_rate: int) -> float:
    """Seconds the note in `y` holds: from the first to the last frame within `HELD_DB` of the loudest, without the
    room's echo after it, and no longer than the longest stretch with no gap (`GAP_DB`). A 0.6-s note in SoX's reverb
    sounds 1.1 s by `note_span`'s -60 dB and holds 0.6-1.1 s by this; three 0.3-s notes 0.2 s apart hold 0.3 s; every
    note of the demo's renders and of 172 real recordings holds 1.7 s or more."""
    hop = max(1, round(sample_rate * FRAME_SECONDS))
    if len(y) < hop:
        return 0.0
    levels = np.convolve(np.pad(frame_levels(y, hop), 1, mode="edge"), np.ones(3) / 3, mode="valid")
    held = np.flatnonzero(levels >= levels.max() - HELD_DB)
    return min(held[-1] - held[0] + 1, _longest_run(levels >= levels.max() - GAP_DB)) * hop / sample_rate


def _longest_run(flags: np.ndarray) -> int:
    """The length of the longest run of True in `flags`."""
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return int((np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)).max(initial=0))
