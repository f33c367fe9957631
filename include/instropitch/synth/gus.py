"""Gravis UltraSound patches (`.pat`, the format of FreePats and TiMidity) read into SF2 zones.

A GUS patch holds one instrument: a few samples, each with the key range it plays
(low/high frequency), its root frequency, a loop and a six-stage envelope. `read_patch`
reads the file as TiMidity's `instrum.c` does; `zones` turns its samples into the sample
zones of `synth.sf2_write`, so that every SF2 player here (the project's own,
TinySoundFont, FluidSynth) plays a GUS sound set as it plays a SoundFont:

* a note plays the first sample whose frequency range holds it (TiMidity's rule); keys
  outside every range play the nearest sample;
* ping-pong loops are unrolled into forward loops (SF2 has none);
* the envelope's rates and levels become DAHDSR times and a sustain level with
  TiMidity's conversion (`_stage_seconds`, levels as `(offset / 255) ** 1.66`).

Not modelled: tremolo and vibrato (the project's recording conditions add vibrato), the
scale-frequency fields (every melodic FreePats patch tracks the keyboard normally).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from instropitch.synth.sf2_write import SampleZone, lend_presets, write_soundfont
from instropitch.tinysol import hz_to_midi, midi_to_hz

MAGIC = (b"GF1PATCH110\x00", b"GF1PATCH100\x00")
HEADER_BYTES = 239
"""Patch header (129) + instrument header (63) + layer header (47): the first sample starts here."""
SAMPLE_HEADER = struct.Struct("<7sBiiiHiiiHB6s6s3s3sBHH36s")

MODE_16BIT, MODE_UNSIGNED, MODE_LOOP, MODE_PINGPONG, MODE_REVERSE, MODE_SUSTAIN, MODE_ENVELOPE = (
    1,
    2,
    4,
    8,
    16,
    32,
    64,
)
LEVEL_POWER = 1.66096404744
"""TiMidity's volume curve: an envelope offset o plays at (o / 255) ** LEVEL_POWER of full amplitude."""


class PatchError(ValueError):
    """A file that is not a GUS patch, or one cut short."""


@dataclass(frozen=True)
class PatchSample:
    """One sample of a patch, its points as float32 in [-1, 1], its loop in points."""

    data: np.ndarray
    sample_rate: int
    low_hz: float
    high_hz: float
    root_hz: float
    loop_start: int
    loop_end: int
    modes: int
    env_rates: bytes
    env_offsets: bytes

    @property
    def loops(self) -> bool:
        return bool(self.modes & MODE_LOOP) and self.loop_end > self.loop_start


def read_patch(path: str | Path) -> list[PatchSample]:
    """The samples of the GUS patch at `path`, in file order; PatchError names the file and the reason."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:12] not in MAGIC:
        raise PatchError(f"{path}: not a GUS patch (no GF1PATCH header)")
    if len(raw) < HEADER_BYTES:
        raise PatchError(f"{path}: cut short inside its header ({len(raw)} bytes)")
    count = raw[198]  # samples of the first layer
    if count == 0:
        raise PatchError(f"{path}: a patch without samples")
    samples, pos = [], HEADER_BYTES
    for index in range(count):
        if pos + SAMPLE_HEADER.size > len(raw):
            raise PatchError(f"{path}: sample {index} of {count}: cut short inside its header")
        fields = SAMPLE_HEADER.unpack_from(raw, pos)
        (_, _, length, loop_start, loop_end, rate, low, high, root, _, _, rates, offsets, _, _, modes, _, _, _) = fields
        pos += SAMPLE_HEADER.size
        if length < 0 or pos + length > len(raw):
            raise PatchError(f"{path}: sample {index} of {count}: {length} data bytes, the file ends before")
        data = _points(raw[pos : pos + length], modes)
        pos += length
        width = 2 if modes & MODE_16BIT else 1
        if rate <= 0 or root <= 0:
            raise PatchError(f"{path}: sample {index}: sample rate {rate}, root {root} mHz")
        samples.append(
            PatchSample(
                data,
                rate,
                low / 1000.0,
                high / 1000.0,
                root / 1000.0,
                loop_start // width,
                loop_end // width,
                modes,
                rates,
                offsets,
            )
        )
    return samples


def _points(blob: bytes, modes: int) -> np.ndarray:
    """Raw sample bytes -> float32 points (8 or 16 bit, signed or unsigned, reversed if asked)."""
    if modes & MODE_16BIT:
        x = np.frombuffer(blob[: len(blob) // 2 * 2], dtype="<u2" if modes & MODE_UNSIGNED else "<i2").astype(
            np.float32
        )
        x = x - 32768.0 if modes & MODE_UNSIGNED else x
        x /= 32768.0
    else:
        x = np.frombuffer(blob, dtype=np.uint8 if modes & MODE_UNSIGNED else np.int8).astype(np.float32)
        x = x - 128.0 if modes & MODE_UNSIGNED else x
        x /= 128.0
    return x[::-1].copy() if modes & MODE_REVERSE else x


def _stage_seconds(rate: int, levels: float) -> float:
    """Seconds an envelope stage takes to move `levels` offsets (0-255) at GUS rate byte `rate` (TiMidity)."""
    step = (rate & 0x3F) << (3 * (3 - ((rate >> 6) & 3)))
    return math.inf if step == 0 else abs(levels) * 2**13 / (step * 44100.0)


def _level_cb(offset: int, peak: int) -> float:
    """Attenuation (centibels) of envelope offset `offset` below `peak`, on TiMidity's volume curve."""
    if offset <= 0 or peak <= 0:
        return 1440.0
    return min(1440.0, max(0.0, -200.0 * LEVEL_POWER * math.log10(offset / peak)))


