"""Decode the audio files users and the ETL hand in, reading only the bytes that are needed.

Our own RIFF/WAVE parser (numpy only) rather than soundfile or the stdlib `wave`, for two
reasons. Hostile input (a renamed MP3, a cut download, a header that lies about its sizes)
must fail with a typed error that names the file and the reason in plain words, never with
a crash or a huge allocation. And the ETL reads from S3 through an HTTP-ranged reader: the
header comes from one small read, then only the byte range of the frames asked for is
fetched, never the whole data chunk.

A WAV whose 'data' size is 0, 0xFFFFFFFF or more than the file holds (what ffmpeg or sox
leave when they write to a pipe and cannot seek back) is read up to the end of the file,
with a `WavInfo.warning` and a logged warning saying so.

Any other input (FLAC, Ogg Vorbis/Opus, MP3, AIFF, CAF, ...) goes to libsndfile through
`soundfile`: it is decoded once, in blocks, up to the duration limit (a compressed size says
nothing of the length), into a float32 mono WAV in memory that the readers below then use
like any other. The limits are the same: sample rate, duration, NaN/inf, silence. So do the
WAVs this parser leaves alone: compressed encodings (mu-law, A-law, IMA and Microsoft ADPCM,
GSM 6.10, MP3 inside a WAV: phones, dictaphones, telephony) and the RF64 and big-endian RIFX
flavours; only when libsndfile cannot decode them either are they refused, in its words.

Read here: PCM 8-bit (unsigned), 16/24/32-bit (signed), IEEE float 32/64, each also inside
WAVE_FORMAT_EXTENSIBLE; any channel count (downmixed to mono by the mean); sample rates
1,000..768,000 Hz. Samples come back as float32 in [-1, 1] (PCM divided by 2**(bits-1),
float clipped). Resampling uses soxr's HQ filter, the one `librosa.load` uses by default,
so a segment matches the same samples of a whole file loaded with librosa.
"""

from __future__ import annotations

import functools
import io
import logging
import math
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

log = logging.getLogger(__name__)

Source = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO
"""What the readers accept: a path, the file's bytes, or a seekable binary file object."""

DEFAULT_MAX_DURATION = 600.0
"""Longest audio accepted by default, in seconds (a single note is a few seconds)."""

MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 768_000
MAX_CHANNELS = 256

SILENCE_THRESHOLD = 1e-4
"""Peak below which a segment counts as silent (-80 dBFS, about 3 LSB of 16-bit audio)."""

HEADER_READ_SIZE = 4096
"""Bytes fetched per header read: one ranged GET usually covers every chunk before the audio."""

MAX_CHUNKS = 1000
"""Chunks scanned before giving up: a real WAV has a handful before its audio."""

RESAMPLE_MARGIN = 512
"""Extra output samples resampled on each side of a segment, then dropped.

With soxr HQ, 512 samples make a segment equal (to float32 rounding) to the same samples of
the whole file resampled at once; fewer leave filter edge effects.
"""

STREAMING_SIZES = (0, 0xFFFFFFFF)
"""'data' sizes a writer leaves when it cannot seek back to patch its header (besides sizes past the end)."""

MAX_DECODED_SECONDS = 3600.0
"""Longest audio decoded from a compressed format when no `max_duration` is given."""

DECODE_BLOCK_FRAMES = 1 << 16
"""Frames libsndfile decodes per read: memory stays at a block while the limit is checked."""

FORMAT_EXTENSIONS: dict[str, tuple[str, ...]] = {
    "WAV": (".wav", ".wave"),
    "FLAC": (".flac",),
    "OGG": (".ogg", ".oga", ".opus"),
    "MP3": (".mp3",),
    "AIFF": (".aif", ".aiff", ".aifc"),
    "CAF": (".caf",),
    "AU": (".au", ".snd"),
    "W64": (".w64",),
    "RF64": (".rf64",),
    "VOC": (".voc",),
    "NIST": (".sph", ".nist"),
}
"""File-name extensions per libsndfile format, for picking audio out of folders and buckets.

Only formats that announce themselves in their first bytes (libsndfile sniffs, names do not
matter to it). An RF64 file is usually named `.wav` anyway.
"""

_MAX_ALIGN = 4096
_RIFF_MAGICS = (b"RIFF", b"RIFX", b"RF64")

