"""Mains hum is a steady line at the grid's 50 or 60 Hz; a note sits where the scale puts it."""

from __future__ import annotations

import numpy as np
import pytest

from instropitch.audio import hum

SR = 22050


def note(hz: float, seconds: float = 2.0) -> np.ndarray:
    """A held note with six harmonics, peak 0.5."""
    t = np.arange(int(seconds * SR)) / SR
    y = sum(np.sin(2 * np.pi * k * hz * t) / k for k in range(1, 7))
    return 0.5 * y / np.abs(y).max()


def line(hz: float, db: float, under: np.ndarray) -> np.ndarray:
    """A line at `hz` whose RMS lies `db` from that of `under`, with its 2nd and 3rd harmonics 6 dB down."""
    t = np.arange(len(under)) / SR
    y = sum(a * np.sin(2 * np.pi * k * hz * t) for k, a in ((1, 1.0), (2, 0.5), (3, 0.5)))
    return y * np.sqrt(np.mean(under**2) / np.mean(y**2)) * 10 ** (db / 20)


@pytest.mark.parametrize("mains", [50.0, 60.0, 49.85, 60.2])
def test_a_hum_under_a_note_is_found_at_its_frequency(mains: float) -> None:
    y = note(440.0)
    assert hum.mains_hum(y + line(mains, -20, y), SR) == pytest.approx(mains, abs=0.02)


def test_a_hum_alone_is_found_and_one_off_every_grid_is_not() -> None:
    assert hum.mains_hum(line(50.0, 0, note(440.0)), SR) == pytest.approx(50.0, abs=0.02)
    y = note(440.0)
    assert hum.mains_hum(y + line(55.0, -10, y), SR) is None
    assert hum.mains_hum(y + line(50.0 + 2 * hum.TOLERANCE_HZ, -10, y), SR) is None


def test_a_note_is_no_hum_even_at_g1() -> None:
    """G1 (49.0 Hz) and B1 (61.7 Hz) sound near the grids, but not within their tolerance."""
    assert hum.mains_hum(note(440.0), SR) is None
    assert hum.mains_hum(note(49.0), SR) is None
    assert hum.mains_hum(note(61.74), SR) is None


def test_a_hum_too_faint_to_rival_the_note_is_not_reported() -> None:
    y = note(440.0)
    assert hum.mains_hum(y + line(50.0, hum.AUDIBLE_DB + 3, y), SR) is not None
    assert hum.mains_hum(y + line(50.0, hum.AUDIBLE_DB - 6, y), SR) is None


def test_too_short_or_silent_tells_nothing() -> None:
    y = note(440.0, seconds=0.9)
    assert hum.mains_hum(y + line(50.0, -10, y), SR) is None
    assert hum.mains_hum(np.zeros(2 * SR), SR) is None


def test_only_the_first_seconds_are_read() -> None:
    """A long file is read for its first `LONGEST_S` seconds: hum that starts after them is not heard."""
    y = note(440.0, seconds=hum.LONGEST_S + 3)
    late = line(60.0, 0, y)
    late[: int(hum.LONGEST_S * SR)] = 0.0
    assert hum.mains_hum(y + late, SR) is None
