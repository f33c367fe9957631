"""Shared fixtures: real embedded services (PostgreSQL from pip, moto's S3 server on loopback),
throw-away and trained MLflow stores, the champion predictor.

The helpers they are built on live in `support/`; test modules import from there, never
from each other. Every test that needs the embedded services (the `services` fixture,
directly or through `engine`, `s3`, `airflow_env`...) is marked `services` here, so
`-m "not services"` keeps the unit tests (see `make test-unit`).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from support import ROOT
from support.mlflow_store import MlflowStore, throwaway_store
from support.models import TrainedStore, build_trained_store
from support.tables import digests

from instropitch import synth
from instropitch.data import objectstore, warehouse
from instropitch.devstack import airflow_services, local_airflow, stack


@pytest.fixture(scope="session", autouse=True)
def recipes_of_this_checkout() -> Iterator[None]:
    """`models_dir()` is the checkout's `models/` whatever folder a test runs in (some chdir)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INSTROPITCH_MODELS_DIR", str(ROOT / "models"))
        yield


@pytest.fixture(scope="session", autouse=True)
def private_model_cache(tmp_path_factory) -> Iterator[None]:
    """What the registry served is cached in the session's own folder, never in the home (`serving.modelcache`)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INSTROPITCH_CACHE", str(tmp_path_factory.mktemp("model-cache")))
        yield


@pytest.fixture(scope="session")
def services() -> Iterator[stack.Services]:
    """PostgreSQL and the S3 server, started once for the whole session, stopped at its end.

    Not under pytest's tmp folder: PostgreSQL runs as another user (pgserver does that
    when run as root) and pytest makes its tmp root private to the current user.
    """
    home = Path(tempfile.mkdtemp(prefix="instropitch-test-stack-"))
    running = stack.up(home)
    try:
        yield running
    finally:
        stack.down(home)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def database(services: stack.Services) -> Iterator[str]:
    """A fresh, empty database for one test; dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = warehouse.engine_for(services.pg_socket_dir, 5432, services.pg_user, None, services.pg_database)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield name
    finally:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def engine(services: stack.Services, database: str) -> Iterator[Engine]:
    """An engine on the test's own database, with the warehouse schema created."""
    eng = warehouse.engine_for(services.pg_socket_dir, 5432, services.pg_user, None, database)
    warehouse.create_schema(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def s3(services: stack.Services):
    """A boto3 client on the loopback S3 server."""
    return objectstore.make_client(
        services.s3_endpoint, aws_access_key_id=stack.S3_ACCESS_KEY, aws_secret_access_key=stack.S3_SECRET_KEY
    )


@pytest.fixture
def bucket(s3) -> str:
    """A new bucket for one test."""
    name = f"t-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `services` every test whose fixture closure starts the embedded services."""
    for item in items:
        if "services" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.services)


@pytest.fixture(scope="session")
def project_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory) -> Path:
    """A tiny synthetic TinySOL: three instruments, two pitches each, all takes."""
    out = tmp_path_factory.mktemp("synth")
    synth.render_dataset(out, seed=7, instruments=["Vn", "Fl", "Cb"], max_pitches=2, workers=2, progress=False)
    return out


@pytest.fixture(scope="session")
def airflow_base_env(services, tmp_path_factory) -> dict[str, str]:
    env = local_airflow.environment(services, {"AIRFLOW_HOME": str(tmp_path_factory.mktemp("airflow"))})
    local_airflow.migrate(env)
    return env


def on_database(env: dict[str, str], database: str) -> dict[str, str]:
    """Airflow's environment with `postgres_default` on `database` (the warehouse the DAGs write)."""
    postgres = json.loads(env["AIRFLOW_CONN_POSTGRES_DEFAULT"])
    postgres["schema"] = database
    return {**env, "AIRFLOW_CONN_POSTGRES_DEFAULT": json.dumps(postgres)}


@pytest.fixture(scope="session")
def etl_reference(services, small_dataset, airflow_base_env) -> dict[str, warehouse.TableDigest]:
    """The warehouse tables after `instropitch_etl` loads `small_dataset` as `TinySOL/` with `airflow dags test`
    (every task in one process, no executor): what every executor's run of the same data must equal."""
    bucket, database = f"ref-{uuid.uuid4().hex[:10]}", f"ref_{uuid.uuid4().hex[:8]}"
    s3 = objectstore.make_client(
        services.s3_endpoint, aws_access_key_id=stack.S3_ACCESS_KEY, aws_secret_access_key=stack.S3_SECRET_KEY
    )
    objectstore.upload_folder(s3, bucket, "TinySOL/", small_dataset)
    airflow_services.ensure_database(services, database)
    conf = {"bucket": bucket, "sources": ["TinySOL/"], "shard_size": 3}
    result = local_airflow.dags_test("instropitch_etl", on_database(airflow_base_env, database), conf)
    assert result.ok, result.tail()
    found = digests(services, database)
    assert found["instruments_notes_spectrogram"].rows > 0
    return found


@pytest.fixture
def airflow_env(airflow_base_env, services, database, tmp_path) -> dict[str, str]:
    """Airflow's environment with `postgres_default` on this test's own database and its own MLflow store."""
    return {
        **on_database(airflow_base_env, database),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "INSTROPITCH_ARTIFACT_ROOT": str(tmp_path / "mlartifacts"),
    }


# ---------------------------------------------------------------------------- MLflow


@pytest.fixture
def mlflow_store(tmp_path) -> Iterator[MlflowStore]:
    """A throw-away MLflow store in `tmp_path` (also the working folder) for one test."""
    with throwaway_store(tmp_path) as store:
        yield store


@pytest.fixture(scope="session")
def trained_store(tmp_path_factory) -> TrainedStore:
    """Tiny trained champions in a sqlite registry (`support.models.build_trained_store`), built once a session."""
    return build_trained_store(tmp_path_factory.mktemp("predict-store"))


@pytest.fixture(scope="session")
def predictor(trained_store):
    """The champions of `trained_store` loaded once for the session (loading costs a second or two)."""
    from instropitch.serving.predictor import Predictor

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", trained_store.uri)
        return Predictor.from_registry()
