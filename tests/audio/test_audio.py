"""WAV decoding: every supported format against known samples, every kind of bad input, ranged reads.

(Other formats through libsndfile: test_formats.py; WAVs written to a pipe: test_streamed_wavs.py.)
"""

from __future__ import annotations

import io
import pickle
import struct
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from instropitch import audio
from instropitch.audio import (
    AudioError,
    EmptyAudioError,
    InvalidSamplesError,
    NotAudioError,
    NotAWavError,
    SilentAudioError,
    TooLongError,
    TruncatedError,
    UnsupportedFormatError,
    WavInfo,
)

SR = 44100


def tone(freq: float = 440.0, sr: int = SR, dur: float = 0.25, amp: float = 0.8, harmonics: int = 1) -> np.ndarray:
    t = np.arange(round(dur * sr)) / sr
    y = sum(np.sin(2 * np.pi * freq * k * t) / k for k in range(1, harmonics + 1))
    return (amp * y / np.max(np.abs(y))).astype(np.float64)


def wav_bytes(samples: np.ndarray, sr: int = SR, **kwargs) -> bytes:
    buf = io.BytesIO()
    audio.write_wav(buf, samples, sr, **kwargs)
    return buf.getvalue()


def chunk(cid: bytes, body: bytes, size: int | None = None) -> bytes:
    """One RIFF chunk; `size` overrides the declared length (to lie), the pad byte follows the body."""
    declared = len(body) if size is None else size
    return cid + struct.pack("<I", declared) + body + (b"\x00" if len(body) % 2 else b"")


def fmt(tag: int = 1, channels: int = 1, rate: int = SR, bits: int = 16, block_align: int | None = None) -> bytes:
    align = channels * ((bits + 7) // 8) if block_align is None else block_align
    return struct.pack("<HHIIHH", tag, channels, rate, rate * align % 2**32, align, bits)


def riff(*chunks: bytes, riff_size: int | None = None) -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body) if riff_size is None else riff_size) + body


def pcm16(samples: np.ndarray) -> bytes:
    return (np.round(np.asarray(samples) * 32767)).astype("<i2").tobytes()


class CountingReader:
    """A seekable binary file object that records every read as (offset, length)."""

    def __init__(self, data: bytes):
        self._buf = io.BytesIO(data)
        self.reads: list[tuple[int, int]] = []

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._buf.seek(offset, whence)

    def tell(self) -> int:
        return self._buf.tell()

    def read(self, n: int = -1) -> bytes:
        at = self._buf.tell()
        out = self._buf.read(n)
        self.reads.append((at, len(out)))
        return out

    @property
    def bytes_read(self) -> int:
        return sum(n for _, n in self.reads)


# --------------------------------------------------------------------------- decoding

FORMATS = [
    # bits, encoding, tolerance of a round trip through write_wav
    (8, "pcm", 0.5 / 128 + 1e-7),
    (16, "pcm", 0.5 / 32768 + 1e-7),
    (24, "pcm", 1e-6),
    (32, "pcm", 1e-6),
    (32, "float", 1e-7),
    (64, "float", 1e-7),
]


@pytest.mark.parametrize("extensible", [False, True], ids=["plain", "extensible"])
@pytest.mark.parametrize(("bits", "encoding", "tol"), FORMATS, ids=[f"{e}{b}" for b, e, _ in FORMATS])
def test_decodes_every_format(bits: int, encoding: str, tol: float, extensible: bool) -> None:
    y = tone(harmonics=3)
    data = wav_bytes(y, bits=bits, encoding=encoding, extensible=extensible)
    info = audio.read_info(data)
    assert (info.sample_rate, info.channels, info.bits_per_sample, info.encoding) == (SR, 1, bits, encoding)
    assert info.n_frames == len(y)
    assert info.block_align == bits // 8
    assert info.data_size == len(y) * bits // 8
    assert info.duration == pytest.approx(0.25)
    out, sr = audio.load(data)
    assert sr == SR and out.dtype == np.float32 and out.shape == y.shape
    np.testing.assert_allclose(out, y, atol=tol, rtol=0)
    part = audio.read_frames(data, 1000, 500)
    np.testing.assert_array_equal(part, out[1000:1500])