WAVE_FORMAT_PCM = 0x0001
WAVE_FORMAT_IEEE_FLOAT = 0x0003
WAVE_FORMAT_EXTENSIBLE = 0xFFFE
_GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
_FORMAT_NAMES = {
    0x0002: "Microsoft ADPCM",
    0x0006: "A-law",
    0x0007: "mu-law",
    0x0011: "IMA ADPCM",
    0x0031: "GSM 6.10",
    0x0050: "MPEG",
    0x0055: "MP3",
    0x00FF: "AAC",
    0x0161: "WMA",
    0x674F: "Ogg Vorbis",
    0xF1AC: "FLAC",
}
_MAGIC = (
    (b"fLaC", "FLAC"),
    (b"OggS", "Ogg"),
    (b"ID3", "MP3"),
    (b"\xff\xfb", "MP3"),
    (b"\xff\xf3", "MP3"),
    (b"\xff\xf2", "MP3"),
    (b"FORM", "AIFF"),
    (b"caff", "CAF"),
    (b".snd", "Sun/NeXT AU"),
    (b"PK\x03\x04", "ZIP"),
    (b"\x1f\x8b", "gzip"),
    (b"%PDF", "PDF"),
)


# --------------------------------------------------------------------------- errors


class AudioError(ValueError):
    """A WAV that cannot be used. `str(err)` is `"{path}: {reason}"`, ready for a log or a reject table."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason

    def __reduce__(self):  # keep pickling (multiprocessing, Airflow) working with two arguments
        return (type(self), (self.path, self.reason))


class NotAudioError(AudioError):
    """Not audio we can read: no WAV, and nothing libsndfile reads either (answered 415 by the API)."""


class NotAWavError(NotAudioError):
    """A RIFF file that is no usable WAVE: another RIFF type, or a broken chunk structure."""


class UnsupportedFormatError(AudioError):
    """A WAV, but in an encoding, bit depth, channel count or sample rate we do not decode."""


class _ForLibsndfile(UnsupportedFormatError):
    """A WAV this parser does not decode (`reason` says why) but libsndfile may: it is tried next."""


class TruncatedError(AudioError):
    """The file ends before what its header declares (a cut download, a lying size)."""


class EmptyAudioError(AudioError):
    """The file holds no audio frame (0-byte file, empty data chunk)."""


class InvalidSamplesError(AudioError):
    """Float samples that are NaN or infinite."""


class TooLongError(AudioError):
    """Longer than the accepted maximum duration."""


class SilentAudioError(AudioError):
    """The segment analysed is digital silence (or below `SILENCE_THRESHOLD`)."""


class TooShortError(AudioError):
    """Shorter than a note can be (a click): nothing to tell the pitch or instrument from."""


@functools.cache
def file_extensions() -> frozenset[str]:
    """Lower-case extensions (".wav", ".flac", ...) of the formats this machine reads.

    For picking audio out of folders and buckets; a file named by hand is tried whatever
    its name (the content decides, not the extension).
    """
    out = set(FORMAT_EXTENSIONS["WAV"])
    try:
        import soundfile as sf

        formats = sf.available_formats()
        opus = "OGG" in formats and "OPUS" in sf.available_subtypes("OGG")
    except (ImportError, OSError):  # no libsndfile: WAV only
        return frozenset(out)
    for kind, extensions in FORMAT_EXTENSIONS.items():
        if kind in formats:
            out.update(e for e in extensions if e != ".opus" or opus)
    return frozenset(out)


# ------------------------------------------------------------------------- the header


@dataclass(frozen=True)
class WavInfo:
    """What the header says, validated against the file: enough to read any frame range.

    `bits_per_sample` is the container size (8/16/24/32/64); `data_offset` and `data_size`
    locate the audio bytes; `n_frames` counts whole frames only. `file_format` is "WAV", or
    the libsndfile format a file was decoded from (then the other fields describe the float32
    mono copy in memory). `warning` says what was read in place of a header that could not be
    trusted (a streaming writer's sizes), else None.
    """

    sample_rate: int
    channels: int
    bits_per_sample: int
    encoding: str
    n_frames: int
    data_offset: int
    data_size: int
    block_align: int
    file_format: str = "WAV"
    warning: str | None = None

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.n_frames / self.sample_rate

    def byte_range(self, start: int, count: int) -> tuple[int, int]:
        """(offset, length) in the file of frames `start..start+count`, clamped to the audio."""
        start, count = _clamp(start, count, self.n_frames)
        return self.data_offset + start * self.block_align, count * self.block_align


class _Source:
    """An open, seekable view of the input with its size and the name used in errors."""

    def __init__(self, fh: BinaryIO, name: str, size: int):
        self.fh = fh
        self.name = name
        self.size = size
        self.decoded_from: str | None = None
        self._buf = b""
        self._buf_at = 0

    def replace(self, data: bytes, decoded_from: str) -> None:
        """Read `data` from now on (the decoded copy of a non-WAV file)."""
        self.fh, self.size, self.decoded_from = io.BytesIO(data), len(data), decoded_from
        self._buf, self._buf_at = b"", 0

    def read_at(self, offset: int, n: int) -> bytes:
        """Up to `n` bytes at `offset` (fewer only at the end of the file), in as few reads as possible."""
        if n <= 0 or offset >= self.size:
            return b""
        n = min(n, self.size - offset)
        self.fh.seek(offset)
        first = self.fh.read(n)
        if not first or len(first) == n:
            return bytes(first or b"")
        out = bytearray(first)
        while len(out) < n:
            chunk = self.fh.read(n - len(out))
            if not chunk:
                break
            out += chunk
        return bytes(out)

    def header_bytes(self, offset: int, n: int) -> bytes:
        """Like `read_at`, through a `HEADER_READ_SIZE` buffer so a header costs one read."""
        end = offset + n
        if not (self._buf_at <= offset and end <= self._buf_at + len(self._buf)):
            self._buf = self.read_at(offset, max(n, HEADER_READ_SIZE))
            self._buf_at = offset
        return self._buf[offset - self._buf_at : end - self._buf_at]


@contextmanager
def open_source(source: Source, name: str | None = None) -> Iterator[_Source]:
    """Open once, read many: the yielded object can be passed as `source` to every reader here."""
    if isinstance(source, _Source):
        yield source
    elif isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        with open(path, "rb") as fh:
            yield _Source(fh, name or str(path), os.fstat(fh.fileno()).st_size)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        yield _Source(io.BytesIO(data), name or "<bytes>", len(data))
    elif hasattr(source, "read") and hasattr(source, "seek"):
        label = name or getattr(source, "name", None)
        label = label if isinstance(label, str) and label else "<stream>"
        try:
            size = source.seek(0, io.SEEK_END)
            size = source.tell() if size is None else size
        except (OSError, ValueError) as exc:
            raise TypeError(f"{label}: the file object must be seekable ({exc})") from None
        yield _Source(source, label, int(size))
    else:
        raise TypeError(f"cannot read audio from {type(source).__name__}: give a path, bytes or a binary file object")


def _sniff(head: bytes) -> str:
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return f"; it looks like {kind}"
    if head[:4] in (b"RIFF", b"RIFX", b"RF64") or not head:
        return ""
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head[:64]):
        return "; it looks like text"
    return ""


def _parse_fmt(body: bytes, size: int, name: str) -> tuple[str, int, int, int, int]:
    """(encoding, channels, sample rate, container bits, block align) from a 'fmt ' chunk body."""
    tag, channels, rate, _byte_rate, block_align, bits = struct.unpack_from("<HHIIHH", body)
    if tag == WAVE_FORMAT_EXTENSIBLE:
        if size < 40 or len(body) < 40:
            raise NotAWavError(name, f"malformed WAVE_FORMAT_EXTENSIBLE 'fmt ' chunk: {size} bytes, need 40")
        valid_bits = struct.unpack_from("<H", body, 18)[0]
        guid = body[24:40]
        if guid[2:] != _GUID_TAIL:
            raise UnsupportedFormatError(name, f"unsupported WAVE_FORMAT_EXTENSIBLE subformat {guid.hex()}")
        tag = struct.unpack_from("<H", guid)[0]
        if valid_bits > bits:
            raise UnsupportedFormatError(name, f"{valid_bits} valid bits in a {bits}-bit container")
    if tag == WAVE_FORMAT_PCM:
        encoding = "pcm"
    elif tag == WAVE_FORMAT_IEEE_FLOAT:
        encoding = "float"
    else:
        kind = _FORMAT_NAMES.get(tag, f"format tag 0x{tag:04X}")
        raise _ForLibsndfile(name, f"unsupported encoding {kind}")
    if channels == 0:
        raise UnsupportedFormatError(name, "the header declares 0 channels")
    if channels > MAX_CHANNELS:
        raise UnsupportedFormatError(name, f"{channels} channels (at most {MAX_CHANNELS} are supported)")
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise UnsupportedFormatError(
            name, f"sample rate {rate} Hz is outside {MIN_SAMPLE_RATE:,}..{MAX_SAMPLE_RATE:,} Hz"
        )
    container = (bits + 7) // 8 * 8
    if encoding == "pcm" and container not in (8, 16, 24, 32):
        raise UnsupportedFormatError(name, f"unsupported PCM bit depth {bits} (8, 16, 24 or 32 are decoded)")
    if encoding == "float" and bits not in (32, 64):
        raise UnsupportedFormatError(name, f"unsupported float bit depth {bits} (32 or 64 are decoded)")
    if block_align != channels * container // 8:
        raise UnsupportedFormatError(
            name,
            f"block align {block_align} does not match {channels} channel(s) of {container}-bit samples "
            f"({channels * container // 8} bytes per frame)",
        )
    return encoding, channels, rate, container, block_align


def _read_info(src: _Source, max_duration: float | None) -> WavInfo:
    if src.size == 0:
        raise EmptyAudioError(src.name, "empty file (0 bytes)")
    head = src.header_bytes(0, 12)
    if src.decoded_from is None and not (head[:4] in _RIFF_MAGICS or (len(head) < 4 and b"RIFF".startswith(head))):
        _decode_other(src, max_duration)
    try:
        return _read_riff(src, max_duration)
    except _ForLibsndfile as exc:
        if src.decoded_from is not None:  # never: a decoded copy is a float WAV
            raise UnsupportedFormatError(exc.path, exc.reason) from None
        _decode_other(src, max_duration, refused=exc.reason)
        return _read_riff(src, max_duration)


def _read_riff(src: _Source, max_duration: float | None) -> WavInfo:
    name = src.name
    head = src.header_bytes(0, 12)
    size = src.size
    if len(head) < 12:
        if b"RIFF".startswith(head[:4]) and len(head) > 0:
            raise TruncatedError(name, f"truncated: the file ends inside the RIFF header ({size} bytes)")
        raise NotAWavError(name, f"not a WAV file (no RIFF/WAVE header{_sniff(head)})")
    if head[:4] == b"RIFX":
        raise _ForLibsndfile(name, "big-endian RIFX WAV")
    if head[:4] == b"RF64":
        raise _ForLibsndfile(name, "RF64 (64-bit) WAV")
    if head[8:12] != b"WAVE":
        kind = head[8:12].decode("latin-1").strip() or "?"
        raise NotAWavError(name, f"not a WAV file (a RIFF file of type {kind!r}, not WAVE)")

    fmt: tuple[str, int, int, int, int] | None = None
    data: tuple[int, int] | None = None
    pos = 12
    for _ in range(MAX_CHUNKS):
        if pos + 8 > size:
            break
        chunk_id, chunk_size = struct.unpack("<4sI", src.header_bytes(pos, 8))
        body = pos + 8
        label = chunk_id.decode("latin-1")
        if chunk_id == b"fmt ":
            if chunk_size < 16:
                raise NotAWavError(name, f"malformed 'fmt ' chunk: {chunk_size} bytes, need at least 16")
            wanted = min(chunk_size, 40)
            if body + wanted > size:
                raise TruncatedError(
                    name, f"truncated: chunk 'fmt ' at byte {pos} declares {chunk_size} bytes, file holds {size - body}"
                )
            fmt = _parse_fmt(src.header_bytes(body, wanted), chunk_size, name)
            if data is not None:
                break
        elif chunk_id == b"data":
            data = (body, chunk_size)
            if fmt is not None:
                break  # never scan past the audio: trailing chunks do not matter
        end = body + chunk_size + (chunk_size & 1)
        if body + chunk_size > size:
            if chunk_id == b"data":
                raise TruncatedError(
                    name, f"truncated: header declares {chunk_size} bytes of audio, file holds {size - body}"
                )
            raise TruncatedError(
                name,
                f"truncated: chunk {label!r} at byte {pos} declares {chunk_size} bytes, file holds {size - body}",
            )
        pos = end
    else:
        raise NotAWavError(name, f"malformed WAV: more than {MAX_CHUNKS} chunks before the audio")

    if fmt is None:
        if data is None and pos < size:
            raise TruncatedError(name, f"truncated: the file ends inside a chunk header at byte {pos}")
        if data is None:
            raise TruncatedError(name, "truncated: the file ends before its 'fmt ' and 'data' chunks")
        raise NotAWavError(name, "malformed WAV: no 'fmt ' chunk")
    if data is None:
        raise TruncatedError(name, f"truncated: no 'data' chunk in the file's {size} bytes")

    encoding, channels, rate, bits, block_align = fmt
    data_offset, data_size = data
    held = size - data_offset
    warning = None
    if data_size in STREAMING_SIZES or data_size > held:
        if data_size == 0 and (held == 0 or _next_chunk_fits(src, data_offset)):
            raise EmptyAudioError(name, "no audio: the 'data' chunk is empty")
        if held < block_align:
            raise EmptyAudioError(
                name,
                f"no audio: the header declares {_declared(data_size)} of audio, the file holds {held}, "
                f"less than one {block_align}-byte frame",
            )
        frames = held // block_align
        warning = (
            f"the header declares {_declared(data_size)} of audio, the file holds {held:,}: read the {frames:,} "
            f"whole frame{'s' if frames > 1 else ''} up to the end of the file (a WAV written to a pipe, or a cut one)"
        )
        data_size = held - held % block_align
    n_frames = data_size // block_align
    if n_frames == 0:
        raise EmptyAudioError(
            name, f"no audio: the 'data' chunk holds {data_size} bytes, less than one {block_align}-byte frame"
        )
    file_format = src.decoded_from or "WAV"
    info = WavInfo(rate, channels, bits, encoding, n_frames, data_offset, data_size, block_align, file_format, warning)
    if max_duration is not None and info.duration > max_duration:
        raise TooLongError(name, f"too long: {info.duration:.1f} s of audio, the limit is {max_duration:g} s")
    if warning:
        log.warning("%s: %s", name, warning)
    return info


def _declared(size: int) -> str:
    return f"0x{size:08X} bytes" if size == 0xFFFFFFFF else f"{size:,} bytes"


def _next_chunk_fits(src: _Source, offset: int) -> bool:
    """After a 'data' chunk declared empty: does a whole chunk follow (then it really is empty)?"""
    head = src.header_bytes(offset, 8)
    if len(head) < 8 or not all(32 <= b < 127 for b in head[:4]):
        return False
    return offset + 8 + struct.unpack_from("<I", head, 4)[0] <= src.size


def _why(exc: Exception) -> str:
    """libsndfile's own words, without its "Error : " prefix and final period."""
    text = getattr(exc, "error_string", None) or str(exc) or type(exc).__name__
    return text.removeprefix("Error : ").strip().rstrip(".")


def _decode_other(src: _Source, max_duration: float | None, refused: str | None = None) -> None:
    """Decode a file with libsndfile into a float32 mono WAV in memory, and read that from now on.

    A file that is no RIFF, or a WAV this parser `refused` (the reason, e.g. its encoding).
    Blocks of `DECODE_BLOCK_FRAMES`, refused as soon as they pass the duration limit: a small
    compressed file may hold hours.
    """
    import soundfile as sf

    name = src.name
    limit = MAX_DECODED_SECONDS if max_duration is None else max_duration
    src.fh.seek(0)
    try:
        handle = sf.SoundFile(src.fh)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        if refused is not None:
            raise UnsupportedFormatError(
                name, f"{refused}: this reader does not decode it, and libsndfile cannot either ({_why(exc)})"
            ) from None
        hint = _sniff(src.header_bytes(0, 64))
        raise NotAudioError(
            name, f"not an audio file (no RIFF/WAVE header, and libsndfile cannot read it: {_why(exc)}{hint})"
        ) from None
    with handle:
        kind = f"{handle.format} ({handle.subtype})" if handle.subtype else handle.format
        rate, channels = int(handle.samplerate), int(handle.channels)
        if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
            raise UnsupportedFormatError(
                name, f"sample rate {rate} Hz is outside {MIN_SAMPLE_RATE:,}..{MAX_SAMPLE_RATE:,} Hz"
            )
        if not 0 < channels <= MAX_CHANNELS:
            raise UnsupportedFormatError(name, f"{channels} channels (1 to {MAX_CHANNELS} are supported)")
        most = math.floor(limit * rate)
        blocks: list[np.ndarray] = []
        total = 0
        try:
            while True:
                block = handle.read(min(DECODE_BLOCK_FRAMES, most + 1 - total), dtype="float32", always_2d=True)
                if not len(block):
                    break
                total += len(block)
                if total > most:
                    raise TooLongError(
                        name, f"too long: more than {limit:g} s of {kind} audio, the limit is {limit:g} s"
                    )
                blocks.append(block.mean(axis=1, dtype=np.float32) if channels > 1 else block[:, 0].copy())
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise TruncatedError(
                name, f"cannot decode the {kind} audio after {total:,} frames (cut or corrupt?): {_why(exc)}"
            ) from None
    if not total:
        raise EmptyAudioError(name, f"no audio: libsndfile reads no frame from this {kind} file")
    samples = np.concatenate(blocks).astype("<f4", copy=False).tobytes()
    fmt = _fmt_chunk(WAVE_FORMAT_IEEE_FLOAT, 1, rate, 32, False)
    body = b"WAVE" + fmt + b"data" + struct.pack("<I", len(samples))
    riff = b"RIFF" + struct.pack("<I", (len(body) + len(samples)) % 2**32) + body + samples
    src.replace(riff, handle.format if refused is None else kind)  # "WAV (ULAW)": not read as our own WAV


def read_info(source: Source, *, name: str | None = None, max_duration: float | None = DEFAULT_MAX_DURATION) -> WavInfo:
    """Parse and check the header, reading only the first bytes of a WAV (usually one read).

    Any other format is decoded whole here (see the module doc); pass an `open_source` object
    to keep the decoded copy for the reads that follow. `name` labels errors (default: the
    path, the file object's `name`, or "<bytes>"). Raises an `AudioError` subclass for
    anything unusable; `max_duration=None` lifts the limit (to `MAX_DECODED_SECONDS` for
    compressed formats).
    """
    with open_source(source, name) as src:
        return _read_info(src, max_duration)


# ------------------------------------------------------------------------- the frames


def _clamp(start: int, count: int, n_frames: int) -> tuple[int, int]:
    if start < 0 or count < 0:
        raise ValueError(f"frame range must be non-negative, got start={start}, count={count}")
    start = min(int(start), n_frames)
    return start, min(int(count), n_frames - start)


def _decode(raw: bytes, info: WavInfo, name: str) -> np.ndarray:
    """Interleaved little-endian samples -> float32 mono in [-1, 1]."""
    bits, channels = info.bits_per_sample, info.channels
    if info.encoding == "float":
        x = np.frombuffer(raw, dtype="<f4" if bits == 32 else "<f8")
        if not np.isfinite(x).all():
            bad = int(np.count_nonzero(~np.isfinite(x)))
            raise InvalidSamplesError(name, f"invalid samples: {bad} float sample(s) are NaN or infinite")
        x = x.astype(np.float32)
    elif bits == 8:
        x = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) * np.float32(1 / 128)
    elif bits == 16:
        x = np.frombuffer(raw, dtype="<i2").astype(np.float32) * np.float32(1 / 32768)
    elif bits == 24:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        x = ((v ^ 0x800000) - 0x800000).astype(np.float32) * np.float32(1 / 8388608)
    else:
        x = np.frombuffer(raw, dtype="<i4").astype(np.float32) * np.float32(1 / 2147483648)
    if channels > 1:
        x = x.reshape(-1, channels).mean(axis=1, dtype=np.float32)
    if info.encoding == "float":
        np.clip(x, -1.0, 1.0, out=x)
    return np.ascontiguousarray(x, dtype=np.float32)


