"""Render-condition presets: what a microphone in a room would hear of a synthesized note.

A CNN trained on one SoundFont learns that font's recording chain as much as the
instruments. These presets vary the chain per note so that it is not a cue: the room
(reverb from a generated impulse response), the microphone's colour (EQ tilt, band
limits, presence peak), the distance (level, air loss, noise floor) and the player
(vibrato, tuning offset, attack).

Each preset is a `draw` function: it takes the note's condition random generator and
returns a `Condition`, a frozen record of every parameter drawn. Applying a condition is
then deterministic (`Condition.apply`; noise comes from a seed stored in the record), so
the same note seed gives the same audio in any process. `Player` changes act at render
time (`instropitch.synth.render_audio` feeds them to the SoundFont player); the other
effects post-process the rendered float signal, never change its length, and keep its
peak (except `Distance`, whose purpose is a lower level).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy import fft as sp_fft
from scipy.signal import lfilter, oaconvolve

# ------------------------------------------------------------------ effects


class Effect(Protocol):
    """A post-render effect: float signal in, float signal of the same length out."""

    def apply(self, x: np.ndarray, sample_rate: int) -> np.ndarray: ...


def impulse_response(
    rt60_s: float,
    sample_rate: int,
    seed: int,
    predelay_s: float = 0.0,
    early_reflections: int = 6,
    early_span_s: float = 0.03,
    damping_hz: float = 7000.0,
) -> np.ndarray:
    """A room's impulse response: early reflections, then exponentially decaying noise.

    The diffuse tail falls 60 dB in `rt60_s` (amplitude ``10**(-3 t / rt60)``) and builds up
    over the early-reflection span; a one-pole low-pass at `damping_hz` stands in for the
    walls' and the air's high-frequency absorption. There is no direct path (the caller
    mixes the dry signal), and the response has unit energy so that the wet signal is
    about as loud as the dry one.
    """
    rng = np.random.default_rng(seed)
    n = max(2, int(round(rt60_s * sample_rate)))
    t = np.arange(n) / sample_rate
    decay = 10.0 ** (-3.0 * t / rt60_s)
    tail = rng.standard_normal(n) * decay
    build = max(1e-3, early_span_s)
    tail *= 1.0 - np.exp(-t / (0.5 * build))
    a = 1.0 - math.exp(-2 * math.pi * damping_hz / sample_rate)
    tail = lfilter([a], [1.0, a - 1.0], tail)
    # Early reflections: a few discrete taps, weaker the later they come.
    times = np.sort(rng.uniform(0.001, max(0.002, early_span_s), early_reflections))
    for when in times:
        i = int(when * sample_rate)
        if i < n:
            tail[i] += rng.choice([-1.0, 1.0]) * rng.uniform(0.4, 1.0) * 10.0 ** (-3.0 * when / rt60_s) * 4.0
    ir = np.concatenate([np.zeros(int(round(predelay_s * sample_rate))), tail])
    ir /= math.sqrt(float(np.sum(ir**2))) or 1.0
    return ir.astype(np.float32)


def rt60_estimate(ir: np.ndarray, sample_rate: int) -> float:
    """RT60 from Schroeder backward integration, fitted between -5 and -25 dB (T20 x 3)."""
    energy = np.cumsum((np.asarray(ir, dtype=np.float64) ** 2)[::-1])[::-1]
    edc = 10 * np.log10(energy / energy[0] + 1e-300)
    idx = np.flatnonzero((edc <= -5) & (edc >= -25))
    if len(idx) < 2:
        return float("nan")
    slope = np.polyfit(idx / sample_rate, edc[idx], 1)[0]
    return float(-60.0 / slope)


def _peak(x: np.ndarray) -> float:
    return float(np.max(np.abs(x))) if len(x) else 0.0


def _match_peak(y: np.ndarray, peak: float) -> np.ndarray:
    """Scale `y` to the given peak: an effect that colours the sound should not change its level."""
    now = _peak(y)
    if now > 0 and peak > 0:
        y = y * np.float32(peak / now)
    return y.astype(np.float32, copy=False)


@dataclass(frozen=True)
class Reverb:
    """A room: the dry signal mixed with its convolution by a generated impulse response."""

    rt60_s: float
    wet: float  # share of the reverberant signal in the mix, 0..1
    predelay_s: float = 0.0
    early_reflections: int = 6
    early_span_s: float = 0.03
    damping_hz: float = 7000.0
    seed: int = 0

    def impulse_response(self, sample_rate: int) -> np.ndarray:
        return impulse_response(
            self.rt60_s,
            sample_rate,
            self.seed,
            self.predelay_s,
            self.early_reflections,
            self.early_span_s,
            self.damping_hz,
        )

    def apply(self, x: np.ndarray, sample_rate: int) -> np.ndarray:
        """Reverberate; the tail past the end of `x` is cut (the file keeps its length)."""
        if len(x) == 0:
            return x
        wet = oaconvolve(x.astype(np.float32), self.impulse_response(sample_rate))[: len(x)]
        y = (1.0 - self.wet) * x + self.wet * wet
        return _match_peak(y, _peak(x))


def _butterworth(f: np.ndarray, cutoff_hz: float, order: int, high: bool) -> np.ndarray:
    ratio = f / cutoff_hz if not high else cutoff_hz / np.maximum(f, 1e-9)
    return 1.0 / np.sqrt(1.0 + ratio ** (2 * order))


@dataclass(frozen=True)
class MicColour:
    """A microphone and preamp: tilt around 1 kHz, high-/low-pass band limits, a presence peak."""

    tilt_db_per_decade: float = 0.0
    highpass_hz: float = 20.0
    lowpass_hz: float = 20000.0
    presence_hz: float = 4000.0
    presence_db: float = 0.0
    highpass_order: int = 2
    lowpass_order: int = 4
    max_tilt_db: float = 12.0

    def response(self, freqs_hz: np.ndarray) -> np.ndarray:
        """Magnitude response (linear) at the given frequencies."""
        f = np.asarray(freqs_hz, dtype=np.float64)
        tilt = self.tilt_db_per_decade * np.log10(np.maximum(f, 20.0) / 1000.0)
        gain_db = np.clip(tilt, -self.max_tilt_db, self.max_tilt_db)
        if self.presence_db:
            octaves = np.log2(np.maximum(f, 1.0) / self.presence_hz)
            gain_db = gain_db + self.presence_db * np.exp(-0.5 * (octaves / 0.6) ** 2)
        h = 10.0 ** (gain_db / 20.0)
        h = h * _butterworth(f, self.highpass_hz, self.highpass_order, high=True)
        return h * _butterworth(f, self.lowpass_hz, self.lowpass_order, high=False)

    def apply(self, x: np.ndarray, sample_rate: int) -> np.ndarray:
        """Filter in the frequency domain (zero phase, zero-padded so nothing wraps round)."""
        if len(x) == 0:
            return x
        m = sp_fft.next_fast_len(len(x) + 16384, real=True)
        spectrum = sp_fft.rfft(x.astype(np.float32), m)
        spectrum *= self.response(sp_fft.rfftfreq(m, 1.0 / sample_rate)).astype(np.float32)
        y = sp_fft.irfft(spectrum, m)[: len(x)]
        return _match_peak(y, _peak(x))


def _noise(n: int, colour: str, seed: int) -> np.ndarray:
    """Unit-RMS white or pink (1/f power) noise."""
    rng = np.random.default_rng(seed)
    white = rng.standard_normal(n)
    if colour == "pink" and n > 1:
        m = sp_fft.next_fast_len(n, real=True)
        spectrum = sp_fft.rfft(white, m)
        f = np.arange(len(spectrum), dtype=np.float64)
        f[0] = 1.0
        spectrum /= np.sqrt(f)
        spectrum[0] = 0.0
        white = sp_fft.irfft(spectrum, m)[:n]
    rms = math.sqrt(float(np.mean(white**2))) if n else 0.0
    return (white / rms if rms > 0 else white).astype(np.float32)


@dataclass(frozen=True)
class Distance:
    """A far microphone: lower level, duller highs (air), a higher noise floor.

    The noise floor is `noise_dbfs` RMS, but never closer than `min_snr_db` below the note's
    (lowered) peak (about 16 dB below its RMS), so that a distant `pp` stays a note and not
    a noise file.
    """

    gain_db: float
    noise_dbfs: float
    noise_colour: str = "pink"
    air_lowpass_hz: float = 12000.0
    min_snr_db: float = 24.0
    seed: int = 0

    def noise_level_dbfs(self, peak: float) -> float:
        """The noise RMS actually added (dBFS) to a signal whose peak after the gain is `peak`."""
        if peak <= 0:
            return self.noise_dbfs
        return min(self.noise_dbfs, 20 * math.log10(peak) - self.min_snr_db)

    def apply(self, x: np.ndarray, sample_rate: int) -> np.ndarray:
        if len(x) == 0:
            return x
        a = 1.0 - math.exp(-2 * math.pi * self.air_lowpass_hz / sample_rate)
        y = lfilter([a], [1.0, a - 1.0], x.astype(np.float64))
        y = _match_peak(y, _peak(x)) * np.float32(10.0 ** (self.gain_db / 20.0))
        level = self.noise_level_dbfs(_peak(y))
        return y + _noise(len(y), self.noise_colour, self.seed) * np.float32(10.0 ** (level / 20.0))


# ------------------------------------------------------------------ the player (render time)

MAX_ATTACK_S = 0.8
"""A slower onset stops here: past it, a short note would be all attack."""


@dataclass(frozen=True)
class Player:
    """How this take was played; applied by the SoundFont player, not to the audio.

    `detune_cents` is a constant tuning offset (the file is still labelled with the
    written pitch), the vibrato scales multiply the instrument's usual vibrato,
    `added_vibrato` (Hz, cents) gives one to an instrument that usually has none,
    `own_vibrato` (Hz, cents) is the player's whatever the instrument's usual (so that a wide
    vibrato is not the mark of one family), and each voice's attack becomes
    ``attack_s * attack_scale + attack_add_s`` (at most `MAX_ATTACK_S`).
    """

    detune_cents: float = 0.0
    vibrato_rate_scale: float = 1.0
    vibrato_depth_scale: float = 1.0
    added_vibrato: tuple[float, float] = (0.0, 0.0)
    own_vibrato: tuple[float, float] = (0.0, 0.0)
    attack_scale: float = 1.0
    attack_add_s: float = 0.0

    def vibrato(self, rate_hz: float, depth_cents: float, may_add: bool = True) -> tuple[float, float]:
        """The (rate, depth) to play given the instrument's usual ones (`may_add`: it can play one at all)."""
        if may_add and self.own_vibrato[0] > 0:
            return self.own_vibrato
        if rate_hz > 0:
            return rate_hz * self.vibrato_rate_scale, depth_cents * self.vibrato_depth_scale
        if may_add and self.added_vibrato[0] > 0:
            return self.added_vibrato
        return rate_hz, depth_cents

    def attack(self, attack_s: float) -> float:
        """A voice's new attack time; a slower onset never exceeds 0.8 s (or the font's own)."""
        return min(attack_s * self.attack_scale + self.attack_add_s, max(attack_s, MAX_ATTACK_S))


