"""Fault injection against the real services: PostgreSQL stopped mid-load, two ETL runs at once, S3 errors.

Faults are injected at the service boundary (a separate PostgreSQL stopped with `pg_ctl`, a
loopback HTTP proxy answering 503 in front of the S3 server, a client wrapper raising the
errors botocore raises), never by mocking the library's own code.
"""

from __future__ import annotations

import http.client
import http.server
import shutil
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from sqlalchemy import Engine, exc, text

from instropitch.audio import features
from instropitch.data import objectstore, warehouse
from instropitch.devstack import stack
from instropitch.pipeline import etl

PREFIX = "TinySOL/"
SHARD_SIZE = 8
CONFIG = features.get_preset("default")

SPECTROGRAM_TABLES = ("notes_spectrogram", "instruments_spectrogram")


# ------------------------------------------------------------------------------ helpers


def fingerprint(engine: Engine) -> dict[str, tuple[int, str]]:
    """(rows, md5 over (path, md5(spectrogram))) of both spectrogram tables and the combined table."""
    queries = {
        table: f"SELECT count(*), md5(coalesce(string_agg(path || ':' || md5(spectrogram), ',' ORDER BY path), '')) "
        f"FROM {table}"
        for table in SPECTROGRAM_TABLES
    }
    queries["instruments_notes_spectrogram"] = (
        "SELECT count(*), md5(coalesce(string_agg(path || ':' || md5(pitch_spectrogram) || ':' "
        "|| md5(instrument_spectrogram), ',' ORDER BY path), '')) FROM instruments_notes_spectrogram"
    )
    with engine.connect() as conn:
        return {name: tuple(conn.execute(text(q)).one()) for name, q in queries.items()}


def spectrogram_rows(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in SPECTROGRAM_TABLES}


def full_run(client: Any, engine: Engine, bucket: str, workers: int = 2) -> dict[str, Any]:
    """The library sequence the DAG runs: extract, plan, every shard, combined table."""
    etl.extract_metadata(client, engine, bucket, PREFIX)
    planned = etl.plan(client, engine, bucket, PREFIX, CONFIG.digest(), shard_size=SHARD_SIZE)
    for shard in planned.shards:
        etl.transform_shard(client, engine, bucket, shard, CONFIG, workers=workers)
    return etl.build_combined(engine, CONFIG.digest())


def make_s3(endpoint: str) -> Any:
    return objectstore.make_client(
        endpoint, aws_access_key_id=stack.S3_ACCESS_KEY, aws_secret_access_key=stack.S3_SECRET_KEY
    )


@pytest.fixture
def fresh_engine(services: stack.Services) -> Iterator[Callable[[], Engine]]:
    """A factory of engines on new, empty databases (schema created) of the shared server."""
    admin = warehouse.engine_for(services.pg_socket_dir, 5432, services.pg_user, None, services.pg_database)
    made: list[tuple[str, Engine]] = []

    def make() -> Engine:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        eng = warehouse.engine_for(services.pg_socket_dir, 5432, services.pg_user, None, name)
        made.append((name, eng))
        warehouse.create_schema(eng)
        return eng

    yield make
    for name, eng in made:
        eng.dispose()
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def clean_fingerprint(
    fresh_engine: Callable[[], Engine], s3: Any, bucket: str, small_dataset: Path
) -> Callable[[], dict[str, tuple[int, str]]]:
    """The fingerprint of a clean single run over the test's bucket, on its own database."""

    def compute() -> dict[str, tuple[int, str]]:
        eng = fresh_engine()
        full_run(s3, eng, bucket)
        return fingerprint(eng)

    return compute


@pytest.fixture
def loaded_bucket(s3: Any, bucket: str, small_dataset: Path) -> str:
    objectstore.upload_folder(s3, bucket, PREFIX, small_dataset)
    return bucket


# ------------------------------------------------------- 1. PostgreSQL stopped mid-load


def test_start_postgres_restarts_a_server_stopped_in_this_process() -> None:
    home = Path(tempfile.mkdtemp(prefix="instropitch-fault-pg-"))
    try:
        socket_dir, database = stack.start_postgres(home)
        stack.stop_postgres(home)
        socket_dir, database = stack.start_postgres(home)
        eng = warehouse.engine_for(socket_dir, 5432, "postgres", None, database)
        try:
            with eng.connect() as conn:
                assert conn.execute(text("SELECT 1")).scalar_one() == 1
        finally:
            eng.dispose()
    finally:
        stack.stop_postgres(home)
        shutil.rmtree(home, ignore_errors=True)


