"""The `instropitch_etl` DAG end to end: real Airflow (`airflow dags test`), real PostgreSQL, S3 over HTTP."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from sqlalchemy import text

from instropitch import audio, tinysol
from instropitch.audio import features
from instropitch.data import objectstore, warehouse
from instropitch.devstack import local_airflow
from instropitch.pipeline import etl

pytestmark = pytest.mark.e2e

PREFIX = "TinySOL/"


TABLES = (
    "tinysol_metadata",
    "notes_spectrogram",
    "instruments_spectrogram",
    "instruments_notes_spectrogram",
    "etl_rejects",
)


def run_etl(env: dict[str, str], bucket: str, **conf) -> local_airflow.DagTestResult:
    result = local_airflow.dags_test(
        "instropitch_etl", env, {"bucket": bucket, "sources": [PREFIX], "shard_size": 8, **conf}
    )
    assert result.ok, result.tail(60)
    return result


def table_checksums(engine, source: str | None = None) -> dict[str, str]:
    """md5 of every table's rows (of one source, or all), in key order."""
    where = "" if source is None else " WHERE source = :source"
    queries = {
        table: f"SELECT md5(string_agg(t::text, ',' ORDER BY source, path)) FROM {table} t{where}"
        for table in TABLES
        if table != "etl_rejects"
    }
    queries["etl_rejects"] = (
        "SELECT md5(string_agg(source || path || stage || reason, ',' ORDER BY source, path, stage)) FROM etl_rejects"
        + where
    )
    with engine.connect() as conn:
        return {name: conn.execute(text(q), {"source": source}).scalar_one() for name, q in queries.items()}


def rows_per_source(engine) -> dict[str, dict[str, int]]:
    with engine.connect() as conn:
        return {
            table: dict(conn.execute(text(f"SELECT source, count(*) FROM {table} GROUP BY source")).all())
            for table in TABLES
        }


def transformed_since(engine, moment) -> int:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT count(*) FROM notes_spectrogram WHERE loaded_at > :t"), {"t": moment}
        ).scalar_one()


def db_now(engine):
    with engine.connect() as conn:
        return conn.execute(text("SELECT clock_timestamp()")).scalar_one()


def test_etl_loads_is_idempotent_and_incremental(airflow_env, engine, s3, bucket, small_dataset, tmp_path):
    objectstore.upload_folder(s3, bucket, PREFIX, small_dataset)
    rows = tinysol.parse_metadata(small_dataset / tinysol.METADATA_FILENAME).rows
    run_etl(airflow_env, bucket)

    counts = warehouse.table_counts(engine)
    assert counts["tinysol_metadata"] == len(rows)
    assert counts["notes_spectrogram"] == counts["instruments_spectrogram"] == len(rows)
    assert counts["instruments_notes_spectrogram"] == len(rows)
    assert counts["etl_rejects"] == 0
    # values agree with the metadata and with features computed straight from the files
    config = features.get_preset("default")
    by_path = {r.path: r for r in rows}
    combined = list(warehouse.iter_combined(engine))
    for row in combined:
        assert row.source == "TinySOL"  # the default source: the prefix without its slash
        meta = by_path[row.path]
        assert (row.instrument, row.midi, row.fold) == (meta.instrument_abbr, meta.pitch_id, meta.fold)
        assert row.feature_digest == config.digest()
    sample = combined[0]
    expected = features.compute_features(small_dataset / sample.path, config)
    assert np.array_equal(sample.pitch_spectrogram, expected.pitch)
    assert np.array_equal(sample.instrument_spectrogram, expected.instrument)
    with engine.connect() as conn:
        note, octave, pitch = conn.execute(
            text("SELECT note, octave, pitch FROM instruments_notes_spectrogram WHERE path = :p"), {"p": sample.path}
        ).one()
    assert f"{note}{octave}" == pitch == by_path[sample.path].pitch

    # a second run over the unchanged bucket changes no row
    before = table_checksums(engine)
    moment = db_now(engine)
    second = run_etl(airflow_env, bucket)
    assert transformed_since(engine, moment) == 0
    assert table_checksums(engine) == before
    assert "unchanged: no Asset event" in second.log_path.read_text()

    # add 3 objects (with metadata rows) and change 1 -> exactly 4 transformed
    extra_dir = tmp_path / "extra"
    vn = tinysol.INSTRUMENT_BY_ABBR["Vn"]
    new_rows = [tinysol.make_row(vn, midi, "mf", 0, instance_id=0, string_id=1, retune="T11u") for midi in (60, 61, 62)]
    for i, row in enumerate(new_rows):
        tone = np.sin(2 * np.pi * 440 * 2 ** ((row.pitch_id - 69) / 12) * np.arange(44100 * 2) / 44100) * (
            0.3 + 0.1 * i
        )
        (extra_dir / row.path).parent.mkdir(parents=True, exist_ok=True)
        audio.write_wav(extra_dir / row.path, tone.astype(np.float32), 44100)
    tinysol.write_metadata(rows + new_rows, extra_dir / tinysol.METADATA_FILENAME)
    changed = small_dataset / rows[0].path
    data = bytearray(changed.read_bytes())
    data[-200:] = bytes(200)  # a re-recorded ending: new bytes, new ETag
    (extra_dir / rows[0].path).parent.mkdir(parents=True, exist_ok=True)
    (extra_dir / rows[0].path).write_bytes(bytes(data))
    moment = db_now(engine)
    objectstore.upload_folder(s3, bucket, PREFIX, extra_dir)
    run_etl(airflow_env, bucket)
    assert transformed_since(engine, moment) == 4
    assert warehouse.table_counts(engine)["instruments_notes_spectrogram"] == len(rows) + 3