def test_pcm_full_scale_limits() -> None:
    """The extreme codes decode to exactly -1 and (2**(b-1) - 1) / 2**(b-1)."""
    for bits in (8, 16, 24, 32):
        out, _ = audio.load(wav_bytes(np.array([-1.0, 0.0, 1.0]), bits=bits))
        scale = 2.0 ** (bits - 1)
        np.testing.assert_allclose(out, [-1.0, 0.0, (scale - 1) / scale], atol=1e-7)


@pytest.mark.parametrize("bits", [8, 16, 24, 32])
def test_stereo_and_multichannel_downmix_by_mean(bits: int) -> None:
    left, right = tone(440, amp=0.6), tone(660, amp=0.3)
    out, _ = audio.load(wav_bytes(np.stack([left, right], axis=1), bits=bits))
    np.testing.assert_allclose(out, (left + right) / 2, atol=2.0 ** (1 - bits) + 1e-6)
    six = np.stack([tone(110 * (k + 1), amp=0.1 * (k + 1)) for k in range(6)], axis=1)
    data = wav_bytes(six, bits=bits, extensible=True)
    assert audio.read_info(data).channels == 6
    np.testing.assert_allclose(audio.load(data)[0], six.mean(axis=1), atol=2.0 ** (1 - bits) + 1e-6)


def test_channels_argument_repeats_a_mono_signal() -> None:
    y = tone()
    data = wav_bytes(y, channels=2)
    info = audio.read_info(data)
    assert info.channels == 2 and info.block_align == 4
    np.testing.assert_allclose(audio.load(data)[0], y, atol=1e-4)


