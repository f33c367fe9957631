"""The sample player: SoundFont voices turned into one note's samples, in numpy.

Every zone matching the key and velocity plays its sample, resampled to the target pitch
(4-point cubic Hermite interpolation) from root key, scale tuning, coarse/fine tune, the
sample's pitch correction and sample-rate ratio; sampleModes 1 and 3 loop; the DAHDSR
volume envelope, initialAttenuation, the low-pass filter (moved by the modulation envelope where the
font says so), the vibrato LFO and the modulation LFO (to pitch, cutoff and volume) apply;
zones are mixed to mono and a release tail follows note-off. `sf2` resolves which voices
play; this module only plays them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.signal import lfilter

from instropitch.synth.sf2 import (
    MAX_FILTER_CENTS,
    MIN_FILTER_CENTS,
    SILENCE_DB,
    Lfo,
    ModEnvelope,
    SoundFont,
    Voice,
    abs_cents_to_hz,
)

OPEN_FILTER = 0.35
"""A cutoff above this share of the sample rate leaves the voice unfiltered: a 2-pole low-pass changes next to nothing."""


def render_note(
    sf: SoundFont,
    program: int,
    midi: int,
    velocity: int,
    duration_s: float,
    sample_rate: int = 44100,
    bank: int = 0,
    release_s: float = 0.5,
    *,
    detune_cents: float = 0.0,
    vibrato_hz: float = 0.0,
    vibrato_cents: float = 0.0,
    nearest_key: bool = True,
) -> np.ndarray:
    """Render one note: `duration_s` held, then `release_s` of release tail; mono float32.

    Output length is round((duration_s + release_s) * sample_rate); nothing is normalised
    (velocity and attenuation set the level). `detune_cents` shifts the pitch, and
    `vibrato_hz`/`vibrato_cents` add a sine vibrato on top of the SoundFont's own.
    If no zone covers `midi` and `nearest_key` is true, the nearest key that has one is
    played and transposed (a clear `ValueError` otherwise).
    """
    voices, shift = sf.find_voices(program, int(midi), velocity, bank, nearest_key)
    return render_voices(
        sf,
        voices,
        duration_s,
        sample_rate,
        release_s,
        detune_cents=detune_cents + shift,
        vibrato_hz=vibrato_hz,
        vibrato_cents=vibrato_cents,
    )


def render_voices(
    sf: SoundFont,
    voices: Sequence[Voice],
    duration_s: float,
    sample_rate: int = 44100,
    release_s: float = 0.5,
    *,
    detune_cents: float | Sequence[float] = 0.0,
    vibrato_hz: float = 0.0,
    vibrato_cents: float = 0.0,
) -> np.ndarray:
    """Mix the given voices (from `voices`/`find_voices`) as one note, like `render_note`.

    `detune_cents` is one shift for all voices or one per voice (e.g. to tune layers
    of a preset separately).
    """
    if duration_s < 0 or release_s < 0:
        raise ValueError("duration_s and release_s must be >= 0")
    shifts = [float(detune_cents)] * len(voices) if np.isscalar(detune_cents) else list(detune_cents)
    if len(shifts) != len(voices):
        raise ValueError(f"{len(shifts)} detune values for {len(voices)} voices")
    n_on = int(round(duration_s * sample_rate))
    n_total = n_on + int(round(release_s * sample_rate))
    out = np.zeros(n_total, dtype=np.float32)
    if n_total == 0:
        return out
    for voice, shift in zip(voices, shifts, strict=True):
        out += _render_voice(sf, voice, n_on, n_total, sample_rate, shift, vibrato_hz, vibrato_cents)
    if release_s > 0:
        fade = min(n_total - n_on, int(0.01 * sample_rate))
        if fade > 1:
            out[n_total - fade :] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    return out


def _render_voice(
    sf: SoundFont,
    v: Voice,
    n_on: int,
    n_total: int,
    sr: int,
    extra_cents: float,
    vibrato_hz: float,
    vibrato_cents: float,
) -> np.ndarray:
    out = np.zeros(n_total, dtype=np.float32)
    data = sf.sample_data(v.start, v.end)
    length = len(data)
    if length < 2:
        return out
    step = 2.0 ** ((v.pitch_cents + extra_cents) / 1200.0) * v.sample.sample_rate / sr

    # Envelope first: once it has died away, nothing more needs rendering.
    env = _volume_envelope(v, n_on, n_total, sr)
    audible = np.flatnonzero(env > 1e-5)
    n = int(audible[-1]) + 1 if len(audible) else 0
    if n == 0:
        return out

    # Playback position in sample points from v.start (vibrato makes it non-linear).
    vibrato = v.vib_to_pitch_cents and v.vib_freq_hz > 0
    uses_mod_lfo = v.mod_lfo_to_pitch_cents or v.mod_lfo_to_volume_cb
    added = vibrato_hz > 0 and vibrato_cents
    t = np.arange(n, dtype=np.float64) / sr if vibrato or uses_mod_lfo or added else None
    mod_lfo = _lfo(v.mod_lfo, t) if uses_mod_lfo else None
    cents: np.ndarray | float = 0.0
    if vibrato:
        cents = v.vib_to_pitch_cents * _lfo(Lfo(v.vib_delay_s, v.vib_freq_hz), t)
    if v.mod_lfo_to_pitch_cents:
        cents = cents + v.mod_lfo_to_pitch_cents * mod_lfo
    if added:
        ramp = np.minimum(t / 0.3, 1.0)  # fades in over the first 300 ms
        cents = cents + vibrato_cents * ramp * np.sin(2 * np.pi * vibrato_hz * t)
    if np.ndim(cents):
        pos = np.empty(n, dtype=np.float64)
        pos[0] = 0.0
        np.cumsum(step * np.exp2(np.asarray(cents)[:-1] / 1200.0), out=pos[1:])
    else:
        pos = np.arange(n, dtype=np.float64) * step

    ls, le = v.loop_start - v.start, v.loop_end - v.start
    if not v.loops:
        y = _hermite(_coefficients(data), pos[: _before(pos, length - 1)])
    else:
        span = le - ls
        # While looping, positions past the loop end wrap; the table's neighbours past the
        # end are the loop's first points, so the seam interpolates across the loop.
        looping = n if v.loop_mode == 1 else min(n, n_on)
        head = pos[:looping]
        wrapped = np.where(head >= le, ls + np.mod(head - ls, span), head)
        loop_table = _coefficients(np.concatenate([data[:le], data[ls : ls + 3]]))[:le]
        y = _hermite(loop_table, wrapped)
        if looping < n:
            # sampleModes 3: after note-off, play on from the loop into the rest of the sample.
            resume = float(ls + np.mod(pos[looping] - ls, span)) if pos[looping] >= le else float(pos[looping])
            tail = pos[looping:] - pos[looping] + resume
            tail = tail[: _before(tail, length - 1)]
            y = np.concatenate([y, _hermite(_coefficients(data), tail)])

    y = _filtered(y, v, n_on, sr)

    m = len(y)
    y *= env[:m]
    if v.mod_lfo_to_volume_cb:
        y *= (10.0 ** (v.mod_lfo_to_volume_cb * mod_lfo[:m] / 200.0)).astype(np.float32)
    y *= np.float32(10.0 ** (-v.attenuation_cb / 200.0))
    out[:m] = y
    return out


# ------------------------------------------------------------------ DSP helpers


def _coefficients(src: np.ndarray) -> np.ndarray:
    """Cubic Hermite (Catmull-Rom) coefficients for every point of `src`: shape (len, 4).

    Row i interpolates between src[i] and src[i+1]; the point before the first is taken
    as the first, points past the end as zero.
    """
    ext = np.empty(len(src) + 3, dtype=np.float32)
    ext[0] = src[0]
    ext[1 : len(src) + 1] = src
    ext[len(src) + 1 :] = 0.0
    xm1, x0, x1, x2 = ext[:-3], ext[1:-2], ext[2:-1], ext[3:]
    table = np.empty((len(src), 4), dtype=np.float32)
    table[:, 0] = x0
    table[:, 1] = 0.5 * (x1 - xm1)
    table[:, 2] = xm1 - 2.5 * x0 + 2.0 * x1 - 0.5 * x2
    table[:, 3] = 0.5 * (x2 - xm1) + 1.5 * (x0 - x1)
    return table


def _hermite(table: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Interpolate at fractional positions within the table, one row gather per point."""
    if len(pos) == 0:
        return np.zeros(0, dtype=np.float32)
    idx = pos.astype(np.int32)
    frac = (pos - idx).astype(np.float32)
    np.clip(idx, 0, len(table) - 1, out=idx)
    rows = np.take(table, idx, axis=0)
    y = rows[:, 3] * frac
    y += rows[:, 2]
    y *= frac
    y += rows[:, 1]
    y *= frac
    y += rows[:, 0]
    return y


