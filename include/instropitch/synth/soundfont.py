"""A small SoundFont 2 reader and sample player in pure Python + numpy.

It reads the RIFF `sfbk` file (INFO, sdta/smpl[+sm24], pdta hydra), resolves
preset -> preset zones -> instrument -> instrument zones the way the SF2 2.04
specification says (global zones, preset generators adding to instrument ones,
key/velocity ranges intersecting) and renders one note at a time:

* every zone matching the key and velocity plays its sample, resampled to the
  target pitch (4-point cubic Hermite interpolation) from root key, scale tuning,
  coarse/fine tune, the sample's pitch correction and sample-rate ratio;
* sampleModes 1 (loop) and 3 (loop until release, then play to the end) loop
  through the held note;
* the DAHDSR volume envelope (timecents / centibels, keynum-to-hold/decay
  scaling), initialAttenuation (scaled by 0.4 like FluidSynth, see
  `SoundFont.attenuation_scale`) and the default velocity-to-attenuation curve;
* the static low-pass filter (initialFilterFc/Q, with the default velocity-to-cutoff
  modulator in its SF2.01 form) and the vibrato LFO to pitch;
* zones are mixed to mono (pan is ignored) and a release tail follows note-off.

Not modelled: modulators stored in the file (pmod/imod records are skipped; only the
spec's default velocity modulators apply), the modulation envelope and modulation LFO,
exclusive classes, reverb/chorus, pan, compressed (sf3) samples. Sample data is
memory-mapped, and each render touches only the slices of the zones it plays.
"""

from __future__ import annotations

import math
import mmap
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.signal import lfilter

# ------------------------------------------------------------------ generators

GEN_NAMES: dict[int, str] = {
    0: "startAddrsOffset",
    1: "endAddrsOffset",
    2: "startloopAddrsOffset",
    3: "endloopAddrsOffset",
    4: "startAddrsCoarseOffset",
    5: "modLfoToPitch",
    6: "vibLfoToPitch",
    7: "modEnvToPitch",
    8: "initialFilterFc",
    9: "initialFilterQ",
    10: "modLfoToFilterFc",
    11: "modEnvToFilterFc",
    12: "endAddrsCoarseOffset",
    13: "modLfoToVolume",
    15: "chorusEffectsSend",
    16: "reverbEffectsSend",
    17: "pan",
    21: "delayModLFO",
    22: "freqModLFO",
    23: "delayVibLFO",
    24: "freqVibLFO",
    25: "delayModEnv",
    26: "attackModEnv",
    27: "holdModEnv",
    28: "decayModEnv",
    29: "sustainModEnv",
    30: "releaseModEnv",
    31: "keynumToModEnvHold",
    32: "keynumToModEnvDecay",
    33: "delayVolEnv",
    34: "attackVolEnv",
    35: "holdVolEnv",
    36: "decayVolEnv",
    37: "sustainVolEnv",
    38: "releaseVolEnv",
    39: "keynumToVolEnvHold",
    40: "keynumToVolEnvDecay",
    41: "instrument",
    43: "keyRange",
    44: "velRange",
    45: "startloopAddrsCoarseOffset",
    46: "keynum",
    47: "velocity",
    48: "initialAttenuation",
    50: "endloopAddrsCoarseOffset",
    51: "coarseTune",
    52: "fineTune",
    53: "sampleID",
    54: "sampleModes",
    56: "scaleTuning",
    57: "exclusiveClass",
    58: "overridingRootKey",
}
GEN = {name: number for number, name in GEN_NAMES.items()}

