"""Hostile WAVs (tests/support/hostile_wavs.py) through every door: decoder, Predictor, HTTP API, ETL.

Each must be refused with a typed, named reason: an `AudioError` from the decoder (without a
large allocation, and without hanging), an error `Prediction`, a 4xx JSON answer
(never a 500), an `etl_rejects` row while the good files of the same shard load. Then
hypothesis feeds the decoder random bytes, valid headers with random bodies, and mutated
valid files: an `AudioError` or a clean decode, never another exception.

The files of `KNOWN_BUGS` are accepted by the library today: their tests are
`xfail(strict=True)`, so fixing the library turns them into failures to remove the mark.
The `STREAMED` files (sizes a writer left unpatched) are the other way round: they load,
next to the hostile ones (their own tests: test_streamed_wavs.py).
"""

from __future__ import annotations

import struct
import time
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from support.hostile_wavs import (
    HONEST,
    HOSTILE,
    KNOWN_BUGS,
    STREAMED,
    CountingReader,
    chunk,
    fmt_body,
    good_wav,
    note,
    riff,
    wav,
)

from instropitch import audio, tinysol
from instropitch.audio import features
from instropitch.data import objectstore, warehouse
from instropitch.pipeline import etl

CONFIG = features.get_preset("default")
PREFIX = "TinySOL/"
HANG_SECONDS = 30.0
"""A refusal takes milliseconds; this only catches a decoder that loops on a lying header (how fast
it refuses is not a goal here: tests run beside other work on 2 cores)."""
MAX_PEAK_BYTES = 50 * 1024 * 1024


def _param(name: str):
    if name in KNOWN_BUGS:
        return pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[name]))
    return name


ALL = [_param(name) for name in HOSTILE]
"""Every hostile name as a pytest param; the known bugs are strict xfails."""


def test_the_generator_covers_the_issue_list():
    wanted = {
        "wrong_magic",
        "truncated_header",
        "fmt_size_beyond_file",
        "data_size_huge",
        "channels_0",
        "rate_0",
        "rate_1",
        "rate_4e9",
        "block_align_0",
        "bits_0",
        "bits_7",
        "bits_64_pcm",
        "float32_nan",
        "float64_inf",
        "long_silence_declared",
        "long_silence_real",
        "one_sample",
        "riff_4gb_bomb",
        "empty",
        "riff_only",
        "chunk_loop",
        "odd_chunk_no_pad",
    }
    assert wanted <= set(HOSTILE)
    assert set(KNOWN_BUGS) <= set(HOSTILE) and not set(STREAMED) & set(HOSTILE)
    assert {"ffmpeg_pipe", "sox_pipe", "never_patched", "data_size_beyond_file"} <= set(STREAMED)
    assert HOSTILE["data_size_huge"][40:44] == struct.pack("<I", 0xFFFFFFF0)
    assert struct.unpack_from("<I", HOSTILE["riff_4gb_bomb"], 4)[0] == 2**32 - 1 and len(HOSTILE["riff_4gb_bomb"]) < 200
    assert HOSTILE["riff_only"] == b"RIFF" and HOSTILE["empty"] == b""
    assert HOSTILE["chunk_loop"].count(b"JUNK") > 1000
    assert 300_000 < len(HOSTILE["long_silence_real"]) < 1_000_000
    # the good file they are made from really is good
    assert features.compute_features(good_wav(), CONFIG, name="good.wav").pitch.shape == CONFIG.pitch.shape


# ---------------------------------------------------------------------- decoder


@pytest.fixture(scope="module")
def warm_features():
    """Build the filterbanks and import scipy once, so the timing below is the file's own."""
    features.compute_features(good_wav(), CONFIG, name="warm-up.wav")


