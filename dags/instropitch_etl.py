"""
### instropitch_etl

Extracts one or more *sources* from S3 — each an S3 prefix holding a folder in TinySOL's
layout and its `TinySOL_metadata.csv` (the real TinySOL, a synthetic render, your own
recordings) — turns every WAV into a pitch and an instrument spectrogram, loads them into
PostgreSQL and builds the combined table that `instropitch_training` learns from. Every
row carries its source; the key of every table is (source, path).

Param `sources`: one entry per line in the trigger form, `PREFIX` (named after the prefix,
`TinySOL/` is the source `TinySOL`) or `NAME=PREFIX` (e.g. `fluid=renders/fluidr3/`).

1. `create_schema` — tables from `instropitch/data/sql/schema.sql` (if absent); migrates an older warehouse.
2. `extract_metadata` — each source's metadata CSV into its rows of `tinysol_metadata`; bad rows to `etl_rejects`.
   A source not in this run keeps its rows.
3. `plan` — list each source's WAV objects; skip those loaded for that source with the same ETag and feature
   config; shard the rest (a shard may mix sources).
4. `transform` — mapped over shards: ranged reads, spectrograms, one transaction per shard.
5. `build_combined` — `instropitch/data/sql/build_combined.sql`, every source in the warehouse, swapped in atomically.
6. `quality_gate` — per source of this run: counts, NaN/inf, every instrument present.
7. `publish` — updates the `instruments_notes_spectrogram` Asset when the table changed.

Runs daily at 01:00 UTC (new or changed objects only), or when triggered by hand.

Connections: `aws_default` (S3; `endpoint_url` in extra for MinIO/moto), `postgres_default`.
Logic lives in `instropitch.pipeline.etl` (include/instropitch/pipeline/etl.py); this file only wires it.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Asset, CronTriggerTimetable, Param, dag, get_current_context, task
from airflow.sdk.configuration import conf

# Seconds before a failed task's retry; `[instropitch] etl_retry_delay` in airflow.cfg or
# AIRFLOW__INSTROPITCH__ETL_RETRY_DELAY (the fault e2e tests shorten it).
RETRY_DELAY = timedelta(seconds=conf.getint("instropitch", "etl_retry_delay", fallback=30))

# Named by the table it stands for. A name-only Asset (no URI scheme) keeps DAG parsing
# fast: a scheme makes Airflow load every provider's URI handlers (~1.4 s) at parse time.
COMBINED_TABLE = Asset(name="instruments_notes_spectrogram")

# Same as instropitch.pipeline.etl.SOURCE_ITEM_PATTERN (not imported: the library's imports are kept
# out of DAG parsing); tests/dags checks they agree. The library parses with clearer errors.
SOURCE_ITEM_PATTERN = r"^([A-Za-z0-9][A-Za-z0-9._-]*=.*|[A-Za-z0-9][A-Za-z0-9._-]*/?)$"


def _run_id() -> str:
    return get_current_context()["run_id"]


def _params() -> dict:
    return get_current_context()["params"]


@dag(
    dag_id="instropitch_etl",
    # 01:00 UTC, an hour before the nightly training. No start_date: with one in the past,
    # Airflow would run the latest missed interval as soon as the DAG is unpaused. And
    # run_immediately=timedelta(0), not the default False: Airflow 3.3's False still runs the past
    # slot when unpaused within 10 % of the period after it (01:00-03:24; apache/airflow#64162).
    schedule=CronTriggerTimetable("0 1 * * *", timezone="UTC", run_immediately=timedelta(0)),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["instropitch", "etl"],
    default_args={"owner": "instropitch", "retries": 2, "retry_delay": RETRY_DELAY},
    params={
        "bucket": Param(
            "instropitch", type="string", minLength=3, maxLength=63, pattern=r"^[a-z0-9][a-z0-9.\-]*[a-z0-9]$"
        ),
        # An array of strings: the trigger form shows a text box, one entry per line.
        "sources": Param(
            ["TinySOL/"],
            type="array",
            minItems=1,
            maxItems=64,
            uniqueItems=True,
            items={"type": "string", "minLength": 1, "maxLength": 600, "pattern": SOURCE_ITEM_PATTERN},
            title="Sources",
            description="datasets to load, one per line: PREFIX (source named after it, TinySOL/ -> TinySOL) "
            "or NAME=PREFIX; names unique, letters, digits, '.', '_', '-'",
        ),
        "features": Param("default", type="string", description="feature preset (instropitch.audio.features.PRESETS)"),
        "shard_size": Param(200, type="integer", minimum=1, maximum=5000, description="WAV objects per transform task"),
    },
)
def instropitch_etl():
    @task
    def create_schema() -> None:
        from instropitch.data.warehouse import create_schema
        from instropitch.pipeline.connections import warehouse_engine

        create_schema(warehouse_engine())

    @task
    def extract_metadata() -> dict:
        params = _params()
        from dataclasses import asdict

        from instropitch.pipeline import etl
        from instropitch.pipeline.connections import s3_client, warehouse_engine

        sources = etl.sources_from_params(params)
        summaries = etl.extract_sources(s3_client(), warehouse_engine(), params["bucket"], sources, _run_id())
        return {
            "csv_rows": sum(s.csv_rows for s in summaries.values()),
            "sources": {name: asdict(s) for name, s in summaries.items()},
        }

    @task
    def plan() -> list[list[dict]]:
        params = _params()
        from instropitch.audio.features import get_preset
        from instropitch.pipeline import etl
        from instropitch.pipeline.connections import s3_client, warehouse_engine

        digest = get_preset(params["features"]).digest()
        sources = etl.sources_from_params(params)
        result = etl.plan_sources(
            s3_client(), warehouse_engine(), params["bucket"], sources, digest, params["shard_size"], _run_id()
        )
        return result.shards

    @task(max_active_tis_per_dagrun=4)
    def transform(shard: list[dict]) -> dict:
        params = _params()
        from instropitch.audio.features import get_preset
        from instropitch.pipeline import etl
        from instropitch.pipeline.connections import s3_client, warehouse_engine

        result = etl.transform_shard(
            s3_client(), warehouse_engine(), params["bucket"], shard, get_preset(params["features"]), _run_id()
        )
        return {"loaded": result.loaded, "rejected": result.rejected, "seconds": round(result.seconds, 2)}

    @task(trigger_rule="none_failed")
    def build_combined() -> dict:
        params = _params()
        from instropitch.audio.features import get_preset
        from instropitch.pipeline import etl
        from instropitch.pipeline.connections import warehouse_engine

        return etl.build_combined(warehouse_engine(), get_preset(params["features"]).digest())

    @task
    def quality_gate(extract_summary: dict, combined: dict) -> str:
        from instropitch.pipeline import etl
        from instropitch.pipeline.connections import warehouse_engine

        csv_rows = {name: s["csv_rows"] for name, s in extract_summary["sources"].items()}
        return str(etl.quality_gate(warehouse_engine(), csv_rows))

    @task(outlets=[COMBINED_TABLE])
    def publish(combined: dict, report: str) -> None:
        from airflow.sdk.exceptions import AirflowSkipException

        if not combined["changed"]:
            raise AirflowSkipException("instruments_notes_spectrogram is unchanged: no Asset event, no retraining")
        context = get_current_context()
        context["outlet_events"][COMBINED_TABLE].extra = {"rows": combined["rows"], "digest": combined["digest"]}

    schema = create_schema()
    metadata = extract_metadata()
    shards = plan()
    schema >> metadata >> shards
    loaded = transform.expand(shard=shards)
    combined = build_combined()
    loaded >> combined
    report = quality_gate(metadata, combined)
    publish(combined, report)


instropitch_etl()
