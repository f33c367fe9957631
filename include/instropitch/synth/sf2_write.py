"""Write a SoundFont 2 file from sample zones: how other sound sets (GUS patches, `synth.gus`) reach the players.

Every player here reads SF2 (`synth.sf2`, TinySoundFont, FluidSynth), so a sound set in
another format is written once as an SF2 and then played like any font. The file holds
one preset per GM program (bank 0), one instrument per preset and one zone per sample
key range; its generators are the few a sample set needs: key range, loop mode, volume
envelope and sample. Samples are 16-bit, each followed by the 46 zero points the SF2
2.04 specification asks for; a sample played by several zones is written once.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

GEN = {
    "instrument": 41,
    "keyRange": 43,
    "sampleID": 53,
    "sampleModes": 54,
    "attackVolEnv": 34,
    "decayVolEnv": 36,
    "sustainVolEnv": 37,
    "releaseVolEnv": 38,
}
"""The SF2 generator numbers written (the reader's `synth.sf2.GEN` names them all)."""
GUARD_POINTS = 46
MONO_SAMPLE = 1


@dataclass(frozen=True)
class SampleZone:
    """One key range of an instrument and the sample it plays (points as floats in [-1, 1])."""

    name: str
    data: np.ndarray
    sample_rate: int
    root_key: int
    pitch_correction: int
    """Cents added on playback (SF2 `chPitchCorrection`): minus how sharp the recording is."""
    loop: tuple[int, int] | None
    key_range: tuple[int, int]
    attack_s: float
    decay_s: float
    sustain_cb: float
    release_s: float


def _timecents(seconds: float) -> int:
    return int(round(1200 * math.log2(max(seconds, 0.001))))


def _chunk(cid: bytes, body: bytes) -> bytes:
    pad = b"\x00" if len(body) % 2 else b""
    return cid + struct.pack("<I", len(body)) + body + pad


def _list(kind: bytes, chunks: Sequence[bytes]) -> bytes:
    return _chunk(b"LIST", kind + b"".join(chunks))


def _info_text(text: str) -> bytes:
    """An INFO string: zero-terminated and of even size, as SF2 2.04 asks (FluidSynth refuses the file otherwise)."""
    data = text.encode("ascii", "replace")[:254] + b"\x00"
    return data + b"\x00" * (len(data) % 2)


def _name(text: str) -> bytes:
    return text.encode("ascii", "replace")[:19].ljust(20, b"\x00")


def write_soundfont(
    path: str | Path,
    name: str,
    instruments: Mapping[str, Sequence[SampleZone]],
    presets: Mapping[int, str],
) -> Path:
    """Write `instruments` ({name: zones}) as an SF2 at `path`, with `presets` {GM program: instrument name}.

    Two programs may name one instrument (a font lending the violin to the viola). Written
    under a temporary name, then renamed: a cut run never leaves half a font.
    """
    unknown = sorted(set(presets.values()) - set(instruments))
    if unknown:
        raise ValueError(f"presets name instruments that are not given: {unknown}")
    points: list[np.ndarray] = []
    shdr: list[bytes] = []
    sample_ids: dict[tuple, int] = {}
    offset = 0
    inst_names = list(instruments)
    inst, ibag, igen = [], [], []
    for inst_name in inst_names:
        inst.append(struct.pack("<20sH", _name(inst_name), len(ibag)))
        for zone in instruments[inst_name]:
            key = (id(zone.data), zone.sample_rate, zone.root_key, zone.pitch_correction, zone.loop)
            if key not in sample_ids:
                pcm = np.clip(np.round(np.asarray(zone.data, dtype=np.float64) * 32767), -32768, 32767).astype("<i2")
                start, end = offset, offset + len(pcm)
                loop_start, loop_end = (start + zone.loop[0], start + zone.loop[1]) if zone.loop else (start, end)
                shdr.append(
                    struct.pack(
                        "<20sIIIIIBbHH",
                        _name(zone.name),
                        start,
                        end,
                        loop_start,
                        loop_end,
                        zone.sample_rate,
                        min(max(zone.root_key, 0), 127),
                        zone.pitch_correction,
                        0,
                        MONO_SAMPLE,
                    )
                )
                points += [pcm, np.zeros(GUARD_POINTS, dtype="<i2")]
                offset = end + GUARD_POINTS
                sample_ids[key] = len(shdr) - 1
            ibag.append(struct.pack("<HH", len(igen), 0))
            igen += [
                struct.pack("<HBB", GEN["keyRange"], *zone.key_range),
                struct.pack("<Hh", GEN["attackVolEnv"], _timecents(zone.attack_s)),
                struct.pack("<Hh", GEN["decayVolEnv"], _timecents(zone.decay_s)),
                struct.pack("<Hh", GEN["sustainVolEnv"], int(round(zone.sustain_cb))),
                struct.pack("<Hh", GEN["releaseVolEnv"], _timecents(zone.release_s)),
                struct.pack("<HH", GEN["sampleModes"], 1 if zone.loop else 0),
                struct.pack("<HH", GEN["sampleID"], sample_ids[key]),
            ]
    inst.append(struct.pack("<20sH", _name("EOI"), len(ibag)))
    ibag.append(struct.pack("<HH", len(igen), 0))
    igen.append(struct.pack("<HH", 0, 0))
    shdr.append(struct.pack("<20sIIIIIBbHH", _name("EOS"), 0, 0, 0, 0, 0, 0, 0, 0, 0))

    phdr, pbag, pgen = [], [], []
    for program in sorted(presets):
        phdr.append(struct.pack("<20sHHHIII", _name(presets[program]), program, 0, len(pbag), 0, 0, 0))
        pbag.append(struct.pack("<HH", len(pgen), 0))
        pgen.append(struct.pack("<HH", GEN["instrument"], inst_names.index(presets[program])))
    phdr.append(struct.pack("<20sHHHIII", _name("EOP"), 0, 0, len(pbag), 0, 0, 0))
    pbag.append(struct.pack("<HH", len(pgen), 0))
    pgen.append(struct.pack("<HH", 0, 0))
    no_modulators = struct.pack("<HHhHH", 0, 0, 0, 0, 0)

    info = _list(
        b"INFO",
        [
            _chunk(b"ifil", struct.pack("<HH", 2, 1)),
            _chunk(b"isng", b"EMU8000\x00"),
            _chunk(b"INAM", _info_text(name)),
        ],
    )
    sdta = _list(b"sdta", [_chunk(b"smpl", b"".join(p.tobytes() for p in points))])
    pdta = _list(
        b"pdta",
        [
            _chunk(b"phdr", b"".join(phdr)),
            _chunk(b"pbag", b"".join(pbag)),
            _chunk(b"pmod", no_modulators),
            _chunk(b"pgen", b"".join(pgen)),
            _chunk(b"inst", b"".join(inst)),
            _chunk(b"ibag", b"".join(ibag)),
            _chunk(b"imod", no_modulators),
            _chunk(b"igen", b"".join(igen)),
            _chunk(b"shdr", b"".join(shdr)),
        ],
    )
    path = Path(path)
    part = path.with_name(path.name + ".part")
    part.write_bytes(_chunk(b"RIFF", b"sfbk" + info + sdta + pdta))
    part.replace(path)
    return path


def lend_presets(presets: Mapping[int, str], lend: Mapping[int, int] | None) -> dict[int, str]:
    """`presets` ({GM program: instrument name}) with each program the set lacks given its lender's instrument
    (`lend`: {program: lender program}), as GM fonts play the viola on the violin, so that
    `synth.dataset.borrowed_instruments` sees it as borrowed."""
    out = dict(presets)
    for program, lender in (lend or {}).items():
        if program not in out and lender in presets:
            out[program] = presets[lender]
    return out