def _before(pos: np.ndarray, limit: float) -> int:
    """How many of the (increasing) positions lie before `limit`."""
    return int(np.searchsorted(pos, limit, side="left"))


def _volume_envelope(v: Voice, n_on: int, n_total: int, sr: int) -> np.ndarray:
    """The DAHDSR volume envelope as linear gain, note-off at sample `n_on`."""
    env = np.zeros(n_total, dtype=np.float32)
    pos = 0

    def span(seconds: float) -> int:
        return max(0, int(round(seconds * sr)))

    decay_n = max(1, span(v.decay_s))
    sustain_db = -v.sustain_cb / 10.0
    pos = _delay_attack_hold(env, n_on, span(v.delay_s), span(v.attack_s), span(v.hold_s))
    if pos < n_on:
        # Decay runs linearly in dB at 100 dB per decay time until the sustain level.
        to_sustain = int(round(decay_n * min(max(-sustain_db, 0.0), -SILENCE_DB) / -SILENCE_DB))
        m = min(to_sustain, n_on - pos)
        if m > 0:
            db = SILENCE_DB * np.arange(m, dtype=np.float32) / decay_n
            env[pos : pos + m] = 10.0 ** (db / 20.0)
            pos += m
        if pos < n_on:
            env[pos:n_on] = 0.0 if sustain_db <= SILENCE_DB else 10.0 ** (sustain_db / 20.0)
    if n_total > n_on:
        level = float(env[n_on - 1]) if n_on > 0 else 0.0
        if level > 1e-5:
            start_db = 20.0 * math.log10(level)
            release_n = max(1, span(v.release_s))
            m = n_total - n_on
            db = start_db + SILENCE_DB * np.arange(1, m + 1, dtype=np.float32) / release_n
            tail = 10.0 ** (db / 20.0)
            tail[db <= SILENCE_DB] = 0.0
            env[n_on:] = tail
    return env


