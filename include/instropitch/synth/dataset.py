"""A synthetic TinySOL: the same folder tree, file names and metadata, rendered from a SoundFont.

`build_manifest` plans the notes (which instrument, pitch, dynamics, string or take, fold,
length) the way TinySOL v6.0 is laid out; `render_dataset` renders them in parallel
processes with `instropitch.synth.sf2` and writes `TinySOL_metadata.csv`.

Several SoundFonts make several *sources* (one TinySOL tree each, same manifest), and so do
several players of one font (the built-in `player`, and TinySoundFont, `tsf`: `NAME-tsf`), and
render-condition presets (`instropitch.synth.conditions`: rooms, microphones, distance, player)
vary what a microphone would have heard, so that a model cannot learn one font's sound.

Every random choice comes from the global seed: the manifest from `seed` (one stream per
instrument), each note from a seed derived from `seed` and the note's path. A note's
condition comes from a separate stream of the note seed and the source name, so the plain
(`dry`) render does not depend on conditions at all. A note renders to the same bytes
whatever the worker count, the subset asked for, the other sources or the render order.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import threading
import time
import wave
from collections import Counter, defaultdict
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path

import numpy as np
from scipy.signal import lfilter

from instropitch import tinysol
from instropitch.synth import conditions as cond
from instropitch.synth import player, tsf
from instropitch.synth.sf2 import SoundFont, Voice, default_soundfont_path
from instropitch.tinysol import INSTRUMENT_BY_ABBR, INSTRUMENTS, SOURCE_NAME, Instrument, MetadataRow

SAMPLE_RATE = 44100
MIN_DURATION_S = 2.0
MAX_DURATION_S = 10.0

GM_PROGRAMS: dict[str, int] = {
    "BTb": 58,  # Tuba
    "Hn": 60,  # French Horn
    "Tbn": 57,  # Trombone
    "TpC": 56,  # Trumpet
    "Acc": 21,  # Accordion
    "Vc": 42,  # Cello
    "Cb": 43,  # Contrabass
    "Va": 41,  # Viola
    "Vn": 40,  # Violin
    "ASax": 65,  # Alto Sax
    "Bn": 70,  # Bassoon
    "ClBb": 71,  # Clarinet
    "Fl": 73,  # Flute
    "Ob": 68,  # Oboe
}
"""TinySOL abbreviation -> General MIDI program (0-based)."""

BORROWED_SHARE = 0.5
"""A preset that plays at least this share of its samples from another instrument's preset is borrowed."""


def borrowed_instruments(sf: SoundFont) -> dict[str, str]:
    """TinySOL instruments whose preset in `sf` mostly plays another one's samples: abbr -> that other abbr.

    Small GM fonts save space this way (TimGM6mb and sf_GMbank play the viola from the violin's
    samples), so such a note's label is not in its sound. Of two presets sharing samples, the
    one with the higher GM program is the borrower. Instruments the font lacks are skipped.
    """
    samples = {}
    for abbr, program in sorted(GM_PROGRAMS.items(), key=lambda item: item[1]):
        try:
            samples[abbr] = sf.preset_samples(program)
        except KeyError:
            continue
    borrowed = {}
    for i, (abbr, own) in enumerate(samples.items()):
        for lender, theirs in list(samples.items())[:i]:
            if own and len(own & theirs) >= BORROWED_SHARE * len(own):
                borrowed[abbr] = lender
                break
    return borrowed


OPEN_STRINGS: dict[str, tuple[int, ...]] = {
    # MIDI numbers of the open strings, string 1 (highest) first, as string IDs count them.
    "Vn": (76, 69, 62, 55),  # E5 A4 D4 G3
    "Va": (69, 62, 55, 48),  # A4 D4 G3 C3
    "Vc": (57, 50, 43, 36),  # A3 D3 G2 C2
    "Cb": (43, 38, 33, 28),  # G2 D2 A1 E1
}
"""Bowed strings: open-string MIDI numbers by string number (1 = highest, TinySOL's `1c`)."""

STRING_SPAN = 24
"""A lower string is used up to two octaves above its open pitch; the top string to the top."""

ACCORDION_TAKES = 6  # N, alt1 .. alt5
VELOCITY: dict[str, int] = {"pp": 36, "p": 56, "mf": 82, "ff": 114}
PEAK_DBFS: dict[str, float] = {"pp": -22.0, "p": -17.0, "mf": -11.0, "ff": -4.0}
P_SHARE = 10 / 2913  # TinySOL has 10 `p` notes among 2,913
RETUNE_SHARE = 0.04
VIBRATO = {"Strings": (5.6, 14.0), "Fl": (5.0, 10.0), "Ob": (5.2, 8.0), "ASax": (5.0, 9.0), "Bn": (5.0, 6.0)}
"""Vibrato (rate Hz, depth cents) added on top of the SoundFont; brass, clarinet, accordion have none."""


@dataclass(frozen=True)
class PlannedNote:
    """One file to render: its metadata row plus how to render it."""

    row: MetadataRow
    program: int
    duration_s: float
    seed: int

    @property
    def path(self) -> str:
        return self.row.path

    @property
    def midi(self) -> int:
        return self.row.pitch_id

    @property
    def dynamics(self) -> str:
        return self.row.dynamics


