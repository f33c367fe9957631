"""More than one note in a file: a scale, a phrase or a melody handed in where one note is asked for.

The models name one note per file; `features` places both windows on one stretch of the sounding
part. Given three notes in a row they answer for whichever the windows fall on, and the pitch
answer can look sure while the user asked about another note. `notes_held` reads the file's
pitch over time (`periodicity.track`, YIN every 100 ms at ~8 kHz, after a first look at 12 frames
finds the pitch moving) and splits it where it moves to another note and stays there;
`several_notes_warning` says so in words, with where each note starts. About 1 ms for a 6-s note
(bench/RESULTS.md, "Several notes in one file").

Conservative on purpose: a single note's vibrato, a slide into it, a noisy frame, or the period
estimate reading a harmonic or a subharmonic of the note (above ~1.3 kHz it can only see
subharmonics) must never read as a second note. So a note must hold its pitch (within
`STEADY_SEMITONES`) for `MIN_NOTE_S` in frames that are periodic and loud, and two notes whose
frequencies are in a whole ratio (2, 3, ... `HARMONIC_RATIOS`: an octave, a twelfth, ...) count as one:
a phrase that only leaps by such intervals is not flagged.

A pitch that never holds, a glide (a siren, a slide), is no note to name either: `glide` finds one
where the answer is read, from the same track.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from instropitch.audio import periodicity
from instropitch.tinysol import midi_to_pitch

ANALYSIS_RATE = 8_000
"""About the rate the pitch is tracked at (`_decimated`): periods up to `periodicity.FMAX_HZ` under its 4 kHz
low-pass, at a fraction of the cost of 44.1 kHz."""
HOP_S = 0.1
"""Seconds between the frames read: a note of `MIN_NOTE_S` spans three of them."""
MAX_FRAMES = 100
"""A long file is tracked with a longer hop, so that it costs no more than this many frames."""
FMIN_HZ = 27.0
"""The lowest note looked for: A0 (27.5 Hz), just above; the FFTs stay 1,024 points long at 8.8 kHz."""
PROBE_FRAMES = 12
"""Frames of the first look (`_pitch_moves`) that decides whether the whole file is tracked."""
MIN_FRAMES = 3
"""A note holds its pitch over this many frames at least (besides `MIN_NOTE_S`)."""

MIN_NOTE_S = 0.25
"""The shortest note counted: a grace note or the scoop of an attack is shorter."""
STEADY_SEMITONES = 0.6
"""How far a frame may stray from the note's mean so far and still belong to it (vibrato is ±0.1-0.5)."""
DISTINCT_SEMITONES = 0.8
"""Two notes at least this far apart (and not in a whole ratio, `HARMONIC_RATIOS`) are two notes."""
PERIODIC = 0.2
"""Frames whose YIN aperiodicity is above this (noise, a transition, reverberation) belong to no note."""
LOUD_DB = 20.0
"""Frames this far below the loudest are the tail or the room, not a note."""
HARMONIC_RATIOS = (2, 3, 4, 5, 6)
"""Frequency ratios under which two readings may be one note's harmonic and the note (or it and its subharmonic)."""
GLIDE_SEMITONES = 1.5
GLIDE_STEPS = 3
GLIDE_STEP = (0.08, 2.5)
"""A glide (`glide`): the pitch moves `GLIDE_SEMITONES` or more one way over `GLIDE_STEPS` frames or more, each
step `GLIDE_STEP` semitones (per `HOP_S`). A glide A3 -> A4 over 1.5 s moves 8 in the pitch window; a slow one,
3 semitones in 1.8 s, 1.7 (it was read as held notes, "sure", under 2 semitones and 0.15 a step). On 3,085 held
notes no frame run of 0.08 a step goes one way at all; wide vibrato (+-0.5) turns back within a semitone
(bench/RESULTS.md, "A pitch that glides", "A slow glide")."""


@dataclass(frozen=True)
class HeldNote:
    """One note of a file: where it sounds (s) and its pitch (the median over its frames, fractional MIDI)."""

    start_s: float
    end_s: float
    midi: float

    @property
    def name(self) -> str:
        return midi_to_pitch(int(round(self.midi)))


