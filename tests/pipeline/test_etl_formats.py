"""The ETL steps on a source of mixed formats: FLAC, Ogg, MP3, AIFF and WAVs written to a pipe load like WAVs.

Objects are picked by the extensions libsndfile reads; WAVs keep their ranged reads, other
formats are fetched whole (one GET) since they decode from the start.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io

import numpy as np
import soundfile as sf
from sqlalchemy import text
from support.hostile_wavs import ffmpeg_pipe_wav
from support.tones import SR, tone, wav_bytes

from instropitch import audio, tinysol
from instropitch.audio import features
from instropitch.data import objectstore, warehouse
from instropitch.pipeline import etl

CONFIG = dataclasses.replace(features.get_preset("default"), locate_note=False)  # windows only: WAVs read by ranges
PREFIX = "Mixed/"


def encode(samples: np.ndarray, fmt: str, subtype: str) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, SR, format=fmt, subtype=subtype)
    return buf.getvalue()


def test_a_source_of_mixed_formats_loads(s3, engine, bucket, tmp_path, monkeypatch):
    vn = tinysol.INSTRUMENT_BY_ABBR["Vn"]
    notes = {k: np.round(tone("Vn", 60 + k, seconds=5.0, amp=0.5, seed=k) * 32767).astype(np.int16) for k in range(6)}
    files = {
        ".wav": wav_bytes(notes[0] / 32768.0),
        ".flac": encode(notes[1], "FLAC", "PCM_16"),
        ".ogg": encode(notes[2], "OGG", "VORBIS"),
        ".aiff": encode(notes[3], "AIFF", "PCM_16"),
        ".WAV": ffmpeg_pipe_wav(notes[4].astype("<i2").tobytes()),  # ffmpeg writing to a pipe
    }
    if ".mp3" in audio.file_extensions():
        with contextlib.suppress(sf.LibsndfileError, RuntimeError, TypeError, ValueError):  # reads MP3, cannot write
            files[".mp3"] = encode(notes[5], "MP3", "MPEG_LAYER_III")
    rows = {}
    folder = tmp_path / "dataset"
    for k, (ext, data) in enumerate(files.items()):
        row = tinysol.make_row(vn, 60 + k, "mf", k % 5)
        row = dataclasses.replace(row, path=row.path.removesuffix(".wav") + ext)
        rows[ext] = row
        (folder / row.path).parent.mkdir(parents=True, exist_ok=True)
        (folder / row.path).write_bytes(data)
    (folder / vn.directory / "README.txt").write_text("not audio, not listed")
    tinysol.write_metadata(list(rows.values()), folder / tinysol.METADATA_FILENAME)
    assert objectstore.upload_folder(s3, bucket, PREFIX, folder) == len(rows) + 1  # the README stays home

    readers: list[objectstore.RangedObjectReader] = []

    class Recording(objectstore.RangedObjectReader):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            readers.append(self)

    monkeypatch.setattr(objectstore, "RangedObjectReader", Recording)
    monkeypatch.setattr(etl, "WHOLE_OBJECT_MAX", 1000)  # every WAV takes the ranged path

    summary = etl.extract_metadata(s3, engine, bucket, PREFIX, run_id="formats")
    assert (summary.csv_rows, summary.bad_rows) == (len(rows), 0)
    plan = etl.plan(s3, engine, bucket, PREFIX, CONFIG.digest(), run_id="formats")
    assert (plan.to_transform, plan.orphan_objects, plan.missing_objects) == (len(rows), 0, 0)
    (shard,) = plan.shards
    result = etl.transform_shard(s3, engine, bucket, shard, CONFIG, "formats", workers=2)
    assert (result.loaded, result.rejected) == (len(rows), 0), result.rejects

    with engine.connect() as conn:
        stored = {
            path: warehouse.decode_spectrogram(blob, shape)
            for path, blob, shape in conn.execute(text("SELECT path, spectrogram, shape FROM notes_spectrogram"))
        }
    assert set(stored) == {row.path for row in rows.values()}
    # the lossless ones and the piped WAV hold exactly the spectrograms of their WAV
    for ext, k in ((".flac", 1), (".aiff", 3), (".WAV", 4)):
        want = features.compute_features(wav_bytes(notes[k] / 32768.0), CONFIG).pitch
        np.testing.assert_array_equal(stored[rows[ext].path], want)
    # WAVs read by ranges, the others in one GET of the whole object
    by_key = {r.key: r for r in readers}
    for ext, row in rows.items():
        reader = by_key[PREFIX + row.path]
        if ext.lower() == ".wav":
            assert reader.requests >= 2 and reader.bytes_fetched < reader.size, ext
        else:
            assert (reader.requests, reader.bytes_fetched) == (1, reader.size), ext