@dataclass(frozen=True)
class RenderSummary:
    """What `render_dataset` wrote: one source, or the totals with `sources` one per font."""

    files: int
    seconds: float
    bytes: int
    out_dir: Path
    audio_seconds: float = 0.0
    source: str = ""
    conditions: tuple[tuple[str, int], ...] = ()  # (preset, notes), in preset order
    sources: tuple[RenderSummary, ...] = ()
    left_out: tuple[str, ...] = ()  # instruments this font borrows, rendered by the other sources instead

    def _line(self) -> str:
        rate = self.files / self.seconds if self.seconds > 0 else float("inf")
        line = (
            f"rendered {self.files} notes ({self.audio_seconds / 60:.1f} min of audio, {self.bytes / 1e6:.1f} MB) "
            f"into {self.out_dir} in {self.seconds:.1f} s ({rate:.1f} files/s)"
        )
        if self.conditions and [name for name, _ in self.conditions] != ["dry"]:
            line += "; conditions " + ", ".join(f"{name} {count}" for name, count in self.conditions)
        if self.left_out:
            line += f"; {', '.join(self.left_out)} left to the other sources (this font plays another's samples)"
        return line

    def __str__(self) -> str:
        """One line per source (plus a total line when there are several)."""
        if not self.sources:
            return self._line()
        lines = [f"{s.source}: {s._line()}" for s in self.sources]
        rate = self.files / self.seconds if self.seconds > 0 else float("inf")
        lines.append(
            f"total: {self.files} notes from {len(self.sources)} sources ({self.audio_seconds / 3600:.2f} h of audio, "
            f"{self.bytes / 1e6:.1f} MB) into {self.out_dir} in {self.seconds:.1f} s ({rate:.1f} files/s)"
        )
        return "\n".join(lines)


# ------------------------------------------------------------------ manifest


