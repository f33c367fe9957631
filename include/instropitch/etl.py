"""The ETL steps behind the `instropitch_etl` DAG, one function per task.

Each step takes a boto3 S3 client and an SQLAlchemy engine, so the DAG (clients from
Airflow connections), the CLI and the tests all run the same code. What crosses task
boundaries is small and JSON (keys, counts); spectrograms go straight to PostgreSQL.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import Engine, text

from instropitch import objectstore, warehouse
from instropitch.tinysol import METADATA_FILENAME, MetadataError, RowError, parse_metadata, pitch_to_midi, split_pitch

log = logging.getLogger(__name__)

STAGE_METADATA = "metadata"
STAGE_ORPHAN = "orphan_object"
STAGE_MISSING = "missing_object"
STAGE_TRANSFORM = "transform"

GONE_OR_CHANGED = ("NoSuchKey", "404", "NotFound", "PreconditionFailed", "412")
"""S3 error codes meaning the object listed by `plan` is gone or replaced: rejected, not retried."""


class QualityError(RuntimeError):
    """The loaded data breaks a quality check; the message is the readable report."""


@dataclass
class ExtractSummary:
    csv_rows: int
    good_rows: int
    bad_rows: int


def _row_key(error: RowError) -> str:
    """The reject key of a bad metadata row: its path, or its line number when it has none."""
    return error.path or f"{METADATA_FILENAME}#row{error.row}"


def extract_metadata(
    client: Any, engine: Engine, bucket: str, prefix: str, run_id: str | None = None
) -> ExtractSummary:
    """Read the metadata CSV from S3 and make `tinysol_metadata` equal its good rows.

    Bad rows go to `etl_rejects` (stage `metadata`) with the parser's reason; a file that
    is not TinySOL metadata at all raises and changes nothing.
    """
    key = objectstore.metadata_key(prefix)
    try:
        data = objectstore.read_object(client, bucket, key)
    except Exception as exc:
        raise MetadataError(f"s3://{bucket}/{key}: cannot read the metadata file ({exc})") from exc
    result = parse_metadata(data)
    with engine.begin() as conn:
        warehouse.replace_metadata(conn, result.rows)
        warehouse.replace_rejects(conn, STAGE_METADATA, [(_row_key(e), str(e)) for e in result.errors], run_id)
    summary = ExtractSummary(len(result.rows) + len(result.errors), len(result.rows), len(result.errors))
    log.info(
        "metadata s3://%s/%s: %d rows, %d good, %d rejected",
        bucket,
        key,
        summary.csv_rows,
        summary.good_rows,
        summary.bad_rows,
    )
    for error in result.errors[:20]:
        log.warning("metadata reject: %s", error)
    return summary


@dataclass
class PlanResult:
    """What the transform will do: shards of objects, and how many were skipped or refused."""

    shards: list[list[dict[str, Any]]]
    to_transform: int
    skipped_unchanged: int
    orphan_objects: int
    missing_objects: int


def plan(
    client: Any,
    engine: Engine,
    bucket: str,
    prefix: str,
    feature_digest: str,
    shard_size: int = 200,
    run_id: str | None = None,
) -> PlanResult:
    """List WAV objects, match them with metadata rows, and shard what needs transforming.

    An object whose two spectrograms are already loaded with the same ETag and feature
    digest is skipped, so a nightly run over an unchanged bucket transforms nothing.
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be at least 1, got {shard_size}")
    objects = objectstore.list_wavs(client, bucket, prefix)
    with engine.begin() as conn:
        metadata = {
            r.path: (r.instrument_abbr, r.family, r.pitch)
            for r in conn.execute(text("SELECT path, instrument_abbr, family, pitch FROM tinysol_metadata"))
        }
        loaded = warehouse.loaded_objects(conn)
        by_path = {o.path: o for o in objects}
        orphans = [
            (o.path, f"s3://{bucket}/{o.key} has no row in {METADATA_FILENAME}")
            for o in objects
            if o.path not in metadata
        ]
        missing = [
            (
                path,
                f"{METADATA_FILENAME} lists it but s3://{bucket}/{objectstore.normalise_prefix(prefix)}{path} does not exist",
            )
            for path in sorted(metadata)
            if path not in by_path
        ]
        warehouse.replace_rejects(conn, STAGE_ORPHAN, orphans, run_id)
        warehouse.replace_rejects(conn, STAGE_MISSING, missing, run_id)

    work = []
    skipped = 0
    for obj in objects:
        if obj.path not in metadata:
            continue
        if loaded.get(obj.path) == (obj.etag, feature_digest):
            skipped += 1
            continue
        instrument, family, pitch = metadata[obj.path]
        work.append({**asdict(obj), "instrument": instrument, "family": family, "pitch": pitch})
    shards = [work[i : i + shard_size] for i in range(0, len(work), shard_size)]
    result = PlanResult(shards, len(work), skipped, len(orphans), len(missing))
    log.info(
        "plan: %d objects, %d to transform in %d shards, %d unchanged, %d without metadata, %d metadata rows without object",
        len(objects),
        len(work),
        len(shards),
        skipped,
        len(orphans),
        len(missing),
    )
    return result