# ------------------------------------------------------------------ conditions and presets


@dataclass(frozen=True)
class Condition:
    """Every parameter drawn for one note: render-time `player`, then `effects` in order."""

    name: str
    label: str = ""
    player: Player | None = None
    effects: tuple[Reverb | MicColour | Distance, ...] = ()

    @property
    def tag(self) -> str:
        """What the metadata records: the preset, plus the parts a `mixed` note got."""
        return self.label or self.name

    def apply(self, x: np.ndarray, sample_rate: int) -> np.ndarray:
        """The post-render effects in chain order (room, microphone, distance)."""
        y = np.asarray(x, dtype=np.float32)
        for effect in self.effects:
            y = effect.apply(y, sample_rate)
        return y.astype(np.float32, copy=False)


DRY = Condition("dry")
"""Nothing beyond the plain render."""

MAX_DETUNE_CENTS = 30.0


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**63))


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def draw_room(rng: np.random.Generator) -> Reverb:
    """A small room: RT60 0.2-0.6 s, early reflections within 2-25 ms, 20-50 % wet."""
    return Reverb(
        rt60_s=float(rng.uniform(0.2, 0.6)),
        wet=float(rng.uniform(0.2, 0.5)),
        predelay_s=float(rng.uniform(0.0, 0.008)),
        early_reflections=int(rng.integers(4, 9)),
        early_span_s=float(rng.uniform(0.008, 0.025)),
        damping_hz=_log_uniform(rng, 5000.0, 12000.0),
        seed=_seed(rng),
    )