def envelope(sample: PatchSample) -> dict[str, float]:
    """The patch's six-stage envelope as SF2 volume-envelope values: seconds, and sustain in centibels."""
    if not sample.modes & MODE_ENVELOPE:
        return {"attack_s": 0.002, "decay_s": 0.002, "sustain_cb": 0.0, "release_s": 0.1}
    rates, offsets = sample.env_rates, sample.env_offsets
    peak = max(offsets[:3]) or 255
    attack = _stage_seconds(rates[0], offsets[0])
    decay = _stage_seconds(rates[1], offsets[1] - offsets[0]) + _stage_seconds(rates[2], offsets[2] - offsets[1])
    release = sum(_stage_seconds(rates[i], offsets[i] - offsets[i - 1]) for i in (3, 4, 5))
    sustain = _level_cb(offsets[2], peak)
    if not sample.modes & MODE_SUSTAIN:  # the note runs into its release while held
        decay, sustain = decay + release, 1440.0
    return {
        "attack_s": min(max(attack, 0.001), 10.0),
        "decay_s": min(max(decay, 0.001), 20.0),
        "sustain_cb": sustain,
        "release_s": min(max(release, 0.01), 10.0),
    }


def _unrolled(sample: PatchSample) -> tuple[np.ndarray, int, int]:
    """Points and forward loop of `sample`: a ping-pong loop is played there and back, as one forward loop."""
    if not (sample.loops and sample.modes & MODE_PINGPONG):
        return sample.data, sample.loop_start, sample.loop_end
    head = sample.data[: sample.loop_end]
    back = sample.data[sample.loop_start + 1 : sample.loop_end - 1][::-1]
    return np.concatenate([head, back]), sample.loop_start, sample.loop_end + len(back)


def key_ranges(samples: list[PatchSample]) -> list[tuple[int, int, int]]:
    """(sample index, low key, high key) runs covering MIDI 0-127: each key plays the first sample holding its
    frequency, else the sample whose range is nearest (TiMidity's choice)."""

    def choose(key: int) -> int:
        hz = midi_to_hz(key)
        for i, s in enumerate(samples):
            if s.low_hz <= hz <= s.high_hz:
                return i
        return min(range(len(samples)), key=lambda i: abs(hz_to_midi(hz) - _nearest_midi(samples[i], hz)))

    runs: list[tuple[int, int, int]] = []
    for key in range(128):
        index = choose(key)
        if runs and runs[-1][0] == index and runs[-1][2] == key - 1:
            runs[-1] = (index, runs[-1][1], key)
        else:
            runs.append((index, key, key))
    return runs


def _nearest_midi(sample: PatchSample, hz: float) -> float:
    """The MIDI number of the end of `sample`'s range closest to `hz`."""
    edge = min(max(hz, max(sample.low_hz, 1e-3)), max(sample.high_hz, 1e-3))
    return hz_to_midi(edge)


def zones(samples: list[PatchSample], name: str) -> list[SampleZone]:
    """The SF2 sample zones that play `samples` the way TiMidity plays the patch."""
    unrolled = [_unrolled(s) for s in samples]  # one array per sample, shared by its zones
    out = []
    for index, low, high in key_ranges(samples):
        sample = samples[index]
        data, loop_start, loop_end = unrolled[index]
        root = float(hz_to_midi(sample.root_hz))
        out.append(
            SampleZone(
                name=f"{name[:15]}{index}",
                data=data,
                sample_rate=sample.sample_rate,
                root_key=int(round(root)),
                pitch_correction=-int(round(100 * (root - round(root)))),
                loop=(loop_start, loop_end) if sample.loops else None,
                key_range=(low, high),
                **envelope(sample),
            )
        )
    return out


def read_config(path: str | Path) -> dict[int, Path]:
    """{GM program: patch path} of bank 0 in a TiMidity config (`freepats.cfg`); drum sets are skipped."""
    path = Path(path)
    programs: dict[int, Path] = {}
    section = None
    for line in path.read_text(encoding="latin-1").splitlines():
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if words[0] in ("bank", "drumset"):
            section = (words[0], words[1] if len(words) > 1 else "")
        elif section == ("bank", "0") and words[0].isdigit() and len(words) > 1:
            programs[int(words[0])] = path.parent / words[1]
    return programs


def write_patch_soundfont(
    patches: dict[int, Path], out: str | Path, name: str, lend: dict[int, int] | None = None
) -> Path:
    """Write the GUS `patches` ({GM program: .pat}) as one SF2 at `out`; `lend` {program: lender program}
    fills the programs the set lacks (`sf2_write.lend_presets`)."""
    presets = {program: f"{program:03d} {path.stem.split('_', 1)[-1]}" for program, path in patches.items()}
    instruments = {presets[program]: zones(read_patch(path), presets[program][4:]) for program, path in patches.items()}
    return write_soundfont(out, name, instruments, lend_presets(presets, lend))