@dataclass
class ShardResult:
    loaded: int
    rejected: int
    seconds: float
    rejects: list[tuple[str, str]] = field(default_factory=list)


WHOLE_OBJECT_MAX = 2 * 1024 * 1024
"""Objects up to this size are fetched with one GET instead of ranged reads of the parts needed.

A GET costs far more than its bytes: ~6 ms of CPU per request (boto3 plus the loopback moto
server) against ~4 ms per MB on the 2-core bench, and 20–50 ms of latency on AWS against
~10 ms per MB. The ranged path needs 3 GETs per note (header, pitch window, instrument
window), so for TinySOL's notes (0.2–0.9 MB) one whole-object GET is the cheaper read;
longer recordings keep fetching only the seconds the features use.
"""


def _transform_one(client: Any, bucket: str, item: dict[str, Any], config: Any) -> warehouse.LoadedNote:
    from instropitch import features

    size = int(item["size"])
    # min_fetch = size: the header read fetches the whole object, every later read is served from it.
    min_fetch = size if 0 < size <= WHOLE_OBJECT_MAX else 65536
    reader = objectstore.RangedObjectReader(client, bucket, item["key"], size, etag=item["etag"], min_fetch=min_fetch)
    result = features.compute_features(reader, config, name=item["path"])
    for name, array in (("pitch", result.pitch), ("instrument", result.instrument)):
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{item['path']}: {name} spectrogram holds NaN or inf")
    note, octave = split_pitch(item["pitch"])
    return warehouse.LoadedNote(
        path=item["path"],
        etag=item["etag"],
        feature_digest=config.digest(),
        pitch=item["pitch"],
        note=note,
        octave=octave,
        midi=pitch_to_midi(item["pitch"]),
        instrument=item["instrument"],
        family=item["family"],
        pitch_spectrogram=result.pitch,
        instrument_spectrogram=result.instrument,
    )


def transform_shard(
    client: Any,
    engine: Engine,
    bucket: str,
    shard: Sequence[dict[str, Any]],
    feature_config: Any,
    run_id: str | None = None,
    workers: int = 4,
    before_commit: Callable[[], None] | None = None,
) -> ShardResult:
    """Compute both spectrograms of every object in a shard and load them in one transaction.

    A file that cannot be decoded goes to `etl_rejects` and the shard goes on; any other
    failure (database, network) raises and leaves nothing of the shard behind, so the
    task's retry starts clean. `before_commit` is a hook for fault-injection tests.
    """
    from botocore.exceptions import ClientError

    from instropitch.audio import AudioError

    started = time.perf_counter()
    loaded: list[warehouse.LoadedNote] = []
    rejects: list[tuple[str, str]] = []

    def work(item: dict[str, Any]) -> warehouse.LoadedNote | tuple[str, str]:
        try:
            return _transform_one(client, bucket, item, feature_config)
        except (AudioError, ValueError) as exc:
            return (item["path"], str(exc))
        except ClientError as exc:
            # Gone or replaced since `plan` listed it: this object is refused, the shard goes on.
            # Any other S3 error is transient: it fails the shard and Airflow retries it.
            error = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if error.get("Code") in GONE_OR_CHANGED or status in (404, 412):
                return (
                    item["path"],
                    f"s3://{bucket}/{item['key']}: {error.get('Code', status)} (deleted or changed since plan)",
                )
            raise

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for i, outcome in enumerate(pool.map(work, shard), start=1):
            if isinstance(outcome, warehouse.LoadedNote):
                loaded.append(outcome)
            else:
                rejects.append(outcome)
                log.warning("reject %s", outcome[1])
            if i % 50 == 0 or i == len(shard):
                log.info("transformed %d/%d (%d rejected)", i, len(shard), len(rejects))

    with engine.begin() as conn:
        warehouse.upsert_spectrograms(conn, loaded)
        warehouse.record_rejects(conn, STAGE_TRANSFORM, rejects, run_id)
        if before_commit is not None:
            before_commit()
    seconds = time.perf_counter() - started
    log.info(
        "shard loaded %d rows, rejected %d, in %.1f s (%.0f files/s)",
        len(loaded),
        len(rejects),
        seconds,
        len(shard) / max(seconds, 1e-9),
    )
    return ShardResult(len(loaded), len(rejects), seconds, rejects)