def draw_hall(rng: np.random.Generator) -> Reverb:
    """A concert hall: RT60 1.2-2.5 s, pre-delay 15-50 ms, reflections within 30-80 ms, 30-65 % wet."""
    return Reverb(
        rt60_s=float(rng.uniform(1.2, 2.5)),
        wet=float(rng.uniform(0.3, 0.65)),
        predelay_s=float(rng.uniform(0.015, 0.05)),
        early_reflections=int(rng.integers(6, 13)),
        early_span_s=float(rng.uniform(0.03, 0.08)),
        damping_hz=_log_uniform(rng, 3000.0, 8000.0),
        seed=_seed(rng),
    )


def draw_mic(rng: np.random.Generator) -> MicColour:
    """Tilt -6..+6 dB/decade, high-pass 40-250 Hz, low-pass 5-16 kHz, a 0-6 dB presence peak half the time."""
    presence = rng.random() < 0.5
    return MicColour(
        tilt_db_per_decade=float(rng.uniform(-6.0, 6.0)),
        highpass_hz=_log_uniform(rng, 40.0, 250.0),
        lowpass_hz=_log_uniform(rng, 5000.0, 16000.0),
        presence_hz=_log_uniform(rng, 2000.0, 6000.0),
        presence_db=float(rng.uniform(1.0, 6.0)) if presence else 0.0,
    )