def note_seed(seed: int, path: str) -> int:
    """The per-note seed: a hash of the global seed and the note's path."""
    digest = hashlib.blake2b(f"{seed}\0{path}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def resolve_instruments(instruments: list[str] | None) -> list[Instrument]:
    """Abbreviations -> instruments (case-insensitive); None or empty means all 14."""
    if not instruments:
        return list(INSTRUMENTS)
    lower = {abbr.lower(): inst for abbr, inst in INSTRUMENT_BY_ABBR.items()}
    chosen: list[Instrument] = []
    unknown: list[str] = []
    for name in instruments:
        name = name.strip()
        if not name:
            continue
        inst = INSTRUMENT_BY_ABBR.get(name) or lower.get(name.lower())
        if inst is None:
            unknown.append(name)
        elif inst not in chosen:
            chosen.append(inst)
    if unknown:
        raise ValueError(
            f"unknown instrument(s) {', '.join(map(repr, unknown))}; known: {', '.join(tinysol.INSTRUMENT_ABBRS)}"
        )
    if not chosen:
        raise ValueError(f"no instrument given; known: {', '.join(tinysol.INSTRUMENT_ABBRS)}")
    return chosen


@dataclass
class _Candidate:
    midi: int
    dynamics: str
    take: int  # accordion take index, or string number for bowed strings, else 0
    priority: float


def _candidates(inst: Instrument, rng: np.random.Generator) -> list[_Candidate]:
    """Every file TinySOL could hold for this instrument, with a keep-priority (lower = keep)."""
    dyns = ("pp", "mf", "ff")
    out: list[_Candidate] = []
    pitches = range(inst.midi_low, inst.midi_high + 1)
    if inst.abbr in OPEN_STRINGS:
        opens = OPEN_STRINGS[inst.abbr]
        for string, open_midi in enumerate(opens, start=1):
            top = inst.midi_high if string == 1 else open_midi + STRING_SPAN
            for midi in pitches:
                if open_midi <= midi <= top:
                    # High positions on a low string are the rarer takes.
                    unit = (midi - open_midi) / STRING_SPAN + rng.uniform(0.0, 0.8)
                    out += [_Candidate(midi, d, string, unit + rng.uniform(0.0, 0.2)) for d in dyns]
    elif inst.abbr == "Acc":
        for midi in pitches:
            spread = math.exp(rng.normal(0.0, 0.7))  # some pitches were recorded in many takes
            for take in range(ACCORDION_TAKES):
                unit = take * spread + rng.uniform(0.0, 1.0)
                out += [_Candidate(midi, d, take, unit + rng.uniform(0.0, 0.4)) for d in dyns]
    else:
        for midi in pitches:
            out += [_Candidate(midi, d, 0, rng.uniform(0.0, 1.0)) for d in dyns]
            # A `p` take only comes in if an instrument ever needs more than 3 files per pitch.
            out.append(_Candidate(midi, "p", 0, 2.0 + rng.uniform(0.0, 1.0)))
    return out


def _select(cands: list[_Candidate], n: int) -> list[_Candidate]:
    """Keep n candidates: the best one of every pitch first, then the best of the rest."""
    by_pitch: dict[int, list[_Candidate]] = defaultdict(list)
    for c in cands:
        by_pitch[c.midi].append(c)
    mandatory = [min(group, key=lambda c: c.priority) for group in by_pitch.values()]
    chosen = {id(c) for c in mandatory}
    rest = sorted((c for c in cands if id(c) not in chosen), key=lambda c: c.priority)
    return mandatory + rest[: max(0, n - len(mandatory))]


def _duration(inst: Instrument, midi: int, rng: np.random.Generator) -> float:
    """Note length in seconds: low notes and bowed strings longer, the accordion anything."""
    if inst.abbr == "Acc":
        value = rng.uniform(2.3, 9.5)
    else:
        height = (midi - inst.midi_low) / max(1, inst.midi_high - inst.midi_low)
        base = 7.0 - 3.8 * height + (0.6 if inst.bowed else 0.0)
        value = base * math.exp(rng.normal(0.0, 0.18))
    return round(float(np.clip(value, MIN_DURATION_S, MAX_DURATION_S)), 3)


def _full_manifest(seed: int) -> list[PlannedNote]:
    """The scale-1 plan for all 14 instruments; every subset is a filter of this one."""
    per_instrument: list[list[tuple[Instrument, _Candidate, float]]] = []
    for index, inst in enumerate(INSTRUMENTS):
        rng = np.random.default_rng([seed, index])
        picked = _select(_candidates(inst, rng), inst.n_files)
        if inst.abbr == "Acc":
            # Takes are numbered N, alt1, alt2 ... without gaps for each pitch.
            takes: dict[int, list[int]] = defaultdict(list)
            for c in picked:
                if c.take not in takes[c.midi]:
                    takes[c.midi].append(c.take)
            for c in picked:
                c.take = sorted(takes[c.midi]).index(c.take)
        picked.sort(key=lambda c: (c.midi, tinysol.DYNAMICS[c.dynamics], c.take))
        per_instrument.append([(inst, c, _duration(inst, c.midi, rng)) for c in picked])

    rng = np.random.default_rng([seed, 1000])
    flat = [item for group in per_instrument for item in group]
    # A handful of `pp` notes become `p`, as in TinySOL.
    pp_rows = [i for i, (_, c, _) in enumerate(flat) if c.dynamics == "pp"]
    for i in rng.choice(pp_rows, size=min(len(pp_rows), round(P_SHARE * len(flat))), replace=False):
        flat[i][1].dynamics = "p"
    # Folds: blocks of 5 consecutive notes (instrument, then pitch order) get a permutation of 0..4,
    # so folds are balanced overall, per instrument and across the range.
    folds = np.concatenate([rng.permutation(tinysol.N_FOLDS) for _ in range(len(flat) // tinysol.N_FOLDS + 1)])
    retuned = rng.random(len(flat)) < RETUNE_SHARE
    notes: list[PlannedNote] = []
    for i, (inst, c, duration) in enumerate(flat):
        retune = "N"
        if retuned[i]:
            retune = f"T{int(rng.integers(3, 45))}{'u' if rng.random() < 0.5 else 'd'}"
        bowed = inst.abbr in OPEN_STRINGS
        row = tinysol.make_row(
            inst,
            c.midi,
            c.dynamics,
            int(folds[i]),
            instance_id=(c.take - 1) if bowed else c.take,
            string_id=c.take if bowed else None,
            retune=retune,
        )
        notes.append(PlannedNote(row, GM_PROGRAMS[inst.abbr], duration, note_seed(seed, row.path)))
    return notes


def build_manifest(
    seed: int,
    scale: float = 1.0,
    instruments: list[str] | None = None,
    max_pitches: int | None = None,
) -> list[PlannedNote]:
    """Plan a synthetic TinySOL: rows, GM program, length and seed of every note.

    At scale 1 each instrument gets TinySOL's file count over its full MIDI range (2,913 in
    all). `instruments` keeps some abbreviations, `max_pitches` at most that many pitches per
    instrument (spread over the range), `scale` < 1 a stratified fraction (at least one note
    per instrument). Subsets are filters of the full plan, so a note is the same in all of them.
    """
    if not 0 < scale <= 1:
        raise ValueError(f"scale must be in (0, 1], got {scale}")
    if max_pitches is not None and max_pitches < 1:
        raise ValueError(f"max_pitches must be >= 1, got {max_pitches}")
    wanted = resolve_instruments(instruments)
    by_inst: dict[str, list[PlannedNote]] = defaultdict(list)
    for note in _full_manifest(seed):
        by_inst[note.row.instrument_abbr].append(note)

    rng = np.random.default_rng([seed, 2000])
    out: list[PlannedNote] = []
    for inst in wanted:
        notes = by_inst[inst.abbr]
        if max_pitches is not None:
            pitches = sorted({n.midi for n in notes})
            if len(pitches) > max_pitches:
                keep_idx = np.unique(np.round(np.linspace(0, len(pitches) - 1, max_pitches)).astype(int))
                keep = {pitches[i] for i in keep_idx}
                notes = [n for n in notes if n.midi in keep]
        if scale < 1:
            k = max(1, round(len(notes) * scale))
            picks = np.floor((np.arange(k) + rng.uniform(0, 1)) * len(notes) / k).astype(int)
            notes = [notes[i] for i in np.unique(np.clip(picks, 0, len(notes) - 1))]
        out += notes
    return out


# ------------------------------------------------------------------ rendering


_SOUNDFONTS: dict[str, SoundFont] = {}
_TUNING: dict[tuple[str, int, int], dict[tuple[str, int], float]] = {}
"""(font, program, midi) -> tuning_corrections(...)"""
_TSF_TUNING: dict[tuple[str, int, int], tuple[int, float]] = {}
"""(font, program, midi) -> tsf_tuning(...)"""


def _soundfont(path: str) -> SoundFont:
    sf = _SOUNDFONTS.get(path)
    if sf is None:
        sf = _SOUNDFONTS[path] = SoundFont.load(path)
    return sf


VoiceId = tuple[str, int]
"""A voice as the tuning table knows it: (SoundFont instrument name, sample index)."""


def tuning_corrections(sf: SoundFont, program: int, midi: int) -> dict[VoiceId, float]:
    """Cents to add to each voice of this key so that it sounds in tune (measured).

    TimGM6mb's short loops sound up to 70 cents off in places, and the layers of one preset
    (the accordion's two reed banks, the four horns) can disagree; each voice is measured
    on its own (`voice_tuning_error`) and corrected separately.
    """
    key = (str(sf.path), program, midi)
    if key not in _TUNING:
        voices, shift = sf.find_voices(program, midi, 100)
        table: dict[VoiceId, float] = {}
        for voice in voices:
            vid = (voice.instrument, voice.sample_index)
            if vid not in table:
                table[vid] = -voice_tuning_error(sf, voice, midi, shift)
        _TUNING[key] = table
    return _TUNING[key]


def voice_tuning_error(sf: SoundFont, voice: Voice, midi: int, shift_cents: float = 0.0) -> float:
    """How many cents `voice` (played with `shift_cents`) sounds off the pitch of `midi`.

    Renders 0.9 s of the voice alone and measures it (`tuning_error`).
    """
    y = player.render_voices(sf, [voice], 0.9, SAMPLE_RATE, 0.0, detune_cents=shift_cents)
    return tuning_error(y, midi, SAMPLE_RATE)


def tsf_tuning(sf_path: str, program: int, midi: int) -> tuple[int, float]:
    """(key to press, cents to tune TinySoundFont's channel by) so that `midi` sounds in tune (measured once).

    TinySoundFont plays a font's tuning as it is: TimGM6mb's accordion comes out 68 cents
    low over MIDI 81-96, which would label those notes a semitone low. The whole preset is
    measured at once (`centre_tuning_error`, 2 s), since the channel's tuning moves all its
    layers together. A key no zone covers stays silent in TinySoundFont (the accordion's
    C#8, Merlin's contrabass above F4); the nearest key that sounds is pressed and retuned,
    as the built-in player stretches its nearest zone.
    """
    key = (sf_path, program, midi)
    if key not in _TSF_TUNING:
        for pressed in sorted(range(max(0, midi - 12), min(127, midi + 12) + 1), key=lambda k: (abs(k - midi), k)):
            y = tsf.play(sf_path, program, pressed, 100, 2.0, 0.0, SAMPLE_RATE)
            if np.max(np.abs(y)) >= 1e-4:
                _TSF_TUNING[key] = (pressed, 100.0 * (midi - pressed) - centre_tuning_error(y, pressed, SAMPLE_RATE))
                break
        else:
            raise ValueError(
                f"{sf_path}: TinySoundFont plays no key within an octave of MIDI {midi} (program {program})"
            )
    return _TSF_TUNING[key]


def tuning_error(y: np.ndarray, midi: int, sr: int) -> float:
    """How many cents the tone `y` (its part after 0.3 s) sounds off the pitch of `midi`.

    Takes the strongest spectral peak between 0.8 and 8.5 times the nominal f0; the peak's
    harmonic number is the nearest whole multiple of the nominal f0, so an estimate that is
    ambiguous about the octave still gives the right error. Errors over 100 cents are
    distrusted (0 is returned).
    """
    found = _strongest_partial(y, midi, sr)
    if found is None:
        return 0.0
    _, _, f_peak, harmonic = found
    error = 1200 * math.log2(f_peak / (harmonic * float(tinysol.midi_to_hz(midi))))
    return error if abs(error) < 100 else 0.0


def centre_tuning_error(y: np.ndarray, midi: int, sr: int, width_cents: float = 60.0) -> float:
    """`tuning_error` of a blend: the power-weighted mean pitch within `width_cents` of the
    strongest partial, so that two detuned layers (an accordion's reed banks) count as the
    one pitch a listener hears between them, not as the louder one."""
    found = _strongest_partial(y, midi, sr)
    if found is None:
        return 0.0
    spec, freqs, f_peak, harmonic = found
    band = (freqs > f_peak * 2 ** (-width_cents / 1200)) & (freqs < f_peak * 2 ** (width_cents / 1200))
    power = spec[band] ** 2
    cents = 1200 * np.log2(freqs[band] / (harmonic * float(tinysol.midi_to_hz(midi))))
    error = float(np.sum(power * cents) / np.sum(power))
    return error if abs(error) < 100 else 0.0


def _strongest_partial(y: np.ndarray, midi: int, sr: int) -> tuple[np.ndarray, np.ndarray, float, int] | None:
    """(magnitude spectrum, bin frequencies, interpolated peak frequency, its harmonic number) of
    `y` after 0.3 s, searched between 0.8 and 8.5 times the nominal f0; None for silence."""
    seg = np.asarray(y, dtype=np.float64)[int(0.3 * sr) :]
    if not np.any(seg):
        return None
    nfft = 1 << 17
    spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg)), nfft))
    f_nominal = float(tinysol.midi_to_hz(midi))
    hi = min(len(spec) - 2, int(8.5 * f_nominal * nfft / sr))
    lo = max(1, int(0.8 * f_nominal * nfft / sr))
    if hi <= lo:
        return None
    i = lo + int(np.argmax(spec[lo:hi]))
    a, b, c = np.log(spec[i - 1 : i + 2] + 1e-12)
    den = a - 2 * b + c
    f_peak = (i + (0.5 * (a - c) / den if den != 0 else 0.0)) * sr / nfft
    return spec, np.arange(len(spec)) * sr / nfft, f_peak, max(1, round(f_peak / f_nominal))


