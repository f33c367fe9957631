"""Hostile WAV files, generated in code: `HOSTILE` maps a name to the bytes of one file.

`STREAMED` holds the opposite: WAVs whose header lies only because their writer could not
seek back (ffmpeg or sox writing to a pipe, a cut download), which must be read up to
the end of the file with a warning.

Every entry must be refused by the decoder with an `audio.AudioError` (by `read_info`, or by
`features.compute_features` for the ones whose header is fine but whose samples are not
usable). They are what a user, a cut download or a crafted upload can hand the API and the
ETL: wrong magic, headers that lie about sizes, absurd formats, NaN samples, silence, a
chunk maze, a RIFF size of 4 GB on a 100-byte file.

`good_wav()` builds a valid note the hostile ones are mutated from; tests reuse the
`chunk`/`fmt_body`/`riff` helpers to build more. No file is written: import and use bytes.
"""

from __future__ import annotations

import struct

import numpy as np

from instropitch import audio
from support.tones import SR
from support.tones import wav_bytes as wav

PCM = 0x0001
FLOAT = 0x0003
EXTENSIBLE = 0xFFFE


def chunk(cid: bytes, body: bytes, size: int | None = None, pad: bool = True) -> bytes:
    """One RIFF chunk; `size` overrides the declared length (to lie); `pad=False` drops the pad byte."""
    declared = len(body) if size is None else size
    return cid + struct.pack("<I", declared) + body + (b"\x00" if pad and len(body) % 2 else b"")