def draw_distance(rng: np.random.Generator) -> Distance:
    """Level -6..-24 dB, noise floor -65..-45 dBFS (pink or white), air low-pass 6-14 kHz."""
    return Distance(
        gain_db=float(rng.uniform(-24.0, -6.0)),
        noise_dbfs=float(rng.uniform(-65.0, -45.0)),
        noise_colour="pink" if rng.random() < 0.5 else "white",
        air_lowpass_hz=_log_uniform(rng, 6000.0, 14000.0),
        seed=_seed(rng),
    )


def draw_little_room(rng: np.random.Generator) -> Reverb:
    """The room a distant microphone hears: RT60 0.3-0.8 s, 15-35 % wet."""
    return Reverb(
        rt60_s=float(rng.uniform(0.3, 0.8)),
        wet=float(rng.uniform(0.15, 0.35)),
        predelay_s=float(rng.uniform(0.0, 0.01)),
        early_reflections=int(rng.integers(4, 9)),
        early_span_s=float(rng.uniform(0.01, 0.03)),
        damping_hz=_log_uniform(rng, 4000.0, 10000.0),
        seed=_seed(rng),
    )


OWN_VIBRATO_SHARE = 0.5
"""How many players play a vibrato of their own, 4.5-7 Hz and 5-50 cents, whatever the instrument: real
saxophonists, flautists and trumpeters swing as wide as violinists. Without it only bowed strings swung more
than ~20 cents in training, and a saxophone with a 22-cent vibrato (ffmpeg's) read "Strings, sure"."""


def draw_player(rng: np.random.Generator) -> Player:
    """Tuning offset within +-30 cents, vibrato rate x0.75-1.3 and depth x0.3-2.2 (or, 35 % of the
    time, a light 4.5-6.5 Hz / 3-10 cent vibrato where the instrument has none; or, half the time, the
    player's own), and a faster (attack x0.3-1) or slower (x1.5-4 plus 20-150 ms) onset."""
    detune = float(rng.uniform(-MAX_DETUNE_CENTS, MAX_DETUNE_CENTS))
    rate_scale = float(rng.uniform(0.75, 1.3))
    depth_scale = _log_uniform(rng, 0.3, 2.2)
    added = (float(rng.uniform(4.5, 6.5)), float(rng.uniform(3.0, 10.0))) if rng.random() < 0.35 else (0.0, 0.0)
    own = (float(rng.uniform(4.5, 7.0)), _log_uniform(rng, 5.0, 50.0))
    if rng.random() >= OWN_VIBRATO_SHARE:
        own = (0.0, 0.0)
    if rng.random() < 0.5:
        attack_scale, attack_add = float(rng.uniform(0.3, 1.0)), 0.0
    else:
        attack_scale, attack_add = float(rng.uniform(1.5, 4.0)), float(rng.uniform(0.02, 0.15))
    return Player(detune, rate_scale, depth_scale, added, own, attack_scale, attack_add)


def dry(rng: np.random.Generator) -> Condition:
    return DRY


