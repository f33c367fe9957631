"""The ETL steps behind the `instropitch_etl` DAG, one function per task.

Each step takes a boto3 S3 client and an SQLAlchemy engine, so the DAG (clients from
Airflow connections), the CLI and the tests all run the same code. What crosses task
boundaries is small and JSON (keys, counts); spectrograms go straight to PostgreSQL.

A run loads one or more *sources* (`parse_sources`): named S3 prefixes, each a folder in
TinySOL's layout with its metadata CSV. Sources share relative paths, so every row is keyed
by (source, path), and extract, plan, skip-if-unchanged, rejects and the quality gate all
work per source. A source left out of a run keeps its rows; the combined table holds every
source in the warehouse (`warehouse.drop_source` forgets one).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import Engine, text

from instropitch.data import objectstore, warehouse
from instropitch.tinysol import (
    METADATA_FILENAME,
    SOURCE_NAME,
    MetadataError,
    RowError,
    parse_metadata,
    pitch_to_midi,
    split_pitch,
)

log = logging.getLogger(__name__)

STAGE_METADATA = "metadata"
STAGE_ORPHAN = "orphan_object"
STAGE_MISSING = "missing_object"
STAGE_TRANSFORM = "transform"

GONE_OR_CHANGED = ("NoSuchKey", "404", "NotFound", "PreconditionFailed", "412")
"""S3 error codes meaning the object listed by `plan` is gone or replaced: rejected, not retried."""


class QualityError(RuntimeError):
    """The loaded data breaks a quality check; the message is the readable report."""


class SourceError(ValueError):
    """A `sources` value that cannot be used; the message says which entry and why."""


# ----------------------------------------------------------------------------- sources

DEFAULT_SOURCES: tuple[str, ...] = (objectstore.DEFAULT_PREFIX,)
"""The default of the DAG param `sources`: the one prefix the demo (and minio-init) uploads."""

SOURCE_ITEM_PATTERN = r"^([A-Za-z0-9][A-Za-z0-9._-]*=.*|[A-Za-z0-9][A-Za-z0-9._-]*/?)$"
"""JSON-schema pattern of one `sources` entry (the DAG param); `parse_sources` says why one fails."""


@dataclass(frozen=True)
class Source:
    """A named dataset: an S3 prefix holding a TinySOL-layout folder and its metadata CSV."""

    name: str
    prefix: str  # normalised: "" (bucket root) or ending with "/"

    @property
    def spec(self) -> str:
        """The `sources` entry that means this source (`PREFIX` when the name is implied)."""
        implied = self.prefix.rstrip("/") == self.name
        return self.prefix if implied else f"{self.name}={self.prefix}"


def parse_source(entry: str) -> Source:
    """One `sources` entry: `PREFIX` (named after the prefix without its slash) or `NAME=PREFIX`."""
    if not isinstance(entry, str):
        raise SourceError(f"sources entry {entry!r}: expected a string PREFIX or NAME=PREFIX")
    text_ = entry.strip()
    if "=" in text_:
        name, prefix = (part.strip() for part in text_.split("=", 1))
        if not name:
            raise SourceError(f"sources entry {entry!r}: the name before '=' is empty")
    else:
        prefix = text_
        name = objectstore.normalise_prefix(prefix).rstrip("/")
        if not name:
            raise SourceError(
                f"sources entry {entry!r}: an empty prefix (the bucket root) needs a name: NAME= (e.g. 'mine=')"
            )
    if not SOURCE_NAME.fullmatch(name):
        hint = f"; name it: 'NAME={prefix}'" if "=" not in text_ else ""
        raise SourceError(
            f"sources entry {entry!r}: source name {name!r} must start with a letter or digit and hold only letters, digits, '.', '_' and '-'{hint}"
        )
    return Source(name, objectstore.normalise_prefix(prefix))


def parse_sources(entries: Sequence[str] | str | None) -> list[Source]:
    """The `sources` param as `Source`s, in the given order; raise `SourceError` with a clear reason.

    Each entry is `PREFIX` (source name = the prefix without its trailing slash, so
    `TinySOL/` is the source `TinySOL`) or `NAME=PREFIX`. Names must be unique and match
    `[A-Za-z0-9._-]+`; two names may not share a prefix. `None` or an empty list is an error
    (a run must say what to load); a single string is taken as a one-entry list.
    Prefixes should not nest (`a/` and `a/b/`): the outer source would list the inner
    one's files as its own objects without metadata.
    """
    if isinstance(entries, str):
        entries = [entries]
    if not entries:
        raise SourceError("sources is empty: give at least one PREFIX or NAME=PREFIX (e.g. ['TinySOL/'])")
    sources = [parse_source(e) for e in entries]
    names: dict[str, Source] = {}
    prefixes: dict[str, Source] = {}
    for source in sources:
        if source.name in names:
            raise SourceError(f"sources: the name {source.name!r} is given twice; names must be unique")
        if source.prefix in prefixes:
            raise SourceError(
                f"sources: {prefixes[source.prefix].name!r} and {source.name!r} both read the prefix {source.prefix!r}"
            )
        names[source.name] = source
        prefixes[source.prefix] = source
    return sources


def sources_from_params(params: Mapping[str, Any]) -> list[Source]:
    """The run's sources from DAG params; an old-style `prefix` conf key still works alone.

    `{"prefix": "X/"}` (the param `sources` replaced) means `sources = ["X/"]` when
    `sources` was left at its default; both set differently is an error.
    """
    sources = params.get("sources")
    legacy = params.get("prefix")
    if legacy:
        if sources is not None and list(sources) not in (list(DEFAULT_SOURCES), [legacy]):
            raise SourceError("give either `sources` or the old `prefix` param, not both")
        log.warning("the param `prefix` is replaced by `sources`; reading sources=[%r]", legacy)
        sources = [legacy]
    return parse_sources(sources if sources is not None else list(DEFAULT_SOURCES))


def _as_source(prefix: str, source: str | None) -> Source:
    """The `Source` of a single-source call: named `source`, or after its prefix."""
    if source is None:
        return parse_source(prefix)
    return parse_source(f"{source}={prefix}")


# --------------------------------------------------------------------------- extract


@dataclass
class ExtractSummary:
    csv_rows: int
    good_rows: int
    bad_rows: int
    source: str = warehouse.DEFAULT_SOURCE


def _row_key(error: RowError) -> str:
    """The reject key of a bad metadata row: its path, or its line number when it has none."""
    return error.path or f"{METADATA_FILENAME}#row{error.row}"


def extract_metadata(
    client: Any, engine: Engine, bucket: str, prefix: str, run_id: str | None = None, source: str | None = None
) -> ExtractSummary:
    """Read a source's metadata CSV from S3 and make its `tinysol_metadata` rows equal its good rows.

    `source` names the rows (default: the prefix without its slash, `TinySOL/` -> `TinySOL`);
    other sources' rows are not touched. Bad rows go to `etl_rejects` (stage `metadata`)
    with the parser's reason; a file that is not TinySOL metadata at all raises and
    changes nothing.
    """
    src = _as_source(prefix, source)
    key = objectstore.metadata_key(src.prefix)
    try:
        data = objectstore.read_object(client, bucket, key)
    except Exception as exc:
        raise MetadataError(f"s3://{bucket}/{key}: cannot read the metadata file ({exc})") from exc
    result = parse_metadata(data)
    with engine.begin() as conn:
        warehouse.replace_metadata(conn, result.rows, src.name)
        warehouse.replace_rejects(
            conn, STAGE_METADATA, [(_row_key(e), str(e)) for e in result.errors], run_id, src.name
        )
    summary = ExtractSummary(len(result.rows) + len(result.errors), len(result.rows), len(result.errors), src.name)
    log.info(
        "metadata of source %s, s3://%s/%s: %d rows, %d good, %d rejected",
        src.name,
        bucket,
        key,
        summary.csv_rows,
        summary.good_rows,
        summary.bad_rows,
    )
    for error in result.errors[:20]:
        log.warning("metadata reject: %s (source %s)", error, src.name)
    return summary


def extract_sources(
    client: Any, engine: Engine, bucket: str, sources: Sequence[Source], run_id: str | None = None
) -> dict[str, ExtractSummary]:
    """`extract_metadata` for each source, each in its own transaction; name -> summary.

    A source whose metadata file cannot be read (a wrong prefix, not TinySOL metadata)
    does not keep the others from loading; after all were tried, one `MetadataError`
    names every source that failed.
    """
    summaries: dict[str, ExtractSummary] = {}
    failures: list[str] = []
    for src in sources:
        try:
            summaries[src.name] = extract_metadata(client, engine, bucket, src.prefix, run_id, source=src.name)
        except MetadataError as exc:
            log.error("source %s: %s", src.name, exc)
            failures.append(f"source {src.name}: {exc}")
    if failures:
        raise MetadataError("\n".join(failures))
    return summaries


# ------------------------------------------------------------------------------ plan


@dataclass
class PlanResult:
    """What the transform will do: shards of objects, and how many were skipped or refused."""

    shards: list[list[dict[str, Any]]]
    to_transform: int
    skipped_unchanged: int
    orphan_objects: int
    missing_objects: int
    per_source: dict[str, dict[str, int]] = field(default_factory=dict)


def _plan_source(
    client: Any, engine: Engine, bucket: str, src: Source, feature_digest: str, run_id: str | None
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The objects of one source to transform (each tagged with its source), and its counts."""
    objects = objectstore.list_audio(client, bucket, src.prefix)
    with engine.begin() as conn:
        metadata = {
            r.path: (r.instrument_abbr, r.family, r.pitch)
            for r in conn.execute(
                text("SELECT path, instrument_abbr, family, pitch FROM tinysol_metadata WHERE source = :source"),
                {"source": src.name},
            )
        }
        loaded = warehouse.loaded_objects(conn, src.name)
        by_path = {o.path: o for o in objects}
        orphans = [
            (o.path, f"s3://{bucket}/{o.key} has no row in {METADATA_FILENAME}")
            for o in objects
            if o.path not in metadata
        ]
        missing = [
            (path, f"{METADATA_FILENAME} lists it but s3://{bucket}/{src.prefix}{path} does not exist")
            for path in sorted(metadata)
            if path not in by_path
        ]
        warehouse.replace_rejects(conn, STAGE_ORPHAN, orphans, run_id, src.name)
        warehouse.replace_rejects(conn, STAGE_MISSING, missing, run_id, src.name)

    work = []
    skipped = 0
    for obj in objects:
        if obj.path not in metadata:
            continue
        if loaded.get(obj.path) == (obj.etag, feature_digest):
            skipped += 1
            continue
        instrument, family, pitch = metadata[obj.path]
        work.append({**asdict(obj), "source": src.name, "instrument": instrument, "family": family, "pitch": pitch})
    counts = {
        "objects": len(objects),
        "to_transform": len(work),
        "skipped_unchanged": skipped,
        "orphan_objects": len(orphans),
        "missing_objects": len(missing),
    }
    log.info(
        "plan, source %s (s3://%s/%s): %d objects, %d to transform, %d unchanged, %d without metadata, "
        "%d metadata rows without object",
        src.name,
        bucket,
        src.prefix,
        len(objects),
        len(work),
        skipped,
        len(orphans),
        len(missing),
    )
    return work, counts


