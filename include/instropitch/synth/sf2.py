"""A small SoundFont 2 reader in pure Python + numpy (the player is `synth.player`).

It reads the RIFF `sfbk` file (INFO, sdta/smpl[+sm24], pdta hydra), also in its SF3 form
(MuseScore's: each sample an Ogg Vorbis stream, decoded by libsndfile when first played), resolves
preset -> preset zones -> instrument -> instrument zones the way the SF2 2.04
specification says (global zones, preset generators adding to instrument ones,
key/velocity ranges intersecting) into the `Voice`s that `synth.player` renders:

* every zone matching the key and velocity plays its sample, resampled to the
  target pitch (4-point cubic Hermite interpolation) from root key, scale tuning,
  coarse/fine tune, the sample's pitch correction and sample-rate ratio;
* sampleModes 1 (loop) and 3 (loop until release, then play to the end) loop
  through the held note;
* the DAHDSR volume envelope (timecents / centibels, keynum-to-hold/decay
  scaling), initialAttenuation (scaled by 0.4 like FluidSynth, see
  `SoundFont.attenuation_scale`) and the default velocity-to-attenuation modulator;
* the low-pass filter (initialFilterFc/Q; without the spec's default velocity-to-cutoff
  modulator, which FluidSynth and TinySoundFont do not apply either: with it, soft notes of
  filtered voices came out 3-10 dB darker than those players make them), opened and closed by
  the modulation envelope (modEnvToFilterFc: TimGM6mb's and Merlin's strings and low winds sit
  at ~500 Hz without it), the vibrato LFO to pitch, and the modulation LFO to pitch, cutoff and
  volume (TimGM6mb's and Merlin's strings, brass and reeds waver by 5-19 cents with it);
* modulators stored in the file (pmod/imod), each a constant at note-on as FluidSynth
  evaluates them with its controllers at rest (`synth.modulators`);
* zones are mixed to mono (pan is ignored) and a release tail follows note-off.

Not modelled: the modulation envelope to pitch, exclusive classes, reverb/chorus, pan.
Sample data is memory-mapped, and each render touches only the slices of the zones it
plays (an SF3 sample is decoded whole, once).
"""

from __future__ import annotations

import bisect
import functools
import io
import mmap
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from instropitch.synth.modulators import Modulator, generator_offsets, merged

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
MIN_FILTER_CENTS, MAX_FILTER_CENTS = 1500.0, 13500.0  # the SF2 range of initialFilterFc


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

    @property
    def is_compressed(self) -> bool:
        """An SF3 sample: its `start`/`end` in the file are byte offsets of an Ogg Vorbis stream."""
        return bool(self.sample_type & COMPRESSED)


COMPRESSED = 0x10
"""The sample_type bit SF3 sets on an Ogg Vorbis sample (MuseScore, FluidSynth)."""


@dataclass(frozen=True)
class Zone:
    """A zone with its global zone already folded in: generator number -> amount.

    Range generators hold a `(low, high)` tuple, all others an int.
    """

    generators: dict[int, object]
    modulators: tuple[Modulator, ...] = ()
    """The zone's modulators with its global zone's folded in (`modulators.merged`)."""

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
class ModEnvelope:
    """The modulation envelope (DAHDSR, linear from 0 to 1): it opens and closes a voice's filter."""

    delay_s: float = 0.0
    attack_s: float = 0.0
    hold_s: float = 0.0
    decay_s: float = 0.0
    """Time a fall from 1 to 0 would take: the fall to `sustain` takes its share of it."""
    sustain: float = 1.0
    release_s: float = 0.0
    """Time a fall from 1 to 0 would take after note-off."""


@dataclass(frozen=True)
class Lfo:
    """A low-frequency oscillator: a triangle from 0, rising first, once its delay has passed (SF2 2.04 section 8.1.2)."""

    delay_s: float = 0.0
    freq_hz: float = 8.176


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
    mod_env_to_filter_cents: float = 0.0
    """Cents the filter cutoff rises at the modulation envelope's peak (modEnvToFilterFc)."""
    mod_env: ModEnvelope = ModEnvelope()
    mod_lfo: Lfo = Lfo()
    mod_lfo_to_pitch_cents: float = 0.0
    mod_lfo_to_filter_cents: float = 0.0
    mod_lfo_to_volume_cb: float = 0.0
    """Centibels the level rises at the modulation LFO's peak and falls at its trough (modLfoToVolume)."""

    @property
    def loops(self) -> bool:
        return self.loop_mode in (1, 3) and self.loop_end - self.loop_start >= 2