def _runs(times: np.ndarray, midi: np.ndarray, usable: np.ndarray, hop: float) -> list[HeldNote]:
    """Stretches of consecutive usable frames within `STEADY_SEMITONES` of their running mean."""
    runs: list[HeldNote] = []
    members: list[float] = []
    total, start = 0.0, 0.0

    def close(end: float) -> None:
        if len(members) >= MIN_FRAMES and end - start >= MIN_NOTE_S:
            runs.append(HeldNote(start, end, float(np.median(members))))

    for t, m, ok in zip(times, midi, usable, strict=True):
        if ok and members and abs(m - total / len(members)) <= STEADY_SEMITONES:
            members.append(m)
            total += m
            continue
        close(t)
        members, total, start = ([m], m, t) if ok else ([], 0.0, t)
    close(times[-1] + hop if len(times) else 0.0)
    return runs


def _merge(runs: list[HeldNote]) -> list[HeldNote]:
    """Neighbouring runs at the same pitch (split by a noisy frame) as one note."""
    merged: list[HeldNote] = []
    for run in runs:
        if merged and abs(run.midi - merged[-1].midi) <= STEADY_SEMITONES:
            last = merged[-1]
            merged[-1] = HeldNote(last.start_s, run.end_s, last.midi)
        else:
            merged.append(run)
    return merged