def _delay_attack_hold(env: np.ndarray, n_on: int, delay: int, attack: int, hold: int) -> int:
    """Write an envelope's delay (zeros), linear attack and hold (ones) into `env`, note-off at
    `n_on`; the sample where its decay starts."""
    pos = min(delay, n_on)
    if attack > 0 and pos < n_on:
        m = min(attack, n_on - pos)
        env[pos : pos + m] = np.arange(m, dtype=env.dtype) / attack
        pos += m
    if pos < n_on:
        m = min(hold, n_on - pos)
        env[pos : pos + m] = 1.0
        pos += m
    return pos


def _lfo(lfo: Lfo, t: np.ndarray) -> np.ndarray:
    """An LFO's value (-1..1) at times `t` (s): 0 until its delay has passed, then a triangle rising first (FluidSynth's)."""
    phase = np.maximum(t - lfo.delay_s, 0.0) * lfo.freq_hz + 0.25
    return 1.0 - 4.0 * np.abs(phase - np.floor(phase) - 0.5)


def _mod_envelope(e: ModEnvelope, n_on: int, n_total: int, sr: int) -> np.ndarray:
    """The modulation envelope, 0..1 and linear in every stage (SF2 2.04 section 8.1.3), note-off at `n_on`."""
    env = np.zeros(n_total, dtype=np.float64)
    pos = _delay_attack_hold(env, n_on, round(e.delay_s * sr), round(e.attack_s * sr), round(e.hold_s * sr))
    if pos < n_on:
        decay_n = max(1, round(e.decay_s * sr))
        m = min(round(decay_n * (1.0 - e.sustain)), n_on - pos)
        env[pos : pos + m] = 1.0 - np.arange(m) / decay_n
        env[pos + m : n_on] = e.sustain
    if n_total > n_on:
        level = float(env[n_on - 1]) if n_on > 0 else 0.0
        release_n = max(1, round(e.release_s * sr))
        env[n_on:] = np.maximum(level - np.arange(1, n_total - n_on + 1) / release_n, 0.0)
    return env