def room(rng: np.random.Generator) -> Condition:
    return Condition("room", effects=(draw_room(rng),))


def hall(rng: np.random.Generator) -> Condition:
    return Condition("hall", effects=(draw_hall(rng),))


def mic(rng: np.random.Generator) -> Condition:
    return Condition("mic", effects=(draw_mic(rng),))


def distant(rng: np.random.Generator) -> Condition:
    return Condition("distant", effects=(draw_little_room(rng), draw_distance(rng)))


def player(rng: np.random.Generator) -> Condition:
    return Condition("player", player=draw_player(rng))


def mixed(rng: np.random.Generator) -> Condition:
    """A random combination: room or hall or neither, then each of mic, distant, player by chance
    (at least one part); the label lists the parts, e.g. `mixed:hall+mic+player`."""
    while True:
        space = ("", "room", "hall")[int(rng.choice(3, p=[0.35, 0.4, 0.25]))]
        use_mic, use_distant, use_player = rng.random(3) < (0.5, 0.35, 0.5)
        if space or use_mic or use_distant or use_player:
            break
    parts: list[str] = []
    effects: list[Reverb | MicColour | Distance] = []
    if space:
        parts.append(space)
        effects.append(draw_room(rng) if space == "room" else draw_hall(rng))
    if use_mic:
        parts.append("mic")
        effects.append(draw_mic(rng))
    if use_distant:
        parts.append("distant")
        if not space:
            effects.insert(0, draw_little_room(rng))
        effects.append(draw_distance(rng))
    perf = None
    if use_player:
        parts.append("player")
        perf = draw_player(rng)
    return Condition("mixed", "mixed:" + "+".join(parts), perf, tuple(effects))


@dataclass(frozen=True)
class Preset:
    """A named preset: `draw(rng)` returns the `Condition` for one note."""

    name: str
    description: str
    draw: Callable[[np.random.Generator], Condition]


CONDITIONS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("dry", "the plain render, byte-identical to a render without conditions", dry),
        Preset("room", "small room reverb: RT60 0.2-0.6 s, 20-50 % wet", room),
        Preset("hall", "large hall reverb: RT60 1.2-2.5 s, pre-delay 15-50 ms, 30-65 % wet", hall),
        Preset("mic", "microphone colour: tilt +-6 dB/decade, high-pass 40-250 Hz, low-pass 5-16 kHz", mic),
        Preset("distant", "far microphone: -6..-24 dB, noise floor -65..-45 dBFS, air loss, a little room", distant),
        Preset(
            "player",
            "player: tuning +-30 cents, the vibrato changed or the player's own (up to 50 cents), faster/slower attack",
            player,
        ),
        Preset("mixed", "a random combination of room/hall, mic, distant and player", mixed),
    )
}
"""Preset name -> preset, in the order the CLI lists them."""


def resolve(names: str | Sequence[str] | None) -> tuple[str, ...]:
    """A comma list or sequence of preset names -> validated tuple (order kept, duplicates dropped).

    None or empty means `("dry",)`. Unknown names raise a `ValueError` that names them and
    the known presets.
    """
    if names is None:
        return ("dry",)
    items = names.split(",") if isinstance(names, str) else list(names)
    chosen: list[str] = []
    unknown: list[str] = []
    for item in items:
        name = str(item).strip().lower()
        if not name:
            continue
        if name not in CONDITIONS:
            unknown.append(str(item).strip())
        elif name not in chosen:
            chosen.append(name)
    if unknown:
        raise ValueError(f"unknown render condition(s) {', '.join(map(repr, unknown))}; known: {', '.join(CONDITIONS)}")
    return tuple(chosen) or ("dry",)


def choose(names: Sequence[str], rng: np.random.Generator) -> Condition:
    """One of `names` (validated with `resolve`) drawn from `rng`, with its parameters."""
    names = resolve(names)
    name = names[int(rng.integers(len(names)))] if len(names) > 1 else names[0]
    return CONDITIONS[name].draw(rng)


__all__ = [
    "CONDITIONS",
    "DRY",
    "MAX_DETUNE_CENTS",
    "Condition",
    "Distance",
    "MicColour",
    "Player",
    "Preset",
    "Reverb",
    "choose",
    "impulse_response",
    "resolve",
    "rt60_estimate",
]
