"""Registry lookups without MLflow (`serving.registry_lookup`) and the cached start they allow.

The sqlite lookups read the session's real store (`trained_store`) or a copy of it, and are
compared with what `MlflowClient` says about the same versions. The REST lookups ask a
stdlib HTTP server on loopback that answers as an MLflow tracking server does: MLflow's own
`ModelVersion` messages serialised with MLflow's `message_to_json` (a real `mlflow server`
takes ~30 s to boot on 2 cores). The start without MLflow runs in child processes, whose
`sys.modules` is the proof.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from support.cli import COMMAND, cli_env
from support.tones import SR, tone

from instropitch import audio
from instropitch.serving import registry_lookup
from instropitch.serving.registry_lookup import LookupUnavailable, VersionRecord

ROLES = ("pitch", "instrument")


@pytest.fixture
def tracking(trained_store, monkeypatch) -> str:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained_store.uri)
    monkeypatch.delenv("INSTROPITCH_EXPORT_DIR", raising=False)
    return trained_store.uri


def client_record(uri: str, name: str, *, alias: str | None = None, version: str | None = None) -> VersionRecord:
    """What the MLflow client says, in the lookup's terms."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    mv = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version)
    return VersionRecord(name=name, version=str(mv.version), run_id=mv.run_id, tags=dict(mv.tags))


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` with its content hash: a read-only reader changes none and adds none."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


def copied_store(trained_store, dest: Path) -> str:
    """A copy of the session store's database (its artifacts stay where they are): free to change."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(trained_store.root / "mlflow.db", dest / "mlflow.db")
    return f"sqlite:///{dest / 'mlflow.db'}"


# ------------------------------------------------------------------------- sqlite


def test_sqlite_lookup_reads_what_the_mlflow_client_reads(trained_store, tracking):
    before = snapshot(trained_store.root)
    for role in ROLES:
        name = f"instropitch-{role}"
        got = registry_lookup.lookup(trained_store.uri, name, alias="champion")
        assert got == client_record(trained_store.uri, name, alias="champion")
        assert got.version == trained_store.versions[role] and got.run_id and got.tags
    assert registry_lookup.lookup(trained_store.uri, "instropitch-pitch", version="2") == client_record(
        trained_store.uri, "instropitch-pitch", version="2"
    )
    assert snapshot(trained_store.root) == before


def test_sqlite_lookup_leaves_misses_and_odd_stores_to_mlflow(trained_store, tmp_path, monkeypatch):
    uri = trained_store.uri
    for kwargs in ({"alias": "nope"}, {"version": "99"}, {"version": "two"}, {"alias": "latest"}):
        with pytest.raises(LookupUnavailable):
            registry_lookup.lookup(uri, "instropitch-pitch", **kwargs)
    with pytest.raises(LookupUnavailable):
        registry_lookup.lookup(uri, "instropitch-bass", alias="champion")

    missing = tmp_path / "none" / "mlflow.db"
    (tmp_path / "none").mkdir()
    with pytest.raises(LookupUnavailable, match="read-only"):
        registry_lookup.lookup(f"sqlite:///{missing}", "instropitch-pitch", alias="champion")
    assert list((tmp_path / "none").iterdir()) == []  # mode=ro never creates the file

    import sqlite3

    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE notes (path TEXT)")
    with pytest.raises(LookupUnavailable, match="no MLflow model registry tables"):
        registry_lookup.lookup(f"sqlite:///{other}", "instropitch-pitch", alias="champion")

    for odd in ("sqlite://", "sqlite:///:memory:", f"sqlite:///{other}?timeout=5", "postgresql://u@h/db", "file:///x"):
        with pytest.raises(LookupUnavailable):
            registry_lookup.lookup(odd, "instropitch-pitch", alias="champion")

    monkeypatch.setenv("MLFLOW_REGISTRY_URI", "sqlite:////elsewhere.db")  # the registry lives somewhere else
    with pytest.raises(LookupUnavailable, match="MLFLOW_REGISTRY_URI"):
        registry_lookup.lookup(uri, "instropitch-pitch", alias="champion")


def test_sqlite_lookup_follows_a_moved_alias_and_hides_deleted_versions(trained_store, tmp_path, monkeypatch):
    import mlflow

    uri = copied_store(trained_store, tmp_path / "store")
    monkeypatch.chdir(tmp_path / "store")
    relative = "sqlite:///mlflow.db"  # relative to the working folder, as SQLAlchemy reads it
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert registry_lookup.lookup(relative, "instropitch-pitch", alias="champion").version == "1"
    client.set_registered_model_alias("instropitch-pitch", "champion", "2")
    moved = registry_lookup.lookup(relative, "instropitch-pitch", alias="champion")
    assert moved == client_record(uri, "instropitch-pitch", alias="champion") and moved.version == "2"
    client.delete_model_version("instropitch-pitch", "2")
    with pytest.raises(LookupUnavailable):
        registry_lookup.lookup(relative, "instropitch-pitch", version="2")
    with pytest.raises(LookupUnavailable):  # MLflow dropped the alias with the version
        registry_lookup.lookup(relative, "instropitch-pitch", alias="champion")


# --------------------------------------------------------------------------- REST


class StandIn:
    """A tracking server's two registry reads, answered from a real store as MLflow's server answers them."""

    def __init__(self, store_uri: str):
        import mlflow

        self.client = mlflow.MlflowClient(tracking_uri=store_uri, registry_uri=store_uri)  # before any test patches it
        self.requests: list[tuple[str, dict[str, str], str | None]] = []
        self.raw: bytes | None = None  # when set, every answer is this body (200)

    def answer(self, path: str, query: dict[str, str]) -> tuple[int, bytes]:
        import mlflow
        from mlflow.protos.model_registry_pb2 import GetModelVersion, GetModelVersionByAlias
        from mlflow.utils.proto_json_utils import message_to_json

        if self.raw is not None:
            return 200, self.raw
        client = self.client
        try:
            if path == "/api/2.0/mlflow/registered-models/alias":
                mv = client.get_model_version_by_alias(query["name"], query["alias"])
                message = GetModelVersionByAlias.Response(model_version=mv.to_proto())
            elif path == "/api/2.0/mlflow/model-versions/get":
                mv = client.get_model_version(query["name"], query["version"])
                message = GetModelVersion.Response(model_version=mv.to_proto())
            else:
                return 404, b"not found"
        except mlflow.exceptions.MlflowException as exc:
            return exc.get_http_status_code(), exc.serialize_as_json().encode()
        return 200, message_to_json(message).encode()


@pytest.fixture
def stand_in(trained_store) -> Iterator[tuple[str, StandIn]]:
    server_state = StandIn(trained_store.uri)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query))
            server_state.requests.append((url.path, query, self.headers.get("Authorization")))
            status, body = server_state.answer(url.path, query)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server_state
    finally:
        server.shutdown()
        server.server_close()


def test_rest_lookup_reads_the_documented_endpoints(trained_store, stand_in, monkeypatch):
    url, server = stand_in
    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    for role in ROLES:
        name = f"instropitch-{role}"
        assert registry_lookup.lookup(url + "/", name, alias="champion") == client_record(
            trained_store.uri, name, alias="champion"
        )
    assert registry_lookup.lookup(url, "instropitch-pitch", version="2") == client_record(
        trained_store.uri, "instropitch-pitch", version="2"
    )
    assert server.requests == [
        ("/api/2.0/mlflow/registered-models/alias", {"name": "instropitch-pitch", "alias": "champion"}, None),
        ("/api/2.0/mlflow/registered-models/alias", {"name": "instropitch-instrument", "alias": "champion"}, None),
        ("/api/2.0/mlflow/model-versions/get", {"name": "instropitch-pitch", "version": "2"}, None),
    ]

    server.requests.clear()
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "t0ken")
    registry_lookup.lookup(url, "instropitch-pitch", alias="champion")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "ann")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "s3cret")  # MLflow prefers basic auth when both are set
    registry_lookup.lookup(url, "instropitch-pitch", alias="champion")
    assert [auth for _, _, auth in server.requests] == [
        "Bearer t0ken",
        "Basic " + base64.b64encode(b"ann:s3cret").decode(),
    ]


def test_rest_lookup_leaves_errors_and_odd_answers_to_mlflow(stand_in, monkeypatch):
    url, server = stand_in
    with pytest.raises(LookupUnavailable, match="HTTP 400"):  # an unknown alias is INVALID_PARAMETER_VALUE
        registry_lookup.lookup(url, "instropitch-pitch", alias="nope")
    with pytest.raises(LookupUnavailable, match="HTTP 404"):  # RESOURCE_DOES_NOT_EXIST
        registry_lookup.lookup(url, "instropitch-bass", version="1")
    for body in (
        b"<html>proxy login</html>",
        b"{}",
        json.dumps({"model_version": {"name": "other", "version": "1"}}).encode(),
    ):
        server.raw = body
        with pytest.raises(LookupUnavailable):
            registry_lookup.lookup(url, "instropitch-pitch", alias="champion")
    server.raw = None
    asked = len(server.requests)
    monkeypatch.setenv("MLFLOW_TRACKING_AUTH", "custom_plugin")  # an auth plugin only MLflow can run
    with pytest.raises(LookupUnavailable, match="MLFLOW_TRACKING_AUTH"):
        registry_lookup.lookup(url, "instropitch-pitch", alias="champion")
    monkeypatch.delenv("MLFLOW_TRACKING_AUTH")
    with pytest.raises(LookupUnavailable, match="credentials"):
        registry_lookup.lookup(url.replace("http://", "http://ann:pw@"), "instropitch-pitch", alias="champion")
    assert len(server.requests) == asked
    server.raw = b"{}"
    with pytest.raises(LookupUnavailable):  # nobody listening
        registry_lookup.lookup("http://127.0.0.1:9", "instropitch-pitch", alias="champion")


def test_a_tracking_server_with_cached_versions_needs_no_mlflow_client(predictor, stand_in, tmp_path, monkeypatch):
    """`from_registry(tracking_uri=URL)`: the two REST lookups and the cache under that URL are all it reads."""
    import mlflow

    from instropitch.serving import modelcache
    from instropitch.serving.predictor import Predictor

    url, server = stand_in
    monkeypatch.setenv("INSTROPITCH_CACHE", str(tmp_path / "cache"))
    for model in predictor.models.values():  # what a first start through the MLflow client would have cached
        info = model.info
        entry = modelcache.Entry(model=model.onnx, layout=model.layout, converted=False)
        modelcache.write(modelcache.entry_dir(url, info.registered_model, info.version), entry, info.run_id)

    def forbidden(*args, **kwargs):
        raise AssertionError("both versions are cached: the MLflow client is not needed")

    monkeypatch.setattr(mlflow, "MlflowClient", forbidden)
    served = Predictor.from_registry(tracking_uri=url)
    assert served.describe() == {**predictor.describe(), "location": url}
    assert [path for path, _, _ in server.requests] == ["/api/2.0/mlflow/registered-models/alias"] * 2


def test_parse_model_version_takes_the_message_as_mlflow_serialises_it():
    body = {
        "model_version": {
            "name": "instropitch-pitch",
            "version": "3",
            "creation_timestamp": 1764500000000,
            "run_id": "abc123",
            "status": "READY",
            "tags": [{"key": "promotion.new_score", "value": "0.9"}, {"key": "empty"}],
            "aliases": ["champion"],
        }
    }
    assert registry_lookup.parse_model_version(body, "instropitch-pitch") == VersionRecord(
        name="instropitch-pitch", version="3", run_id="abc123", tags={"promotion.new_score": "0.9", "empty": ""}
    )
    body["model_version"].pop("run_id")
    body["model_version"].pop("tags")
    assert registry_lookup.parse_model_version(body, "instropitch-pitch").run_id is None


# ------------------------------------------------------------- the cached start


def test_tracking_uri_is_the_key_mlflow_would_report(monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////from/env.db")
    assert registry_lookup.tracking_uri("http://given:5000") == "http://given:5000"
    assert registry_lookup.tracking_uri(None) == mlflow.get_tracking_uri() == "sqlite:////from/env.db"


def test_a_cached_version_loads_without_the_mlflow_client_and_follows_the_alias(
    predictor, trained_store, tmp_path, monkeypatch
):
    import mlflow

    from instropitch.serving.predictor import Predictor

    uri = copied_store(trained_store, tmp_path / "store")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("INSTROPITCH_CACHE", str(tmp_path / "cache"))
    note = tmp_path / "n.wav"
    audio.write_wav(note, tone("Vn", 64, seed=3), SR)
    first = Predictor.from_registry()  # fills the cache through the MLflow client

    real_client = mlflow.MlflowClient

    def forbidden(*args, **kwargs):
        raise AssertionError("both versions are cached: the MLflow client is not needed")

    monkeypatch.setattr(mlflow, "MlflowClient", forbidden)
    cached = Predictor.from_registry()
    assert cached.describe() == first.describe() == {**predictor.describe(), "location": uri}
    assert cached.predict_file(note).to_dict() == first.predict_file(note).to_dict()

    # the champion moves: seen at once (v2 is not cached yet, so the MLflow client fetches it) ...
    real_client(tracking_uri=uri, registry_uri=uri).set_registered_model_alias("instropitch-pitch", "champion", "2")
    with pytest.raises(AssertionError, match="not needed"):
        Predictor.from_registry()
    monkeypatch.setattr(mlflow, "MlflowClient", real_client)
    assert Predictor.from_registry().describe()["models"]["pitch"]["version"] == "2"
    # ... and from then on it is cached too
    monkeypatch.setattr(mlflow, "MlflowClient", forbidden)
    moved = Predictor.from_registry().describe()["models"]
    assert (moved["pitch"]["version"], moved["pitch"]["alias"], moved["pitch"]["test_accuracy"]) == (
        "2",
        "champion",
        0.5,
    )
    pinned = Predictor.from_registry({"pitch": "1"}).describe()["models"]["pitch"]
    assert (pinned["version"], pinned["alias"]) == ("1", None)


CHILD = """
import json, sys
from instropitch.cli import main
code = main(sys.argv[1:])
print("RESULT " + json.dumps({"code": code, "mlflow": sorted(m for m in sys.modules if m.split(".")[0] == "mlflow")[:3]}))
"""


def run_cli(argv: list[str], **env: str) -> tuple[dict, str, str]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *argv],
        env=cli_env(drop=("MLFLOW_", "INSTROPITCH_"), **env),
        capture_output=True,
        text=True,
        timeout=300,
    )
    printed, _, result = done.stdout.rpartition("RESULT ")
    assert result, done.stderr[-3000:]
    return json.loads(result), printed, done.stderr


def test_the_cli_predicts_from_a_cached_registry_without_importing_mlflow(predictor, trained_store, tmp_path):
    note = tmp_path / "violin-A4.wav"
    audio.write_wav(note, tone("Vn", 69, amp=0.6, seed=901), SR)
    env = {"MLFLOW_TRACKING_URI": trained_store.uri, "INSTROPITCH_CACHE": str(tmp_path / "cache")}
    cold, cold_out, _ = run_cli(["predict", str(note), "--json"], **env)
    assert cold["code"] == 0 and cold["mlflow"]  # the first start fills the cache through MLflow
    cached, cached_out, stderr = run_cli(["predict", str(note), "--json"], **env)
    assert cached == {"code": 0, "mlflow": []}, stderr
    assert json.loads(cached_out) == json.loads(cold_out) == [predictor.predict_file(note).to_dict()]
    # the same store named by --tracking-uri instead of the environment: the same cache entries
    flag, flag_out, stderr = run_cli(
        ["predict", str(note), "--json", "--tracking-uri", trained_store.uri], INSTROPITCH_CACHE=str(tmp_path / "cache")
    )
    assert flag == {"code": 0, "mlflow": []}, stderr
    assert json.loads(flag_out) == json.loads(cold_out)


def test_a_missing_store_named_in_the_environment_is_one_line_and_creates_nothing(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    note = tmp_path / "x.wav"
    audio.write_wav(note, tone("Fl", 69), SR)
    store = f"sqlite:///{work / 'mlflow.db'}"
    done = subprocess.run(
        [*COMMAND, "predict", str(note)],
        cwd=work,
        env=cli_env(drop=("MLFLOW_", "INSTROPITCH_"), MLFLOW_TRACKING_URI=store, INSTROPITCH_CACHE=str(tmp_path / "c")),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"instropitch: no models: no MLflow store at {store} (set MLFLOW_TRACKING_URI, or --from-export DIR)"
    ]
    assert list(work.iterdir()) == []
    result, _, _ = run_cli(["predict", str(note)], MLFLOW_TRACKING_URI=store, INSTROPITCH_CACHE=str(tmp_path / "c"))
    assert result == {"code": 1, "mlflow": []}
    assert list(work.iterdir()) == [] and not (tmp_path / "c").exists()