def test_bad_data_is_rejected_with_reasons_and_the_rest_loads(airflow_env, engine, s3, bucket, small_dataset):
    objectstore.upload_folder(s3, bucket, PREFIX, small_dataset)
    rows = tinysol.parse_metadata(small_dataset / tinysol.METADATA_FILENAME).rows
    corrupt, missing = rows[1], rows[2]
    s3.put_object(Bucket=bucket, Key=PREFIX + corrupt.path, Body=b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")
    s3.delete_object(Bucket=bucket, Key=PREFIX + missing.path)
    orphan = "Winds/Flute/ordinario/Fl-ord-C5-mf-N-N.wav"
    s3.put_object(Bucket=bucket, Key=PREFIX + orphan, Body=(small_dataset / rows[0].path).read_bytes())
    csv_text = (small_dataset / tinysol.METADATA_FILENAME).read_bytes().decode()
    bad_row = "Winds/Kazoo/ordinario/Kz-ord-C4-mf-N-N.wav,0,Winds,Kz,Kazoo,ord,ordinario,C4,60,mf,2,0,,FALSE\r\n"
    s3.put_object(Bucket=bucket, Key=PREFIX + tinysol.METADATA_FILENAME, Body=(csv_text + bad_row).encode())

    run_etl(airflow_env, bucket)

    with engine.connect() as conn:
        rejects = {
            (r.path, r.stage): r.reason
            for r in conn.execute(text("SELECT path, stage, reason FROM etl_rejects WHERE source = 'TinySOL'"))
        }
        assert conn.execute(text("SELECT count(*) FROM etl_rejects WHERE source <> 'TinySOL'")).scalar_one() == 0
    assert set(rejects) == {
        (corrupt.path, "transform"),
        (missing.path, "missing_object"),
        (orphan, "orphan_object"),
        ("Winds/Kazoo/ordinario/Kz-ord-C4-mf-N-N.wav", "metadata"),
    }
    assert (
        corrupt.path in rejects[(corrupt.path, "transform")]
        and "truncated" in rejects[(corrupt.path, "transform")].lower()
        or "WAV" in rejects[(corrupt.path, "transform")]
    )
    assert "does not exist" in rejects[(missing.path, "missing_object")]
    assert "has no row" in rejects[(orphan, "orphan_object")]
    assert "unknown instrument 'Kz'" in rejects[("Winds/Kazoo/ordinario/Kz-ord-C4-mf-N-N.wav", "metadata")]
    good = {r.path for r in rows} - {corrupt.path, missing.path}
    assert {r.path for r in warehouse.iter_combined(engine)} == good


def test_a_shard_that_fails_half_way_leaves_nothing_and_its_retry_completes(engine, s3, bucket, small_dataset):
    objectstore.upload_folder(s3, bucket, PREFIX, small_dataset)
    etl.extract_metadata(s3, engine, bucket, PREFIX)
    config = features.get_preset("default")
    plan = etl.plan(s3, engine, bucket, PREFIX, config.digest(), shard_size=1000)
    (shard,) = plan.shards

    def crash() -> None:
        raise ConnectionError("database went away half-way through the load")

    with pytest.raises(ConnectionError):
        etl.transform_shard(s3, engine, bucket, shard, config, before_commit=crash)
    counts = warehouse.table_counts(engine)
    assert counts["notes_spectrogram"] == counts["instruments_spectrogram"] == 0

    result = etl.transform_shard(s3, engine, bucket, shard, config)
    assert result.loaded == len(shard)
    assert warehouse.table_counts(engine)["notes_spectrogram"] == len(shard)


def test_ranged_reads_fetch_only_part_of_each_object(s3, bucket, tmp_path):
    tone = np.sin(2 * np.pi * 220 * np.arange(44100 * 8) / 44100).astype(np.float32) * 0.5
    audio.write_wav(tmp_path / "long.wav", tone, 44100)
    s3.put_object(Bucket=bucket, Key="long.wav", Body=(tmp_path / "long.wav").read_bytes())
    size = (tmp_path / "long.wav").stat().st_size
    windows_only = dataclasses.replace(features.get_preset("default"), locate_note=False)
    reader = objectstore.RangedObjectReader(s3, bucket, "long.wav", size)
    features.compute_features(reader, windows_only, name="long.wav")
    assert reader.bytes_fetched < size / 2
    assert reader.requests <= 4
    assert etl.reads_by_ranges("long.wav", etl.WHOLE_OBJECT_MAX + 1, windows_only)
    # Locating the note needs every sample: one GET of the object, each byte fetched once.
    located = features.get_preset("default")
    assert not etl.reads_by_ranges("long.wav", etl.WHOLE_OBJECT_MAX + 1, located)
    reader = objectstore.RangedObjectReader(s3, bucket, "long.wav", size)
    features.compute_features(reader, located, name="long.wav")
    assert reader.bytes_fetched <= size + objectstore.RangedObjectReader(s3, bucket, "long.wav", size).min_fetch


def test_sources_with_the_same_paths_load_side_by_side_per_source(airflow_env, engine, s3, bucket, small_dataset):
    """Two sources hold the same relative paths: distinct rows, per-source idempotency, rejects and reloads."""
    rows = tinysol.parse_metadata(small_dataset / tinysol.METADATA_FILENAME).rows
    objectstore.upload_folder(s3, bucket, "A/", small_dataset)
    objectstore.upload_folder(s3, bucket, "renders/b/", small_dataset)
    corrupt, changed, later = rows[1], rows[0], rows[2]
    s3.put_object(Bucket=bucket, Key="A/" + corrupt.path, Body=b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")
    retake = bytearray((small_dataset / changed.path).read_bytes())
    retake[-400:] = bytes(400)  # source b has its own take of this note
    s3.put_object(Bucket=bucket, Key="renders/b/" + changed.path, Body=bytes(retake))
    sources = ["A/", "b=renders/b/"]
    n = len(rows)

    run_etl(airflow_env, bucket, sources=sources)

    # every table carries the source; the same paths are distinct rows
    assert rows_per_source(engine) == {
        "tinysol_metadata": {"A": n, "b": n},
        "notes_spectrogram": {"A": n - 1, "b": n},
        "instruments_spectrogram": {"A": n - 1, "b": n},
        "instruments_notes_spectrogram": {"A": n - 1, "b": n},
        "etl_rejects": {"A": 1},
    }
    with engine.connect() as conn:
        (reject,) = conn.execute(text("SELECT source, path, stage, reason FROM etl_rejects")).all()
    assert (reject.source, reject.path, reject.stage) == ("A", corrupt.path, "transform")
    combined = {(r.source, r.path): r for r in warehouse.iter_combined(engine)}
    assert set(combined) == {("A", r.path) for r in rows if r != corrupt} | {("b", r.path) for r in rows}
    same = rows[3].path  # identical bytes in both sources: identical spectrograms
    assert np.array_equal(combined[("A", same)].pitch_spectrogram, combined[("b", same)].pitch_spectrogram)
    with engine.connect() as conn:
        etags = dict(
            conn.execute(text("SELECT source, etag FROM notes_spectrogram WHERE path = :p"), {"p": changed.path}).all()
        )
    assert etags["A"] != etags["b"]  # each source's row was made from its own object

    # a second run over unchanged sources changes nothing
    before = table_checksums(engine)
    moment = db_now(engine)
    second = run_etl(airflow_env, bucket, sources=sources)
    assert transformed_since(engine, moment) == 0
    assert table_checksums(engine) == before
    assert "unchanged: no Asset event" in second.log_path.read_text()

    # one object of source b changes: exactly that one is transformed, for b only
    edited = bytearray((small_dataset / later.path).read_bytes())
    edited[-400:] = bytes(400)
    s3.put_object(Bucket=bucket, Key="renders/b/" + later.path, Body=bytes(edited))
    moment = db_now(engine)
    run_etl(airflow_env, bucket, sources=sources)
    assert transformed_since(engine, moment) == 1
    with engine.connect() as conn:
        fresh = conn.execute(
            text("SELECT source, path FROM notes_spectrogram WHERE loaded_at > :t"), {"t": moment}
        ).all()
    assert [tuple(r) for r in fresh] == [("b", later.path)]

    # a run over source A alone keeps b's rows, and the combined table still holds both
    b_before = table_checksums(engine, "b")
    s3.put_object(Bucket=bucket, Key="A/" + corrupt.path, Body=(small_dataset / corrupt.path).read_bytes())
    run_etl(airflow_env, bucket, sources=["A/"])
    assert table_checksums(engine, "b") == b_before
    counts = rows_per_source(engine)
    assert counts["instruments_notes_spectrogram"] == {"A": n, "b": n}  # the repaired file loaded, b kept
    assert counts["etl_rejects"] == {}


def test_spectrograms_are_stored_uncompressed_and_old_warehouses_are_switched(engine, s3, bucket, small_dataset):
    """STORAGE EXTERNAL (no pglz attempt: half of PostgreSQL's CPU per note); create_schema switches an old table."""
    storage = "SELECT attstorage FROM pg_attribute WHERE attrelid = CAST(:t AS regclass) AND attname = 'spectrogram'"
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE instruments_spectrogram ALTER COLUMN spectrogram SET STORAGE EXTENDED"))
    warehouse.create_schema(engine)
    warehouse.create_schema(engine)  # idempotent
    objectstore.upload_folder(s3, bucket, PREFIX, small_dataset)
    etl.extract_metadata(s3, engine, bucket, PREFIX)
    config = features.get_preset("default")
    (shard, *_) = etl.plan(s3, engine, bucket, PREFIX, config.digest(), shard_size=1000).shards
    assert etl.transform_shard(s3, engine, bucket, shard, config).loaded == len(shard)
    with engine.connect() as conn:
        for table in ("notes_spectrogram", "instruments_spectrogram"):
            assert conn.execute(text(storage), {"t": table}).scalar_one() == "e"
            compressed = conn.execute(
                text(f"SELECT count(*) FROM {table} WHERE pg_column_compression(spectrogram) IS NOT NULL")
            ).scalar_one()
            assert compressed == 0, table
    warehouse.build_combined(engine, config.digest())
    stored = {r.path for r in warehouse.iter_combined(engine)}  # they read back (decoded, shaped)
    assert stored == {item["path"] for item in shard}


def test_the_embedded_s3_server_keeps_connections_alive(services, s3, bucket):
    """Two GETs on one HTTP/1.1 connection: moto's own server closed it after every response."""
    import http.client
    from urllib.parse import urlsplit

    s3.put_object(Bucket=bucket, Key="a.txt", Body=b"hello")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "a.txt"})
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        for _ in range(2):
            conn.request("GET", f"{parts.path}?{parts.query}")
            response = conn.getresponse()
            assert response.status == 200 and response.read() == b"hello"
            assert response.getheader("Connection", "").lower() != "close"
            assert not response.will_close
    finally:
        conn.close()