@dataclass(frozen=True)
class Take:
    """How one take is played, drawn from the note's own stream before any sound is made:
    both players get the same performance of the same note."""

    velocity: int
    detune_cents: float
    lead_s: float
    release_s: float
    hold_s: float
    vibrato_hz: float
    vibrato_cents: float


def _take(note: PlannedNote, rng: np.random.Generator, perf: cond.Player | None) -> Take:
    row = note.row
    inst = row.instrument
    velocity = int(np.clip(VELOCITY[row.dynamics] + rng.integers(-6, 7), 1, 127))
    detune = float(np.clip(rng.normal(0.0, 2.5), -6.0, 6.0))
    lead = rng.uniform(0.005, 0.06)
    release = rng.uniform(0.25, 0.7) if inst.family in ("Strings", "Keyboards") else rng.uniform(0.2, 0.5)
    hold = max(0.1, note.duration_s - lead - release)
    rate, depth = VIBRATO.get(inst.family if inst.bowed else inst.abbr, (0.0, 0.0))
    if rate:
        rate *= rng.uniform(0.9, 1.1)
        depth *= rng.uniform(0.6, 1.3)
    if perf is not None:
        rate, depth = perf.vibrato(rate, depth, may_add=inst.abbr != "Acc")  # no vibrato on free reeds
    return Take(velocity, detune, lead, release, hold, rate, depth)


