"""Formats other than WAV, through libsndfile: the same samples as the WAV (within the codec), the same limits.

The files are written by soundfile itself: FLAC, Ogg Vorbis and Opus, AIFF, CAF, and MP3
when this libsndfile writes it (1.1 or later); and the WAVs our own parser leaves to it:
compressed encodings (mu-law, A-law, ADPCM, GSM 6.10), RF64 and big-endian RIFX.
"""

from __future__ import annotations

import io
import tracemalloc

import numpy as np
import pytest
import soundfile as sf
from support.tones import SR, tone, wav_bytes

from instropitch import audio
from instropitch.audio import features

CONFIG = features.get_preset("default")
NOTE = np.round(tone("Vn", 69, amp=0.5, seed=5) * 32767).astype(np.int16)
"""A 16-bit note, so the lossless formats hold exactly the samples of its WAV."""
WAV = wav_bytes(NOTE / 32768.0)


def encode(samples: np.ndarray, fmt: str, subtype: str, sr: int = SR) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def _writable(fmt: str, subtype: str) -> bool:
    try:
        encode(np.zeros(2048, np.int16), fmt, subtype)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        return False
    return True


LOSSLESS = [("FLAC", "PCM_16"), ("AIFF", "PCM_16"), ("CAF", "PCM_16"), ("AU", "PCM_16")]
LOSSY = [("OGG", "VORBIS"), pytest.param("MP3", "MPEG_LAYER_III", marks=pytest.mark.skipif(
    not _writable("MP3", "MPEG_LAYER_III"), reason="this libsndfile does not write MP3 (needs 1.1 or later)"
))]  # fmt: skip


@pytest.mark.parametrize(("fmt", "subtype"), LOSSLESS)
def test_lossless_formats_decode_to_the_samples_of_the_wav(fmt, subtype):
    data = encode(NOTE, fmt, subtype)
    info = audio.read_info(data, name=f"note.{fmt.lower()}")
    assert (info.file_format, info.sample_rate, info.n_frames, info.warning) == (fmt, SR, len(NOTE), None)
    np.testing.assert_array_equal(audio.load(data)[0], audio.load(WAV)[0])
    got, want = features.compute_features(data, CONFIG), features.compute_features(WAV, CONFIG)
    np.testing.assert_array_equal(got.pitch, want.pitch)
    np.testing.assert_array_equal(got.instrument, want.instrument)


@pytest.mark.parametrize(("fmt", "subtype"), LOSSY)
def test_lossy_formats_decode_to_the_samples_within_the_codec(fmt, subtype):
    data = encode(NOTE, fmt, subtype)
    info = audio.read_info(data)
    assert (info.file_format, info.sample_rate, info.n_frames) == (fmt, SR, len(NOTE))
    y, ref = audio.load(data)[0], audio.load(WAV)[0]
    assert np.linalg.norm(y - ref) / np.linalg.norm(ref) < 0.1  # aligned: a shift of one sample is far worse
    got, want = features.compute_features(data, CONFIG), features.compute_features(WAV, CONFIG)
    assert np.corrcoef(got.pitch.ravel(), want.pitch.ravel())[0, 1] > 0.9
    assert got.pitch.mean(axis=0).argmax() == want.pitch.mean(axis=0).argmax()  # the same loudest semitone band


def test_ogg_opus_at_48k():
    data = encode(audio.resample(NOTE / 32768.0, SR, 48000), "OGG", "OPUS", 48000)
    info = audio.read_info(data)
    assert (info.file_format, info.sample_rate) == ("OGG", 48000)
    got, want = features.compute_features(data, CONFIG), features.compute_features(WAV, CONFIG)
    assert got.pitch.mean(axis=0).argmax() == want.pitch.mean(axis=0).argmax()


