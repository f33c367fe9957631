"""What a user is told when a check of the audio (not the models) decides how far an answer can be trusted.

The models' calibrated confidences were fitted on held notes of TinySOL's 14 instruments. Noise, a plucked or struck
note, a note too short to fill the instrument's window, a pure tone, a glide, a chord, a note between two notes, a
waveform with no steady period, mains hum, a note above the highest one the pitch model names and narrow-band audio
are none of that, and the checks that find them (`audio.decay`, `audio.trim`, `audio.purity`, `audio.melody`,
`audio.tuning`, `audio.hum`, `serving.pitch_evidence`) take the answers they say nothing of out of the models' hands:
`overruled` names those answers and the reason (`Prediction.not_sure_because`), and each `*_warning` says in words
what was found (`Prediction.warnings`). Pure functions of what the checks measured.
"""

from __future__ import annotations

from instropitch import audio
from instropitch.audio import decay, periodicity, tuning
from instropitch.audio.features import NOTE_PRE_ROLL, FeatureConfig
from instropitch.serving import pitch_evidence
from instropitch.serving.pitch_evidence import at_hum
from instropitch.tinysol import hz_to_midi, midi_to_hz, midi_to_pitch

NO_PITCHED_NOTE = "no pitched note"
PLUCKED_OR_STRUCK = "a plucked or struck note"
SHORT_NOTE = "a short note"
PURE_TONE = "a pure tone"
GLIDE = "the pitch glides"
CHORD = "several notes at once"
BETWEEN_NOTES = "between two notes"
NO_STEADY_PERIOD = "no steady period"
MAINS_HUM = "mains hum"
ABOVE_RANGE = "above the highest note"
"""Why a check of the audio took an answer out of its model's hands (`Prediction.not_sure_because`)."""
BETWEEN_NOTES_CENTS = 45.0
"""A note this many cents or more off the note it is named is between two notes. Real recordings moved 44-50 cents
off their notes by SoX's `speed` were named "sure" and a semitone wrong on 22 of 480, none with the check, which
keeps 75 of the 83 sure answers at 44; of 3,085 held notes three renders read 45.9-49.8 (their player detunes by up
to 30 cents), the 172 real recordings at most 39.6 (bench/RESULTS.md, "Between two notes")."""


def no_pitch_warning(period: periodicity.Periodicity | None) -> str:
    """What to tell a user whose file holds no pitched note (`pitch_evidence.unpitched`: noise, a cymbal, a clap,
    breath). The models know pitched instruments only, so their instrument answer on such a file is a guess
    whatever its confidence (white noise read "Strings, sure"): bench/RESULTS.md, "Not one note"."""
    heard = "no period" if period is None else f"no period (aperiodicity {period.aperiodicity:.2f})"
    return (
        f"{NO_PITCHED_NOTE}: the pitch answer is not sure and the waveform has {heard}; the models know pitched "
        "instruments only, so no instrument answer is shown as sure"
    )


def plucked_or_struck_warning(fall: decay.Fall | None) -> str | None:
    """What to tell a user whose note dies away after its attack (`decay.struck_fall`): a guitar, piano or harp.
    The models know instruments that hold their notes, so their instrument answer on it is a guess whatever its
    confidence (a guitar read "Brass, sure"): bench/RESULTS.md, "Plucked and struck notes"."""
    struck = decay.struck_fall(fall)
    if struck is None:
        return None
    fallen_db, seconds = struck
    assert fall is not None  # struck_fall said so
    quick = fallen_db > decay.DIES_AWAY_DB  # called struck by its attack: say so
    strike = f"it rises to its peak within {1000 * decay.STRUCK_ATTACK_S:.0f} ms, then " if quick else "it "
    return (
        f"{PLUCKED_OR_STRUCK}: {strike}dies away evenly, {-fallen_db:.0f} dB within {seconds:g} s of its attack; the "
        "models know bowed, blown and bellows instruments that hold their notes, so no instrument answer is shown as "
        "sure"
    )