def plan_sources(
    client: Any,
    engine: Engine,
    bucket: str,
    sources: Sequence[Source],
    feature_digest: str,
    shard_size: int = 200,
    run_id: str | None = None,
) -> PlanResult:
    """List each source's audio objects, match them with that source's metadata rows, and shard what needs work.

    Everything is per source: an object already loaded for its source with the same
    ETag and feature digest is skipped (a nightly run over unchanged sources transforms
    nothing), and orphan/missing rejects are replaced per source. Shards may mix
    sources: the work of all sources is cut into shards of `shard_size` in source
    order, each item carrying its `source`.
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be at least 1, got {shard_size}")
    work: list[dict[str, Any]] = []
    per_source: dict[str, dict[str, int]] = {}
    for src in sources:
        items, counts = _plan_source(client, engine, bucket, src, feature_digest, run_id)
        work.extend(items)
        per_source[src.name] = counts
    shards = [work[i : i + shard_size] for i in range(0, len(work), shard_size)]
    total = {
        k: sum(c[k] for c in per_source.values()) for k in ("skipped_unchanged", "orphan_objects", "missing_objects")
    }
    result = PlanResult(
        shards, len(work), total["skipped_unchanged"], total["orphan_objects"], total["missing_objects"], per_source
    )
    log.info(
        "plan: %d sources, %d objects to transform in %d shards, %d unchanged, %d without metadata, "
        "%d metadata rows without object",
        len(per_source),
        len(work),
        len(shards),
        result.skipped_unchanged,
        result.orphan_objects,
        result.missing_objects,
    )
    return result


def plan(
    client: Any,
    engine: Engine,
    bucket: str,
    prefix: str,
    feature_digest: str,
    shard_size: int = 200,
    run_id: str | None = None,
    source: str | None = None,
) -> PlanResult:
    """`plan_sources` for one source: `prefix`, named `source` (default: after the prefix)."""
    return plan_sources(client, engine, bucket, [_as_source(prefix, source)], feature_digest, shard_size, run_id)


@dataclass
class ShardResult:
    loaded: int
    rejected: int
    seconds: float
    rejects: list[tuple[str, str]] = field(default_factory=list)
    """(path, reason) of each refused object; `reject_sources` holds the source of each, in the same order."""
    reject_sources: list[str] = field(default_factory=list)


WHOLE_OBJECT_MAX = 2 * 1024 * 1024
"""WAV objects up to this size are fetched with one GET instead of ranged reads of the parts needed.