def test_channels_are_mixed_down_as_in_a_wav():
    stereo = np.stack([NOTE, NOTE // 2], axis=1)
    np.testing.assert_allclose(
        audio.load(encode(stereo, "FLAC", "PCM_16"))[0], audio.load(wav_bytes(stereo / 32768.0))[0], atol=1e-7
    )


def test_every_source_kind_and_the_name_in_errors(tmp_path):
    data = encode(NOTE, "FLAC", "PCM_16")
    path = tmp_path / "note.flac"
    path.write_bytes(data)
    ref = audio.load(WAV)[0]
    for source in (data, str(path), path, io.BytesIO(data)):
        np.testing.assert_array_equal(audio.load(source)[0], ref)
    with open(path, "rb") as fh:
        np.testing.assert_array_equal(audio.load(fh)[0], ref)
    # one opening decodes once and serves every later read from the decoded copy
    with audio.open_source(path) as src:
        info = audio.read_info(src)
        segment = audio.read_segment(src, 0.5, 0.25, SR, info=info)
        assert src.decoded_from == "FLAC"
    np.testing.assert_array_equal(segment, ref[SR // 2 : SR // 2 + SR // 4])
    # an `info` from another opening still reads the right samples
    np.testing.assert_array_equal(audio.read_frames(data, 100, 50, info=info), ref[100:150])
    cut = tmp_path / "cut.flac"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(audio.TruncatedError, match=r"^.*cut\.flac: cannot decode the FLAC \(PCM_16\) audio"):
        audio.read_info(cut)


def test_the_same_limits_as_a_wav():
    # too long: refused while decoding, a block past the limit, without decoding the rest
    long_flac = encode(np.zeros(8000 * 700, np.int16), "FLAC", "PCM_16", 8000)
    assert len(long_flac) < 200_000  # 700 s of silence: a small file of a long duration
    tracemalloc.start()
    try:
        with pytest.raises(audio.TooLongError, match=r"too long: more than 30 s of FLAC \(PCM_16\) audio"):
            audio.read_info(long_flac, max_duration=30.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # 30 s of float32 is 1 MB, the whole 700 s would be 22 MB: the rest was never decoded
    assert peak < 3_000_000, peak
    with pytest.raises(audio.TooLongError):
        audio.read_info(long_flac)  # the default limit, 600 s
    assert audio.read_info(long_flac, max_duration=None).duration == 700.0  # lifted: up to MAX_DECODED_SECONDS
    # sample rates out of bounds
    with pytest.raises(audio.UnsupportedFormatError, match="sample rate 500 Hz is outside"):
        audio.read_info(encode(NOTE[:2000], "AIFF", "PCM_16", 500))
    # NaN or inf samples
    bad = (NOTE / 32768.0).astype(np.float32)
    bad[1000:2000] = np.nan
    with pytest.raises(audio.InvalidSamplesError, match="NaN or infinite"):
        audio.ensure_file_audible(encode(bad, "CAF", "FLOAT"))
    # silence
    quiet = encode(np.zeros(SR * 2, np.int16), "FLAC", "PCM_16")
    with pytest.raises(audio.SilentAudioError):
        audio.ensure_file_audible(quiet)
    with pytest.raises(audio.SilentAudioError):
        features.compute_features(quiet, CONFIG)
    # no frame at all
    with pytest.raises(audio.EmptyAudioError, match="no frame"):
        audio.read_info(encode(np.zeros(0, np.int16), "AIFF", "PCM_16"))


def test_file_extensions_follow_what_libsndfile_reads():
    extensions = audio.file_extensions()
    assert {".wav", ".flac", ".ogg", ".aiff", ".aif"} <= extensions
    assert (".mp3" in extensions) == ("MP3" in sf.available_formats())
    assert all(e == e.lower() and e.startswith(".") for e in extensions)
    assert ".raw" not in extensions  # headerless: nothing to sniff
    assert (".rf64" in extensions) == ("RF64" in sf.available_formats())


@pytest.mark.parametrize(("fmt", "endian"), [("RF64", "FILE"), ("WAV", "BIG")])
def test_rf64_and_big_endian_wavs_hold_the_samples_of_the_wav(fmt, endian):
    buf = io.BytesIO()
    sf.write(buf, NOTE, SR, format=fmt, subtype="PCM_16", endian=endian)
    data = buf.getvalue()
    assert data[:4] == (b"RF64" if fmt == "RF64" else b"RIFX")
    info = audio.read_info(data)
    assert (info.file_format, info.n_frames) == (f"{fmt} (PCM_16)", len(NOTE))
    np.testing.assert_array_equal(audio.load(data)[0], audio.load(WAV)[0])


COMPRESSED_WAV = [("ULAW", SR, 0.02), ("ALAW", SR, 0.02), ("IMA_ADPCM", SR, 0.05), ("MS_ADPCM", SR, 0.1),
                  ("GSM610", 8000, 0.2)]  # fmt: skip
"""WAV encodings our parser leaves to libsndfile, the rate they are written at, and their error (relative RMS,
measured 0.013 / 0.012 / 0.038 / 0.078 / 0.126; one sample off gives 0.3-0.7, so the decode is aligned)."""


@pytest.mark.parametrize(("subtype", "rate", "error"), COMPRESSED_WAV)
def test_compressed_wav_encodings_decode_within_the_codec(subtype, rate, error):
    note = NOTE if rate == SR else np.round(audio.resample(NOTE / 32768.0, SR, rate) * 32767).astype(np.int16)
    data, ref = encode(note, "WAV", subtype, rate), audio.load(wav_bytes(note / 32768.0, sr=rate))[0]
    info = audio.read_info(data, name="phone.wav")
    assert (info.file_format, info.sample_rate, info.encoding) == (f"WAV ({subtype})", rate, "float")
    assert abs(info.n_frames - len(note)) < 2048  # ADPCM and GSM fill their last block
    y = audio.load(data)[0][: len(ref)]
    assert np.linalg.norm(y - ref[: len(y)]) / np.linalg.norm(ref) < error
    # an `info` from one opening reads the same samples through another (decoded again there)
    np.testing.assert_array_equal(audio.read_frames(data, 100, 50, info=info), audio.load(data)[0][100:150])
    assert features.compute_features(data, CONFIG).pitch.shape == CONFIG.pitch.shape


def test_ensure_file_audible_answers_like_the_features():
    assert audio.ensure_file_audible(WAV).n_frames == len(NOTE)
    dc = wav_bytes(np.full(SR, 0.25))
    with pytest.raises(audio.SilentAudioError, match="silent: the audio peaks at digital silence"):
        audio.ensure_file_audible(dc, name="dc.wav")
    whisper = wav_bytes(np.sin(np.arange(SR) / 5) * 0.5 * audio.SILENCE_THRESHOLD, bits=32, encoding="float")
    with pytest.raises(audio.SilentAudioError, match="-86 dBFS"):
        audio.ensure_file_audible(whisper)
    audible = wav_bytes(np.sin(np.arange(SR) / 5) * 2 * audio.SILENCE_THRESHOLD, bits=32, encoding="float")
    assert audio.ensure_file_audible(audible).n_frames == SR