KEY_RANGE = GEN["keyRange"]
VEL_RANGE = GEN["velRange"]
RANGE_GENS = frozenset({KEY_RANGE, VEL_RANGE})
UNSIGNED_GENS = frozenset({GEN["instrument"], GEN["sampleID"], GEN["sampleModes"]})
# Generators that only make sense at instrument level (SF2 2.04 section 8.5): ignored in presets.
INSTRUMENT_ONLY_GENS = frozenset(
    {
        GEN["startAddrsOffset"],
        GEN["endAddrsOffset"],
        GEN["startloopAddrsOffset"],
        GEN["endloopAddrsOffset"],
        GEN["startAddrsCoarseOffset"],
        GEN["endAddrsCoarseOffset"],
        GEN["startloopAddrsCoarseOffset"],
        GEN["endloopAddrsCoarseOffset"],
        GEN["keynum"],
        GEN["velocity"],
        GEN["sampleModes"],
        GEN["exclusiveClass"],
        GEN["overridingRootKey"],
        GEN["sampleID"],
    }
)

GEN_DEFAULTS: dict[int, int] = {
    GEN["initialFilterFc"]: 13500,
    GEN["delayModLFO"]: -12000,
    GEN["delayVibLFO"]: -12000,
    GEN["delayModEnv"]: -12000,
    GEN["attackModEnv"]: -12000,
    GEN["holdModEnv"]: -12000,
    GEN["decayModEnv"]: -12000,
    GEN["releaseModEnv"]: -12000,
    GEN["delayVolEnv"]: -12000,
    GEN["attackVolEnv"]: -12000,
    GEN["holdVolEnv"]: -12000,
    GEN["decayVolEnv"]: -12000,
    GEN["releaseVolEnv"]: -12000,
    GEN["keynum"]: -1,
    GEN["velocity"]: -1,
    GEN["scaleTuning"]: 100,
    GEN["overridingRootKey"]: -1,
}

SILENCE_DB = -100.0  # the envelope's floor: "100 dB of attenuation" in the spec
MAX_ATTENUATION_CB = 1440.0
VELOCITY_ATTENUATION_CB = 960.0  # default modulator: note-on velocity -> initialAttenuation
VELOCITY_FILTER_CENTS = -2400.0  # default modulator: note-on velocity -> initialFilterFc


class SoundFontError(ValueError):
    """The file is not a SoundFont 2 this reader understands."""


# ------------------------------------------------------------------ file model


@dataclass(frozen=True)
class SampleHeader:
    """One `shdr` record. Addresses are in sample points from the start of `smpl`."""

    name: str
    start: int
    end: int
    loop_start: int
    loop_end: int
    sample_rate: int
    original_pitch: int
    pitch_correction: int
    link: int
    sample_type: int

    @property
    def is_rom(self) -> bool:
        return bool(self.sample_type & 0x8000)


@dataclass(frozen=True)
class Zone:
    """A zone with its global zone already folded in: generator number -> amount.

    Range generators hold a `(low, high)` tuple, all others an int.
    """

    generators: dict[int, object]
    modulators: int = 0

    def get(self, gen: int, default: object = None) -> object:
        return self.generators.get(gen, default)

    @property
    def key_range(self) -> tuple[int, int]:
        return self.generators.get(KEY_RANGE, (0, 127))  # type: ignore[return-value]

    @property
    def vel_range(self) -> tuple[int, int]:
        return self.generators.get(VEL_RANGE, (0, 127))  # type: ignore[return-value]

    def matches(self, key: int, velocity: int) -> bool:
        klo, khi = self.key_range
        vlo, vhi = self.vel_range
        return klo <= key <= khi and vlo <= velocity <= vhi


@dataclass(frozen=True)
class SFInstrument:
    name: str
    zones: tuple[Zone, ...]


@dataclass(frozen=True)
class Preset:
    """A preset header; `zones` reference instruments by index (generator 41)."""

    name: str
    program: int
    bank: int
    zones: tuple[Zone, ...] = field(repr=False, default=())