def fmt_body(
    tag: int = PCM,
    channels: int = 1,
    rate: int = SR,
    bits: int = 16,
    block_align: int | None = None,
    byte_rate: int | None = None,
) -> bytes:
    """The 16-byte WAVEFORMAT body; `block_align`/`byte_rate` default to what the others imply."""
    align = channels * ((bits + 7) // 8) if block_align is None else block_align
    rate_bytes = rate * align if byte_rate is None else byte_rate
    return struct.pack("<HHIIHH", tag, channels, rate % 2**32, rate_bytes % 2**32, align % 2**16, bits)


def riff(*chunks: bytes, riff_size: int | None = None, magic: bytes = b"RIFF", form: bytes = b"WAVE") -> bytes:
    body = form + b"".join(chunks)
    return magic + struct.pack("<I", len(body) if riff_size is None else riff_size) + body


def note(seconds: float = 1.5, sr: int = SR, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    """A plain harmonic tone with a short fade in/out: a note the features accept."""
    t = np.arange(round(seconds * sr)) / sr
    y = sum(np.sin(2 * np.pi * freq * k * t) / k for k in range(1, 6))
    y = y * np.minimum(1, t / 0.01) * np.minimum(1, (seconds - t) / 0.05)
    return (amp * y / np.max(np.abs(y))).astype(np.float32)


def good_wav(seconds: float = 1.5, freq: float = 440.0, sr: int = SR) -> bytes:
    """A valid 16-bit mono note (`fmt ` at byte 12, `data` at byte 36): what the hostile files start from."""
    return wav(note(seconds, sr, freq), sr)


def pcm16(samples: np.ndarray) -> bytes:
    return np.round(np.asarray(samples) * 32767).astype("<i2").tobytes()


def _float_samples(bad: float, bits: int, n: int = SR) -> bytes:
    x = note(n / SR).astype(np.float64)
    x[n // 4 : 3 * n // 4] = bad  # both feature windows (start and middle) see it
    return x.astype("<f4" if bits == 32 else "<f8").tobytes()


def build() -> dict[str, bytes]:
    """name -> bytes of every hostile file (names are file-name safe)."""
    good = good_wav()
    samples = pcm16(note(0.5))
    fmt16 = chunk(b"fmt ", fmt_body())
    out: dict[str, bytes] = {}

    # --- not a WAV, or not even a whole header
    out["empty"] = b""
    out["riff_only"] = b"RIFF"
    out["riff_size_only"] = b"RIFF\x24\x00\x00\x00"
    out["wrong_magic"] = b"RIFQ" + good[4:]
    out["wrong_form_type"] = good[:8] + b"WAVF" + good[12:]
    out["renamed_mp3"] = b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(2000)
    out["text_file"] = b"Path,Fold,Family\nnot,a,wav\n" * 20
    out["truncated_header"] = good[:30]  # ends inside the 'fmt ' body
    out["truncated_chunk_header"] = good[:40]  # ends inside the 'data' chunk header

    # --- chunk sizes that lie
    out["fmt_size_beyond_file"] = riff(chunk(b"fmt ", fmt_body(), size=100_000), chunk(b"data", samples))
    out["fmt_size_huge"] = riff(chunk(b"fmt ", fmt_body(), size=0xFFFFFFFF), chunk(b"data", samples))
    out["fmt_size_too_small"] = riff(chunk(b"fmt ", fmt_body()[:8]), chunk(b"data", samples))
    out["data_size_huge"] = riff(fmt16, chunk(b"data", samples[:1000], size=0xFFFFFFF0))
    out["list_size_beyond_file"] = riff(chunk(b"LIST", b"INFO", size=0x7FFFFFFF), fmt16, chunk(b"data", samples))
    # zip-bomb-like: RIFF says 4 GB, the widest frames at the highest rate, data says 4 GB, 100 bytes real
    bomb_fmt = fmt_body(tag=FLOAT, channels=audio.MAX_CHANNELS, rate=audio.MAX_SAMPLE_RATE, bits=64)
    out["riff_4gb_bomb"] = riff(
        chunk(b"fmt ", bomb_fmt), chunk(b"data", bytes(100), size=0xFFFFFFFF), riff_size=2**32 - 1
    )
    # "10 minutes of 8 kHz 8-bit silence" declared, 16 bytes real
    out["long_silence_declared"] = riff(
        chunk(b"fmt ", fmt_body(rate=8000, bits=8)), chunk(b"data", b"\x80" * 16, size=600 * 8000)
    )
    # streaming sizes where the file really is broken: audio of unknown length before the format, an empty
    # 'data' chunk followed by another chunk (not a streaming writer's 0), less than one frame to the end
    streaming = b"data" + struct.pack("<I", 0xFFFFFFFF)
    out["streaming_data_before_fmt"] = riff(streaming + samples, fmt16)
    out["empty_data_then_list"] = riff(fmt16, chunk(b"data", b""), chunk(b"LIST", b"INFOISFT\x04\x00\x00\x00abc\x00"))
    out["streaming_less_than_a_frame"] = riff(chunk(b"fmt ", fmt_body(channels=2, bits=24)), streaming + b"\x01\x02")
    out["no_data_chunk"] = riff(fmt16, chunk(b"LIST", b"INFOISFT\x04\x00\x00\x00abc\x00"))
    out["no_fmt_chunk"] = riff(chunk(b"data", samples))
    out["empty_data"] = riff(fmt16, chunk(b"data", b""))

    # --- absurd formats
    out["channels_0"] = riff(chunk(b"fmt ", fmt_body(channels=0, block_align=0)), chunk(b"data", samples))
    out["channels_65535"] = riff(chunk(b"fmt ", fmt_body(channels=65535, block_align=2)), chunk(b"data", samples))
    out["rate_0"] = riff(chunk(b"fmt ", fmt_body(rate=0)), chunk(b"data", samples))
    out["rate_1"] = riff(chunk(b"fmt ", fmt_body(rate=1)), chunk(b"data", samples))
    out["rate_4e9"] = riff(chunk(b"fmt ", fmt_body(rate=4_000_000_000)), chunk(b"data", samples))
    out["block_align_0"] = riff(chunk(b"fmt ", fmt_body(block_align=0)), chunk(b"data", samples))
    out["bits_0"] = riff(chunk(b"fmt ", fmt_body(bits=0, block_align=2)), chunk(b"data", samples))
    # 7 bits as a naive writer declares them: block align = channels * 7 // 8 = 1 for stereo
    out["bits_7"] = riff(chunk(b"fmt ", fmt_body(channels=2, bits=7, block_align=1)), chunk(b"data", samples))
    out["bits_64_pcm"] = riff(chunk(b"fmt ", fmt_body(bits=64)), chunk(b"data", samples))
    out["float_16bit"] = riff(chunk(b"fmt ", fmt_body(tag=FLOAT, bits=16)), chunk(b"data", samples))
    out["adpcm"] = riff(chunk(b"fmt ", fmt_body(tag=0x0002, bits=4, block_align=256)), chunk(b"data", samples))
    out["extensible_short"] = riff(chunk(b"fmt ", fmt_body(tag=EXTENSIBLE) + b"\x00\x00"), chunk(b"data", samples))

    # --- samples that cannot be analysed
    out["float32_nan"] = riff(
        chunk(b"fmt ", fmt_body(tag=FLOAT, bits=32)), chunk(b"data", _float_samples(float("nan"), 32))
    )
    out["float64_inf"] = riff(
        chunk(b"fmt ", fmt_body(tag=FLOAT, bits=64)), chunk(b"data", _float_samples(float("inf"), 64))
    )
    out["float32_neg_inf"] = riff(
        chunk(b"fmt ", fmt_body(tag=FLOAT, bits=32)), chunk(b"data", _float_samples(float("-inf"), 32))
    )
    # a real long silence of moderate size: 50 s of 8 kHz 8-bit (0x80 is zero in unsigned PCM), 400 kB
    out["long_silence_real"] = riff(chunk(b"fmt ", fmt_body(rate=8000, bits=8)), chunk(b"data", b"\x80" * 400_000))
    out["one_sample_silent"] = riff(fmt16, chunk(b"data", b"\x00\x00"))
    out["one_sample"] = riff(fmt16, chunk(b"data", struct.pack("<h", 20000)))  # 45 µs: a click, not a note
    # 10 s of 8-bit 0x00 bytes, what a naive writer emits for "silence": a constant -1.0 (DC), inaudible
    out["dc_offset_silence"] = riff(chunk(b"fmt ", fmt_body(rate=8000, bits=8)), chunk(b"data", bytes(80_000)))
    out["one_partial_frame"] = riff(chunk(b"fmt ", fmt_body(channels=2, bits=24)), chunk(b"data", b"\x01\x02\x03"))

    # --- chunk mazes
    out["chunk_loop"] = riff(*[chunk(b"JUNK", b"") for _ in range(5000)], fmt16, chunk(b"data", samples))
    out["chunk_loop_odd"] = riff(*[chunk(b"junk", b"x") for _ in range(3000)], fmt16, chunk(b"data", samples))
    # an odd-sized chunk written without its pad byte: every later chunk header is read one byte off
    out["odd_chunk_no_pad"] = riff(chunk(b"LIST", b"abc", pad=False), fmt16, chunk(b"data", samples))
    return out


HOSTILE: dict[str, bytes] = build()
"""name -> bytes of every hostile WAV."""

FFMPEG_ENCODER = b"Lavf59.27.100"
"""What Debian 12's ffmpeg 5.1 writes as the LIST/INFO/ISFT software tag."""


def ffmpeg_pipe_wav(samples: bytes, sr: int = SR, channels: int = 1, encoder: bytes = FFMPEG_ENCODER) -> bytes:
    """`ffmpeg ... -f wav pipe:1` with 16-bit PCM: RIFF and 'data' sizes left at 0xFFFFFFFF, a LIST chunk between."""
    isft = encoder + b"\x00"
    info = b"INFO" + chunk(b"ISFT", isft)
    return riff(
        chunk(b"fmt ", fmt_body(channels=channels, rate=sr)),
        chunk(b"LIST", info),
        b"data" + struct.pack("<I", 0xFFFFFFFF) + samples,
        riff_size=0xFFFFFFFF,
    )


def sox_pipe_wav(samples: bytes, sr: int = SR, channels: int = 1, data_size: int = 0x7FFFF000) -> bytes:
    """`sox ... -t wav -` with 16-bit PCM: sox's 'unknown length' 0x7FFFF000 as the data size, RIFF size 36 more.

    sox re-encoding a pipe it read (`... | sox -t wav - -t wav -`) declares 0xFFFFFFFE: pass
    `data_size=0xFFFFFFFE`, the RIFF size then wraps round to 34.
    """
    return riff(
        chunk(b"fmt ", fmt_body(channels=channels, rate=sr)),
        b"data" + struct.pack("<I", data_size) + samples,
        riff_size=(data_size + 36) % 2**32,
    )


def never_patched_wav(samples: bytes, sr: int = SR, channels: int = 1) -> bytes:
    """A writer that puts 0 in both sizes and never comes back to fill them in."""
    return riff(
        chunk(b"fmt ", fmt_body(channels=channels, rate=sr)), b"data" + struct.pack("<I", 0) + samples, riff_size=0
    )


STREAMED_SAMPLES = pcm16(note(1.5))
"""The audio every `STREAMED` file holds: 1.5 s of 16-bit mono at `SR`."""

HONEST: bytes = riff(chunk(b"fmt ", fmt_body()), chunk(b"data", STREAMED_SAMPLES))
"""`STREAMED_SAMPLES` with true sizes: what every `STREAMED` file must decode like."""


def build_streamed() -> dict[str, bytes]:
    """name -> bytes of WAVs to read despite their sizes; each holds `STREAMED_SAMPLES` (whole frames)."""
    samples = STREAMED_SAMPLES
    return {
        "ffmpeg_pipe": ffmpeg_pipe_wav(samples),
        "sox_pipe": sox_pipe_wav(samples),
        "sox_repipe": sox_pipe_wav(samples, data_size=0xFFFFFFFE),
        "never_patched": never_patched_wav(samples),
        "data_size_beyond_file": riff(chunk(b"fmt ", fmt_body()), chunk(b"data", samples, size=len(samples) + 1000)),
        "cut_mid_frame": ffmpeg_pipe_wav(samples + b"\x01"),  # the cut half-frame is dropped
    }


STREAMED: dict[str, bytes] = build_streamed()
"""name -> bytes of every WAV that must decode like `HONEST`, with a warning."""

KNOWN_BUGS: dict[str, str] = {}
"""Hostile files the library accepts today (tests mark them xfail(strict=True) with this reason)."""


__all__ = [
    "FFMPEG_ENCODER",
    "HONEST",
    "HOSTILE",
    "KNOWN_BUGS",
    "SR",
    "STREAMED",
    "STREAMED_SAMPLES",
    "build",
    "build_streamed",
    "chunk",
    "ffmpeg_pipe_wav",
    "fmt_body",
    "good_wav",
    "never_patched_wav",
    "note",
    "pcm16",
    "riff",
    "sox_pipe_wav",
    "wav",
]


class CountingReader:
    """A seekable file over bytes that counts the bytes read."""

    def __init__(self, data: bytes):
        self.data, self.pos, self.read_bytes = data, 0, 0

    def seek(self, offset, whence=0):
        self.pos = {0: offset, 1: self.pos + offset, 2: len(self.data) + offset}[whence]
        return self.pos

    def tell(self):
        return self.pos

    def read(self, n=-1):
        out = self.data[self.pos : None if n < 0 else self.pos + n]
        self.pos += len(out)
        self.read_bytes += len(out)
        return out
