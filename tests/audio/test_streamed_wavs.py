"""WAVs written to a pipe (ffmpeg, sox) or cut short: read up to the end of the file, with a warning.

The byte-exact equivalents of tests/support/hostile_wavs.py run everywhere; when ffmpeg or
sox is installed, the real tools write to a pipe too, and their headers must equal ours.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import shutil
import subprocess

import numpy as np
import pytest
from support.hostile_wavs import (
    HONEST,
    SR,
    STREAMED,
    STREAMED_SAMPLES,
    CountingReader,
    chunk,
    ffmpeg_pipe_wav,
    fmt_body,
    riff,
    sox_pipe_wav,
)

from instropitch import audio
from instropitch.audio import features

CONFIG = features.get_preset("default")
FRAMES = len(STREAMED_SAMPLES) // 2


@pytest.mark.parametrize("name", list(STREAMED))
def test_streamed_wavs_decode_like_the_honest_file_with_a_warning(name, caplog):
    data = STREAMED[name]
    with caplog.at_level(logging.WARNING, logger="instropitch.audio"):
        info = audio.read_info(data, name=f"uploads/{name}.wav")
    honest = audio.read_info(HONEST)
    assert (info.n_frames, info.data_size, info.sample_rate) == (FRAMES, 2 * FRAMES, SR)
    assert info.data_offset + info.data_size <= len(data)
    assert (honest.n_frames, honest.data_size) == (FRAMES, 2 * FRAMES)
    assert info.warning is not None and honest.warning is None
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, f"uploads/{name}.wav: {info.warning}")
    ]
    np.testing.assert_array_equal(audio.load(data)[0], audio.load(HONEST)[0])
    got, want = features.compute_features(data, CONFIG), features.compute_features(HONEST, CONFIG)
    np.testing.assert_array_equal(got.pitch, want.pitch)
    np.testing.assert_array_equal(got.instrument, want.instrument)


def test_the_warning_says_what_the_header_declared_and_what_was_read():
    read = f"read the {FRAMES:,} whole frames up to the end of the file (a WAV written to a pipe, or a cut one)"
    held = f"{2 * FRAMES:,}"
    assert audio.read_info(STREAMED["ffmpeg_pipe"]).warning == (
        f"the header declares 0xFFFFFFFF bytes of audio, the file holds {held}: {read}"
    )
    assert audio.read_info(STREAMED["sox_pipe"]).warning == (
        f"the header declares 2,147,479,552 bytes of audio, the file holds {held}: {read}"
    )
    assert audio.read_info(STREAMED["never_patched"]).warning == (
        f"the header declares 0 bytes of audio, the file holds {held}: {read}"
    )
    assert audio.read_info(STREAMED["cut_mid_frame"]).warning == (
        f"the header declares 0xFFFFFFFF bytes of audio, the file holds {2 * FRAMES + 1:,}: {read}"
    )


@pytest.mark.parametrize("riff_size", [0, 34, 0x7FFFF024, 0xFFFFFFFF])
def test_the_riff_size_is_never_read(riff_size):
    data = HONEST[:4] + riff_size.to_bytes(4, "little") + HONEST[8:]
    assert audio.read_info(data) == audio.read_info(HONEST)


def test_what_is_really_broken_stays_refused():
    samples = STREAMED_SAMPLES[:2000]
    fmt16 = chunk(b"fmt ", fmt_body())
    streaming_data = b"data" + (0xFFFFFFFF).to_bytes(4, "little")
    # an empty 'data' chunk followed by another chunk: really empty, not a streaming size
    with pytest.raises(audio.EmptyAudioError, match="'data' chunk is empty"):
        audio.read_info(riff(fmt16, chunk(b"data", b""), chunk(b"LIST", b"INFOabcd")))
    with pytest.raises(audio.EmptyAudioError, match="'data' chunk is empty"):
        audio.read_info(riff(fmt16, chunk(b"data", b"")))
    # 'data' before 'fmt ': the format cannot be found behind audio of unknown length
    with pytest.raises(audio.TruncatedError, match="declares 4294967295 bytes of audio"):
        audio.read_info(riff(streaming_data + samples, fmt16))
    with pytest.raises(audio.NotAWavError, match="no 'fmt ' chunk"):
        audio.read_info(riff(chunk(b"data", samples)))
    # less than one frame after the header
    stereo24 = chunk(b"fmt ", fmt_body(channels=2, bits=24))
    with pytest.raises(audio.EmptyAudioError, match="declares 0xFFFFFFFF bytes of audio, the file holds 5, less than"):
        audio.read_info(riff(stereo24, streaming_data + bytes(5)))
    # the file ends inside the headers
    for cut in (20, 40, 74):  # in 'fmt ', in 'LIST', in the 'data' chunk header
        with pytest.raises(audio.TruncatedError):
            audio.read_info(STREAMED["ffmpeg_pipe"][:cut])


def test_a_long_streamed_wav_is_still_read_by_ranges():
    """Thirty seconds behind a 0xFFFFFFFF header: the features read their two windows, not the file."""
    long_samples = np.tile(np.frombuffer(STREAMED_SAMPLES, "<i2"), 20).tobytes()
    reader = CountingReader(ffmpeg_pipe_wav(long_samples))
    whole_file = dataclasses.replace(CONFIG, locate_note=False)  # locating the note reads every sample
    feats = features.compute_features(reader, whole_file, name="long.wav")
    assert feats.duration == pytest.approx(30.0)
    assert reader.read_bytes < len(long_samples) / 5


# ----------------------------------------------------------------------- the real tools


def _run(cmd: list[str], stdin: bytes | None = None) -> bytes:
    """What the tool writes to a pipe (stdout is one here: it cannot seek back)."""
    done = subprocess.run(cmd, input=stdin, capture_output=True, check=True, timeout=60)
    return done.stdout


def _ffmpeg_sine() -> bytes:
    return _run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-f", "lavfi"]
        + ["-i", f"sine=frequency=440:duration=1.5:sample_rate={SR}", "-f", "wav", "pipe:1"]
    )


def _check_real(data: bytes, expected_header: bytes) -> None:
    assert data[: len(expected_header)] == expected_header
    info = audio.read_info(data, name="real.wav")
    assert info.n_frames == round(1.5 * SR) and info.data_offset == len(expected_header) and info.warning
    pcm = np.frombuffer(data[len(expected_header) :], "<i2").astype(np.float32) / 32768
    np.testing.assert_array_equal(audio.load(data)[0], pcm)
    feats = features.compute_features(data, CONFIG, name="real.wav")
    assert np.isfinite(feats.pitch).all()


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_real_ffmpeg_writing_to_a_pipe():
    data = _ffmpeg_sine()
    encoder = re.search(rb"Lavf[0-9.]+", data[:200])
    assert encoder is not None, data[:100]
    _check_real(data, ffmpeg_pipe_wav(b"", encoder=encoder.group()))


@pytest.mark.skipif(shutil.which("sox") is None, reason="sox is not installed")
def test_real_sox_writing_to_a_pipe():
    data = _run(
        ["sox", "-q", "-n", "-r", str(SR), "-c", "1", "-b", "16", "-t", "wav", "-", "synth", "1.5", "sine", "440"]
    )
    _check_real(data, sox_pipe_wav(b""))


@pytest.mark.skipif(shutil.which("sox") is None or shutil.which("ffmpeg") is None, reason="needs ffmpeg and sox")
def test_real_sox_reencoding_ffmpeg_pipe():
    data = _run(["sox", "-q", "-t", "wav", "-", "-t", "wav", "-"], stdin=_ffmpeg_sine())
    _check_real(data, sox_pipe_wav(b"", data_size=0xFFFFFFFE))