def shortest_note(features: FeatureConfig) -> float:
    """Seconds a note must sound to fill the instrument window (`FeatureConfig.instrument`: 1 s from just before the
    onset, `features.NOTE_PRE_ROLL`). A shorter note leaves silence in the window, which no training note did (the
    demo's renders sound 1.75 s or more), and the models read such notes worse and surer: real recordings cut to
    0.3 / 0.4 / 0.6 / 0.7 / 0.8 / 0.9 / 1.0 s (SoX, a 30-ms fade) were shown a sure family wrongly 18 of 58 / 43 of 95
    / 49 of 108 / 38 of 96 / 14 of 67 / 1 of 50 / 0 of 44 times, saxophones as "Strings, sure"; cut to 0.6 s with
    SoX's reverb after it 23 of 48, three 0.3-s strokes 0.2 s apart 42 of 99 (`trim.held_seconds` holds neither the
    echo nor the strokes together); SoX's 80-ms sines read "Brass, sure" 56 times in 78 (bench/RESULTS.md, "A short
    note: one that does not hold through the window", "A pure tone or a short one")."""
    return features.instrument.duration - NOTE_PRE_ROLL


PURE_DB = -50.0
"""A note whose strongest partial holds all but this much of its pitch window (`audio.purity.impurity_db`) is a pure
tone: SoX's sines read -80 dB or less, the 3,085 held notes -41.5 dB at most (a MuseScore tuba; all others -29 or
more), the 216 plucked and struck recordings -37."""


def short_note_warning(held: float | None, features: FeatureConfig) -> str | None:
    """What to tell a user whose note holds for less than `shortest_note` (`Features.held`), or None."""
    if held is None or held >= shortest_note(features):
        return None
    return (
        f"{SHORT_NOTE}: it holds for {held:.2f} s; the instrument answer reads the note's first "
        f"{features.instrument.duration:g} s and the models learnt from notes that fill it, so no instrument answer is "
        "shown as sure"
    )


def pure_tone_warning(impurity_db: float | None) -> str | None:
    """What to tell a user whose note is one partial and nothing else (`PURE_DB`), or None."""
    if impurity_db is None or impurity_db > PURE_DB:
        return None
    rest = "nothing else" if impurity_db == float("-inf") else f"the rest {-impurity_db:.0f} dB below it"
    return (
        f"{PURE_TONE}: it is one partial ({rest}), as a tone generator's sine is; every instrument the models know "
        "sounds overtones, so no instrument answer is shown as sure"
    )


def overruled(
    *,
    unpitched: bool,
    plucked: bool,
    glide: bool,
    chord: bool,
    between: bool = False,
    unrepeated: bool = False,
    short: bool = False,
    pure: bool = False,
    hum: bool = False,
    above: bool = False,
) -> dict[str, str]:
    """The answers a check of the audio makes not sure whatever their confidence, by role, and why: the models'
    calibrated numbers were fitted on held notes of the 14 instruments and say nothing of noise (neither answer),
    a plucked or struck note, a short note or a pure tone (the instrument), a glide, a chord, a note between two, a
    waveform with no steady period, a pitch answer at the mains hum's or a note above the pitch model's highest (the
    pitch)."""
    reasons: dict[str, str] = {}
    if unpitched:
        reasons = {"pitch": NO_PITCHED_NOTE, "instrument": NO_PITCHED_NOTE}
    if above:  # no answer can be right: what else a check finds there follows from it
        reasons.setdefault("pitch", ABOVE_RANGE)
    if hum:  # the likeliest cause of any other pitch check failing: the waveform repeats at the hum's period
        reasons.setdefault("pitch", MAINS_HUM)
    if glide:
        reasons.setdefault("pitch", GLIDE)
    if chord:
        reasons.setdefault("pitch", CHORD)
    if between:
        reasons.setdefault("pitch", BETWEEN_NOTES)
    if unrepeated:
        reasons.setdefault("pitch", NO_STEADY_PERIOD)
    for found, reason in ((plucked, PLUCKED_OR_STRUCK), (short, SHORT_NOTE), (pure, PURE_TONE)):
        if found:
            reasons.setdefault("instrument", reason)
    return reasons


def mains_hum_warning(hum_hz: float | None, midi: int) -> str | None:
    """What to tell a user whose pitch answer sits at the mains hum under the note (`at_hum`), or None."""
    if not at_hum(hum_hz, midi):
        return None
    return (
        f"{MAINS_HUM}: a steady {hum_hz:.1f}-Hz line (the power grid's) sounds through the file, and "
        f"{midi_to_pitch(midi)} lies within a semitone of it, so the pitch answer may be the hum's, not the note's: "
        "it is not sure"
    )


def above_range(lowest_hz: float | None, highest_midi: int) -> bool:
    """Whether the lowest fundamental a note's partials allow (`audio.purity.lowest_fundamental_hz`) lies more than
    half a semitone above the highest note the pitch model names: then every answer is wrong, and was named an
    octave or more down, sure (SoX's sines over C#8; bench/RESULTS.md, "Above the highest note"). Of 3,085 held
    notes, 172 real recordings and their cut copies, and SoX's test tones up to MIDI 105 none lies there."""
    return lowest_hz is not None and float(hz_to_midi(lowest_hz)) > highest_midi + 0.5