def render_audio(
    note: PlannedNote,
    sf: SoundFont,
    sample_rate: int = SAMPLE_RATE,
    tuning: dict[VoiceId, float] | None = None,
    condition: cond.Condition | None = None,
) -> np.ndarray:
    """The note's samples as int16, exactly `duration_s` long; a pure function of the note and font.

    `tuning` is `tuning_corrections` for the note's key (measured here if None).
    `condition` (see `note_condition`) changes the playing (its `player`) and then the
    sound (its effects, applied after the level is set to the dynamics' target peak);
    None or `conditions.DRY` is the plain render, which draws nothing from elsewhere.
    """
    rng = np.random.default_rng(note.seed)
    perf = condition.player if condition is not None else None
    take = _take(note, rng, perf)
    midi = note.row.pitch_id
    if tuning is None:
        tuning = tuning_corrections(sf, note.program, midi)
    voices, shift = sf.find_voices(note.program, midi, take.velocity)
    cents = []
    for voice in voices:
        correction = tuning.get((voice.instrument, voice.sample_index))
        if correction is None:  # a voice that only plays at this velocity
            correction = -voice_tuning_error(sf, voice, midi, shift)
        cents.append(take.detune_cents + shift + correction)
    if perf is not None:
        cents = [c + perf.detune_cents for c in cents]
        voices = [replace(v, attack_s=perf.attack(v.attack_s)) for v in voices]
    y = player.render_voices(
        sf,
        voices,
        take.hold_s,
        sample_rate,
        take.release_s,
        detune_cents=cents,
        vibrato_hz=take.vibrato_hz,
        vibrato_cents=take.vibrato_cents,
    )
    return _record(y, note, take, rng, condition, sample_rate)


def render_audio_tsf(
    note: PlannedNote,
    sf_path: str | Path,
    sample_rate: int = SAMPLE_RATE,
    tuning: tuple[int, float] | None = None,
    condition: cond.Condition | None = None,
) -> np.ndarray:
    """`render_audio` with TinySoundFont as the player (`synth.tsf`): the same take, the key's
    tuning (`tsf_tuning`, measured here if None), the same level, conditions and noise floor."""
    rng = np.random.default_rng(note.seed)
    perf = condition.player if condition is not None else None
    take = _take(note, rng, perf)
    pressed, correction = tuning if tuning is not None else tsf_tuning(str(sf_path), note.program, note.midi)
    y = tsf.play(
        str(sf_path),
        note.program,
        pressed,
        take.velocity,
        take.hold_s,
        take.release_s,
        sample_rate,
        detune_cents=take.detune_cents + correction + (perf.detune_cents if perf is not None else 0.0),
        vibrato_hz=take.vibrato_hz,
        vibrato_cents=take.vibrato_cents,
        attack_s=perf.attack(0.0) if perf is not None else 0.0,
    )
    return _record(y, note, take, rng, condition, sample_rate)


def _record(
    y: np.ndarray,
    note: PlannedNote,
    take: Take,
    rng: np.random.Generator,
    condition: cond.Condition | None,
    sample_rate: int,
) -> np.ndarray:
    """A played note as the file holds it: take colour, lead-in, the dynamics' level, the
    condition's effects, a fade and a faint noise floor; int16, exactly `duration_s` long."""
    row = note.row
    n_total = int(round(note.duration_s * sample_rate))
    # Take-to-take colour: a random share of a gentle low-pass (lower strings darker).
    darker = rng.uniform(0.0, 0.35) + (0.08 * (row.string_id - 1) if row.string_id else 0.0)
    if darker > 0:
        y = (1 - darker) * y + darker * _one_pole(y, rng.uniform(1500.0, 4000.0), sample_rate)

    out = np.zeros(n_total, dtype=np.float32)
    start = int(round(take.lead_s * sample_rate))
    m = min(len(y), n_total - start)
    out[start : start + m] = y[:m]
    peak = float(np.max(np.abs(out))) if n_total else 0.0
    target = 10 ** ((PEAK_DBFS[row.dynamics] + rng.uniform(-1.5, 1.5)) / 20)
    if peak > 0:
        out *= np.float32(target / peak)
    if condition is not None and condition.effects:
        out = condition.apply(out, sample_rate)  # same length; keeps the peak, or lowers it (distance)
    fade = min(n_total, int(0.02 * sample_rate))
    if fade > 1:
        out[n_total - fade :] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    # A faint noise floor (about -80 to -70 dBFS RMS), never the same twice.
    noise = rng.standard_normal(n_total, dtype=np.float32)
    noise *= np.float32(10 ** (rng.uniform(-80.0, -70.0) / 20))
    out += noise
    out *= np.float32(32767.0)
    np.rint(out, out=out)
    np.clip(out, -32768, 32767, out=out)
    return out.astype(np.int16)


def note_condition(note: PlannedNote, conditions: str | Sequence[str] = "dry", source: str = "") -> cond.Condition:
    """The render condition of `note` in `source`: one of `conditions`, with its parameters.

    Drawn from a stream of its own (the note seed and the source name), never from the
    note's render stream: `dry` stays byte-identical to a render without conditions, and
    the same path gets independent conditions in different sources.
    """
    names = cond.resolve(conditions)
    if names == ("dry",):
        return cond.DRY
    tag = int.from_bytes(hashlib.blake2b(f"condition\0{source}".encode(), digest_size=8).digest(), "little")
    return cond.choose(names, np.random.default_rng([note.seed, tag]))


def _one_pole(x: np.ndarray, cutoff_hz: float, sample_rate: int) -> np.ndarray:
    a = 1.0 - math.exp(-2 * math.pi * cutoff_hz / sample_rate)
    return lfilter(np.array([a], dtype=np.float32), np.array([1.0, a - 1.0], dtype=np.float32), x)


def _write_wav(path: Path, samples: np.ndarray, sample_rate: int) -> int:
    """16-bit mono WAV, written to a temporary name and moved into place; returns its size."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with wave.open(str(tmp), "wb") as handle:
            handle.setnchannels(1)
            handle.setsampwidth(2)
            handle.setframerate(sample_rate)
            handle.writeframes(samples.astype("<i2").tobytes())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path.stat().st_size


def _mp_context():
    """fork when this process runs no other thread (fast, no re-import of __main__), else spawn."""
    if "fork" in get_all_start_methods() and threading.active_count() == 1:
        return get_context("fork")
    return get_context("spawn")


def _init_worker() -> None:
    """Pool workers keep freed buffers instead of returning them to the OS after every note
    (glibc only; saves a quarter of the CPU time otherwise spent in page faults)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 256 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 512 << 20)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