def test_postgres_stopped_mid_load_leaves_nothing_and_the_retry_matches_a_clean_run(
    loaded_bucket: str, s3: Any, clean_fingerprint: Callable[[], dict[str, tuple[int, str]]]
) -> None:
    home = Path(tempfile.mkdtemp(prefix="instropitch-fault-pg-"))
    eng: Engine | None = None
    try:
        socket_dir, database = stack.start_postgres(home)
        eng = warehouse.engine_for(socket_dir, 5432, "postgres", None, database)
        warehouse.create_schema(eng)
        etl.extract_metadata(s3, eng, loaded_bucket, PREFIX)
        planned = etl.plan(s3, eng, loaded_bucket, PREFIX, CONFIG.digest(), shard_size=1000)
        (shard,) = planned.shards
        stopped = []

        def stop_server() -> None:
            stack.stop_postgres(home)
            stopped.append(True)

        with pytest.raises((exc.OperationalError, psycopg.OperationalError)):
            etl.transform_shard(s3, eng, loaded_bucket, shard, CONFIG, before_commit=stop_server)
        assert stopped, "the hook ran before the commit"

        stack.start_postgres(home)
        eng.dispose()
        assert spectrogram_rows(eng) == dict.fromkeys(SPECTROGRAM_TABLES, 0)

        result = etl.transform_shard(s3, eng, loaded_bucket, shard, CONFIG)
        assert result.loaded == len(shard) and result.rejected == 0
        etl.build_combined(eng, CONFIG.digest())
        after_retry = fingerprint(eng)
        assert after_retry["notes_spectrogram"][0] == len(shard)
        assert after_retry == clean_fingerprint()
    finally:
        if eng is not None:
            eng.dispose()
        stack.stop_postgres(home)
        shutil.rmtree(home, ignore_errors=True)


# ------------------------------------------------------------- 2. two ETL runs at once


