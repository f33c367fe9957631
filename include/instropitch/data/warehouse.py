"""The PostgreSQL warehouse: schema, fast loads and reads of spectrogram tables.

Every statement lives in `instropitch/data/sql/` (one file per purpose); this module only runs
them. Loads go through COPY into a temporary staging table followed by one upsert, all
inside the caller's transaction, so a shard either lands whole or not at all.

Spectrograms are stored as little-endian float32 bytes (`bytea`) plus their shape
(`integer[]`): exact to the bit, about 4 bytes a value, decoded with `numpy.frombuffer`.

Every row carries its `source` (the name of the dataset it came from, see
`etl.parse_sources`); the key of every table is (source, path), so sources that hold the
same relative paths (the TinySOL layout) live side by side.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import URL

from instropitch.tinysol import MetadataRow

SQL_PACKAGE = "instropitch.data"
"""The SQL files ship inside the package (`instropitch/data/sql/`), read with importlib.resources."""

_BIND_RE = re.compile(r"(?<!:):([A-Za-z_][A-Za-z0-9_]*)")
_DOLLAR_QUOTE_RE = re.compile(r"\$[A-Za-z_]*\$")

DEFAULT_SOURCE = "TinySOL"
"""The source name of the default prefix `TinySOL/`; rows loaded before sources existed get it."""

NOTES_COLUMNS = ("source", "path", "pitch", "note", "octave", "midi", "spectrogram", "shape", "etag", "feature_digest")
INSTRUMENTS_COLUMNS = ("source", "path", "instrument", "family", "spectrogram", "shape", "etag", "feature_digest")
METADATA_TABLE_COLUMNS = (
    "source",
    "path",
    "fold",
    "family",
    "instrument_abbr",
    "instrument_name",
    "technique_abbr",
    "technique_name",
    "pitch",
    "pitch_id",
    "dynamics",
    "dynamics_id",
    "instance_id",
    "string_id",
    "needed_retuning",
)


# ------------------------------------------------------------------------ SQL files


@cache
def sql_statements(name: str) -> tuple[str, ...]:
    """The statements of `instropitch/data/sql/{name}.sql`, comments stripped, split on `;` at line ends.

    A dollar-quoted body (`DO $tag$ ... $tag$;`) stays one statement.
    """
    text_ = resources.files(SQL_PACKAGE).joinpath("sql", f"{name}.sql").read_text()
    lines = [line for line in text_.splitlines() if not line.lstrip().startswith("--")]
    body = "\n".join(lines)
    statements: list[str] = []
    pending = ""
    for chunk in body.split(";\n"):
        pending = f"{pending};\n{chunk}" if pending else chunk
        if len(_DOLLAR_QUOTE_RE.findall(pending)) % 2 == 0:
            statements.append(pending)
            pending = ""
    if pending:
        statements.append(pending)
    return tuple(s.strip() for s in statements if s.strip().rstrip(";").strip())


def run_sql(conn: Connection, name: str, **params: Any) -> list[Any]:
    """Run every statement of a SQL file with bound parameters; return the last result's rows."""
    rows: list[Any] = []
    for statement in sql_statements(name):
        statement = statement.rstrip(";")
        wanted = {k: params[k] for k in _BIND_RE.findall(statement) if k in params}
        result = conn.execute(text(statement), wanted)
        rows = list(result) if result.returns_rows else []
    return rows


# ----------------------------------------------------------------------- connections


def engine_for(
    host: str | None,
    port: int | None = None,
    login: str | None = None,
    password: str | None = None,
    database: str | None = None,
) -> Engine:
    """An SQLAlchemy engine on psycopg 3. `host` may be a Unix socket folder (pgserver)."""
    url = URL.create(
        "postgresql+psycopg",
        username=login or None,
        password=password or None,
        host=None if (host or "").startswith("/") else host,
        port=port,
        database=database or "postgres",
        query={"host": host} if (host or "").startswith("/") else {},
    )
    return create_engine(url, pool_pre_ping=True)


def engine_from_uri(uri: str) -> Engine:
    """An engine from a `postgresql://` URI (any driver name is replaced by psycopg 3)."""
    uri = re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql+psycopg://", uri)
    return create_engine(uri, pool_pre_ping=True)


