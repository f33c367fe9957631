"""GUS patch files built in memory for tests (`synth.gus` reads them, `data.download` fetches a set of them)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from instropitch.synth import gus

SUSTAINED = gus.MODE_16BIT | gus.MODE_LOOP | gus.MODE_SUSTAIN | gus.MODE_ENVELOPE
RATES = bytes([63, 63, 63, 63, 63, 63])  # fastest in every stage
LEVELS = bytes([250, 250, 250, 0, 0, 0])


def wave(hz: float, rate: int, periods: int) -> tuple[np.ndarray, int]:
    """A sine of a whole number of periods (loops without a click) as int16 points, and its length."""
    n = int(round(periods * rate / hz))
    return (np.sin(2 * np.pi * periods * np.arange(n) / n) * 20000).astype("<i2"), n


def sample_bytes(
    points: np.ndarray,
    rate: int,
    low_hz: float,
    high_hz: float,
    root_hz: float,
    loop: tuple[int, int] = (0, 0),
    modes: int = SUSTAINED,
    rates: bytes = RATES,
    levels: bytes = LEVELS,
) -> bytes:
    """One GUS sample: its 96-byte header (frequencies in mHz, loop in bytes) and its data."""
    blob = points.tobytes()
    width = 2 if modes & gus.MODE_16BIT else 1
    header = gus.SAMPLE_HEADER.pack(
        b"wave", 0, len(blob), loop[0] * width, loop[1] * width, rate,
        int(low_hz * 1000), int(high_hz * 1000), int(root_hz * 1000), 0, 7,
        rates, levels, b"\0" * 3, b"\0" * 3, modes, 1024, 1024, b"\0" * 36,
    )  # fmt: skip
    return header + blob


def patch_bytes(samples: list[bytes]) -> bytes:
    """A GUS patch file: the 239 bytes of patch, instrument and layer headers, then `samples`."""
    head = gus.MAGIC[0] + b"ID#000002\0" + b"test".ljust(60, b"\0")
    head += struct.pack("<BBBHHi36s", 1, 14, 0, len(samples), 127, 0, b"")
    head += struct.pack("<H16siB40s", 0, b"test", 0, 1, b"")
    head += struct.pack("<BBiB40s", 0, 0, 0, len(samples), b"")
    assert len(head) == gus.HEADER_BYTES
    return head + b"".join(samples)


def write_patch(path: Path, samples: list[bytes]) -> Path:
    """`patch_bytes(samples)` written at `path`."""
    path.write_bytes(patch_bytes(samples))
    return path


def tone_patch(hz: float = 440.0) -> bytes:
    """A one-sample patch: a looped sine at `hz` playing every key."""
    points, n = wave(hz, 22050, 40)
    return patch_bytes([sample_bytes(points, 22050, 8.0, 20000.0, hz, loop=(0, n))])