@dataclass(frozen=True)
class Voice:
    """Everything needed to play one sample for one note (preset + instrument resolved)."""

    sample: SampleHeader
    sample_index: int
    instrument: str
    key: int
    velocity: int
    root_key: int
    pitch_cents: float  # playback transposition relative to the sample's recorded pitch
    start: int
    end: int
    loop_start: int
    loop_end: int
    loop_mode: int
    attenuation_cb: float
    delay_s: float
    attack_s: float
    hold_s: float
    decay_s: float
    sustain_cb: float
    release_s: float
    filter_fc_cents: float
    filter_q_cb: float
    vib_delay_s: float
    vib_freq_hz: float
    vib_to_pitch_cents: float

    @property
    def loops(self) -> bool:
        return self.loop_mode in (1, 3) and self.loop_end - self.loop_start >= 2


def timecents_to_seconds(tc: float) -> float:
    return float(2.0 ** (tc / 1200.0))


def abs_cents_to_hz(cents: float) -> float:
    return float(8.176 * 2.0 ** (cents / 1200.0))


# ------------------------------------------------------------------ RIFF


def _chunks(data: bytes | mmap.mmap, start: int, end: int):
    """Yield (id, payload_start, payload_size) of the RIFF chunks in data[start:end]."""
    pos = start
    while pos + 8 <= end:
        cid = bytes(data[pos : pos + 4]).decode("latin-1")
        (size,) = struct.unpack_from("<I", data, pos + 4)
        body = pos + 8
        if body + size > end:
            size = end - body  # truncated final chunk: take what is there
        yield cid, body, size
        pos = body + size + (size & 1)


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("latin-1").strip()