@pytest.mark.parametrize("name", ALL)
def test_decoder_refuses_with_a_named_audio_error_small_and_without_hanging(name, warm_features):
    data, label = HOSTILE[name], f"uploads/{name}.wav"
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(audio.AudioError) as caught:
            info = audio.read_info(data, name=label)
            features.compute_features(data, CONFIG, name=label, info=info)
        seconds = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    err = caught.value
    assert type(err) is not audio.AudioError, "a subclass tells what is wrong"
    assert err.path == label and str(err) == f"{label}: {err.reason}" and err.reason
    assert seconds < HANG_SECONDS, f"{name}: {seconds:.2f} s"
    assert peak < MAX_PEAK_BYTES, f"{name}: peak {peak / 1e6:.1f} MB"


@pytest.mark.parametrize("name", ["data_size_huge", "riff_4gb_bomb", "long_silence_declared", "fmt_size_huge"])
def test_lying_sizes_read_a_few_bytes_only(name):
    """The ranged path the ETL uses: a header that claims gigabytes costs one small read.

    (A 'data' size past the end is read up to the end of the file: here that is a click, or
    less than one frame.)
    """

    src = CountingReader(HOSTILE[name])
    with pytest.raises((audio.TruncatedError, audio.TooShortError, audio.EmptyAudioError)):
        features.compute_features(src, CONFIG, name=name)
    assert src.read_bytes <= audio.HEADER_READ_SIZE


# ---------------------------------------------------------------------- predictor


@pytest.mark.parametrize("name", ALL)
def test_predict_file_returns_an_error_result_naming_the_file(name, predictor, tmp_path):
    path = tmp_path / f"{name}.wav"
    path.write_bytes(HOSTILE[name])
    for source, label, expected in ((str(path), None, str(path)), (HOSTILE[name], f"{name}.wav", f"{name}.wav")):
        result = predictor.predict_file(source, label)
        assert not result.ok, f"{name}: predicted {result.instrument} {result.pitch}"
        assert result.file == expected and result.error and result.error_type
        assert result.to_dict() == {"file": expected, "error": result.error}
        assert result.instrument is None and result.pitch is None


def test_predict_many_keeps_good_files_among_hostile_ones(predictor):
    batch = [("good-a.wav", wav(note(1.5, freq=440.0) * 0.8))]
    batch += [(f"{name}.wav", data) for name, data in HOSTILE.items() if name not in KNOWN_BUGS]
    batch += [("good-b.wav", wav(note(1.5, freq=261.63) * 0.8))]
    results = predictor.predict_many(batch, batch_size=7)
    assert [r.file for r in results] == [n for n, _ in batch]
    assert results[0].ok and results[-1].ok
    assert not any(r.ok for r in results[1:-1])


# ---------------------------------------------------------------------------- API


@pytest.fixture(scope="module")
def client(predictor):
    from fastapi.testclient import TestClient

    from instropitch.serving.app import create_app

    with TestClient(create_app(lambda: predictor), raise_server_exceptions=False) as c:
        yield c


@pytest.mark.parametrize("name", ALL)
def test_api_answers_4xx_json_with_a_reason(name, client):
    file = f"{name}.wav"
    form = client.post("/predict", files={"file": (file, HOSTILE[name], "audio/wav")})
    raw = client.post("/predict", content=HOSTILE[name], headers={"content-type": "audio/wav"}, params={"name": file})
    for response in (form, raw):
        assert 400 <= response.status_code < 500, (response.status_code, response.text)
        assert response.headers["content-type"].startswith("application/json")
        body = response.json()
        assert set(body) == {"error", "file"} and body["file"] == file
        assert isinstance(body["error"], str) and len(body["error"]) > 5
    assert form.json() == raw.json() and form.status_code == raw.status_code
    assert client.get("/health").json()["status"] == "ok"


# ---------------------------------------------------------------------------- ETL


def _rows_for(names: list[str]) -> dict[str, tinysol.MetadataRow]:
    """A valid, distinct TinySOL metadata row (violin, altK) per name."""
    vn = tinysol.INSTRUMENT_BY_ABBR["Vn"]
    return {name: tinysol.make_row(vn, 55 + k % 40, "mf", k % 5, instance_id=1 + k) for k, name in enumerate(names)}


