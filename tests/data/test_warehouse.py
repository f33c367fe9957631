"""The warehouse on a real PostgreSQL: exact spectrogram storage, upserts, the atomic join."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from instropitch import tinysol
from instropitch.data import warehouse
from instropitch.data.warehouse import LoadedNote


def _note(row: tinysol.MetadataRow, rng: np.random.Generator, digest: str = "d1", etag: str = "e1") -> LoadedNote:
    return LoadedNote(
        path=row.path,
        etag=etag,
        feature_digest=digest,
        pitch=row.pitch,
        note=row.note,
        octave=row.octave,
        midi=row.pitch_id,
        instrument=row.instrument_abbr,
        family=row.family,
        pitch_spectrogram=rng.standard_normal((22, 128)).astype(np.float32),
        instrument_spectrogram=rng.standard_normal((44, 128)).astype(np.float32),
    )


def _rows() -> list[tinysol.MetadataRow]:
    vn = tinysol.INSTRUMENT_BY_ABBR["Vn"]
    fl = tinysol.INSTRUMENT_BY_ABBR["Fl"]
    return [
        tinysol.make_row(vn, 67, "mf", 0, instance_id=0, string_id=1),
        tinysol.make_row(vn, 69, "ff", 1, instance_id=1, string_id=2),
        tinysol.make_row(fl, 72, "pp", 2),
    ]


def test_spectrograms_read_back_bit_for_bit(engine):
    rng = np.random.default_rng(0)
    rows = _rows()
    notes = [_note(r, rng) for r in rows]
    # awkward values: subnormals, signed zero, extremes
    notes[0].pitch_spectrogram[0, :4] = [
        np.float32(1e-45),
        np.float32(-0.0),
        np.finfo(np.float32).max,
        np.finfo(np.float32).min,
    ]
    with engine.begin() as conn:
        warehouse.replace_metadata(conn, rows)
        warehouse.upsert_spectrograms(conn, notes)
    assert warehouse.build_combined(engine, "d1")["rows"] == 3
    back = {r.path: r for r in warehouse.iter_combined(engine)}
    for n in notes:
        got = back[n.path]
        assert got.pitch_spectrogram.dtype == np.float32
        assert got.pitch_spectrogram.tobytes() == n.pitch_spectrogram.tobytes()
        assert got.instrument_spectrogram.tobytes() == n.instrument_spectrogram.tobytes()
        assert got.pitch_spectrogram.shape == (22, 128) and got.instrument_spectrogram.shape == (44, 128)


def test_upserts_are_idempotent_and_metadata_follows_the_csv(engine):
    rng = np.random.default_rng(1)
    rows = _rows()
    notes = [_note(r, rng) for r in rows]
    for _ in range(2):
        with engine.begin() as conn:
            warehouse.replace_metadata(conn, rows)
            warehouse.upsert_spectrograms(conn, notes)
    counts = warehouse.table_counts(engine)
    assert (
        counts["tinysol_metadata"] == 3 and counts["notes_spectrogram"] == 3 and counts["instruments_spectrogram"] == 3
    )
    with engine.begin() as conn:
        warehouse.replace_metadata(conn, rows[:2])
    assert warehouse.table_counts(engine)["tinysol_metadata"] == 2


def test_table_digests_see_content_not_load_times(engine):
    rng = np.random.default_rng(3)
    rows = _rows()
    notes = [_note(r, rng) for r in rows]

    def load(batch: list[LoadedNote]) -> dict[str, warehouse.TableDigest]:
        with engine.begin() as conn:
            warehouse.replace_metadata(conn, rows)
            warehouse.upsert_spectrograms(conn, batch)
        warehouse.build_combined(engine, "d1")
        with engine.connect() as conn:
            return warehouse.table_digests(conn)

    first = load(notes)
    assert first["notes_spectrogram"] == warehouse.TableDigest(3, 3, first["notes_spectrogram"].digest)
    assert first["instruments_notes_spectrogram"].rows == 3
    assert load(notes) == first  # loaded again, later: same digests
    changed = [notes[0], notes[1], replace(notes[2], pitch_spectrogram=notes[2].pitch_spectrogram + 1)]
    after = load(changed)
    assert after["notes_spectrogram"] != first["notes_spectrogram"]
    assert after["instruments_spectrogram"] == first["instruments_spectrogram"]
    assert after["tinysol_metadata"] == first["tinysol_metadata"]


def test_combined_table_is_swapped_atomically_and_reports_change(engine):
    rng = np.random.default_rng(2)
    rows = _rows()
    with engine.begin() as conn:
        warehouse.replace_metadata(conn, rows)
        warehouse.upsert_spectrograms(conn, [_note(r, rng) for r in rows])
    first = warehouse.build_combined(engine, "d1")
    again = warehouse.build_combined(engine, "d1")
    assert first["changed"] and not again["changed"] and first["digest"] == again["digest"]
    # while a rebuild is uncommitted, a reader waits (here: times out); it never sees a half-built table
    with engine.begin() as conn:
        warehouse.replace_rejects(conn, "transform", [(rows[0].path, "unreadable")], None)
    with engine.connect() as builder, engine.connect() as reader:
        transaction = builder.begin()
        warehouse.run_sql(builder, "build_combined", feature_digest="d1")
        reader.execute(text("SET lock_timeout = '200ms'"))
        with pytest.raises(OperationalError, match="lock timeout"):
            reader.execute(text("SELECT count(*) FROM instruments_notes_spectrogram"))
        reader.rollback()
        transaction.commit()
        assert reader.execute(text("SELECT count(*) FROM instruments_notes_spectrogram")).scalar_one() == 2
    assert warehouse.table_counts(engine)["instruments_notes_spectrogram"] == 2


def test_decode_refuses_a_wrong_shape():
    data, shape = warehouse.encode_spectrogram(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="needs"):
        warehouse.decode_spectrogram(data, [4, 4])


def _all_rows(engine, table: str) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(f"SELECT source, path FROM {table} ORDER BY source, path"))]


def test_sources_with_the_same_paths_are_distinct_rows(engine):
    rng = np.random.default_rng(3)
    rows = _rows()
    with engine.begin() as conn:
        for source in ("fluid", "gm"):
            warehouse.replace_metadata(conn, rows, source)
            warehouse.upsert_spectrograms(conn, [replace(_note(r, rng), source=source) for r in rows])
        warehouse.replace_rejects(conn, "transform", [(rows[0].path, "unreadable")], None, "gm")
    built = warehouse.build_combined(engine, "d1")
    assert built["rows"] == 5  # 3 of fluid + 2 of gm (one refused)
    combined = list(warehouse.iter_combined(engine))
    assert [(r.source, r.path) for r in combined] == sorted((r.source, r.path) for r in combined)
    assert {r.path for r in combined if r.source == "fluid"} == {r.path for r in rows}
    assert rows[0].path not in {r.path for r in combined if r.source == "gm"}
    assert [r.source for r in warehouse.iter_combined(engine, ["gm"])] == ["gm", "gm"]
    # replacing one source's metadata leaves the other source's rows alone
    with engine.begin() as conn:
        warehouse.replace_metadata(conn, rows[:1], "gm")
    assert _all_rows(engine, "tinysol_metadata") == sorted([("fluid", r.path) for r in rows] + [("gm", rows[0].path)])
    assert warehouse.warehouse_sources(engine)["fluid"] == {"metadata_rows": 3, "combined_rows": 3}
    warehouse.drop_source(engine, "gm")
    assert set(warehouse.warehouse_sources(engine)) == {"fluid"}


OLD_SCHEMA_SQL = """
CREATE TABLE tinysol_metadata (
    path text PRIMARY KEY, fold smallint NOT NULL CHECK (fold BETWEEN 0 AND 4), family text NOT NULL,
    instrument_abbr text NOT NULL, instrument_name text NOT NULL, technique_abbr text NOT NULL,
    technique_name text NOT NULL, pitch text NOT NULL, pitch_id smallint NOT NULL CHECK (pitch_id BETWEEN 0 AND 127),
    dynamics text NOT NULL, dynamics_id smallint NOT NULL, instance_id smallint NOT NULL, string_id smallint,
    needed_retuning boolean NOT NULL, loaded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tinysol_metadata_instrument_idx ON tinysol_metadata (instrument_abbr);
CREATE TABLE notes_spectrogram (
    path text PRIMARY KEY, pitch text NOT NULL, note text NOT NULL, octave smallint NOT NULL, midi smallint NOT NULL,
    spectrogram bytea NOT NULL, shape integer[] NOT NULL, etag text NOT NULL, feature_digest text NOT NULL,
    loaded_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE instruments_spectrogram (
    path text PRIMARY KEY, instrument text NOT NULL, family text NOT NULL, spectrogram bytea NOT NULL,
    shape integer[] NOT NULL, etag text NOT NULL, feature_digest text NOT NULL,
    loaded_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE etl_rejects (
    path text NOT NULL, stage text NOT NULL, reason text NOT NULL, run_id text,
    rejected_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (path, stage)
);
CREATE TABLE instruments_notes_spectrogram (
    path text PRIMARY KEY, instrument text NOT NULL, instrument_name text NOT NULL, family text NOT NULL,
    pitch text NOT NULL, note text NOT NULL, octave smallint NOT NULL, midi smallint NOT NULL, fold smallint NOT NULL,
    dynamics text NOT NULL, pitch_spectrogram bytea NOT NULL, pitch_shape integer[] NOT NULL,
    instrument_spectrogram bytea NOT NULL, instrument_shape integer[] NOT NULL, feature_digest text NOT NULL
)
"""
"""The warehouse schema before sources (include/sql/schema.sql at commit ebef77e), verbatim but for layout."""

OLD_BUILD_SQL = """
CREATE TABLE instruments_notes_spectrogram_build AS
SELECT m.path, m.instrument_abbr AS instrument, m.instrument_name, m.family, m.pitch, n.note, n.octave,
       m.pitch_id AS midi, m.fold, m.dynamics, n.spectrogram AS pitch_spectrogram, n.shape AS pitch_shape,
       i.spectrogram AS instrument_spectrogram, i.shape AS instrument_shape, n.feature_digest
FROM tinysol_metadata m
JOIN notes_spectrogram n ON n.path = m.path
JOIN instruments_spectrogram i ON i.path = m.path;
ALTER TABLE instruments_notes_spectrogram_build ADD PRIMARY KEY (path);
DROP TABLE instruments_notes_spectrogram;
ALTER TABLE instruments_notes_spectrogram_build RENAME TO instruments_notes_spectrogram
"""
"""The old build_combined.sql, in short: its primary key keeps the name of the build table."""


def test_create_schema_migrates_an_old_warehouse_and_keeps_its_rows(services, database):
    eng = warehouse.engine_for(services.pg_socket_dir, 5432, services.pg_user, None, database)
    rng = np.random.default_rng(4)
    rows = _rows()
    vn, fl = rows[0], rows[2]
    with eng.begin() as conn:
        for statement in (OLD_SCHEMA_SQL + ";" + OLD_BUILD_SQL).split(";"):
            conn.execute(text(statement))
        for row in (vn, fl):
            conn.execute(
                text(
                    "INSERT INTO tinysol_metadata (path, fold, family, instrument_abbr, instrument_name, technique_abbr,"
                    " technique_name, pitch, pitch_id, dynamics, dynamics_id, instance_id, string_id, needed_retuning)"
                    " VALUES (:path, :fold, :family, :abbr, :name, 'ord', 'ordinario', :pitch, :midi, :dyn, 2, 0, NULL,"
                    " false)"
                ),
                {
                    "path": row.path,
                    "fold": row.fold,
                    "family": row.family,
                    "abbr": row.instrument_abbr,
                    "name": row.instrument_name,
                    "pitch": row.pitch,
                    "midi": row.pitch_id,
                    "dyn": row.dynamics,
                },
            )
            note = _note(row, rng)
            pitch_bytes, pitch_shape = warehouse.encode_spectrogram(note.pitch_spectrogram)
            inst_bytes, inst_shape = warehouse.encode_spectrogram(note.instrument_spectrogram)
            conn.execute(
                text(
                    "INSERT INTO notes_spectrogram (path, pitch, note, octave, midi, spectrogram, shape, etag,"
                    " feature_digest) VALUES (:path, :pitch, :note, :octave, :midi, :data, :shape, 'e1', 'd1')"
                ),
                {**vars(note), "data": pitch_bytes, "shape": pitch_shape},
            )
            conn.execute(
                text(
                    "INSERT INTO instruments_spectrogram (path, instrument, family, spectrogram, shape, etag,"
                    " feature_digest) VALUES (:path, :instrument, :family, :data, :shape, 'e1', 'd1')"
                ),
                {**vars(note), "data": inst_bytes, "shape": inst_shape},
            )
        conn.execute(
            text("INSERT INTO etl_rejects (path, stage, reason) VALUES ('Strings/x.wav', 'orphan_object', 'no row')")
        )
        # the old combined table, built the old way (its key named after the build table)
        for statement in OLD_BUILD_SQL.split(";"):
            conn.execute(text(statement))
    before = warehouse.table_counts(eng)
    assert before == {
        "tinysol_metadata": 2,
        "notes_spectrogram": 2,
        "instruments_spectrogram": 2,
        "instruments_notes_spectrogram": 2,
        "etl_rejects": 1,
    }

    for _ in range(2):  # the migration runs on every create_schema and acts once
        warehouse.create_schema(eng)
    assert warehouse.table_counts(eng) == before
    old = warehouse.DEFAULT_SOURCE
    for table in ("tinysol_metadata", "notes_spectrogram", "instruments_spectrogram", "instruments_notes_spectrogram"):
        assert _all_rows(eng, table) == sorted([(old, vn.path), (old, fl.path)]), table
    assert _all_rows(eng, "etl_rejects") == [(old, "Strings/x.wav")]
    with eng.connect() as conn:
        keys = dict(
            conn.execute(
                text(
                    "SELECT c.conrelid::regclass::text, array_to_string(array_agg(a.attname ORDER BY k.ord), ',')"
                    " FROM pg_constraint c CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)"
                    " JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum"
                    " WHERE c.contype = 'p' AND c.connamespace = current_schema()::regnamespace GROUP BY c.conrelid"
                )
            ).all()
        )
        defaults = conn.execute(
            text(
                "SELECT count(*) FROM information_schema.columns WHERE column_name = 'source' AND column_default IS NOT NULL"
            )
        ).scalar_one()
    assert keys == {
        "tinysol_metadata": "source,path",
        "notes_spectrogram": "source,path",
        "instruments_spectrogram": "source,path",
        "instruments_notes_spectrogram": "source,path",
        "etl_rejects": "source,path,stage",
    }
    assert defaults == 0  # new rows must name their source
    # the old rows read back; the same paths load again as another source, next to them
    assert [r.source for r in warehouse.iter_combined(eng)] == [old, old]
    with eng.begin() as conn:
        warehouse.replace_metadata(conn, [vn, fl], "fluid")
        warehouse.upsert_spectrograms(conn, [replace(_note(r, rng), source="fluid") for r in (vn, fl)])
    assert warehouse.build_combined(eng, "d1")["rows"] == 4
    assert warehouse.table_counts(eng)["tinysol_metadata"] == 4
    eng.dispose()