Tuning = dict[VoiceId, float] | tuple[int, float]
"""A key's measured tuning: per voice for the built-in player, the key and channel tuning for TinySoundFont."""


def _tuning_one(job: tuple[str, str, int, int]) -> Tuning:
    playing, sf_path, program, midi = job
    if playing == tsf.PLAYER:
        return tsf_tuning(sf_path, program, midi)
    return tuning_corrections(_soundfont(sf_path), program, midi)


def _render_one(job: tuple[PlannedNote, str, str, str, Tuning, cond.Condition | None]) -> tuple[int, float]:
    note, out_dir, playing, sf_path, tuning, condition = job
    if playing == tsf.PLAYER:
        assert isinstance(tuning, tuple)
        samples = render_audio_tsf(note, sf_path, tuning=tuning, condition=condition)
    else:
        assert isinstance(tuning, dict)
        samples = render_audio(note, _soundfont(sf_path), tuning=tuning, condition=condition)
    size = _write_wav(Path(out_dir) / note.path, samples, SAMPLE_RATE)
    return size, len(samples) / SAMPLE_RATE


# ------------------------------------------------------------------ sources

EXTRA_COLUMNS = ("Source", "Condition")
"""Columns every synthetic `TinySOL_metadata.csv` has after the 14 TinySOL ones."""

SoundFontSpec = str | Path
"""An SF2 path, or `NAME=PATH` as a string."""


def source_name(path: str | Path) -> str:
    """The default name of a font's source: its file stem, lowercased (`TimGM6mb.sf2` -> `timgm6mb`)."""
    return re.sub(r"[^a-z0-9_.-]", "_", Path(path).stem.lower()).lstrip("._-") or "source"


BUILTIN = "builtin"
PLAYERS: tuple[str, ...] = (BUILTIN, tsf.PLAYER)
"""The SF2 players a source can be rendered with: the project's own (`player`) and TinySoundFont (`tsf`)."""
PLAYER_SUFFIX = {BUILTIN: "", tsf.PLAYER: "-tsf"}
"""What a player adds to the font's source name: `merlin` is Merlin by the built-in player, `merlin-tsf` by TinySoundFont."""


def available_players() -> tuple[str, ...]:
    """The players this environment can run: the built-in one, and TinySoundFont when its wheel is installed."""
    return tuple(p for p in PLAYERS if p != tsf.PLAYER or tsf.available())


def player_sources(fonts: Mapping[str, Path], players: Sequence[str]) -> dict[str, tuple[Path, str]]:
    """{source name: (font, player)}: every font played by every player, fonts first (`PLAYER_SUFFIX`).

    Raises ValueError on an unknown player, a player given twice, or TinySoundFont missing.
    """
    unknown = [p for p in players if p not in PLAYERS]
    if unknown or not players or len(set(players)) != len(players):
        raise ValueError(f"players {list(players)}: give each of {', '.join(PLAYERS)} at most once, at least one")
    if tsf.PLAYER in players and not tsf.available():
        raise ValueError(
            "the tinysoundfont player is not installed: `make venv` installs it (requirements-fonts.txt), "
            "or `pip install --no-deps tinysoundfont`"
        )
    sources = {f"{name}{PLAYER_SUFFIX[p]}": (path, p) for name, path in fonts.items() for p in players}
    if len(sources) != len(fonts) * len(players):
        raise ValueError(f"font names {list(fonts)} collide with the player suffixes {list(PLAYER_SUFFIX.values())}")
    return sources


def resolve_sources(
    soundfont: SoundFontSpec | Sequence[SoundFontSpec] | Mapping[str, SoundFontSpec] | None,
) -> dict[str, Path]:
    """SoundFont arguments -> {source name: SF2 path}, in the order given.

    None is TimGM6mb; a string may be `NAME=PATH`; a mapping gives names explicitly.
    Names must be valid folder names and unique; the files must exist.
    """
    if soundfont is None:
        items: list[tuple[str | None, Path]] = [(None, default_soundfont_path())]
    elif isinstance(soundfont, Mapping):
        items = [(str(name), Path(path)) for name, path in soundfont.items()]
    else:
        specs = [soundfont] if isinstance(soundfont, (str, Path)) else list(soundfont)
        items = []
        for spec in specs:
            name, path = None, Path(spec)
            if isinstance(spec, str) and "=" in spec:
                left, right = spec.split("=", 1)
                if SOURCE_NAME.fullmatch(left):
                    name, path = left, Path(right)
            items.append((name, path))
    if not items:
        raise ValueError("no SoundFont given")
    sources: dict[str, Path] = {}
    for name, path in items:
        name = name if name is not None else source_name(path)
        if not SOURCE_NAME.fullmatch(name):
            raise ValueError(f"bad source name {name!r} for {path}: use letters, digits, '_', '.', '-'")
        if name in sources:
            raise ValueError(f"two SoundFonts named {name!r} ({sources[name]} and {path}); name them: NAME=PATH")
        if not path.is_file():
            raise FileNotFoundError(f"SoundFont {path} does not exist")
        sources[name] = path
    return sources