def timecents_to_seconds(tc: float) -> float:
    return float(2.0 ** (tc / 1200.0))


def abs_cents_to_hz(cents: float) -> float:
    return float(8.176 * 2.0 ** (cents / 1200.0))


# ------------------------------------------------------------------ RIFF


_CHUNK_IDS = {
    b"LIST", b"ifil", b"isng", b"INAM", b"irom", b"iver", b"ICRD", b"IENG", b"IPRD", b"ICOP", b"ICMT", b"ISFT",
    b"smpl", b"sm24", b"phdr", b"pbag", b"pmod", b"pgen", b"inst", b"ibag", b"imod", b"igen", b"shdr",
}  # fmt: skip


def _chunks(data: bytes | mmap.mmap, start: int, end: int):
    """Yield (id, payload_start, payload_size) of the RIFF chunks in data[start:end].

    An odd-sized chunk is followed by a pad byte, unless the writer left it out (MuseScore_General_Lite.sf3
    does): then a known chunk id starts right after the payload, and none after the pad.
    """
    pos = start
    while pos + 8 <= end:
        cid = bytes(data[pos : pos + 4]).decode("latin-1")
        (size,) = struct.unpack_from("<I", data, pos + 4)
        body = pos + 8
        if body + size > end:
            size = end - body  # truncated final chunk: take what is there
        yield cid, body, size
        pos = body + size + (size & 1)
        if size & 1 and bytes(data[pos : pos + 4]) not in _CHUNK_IDS and bytes(data[pos - 1 : pos + 3]) in _CHUNK_IDS:
            pos -= 1


def _ogg_frames(blob: bytes) -> int | None:
    """Decoded length of an Ogg Vorbis stream: the granule position of its last page (no decoding); None if not Ogg."""
    last = blob.rfind(b"OggS")
    if not blob.startswith(b"OggS") or last + 14 > len(blob):
        return None
    return int(struct.unpack_from("<q", blob, last + 6)[0])


