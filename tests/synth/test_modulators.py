"""SoundFont modulators at note-on (`synth.modulators`): sources, curves, which apply."""

from __future__ import annotations

import math

import pytest

from instropitch.synth import modulators as m

NEGATIVE, BIPOLAR, CC = 0x100, 0x200, 0x80


def test_sources_take_the_note_and_a_channel_at_rest() -> None:
    assert m.source_value(m.NO_CONTROLLER, 60, 100) == 1.0
    assert m.source_value(m.VELOCITY, 60, 64) == 0.5
    assert m.source_value(m.VELOCITY | NEGATIVE, 60, 127) == 0.0  # (127 - 127) / 128
    assert m.source_value(m.KEY | BIPOLAR, 64, 100) == 0.0
    assert m.source_value(m.KEY | BIPOLAR, 0, 100) == -1.0
    assert m.source_value(7 | CC, 60, 100) == 100 / 128  # volume at rest
    assert m.source_value(1 | CC, 60, 100) == 0.0  # the mod wheel at rest
    assert m.source_value(2 | CC | NEGATIVE, 60, 100) == 127 / 128  # breath at 0, read downwards
    assert m.source_value(m.PITCH_WHEEL | BIPOLAR, 60, 100) == 0.0  # centred


def test_curves() -> None:
    concave, convex, switch = m.CONCAVE << 10, m.CONVEX << 10, m.SWITCH << 10
    assert m.source_value(m.VELOCITY | concave, 60, 0) == 0.0
    # The concave curve is the velocity-to-attenuation one: 960 x concave(127 - v) = 400 log10(127 / v) cB.
    assert 960 * m.source_value(m.VELOCITY | NEGATIVE | concave, 60, 32) == pytest.approx(400 * math.log10(127 / 32))
    assert m.source_value(m.VELOCITY | concave, 60, 64) < 0.5 < m.source_value(m.VELOCITY | convex, 60, 64)
    assert m.source_value(m.VELOCITY | switch, 60, 63) == 0.0 and m.source_value(m.VELOCITY | switch, 60, 64) == 1.0
    assert m.source_value(m.VELOCITY | concave, 60, 127) == 127 / 128  # capped below 1, as FluidSynth does


def test_which_modulators_apply() -> None:
    fc, att = m.FILTER_FC_GEN, m.ATTENUATION_GEN
    shared = m.Modulator(m.VELOCITY, fc, 100, 0)
    local = m.Modulator(m.VELOCITY, fc, -50, 0)
    other = m.Modulator(m.KEY, fc, 10, 0)
    assert m.merged([shared, other], [local]) == (other, local)  # the identical global one is replaced
    offsets = m.generator_offsets([local], [shared], 60, 64)
    assert offsets[fc] == pytest.approx(-25 + 50)  # presets add
    # The default velocity curve: 400 log10(127 / velocity) cB; a font's own replaces it, a preset's adds to it.
    default_cb = 400 * math.log10(127 / 64)
    assert m.generator_offsets([], [], 60, 127) == {att: 0.0}
    assert m.generator_offsets([], [], 60, 64) == {att: pytest.approx(default_cb)}
    own_curve = m.Modulator(m.VELOCITY_TO_ATTENUATION.source, att, 800, 0)
    assert m.generator_offsets([own_curve], [], 60, 64) == {att: pytest.approx(default_cb * 800 / 960)}
    boost = m.Modulator(own_curve.source, att, 100, 0)
    assert m.generator_offsets([own_curve], [boost], 60, 64) == {att: pytest.approx(default_cb * 900 / 960)}
    # FluidSynth disables the velocity-to-cutoff default, whoever stores it; an amount-0 look-alike adds nothing.
    assert m.output(m.FLUIDSYNTH_VELOCITY_TO_CUTOFF, 60, 100) == 0.0
    look_alike = m.Modulator(m.VELOCITY | NEGATIVE, fc, 0, m.VELOCITY | NEGATIVE | m.SWITCH << 10)
    assert m.output(look_alike, 60, 20) == 0.0
    assert m.output(m.Modulator(m.KEY | BIPOLAR, fc, -100, 0, m.ABSOLUTE_VALUE), 0, 64) == 100.0
