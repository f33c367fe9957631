"""A second opinion on the note from the waveform's period, for the answers the pitch CNN may get wrong.

The CNN reads a 1-s spectrogram. Two kinds of tone defeat it: a note much shorter than the
window (80 ms of a low note cannot resolve a semitone in the spectrum) and a tone whose
fundamental is missing (it may answer an octave up). The period measured in the time domain
(`audio.periodicity`, YIN) has neither weakness, but has its own (a subharmonic above
~1.3 kHz, noise), so it is asked only when the CNN's answer may be wrong: a short note, or a
pitch answer below its "sure" threshold (which is where the CNN's low-register misses on pure
tones fall, now that its calibration is not sharpened: bench/RESULTS.md). On real notes that
is under 1 % of them, so the check costs next to nothing there. Its answer is a likelihood over the notes that
multiplies the CNN's calibrated probabilities (Bayes' rule, the two taken as independent):
when they agree nothing changes but the confidence, when they disagree the CNN has to have
given the period's note some weight for it to win. The CNN's probabilities count in
proportion to how much of its window the note fills (raised to that fraction): an 80 ms note
in a 1-s window is a smeared spectrum, and its confident neighbour-semitone answer is the
known failure, not evidence.

One check runs on every note, because the CNN can be sure and still wrong: a tone whose
fundamental is missing read an octave or two up with 0.9995 (bench/RESULTS.md). A note repeats
after its period whatever its timbre, so when the waveform does not repeat at the CNN's answer
(`audio.periodicity.repeats`) that answer cannot be the pitch, and the highest note whose
period it does repeat at is taken instead (`repeated_note`); a clean tone that repeats almost
exactly a semitone away from the answer is that semitone; and an answer (or a measured period)
with nothing at its own fundamental under a strong partial that is a whole multiple of it, and
nothing at its harmonics between, is a subharmonic of that partial (`subharmonic_note`: aliased
tone-generator waves, a pure tone answered a twelfth down); and an answer whose octave below repeats as
well, with a peak at 1.5 times the answer's fundamental (that lower note's 3rd harmonic, no harmonic of the
answer), is that lower note (`octave_below_note`: low strings whose 2nd and 4th harmonics are their loudest).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from instropitch.audio import tuning
from instropitch.audio.periodicity import FMAX_HZ, PARTIAL_TOLERANCE, Periodicity, Repeats
from instropitch.tinysol import hz_to_midi, midi_to_hz

SHORT_NOTE_S = 0.5
"""A note shorter than this fills under half of the 1-s pitch window: its period is always checked."""
APERIODICITY_GATE = 0.7
"""Above this the period is not believed (noise, a chord, a bell's inharmonic partials). Noise
reads 0.75-0.91 (white) and 0.76+ (pink, brown) in 9 of 10 draws; real notes the CNN was unsure
of read up to 0.67 with the right period (a breathy flute in a room, notes under noise at 0 dB
SNR): bench/RESULTS.md, "Noisy notes". The gate was 0.2, which threw those periods away."""
SIGMA_SEMITONES = 0.3
"""Spread of the likelihood around the measured pitch: tuning, vibrato, the estimate's error."""
FLOOR = 0.0002
"""The likelihood of a note far from the measured one (an error of the period estimate). Over the 88
classes it sums to ~2 % of the peak's: about how often a period believed is wrong (every bench set
reads >= 97 % exact with the check). 0.005 summed to 44 %, so an 80 ms note, where the period alone
decides, was shown at ~70 % and "not sure" however clean (bench/RESULTS.md, "Sure means sure")."""
TOP_MIDI = float(hz_to_midi(FMAX_HZ))
"""The CNN answering above this may be right where the period estimate cannot see (its subharmonic)."""


REPEAT_MISSED = 0.5
"""Under this the waveform does not repeat at a note's period. Real notes repeat at their own with
0.81 or more (2,037 notes, six libraries through FluidSynth and ours), 0.53 or more under the
project's rooms and microphones (3,650 notes; 1 % under 0.76): bench/RESULTS.md."""
REPEAT_FOUND = 0.9
"""At or above this it does (a tone from a generator: 1.0)."""
REPEAT_EXACT = 0.98
"""A waveform repeating this well at a neighbouring note's period is a clean tone (real notes under
rooms never reached it next to a right answer: bench/RESULTS.md)."""
NEIGHBOUR_MARGIN = 0.05
"""How much better than at the answer's period the neighbour must repeat to take its place."""
SUBHARMONIC_DB = -35.0
"""A note's fundamental this far under its strongest partial is absent, when that partial is above
`FMAX_HZ`: the answer is a subharmonic. Real notes whose strongest partial is up there read -26 dB
or more at their fundamental (558 of 15,620 notes of eight libraries, rooms and noise included);
aliased squares, sawtooths and pulses answered an octave or more down read -39 dB or less
(bench/RESULTS.md, "Pitch: aliased tones"). Lower down, real bass notes read as low as -49 dB: there,
and up to the 4th multiple in any register, the harmonics between must be silent too (`SOUNDING_HARMONIC_DB`)."""
SOUNDING_HARMONIC_DB = -24.0
"""A note's harmonic between the strongest partial's multiples at or above this (under the strongest) sounds:
the answer is a note, not a subharmonic, however silent its fundamental. A room can notch a fundamental
(a clarinet E6 in a simulated room read -45 dB at it) but not every harmonic. Real notes whose strongest
partial is their 2nd to 4th harmonic read -18 dB or more at the loudest of the others above `FMAX_HZ`
(151 notes: the demo's 2,913 renders and eight outside sets, three in rooms), -17 dB or more below it where
the fundamental is silent (bass notes, 10); aliased waves answered an octave, a twelfth or two octaves down
read -29 dB or less (583 answers): bench/RESULTS.md, "Pitch: a room's notch is not a subharmonic"."""
SILENT_BETWEEN_MULTIPLES = 4
"""A strongest partial up to this multiple of the answer: the answer is its subharmonic only when the harmonics
between are silent too (`_sounding_harmonic`), and then in any register (a pure F3 answered A#1, a twelfth
down, is such a subharmonic at 175 Hz). Further up there are too many places between, and an aliased wave's
fold-backs land near one of them (2,538 of 6,814 answers five or more times under the partial read -24 dB or
more there): the answer is a subharmonic only above `FMAX_HZ` and on its silent fundamental alone."""
HARMONIC_TOLERANCE = 0.005
"""How near a whole multiple of the strongest partial's submultiple a harmonic is looked for (a fraction), the
fundamental too: an aliased wave's fold-backs land at random places, so a wide band would catch them (3 %: -9 dB;
a SoX square 20 cents under D#7, answered an octave down, read -25.6 dB within 3 % of the answer's fundamental and
nothing within 0.5 % of its partial's half, where a real note's fundamental sits: bench/RESULTS.md, "The nearest
note")."""
FIFTH_FUNDAMENTAL_DB = -42.0
FIFTH_SILENT_DB = -35.0
"""Two notes a fifth apart (C4 + G4) are the 2nd and 3rd harmonics of the period they share (C3), which is
what a note with a missing fundamental sounds too; but a note sounds its 5th and 7th harmonics, and the fifth
has nothing there. Under these (below the strongest partial) at the period's fundamental and at its 5th and 7th
harmonics, with its 2nd and 3rd sounding (`SOUNDING_HARMONIC_DB`), the period is the fifth's: SoX fifths of
sines, triangles, squares, sawtooths and plucks read -48 dB or less at the fundamental and -38 dB or less at the
5th and 7th; of 3,085 held notes (the demo's renders, 172 recordings) the nearest, a recorded cello E2, reads
-32 dB at its fundamental, -39 and -38 dB at its 5th and 7th (bench/RESULTS.md, "Two notes a fifth apart")."""
OCTAVE_BELOW_DB = -27.0
OCTAVE_PEAK_DB = 3.0
"""A partial at 1.5 times the answer's fundamental at or above `OCTAVE_BELOW_DB` (under the strongest partial), and
`OCTAVE_PEAK_DB` above the spectrum half a harmonic either side of it (1.25 and 1.75 times), is the 3rd harmonic of the
note an octave below, which no harmonic of the answer sounds (`octave_below_note`). Of 7,308 notes answered right
(the demo's 2,913 renders; the 172 real recordings as they are, cut after 0.3 and 0.6 s, and with eight of
`bench_effects.py`'s effects; MS Lite's renders with those effects), none but four under mains hum reads so where
the octave below repeats as well: a real contrabass's bow noise, an echo or a reverb make a plateau there (up to
-20.6 dB, but at most 1.8 dB above its sides), not a peak. Low strings and a bassoon whose 2nd and 4th harmonics
are their loudest, read an octave up by the CNN held out of their font, read -18.0 to -26.1 dB, 4.9 to 32 dB above
the sides (bench/RESULTS.md, "An octave up: a low string's odd harmonics")."""
NEAREST_CENTS = 50.0
"""A note that sounds more than this many cents off the note it is named (`audio.tuning.cents_off`) is nearer the next
one, and a note's name is the nearest note's. The CNN learned from notes within ~35 cents of their names; SoX sines
and squares 40 cents flat or sharp at MIDI 79-90 were named the far neighbour, 60 cents off (bench/RESULTS.md,
"The nearest note"). No held note is named so: the 172 real recordings read at most 39.6, the 2,913 renders 49.8."""
DIP_LAGS = 64
"""Lags read between 0 and a period to find the waveform's dip (a zero-mean periodic waveform's
autocorrelation averages 0 over a period, so it sits under 0.5 for at least a third of it)."""


class PeriodCheck(NamedTuple):
    """What the period says about one note: a likelihood over the pitch classes, the CNN's weight, the f0."""

    likelihood: np.ndarray
    cnn_weight: float
    f0_hz: float | None
    """The period's frequency the check went by; None where the waveform has none (`unrepeated`)."""
    shared: bool = False
    """The period is one several notes sounding at once share (`shared_period`): it names none of them."""
    fifth: bool = False
    """The notes sharing it are a fifth apart (`fifth_period`): its 2nd and 3rd harmonics."""
    unrepeated: bool = False
    """The waveform repeats at no note's period, the answer's included (`unrepeated`): no one note sounds steadily."""


def needs_check(duration_s: float, top_probability: float, threshold: float) -> bool:
    """Whether a note's pitch answer should be checked against its period."""
    return duration_s < SHORT_NOTE_S or top_probability < threshold


def likelihood(
    period: Periodicity | None, class_midis: np.ndarray, cnn_top_midi: float, repeats: Repeats | None = None
) -> np.ndarray | None:
    """P(measured period | note) over the classes, or None when the period says nothing worth using: none to
    believe (`no_period`), the CNN answering above the estimate's reach, or a waveform that does not repeat at
    it (`REPEAT_MISSED`, read on `repeats`, when given).

    A note repeats after its period, and real notes do at 0.53 or more; YIN's period of a low real note
    stopped after 0.3 s (its bowed or blown attack, aperiodicity 0.48-0.67) was a fourth to two octaves
    above it, where the waveform repeats at -0.21 to 0.52, and outweighed a right CNN: 6 of the 8 misses of the 172
    real recordings cut so (bench/RESULTS.md, "An octave up: a low string's odd harmonics")."""
    if no_period(period) or cnn_top_midi > TOP_MIDI:
        return None
    if repeats is not None and float(np.nan_to_num(repeats.at([1.0 / period.f0_hz]), nan=-1.0)[0]) < REPEAT_MISSED:
        return None
    return likelihood_at(period.midi, class_midis)


def no_period(period: Periodicity | None) -> bool:
    """Whether the waveform has no period worth believing: none measured, or one above `APERIODICITY_GATE`."""
    return period is None or period.aperiodicity > APERIODICITY_GATE


def unpitched(period: Periodicity | None, repeats: Repeats | None, answer_midi: float) -> bool:
    """Whether a waveform whose pitch answer is not sure holds no pitched note: no period to believe
    (`no_period`), and it does not repeat at the answer's either (`repeats_at`)."""
    return no_period(period) and not repeats_at(repeats, answer_midi)


def repeats_at(repeats: Repeats | None, midi: float) -> bool:
    """Whether the waveform repeats at note `midi`'s period (`REPEAT_MISSED` or better, after a dip under it).

    Unlike the period estimate, this sees notes above its reach (`FMAX_HZ`): a missing-fundamental G7 does
    repeat at its own period, where the estimate, low-passed at 4 kHz, finds none.
    """
    if repeats is None:
        return False
    period = float(_periods([midi])[0])
    r = float(np.nan_to_num(repeats.at([period]), nan=-1.0)[0])
    return r >= REPEAT_MISSED and _dips_before(repeats, period)


def window_fill(duration_s: float, window_s: float) -> float:
    """The share of the pitch window the note fills (0..1]: the weight of the CNN's answer."""
    return float(min(1.0, max(duration_s, 1e-3) / window_s))


def combine(probabilities: np.ndarray, evidence: np.ndarray | None, cnn_weight: float = 1.0) -> np.ndarray:
    """probabilities ** cnn_weight times the period's likelihood, renormalised (unchanged without evidence)."""
    if evidence is None:
        return probabilities
    cnn = probabilities if cnn_weight >= 1.0 else np.power(np.clip(probabilities, 1e-300, 1.0), cnn_weight)
    posterior = cnn * evidence
    total = posterior.sum()
    return posterior / total if total > 0 else probabilities


def _periods(midis: np.ndarray) -> np.ndarray:
    return 1.0 / midi_to_hz(midis)


def repeated_note(repeats: Repeats | None, class_midis: np.ndarray, cnn_top_midi: float) -> float | None:
    """The note the waveform repeats at, when that cannot be the CNN's answer; else None.

    A note repeats at every multiple of its period too, so its pitch is the shortest period the
    waveform repeats at: scanning the classes from the highest down, the first run at or above
    `REPEAT_FOUND` after a dip under `REPEAT_MISSED` (`_shortest_period_note`), unless that note is
    a silent subharmonic of the strongest partial (`subharmonic_note`). The answer's own
    period counts only when the waveform dips somewhere before it (`_dips_before`): without the
    dip a smooth, low-lying waveform (a 52 Hz sine, a rumble) "repeats" at every short lag, and
    the CNN's B7 for that sine would stand. Three cases replace the answer:
    - the waveform does not repeat at the answer's period: the shortest period it repeats at;
    - it does, and a neighbouring semitone repeats almost exactly (`REPEAT_EXACT`) and clearly
      better (`NEIGHBOUR_MARGIN`): the CNN's semitone slips on pure tones (unless that semitone is a silent
      subharmonic of the strongest partial in turn);
    - it does, but the answer is a silent subharmonic of the strongest partial (`subharmonic_note`):
      an aliased square or sawtooth wave from a tone generator read an octave or a twelfth down.
    An answer an octave below stays: it repeats too, and real notes repeat at half their period
    as well as a square wave does (bassoons 0.98, bench/RESULTS.md, "Pitch: a period needs a dip").
    An answer an octave above is `octave_below_note`'s.
    """
    if repeats is None:
        return None
    periods = _periods([cnn_top_midi, cnn_top_midi - 1, cnn_top_midi + 1])
    here, below, above = np.nan_to_num(repeats.at(periods), nan=-1.0)
    if here < REPEAT_MISSED or not _dips_before(repeats, float(periods[0])):
        return _unless_subharmonic(repeats, class_midis, _shortest_period_note(repeats, class_midis))
    classes = set(np.asarray(class_midis, dtype=np.float64).tolist())
    best, r = (cnn_top_midi - 1, below) if below >= above else (cnn_top_midi + 1, above)
    if best in classes and r >= REPEAT_EXACT and r > here + NEIGHBOUR_MARGIN:
        return _unless_subharmonic(repeats, class_midis, best)
    return subharmonic_note(repeats, class_midis, cnn_top_midi)


def _unless_subharmonic(repeats: Repeats, class_midis: np.ndarray, note: float | None) -> float | None:
    """`note`, a note the waveform repeats at, or the strongest partial's when `note` is its silent subharmonic
    (`subharmonic_note`): a pure F#6 10 cents sharp repeats at B4's period too (three of its own), and a CNN's C5
    next to it was taken for B4, a twelfth down."""
    higher = None if note is None else subharmonic_note(repeats, class_midis, note)
    return note if higher is None else higher


def subharmonic_note(repeats: Repeats | None, class_midis: np.ndarray, midi: float) -> float | None:
    """The note of the strongest partial, when `midi` (the CNN's answer, or a period's) is a subharmonic of it; else None.

    A tone generator's square or sawtooth wave above ~D6 is not band-limited: its harmonics fold
    back under the Nyquist frequency at places that are no harmonic of it, and the CNN may answer
    an octave or a twelfth down, at a period the waveform repeats at too (three periods of E7 are
    one of A5); a pure tone may be answered a twelfth down anywhere. What gives such an answer away
    is that the note it names is silent: nothing at its fundamental (`SUBHARMONIC_DB`, read where the partial's
    submultiple lies, within `HARMONIC_TOLERANCE`, so that a fold-back nearby does not count), while its
    strongest partial, a whole multiple of it, is a note the waveform repeats at; and up to the 4th
    multiple, nothing at its harmonics between the partial's multiples either (`_sounding_harmonic`:
    a clarinet E6 whose 1.3 kHz a room silenced still sounds its 3rd harmonic, a bass note whose
    fundamental is 45 dB under its 2nd partial its 3rd). Further up the partial must lie above the period
    estimate's reach (`FMAX_HZ`), where real notes never have a silent fundamental. A missing-fundamental
    tone has one, but does not repeat at any one of its harmonics' periods.
    """
    if repeats is None:
        return None
    strongest = repeats.strongest_hz
    f0 = 1.0 / float(_periods([midi])[0])
    multiple = round(strongest / f0)
    if multiple < 2 or abs(strongest / (multiple * f0) - 1.0) > PARTIAL_TOLERANCE:
        return None
    if (
        repeats.level_db(strongest / multiple, HARMONIC_TOLERANCE) > SUBHARMONIC_DB
        or float(repeats.at([1.0 / strongest])[0]) < REPEAT_MISSED
    ):
        return None
    if multiple <= SILENT_BETWEEN_MULTIPLES:
        if _sounding_harmonic(repeats, strongest, multiple):
            return None
    elif strongest < FMAX_HZ:
        return None
    note = float(hz_to_midi(strongest))
    midis = np.asarray(class_midis, dtype=np.float64)
    nearest = float(midis[np.argmin(np.abs(midis - note))])
    return nearest if abs(nearest - note) <= 0.5 else None


def _sounding_harmonic(repeats: Repeats, strongest_hz: float, multiple: int) -> bool:
    """Whether a harmonic of the strongest partial's `multiple`-th submultiple that is no multiple of the
    partial (the 3rd under a 2nd, the 2nd, 4th and 5th under a 3rd, ...) sounds (`SOUNDING_HARMONIC_DB`)."""
    f0 = strongest_hz / multiple
    between = [k * f0 for k in range(1, 2 * multiple) if k % multiple and k * f0 < repeats.sample_rate / 2]
    return any(repeats.level_db(hz, HARMONIC_TOLERANCE) >= SOUNDING_HARMONIC_DB for hz in between)


def octave_below_note(
    repeats: Repeats | None, class_midis: np.ndarray, midi: float, hum_hz: float | None = None
) -> float | None:
    """The note an octave below `midi` (the CNN's answer, or a period's), when that is the note sounding; else None.

    A low bowed string may sound its 2nd and 4th harmonics far above its 1st and 3rd (MS Lite's contrabass F#1:
    -25.7, -1.6, -18.8 and 0 dB), and both the CNN and the period estimate may name its octave, whose period the
    waveform repeats at too, sure. But the octave's harmonics are the lower note's even ones: a peak at 1.5 times
    the answer's fundamental (`OCTAVE_BELOW_DB`, `OCTAVE_PEAK_DB`) cannot be the answer's, and with the waveform
    repeating at the lower period at least as well as at the answer's, the lower note is the one heard. Not where
    the lower note is the mains hum's (`at_hum`: the hum's 3rd harmonic is then that peak). Two notes a fifth apart
    sound such a partial too; their answer then moves to the period they share, which `fifth_period` names.
    """
    if repeats is None:
        return None
    lower = float(round(midi)) - 12.0
    if lower not in set(np.asarray(class_midis, dtype=np.float64).tolist()) or at_hum(hum_hz, lower):
        return None
    r_answer, r_lower = np.nan_to_num(repeats.at(_periods([lower + 12.0, lower])), nan=-1.0)
    if r_lower < max(r_answer, REPEAT_MISSED) or not _dips_before(repeats, float(_periods([lower])[0])):
        return None
    f0 = float(midi_to_hz(lower))
    third = repeats.level_db(3.0 * f0, HARMONIC_TOLERANCE)
    sides = max(repeats.level_db(k * f0, HARMONIC_TOLERANCE) for k in (2.5, 3.5))
    return lower if third >= OCTAVE_BELOW_DB and third - sides >= OCTAVE_PEAK_DB else None


def octave_below_check(
    repeats: Repeats | None, class_midis: np.ndarray, cnn_top_midi: float, hum_hz: float | None = None
) -> PeriodCheck | None:
    """`octave_below_note` of the CNN's answer as evidence that decides alone, or None."""
    return _deciding(octave_below_note(repeats, class_midis, cnn_top_midi, hum_hz), class_midis)


def at_hum(hum_hz: float | None, midi: float) -> bool:
    """Whether the note `midi` lies within a semitone of the mains hum found in the file (`audio.hum.mains_hum`):
    then a pitch answer there may be the hum's, not the note's. Only the line frequency counts: with SoX's hum (its 2nd
    and 3rd harmonics 6 dB down) under 333 quiet Merlin renders, every sure answer that named the hum named it there
    (9 of the 18 sure answers within a semitone of 50 or 60 Hz were wrong), while all 35 answers within a semitone of
    the 2nd or 3rd harmonic were right (bench/RESULTS.md, "Mains hum")."""
    return hum_hz is not None and abs(midi - float(hz_to_midi(hum_hz))) < 1.0


def octave_checked(
    repeats: Repeats | None, class_midis: np.ndarray, period: Periodicity | None, hum_hz: float | None = None
) -> Periodicity | None:
    """The measured period, or twice it when its note is the octave of the one sounding (`octave_below_note`):
    YIN too may take a low string's loud 2nd harmonic for its pitch (TimGM6mb's contrabass F2 read F3)."""
    if period is None or octave_below_note(repeats, class_midis, period.midi, hum_hz) is None:
        return period
    return dataclasses.replace(period, f0_hz=period.f0_hz / 2.0)


def _dips_before(repeats: Repeats, period_s: float) -> bool:
    """Whether the waveform's autocorrelation falls under `REPEAT_MISSED` at some lag shorter than `period_s`."""
    lags = period_s * np.arange(1, DIP_LAGS) / DIP_LAGS
    return bool(np.nanmin(repeats.at(lags), initial=1.0) < REPEAT_MISSED)


def _shortest_period_note(repeats: Repeats, class_midis: np.ndarray) -> float | None:
    """The highest class whose period the waveform repeats at (`REPEAT_FOUND`) after a dip, at its peak; or None."""
    midis = np.sort(np.asarray(class_midis, dtype=np.float64))[::-1]
    r = np.nan_to_num(repeats.at(_periods(midis)), nan=-1.0)
    dipped = np.minimum.accumulate(r) < REPEAT_MISSED
    found = np.flatnonzero(dipped & (r >= REPEAT_FOUND))
    if not len(found):
        return None
    i = int(found[0])
    while i + 1 < len(r) and r[i + 1] > r[i]:
        i += 1
    return float(midis[i])


def repeat_check(repeats: Repeats | None, class_midis: np.ndarray, cnn_top_midi: float) -> PeriodCheck | None:
    """`repeated_note` as evidence that decides alone (the CNN's answer is impossible), or None."""
    return _deciding(repeated_note(repeats, class_midis, cnn_top_midi), class_midis)


def subharmonic_check(
    repeats: Repeats | None, class_midis: np.ndarray, period: Periodicity | None, cnn_top_midi: float
) -> PeriodCheck | None:
    """The strongest partial's note as evidence that decides alone, when the measured period is a silent
    subharmonic of it (`subharmonic_note`: YIN reads five periods of an aliased 2.96 kHz square as 592 Hz)
    and the CNN answered another note; else None (the CNN's answer and confidence stand)."""
    note = None if period is None else subharmonic_note(repeats, class_midis, period.midi)
    return None if note == cnn_top_midi else _deciding(note, class_midis)


def shared_period(repeats: Repeats | None, midi: float, cnn_top_midi: float) -> bool:
    """Whether the period of note `midi` is one that several notes sounding at once share, not a note's: nothing
    sounds at its fundamental or its octave (`SUBHARMONIC_DB`), nor at its 3rd harmonic when the period is the
    CNN's own answer.

    A C major triad on C4 repeats only at C2's period (its notes are C2's 4th, 5th and 6th harmonics) and
    was shown as "C2, sure". A missing-fundamental tone sounds its octave; the one real note seen silent at
    both (a bass A1, 2,913 renders and 172 recordings) was answered at that very note by the CNN, so an answer
    that is the period itself must be silent at its 3rd harmonic too: of 3,085 held notes, the one whose first
    three harmonics are quietest sounds one of them at -24 dB, where a dominant 7th answered at its period (F#2
    for F#4 A#4 C#5 E5, its 4th to 7th harmonics) sounds none (bench/RESULTS.md, "Not one note", "A chord
    answered at its period"). Every note sharing the period is one of its harmonics, and so the loudest partial: a
    pure E6 30 cents sharp "repeats" (0.7) at 2.875 of its periods and was called a chord at that A#4.
    """
    if repeats is None:
        return False
    f0 = float(midi_to_hz(midi))
    multiple = round(repeats.strongest_hz / f0)
    if multiple < 2 or abs(repeats.strongest_hz / (multiple * f0) - 1.0) > PARTIAL_TOLERANCE:
        return False  # the notes that share a period are its harmonics, the loudest partial among them
    harmonics = (1, 2, 3) if abs(midi - cnn_top_midi) <= 0.5 else (1, 2)
    return all(repeats.level_db(k * f0) < SUBHARMONIC_DB for k in harmonics)


def unrepeated(repeats: Repeats | None, class_midis: np.ndarray, midi: float) -> bool:
    """Whether the waveform repeats neither at note `midi`'s period (`repeats_at`) nor at any class's
    (`_shortest_period_note`): no one periodic note sounds, whatever the CNN answered.

    Real notes repeat at their own period with 0.53 or more, even in the project's rooms (`REPEAT_MISSED`). A minor
    triad in equal temperament repeats at none (its notes share no period): the CNN answered four of SoX's chords
    "sure" at a note of theirs or under them, and a recorded harp A6 "A#1, sure". Of 3,085 held notes one render
    repeats at no note's period, a cello F2 played pp (bench/RESULTS.md, "No steady period").
    """
    if repeats is None:
        return False
    return not repeats_at(repeats, midi) and _shortest_period_note(repeats, class_midis) is None


def unrepeated_check(class_midis: np.ndarray) -> PeriodCheck:
    """`unrepeated` as evidence: it says nothing of which note (the CNN's probabilities stand), only that the
    answer cannot be sure."""
    return PeriodCheck(np.ones(len(class_midis)), 1.0, None, unrepeated=True)


def fifth_period(repeats: Repeats | None, midi: float) -> bool:
    """Whether the period of note `midi` is the one two notes a fifth apart share (its 2nd and 3rd harmonics):
    nothing sounds at its fundamental (`FIFTH_FUNDAMENTAL_DB`), 5th or 7th harmonic (`FIFTH_SILENT_DB`), while
    its 2nd and 3rd do.

    C4 + G4 repeat at C3's period and were shown as "C3, sure": a missing-fundamental C3 sounds its 2nd and 3rd
    harmonics too, but also its 5th and 7th, which no note of the fifth sounds (C4's are C3's even harmonics,
    G4's its multiples of 3). Undecided where the 7th lies above the Nyquist frequency.
    """
    if repeats is None:
        return False
    f0 = float(midi_to_hz(midi))
    if 7 * f0 >= repeats.sample_rate / 2 or repeats.level_db(f0) >= FIFTH_FUNDAMENTAL_DB:
        return False
    silent = all(repeats.level_db(k * f0) < FIFTH_SILENT_DB for k in (5, 7))
    return silent and all(repeats.level_db(k * f0) >= SOUNDING_HARMONIC_DB for k in (2, 3))


def shared_evidence(
    repeats: Repeats | None, f0_hz: float, cnn_top_midi: float, class_midis: np.ndarray
) -> PeriodCheck | None:
    """`shared_check` when the period of `f0_hz` is one several notes share (`shared_period`, `fifth_period`);
    else None."""
    midi = float(hz_to_midi(f0_hz))
    if shared_period(repeats, midi, cnn_top_midi):
        return shared_check(f0_hz, class_midis)
    if fifth_period(repeats, midi):
        return shared_check(f0_hz, class_midis, fifth=True)
    return None


def shared_check(f0_hz: float, class_midis: np.ndarray, *, fifth: bool = False) -> PeriodCheck:
    """A shared period as evidence: it says nothing of which note (the CNN's probabilities stand). A fifth's too:
    answering its lower note would be right for a fifth but would turn a right answer wrong on a false alarm, so
    the CNN's answer stays (often the shared period itself) and the warning names the two notes."""
    return PeriodCheck(np.ones(len(class_midis)), 1.0, f0_hz, shared=True, fifth=fifth)


def nearest_check(cents: float | None, midi: float, class_midis: np.ndarray) -> PeriodCheck | None:
    """The neighbouring class as evidence that decides alone, when the note named `midi` sounds nearer it (more than
    `NEAREST_CENTS` towards it, as its period says); else None."""
    if cents is None or abs(cents) <= NEAREST_CENTS:
        return None
    nearer = float(tuning.leaning_neighbour(round(midi), cents))
    if nearer not in set(np.asarray(class_midis, dtype=np.float64).tolist()):
        return None
    return PeriodCheck(likelihood_at(nearer, class_midis), 0.0, float(midi_to_hz(midi + cents / 100.0)))


def _deciding(note: float | None, class_midis: np.ndarray) -> PeriodCheck | None:
    if note is None:
        return None
    return PeriodCheck(likelihood_at(note, class_midis), 0.0, float(1.0 / _periods([note])[0]))


def likelihood_at(midi: float, class_midis: np.ndarray) -> np.ndarray:
    """P(waveform | note) peaked on `midi`: the same shape as `likelihood` gives a measured period."""
    distance = (np.asarray(class_midis, dtype=np.float64) - midi) / SIGMA_SEMITONES
    return FLOOR + np.exp(-0.5 * distance**2)