def _decompressed_layout(
    path: Path, data: mmap.mmap, smpl_body: int, samples: list[SampleHeader]
) -> tuple[list[SampleHeader], list[tuple[int, int, int]]]:
    """SF3 samples placed end to end in decoded sample points, as an SF2 lays out `smpl`, and
    (decoded start, byte start, byte end) of each Ogg stream in the file. SF3 loop points count
    from the sample's own start."""
    placed, streams, at = [], [], 0
    for sample in samples:
        if not sample.is_compressed or sample.end <= sample.start:
            placed.append(replace(sample, start=at, end=at, loop_start=at, loop_end=at))
            continue
        first, last = smpl_body + sample.start, smpl_body + sample.end
        frames = _ogg_frames(bytes(data[first:last]))
        if frames is None:
            raise SoundFontError(f"{path}: SF3 sample {sample.name!r} (bytes {first}..{last}) is not an Ogg stream")
        placed.append(
            replace(sample, start=at, end=at + frames, loop_start=at + sample.loop_start, loop_end=at + sample.loop_end)
        )
        streams.append((at, first, last))
        at += frames
    return placed, streams


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
        streams: list[tuple[int, int, int]] | None = None,
    ):
        self.path = path
        self.info = info
        self.presets = presets
        self.instruments = instruments
        self.samples = samples
        self._streams = streams or []
        """SF3: (decoded start, byte start, byte end) per Ogg sample; the points are decoded on demand."""
        self._stream_starts = [first for first, _, _ in self._streams]
        self._points = smpl_count
        self._smpl = (
            np.memmap(path, dtype="<i2", mode="r", offset=smpl_offset, shape=(smpl_count,))
            if not self._streams
            else None
        )
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
            raise SoundFontError(f"{path}: no 'smpl' sample data")
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
        pmod = [Modulator(*r) for r in records("pmod", "<HHhHH")]
        imod = [Modulator(*r) for r in records("imod", "<HHhHH")]
        shdr = records("shdr", "<20sIIIIIBbHH")

        samples = [SampleHeader(_cstr(r[0]), r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9]) for r in shdr[:-1]]
        streams = None
        if any(s.is_compressed for s in samples):
            samples, streams = _decompressed_layout(path, data, smpl[0], samples)
            smpl = (smpl[0], samples[-1].end if samples else 0)
            sm24_offset = None
        instruments = [
            SFInstrument(_cstr(inst[i][0]), _zones(inst[i][1], inst[i + 1][1], ibag, igen, imod, GEN["sampleID"]))
            for i in range(len(inst) - 1)
        ]
        presets = [
            Preset(
                _cstr(phdr[i][0]),
                program=phdr[i][1],
                bank=phdr[i][2],
                zones=_zones(phdr[i][3], phdr[i + 1][3], pbag, pgen, pmod, GEN["instrument"]),
            )
            for i in range(len(phdr) - 1)
        ]
        presets.sort(key=lambda p: (p.bank, p.program))
        return cls(path, info, presets, instruments, samples, smpl[0], smpl[1], sm24_offset, streams)

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

    def preset_samples(self, program: int, bank: int = 0) -> frozenset[int]:
        """Indices of every sample the preset can play, at any key and velocity."""
        found = set()
        for pzone in self.preset(program, bank).zones:
            inst_index = pzone.get(GEN["instrument"])
            if not isinstance(inst_index, int) or inst_index >= len(self.instruments):
                continue
            for izone in self.instruments[inst_index].zones:
                sample_id = izone.get(GEN["sampleID"])
                if isinstance(sample_id, int) and sample_id < len(self.samples):
                    found.add(sample_id)
        return frozenset(found)

    def key_coverage(self, program: int, velocity: int = 100, bank: int = 0) -> list[int]:
        """Keys 0..127 that have at least one sample at this velocity."""
        return [k for k in range(128) if self.voices(program, k, velocity, bank)]

    def _voice(self, pzone: Zone, izone: Zone, inst_name: str, sample_id: int, key: int, velocity: int) -> Voice:
        sample = self.samples[sample_id]
        key_eff = int(izone.get(GEN["keynum"], -1))  # type: ignore[arg-type]
        key_eff = key if key_eff < 0 else key_eff
        vel_eff = int(izone.get(GEN["velocity"], -1))  # type: ignore[arg-type]
        vel_eff = velocity if vel_eff < 0 else vel_eff
        modulated = generator_offsets(izone.modulators, pzone.modulators, key_eff, vel_eff)

        def gen(number: int) -> float:
            value = izone.get(number, GEN_DEFAULTS.get(number, 0))
            if number not in INSTRUMENT_ONLY_GENS:
                value = value + pzone.get(number, 0)  # type: ignore[operator]
            return float(value) + modulated.get(number, 0.0)  # type: ignore[arg-type]

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
        total = self._points
        start = min(max(start, 0), total)
        end = min(max(end, start), total)
        loop_start = min(max(loop_start, start), end)
        loop_end = min(max(loop_end, loop_start), end)

        # The stored generator is scaled (FluidSynth's EMU reading), the modulators' share (velocity's among them,
        # or a font's own velocity curve: MuseScore_General_Lite's 800 cB) is not.
        stored = max(izone.get(GEN["initialAttenuation"], 0) + pzone.get(GEN["initialAttenuation"], 0), 0.0)
        attenuation = min(
            stored * self.attenuation_scale + modulated.get(GEN["initialAttenuation"], 0.0), MAX_ATTENUATION_CB
        )
        # No velocity -> cutoff: FluidSynth's default modulator for it returns 0 (since 1.x), TinySoundFont has none.
        fc = gen(GEN["initialFilterFc"])

        key_offset = 60 - key_eff
        hold_tc = gen(GEN["holdVolEnv"]) + gen(GEN["keynumToVolEnvHold"]) * key_offset
        decay_tc = gen(GEN["decayVolEnv"]) + gen(GEN["keynumToVolEnvDecay"]) * key_offset
        mod_hold_tc = gen(GEN["holdModEnv"]) + gen(GEN["keynumToModEnvHold"]) * key_offset
        mod_decay_tc = gen(GEN["decayModEnv"]) + gen(GEN["keynumToModEnvDecay"]) * key_offset

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
            filter_fc_cents=min(max(fc, MIN_FILTER_CENTS), MAX_FILTER_CENTS),
            filter_q_cb=min(max(gen(GEN["initialFilterQ"]), 0.0), 960.0),
            vib_delay_s=timecents_to_seconds(min(gen(GEN["delayVibLFO"]), 5000)),
            vib_freq_hz=abs_cents_to_hz(min(max(gen(GEN["freqVibLFO"]), -16000), 4500)),
            vib_to_pitch_cents=min(max(gen(GEN["vibLfoToPitch"]), -12000), 12000),
            mod_env_to_filter_cents=min(max(gen(GEN["modEnvToFilterFc"]), -12000), 12000),
            mod_env=ModEnvelope(
                delay_s=timecents_to_seconds(min(gen(GEN["delayModEnv"]), 5000)),
                attack_s=timecents_to_seconds(min(gen(GEN["attackModEnv"]), 8000)),
                hold_s=timecents_to_seconds(min(mod_hold_tc, 5000)),
                decay_s=timecents_to_seconds(min(mod_decay_tc, 8000)),
                sustain=1.0 - min(max(gen(GEN["sustainModEnv"]), 0.0), 1000.0) / 1000.0,
                release_s=timecents_to_seconds(min(gen(GEN["releaseModEnv"]), 8000)),
            ),
            mod_lfo=Lfo(
                delay_s=timecents_to_seconds(min(gen(GEN["delayModLFO"]), 5000)),
                freq_hz=abs_cents_to_hz(min(max(gen(GEN["freqModLFO"]), -16000), 4500)),
            ),
            mod_lfo_to_pitch_cents=min(max(gen(GEN["modLfoToPitch"]), -12000), 12000),
            mod_lfo_to_filter_cents=min(max(gen(GEN["modLfoToFilterFc"]), -12000), 12000),
            mod_lfo_to_volume_cb=min(max(gen(GEN["modLfoToVolume"]), -960), 960),
        )

    # ------------------------------------------------------------ rendering

    def sample_data(self, start: int, end: int) -> np.ndarray:
        """Sample points [start, end) as float32 in -1..1 (24-bit if the file has sm24)."""
        if self._smpl is None:
            return self._decoded_points(start, end)
        raw = np.asarray(self._smpl[start:end], dtype=np.float32)
        if self._sm24 is not None:
            low = np.asarray(self._sm24[start:end], dtype=np.float32)
            return (raw * 256.0 + low) / 8388608.0
        return raw / 32768.0

    def _decoded_points(self, start: int, end: int) -> np.ndarray:
        """SF3: points [start, end) of the one Ogg sample holding `start` (a voice never spans two)."""
        out = np.zeros(max(end - start, 0), dtype=np.float32)
        i = bisect.bisect_right(self._stream_starts, start) - 1
        if i < 0 or not len(out):
            return out
        first = self._streams[i][0]
        pcm = self._decoded(i)
        got = pcm[start - first : end - first]
        out[: len(got)] = got
        return out

    @functools.lru_cache(maxsize=256)  # noqa: B019 - one font object per process, its samples are few
    def _decoded(self, index: int) -> np.ndarray:
        import soundfile

        _, first, last = self._streams[index]
        with open(self.path, "rb") as handle:
            handle.seek(first)
            blob = handle.read(last - first)
        try:
            pcm, _ = soundfile.read(io.BytesIO(blob), dtype="float32", always_2d=True)
        except (RuntimeError, soundfile.LibsndfileError) as exc:
            raise SoundFontError(f"{self.path}: SF3 sample {index} does not decode: {exc}") from exc
        return pcm[:, 0]

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


# ------------------------------------------------------------------ helpers


def _zones(
    bag_start: int, bag_end: int, bags: list[tuple], gens: list[tuple], mods: list[Modulator], terminal_gen: int
) -> tuple[Zone, ...]:
    """Zones of one preset/instrument with the global zone merged in (SF2 2.04 sections 7.3, 7.7, 9.5.1)."""
    raw: list[tuple[dict[int, object], tuple[Modulator, ...]]] = []
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
        raw.append((amounts, tuple(mods[m0:m1])))
    if not raw:
        return ()
    global_gens: dict[int, object] = {}
    global_mods: tuple[Modulator, ...] = ()
    first, first_mods = raw[0]
    if terminal_gen not in first:
        global_gens, global_mods = first, first_mods
        raw = raw[1:]
    zones = []
    for amounts, zone_mods in raw:
        if terminal_gen not in amounts:
            continue  # a non-first zone without its terminal generator is ignored
        zones.append(Zone({**global_gens, **amounts}, merged(global_mods, zone_mods)))
    return tuple(zones)


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