A GET costs far more than its bytes: ~6 ms of CPU per request (boto3 plus the loopback moto
server) against ~4 ms per MB on the 2-core bench, and 20–50 ms of latency on AWS against
~10 ms per MB. The ranged path needs 3 GETs per note (header, pitch window, instrument
window), so for TinySOL's notes (0.2–0.9 MB) one whole-object GET is the cheaper read;
longer recordings keep fetching only the seconds the features use, unless the features locate
the note, which reads every sample (`reads_by_ranges`). Other formats (FLAC,
MP3, ...) are decoded from the start, so they are always fetched with one GET.
"""


def reads_by_ranges(key: str, size: int, config: Any) -> bool:
    """A large WAV whose features need only their windows; otherwise one GET of the whole object
    (`config.locate_note` reads every sample to find the note)."""
    from instropitch import audio

    return key.lower().endswith(audio.FORMAT_EXTENSIONS["WAV"]) and size > WHOLE_OBJECT_MAX and not config.locate_note


def _transform_one(client: Any, bucket: str, item: dict[str, Any], config: Any) -> warehouse.LoadedNote:
    from instropitch.audio import features

    size = int(item["size"])
    # min_fetch = size: the header read fetches the whole object, every later read is served from it.
    min_fetch = 65536 if reads_by_ranges(item["key"], size, config) else max(size, 1)
    reader = objectstore.RangedObjectReader(client, bucket, item["key"], size, etag=item["etag"], min_fetch=min_fetch)
    result = features.compute_features(reader, config, name=item["path"])
    for name, array in (("pitch", result.pitch), ("instrument", result.instrument)):
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{item['path']}: {name} spectrogram holds NaN or inf")
    note, octave = split_pitch(item["pitch"])
    return warehouse.LoadedNote(
        source=item.get("source", warehouse.DEFAULT_SOURCE),
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

    Each item carries its `source` (as `plan_sources` made it); a shard may mix sources.
    A file that cannot be decoded goes to `etl_rejects` with its source and the shard goes on; any other
    failure (database, network) raises and leaves nothing of the shard behind, so the
    task's retry starts clean. `before_commit` is a hook for fault-injection tests.
    """
    from botocore.exceptions import ClientError

    from instropitch.audio import AudioError

    started = time.perf_counter()
    loaded: list[warehouse.LoadedNote] = []
    rejects: list[tuple[str, str]] = []
    reject_sources: list[str] = []

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
        for i, (item, outcome) in enumerate(zip(shard, pool.map(work, shard), strict=True), start=1):
            if isinstance(outcome, warehouse.LoadedNote):
                loaded.append(outcome)
            else:
                source = item.get("source", warehouse.DEFAULT_SOURCE)
                rejects.append(outcome)
                reject_sources.append(source)
                log.warning("reject (source %s) %s", source, outcome[1])
            if i % 50 == 0 or i == len(shard):
                log.info("transformed %d/%d (%d rejected)", i, len(shard), len(rejects))

    with engine.begin() as conn:
        warehouse.upsert_spectrograms(conn, loaded)
        for source in sorted(set(reject_sources)):
            mine = [r for r, s in zip(rejects, reject_sources, strict=True) if s == source]
            warehouse.record_rejects(conn, STAGE_TRANSFORM, mine, run_id, source)
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
    return ShardResult(len(loaded), len(rejects), seconds, rejects, reject_sources)


