"""Whether a note holds or dies away after its attack: a bowed, blown or bellows note holds, a plucked or
struck string does not.

TinySOL's 14 instruments play held notes (ordinario), and so do the renders the models learn from. A
guitar, piano or harp note is none of them, yet the models answered real recordings of such notes
(npm's tonejs-instrument packages) "Brass, sure" on 57 of 216 (bench/RESULTS.md, "Plucked and struck
notes"). What tells such a note apart needs no model: once struck, every band of its spectrum falls,
the high ones fastest, and evenly, while a held note keeps its level until it is let go; then, in a room,
it drops at once and its echo dies away. `fall_after_attack` measures both.

Pure numpy: ten FFTs in each 0.2-s window compared (three), 1.3-1.5 ms for a 44.1-kHz note (0.8-0.9 ms with two;
AMD EPYC, 2026-12-07, load 0.4-1.2).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from instropitch.audio import trim

FRAME_LEVEL_S = 0.01
"""Length of the frames whose level finds the attack's peak and the steepest fall."""
PEAK_WITHIN_S = 0.5
"""The attack's peak is the loudest 10-ms frame this soon after the note starts (`trim.note_span`)."""
EARLY_S = (0.1, 0.3)
LATE_S = (0.8, 1.0)
"""The two windows compared, in seconds after the attack's peak: just past the attack, and ~0.7 s on."""
LATER_S = (1.8, 2.0)
"""A third window, ~1.7 s on, for a note that sounds so long: a low string rings too long to fall far in a second."""
FRAME_S = 0.04
"""Length of the frames whose spectra are averaged in each window (half overlapping)."""
LOWEST_HZ = 55.0
"""The lowest octave band starts at A1; the bands go up an octave at a time to half the sample rate."""
LIVE_DB = 30.0
"""Bands this far below the loudest band of the early window are left out (nothing there to fall)."""
STEP_S = 0.05
"""The steepest fall is the largest drop of the level (smoothed over 30 ms) in this long, between the windows."""
DIES_AWAY_DB = -8.0
"""A note whose bands fall by this much or more (the median) has died away. Of 3,085 held notes (the demo's renders
of 10 sources, real recordings of 11 instruments) one falls that far, a horn recording; of 216 plucked and struck
recordings, 145, and 123 that fall evenly (`EVEN_DB`; bench/RESULTS.md, "Plucked and struck notes")."""
DIES_AWAY_LATER_DB = -12.0
"""The same by `LATER_S`: a slower fall (~7 dB a second where `DIES_AWAY_DB` asks ~11), so the low strings that ring
long are caught too (E1-D3 of SoX's pluck, an electric bass, a nylon guitar's low notes; 157 of the 216 plucked and
struck recordings in all); of the 3,085 held notes, six more fall so far (a trumpet recording, high viola and oboe
renders): bench/RESULTS.md, "A low string rings long: a third window"."""
ATTACK_FRAME_S = 0.002
ATTACK_BEFORE_S = 0.05
"""Length of the frames whose level times the attack, read from this long before the note starts (`trim.note_span`
starts it at the first 10-ms frame 6 dB over the silence: the rise may have begun under it)."""
STRUCK_ATTACK_S = 0.004
STRUCK_DB = -3.0
"""A note that rises from 20 dB under its peak to 3 dB under within `STRUCK_ATTACK_S` and then falls `STRUCK_DB` or
more by `LATE_S`, evenly, was struck: a plucked bass string's low notes ring too long to fall 8 dB in a second (3 to
6 dB), and read "Brass, sure". Of 3,144 held notes (the demo's renders, real recordings of 11 of TinySOL's
instruments, an organ and a harmonium) 44 renders rise so fast (high accordion notes among them) and none of those
falls 3 dB; 16 of 17 electric-bass recordings rise within 4 ms, none of the 172 held recordings (bench/RESULTS.md,
"A struck attack"). Within a low note's period the 2-ms frames follow its waveform, not its level: its attack reads
in its first cycles, which a plucked string sounds at full strength and a blown or bowed note builds up."""
EVEN_DB = 4.0
EVEN_TIMES = 2.0
"""A fall is even (a string dying away, not a held note let go in a room) when no `STEP_S` of it drops more than
`EVEN_TIMES` its mean drop per `STEP_S` plus 2 dB, nor more than `EVEN_DB` if that is more. Held notes of
0.3-0.8 s in SoX's reverb fall as far as a guitar, but at once: 10 dB in 50 ms (the median) where a plucked
note falls 2; the rule keeps 123 of the 145 plucked notes and 11 of 244 such short notes."""