def above_range_warning(lowest_hz: float | None, highest_midi: int) -> str | None:
    """What to tell a user whose note sounds above the pitch model's highest note (`above_range`), or None."""
    if not above_range(lowest_hz, highest_midi):
        return None
    return (
        f"{ABOVE_RANGE}: its partials imply no fundamental below {lowest_hz:.0f} Hz, above "
        f"{midi_to_pitch(highest_midi)} ({float(midi_to_hz(highest_midi)):.0f} Hz), the highest note the pitch model "
        "names, so no pitch answer can be right: it is not sure"
    )


def between_notes(cents: float | None) -> bool:
    """Whether a note `cents` off the note it is named (`audio.tuning.cents_off`) sits too near halfway to the next
    for the name to be sure (`BETWEEN_NOTES_CENTS`)."""
    return cents is not None and abs(cents) >= BETWEEN_NOTES_CENTS


def between_notes_warning(cents: float | None, midi: int) -> str | None:
    """What to tell a user whose note sounds nearly halfway between two (`between_notes`): either name is a guess."""
    if not between_notes(cents):
        return None
    assert cents is not None  # between_notes said so
    other = tuning.leaning_neighbour(midi, cents)
    way = "above" if cents > 0 else "below"
    return (
        f"{BETWEEN_NOTES}: it sounds {abs(cents):.0f} cents {way} {midi_to_pitch(midi)}, nearly halfway to "
        f"{midi_to_pitch(other)}, so the pitch answer is not sure (the waveform's period, over the pitch window)"
    )


def shared_period_warning(period: pitch_evidence.PeriodCheck | None) -> str | None:
    """What to tell a user whose file holds several notes at once (a chord, a fifth): the pitch answer is one of
    them at best, so it is not shown as sure (`pitch_evidence.shared_period`, `pitch_evidence.fifth_period`)."""
    if period is None or not period.shared:
        return None
    if period.fifth:
        lower = round(float(hz_to_midi(2.0 * period.f0_hz)))
        return (
            f"{CHORD} (a fifth, {midi_to_pitch(lower)} and {midi_to_pitch(lower + 7)}?): the waveform repeats every "
            f"{1000 / period.f0_hz:.1f} ms, yet nothing sounds at {period.f0_hz:.1f} Hz or its 5th and 7th harmonics, "
            "which a note without its fundamental would sound: its 2nd and 3rd are two notes, and the pitch answer "
            "one of them at best"
        )
    return (
        f"{CHORD} (a chord?): the waveform repeats only every {1000 / period.f0_hz:.1f} ms, and "
        f"nothing sounds at {period.f0_hz:.1f} Hz or its octave, so that is a period the notes share, not a note; "
        "the pitch answer is one of them at best"
    )


def unrepeated_warning(period: pitch_evidence.PeriodCheck | None, midi: int) -> str | None:
    """What to tell a user whose waveform repeats at no note's period, the answer's included
    (`pitch_evidence.unrepeated`): no one note sounds steadily, so the pitch answer is a guess however sure."""
    if period is None or not period.unrepeated:
        return None
    return (
        f"{NO_STEADY_PERIOD}: the waveform repeats neither after {midi_to_pitch(midi)}'s period "
        f"({1000 / float(midi_to_hz(midi)):.1f} ms) nor after any note's, as one note held steadily would (several "
        "notes at once, a bell, noise?), so the pitch answer is not sure"
    )


def narrow_band_warning(info: audio.WavInfo, features: FeatureConfig) -> str | None:
    """What to tell a user whose file lacks bands the models read: a phone's, a codec's, a low rate.

    The instrument model reads up to half the features' rate (11,025 Hz); a file sampled at
    8 kHz leaves everything above 4 kHz empty, and the instrument answers on such files were
    right far less often (bench/RESULTS.md, "Narrow-band audio"). Their shown confidence does not know it.
    """
    model_rate = features.instrument.sample_rate
    if info.sample_rate >= model_rate:
        return None
    return (
        f"sampled at {info.sample_rate} Hz: nothing above {info.sample_rate // 2} Hz, where the models read up "
        f"to {model_rate // 2} Hz; instrument answers on such narrow-band audio are right less often"
    )