def _run_etl(s3, engine, bucket: str, files: dict[str, bytes], rows: dict[str, tinysol.MetadataRow], tmp_path):
    folder = tmp_path / "dataset"
    for name, row in rows.items():
        (folder / row.path).parent.mkdir(parents=True, exist_ok=True)
        (folder / row.path).write_bytes(files[name])
    tinysol.write_metadata(list(rows.values()), folder / tinysol.METADATA_FILENAME)
    assert objectstore.upload_folder(s3, bucket, PREFIX, folder) == len(rows) + 1
    summary = etl.extract_metadata(s3, engine, bucket, PREFIX, run_id="hostile")
    assert (summary.csv_rows, summary.bad_rows) == (len(rows), 0)
    plan = etl.plan(s3, engine, bucket, PREFIX, CONFIG.digest(), shard_size=8, run_id="hostile")
    assert plan.to_transform == len(rows) and plan.orphan_objects == plan.missing_objects == 0
    results = [etl.transform_shard(s3, engine, bucket, shard, CONFIG, "hostile", workers=2) for shard in plan.shards]
    with engine.connect() as conn:
        rejects = dict(
            conn.execute(
                text("SELECT path, reason FROM etl_rejects WHERE stage = :s"), {"s": etl.STAGE_TRANSFORM}
            ).all()
        )
        loaded = set(conn.execute(text("SELECT path FROM notes_spectrogram")).scalars())
        loaded_inst = set(conn.execute(text("SELECT path FROM instruments_spectrogram")).scalars())
    assert loaded == loaded_inst
    return results, rejects, loaded


def test_etl_rejects_every_hostile_file_and_loads_the_good_ones(s3, engine, bucket, tmp_path):
    hostile = [n for n in HOSTILE if n not in KNOWN_BUGS]
    good = {"good-a": good_wav(freq=440.0), "good-b": good_wav(freq=293.66), **STREAMED}
    files = {**{n: HOSTILE[n] for n in hostile}, **good}
    rows = _rows_for(list(files))
    results, rejects, loaded = _run_etl(s3, engine, bucket, files, rows, tmp_path)

    assert sum(r.loaded for r in results) == len(good) and sum(r.rejected for r in results) == len(hostile)
    assert loaded == {rows[n].path for n in good}
    assert set(rejects) == {rows[n].path for n in hostile}
    for name in hostile:
        path = rows[name].path
        assert path in rejects[path], (name, rejects[path])
        assert rejects[path].startswith(f"{path}: "), rejects[path]
    # the same reason the decoder gives for the bytes
    for name in hostile:
        try:
            info = audio.read_info(HOSTILE[name], name=rows[name].path)
            features.compute_features(HOSTILE[name], CONFIG, name=rows[name].path, info=info)
        except audio.AudioError as exc:
            assert rejects[rows[name].path] == str(exc)
    # the streamed ones hold the spectrograms of the honest file
    honest = features.compute_features(HONEST, CONFIG)
    with engine.connect() as conn:
        blob, shape = conn.execute(
            text("SELECT spectrogram, shape FROM notes_spectrogram WHERE path = :p"), {"p": rows["ffmpeg_pipe"].path}
        ).one()
    np.testing.assert_array_equal(warehouse.decode_spectrogram(blob, shape), honest.pitch)
    # and the combined table builds from what loaded, the hostile ones left out
    assert etl.build_combined(engine, CONFIG.digest())["rows"] == len(good)
    assert warehouse.table_counts(engine)["instruments_notes_spectrogram"] == len(good)


# ---------------------------------------------------------------------- hypothesis


def _decode(data: bytes) -> None:
    """The decoder as the ETL and the API run it: an AudioError, or finite spectrograms of the right shape."""
    try:
        info = audio.read_info(data, name="fuzz.wav")
        feats = features.compute_features(data, CONFIG, name="fuzz.wav", info=info)
    except audio.AudioError as err:
        assert err.path == "fuzz.wav" and str(err).startswith("fuzz.wav: ") and err.reason
        return
    assert feats.pitch.shape == CONFIG.pitch.shape and feats.instrument.shape == CONFIG.instrument.shape
    assert np.isfinite(feats.pitch).all() and np.isfinite(feats.instrument).all()
    assert feats.sample_rate == info.sample_rate and feats.duration == info.duration


