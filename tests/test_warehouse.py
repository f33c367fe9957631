"""The warehouse on a real PostgreSQL: exact spectrogram storage, upserts, the atomic join."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from instropitch import tinysol, warehouse
from instropitch.warehouse import LoadedNote


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
