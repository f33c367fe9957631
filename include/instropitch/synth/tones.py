"""Periodic test tones: what a person checking the tool with a tone generator plays.

Sines, square, triangle and sawtooth waves (band-limited Fourier series), tones whose
fundamental is missing (harmonics 2..8, as low brass and bassoon nearly are) and short
notes. The pitch model sees some in training (`training.synthetic_tones`) so that a bare
periodic tone is named like an instrument's note; the benchmark that checks it renders its
tones with another program (sox), not with this one.
"""

from __future__ import annotations

import numpy as np

from instropitch.tinysol import midi_to_hz

KINDS: tuple[str, ...] = (
    "sine",
    "square",
    "triangle",
    "sawtooth",
    "missing_fundamental",
    "naive_square",
    "naive_sawtooth",
)
"""`naive_*`: computed sample by sample, not band-limited, so high notes alias as a simple
tone generator's do (SoX's `synth square` among them)."""
SHORTEST_S, LONGEST_S = 0.06, 1.5


def partials(kind: str, max_harmonic: int) -> dict[int, float]:
    """Harmonic number -> amplitude of one period of `kind`."""
    if kind == "sine":
        return {1: 1.0}
    if kind == "square":
        return {n: 1 / n for n in range(1, max_harmonic + 1, 2)}
    if kind == "triangle":
        return {n: (-1) ** ((n - 1) // 2) / n**2 for n in range(1, max_harmonic + 1, 2)}
    if kind == "sawtooth":
        return {n: 1 / n for n in range(1, max_harmonic + 1)}
    if kind == "missing_fundamental":
        return {n: 1.0 for n in range(2, min(8, max_harmonic) + 1)}
    raise ValueError(f"unknown tone {kind!r}; expected one of {', '.join(KINDS)}")


WAVETABLE_SIZE = 4096
"""Points of one period: partials up to 2,047 (a 21 Hz square at 44.1 kHz needs ~1,000)."""


def _wavetable(amplitudes: dict[int, float]) -> np.ndarray:
    """One period of the sum of `amplitude * sin(2 pi n x)`, by an inverse FFT (any number of partials)."""
    spectrum = np.zeros(WAVETABLE_SIZE // 2 + 1, dtype=np.complex128)
    for n, amplitude in amplitudes.items():
        spectrum[n] = -0.5j * WAVETABLE_SIZE * amplitude
    return np.fft.irfft(spectrum, WAVETABLE_SIZE)


def _from_table(table: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """The table read at `phase` (0..1), linearly interpolated: O(samples), not O(samples x partials)."""
    position = phase * len(table)
    index = position.astype(np.int64) % len(table)
    frac = position - np.floor(position)
    return table[index] * (1 - frac) + table[(index + 1) % len(table)] * frac


def periodic_tone(
    kind: str, midi: int, seconds: float, sample_rate: int = 44100, *, detune_cents: float = 0.0, peak: float = 0.5
) -> np.ndarray:
    """One tone of `kind` at `midi` (+ `detune_cents`), 5 ms fades; band-limited kinds keep their
    partials below 95 % of Nyquist."""
    f0 = float(midi_to_hz(midi + detune_cents / 100))
    t = np.arange(max(1, int(round(seconds * sample_rate)))) / sample_rate
    phase = (f0 * t) % 1.0
    if kind == "naive_square":
        y = np.where(phase < 0.5, 1.0, -1.0)
    elif kind == "naive_sawtooth":
        y = 2.0 * phase - 1.0
    else:
        limit = max(1, int(0.95 * sample_rate / 2 / f0))
        y = _from_table(_wavetable(partials(kind, min(limit, WAVETABLE_SIZE // 2 - 1))), phase)
    fade = min(int(0.005 * sample_rate), len(t) // 4)
    if fade > 1:
        ramp = np.linspace(0.0, 1.0, fade)
        y[:fade] *= ramp
        y[-fade:] *= ramp[::-1]
    top = np.abs(y).max()
    return (peak * y / top if top > 0 else y).astype(np.float32)


def tone_set(midis: list[int], per_note: int, seed: int, sample_rate: int = 44100) -> list[tuple[int, np.ndarray]]:
    """`per_note` random tones per MIDI note: kind, length (log-uniform 60 ms..1.5 s), ±30 cents, level."""
    rng = np.random.default_rng(seed)
    out = []
    for midi in midis:
        for _ in range(per_note):
            kind = KINDS[int(rng.integers(len(KINDS)))]
            seconds = float(np.exp(rng.uniform(np.log(SHORTEST_S), np.log(LONGEST_S))))
            y = periodic_tone(
                kind,
                midi,
                seconds,
                sample_rate,
                detune_cents=float(rng.uniform(-30, 30)),
                peak=float(np.exp(rng.uniform(np.log(0.05), np.log(0.9)))),
            )
            out.append((midi, y))
    return out