@pytest.mark.parametrize("rate", [8000, 48000, 96000])
def test_other_sample_rates(rate: int) -> None:
    y = tone(440, sr=rate, dur=0.5)
    data = wav_bytes(y, rate)
    assert audio.read_info(data).sample_rate == rate
    native, sr = audio.load(data)
    assert sr == rate and len(native) == len(y)
    resampled, sr = audio.load(data, 22050)
    assert sr == 22050 and len(resampled) == -(-len(y) * 22050 // rate)
    spectrum = np.abs(np.fft.rfft(resampled[2000:8000] * np.hanning(6000)))
    assert np.fft.rfftfreq(6000, 1 / 22050)[spectrum.argmax()] == pytest.approx(440, abs=4)


def test_float_samples_above_full_scale_are_clipped() -> None:
    out, _ = audio.load(wav_bytes(np.array([0.5, 1.5, -2.0]), bits=32, encoding="float"))
    np.testing.assert_array_equal(out, np.float32([0.5, 1.0, -1.0]))


def test_every_kind_of_source_reads_the_same(tmp_path) -> None:
    y = tone()
    path = tmp_path / "note.wav"
    audio.write_wav(path, y, SR)
    data = path.read_bytes()
    expected, _ = audio.load(data)
    with open(path, "rb") as fh:
        from_file = audio.load(fh)[0]
    for source in (path, str(path), data, bytearray(data), memoryview(data), io.BytesIO(data)):
        np.testing.assert_array_equal(audio.load(source)[0], expected)
    np.testing.assert_array_equal(from_file, expected)
    with audio.open_source(path) as src:  # open once, read many
        info = audio.read_info(src)
        np.testing.assert_array_equal(audio.read_frames(src, 0, 10, info=info), expected[:10])
    with pytest.raises(TypeError, match="cannot read audio"):
        audio.load(12345)  # type: ignore[arg-type]


def test_unknown_chunks_and_odd_pad_bytes_are_skipped() -> None:
    samples = tone(dur=0.01)
    data = riff(
        chunk(b"LIST", b"INFOISFT\x05\x00\x00\x00test\x00"),  # odd size: a pad byte follows
        chunk(b"JUNK", b"\x00" * 27),
        chunk(b"fmt ", fmt()),
        chunk(b"fact", struct.pack("<I", len(samples))),
        chunk(b"bext", b"x" * 5001),  # beyond the first header read
        chunk(b"data", pcm16(samples)),
        chunk(b"id3 ", b"trailing chunks after the audio are never read"),
    )
    info = audio.read_info(data)
    assert info.n_frames == len(samples)
    np.testing.assert_allclose(audio.load(data)[0], samples, atol=1e-4)


def test_fmt_after_data_is_found() -> None:
    samples = tone(dur=0.01)
    data = riff(chunk(b"data", pcm16(samples)), chunk(b"fmt ", fmt()))
    np.testing.assert_allclose(audio.load(data)[0], samples, atol=1e-4)


def test_wrong_riff_size_is_tolerated() -> None:
    samples = tone(dur=0.01)
    for riff_size in (0, 4, 0xFFFFFFFF):
        data = riff(chunk(b"fmt ", fmt()), chunk(b"data", pcm16(samples)), riff_size=riff_size)
        assert audio.read_info(data).n_frames == len(samples)


def test_a_trailing_partial_frame_is_ignored() -> None:
    data = riff(chunk(b"fmt ", fmt(channels=2)), chunk(b"data", b"\x00\x01" * 5))
    assert audio.read_info(data).n_frames == 2


def test_read_frames_clamps_to_the_file() -> None:
    data = wav_bytes(tone(dur=0.1))
    n = audio.read_info(data).n_frames
    assert len(audio.read_frames(data, n - 10, 100)) == 10
    assert len(audio.read_frames(data, n + 5, 100)) == 0
    assert audio.read_frames(data, n + 5, 100).dtype == np.float32
    assert len(audio.read_frames(data, 0, 0)) == 0
    with pytest.raises(ValueError, match="non-negative"):
        audio.read_frames(data, -1, 10)


@pytest.mark.parametrize("rate", [44100, 48000, 22050, 8000])
def test_read_segment_equals_slicing_the_whole_file_resampled(rate: int) -> None:
    import soxr

    rng = np.random.default_rng(1)
    y = tone(220, sr=rate, dur=2.0, harmonics=8) * 0.5 + 0.05 * rng.standard_normal(2 * rate)
    data = wav_bytes(y, rate, bits=32, encoding="float")
    native = audio.load(data)[0]  # what librosa.load(sr=22050) does: soxr HQ over the whole file
    whole = native if rate == 22050 else soxr.resample(native, rate, 22050, quality="HQ")
    for start_s, dur_s in ((0.75, 0.5), (0.0, 1.0), (1.8, 1.0), (0.0123, 0.0456)):
        seg = audio.read_segment(data, start_s, dur_s, 22050)
        lo = round(start_s * 22050)
        expected = whole[lo : lo + round(dur_s * 22050)]
        assert seg.shape == expected.shape
        np.testing.assert_allclose(seg, expected, atol=2e-6)
        info = audio.read_info(data)  # the same cut from samples already read (`features` locating the note)
        np.testing.assert_array_equal(audio.cut_segment(native, info, start_s, dur_s, 22050), seg)
    assert len(audio.read_segment(data, 5.0, 1.0, 22050)) == 0
    assert len(audio.read_segment(data, -0.5, 1.0, 22050)) == 11025  # the part inside the file


# ----------------------------------------------------------------------- ranged reads


def test_read_frames_reads_only_the_requested_byte_range() -> None:
    data = wav_bytes(tone(dur=10.0, amp=0.5), bits=24)  # 1.3 MB
    info = audio.read_info(data)
    reader = CountingReader(data)
    out = audio.read_frames(reader, 100_000, 4410, info=info)
    assert len(out) == 4410
    assert reader.reads == [(info.data_offset + 100_000 * 3, 4410 * 3)]
    assert info.byte_range(100_000, 4410) == reader.reads[0]


def test_header_costs_one_small_read() -> None:
    data = wav_bytes(tone(dur=10.0, amp=0.5))
    reader = CountingReader(data)
    info = audio.read_info(reader)
    assert len(reader.reads) == 1 and reader.bytes_read <= audio.HEADER_READ_SIZE
    reader.reads.clear()
    audio.read_frames(reader, 0, 100)  # without `info`: header read again, then the 200 bytes
    assert reader.bytes_read <= audio.HEADER_READ_SIZE + 200
    assert reader.reads[-1] == (info.data_offset, 200)


def test_read_segment_reads_only_its_frames_plus_a_margin() -> None:
    data = wav_bytes(tone(dur=10.0, amp=0.5))
    info = audio.read_info(data)
    reader = CountingReader(data)
    seg = audio.read_segment(reader, 4.0, 0.5, 22050, info=info)
    assert len(seg) == 11025
    offset, length = audio.segment_byte_range(info, 4.0, 0.5, 22050)
    assert reader.reads == [(offset, length)]
    assert length < 0.6 * SR * 2  # 0.5 s of 16-bit mono plus ~23 ms each side
    assert offset >= info.data_offset + int(3.9 * SR) * 2


# ------------------------------------------------------------------------ bad input


def expect(exc_type: type[AudioError], data: bytes, match: str, name: str = "bad.wav", **kwargs) -> AudioError:
    with pytest.raises(exc_type, match=match) as caught:
        audio.load(data, name=name, **kwargs)
    err = caught.value
    assert isinstance(err, AudioError) and isinstance(err, ValueError)
    assert err.path == name
    assert str(err) == f"{name}: {err.reason}"
    return err


GOOD = wav_bytes(tone(dur=0.1))


def test_not_audio() -> None:
    err = expect(NotAudioError, b"hello, this is a text file\n" * 4, "not an audio file", name="cello.wav")
    assert type(err) is NotAudioError
    assert str(err).startswith("cello.wav: not an audio file (no RIFF/WAVE header, and libsndfile cannot read it: ")
    assert err.reason.endswith("; it looks like text)")
    expect(NotAudioError, b"fLaC\x00\x00\x00\x22" + bytes(100), "looks like FLAC")
    expect(NotAudioError, b"ID3\x04" + bytes(100), "looks like MP3")
    expect(NotAudioError, bytes(5), "not an audio file")
    # a RIFF that is no WAVE stays ours to refuse: libsndfile is not asked
    assert type(expect(NotAWavError, b"RIFF\x10\x00\x00\x00AVI LIST" + bytes(100), "type 'AVI'")) is NotAWavError
    assert issubclass(NotAWavError, NotAudioError)


def test_a_riff_flavour_libsndfile_cannot_read_either_is_refused_with_both_reasons() -> None:
    # little-endian sizes under a big-endian magic: libsndfile finds no sane header either
    err = expect(UnsupportedFormatError, b"RIFX" + GOOD[4:], "big-endian RIFX WAV: this reader does not decode it")
    assert "and libsndfile cannot either (" in err.reason
    assert type(err) is UnsupportedFormatError  # not the private "try libsndfile" marker


@pytest.mark.parametrize("cut", [1, 4, 11, 12, 16, 20, 30, 43])
def test_truncated_header(cut: int) -> None:
    expect(TruncatedError, GOOD[:cut], "truncated")


def test_cut_data_is_read_up_to_the_end_with_a_warning() -> None:
    info = audio.read_info(GOOD[:1245], name="cut.wav")  # 1,201 bytes of audio: the odd byte is half a frame
    assert (info.n_frames, info.data_size) == (600, 1200)
    assert info.warning == (
        "the header declares 8,820 bytes of audio, the file holds 1,201: read the 600 whole frames "
        "up to the end of the file (a WAV written to a pipe, or a cut one)"
    )
    y, _ = audio.load(GOOD[:1245])
    np.testing.assert_array_equal(y, audio.load(GOOD)[0][:600])
    assert audio.read_info(GOOD).warning is None


def test_empty_file_and_zero_frames() -> None:
    expect(EmptyAudioError, b"", "empty file")
    expect(EmptyAudioError, riff(chunk(b"fmt ", fmt()), chunk(b"data", b"")), "data' chunk is empty")
    expect(
        EmptyAudioError, riff(chunk(b"fmt ", fmt(channels=2, bits=24)), chunk(b"data", b"\x00" * 5)), "less than one"
    )


@pytest.mark.parametrize("bits", [32, 64])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_float_samples(bits: int, bad: float) -> None:
    good = np.zeros(100)
    good[37] = 0.123
    data = bytearray(wav_bytes(good, bits=bits, encoding="float"))
    marker = np.array([0.123], dtype="<f4" if bits == 32 else "<f8").tobytes()
    at = bytes(data).index(marker)
    data[at : at + len(marker)] = np.array([bad], dtype="<f4" if bits == 32 else "<f8").tobytes()
    audio.read_info(bytes(data))  # the header is fine
    expect(InvalidSamplesError, bytes(data), "NaN or infinite")
    with pytest.raises(InvalidSamplesError):
        audio.read_frames(bytes(data), 30, 10)
    assert len(audio.read_frames(bytes(data), 0, 30)) == 30  # frames before the bad one are fine


def test_too_long_with_a_configurable_limit() -> None:
    data = wav_bytes(tone(dur=2.0))
    err = expect(TooLongError, data, "too long", max_duration=1.5)
    assert "2.0 s" in err.reason and "1.5 s" in err.reason
    assert audio.load(data, max_duration=None)[0].shape == (2 * SR,)
    assert audio.read_info(data, max_duration=2.0).duration == 2.0
    big = riff(chunk(b"fmt ", fmt(rate=1000)), chunk(b"data", bytes(2 * 601 * 1000)))
    with pytest.raises(TooLongError, match="limit is 600 s"):
        audio.read_info(big)


def test_zero_channels() -> None:
    expect(UnsupportedFormatError, riff(chunk(b"fmt ", fmt(channels=0)), chunk(b"data", bytes(8))), "0 channels")


@pytest.mark.parametrize("rate", [0, 1, 999, 768_001, 4_000_000_000])
def test_absurd_sample_rates(rate: int) -> None:
    data = riff(chunk(b"fmt ", fmt(rate=rate % 2**32)), chunk(b"data", bytes(8)))
    expect(UnsupportedFormatError, data, f"sample rate {rate % 2**32} Hz is outside")


@pytest.mark.parametrize(
    ("fmt_body", "match"),
    [
        (fmt(tag=2, bits=4, block_align=1), "Microsoft ADPCM"),
        (fmt(tag=0x55, bits=16), "MP3"),
        (fmt(tag=0x1234), "format tag 0x1234"),
        (fmt(bits=40), "PCM bit depth 40"),
        (fmt(tag=3, bits=16), "float bit depth 16"),
        (fmt(bits=16, block_align=3), "block align 3"),
        (fmt(channels=300), "300 channels"),
    ],
)
def test_unsupported_formats(fmt_body: bytes, match: str) -> None:
    # encodings libsndfile decodes (mu-law, ADPCM written by it, ...) are read: tests/audio/test_formats.py
    expect(UnsupportedFormatError, riff(chunk(b"fmt ", fmt_body), chunk(b"data", bytes(600))), match)


def test_malformed_extensible() -> None:
    short = fmt(tag=0xFFFE) + struct.pack("<H", 0)
    expect(NotAWavError, riff(chunk(b"fmt ", short), chunk(b"data", bytes(8))), "need 40")
    alien_guid = fmt(tag=0xFFFE) + struct.pack("<HHI", 22, 16, 4) + bytes(range(16))
    expect(UnsupportedFormatError, riff(chunk(b"fmt ", alien_guid), chunk(b"data", bytes(8))), "subformat")
    tail = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
    adpcm = fmt(tag=0xFFFE) + struct.pack("<HHIH", 22, 16, 4, 2) + tail
    expect(UnsupportedFormatError, riff(chunk(b"fmt ", adpcm), chunk(b"data", bytes(8))), "ADPCM")


def test_missing_and_malformed_chunks() -> None:
    expect(NotAWavError, riff(chunk(b"fmt ", fmt()[:10])), "need at least 16")
    expect(NotAWavError, riff(chunk(b"data", bytes(8))), "no 'fmt ' chunk")
    expect(TruncatedError, riff(chunk(b"fmt ", fmt())), "no 'data' chunk")
    expect(TruncatedError, riff(chunk(b"fmt ", fmt()), chunk(b"LIST", b"abcd")), "no 'data' chunk")
    many = riff(*[chunk(b"JUNK", b"") for _ in range(audio.MAX_CHUNKS + 1)], chunk(b"fmt ", fmt()))
    expect(NotAWavError, many, "more than 1000 chunks")


def test_lying_chunk_sizes() -> None:
    samples = pcm16(tone(dur=0.01))
    expect(
        TruncatedError,
        riff(chunk(b"fmt ", fmt(), size=1000), chunk(b"data", samples)),
        "chunk 'fmt ' at byte 12 declares 1000 bytes",
    )
    lying_list = riff(chunk(b"LIST", b"abcd", size=50_000), chunk(b"fmt ", fmt()), chunk(b"data", samples))
    err = expect(TruncatedError, lying_list, "chunk 'LIST' at byte 12 declares 50000 bytes")
    assert "file holds" in err.reason
    # 'data' before 'fmt ' and past the end: the format is never found
    data_first = riff(chunk(b"data", samples, size=len(samples) + 100), chunk(b"fmt ", fmt()))
    expect(TruncatedError, data_first, f"declares {len(samples) + 100} bytes of audio, file holds {len(samples) + 24}")


def test_huge_declared_data_length_allocates_nothing() -> None:
    data = riff(chunk(b"fmt ", fmt()), chunk(b"data", pcm16(tone(dur=0.01)), size=0xFFFFFFF0))
    reader = CountingReader(data)
    tracemalloc.start()
    try:
        y, _ = audio.load(data, name="x.wav")
        segment = audio.read_segment(reader, 0.0, 1.0, SR, name="x.wav")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000
    assert len(y) == len(segment) == 441 and reader.bytes_read <= audio.HEADER_READ_SIZE + 882
    assert "declares 4,294,967,280 bytes of audio, the file holds 882" in audio.read_info(data).warning


def test_stale_info_for_a_shorter_file_is_a_truncation() -> None:
    data = wav_bytes(tone(dur=0.5))
    info = audio.read_info(data)
    with pytest.raises(TruncatedError, match="file holds"):
        audio.read_frames(data[:5000], 0, info.n_frames, info=info, name="cut.wav")


def test_error_names() -> None:
    with pytest.raises(NotAudioError) as caught:
        audio.read_info(b"nope nope nope")
    assert caught.value.path == "<bytes>" and str(caught.value).startswith("<bytes>: not an audio file")
    with pytest.raises(NotAudioError, match="^<stream>: "):
        audio.read_info(io.BytesIO(b"nope nope nope"))


def test_error_names_the_path(tmp_path) -> None:
    path = tmp_path / "cello.wav"
    path.write_bytes(b"not audio at all")
    with pytest.raises(NotAudioError) as caught:
        audio.read_info(path)
    assert caught.value.path == str(path) and str(caught.value).startswith(f"{path}: not an audio file")
    with open(path, "rb") as fh, pytest.raises(NotAudioError, match=f"^{path}: "):
        audio.read_info(fh)
    with pytest.raises(NotAudioError, match="^Vn-ord-A4: "):
        audio.read_info(path, name="Vn-ord-A4")


def test_errors_survive_pickling() -> None:
    err = pickle.loads(pickle.dumps(TruncatedError("a.wav", "truncated: x")))
    assert isinstance(err, TruncatedError) and err.path == "a.wav" and str(err) == "a.wav: truncated: x"


def test_silence_check() -> None:
    audio.ensure_audible(np.float32([0.0, 0.01]), "a.wav")
    with pytest.raises(SilentAudioError, match="a.wav: silent: .* digital silence"):
        audio.ensure_audible(np.zeros(100, np.float32), "a.wav")
    with pytest.raises(SilentAudioError, match="-100 dBFS"):
        audio.ensure_audible(np.float32([1e-5, -1e-5] * 50), "a.wav")
    with pytest.raises(SilentAudioError, match="digital silence"):  # constant DC is inaudible
        audio.ensure_audible(np.full(100, 0.5, np.float32), "a.wav")
    with pytest.raises(SilentAudioError):
        audio.ensure_audible(np.zeros(0, np.float32), "a.wav")


@settings(
    max_examples=250, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    cut=st.integers(0, 200),
    flips=st.lists(st.tuples(st.integers(0, 79), st.integers(0, 255)), max_size=6),
)
def test_damaged_headers_give_audio_errors_only(cut: int, flips: list[tuple[int, int]]) -> None:
    """Whatever the damage, a WAV either decodes to finite samples in [-1, 1] or raises an AudioError."""
    base = bytearray(riff(chunk(b"LIST", b"xyz"), chunk(b"fmt ", fmt(channels=2)), chunk(b"data", bytes(160))))
    for at, value in flips:
        base[at] = value
    data = bytes(base[: len(base) - cut])
    try:
        out, _ = audio.load(data, name="fuzz.wav")
    except AudioError as err:
        assert str(err).startswith("fuzz.wav: ")
        return
    assert out.dtype == np.float32 and np.isfinite(out).all() and np.abs(out).max(initial=0) <= 1


# --------------------------------------------------------------------------- writing


def test_write_wav_header_is_standard(tmp_path) -> None:
    import wave

    path = tmp_path / "x.wav"
    audio.write_wav(path, tone(dur=0.1), 22050, bits=16)
    with wave.open(str(path)) as w:  # the stdlib agrees with our writer
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()) == (22050, 1, 2, 4410)
    info = audio.read_info(path)
    assert info == WavInfo(22050, 1, 16, "pcm", 4410, 44, 8820, 2)