def build_combined(engine: Engine, feature_digest: str) -> dict[str, Any]:
    """Rebuild the combined table from the two spectrogram tables and the metadata."""
    result = warehouse.build_combined(engine, feature_digest)
    log.info("instruments_notes_spectrogram rebuilt: %(rows)d rows, digest %(digest)s, changed %(changed)s", result)
    return result


@dataclass
class QualityReport:
    csv_rows: int
    combined_rows: int
    rejected_rows: int
    bad_metadata_rows: int
    orphan_objects: int
    instruments: list[str]
    non_finite: int
    failures: list[str]

    def __str__(self) -> str:
        lines = [
            f"metadata CSV rows: {self.csv_rows} (bad rows {self.bad_metadata_rows})",
            f"loaded (combined table): {self.combined_rows}; refused (missing or unreadable): {self.rejected_rows}",
            f"objects without metadata: {self.orphan_objects}",
            f"instruments present: {len(self.instruments)} ({', '.join(self.instruments)})",
            f"spectrograms with NaN/inf: {self.non_finite}",
        ]
        lines += [f"FAILED: {f}" for f in self.failures] or ["all checks passed"]
        return "\n".join(lines)


def quality_gate(engine: Engine, csv_rows: int, expected_instruments: Sequence[str] | None = None) -> QualityReport:
    """Check counts, finiteness and coverage of the combined table; raise `QualityError` if any fails.

    Every instrument the metadata lists (or `expected_instruments`) must be in the table.
    """
    with engine.connect() as conn:
        (counts,) = warehouse.run_sql(conn, "quality_counts")
        listed = sorted(conn.execute(text("SELECT DISTINCT instrument_abbr FROM tinysol_metadata")).scalars())
    non_finite = 0
    for row in warehouse.iter_combined(engine):
        if not (np.isfinite(row.pitch_spectrogram).all() and np.isfinite(row.instrument_spectrogram).all()):
            non_finite += 1
    instruments = list(counts.instruments or [])
    failures = []
    accounted = counts.combined_rows + counts.rejected_rows + counts.bad_metadata_rows
    if accounted != csv_rows:
        failures.append(
            f"metadata rows ({csv_rows}) != loaded ({counts.combined_rows}) + refused ({counts.rejected_rows}) "
            f"+ bad rows ({counts.bad_metadata_rows}) = {accounted}"
        )
    if non_finite:
        failures.append(f"{non_finite} spectrograms hold NaN or inf")
    expected = list(expected_instruments) if expected_instruments is not None else listed
    absent = [i for i in expected if i not in instruments]
    if absent:
        failures.append(f"instruments absent from the combined table: {', '.join(absent)}")
    report = QualityReport(
        csv_rows=csv_rows,
        combined_rows=counts.combined_rows,
        rejected_rows=counts.rejected_rows,
        bad_metadata_rows=counts.bad_metadata_rows,
        orphan_objects=counts.orphan_objects,
        instruments=instruments,
        non_finite=non_finite,
        failures=failures,
    )
    log.info("quality gate:\n%s", report)
    if failures:
        raise QualityError(f"quality gate failed:\n{report}")
    return report