def _read_frames(src: _Source, start: int, count: int, info: WavInfo) -> np.ndarray:
    offset, length = info.byte_range(start, count)
    if length == 0:
        return np.zeros(0, dtype=np.float32)
    if info.file_format != "WAV" and src.decoded_from is None:  # `info` read from another opening of the file
        _decode_other(src, info.duration + 1.0)
    raw = src.read_at(offset, length)
    if len(raw) < length:
        raise TruncatedError(
            src.name, f"truncated: frames at byte {offset} need {length} bytes, the file holds {len(raw)}"
        )
    return _decode(raw, info, src.name)


def read_frames(
    source: Source,
    start: int,
    count: int,
    *,
    info: WavInfo | None = None,
    name: str | None = None,
    max_duration: float | None = DEFAULT_MAX_DURATION,
) -> np.ndarray:
    """Frames `start..start+count` as float32 mono in [-1, 1], reading only their bytes.

    The range is clamped to the file (a start past the end gives an empty array). Pass the
    `info` of an earlier `read_info` to skip re-reading the header.
    """
    with open_source(source, name) as src:
        info = info or _read_info(src, max_duration)
        return _read_frames(src, start, count, info)


# ----------------------------------------------------------------------- resampling


def resampled_length(n_frames: int, orig_sr: int, target_sr: int) -> int:
    """Samples after resampling `n_frames` (as librosa: ceil(n × target / orig))."""
    return -(-n_frames * target_sr // orig_sr)


def resample(y: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample mono float32 audio with soxr HQ (librosa's default `soxr_hq`), length as librosa."""
    y = np.asarray(y, dtype=np.float32)
    if orig_sr == target_sr:
        return y
    n_out = resampled_length(len(y), orig_sr, target_sr)
    if len(y) == 0:
        return np.zeros(0, dtype=np.float32)
    import soxr

    out = soxr.resample(y, orig_sr, target_sr, quality="HQ").astype(np.float32, copy=False)
    if len(out) < n_out:
        out = np.pad(out, (0, n_out - len(out)))
    return np.ascontiguousarray(out[:n_out])


@dataclass(frozen=True)
class _Plan:
    """Which source frames to read to produce output samples `out_start..out_start+out_count`."""

    out_start: int
    out_count: int
    frame_start: int
    frame_count: int
    skip: int  # output samples of the resampled read to drop before `out_start`


def _plan(info: WavInfo, start_s: float, duration_s: float, sample_rate: int) -> _Plan:
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise ValueError(f"sample_rate {sample_rate} is outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz")
    if duration_s < 0 or not math.isfinite(start_s) or not math.isfinite(duration_s):
        raise ValueError(f"bad segment: start {start_s} s, duration {duration_s} s")
    sr_in = info.sample_rate
    total = resampled_length(info.n_frames, sr_in, sample_rate)
    lo = round(start_s * sample_rate)
    hi = lo + round(duration_s * sample_rate)
    lo, hi = min(max(lo, 0), total), min(max(hi, 0), total)
    if hi <= lo:
        return _Plan(lo, 0, 0, 0, 0)
    if sr_in == sample_rate:
        return _Plan(lo, hi - lo, lo, hi - lo, 0)
    g = math.gcd(sr_in, sample_rate)
    up, down = sample_rate // g, sr_in // g
    f_lo = max(0, (lo - RESAMPLE_MARGIN) * down // up)
    if down <= _MAX_ALIGN:
        f_lo = f_lo // down * down  # output sample grid falls on whole samples of the read
    f_hi = min(info.n_frames, -(-(hi + RESAMPLE_MARGIN) * down // up))
    skip = lo - round(f_lo * up / down)
    return _Plan(lo, hi - lo, f_lo, f_hi - f_lo, skip)


def segment_byte_range(info: WavInfo, start_s: float, duration_s: float, sample_rate: int) -> tuple[int, int]:
    """(offset, length) of the file bytes `read_segment` reads for this segment (resampling margin included)."""
    plan = _plan(info, start_s, duration_s, sample_rate)
    return info.byte_range(plan.frame_start, plan.frame_count)


def read_segment(
    source: Source,
    start_s: float,
    duration_s: float,
    sample_rate: int,
    *,
    info: WavInfo | None = None,
    name: str | None = None,
    max_duration: float | None = DEFAULT_MAX_DURATION,
) -> np.ndarray:
    """The samples of `[start_s, start_s + duration_s)` at `sample_rate`, float32 mono.

    Equal (to float32 rounding) to resampling the whole file and slicing it, but reads only
    the frames of the segment plus a short resampling margin. The part of the window outside
    the file is left out, so the result can be shorter than `duration_s` (or empty).
    """
    with open_source(source, name) as src:
        info = info or _read_info(src, max_duration)
        plan = _plan(info, start_s, duration_s, sample_rate)
        if plan.out_count == 0:
            return np.zeros(0, dtype=np.float32)
        return _resampled(
            _read_frames(src, plan.frame_start, plan.frame_count, info), plan, info.sample_rate, sample_rate
        )


def cut_segment(frames: np.ndarray, info: WavInfo, start_s: float, duration_s: float, sample_rate: int) -> np.ndarray:
    """`read_segment` from the whole file already read (`frames` = `read_frames(source, 0, info.n_frames)`)."""
    plan = _plan(info, start_s, duration_s, sample_rate)
    if plan.out_count == 0:
        return np.zeros(0, dtype=np.float32)
    return _resampled(
        frames[plan.frame_start : plan.frame_start + plan.frame_count], plan, info.sample_rate, sample_rate
    )


def _resampled(y: np.ndarray, plan: _Plan, orig_sr: int, sample_rate: int) -> np.ndarray:
    """The planned output samples of the frames `plan` read."""
    if orig_sr == sample_rate:
        return y
    out = resample(y, orig_sr, sample_rate)[plan.skip : plan.skip + plan.out_count]
    if len(out) < plan.out_count:  # only at the very end of the file
        out = np.pad(out, (0, plan.out_count - len(out)))
    return np.ascontiguousarray(out)


def load(
    source: Source,
    sample_rate: int | None = None,
    *,
    name: str | None = None,
    max_duration: float | None = DEFAULT_MAX_DURATION,
) -> tuple[np.ndarray, int]:
    """The whole file as float32 mono, resampled to `sample_rate` if given; returns (samples, rate)."""
    with open_source(source, name) as src:
        info = _read_info(src, max_duration)
        y = _read_frames(src, 0, info.n_frames, info)
    if sample_rate is None or sample_rate == info.sample_rate:
        return y, info.sample_rate
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise ValueError(f"sample_rate {sample_rate} is outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz")
    return resample(y, info.sample_rate, sample_rate), sample_rate


def ensure_audible(y: np.ndarray, name: str, what: str = "the audio", threshold: float = SILENCE_THRESHOLD) -> None:
    """Raise `SilentAudioError` if `y` peaks below `threshold` around its mean (nothing to analyse, no 0/0 later).

    The mean is removed first: a constant (DC) signal is as inaudible as zeros. The peak is
    max(|y - mean|) computed from the extremes, without the two temporaries: rounding is
    monotonic and symmetric, so it is the same number (NaN included).
    """
    peak = float(np.maximum(y.max() - (mean := y.mean()), mean - y.min())) if len(y) else 0.0
    _refuse_below(peak, name, what, threshold)


def _refuse_below(peak: float, name: str, what: str, threshold: float) -> None:
    if peak < threshold:
        level = f"{20 * math.log10(peak):.0f} dBFS" if peak > 0 else "digital silence"
        raise SilentAudioError(
            name, f"silent: {what} peaks at {level} (threshold {20 * math.log10(threshold):.0f} dBFS)"
        )


AUDIBLE_BLOCK_FRAMES = 1 << 18
"""Frames decoded at a time by `ensure_file_audible` (1 MB of float32)."""


def ensure_file_audible(
    source: Source,
    *,
    info: WavInfo | None = None,
    name: str | None = None,
    max_duration: float | None = DEFAULT_MAX_DURATION,
    threshold: float = SILENCE_THRESHOLD,
) -> WavInfo:
    """Check the header and every sample at the file's own rate; returns the `WavInfo`.

    `SilentAudioError` when the whole file peaks below `threshold` around its mean (as
    `ensure_audible`), `InvalidSamplesError` for NaN/inf. No resampling and no features: a
    server answers silence with this before it queues for a model. The features still check
    each window they analyse.
    """
    with open_source(source, name) as src:
        info = info or _read_info(src, max_duration)
        total, low, high = 0.0, math.inf, -math.inf
        for start in range(0, info.n_frames, AUDIBLE_BLOCK_FRAMES):
            y = _read_frames(src, start, AUDIBLE_BLOCK_FRAMES, info)
            total += float(y.sum(dtype=np.float64))
            low, high = min(low, float(y.min())), max(high, float(y.max()))
        mean = total / info.n_frames
        _refuse_below(max(high - mean, mean - low), src.name, "the audio", threshold)
    return info


# ------------------------------------------------------------------------- writing


def _fmt_chunk(tag: int, channels: int, sample_rate: int, bits: int, extensible: bool) -> bytes:
    block_align = channels * bits // 8
    common = struct.pack("<HIIHH", channels, sample_rate, sample_rate * block_align, block_align, bits)
    if extensible:
        mask = {1: 0x4, 2: 0x3}.get(channels, 0)
        ext = struct.pack("<HHI", 22, bits, mask) + struct.pack("<H", tag) + _GUID_TAIL
        body = struct.pack("<H", WAVE_FORMAT_EXTENSIBLE) + common + ext
    elif tag == WAVE_FORMAT_IEEE_FLOAT:
        body = struct.pack("<H", tag) + common + struct.pack("<H", 0)
    else:
        body = struct.pack("<H", tag) + common
    return b"fmt " + struct.pack("<I", len(body)) + body


def encode_samples(samples: np.ndarray, bits: int, encoding: str) -> bytes:
    """Interleave and encode float samples (frames × channels) as WAV data bytes."""
    x = np.asarray(samples, dtype=np.float64)
    if not np.isfinite(x).all():
        raise ValueError("samples contain NaN or infinite values")
    if encoding == "float":
        return x.astype("<f4" if bits == 32 else "<f8").tobytes()
    scale = float(2 ** (bits - 1))
    q = np.clip(np.round(x * scale), -scale, scale - 1)
    if bits == 8:
        return (q + 128).astype(np.uint8).tobytes()
    if bits == 16:
        return q.astype("<i2").tobytes()
    if bits == 24:
        return np.ascontiguousarray(q.astype("<i4").reshape(-1, 1).view(np.uint8)[:, :3]).tobytes()
    return q.astype("<i4").tobytes()


def write_wav(
    path_or_file: str | os.PathLike | BinaryIO,
    samples: np.ndarray,
    sample_rate: int,
    *,
    bits: int = 16,
    encoding: str = "pcm",
    channels: int | None = None,
    extensible: bool = False,
) -> None:
    """Write a WAV: PCM 8/16/24/32-bit or float 32/64, from floats in [-1, 1].

    `samples` is 1-D (mono) or 2-D (frames × channels); `channels` repeats a 1-D signal on
    that many channels. PCM is scaled by 2**(bits-1), rounded and clipped, so reading it back
    gives the input within one step. `extensible=True` writes WAVE_FORMAT_EXTENSIBLE.
    """
    if encoding not in ("pcm", "float"):
        raise ValueError(f"encoding must be 'pcm' or 'float', got {encoding!r}")
    allowed = (8, 16, 24, 32) if encoding == "pcm" else (32, 64)
    if bits not in allowed:
        raise ValueError(f"{encoding} WAVs are {', '.join(map(str, allowed))}-bit, got {bits}")
    if not isinstance(sample_rate, (int, np.integer)) or not 0 < sample_rate < 2**32:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    x = np.asarray(samples)
    if x.ndim == 1:
        x = x[:, None]
        if channels is not None:
            if channels < 1:
                raise ValueError(f"channels must be at least 1, got {channels}")
            x = np.repeat(x, channels, axis=1)
    elif x.ndim == 2:
        if channels is not None and channels != x.shape[1]:
            raise ValueError(f"samples have {x.shape[1]} channels, channels={channels}")
        if x.shape[1] < 1:
            raise ValueError("samples have 0 channels")
    else:
        raise ValueError(f"samples must be 1-D or 2-D (frames × channels), got shape {x.shape}")
    tag = WAVE_FORMAT_PCM if encoding == "pcm" else WAVE_FORMAT_IEEE_FLOAT
    n_frames, n_channels = x.shape
    data = encode_samples(x, bits, encoding)
    chunks = _fmt_chunk(tag, n_channels, int(sample_rate), bits, extensible)
    if encoding == "float":
        chunks += b"fact" + struct.pack("<II", 4, n_frames)
    chunks += b"data" + struct.pack("<I", len(data)) + data + (b"\x00" if len(data) % 2 else b"")
    blob = b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks
    if isinstance(path_or_file, (str, os.PathLike)):
        Path(path_or_file).write_bytes(blob)
    else:
        path_or_file.write(blob)