FUZZ = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

FORMATS = [(1, 8), (1, 16), (1, 24), (1, 32), (3, 32), (3, 64), (1, 0), (1, 7), (1, 64), (3, 16), (2, 4), (0xFFFE, 16)]


@FUZZ
@given(data=st.binary(max_size=2048) | st.binary(max_size=64).map(lambda b: b"RIFF" + b[:4] + b"WAVE" + b[4:]))
def test_fuzz_random_bytes(data):
    _decode(data)


@FUZZ
@given(
    fmt_=st.sampled_from(FORMATS),
    channels=st.sampled_from([0, 1, 2, 3, 6, 255, 256, 257, 65535]),
    rate=st.sampled_from([0, 1, 999, 1000, 8000, 22050, 44100, 768_000, 768_001, 2**32 - 1]),
    align_delta=st.sampled_from([0, 0, 0, -1, 1]),
    declared=st.none() | st.integers(0, 2**32 - 1),
    extra_chunks=st.lists(
        st.tuples(st.sampled_from([b"LIST", b"JUNK", b"fact", b"fmt ", b"data"]), st.binary(max_size=9))
    ),
    body=st.binary(min_size=0, max_size=6000),
)
def test_fuzz_valid_header_then_random_bytes(fmt_, channels, rate, align_delta, declared, extra_chunks, body):
    tag, bits = fmt_
    align = max(0, channels * ((bits + 7) // 8) + align_delta)
    head = fmt_body(tag=tag, channels=channels, rate=rate, bits=bits, block_align=align)
    if tag == 0xFFFE:
        head += struct.pack("<HHIH", 22, bits, 4, 1) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
    chunks = [chunk(cid, b) for cid, b in extra_chunks]
    data = riff(
        *chunks, chunk(b"fmt ", head), b"data" + struct.pack("<I", len(body) if declared is None else declared) + body
    )
    _decode(data)


SMALL = wav(note(0.6, sr=8000) * 0.5, 8000)
SMALL_FLOAT_STEREO = wav(
    np.stack([note(0.4, sr=11025), note(0.4, sr=11025) * 0.5], axis=1) * 0.7, 11025, bits=32, encoding="float"
)

mutation = st.one_of(
    st.tuples(st.just("set"), st.integers(0, 80), st.integers(0, 255)),  # the header, mostly
    st.tuples(st.just("set"), st.integers(0, 20_000), st.integers(0, 255)),
    st.tuples(st.just("u32"), st.sampled_from([4, 16, 20, 22, 24, 28, 32, 34, 40]), st.integers(0, 2**32 - 1)),
    st.tuples(st.just("cut"), st.integers(0, 20_000), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 80), st.integers(0, 255)),
    st.tuples(st.just("delete"), st.integers(0, 80), st.integers(1, 16)),
)


@FUZZ
@given(base=st.sampled_from([SMALL, SMALL_FLOAT_STEREO]), ops=st.lists(mutation, min_size=1, max_size=6))
def test_fuzz_mutations_of_a_valid_small_wav(base, ops):
    data = bytearray(base)
    for op, at, value in ops:
        if op == "set" and at < len(data):
            data[at] = value
        elif op == "u32" and at + 4 <= len(data):
            data[at : at + 4] = struct.pack("<I", value)
        elif op == "cut":
            del data[at:]
        elif op == "insert":
            data[at:at] = bytes([value])
        elif op == "delete":
            del data[at : at + value]
    _decode(bytes(data))


def test_fuzz_bases_decode():
    for base in (SMALL, SMALL_FLOAT_STEREO):
        assert features.compute_features(base, CONFIG, name="base.wav").pitch.shape == CONFIG.pitch.shape