def _run_threads(targets: list[Callable[[], Any]]) -> list[BaseException | None]:
    errors: list[BaseException | None] = [None] * len(targets)

    def runner(i: int) -> None:
        try:
            targets[i]()
        except BaseException as e:  # noqa: BLE001 - reported to the test
            errors[i] = e

    threads = [threading.Thread(target=runner, args=(i,)) for i in range(len(targets))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive(), "an ETL thread hung"
    return errors


def _no_duplicates(engine: Engine) -> None:
    with engine.connect() as conn:
        for table in ("tinysol_metadata", *SPECTROGRAM_TABLES, "instruments_notes_spectrogram"):
            total, distinct = conn.execute(text(f"SELECT count(*), count(DISTINCT path) FROM {table}")).one()
            assert total == distinct, f"{table}: {total} rows for {distinct} paths"
        total, distinct = conn.execute(text("SELECT count(*), count(DISTINCT (path, stage)) FROM etl_rejects")).one()
        assert total == distinct


def test_two_etl_runs_at_once_load_each_row_once(
    loaded_bucket: str,
    services: stack.Services,
    engine: Engine,
    clean_fingerprint: Callable[[], dict[str, tuple[int, str]]],
) -> None:
    barrier = threading.Barrier(2)

    def one_run() -> None:
        client = make_s3(services.s3_endpoint)
        barrier.wait(timeout=30)
        full_run(client, engine, loaded_bucket)

    errors = _run_threads([one_run, one_run])
    failed = [e for e in errors if e is not None]
    # Upserts by path and the advisory lock around the whole rebuild let both finish.
    assert failed == [], [traceback.format_exception(e) for e in failed]
    _no_duplicates(engine)
    assert fingerprint(engine) == clean_fingerprint()


def test_concurrent_build_combined_does_not_deadlock(
    loaded_bucket: str, s3: Any, engine: Engine, services: stack.Services
) -> None:
    full_run(s3, engine, loaded_bucket)
    # Hold the rebuild lock so both rebuilds are queued behind it, then let them go together.
    gate = engine.connect()
    gate.execute(text("SELECT pg_advisory_lock(hashtext('instropitch.build_combined'))"))
    gate.commit()
    try:
        results: list[BaseException | None] = []

        def start() -> None:
            results.extend(
                _run_threads([lambda: etl.build_combined(engine, CONFIG.digest())] * 2),
            )

        starter = threading.Thread(target=start)
        starter.start()
        deadline = time.monotonic() + 20
        with engine.connect() as conn:
            while True:
                waiting = conn.execute(
                    text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
                ).scalar_one()
                if waiting >= 2 or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        assert waiting == 2
    finally:
        gate.execute(text("SELECT pg_advisory_unlock(hashtext('instropitch.build_combined'))"))
        gate.commit()
        gate.close()
    starter.join(timeout=60)
    assert results == [None, None], [traceback.format_exception(e) for e in results if e is not None]


# ------------------------------------------------------------------------- 3. S3 errors


class FlakyGets:
    """A boto3 S3 client whose first `failures` get_object calls raise `error()`; all else is the real client."""

    def __init__(self, client: Any, failures: int, error: Callable[[], Exception]):
        self._client = client
        self._left = failures
        self._error = error
        self._lock = threading.Lock()
        self.raised = 0

    def get_object(self, **kwargs: Any) -> Any:
        with self._lock:
            fail = self._left > 0
            self._left -= fail
            self.raised += fail
        if fail:
            raise self._error()
        return self._client.get_object(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _connection_error() -> Exception:
    return EndpointConnectionError(endpoint_url="http://127.0.0.1:9/injected")


def _service_unavailable() -> Exception:
    return ClientError(
        {
            "Error": {"Code": "ServiceUnavailable", "Message": "injected"},
            "ResponseMetadata": {"HTTPStatusCode": 503},
        },
        "GetObject",
    )


@pytest.mark.parametrize("error", [_connection_error, _service_unavailable], ids=["connection", "503"])
def test_an_s3_error_after_the_client_retries_fails_the_shard_cleanly_and_the_rerun_loads_all(
    loaded_bucket: str, s3: Any, engine: Engine, error: Callable[[], Exception]
) -> None:
    """Today: an S3 error that survives botocore's own retries is not a reject; the shard raises,
    writes nothing, and the task's retry (Airflow) loads every file."""
    etl.extract_metadata(s3, engine, loaded_bucket, PREFIX)
    (shard,) = etl.plan(s3, engine, loaded_bucket, PREFIX, CONFIG.digest(), shard_size=1000).shards
    flaky = FlakyGets(s3, failures=2, error=error)
    with pytest.raises((EndpointConnectionError, ClientError)):
        etl.transform_shard(flaky, engine, loaded_bucket, shard, CONFIG, workers=2)
    assert flaky.raised >= 1
    assert warehouse.table_counts(engine)["etl_rejects"] == 0
    assert spectrogram_rows(engine) == dict.fromkeys(SPECTROGRAM_TABLES, 0)

    result = etl.transform_shard(flaky, engine, loaded_bucket, shard, CONFIG, workers=2)
    assert (result.loaded, result.rejected) == (len(shard), 0)
    assert spectrogram_rows(engine) == dict.fromkeys(SPECTROGRAM_TABLES, len(shard))


class Flaky503Proxy:
    """A loopback HTTP proxy in front of the S3 server: the first `failures` ranged GETs of each
    chosen key get a 503 (S3's XML error body); every other request is forwarded unchanged."""

    def __init__(self, upstream: str, keys: set[str], failures: int = 2):
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.keys = keys
        self.failures = failures
        self.seen: dict[str, int] = {}
        self.served_503 = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                path = self.path.split("?", 1)[0]
                if self.command == "GET" and "Range" in self.headers and proxy._should_fail(path):
                    payload = (
                        b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>ServiceUnavailable</Code>'
                        b"<Message>injected</Message></Error>"
                    )
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                upstream = http.client.HTTPConnection(*proxy.upstream, timeout=30)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection",)}
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    data = response.read()
                finally:
                    upstream.close()
                self.send_response(response.status, response.reason)
                for k, v in response.getheaders():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _should_fail(self, path: str) -> bool:
        if not any(path.endswith("/" + key) for key in self.keys):
            return False
        with self.lock:
            n = self.seen.get(path, 0)
            self.seen[path] = n + 1
            if n < self.failures:
                self.served_503 += 1
                return True
        return False

    def __enter__(self) -> Flaky503Proxy:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_http_503s_are_retried_by_the_client_and_every_file_loads(
    loaded_bucket: str, s3: Any, engine: Engine, services: stack.Services
) -> None:
    etl.extract_metadata(s3, engine, loaded_bucket, PREFIX)
    (shard,) = etl.plan(s3, engine, loaded_bucket, PREFIX, CONFIG.digest(), shard_size=1000).shards
    flaky_keys = {item["key"] for item in shard[:4]}  # a few keys keep botocore's backoff sleeps short
    with Flaky503Proxy(services.s3_endpoint, flaky_keys, failures=2) as proxy:
        client = make_s3(proxy.endpoint)
        result = etl.transform_shard(client, engine, loaded_bucket, shard, CONFIG, workers=4)
    assert proxy.served_503 == 2 * len(flaky_keys)
    assert (result.loaded, result.rejected) == (len(shard), 0)
    assert spectrogram_rows(engine) == dict.fromkeys(SPECTROGRAM_TABLES, len(shard))
    assert warehouse.table_counts(engine)["etl_rejects"] == 0


def test_an_object_deleted_after_plan_is_rejected_and_the_rest_loads(
    loaded_bucket: str, s3: Any, engine: Engine
) -> None:
    etl.extract_metadata(s3, engine, loaded_bucket, PREFIX)
    (shard,) = etl.plan(s3, engine, loaded_bucket, PREFIX, CONFIG.digest(), shard_size=1000).shards
    gone = shard[1]
    s3.delete_object(Bucket=loaded_bucket, Key=gone["key"])

    result = etl.transform_shard(s3, engine, loaded_bucket, shard, CONFIG, workers=2)

    assert (result.loaded, result.rejected) == (len(shard) - 1, 1)
    with engine.connect() as conn:
        rejects = conn.execute(text("SELECT path, stage, reason FROM etl_rejects")).all()
    assert [(r.path, r.stage) for r in rejects] == [(gone["path"], etl.STAGE_TRANSFORM)]
    assert gone["path"] in rejects[0].reason or gone["key"] in rejects[0].reason