def create_schema(engine: Engine) -> None:
    """Create every table and index if absent, and migrate an older warehouse (safe on every DAG run).

    `migrate_sources.sql` gives tables created before sources existed their `source` column
    (old rows: `DEFAULT_SOURCE`) and (source, path) keys; nothing loaded is lost.
    `spectrogram_storage.sql` stores spectrogram bytes uncompressed (STORAGE EXTERNAL).
    """
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('instropitch.schema'))"))
        run_sql(conn, "schema")
        run_sql(conn, "migrate_sources")
        run_sql(conn, "spectrogram_storage")


# ------------------------------------------------------------------- spectrogram codec


def encode_spectrogram(array: np.ndarray) -> tuple[bytes, list[int]]:
    """float32 array -> (little-endian bytes, shape) as stored in the warehouse."""
    array = np.ascontiguousarray(array, dtype="<f4")
    return array.tobytes(), list(array.shape)


def decode_spectrogram(data: bytes | memoryview, shape: Sequence[int]) -> np.ndarray:
    """Stored bytes and shape -> float32 array (a copy, writable)."""
    array = np.frombuffer(bytes(data), dtype="<f4")
    expected = int(np.prod(shape)) if len(shape) else 0
    if array.size != expected:
        raise ValueError(f"stored spectrogram has {array.size} values, its shape {list(shape)} needs {expected}")
    return array.reshape(tuple(shape)).astype(np.float32)


# ------------------------------------------------------------------------------ loads


def _copy_rows(conn: Connection, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """COPY rows into a table through psycopg 3 on the connection's own transaction."""
    raw = conn.connection.driver_connection
    count = 0
    with raw.cursor() as cursor, cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
            count += 1
    return count


def replace_metadata(conn: Connection, rows: Sequence[MetadataRow], source: str = DEFAULT_SOURCE) -> int:
    """Make the `source` rows of `tinysol_metadata` equal the good rows of its CSV (upsert + delete the rest).

    Rows of other sources are left as they are.
    """
    run_sql(conn, "stage_metadata")
    count = _copy_rows(
        conn,
        "metadata_stage",
        METADATA_TABLE_COLUMNS,
        (
            (
                source,
                r.path,
                r.fold,
                r.family,
                r.instrument_abbr,
                r.instrument_name,
                r.technique_abbr,
                r.technique_name,
                r.pitch,
                r.pitch_id,
                r.dynamics,
                r.dynamics_id,
                r.instance_id,
                r.string_id,
                r.needed_retuning,
            )
            for r in rows
        ),
    )
    run_sql(conn, "upsert_metadata", source=source)
    return count


@dataclass(frozen=True)
class LoadedNote:
    """One transformed object ready for the two spectrogram tables."""

    path: str
    etag: str
    feature_digest: str
    pitch: str
    note: str
    octave: int
    midi: int
    instrument: str
    family: str
    pitch_spectrogram: np.ndarray
    instrument_spectrogram: np.ndarray
    source: str = DEFAULT_SOURCE


def upsert_spectrograms(conn: Connection, notes: Sequence[LoadedNote]) -> int:
    """Stage a shard's rows with COPY and upsert both tables by (source, path), in the caller's transaction."""
    run_sql(conn, "stage_spectrograms")
    note_rows = []
    instrument_rows = []
    for n in notes:
        pitch_bytes, pitch_shape = encode_spectrogram(n.pitch_spectrogram)
        inst_bytes, inst_shape = encode_spectrogram(n.instrument_spectrogram)
        note_rows.append(
            (n.source, n.path, n.pitch, n.note, n.octave, n.midi, pitch_bytes, pitch_shape, n.etag, n.feature_digest)
        )
        instrument_rows.append(
            (n.source, n.path, n.instrument, n.family, inst_bytes, inst_shape, n.etag, n.feature_digest)
        )
    _copy_rows(conn, "notes_stage", NOTES_COLUMNS, note_rows)
    _copy_rows(conn, "instruments_stage", INSTRUMENTS_COLUMNS, instrument_rows)
    run_sql(conn, "upsert_spectrograms")
    return len(note_rows)


def record_rejects(
    conn: Connection,
    stage: str,
    rejects: Iterable[tuple[str, str]],
    run_id: str | None,
    source: str = DEFAULT_SOURCE,
) -> int:
    """Upsert (path, reason) rejects of a source at a stage."""
    params = [{"source": source, "path": p, "stage": stage, "reason": r, "run_id": run_id} for p, r in rejects]
    if params:
        (statement,) = sql_statements("upsert_reject")
        conn.execute(text(statement.rstrip(";")), params)
    return len(params)


def replace_rejects(
    conn: Connection,
    stage: str,
    rejects: Iterable[tuple[str, str]],
    run_id: str | None,
    source: str = DEFAULT_SOURCE,
) -> int:
    """Make a source's rejects of a stage equal `rejects` (what is refused now, not what once was)."""
    run_sql(conn, "clear_rejects", stage=stage, source=source)
    return record_rejects(conn, stage, rejects, run_id, source)


def loaded_objects(conn: Connection, source: str = DEFAULT_SOURCE) -> dict[str, tuple[str, str]]:
    """path -> (etag, feature digest) of every object of a source whose two spectrograms are loaded."""
    return {row.path: (row.etag, row.feature_digest) for row in run_sql(conn, "loaded_objects", source=source)}


def warehouse_sources(engine: Engine) -> dict[str, dict[str, int]]:
    """source -> {"metadata_rows", "combined_rows"} for every source the warehouse holds rows of."""
    with engine.connect() as conn:
        return {
            r.source: {"metadata_rows": int(r.metadata_rows), "combined_rows": int(r.combined_rows)}
            for r in run_sql(conn, "warehouse_sources")
        }


def drop_source(engine: Engine, source: str) -> None:
    """Delete every row of a source (metadata, spectrograms, rejects); rebuild the combined table after."""
    with engine.begin() as conn:
        run_sql(conn, "drop_source", source=source)


def combined_digest(conn: Connection) -> tuple[int, str]:
    """(rows, md5 of the content) of the combined table."""
    (row,) = run_sql(conn, "combined_digest")
    return int(row.row_count), row.digest


@dataclass(frozen=True)
class TableDigest:
    """A table's rows, distinct keys (equal to rows: no duplicates) and content md5 (`table_digests.sql`)."""

    rows: int
    keys: int
    digest: str


def table_digests(conn: Connection) -> dict[str, TableDigest]:
    """Every warehouse table's digest, without load times or run ids: equal loads give equal digests."""
    return {r.table_name: TableDigest(int(r.row_count), int(r.key_count), r.digest) for r in run_sql(conn, "table_digests")}


def build_combined(engine: Engine, feature_digest: str) -> dict[str, Any]:
    """Rebuild `instruments_notes_spectrogram` atomically.

    Returns its row count, a digest of its content, and whether the rebuild changed it
    (so an unchanged nightly run need not announce new data).
    """
    with engine.begin() as conn:
        # Serialise rebuilds before reading the table: a read lock taken first would deadlock
        # against a concurrent rebuild's DROP TABLE (build_combined.sql takes the same lock).
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('instropitch.build_combined'))"))
        _, before = combined_digest(conn)
        run_sql(conn, "build_combined", feature_digest=feature_digest)
        rows, after = combined_digest(conn)
    return {"rows": rows, "digest": after, "changed": after != before}