def render_dataset(
    out_dir: Path,
    soundfont: SoundFontSpec | Sequence[SoundFontSpec] | Mapping[str, SoundFontSpec] | None = None,
    seed: int = 0,
    scale: float = 1.0,
    instruments: list[str] | None = None,
    max_pitches: int | None = None,
    workers: int = 0,
    progress: bool = True,
    conditions: str | Sequence[str] = "dry",
    share: bool = False,
    keep_borrowed: bool = False,
    players: Sequence[str] = (BUILTIN,),
) -> RenderSummary:
    """Render the planned notes as TinySOL's folder tree plus `TinySOL_metadata.csv`.

    `soundfont` is one font or several (see `resolve_sources`). One font renders into
    `out_dir` itself; several render into `out_dir/<source name>/`, one TinySOL tree and CSV
    each: the same manifest in every source, or with `share` the manifest split between them
    (`share_notes`: each note rendered once, by one font), which brings several timbres for
    the cost of one. `conditions` (names from `instropitch.synth.conditions.CONDITIONS`,
    comma list or sequence) are drawn per note; every CSV has the 14 TinySOL columns plus
    `Source` and `Condition`. `workers=0` uses one process per core, 1 renders in this
    process. Existing files of the same names are replaced (each WAV is written under a
    temporary name, then renamed). With several fonts, an instrument a font plays from another
    one's samples (`borrowed_instruments`) is rendered only by the fonts that have it, since
    such a note's label is not in its sound; `keep_borrowed` renders it anyway. `players`
    (`PLAYERS`) plays every font with each: one source per font and player (`player_sources`),
    sharing or repeating the notes as fonts do. Returns the summary of the one source, or
    totals with `sources` holding one summary per source.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    names = cond.resolve(conditions)
    plan = plan_render(
        soundfont, seed, scale, instruments, max_pitches, share=share, keep_borrowed=keep_borrowed, players=players
    )
    sources, notes, borrowed = plan.sources, plan.notes, plan.borrowed
    multi = len(sources) > 1
    workers = max(1, min(workers if workers > 0 else (os.cpu_count() or 1), len(notes)))
    pool = (
        ProcessPoolExecutor(max_workers=workers, mp_context=_mp_context(), initializer=_init_worker)
        if workers > 1
        else None
    )
    try:
        summaries = [
            _render_source(
                name,
                sf_path,
                plan.players[name],
                out_dir / name if multi else out_dir,
                plan.planned[name],
                names,
                pool,
                workers,
                progress,
                multi,
                tuple(sorted(_left_out(notes, name, list(sources), borrowed))),
            )
            for name, sf_path in sources.items()
        ]
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    if not multi:
        return replace(summaries[0], seconds=time.perf_counter() - started)
    return _totals(summaries, out_dir, time.perf_counter() - started)


@dataclass(frozen=True)
class RenderPlan:
    """Which font renders which note: what `render_dataset` writes, and what a kept render is checked against."""

    sources: dict[str, Path]
    notes: list[PlannedNote]
    borrowed: dict[str, set[str]]
    planned: dict[str, list[PlannedNote]]
    players: dict[str, str]
    """{source name: the player that renders it} (`PLAYERS`)."""


def plan_render(
    soundfont: SoundFontSpec | Sequence[SoundFontSpec] | Mapping[str, SoundFontSpec] | None = None,
    seed: int = 0,
    scale: float = 1.0,
    instruments: list[str] | None = None,
    max_pitches: int | None = None,
    *,
    share: bool = False,
    keep_borrowed: bool = False,
    players: Sequence[str] = (BUILTIN,),
) -> RenderPlan:
    """The notes of `build_manifest` dealt to the sources (font x player) as `render_dataset` deals them.

    Fails on a bad font file, a missing program or a missing player before anything is rendered.
    """
    fonts = resolve_sources(soundfont)
    notes = build_manifest(seed, scale=scale, instruments=instruments, max_pitches=max_pitches)
    _check_programs(fonts, notes)
    played = player_sources(fonts, players)
    sources = {name: path for name, (path, _) in played.items()}
    borrowed = source_borrowings(sources, keep_borrowed)
    planned = plan_sources(notes, list(sources), seed, share, borrowed)
    return RenderPlan(sources, notes, borrowed, planned, {name: p for name, (_, p) in played.items()})


def _melodic_programs(sf: SoundFont) -> set[int]:
    """The GM programs `sf` has a bank-0 (melodic) preset for."""
    return {p.program for p in sf.presets if p.bank == 0}


def lacking_instruments(sf: SoundFont) -> set[str]:
    """TinySOL instruments whose GM program has no bank-0 preset in `sf` (a sample set of a few instruments)."""
    have = _melodic_programs(sf)
    return {abbr for abbr, program in GM_PROGRAMS.items() if program not in have}


def source_borrowings(sources: Mapping[str, Path], keep_borrowed: bool = False) -> dict[str, set[str]]:
    """{source: the instruments its font leaves to the others}: those it lacks, and those it borrows unless
    `keep_borrowed`; empty for one font, which has no one to leave them to."""
    if len(sources) < 2:
        return {}
    left = {}
    for name, path in sources.items():
        sf = _soundfont(str(path))
        left[name] = lacking_instruments(sf) | (set() if keep_borrowed else set(borrowed_instruments(sf)))
    return left


def players(instrument: str, sources: Sequence[str], borrowed: Mapping[str, Collection[str]]) -> list[str]:
    """The sources that render `instrument`: those not borrowing it (`borrowed`: source -> abbrs), else all."""
    return [s for s in sources if instrument not in borrowed.get(s, ())] or list(sources)


def plan_sources(
    notes: Sequence[PlannedNote],
    sources: Sequence[str],
    seed: int,
    share: bool,
    borrowed: Mapping[str, Collection[str]] | None = None,
) -> dict[str, list[PlannedNote]]:
    """The notes each source renders: a share of them (`share_notes`), or all, less its borrowed instruments."""
    borrowed = borrowed or {}
    if share:
        return share_notes(notes, sources, seed, borrowed)
    return {s: [n for n in notes if s in players(n.row.instrument_abbr, sources, borrowed)] for s in sources}


def share_notes(
    notes: Sequence[PlannedNote],
    sources: Sequence[str],
    seed: int,
    borrowed: Mapping[str, Collection[str]] | None = None,
) -> dict[str, list[PlannedNote]]:
    """Split the manifest between sources: every note goes to one source, each instrument's range to all.

    Per instrument the notes are dealt in pitch order, like cards, starting at a seeded
    source: every source holds about 1/N of each instrument, spread over its whole range,
    so a model that never saw one source still saw every instrument and register. An
    instrument in a source's `borrowed` set is dealt among the other sources only (`players`).
    """
    if not sources:
        raise ValueError("share_notes needs at least one source")
    shares: dict[str, list[PlannedNote]] = {name: [] for name in sources}
    by_inst: dict[str, list[PlannedNote]] = defaultdict(list)
    for note in notes:
        by_inst[note.row.instrument_abbr].append(note)
    rng = np.random.default_rng([seed, 3000])
    for inst in sorted(by_inst):
        start = int(rng.integers(len(sources)))  # drawn the same way whoever plays it: other deals stay as they were
        dealers = players(inst, sources, borrowed or {})
        for rank, note in enumerate(sorted(by_inst[inst], key=lambda n: (n.midi, n.path))):
            shares[dealers[(start + rank) % len(dealers)]].append(note)
    return shares


def _left_out(
    notes: Sequence[PlannedNote], source: str, sources: Sequence[str], borrowed: Mapping[str, Collection[str]]
) -> set[str]:
    """The instruments of `notes` that `source` borrows and other sources render in its place."""
    return {n.row.instrument_abbr for n in notes if source not in players(n.row.instrument_abbr, sources, borrowed)}


def _check_programs(sources: Mapping[str, Path], notes: list[PlannedNote]) -> None:
    """Fail early on a bad file or a program no font has, before any process starts or any file is written.

    With several fonts, one may lack a program: `source_borrowings` leaves its notes to the others."""
    programs = {n.program for n in notes}
    have: set[int] = set()
    for path in sources.values():
        have |= _melodic_programs(_soundfont(str(path)))
    missing = sorted(programs - have)
    if missing:
        names = ", ".join(sorted({path.name for path in sources.values()}))
        raise ValueError(f"{names}: no bank-0 preset for GM program(s) {missing}")


def _render_source(
    name: str,
    sf_path: Path,
    playing: str,
    folder: Path,
    notes: list[PlannedNote],
    condition_names: Sequence[str],
    pool: ProcessPoolExecutor | None,
    workers: int,
    progress: bool,
    multi: bool,
    left_out: tuple[str, ...] = (),
) -> RenderSummary:
    """One source: the font's tuning per key (as `playing` plays it), every note (longest first), then its CSV."""
    from tqdm import tqdm

    class _Bar(tqdm):
        monitor_interval = 0  # no monitor thread: a lingering thread would rule out fork next time

    started = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)  # a source dealt no note (a small scale) still gets its empty CSV
    for directory in sorted({str(Path(n.path).parent) for n in notes}):
        (folder / directory).mkdir(parents=True, exist_ok=True)
    run = map if pool is None else partial(pool.map, chunksize=16)
    keys = sorted({(n.program, n.midi) for n in notes})
    tuning = dict(zip(keys, run(_tuning_one, [(playing, str(sf_path), *k) for k in keys]), strict=True))
    conds = {n.path: note_condition(n, condition_names, name) for n in notes}
    # Longest first, so that the last ones to finish are short.
    ordered = sorted(notes, key=lambda n: (-n.duration_s, n.path))
    jobs = [
        (
            n,
            str(folder),
            playing,
            str(sf_path),
            tuning[n.program, n.midi],
            conds[n.path] if conds[n.path].name != "dry" else None,
        )
        for n in ordered
    ]
    if pool is None:
        results = map(_render_one, jobs)
    else:
        results = pool.map(_render_one, jobs, chunksize=max(1, min(16, len(jobs) // (workers * 8))))
    total_bytes, audio_seconds = 0, 0.0
    with _Bar(total=len(jobs), unit="note", desc=name if multi else "synth", disable=not progress) as bar:
        for size, secs in results:
            total_bytes += size
            audio_seconds += secs
            bar.update()
    total_bytes += _write_source_metadata(folder, notes, name, conds)
    counts = Counter(c.name for c in conds.values())
    return RenderSummary(
        files=len(notes),
        seconds=time.perf_counter() - started,
        bytes=total_bytes,
        out_dir=folder,
        audio_seconds=audio_seconds,
        source=name,
        conditions=tuple((c, counts[c]) for c in cond.CONDITIONS if counts[c]),
        left_out=left_out,
    )


def _write_source_metadata(
    folder: Path, notes: list[PlannedNote], name: str, conds: Mapping[str, cond.Condition]
) -> int:
    """The source's TinySOL CSV (plus Source and Condition), written whole then renamed; its size."""
    rows = sorted((n.row for n in notes), key=lambda r: r.path)
    extra = [{"Source": name, "Condition": conds[r.path].tag} for r in rows]
    csv_path = folder / tinysol.METADATA_FILENAME
    tmp = csv_path.with_name(f".{csv_path.name}.{os.getpid()}.tmp")
    tinysol.write_metadata(rows, tmp, extra=extra, extra_columns=EXTRA_COLUMNS)
    os.replace(tmp, csv_path)
    return csv_path.stat().st_size


def _totals(summaries: list[RenderSummary], out_dir: Path, seconds: float) -> RenderSummary:
    """Several sources summed, each one's summary kept in `sources`."""
    return RenderSummary(
        files=sum(s.files for s in summaries),
        seconds=seconds,
        bytes=sum(s.bytes for s in summaries),
        out_dir=out_dir,
        audio_seconds=sum(s.audio_seconds for s in summaries),
        conditions=tuple(
            (c, sum(dict(s.conditions).get(c, 0) for s in summaries))
            for c in cond.CONDITIONS
            if any(c in dict(s.conditions) for s in summaries)
        ),
        sources=tuple(summaries),
    )


__all__ = [
    "BORROWED_SHARE",
    "BUILTIN",
    "PLAYERS",
    "available_players",
    "player_sources",
    "render_audio_tsf",
    "EXTRA_COLUMNS",
    "GM_PROGRAMS",
    "OPEN_STRINGS",
    "PlannedNote",
    "RenderSummary",
    "borrowed_instruments",
    "build_manifest",
    "note_condition",
    "note_seed",
    "plan_sources",
    "players",
    "render_audio",
    "render_dataset",
    "resolve_instruments",
    "resolve_sources",
    "share_notes",
    "lacking_instruments",
    "source_borrowings",
    "source_name",
    "tuning_corrections",
    "voice_tuning_error",
]