def _decimated(y: np.ndarray, sample_rate: int) -> tuple[np.ndarray, float]:
    """`y` at about `ANALYSIS_RATE` and that rate: the mean of each k samples.

    A crude low-pass beside soxr's, but the track reads periods under 1.3 kHz, and it costs a
    fifth of resampling the whole file.
    """
    k = max(1, int(sample_rate // ANALYSIS_RATE))
    y = np.asarray(y, dtype=np.float32)
    n = len(y) // k
    total = sum(y[i : n * k : k] for i in range(k))  # a strided sum: faster than a reshaped mean
    return np.asarray(total, dtype=np.float64) / k, sample_rate / k


@dataclass(frozen=True)
class PitchCourse:
    """A file's pitch over time: fractional MIDI every `hop` s from `times`, and which frames are periodic and loud."""

    times: np.ndarray
    midi: np.ndarray
    usable: np.ndarray
    hop: float


def pitch_course(y: np.ndarray, sample_rate: int) -> PitchCourse | None:
    """The pitch of mono audio `y` over time; None when a first look (`_pitch_moves`) finds one pitch all along,
    as in nearly every file handed in."""
    if len(y) < 2 * MIN_NOTE_S * sample_rate or not _pitch_moves(y, sample_rate):
        return None
    y, rate = _decimated(y, sample_rate)
    hop = max(HOP_S, len(y) / rate / MAX_FRAMES)
    times, midi, aperiodicity, _ = periodicity.track(y, rate, hop_s=hop, quiet_db=LOUD_DB, fmin=FMIN_HZ)
    return PitchCourse(times, midi, aperiodicity < PERIODIC, hop)


def notes_held(y: np.ndarray, sample_rate: int) -> list[HeldNote]:
    """The notes of mono audio `y`, in order: each held `MIN_NOTE_S` or longer in periodic, loud frames."""
    return held_notes(pitch_course(y, sample_rate))


def held_notes(course: PitchCourse | None) -> list[HeldNote]:
    """The notes a `pitch_course` holds, in order (none when it found one pitch all along)."""
    if course is None:
        return []
    return _merge(_runs(course.times, course.midi, course.usable, course.hop))


def glide(course: PitchCourse | None, window: tuple[float, float]) -> tuple[float, float] | None:
    """(from, to) MIDI of the longest glide of `course` within `window` (s): usable frames one after the other, each
    `GLIDE_STEP` semitones one way of the last, at least `GLIDE_STEPS` steps and `GLIDE_SEMITONES` in all; None if
    there is none. Vibrato turns back within a step or two; a high note read at its subharmonics jumps."""
    if course is None:
        return None
    inside = course.usable & (course.times >= window[0] - course.hop / 2) & (course.times <= window[1])
    best, run = None, [0]
    for i in range(1, len(course.midi)):
        step = course.midi[i] - course.midi[i - 1]
        way = np.sign(step)
        if not (inside[i] and inside[i - 1] and GLIDE_STEP[0] <= abs(step) <= GLIDE_STEP[1]):
            run = [i]
            continue
        if len(run) > 1 and np.sign(course.midi[run[-1]] - course.midi[run[-2]]) != way:
            run = [i - 1]
        run.append(i)
        moved = abs(course.midi[run[-1]] - course.midi[run[0]])
        if len(run) > GLIDE_STEPS and moved >= GLIDE_SEMITONES and (best is None or moved > abs(best[1] - best[0])):
            best = (float(course.midi[run[0]]), float(course.midi[run[-1]]))
    return best


def glide_warning(moved: tuple[float, float] | None, window: tuple[float, float]) -> str | None:
    """What to tell a user whose pitch glides where the answer was read (`glide`): a siren, a slide, a bend."""
    if moved is None:
        return None
    start, end = (midi_to_pitch(int(round(m))) for m in moved)
    return (
        f"the pitch glides from {start} to {end} where the answer was read ({max(window[0], 0.0):.2f}-"
        f"{window[1]:.2f} s): no held note there, so the pitch answer is not sure"
    )


def _pitch_moves(y: np.ndarray, sample_rate: int) -> bool:
    """A first look at `PROBE_FRAMES` frames spread over the file: do two of its readings differ (not in a whole ratio)?

    Only those frames are decimated and read, a fifth of the cost of tracking the whole file.
    """
    k = max(1, int(sample_rate // ANALYSIS_RATE))
    length = periodicity.track_frame(sample_rate / k, FMIN_HZ)  # decimated samples
    if len(y) < length * k:
        return False
    starts = np.linspace(0, len(y) - length * k, PROBE_FRAMES).astype(int)
    frames = np.concatenate([_decimated(y[s : s + length * k], sample_rate)[0] for s in starts])
    rate = sample_rate / k
    _, midi, aperiodicity, _ = periodicity.track(frames, rate, hop_s=length / rate, quiet_db=LOUD_DB, fmin=FMIN_HZ)
    heard = midi[aperiodicity < PERIODIC]
    return any(not _related(abs(m - heard[0])) for m in heard[1:])


def _related(apart: float) -> bool:
    """Are two pitches `apart` semitones one note read twice: the same, or in a whole ratio (`HARMONIC_RATIOS`)?"""
    return any(abs(apart - 12 * np.log2(ratio)) < DISTINCT_SEMITONES for ratio in (1, *HARMONIC_RATIOS))


def distinct(a: HeldNote, b: HeldNote) -> bool:
    """Two notes, not one note read twice (at a harmonic or a subharmonic of itself)."""
    return not _related(abs(a.midi - b.midi))


def several_notes_warning(
    notes: list[HeldNote], window: tuple[float, float], answer_midi: float | None = None
) -> str | None:
    """What to tell a user whose file holds more than one note, or None when it holds one.

    `window` is the (start, end) in seconds the pitch answer was read from. With the pitch answer
    (`answer_midi`), a reading under it in a whole ratio is that note's subharmonic (a note above
    the period estimate's reach, ~E6, is read only so), not a note of its own.
    """
    if answer_midi is not None:
        below = [answer_midi - n.midi for n in notes]
        notes = [n for n, d in zip(notes, below, strict=True) if d < DISTINCT_SEMITONES or not _related(d)]
    if not any(distinct(a, b) for i, a in enumerate(notes) for b in notes[i + 1 :]):
        return None
    listed = ", ".join(f"{n.name} at {n.start_s:.2f} s" for n in notes)
    return (
        f"holds {len(notes)} notes ({listed}); the answer is for one note, read from {max(window[0], 0.0):.2f}-"
        f"{window[1]:.2f} s: cut the file to the note you mean"
    )