FILTER_BLOCK = 64
"""Samples between updates of a moving filter cutoff (FluidSynth's control rate)."""
FILTER_STEP_CENTS = 20.0
"""A moving cutoff's resolution: runs of one value filter in one call, far fewer than one per block."""


def _filtered(y: np.ndarray, v: Voice, n_on: int, sr: int) -> np.ndarray:
    """The voice through its low-pass: at one cutoff, or at the cutoff its modulation envelope and LFO move."""
    if not (v.mod_env_to_filter_cents or v.mod_lfo_to_filter_cents):
        fc_hz = abs_cents_to_hz(v.filter_fc_cents)
        return _lowpass(y, fc_hz, v.filter_q_cb, sr) if fc_hz < OPEN_FILTER * sr else y
    starts = np.arange(0, len(y), FILTER_BLOCK)
    cents = np.full(len(starts), v.filter_fc_cents)
    if v.mod_env_to_filter_cents:
        cents += v.mod_env_to_filter_cents * _mod_envelope(v.mod_env, n_on, len(y), sr)[starts]
    if v.mod_lfo_to_filter_cents:
        cents += v.mod_lfo_to_filter_cents * _lfo(v.mod_lfo, starts / sr)
    cents = np.clip(cents, MIN_FILTER_CENTS, MAX_FILTER_CENTS)
    cents = np.round(cents / FILTER_STEP_CENTS) * FILTER_STEP_CENTS
    # One run per stretch of equal cutoff (the sustain is one), the filter's state carried across.
    first = np.flatnonzero(np.r_[True, np.diff(cents) != 0])
    hz = [abs_cents_to_hz(c) for c in cents[first]]
    if min(hz) >= OPEN_FILTER * sr:
        return y
    bounds = [*starts[first], len(y)]
    out = np.empty_like(y)
    state = np.zeros(2)
    for k, fc_hz in enumerate(hz):
        b, a = _lowpass_coefficients(min(fc_hz, 0.45 * sr), v.filter_q_cb, sr)
        lo, hi = bounds[k], bounds[k + 1]
        out[lo:hi], state = lfilter(b, a, y[lo:hi], zi=state)
    return out


def _lowpass_coefficients(fc_hz: float, q_cb: float, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """(b, a) of a resonant 2-pole low-pass (RBJ biquad), a[0] = 1; Q in centibels above the DC gain as SF2 has it."""
    q = max(10.0 ** (q_cb / 200.0), 0.7071)
    w0 = 2 * math.pi * fc_hz / sr
    alpha = math.sin(w0) / (2 * q)
    cosw = math.cos(w0)
    b = np.array([(1 - cosw) / 2, 1 - cosw, (1 - cosw) / 2])
    a = np.array([1 + alpha, -2 * cosw, 1 - alpha])
    # Keep the passband level roughly constant when the filter resonates.
    return b / a[0] / math.sqrt(q / 0.7071), a / a[0]


def _lowpass(y: np.ndarray, fc_hz: float, q_cb: float, sr: int) -> np.ndarray:
    """`y` through the low-pass of `_lowpass_coefficients`."""
    b, a = _lowpass_coefficients(fc_hz, q_cb, sr)
    return lfilter(b, a, y).astype(np.float32)