def build_combined(engine: Engine, feature_digest: str) -> dict[str, Any]:
    """Rebuild the combined table from the two spectrogram tables and the metadata."""
    result = warehouse.build_combined(engine, feature_digest)
    log.info("instruments_notes_spectrogram rebuilt: %(rows)d rows, digest %(digest)s, changed %(changed)s", result)
    return result


@dataclass
class QualityReport:
    """What the gate checked, summed over the checked sources, and each source's own figures."""

    csv_rows: int
    combined_rows: int
    rejected_rows: int
    bad_metadata_rows: int
    orphan_objects: int
    instruments: list[str]
    non_finite: int
    failures: list[str]
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [
            f"metadata CSV rows: {self.csv_rows} (bad rows {self.bad_metadata_rows})",
            f"loaded (combined table): {self.combined_rows}; refused (missing or unreadable): {self.rejected_rows}",
            f"objects without metadata: {self.orphan_objects}",
            f"instruments present: {len(self.instruments)} ({', '.join(self.instruments)})",
            f"spectrograms with NaN/inf: {self.non_finite}",
        ]
        for name, figures in self.sources.items():
            lines.append(
                f"source {name}: CSV rows {figures['csv_rows']}, loaded {figures['combined_rows']}, "
                f"refused {figures['rejected_rows']}, bad rows {figures['bad_metadata_rows']}, "
                f"without metadata {figures['orphan_objects']}, instruments {len(figures['instruments'])}"
            )
        lines += [f"FAILED: {f}" for f in self.failures] or ["all checks passed"]
        return "\n".join(lines)