def test_write_wav_rejects_bad_arguments() -> None:
    y = tone(dur=0.01)
    with pytest.raises(ValueError, match="encoding"):
        wav_bytes(y, encoding="alaw")
    with pytest.raises(ValueError, match="12"):
        wav_bytes(y, bits=12)
    with pytest.raises(ValueError, match="16"):
        wav_bytes(y, bits=16, encoding="float")
    with pytest.raises(ValueError, match="NaN"):
        wav_bytes(np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match="channels"):
        wav_bytes(np.zeros((10, 2)), channels=3)
    with pytest.raises(ValueError, match="1-D or 2-D"):
        wav_bytes(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="sample_rate"):
        wav_bytes(y, 0)


def test_the_silence_peak_is_the_largest_deviation_from_the_mean(monkeypatch) -> None:
    """Computed from the extremes, it is exactly max(|y - mean|), whatever the dtype (NaN stays NaN)."""
    from instropitch.audio import wav

    seen: list[float] = []
    monkeypatch.setattr(wav, "_refuse_below", lambda peak, *args: seen.append(peak))
    rng = np.random.default_rng(11)
    arrays = [
        rng.standard_normal(int(rng.integers(1, 5000))) * 10 ** rng.uniform(-6, 0) + rng.uniform(-1, 1)
        for _ in range(40)
    ]
    arrays = [a.astype(np.float32) for a in arrays] + arrays[:10] + [(a * 3e4).astype(np.int16) for a in arrays[:10]]
    arrays.append(np.float32([0.1, np.nan, -0.2]))
    for y in arrays:
        audio.ensure_audible(y, "a.wav")
        expected = float(np.max(np.abs(y - y.mean())))
        assert seen[-1] == expected or (np.isnan(seen[-1]) and np.isnan(expected)), (y.dtype, len(y))
