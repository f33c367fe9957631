"""SoundFont modulators at note-on, as FluidSynth evaluates them (SF2 2.04 sections 8.2-8.4 and 9.5).

A modulator adds `amount x source x amount source` to one generator. Offline, one note at a time,
no controller moves while a note sounds, so each is a constant fixed at note-on: its sources take
the note's velocity and key, and the values a freshly reset FluidSynth channel holds
(`CONTROLLERS_AT_REST`: volume 100, pan 64, expression 127, the rest 0, the pitch wheel centred).
Fonts say with them what generators cannot: MuseScore_General_Lite's horns, trumpets and clarinets
close their filter as velocity falls (FluidSynth played their pp 3-6 dB darker than this player did
before it read them), Merlin's viola likewise.

Which apply, as FluidSynth reads section 9.5.1: a zone's modulator replaces an identical one of its
global zone (`merged`); an instrument's replaces the identical default modulator; a preset's add to
the instrument's. Identical means the same sources (with their curves) and destination; the amount
and transform may differ. Of the default modulators only velocity-to-attenuation shapes a note here
(`DEFAULT_MODULATORS`): the velocity-to-cutoff one is disabled in FluidSynth (it returns 0) and absent
from TinySoundFont, and the controller ones are constants at rest (a level the renders normalise away).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

NO_CONTROLLER, VELOCITY, KEY, PITCH_WHEEL, PITCH_WHEEL_SENSITIVITY = 0, 2, 3, 14, 16
LINEAR, CONCAVE, CONVEX, SWITCH = 0, 1, 2, 3
ABSOLUTE_VALUE = 2
"""The one transform besides linear (sfModTransOper 2)."""
ATTENUATION_GEN, FILTER_FC_GEN = 48, 8

CONTROLLERS_AT_REST: dict[int, int] = {
    7: 100,  # volume
    8: 64,  # balance
    10: 64,  # pan
    11: 127,  # expression
    43: 127,  # expression LSB
    **{cc: 64 for cc in range(70, 80)},  # sound controllers 1-10
    **{cc: 127 for cc in range(98, 102)},  # NRPN/RPN at their null state
}
"""MIDI controller values of a reset FluidSynth channel (`fluid_channel_init_ctrl`); all others 0."""

_STEPS = np.arange(128, dtype=np.float64)
_CONCAVE = np.concatenate([[0.0], -(400.0 / 960.0) * np.log10((127.0 - _STEPS[1:127]) / 127.0), [1.0]])
_CONVEX = np.concatenate([[0.0], 1.0 + (400.0 / 960.0) * np.log10(_STEPS[1:127] / 127.0), [1.0]])
"""FluidSynth's curve tables (the pictures of SF2.01 page 73), read with linear interpolation."""


@dataclass(frozen=True)
class Modulator:
    """One pmod/imod record: operators as the file has them (sfModSrcOper: index, CC flag, direction, polarity, type)."""

    source: int
    destination: int
    amount: int
    amount_source: int
    transform: int = 0

    @property
    def identity(self) -> tuple[int, int, int]:
        return (self.source, self.destination, self.amount_source)


VELOCITY_TO_ATTENUATION = Modulator(VELOCITY | 0x100 | CONCAVE << 10, ATTENUATION_GEN, 960, NO_CONTROLLER)
"""SF2 8.4.1: 0 cB at velocity 127, 400 log10(127 / velocity) cB below (the concave curve), 841 at velocity 1."""
DEFAULT_MODULATORS: tuple[Modulator, ...] = (VELOCITY_TO_ATTENUATION,)
"""The default modulators that shape an offline note (see the module docstring for the others)."""
FLUIDSYNTH_VELOCITY_TO_CUTOFF = Modulator(VELOCITY | 0x100, FILTER_FC_GEN, -2400, VELOCITY | SWITCH << 10)
"""SF2 8.4.2 as FluidSynth has it (a positive switch as amount source); it evaluates to 0 there, whoever defines it."""


def merged(global_zone: Iterable[Modulator], local_zone: Iterable[Modulator]) -> tuple[Modulator, ...]:
    """A zone's modulators: its own, and its global zone's that none of its own is identical to."""
    local = tuple(local_zone)
    replaced = {m.identity for m in local}
    return tuple(m for m in global_zone if m.identity not in replaced) + local


def _curve(table: np.ndarray, x: float) -> float:
    return float(np.interp(128.0 * x, _STEPS, table))


def source_value(operator: int, key: int, velocity: int) -> float:
    """A source operator's mapped value at note-on (`fluid_mod_transform_source_value`)."""
    index, is_cc = operator & 0x7F, bool(operator & 0x80)
    negative, bipolar, kind = bool(operator & 0x100), bool(operator & 0x200), operator >> 10
    if not is_cc and index == NO_CONTROLLER:
        return 1.0
    span = 16384.0 if not is_cc and index == PITCH_WHEEL else 128.0
    if is_cc:
        raw = CONTROLLERS_AT_REST.get(index, 0)
    else:
        raw = {VELOCITY: velocity, KEY: key, PITCH_WHEEL: 8192, PITCH_WHEEL_SENSITIVITY: 2}.get(index, 0)
    x = 1.0 - 1.0 / span - raw / span if negative else raw / span
    top = (span - 1.0) / span
    if not bipolar:
        if kind == SWITCH:
            return 1.0 if x >= 0.5 else 0.0
        if kind in (CONCAVE, CONVEX):
            return min(_curve(_CONCAVE if kind == CONCAVE else _CONVEX, x), top)
        return x
    x = x if x == top else 2.0 * x - 1.0
    if kind == SWITCH:
        return 1.0 if x >= 0.0 else -1.0
    if kind in (CONCAVE, CONVEX):
        table = _CONCAVE if kind == CONCAVE else _CONVEX
        return min(_curve(table, x), top) if x >= 0.0 else -_curve(table, -x)
    return x


def output(modulator: Modulator, key: int, velocity: int) -> float:
    """What the modulator adds to its destination at note-on."""
    if modulator.identity == FLUIDSYNTH_VELOCITY_TO_CUTOFF.identity:
        return 0.0
    value = (
        modulator.amount
        * source_value(modulator.source, key, velocity)
        * source_value(modulator.amount_source, key, velocity)
    )
    return abs(value) if modulator.transform == ABSOLUTE_VALUE else value


def generator_offsets(
    instrument: Sequence[Modulator], preset: Sequence[Modulator], key: int, velocity: int
) -> dict[int, float]:
    """{generator: what the modulators add to it at note-on}: the defaults that no identical instrument modulator
    replaces, the instrument's, and the preset's on top."""
    own = {m.identity for m in instrument}
    defaults = tuple(m for m in DEFAULT_MODULATORS if m.identity not in own)
    sums: dict[int, float] = {}
    for modulator in (*defaults, *instrument, *preset):
        sums[modulator.destination] = sums.get(modulator.destination, 0.0) + output(modulator, key, velocity)
    return sums