@dataclass
class CombinedRow:
    """One decoded row of the combined table."""

    source: str
    path: str
    instrument: str
    midi: int
    fold: int
    pitch_spectrogram: np.ndarray
    instrument_spectrogram: np.ndarray
    feature_digest: str


def iter_combined(engine: Engine, sources: Sequence[str] | None = None) -> Iterator[CombinedRow]:
    """Stream the combined table ordered by (source, path), spectrograms decoded.

    Every source by default; `sources` keeps only the rows of those source names.
    """
    with engine.connect() as conn:
        (statement,) = sql_statements("read_combined")
        wanted = None if sources is None else list(sources)
        result = conn.execution_options(stream_results=True, yield_per=500).execute(
            text(statement.rstrip(";")), {"sources": wanted}
        )
        for r in result:
            yield CombinedRow(
                source=r.source,
                path=r.path,
                instrument=r.instrument,
                midi=int(r.midi),
                fold=int(r.fold),
                pitch_spectrogram=decode_spectrogram(r.pitch_spectrogram, r.pitch_shape),
                instrument_spectrogram=decode_spectrogram(r.instrument_spectrogram, r.instrument_shape),
                feature_digest=r.feature_digest,
            )


def table_counts(engine: Engine) -> dict[str, int]:
    """Rows per warehouse table, for summaries and tests."""
    tables = (
        "tinysol_metadata",
        "notes_spectrogram",
        "instruments_spectrogram",
        "instruments_notes_spectrogram",
        "etl_rejects",
    )
    with engine.connect() as conn:
        return {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in tables}