@dataclass(frozen=True)
class Fall:
    """How a note's level moves in the second after its attack (dB, negative when it falls)."""

    bands_db: float
    """The median over octave bands of the change from `EARLY_S` to `LATE_S` after the peak."""
    steepest_db: float
    """The largest drop of the whole level within `STEP_S`, between the two windows (positive)."""
    mean_step_db: float
    """The mean drop per `STEP_S` over the same stretch (positive when it falls)."""
    later: Fall | None = None
    """The same measured to `LATER_S` instead of `LATE_S`, when the note sounds that long."""
    attack_s: float = float("inf")
    """Seconds from 20 dB under the attack's peak to 3 dB under (`ATTACK_FRAME_S` frames)."""


def fall_after_attack(y: np.ndarray, sample_rate: int, span: tuple[float, float] | None = None) -> Fall | None:
    """How the note in mono audio `y` falls after its attack (to `LATE_S`, and `later` to `LATER_S`); None when it
    sounds too briefly for the second window. `span`: (start, end) seconds of the note, `trim.note_span`'s when not
    given."""
    if len(y) < LATE_S[1] * sample_rate:
        return None
    start, end = span or trim.note_span(y, sample_rate)
    hop = max(1, round(FRAME_LEVEL_S * sample_rate))
    size = round(FRAME_S * sample_rate)
    reach = round((PEAK_WITHIN_S + LATER_S[1]) / FRAME_LEVEL_S)
    first = round(start * sample_rate)  # only what the windows can reach is read
    note = np.asarray(y[first : min(round(end * sample_rate), first + reach * hop + size)], dtype=np.float64)
    frames = min(len(note) // hop, reach)
    if frames == 0:
        return None
    levels = trim.frame_levels(note[: frames * hop], hop)
    peak = int(np.argmax(levels[: round(PEAK_WITHIN_S / FRAME_LEVEL_S)]))
    ends = {late: peak + round(late[1] / FRAME_LEVEL_S) for late in (LATE_S, LATER_S)}
    reached = [late for late, last in ends.items() if last * hop + size <= len(note) and last <= frames]
    if LATE_S not in reached:
        return None
    early = _band_levels(note, sample_rate, peak * hop, EARLY_S, size)
    live = early > early.max() - LIVE_DB

    def fall_to(late: tuple[float, float]) -> Fall:
        last = ends[late]
        change = _band_levels(note, sample_rate, peak * hop, late, size)[live] - early[live]
        smooth = np.convolve(levels[peak + round(EARLY_S[0] / FRAME_LEVEL_S) : last], np.ones(3) / 3, mode="valid")
        step = round(STEP_S / FRAME_LEVEL_S)
        return Fall(
            bands_db=float(np.median(change)),
            steepest_db=float(np.max(smooth[:-step] - smooth[step:])),
            mean_step_db=float((smooth[0] - smooth[-1]) / (len(smooth) - 1) * step),
        )

    later = fall_to(LATER_S) if LATER_S in reached else None
    rise = y[max(0, first - round(ATTACK_BEFORE_S * sample_rate)) : first + peak * hop + hop]
    return dataclasses.replace(fall_to(LATE_S), later=later, attack_s=_attack_s(rise, sample_rate))


def plucked_or_struck(fall: Fall | None) -> bool:
    """Whether a note that falls so (`fall_after_attack`) is one no held instrument plays: it dies away, evenly, by
    `LATE_S` or by `LATER_S`, or it was struck (`STRUCK_ATTACK_S`) and falls evenly a little."""
    return struck_fall(fall) is not None


def struck_fall(fall: Fall | None) -> tuple[float, float] | None:
    """How far (dB, negative) a plucked or struck note has fallen, and by how many seconds after its attack, read at
    the first window that calls it so (`plucked_or_struck`); None for a note that holds."""
    if fall is None:
        return None
    if _dies_evenly(fall, DIES_AWAY_DB) or (fall.attack_s <= STRUCK_ATTACK_S and _dies_evenly(fall, STRUCK_DB)):
        return fall.bands_db, LATE_S[1]
    if fall.later is not None and _dies_evenly(fall.later, DIES_AWAY_LATER_DB):
        return fall.later.bands_db, LATER_S[1]
    return None


def _attack_s(rise: np.ndarray, sample_rate: int) -> float:
    """Seconds `rise` (the audio up to the attack's peak) takes from 20 dB under its loudest `ATTACK_FRAME_S` frame to
    3 dB under it."""
    hop = max(1, round(ATTACK_FRAME_S * sample_rate))
    levels = trim.frame_levels(np.asarray(rise, dtype=np.float64), hop)
    if not len(levels):
        return float("inf")
    peak = float(levels.max())
    return float(np.argmax(levels > peak - 3.0) - np.argmax(levels > peak - 20.0)) * hop / sample_rate


def _dies_evenly(fall: Fall, by_db: float) -> bool:
    return fall.bands_db <= by_db and fall.steepest_db <= max(EVEN_DB, EVEN_TIMES * fall.mean_step_db + 2.0)


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