def quality_gate(
    engine: Engine,
    csv_rows: int | Mapping[str, int],
    expected_instruments: Sequence[str] | None = None,
) -> QualityReport:
    """Check counts, finiteness and coverage of the combined table; raise `QualityError` if any fails.

    `csv_rows` maps each source this run loaded to its metadata CSV's row count: only
    those sources are checked, each on its own (its rows in the combined table + its
    refused rows + its bad metadata rows = its CSV rows; every instrument its metadata
    lists, or `expected_instruments`, is present in its rows). A plain number checks every
    source in the warehouse, counts summed. Rows of other sources stay in the combined
    table unchecked (they were checked by the run that loaded them).
    """
    if isinstance(csv_rows, Mapping):
        expected_rows: dict[str, int] | None = {str(k): int(v) for k, v in csv_rows.items()}
        names = list(expected_rows)
    else:
        expected_rows = None
        names = list(warehouse.warehouse_sources(engine))
    figures: dict[str, dict[str, Any]] = {}
    with engine.connect() as conn:
        for name in names:
            (counts,) = warehouse.run_sql(conn, "quality_counts", source=name)
            figures[name] = {
                "csv_rows": expected_rows[name] if expected_rows is not None else None,
                "combined_rows": int(counts.combined_rows),
                "rejected_rows": int(counts.rejected_rows),
                "bad_metadata_rows": int(counts.bad_metadata_rows),
                "orphan_objects": int(counts.orphan_objects),
                "instruments": list(counts.instruments or []),
                "listed": list(counts.listed_instruments or []),
            }
    non_finite = 0
    for row in warehouse.iter_combined(engine, names):
        if not (np.isfinite(row.pitch_spectrogram).all() and np.isfinite(row.instrument_spectrogram).all()):
            non_finite += 1
    failures = []

    def accounted(f: dict[str, Any]) -> int:
        return f["combined_rows"] + f["rejected_rows"] + f["bad_metadata_rows"]

    if expected_rows is not None:
        for name, f in figures.items():
            if accounted(f) != f["csv_rows"]:
                failures.append(
                    f"source {name}: metadata rows ({f['csv_rows']}) != loaded ({f['combined_rows']}) "
                    f"+ refused ({f['rejected_rows']}) + bad rows ({f['bad_metadata_rows']}) = {accounted(f)}"
                )
    else:
        total = sum(accounted(f) for f in figures.values())
        if total != csv_rows:
            failures.append(
                f"metadata rows ({csv_rows}) != loaded ({sum(f['combined_rows'] for f in figures.values())}) "
                f"+ refused ({sum(f['rejected_rows'] for f in figures.values())}) "
                f"+ bad rows ({sum(f['bad_metadata_rows'] for f in figures.values())}) = {total}"
            )
        for f in figures.values():
            f["csv_rows"] = accounted(f)
    if non_finite:
        failures.append(f"{non_finite} spectrograms hold NaN or inf")
    for name, f in figures.items():
        expected = list(expected_instruments) if expected_instruments is not None else f["listed"]
        absent = [i for i in expected if i not in f["instruments"]]
        if absent:
            failures.append(f"source {name}: instruments absent from the combined table: {', '.join(absent)}")
    report = QualityReport(
        csv_rows=sum(f["csv_rows"] for f in figures.values()) if expected_rows is not None else int(csv_rows),
        combined_rows=sum(f["combined_rows"] for f in figures.values()),
        rejected_rows=sum(f["rejected_rows"] for f in figures.values()),
        bad_metadata_rows=sum(f["bad_metadata_rows"] for f in figures.values()),
        orphan_objects=sum(f["orphan_objects"] for f in figures.values()),
        instruments=sorted({i for f in figures.values() for i in f["instruments"]}),
        non_finite=non_finite,
        failures=failures,
        sources={name: {k: v for k, v in f.items() if k != "listed"} for name, f in figures.items()},
    )
    log.info("quality gate:\n%s", report)
    if failures:
        raise QualityError(f"quality gate failed:\n{report}")
    return report