class SoundFont:
    """A loaded SF2 file: presets, instruments, sample headers and memory-mapped sample data."""

    attenuation_scale = 0.4
    """Factor on the stored initialAttenuation, as FluidSynth applies for EMU-authored fonts (1.0 = spec)."""

    def __init__(
        self,
        path: Path,
        info: dict[str, str],
        presets: list[Preset],
        instruments: list[SFInstrument],
        samples: list[SampleHeader],
        smpl_offset: int,
        smpl_count: int,
        sm24_offset: int | None,
    ):
        self.path = path
        self.info = info
        self.presets = presets
        self.instruments = instruments
        self.samples = samples
        self._smpl = np.memmap(path, dtype="<i2", mode="r", offset=smpl_offset, shape=(smpl_count,))
        self._sm24 = (
            np.memmap(path, dtype=np.uint8, mode="r", offset=sm24_offset, shape=(smpl_count,))
            if sm24_offset is not None
            else None
        )
        self._by_bank_program = {(p.bank, p.program): p for p in presets}
        self._coverage: dict[tuple[int, int, int], tuple[int, ...]] = {}

    # ------------------------------------------------------------ loading

    @classmethod
    def load(cls, path: str | Path) -> SoundFont:
        """Parse the file's structure; the sample data stays on disk, memory-mapped."""
        path = Path(path)
        with open(path, "rb") as handle:
            header = handle.read(12)
            if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"sfbk":
                raise SoundFontError(f"{path}: not a SoundFont 2 file (no RIFF 'sfbk' header)")
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
                return cls._parse(path, data)

    @classmethod
    def _parse(cls, path: Path, data: mmap.mmap) -> SoundFont:
        (riff_size,) = struct.unpack_from("<I", data, 4)
        end = min(len(data), 8 + riff_size)
        lists: dict[str, tuple[int, int]] = {}
        for cid, body, size in _chunks(data, 12, end):
            if cid == "LIST" and size >= 4:
                lists[data[body : body + 4].decode("latin-1")] = (body + 4, body + size)
        for needed in ("sdta", "pdta"):
            if needed not in lists:
                raise SoundFontError(f"{path}: missing the LIST '{needed}' chunk")

        info: dict[str, str] = {}
        if "INFO" in lists:
            for cid, body, size in _chunks(data, *lists["INFO"]):
                if cid == "ifil" and size >= 4:
                    major, minor = struct.unpack_from("<HH", data, body)
                    info[cid] = f"{major}.{minor:02d}"
                else:
                    info[cid] = _cstr(data[body : body + size])

        smpl = sm24 = None
        for cid, body, size in _chunks(data, *lists["sdta"]):
            if cid == "smpl":
                smpl = (body, size // 2)
            elif cid == "sm24":
                sm24 = (body, size)
        if smpl is None:
            raise SoundFontError(f"{path}: no 'smpl' sample data (compressed sf3 files are not supported)")
        sm24_offset = sm24[0] if sm24 is not None and sm24[1] >= smpl[1] else None

        hydra: dict[str, tuple[int, int]] = {cid: (body, size) for cid, body, size in _chunks(data, *lists["pdta"])}
        sizes = {"phdr": 38, "pbag": 4, "pmod": 10, "pgen": 4, "inst": 22, "ibag": 4, "imod": 10, "igen": 4, "shdr": 46}
        for cid, rec in sizes.items():
            if cid not in hydra:
                raise SoundFontError(f"{path}: pdta lacks the '{cid}' chunk")
            if hydra[cid][1] % rec:
                raise SoundFontError(f"{path}: pdta '{cid}' size {hydra[cid][1]} is not a multiple of {rec}")

        def records(cid: str, fmt: str) -> list[tuple]:
            body, size = hydra[cid]
            return list(struct.iter_unpack(fmt, data[body : body + size]))

        phdr = records("phdr", "<20sHHHIII")
        pbag = records("pbag", "<HH")
        pgen = records("pgen", "<HH")
        inst = records("inst", "<20sH")
        ibag = records("ibag", "<HH")
        igen = records("igen", "<HH")
        shdr = records("shdr", "<20sIIIIIBbHH")

        samples = [SampleHeader(_cstr(r[0]), r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9]) for r in shdr[:-1]]
        instruments = [
            SFInstrument(_cstr(inst[i][0]), _zones(inst[i][1], inst[i + 1][1], ibag, igen, GEN["sampleID"]))
            for i in range(len(inst) - 1)
        ]
        presets = [
            Preset(
                _cstr(phdr[i][0]),
                program=phdr[i][1],
                bank=phdr[i][2],
                zones=_zones(phdr[i][3], phdr[i + 1][3], pbag, pgen, GEN["instrument"]),
            )
            for i in range(len(phdr) - 1)
        ]
        presets.sort(key=lambda p: (p.bank, p.program))
        return cls(path, info, presets, instruments, samples, smpl[0], smpl[1], sm24_offset)

    # ------------------------------------------------------------ lookup

    @property
    def name(self) -> str:
        return self.info.get("INAM", self.path.stem)

    def preset(self, program: int, bank: int = 0) -> Preset:
        """The preset for (bank, program); a missing melodic bank falls back to bank 0 as GM players do."""
        found = self._by_bank_program.get((bank, program))
        if found is None and bank != 128:
            found = self._by_bank_program.get((0, program))
        if found is None:
            raise KeyError(f"{self.name} has no preset for bank {bank} program {program}")
        return found

    def voices(self, program: int, key: int, velocity: int, bank: int = 0) -> list[Voice]:
        """Every sample that plays for this key and velocity, with generators resolved."""
        preset = self.preset(program, bank)
        found: list[Voice] = []
        for pzone in preset.zones:
            if not pzone.matches(key, velocity):
                continue
            inst_index = pzone.get(GEN["instrument"])
            if not isinstance(inst_index, int) or inst_index >= len(self.instruments):
                continue
            instrument = self.instruments[inst_index]
            for izone in instrument.zones:
                if not izone.matches(key, velocity):
                    continue
                sample_id = izone.get(GEN["sampleID"])
                if not isinstance(sample_id, int) or sample_id >= len(self.samples):
                    continue
                sample = self.samples[sample_id]
                if sample.is_rom or sample.end <= sample.start:
                    continue
                found.append(self._voice(pzone, izone, instrument.name, sample_id, key, velocity))
        return found

    def key_coverage(self, program: int, velocity: int = 100, bank: int = 0) -> list[int]:
        """Keys 0..127 that have at least one sample at this velocity."""
        return [k for k in range(128) if self.voices(program, k, velocity, bank)]

    def _voice(self, pzone: Zone, izone: Zone, inst_name: str, sample_id: int, key: int, velocity: int) -> Voice:
        sample = self.samples[sample_id]

        def gen(number: int) -> float:
            value = izone.get(number, GEN_DEFAULTS.get(number, 0))
            if number not in INSTRUMENT_ONLY_GENS:
                value = value + pzone.get(number, 0)  # type: ignore[operator]
            return float(value)  # type: ignore[arg-type]

        key_eff = int(izone.get(GEN["keynum"], -1))  # type: ignore[arg-type]
        key_eff = key if key_eff < 0 else key_eff
        vel_eff = int(izone.get(GEN["velocity"], -1))  # type: ignore[arg-type]
        vel_eff = velocity if vel_eff < 0 else vel_eff

        root = int(izone.get(GEN["overridingRootKey"], -1))  # type: ignore[arg-type]
        if root < 0:
            root = sample.original_pitch if sample.original_pitch <= 127 else 60
        pitch_cents = (
            gen(GEN["scaleTuning"]) * (key_eff - root)
            + 100.0 * gen(GEN["coarseTune"])
            + gen(GEN["fineTune"])
            + sample.pitch_correction
        )

        def addr(fine: str, coarse: str) -> int:
            return int(gen(GEN[fine]) + 32768 * gen(GEN[coarse]))

        start = sample.start + addr("startAddrsOffset", "startAddrsCoarseOffset")
        end = sample.end + addr("endAddrsOffset", "endAddrsCoarseOffset")
        loop_start = sample.loop_start + addr("startloopAddrsOffset", "startloopAddrsCoarseOffset")
        loop_end = sample.loop_end + addr("endloopAddrsOffset", "endloopAddrsCoarseOffset")
        total = len(self._smpl)
        start = min(max(start, 0), total)
        end = min(max(end, start), total)
        loop_start = min(max(loop_start, start), end)
        loop_end = min(max(loop_end, loop_start), end)

        # Default modulators (SF2 2.04 section 8.4.1 / 8.4.2).
        vel_norm = min(max(vel_eff, 1), 127) / 127.0
        vel_cb = min(VELOCITY_ATTENUATION_CB, -200.0 * math.log10(vel_norm**2)) if vel_norm < 1 else 0.0
        stored = max(gen(GEN["initialAttenuation"]), 0.0) * self.attenuation_scale
        attenuation = min(stored + vel_cb, MAX_ATTENUATION_CB)
        fc = gen(GEN["initialFilterFc"]) + VELOCITY_FILTER_CENTS * (1.0 - vel_eff / 128.0)

        key_offset = 60 - key_eff
        hold_tc = gen(GEN["holdVolEnv"]) + gen(GEN["keynumToVolEnvHold"]) * key_offset
        decay_tc = gen(GEN["decayVolEnv"]) + gen(GEN["keynumToVolEnvDecay"]) * key_offset

        return Voice(
            sample=sample,
            sample_index=sample_id,
            instrument=inst_name,
            key=key,
            velocity=velocity,
            root_key=root,
            pitch_cents=pitch_cents,
            start=start,
            end=end,
            loop_start=loop_start,
            loop_end=loop_end,
            loop_mode=int(gen(GEN["sampleModes"])) & 3,
            attenuation_cb=attenuation,
            delay_s=timecents_to_seconds(min(gen(GEN["delayVolEnv"]), 5000)),
            attack_s=timecents_to_seconds(min(gen(GEN["attackVolEnv"]), 8000)),
            hold_s=timecents_to_seconds(min(hold_tc, 5000)),
            decay_s=timecents_to_seconds(min(decay_tc, 8000)),
            sustain_cb=min(max(gen(GEN["sustainVolEnv"]), 0.0), 1440.0),
            release_s=timecents_to_seconds(min(gen(GEN["releaseVolEnv"]), 8000)),
            filter_fc_cents=min(max(fc, 1500.0), 13500.0),
            filter_q_cb=min(max(gen(GEN["initialFilterQ"]), 0.0), 960.0),
            vib_delay_s=timecents_to_seconds(min(gen(GEN["delayVibLFO"]), 5000)),
            vib_freq_hz=abs_cents_to_hz(min(max(gen(GEN["freqVibLFO"]), -16000), 4500)),
            vib_to_pitch_cents=min(max(gen(GEN["vibLfoToPitch"]), -12000), 12000),
        )

    # ------------------------------------------------------------ rendering

    def sample_data(self, start: int, end: int) -> np.ndarray:
        """Sample points [start, end) as float32 in -1..1 (24-bit if the file has sm24)."""
        raw = np.asarray(self._smpl[start:end], dtype=np.float32)
        if self._sm24 is not None:
            low = np.asarray(self._sm24[start:end], dtype=np.float32)
            return (raw * 256.0 + low) / 8388608.0
        return raw / 32768.0

    def find_voices(
        self, program: int, midi: int, velocity: int, bank: int = 0, nearest_key: bool = True
    ) -> tuple[list[Voice], float]:
        """The voices that play `midi`, and the transposition in cents they need.

        The transposition is 0 unless no zone covers `midi`: then, with `nearest_key`, the
        nearest key that has a zone is used and shifted (a `ValueError` otherwise).
        """
        velocity = int(min(max(velocity, 1), 127))
        voices = self.voices(program, midi, velocity, bank)
        if voices:
            return voices, 0.0
        if not nearest_key:
            raise ValueError(f"{self.name}: no zone of program {program} plays key {midi} at velocity {velocity}")
        covered = _covered_keys(self, program, velocity, bank)
        if not covered:
            raise ValueError(f"{self.name}: program {program} plays no key at velocity {velocity}")
        key = min(covered, key=lambda k: (abs(k - midi), k))
        return self.voices(program, key, velocity, bank), 100.0 * (midi - key)

    def render_note(
        self,
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
        voices, shift = self.find_voices(program, int(midi), velocity, bank, nearest_key)
        return self.render_voices(
            voices,
            duration_s,
            sample_rate,
            release_s,
            detune_cents=detune_cents + shift,
            vibrato_hz=vibrato_hz,
            vibrato_cents=vibrato_cents,
        )

    def render_voices(
        self,
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
            out += self._render_voice(voice, n_on, n_total, sample_rate, shift, vibrato_hz, vibrato_cents)
        if release_s > 0:
            fade = min(n_total - n_on, int(0.01 * sample_rate))
            if fade > 1:
                out[n_total - fade :] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
        return out

    def _render_voice(
        self,
        v: Voice,
        n_on: int,
        n_total: int,
        sr: int,
        extra_cents: float,
        vibrato_hz: float,
        vibrato_cents: float,
    ) -> np.ndarray:
        out = np.zeros(n_total, dtype=np.float32)
        data = self.sample_data(v.start, v.end)
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
        t = None
        cents: np.ndarray | float = 0.0
        if v.vib_to_pitch_cents and v.vib_freq_hz > 0:
            t = np.arange(n, dtype=np.float64) / sr
            cents = v.vib_to_pitch_cents * np.sin(2 * np.pi * v.vib_freq_hz * t) * (t >= v.vib_delay_s)
        if vibrato_hz > 0 and vibrato_cents:
            t = np.arange(n, dtype=np.float64) / sr if t is None else t
            ramp = np.minimum(t / 0.3, 1.0)  # fades in over the first 300 ms
            cents = cents + vibrato_cents * ramp * np.sin(2 * np.pi * vibrato_hz * t)
        if t is not None:
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

        fc_hz = abs_cents_to_hz(v.filter_fc_cents)
        if fc_hz < 0.35 * sr:  # above that a 2-pole low-pass changes next to nothing
            y = _lowpass(y, fc_hz, v.filter_q_cb, sr)

        m = len(y)
        y *= env[:m]
        y *= np.float32(10.0 ** (-v.attenuation_cb / 200.0))
        out[:m] = y
        return out


# ------------------------------------------------------------------ helpers


def _zones(bag_start: int, bag_end: int, bags: list[tuple], gens: list[tuple], terminal_gen: int) -> tuple[Zone, ...]:
    """Zones of one preset/instrument with the global zone merged in (SF2 2.04 sections 7.3, 7.7)."""
    raw: list[tuple[dict[int, object], int]] = []
    for b in range(bag_start, min(bag_end, len(bags) - 1)):
        g0, m0 = bags[b]
        g1, m1 = bags[b + 1]
        amounts: dict[int, object] = {}
        for oper, amount in gens[g0:g1]:
            if oper in RANGE_GENS:
                amounts[oper] = (amount & 0xFF, amount >> 8)
            elif oper in UNSIGNED_GENS:
                amounts[oper] = amount
            else:
                amounts[oper] = amount - 0x10000 if amount >= 0x8000 else amount
            if oper == terminal_gen:
                break  # generators after the terminal one are ignored
        raw.append((amounts, m1 - m0))
    if not raw:
        return ()
    global_gens: dict[int, object] = {}
    first, _ = raw[0]
    if terminal_gen not in first:
        global_gens = first
        raw = raw[1:]
    zones = []
    for amounts, n_mods in raw:
        if terminal_gen not in amounts:
            continue  # a non-first zone without its terminal generator is ignored
        zones.append(Zone({**global_gens, **amounts}, n_mods))
    return tuple(zones)


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

    d, a, h = span(v.delay_s), span(v.attack_s), span(v.hold_s)
    decay_n = max(1, span(v.decay_s))
    sustain_db = -v.sustain_cb / 10.0
    pos = min(d, n_on)
    if a > 0 and pos < n_on:
        m = min(a, n_on - pos)
        env[pos : pos + m] = np.arange(m, dtype=np.float32) / a
        pos += m
    if pos < n_on:
        m = min(h, n_on - pos)
        env[pos : pos + m] = 1.0
        pos += m
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


def _lowpass(y: np.ndarray, fc_hz: float, q_cb: float, sr: int) -> np.ndarray:
    """A resonant 2-pole low-pass (RBJ biquad); Q in centibels above the DC gain as SF2 has it."""
    q = max(10.0 ** (q_cb / 200.0), 0.7071)
    w0 = 2 * math.pi * fc_hz / sr
    alpha = math.sin(w0) / (2 * q)
    cosw = math.cos(w0)
    b = np.array([(1 - cosw) / 2, 1 - cosw, (1 - cosw) / 2])
    a = np.array([1 + alpha, -2 * cosw, 1 - alpha])
    # Keep the passband level roughly constant when the filter resonates.
    b = b / a[0] / math.sqrt(q / 0.7071)
    return lfilter(b, a / a[0], y).astype(np.float32)


def _covered_keys(sf: SoundFont, program: int, velocity: int, bank: int) -> tuple[int, ...]:
    k = (program, velocity, bank)
    if k not in sf._coverage:
        sf._coverage[k] = tuple(sf.key_coverage(program, velocity, bank))
    return sf._coverage[k]


def default_soundfont_path() -> Path:
    """TimGM6mb.sf2, the General MIDI SoundFont shipped inside the pretty_midi package."""
    import pretty_midi

    path = Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; pass an SF2 file explicitly")
    return path
