"""Which version a registered model's alias (or number) names, read without importing MLflow.

`import mlflow` and its SQLAlchemy store cost ~4 s of the 5 s a CLI prediction from the
registry took, for one question whose answer fits in a row: which version, from which run,
with which tags. When the versions are already in the model cache (`serving.modelcache`),
that answer is all a start needs, and two kinds of store can give it cheaply:

* `sqlite:///PATH`: the store's own tables (`registered_model_aliases`, `model_versions`,
  `model_version_tags`), opened read-only (`mode=ro`: a missing file is an error, never a new
  empty store, and nothing is migrated), queried as MLflow's `SqlAlchemyStore` does (the
  `default` workspace, deleted versions hidden);
* `http(s)://HOST`: the tracking server's REST API, `GET /api/2.0/mlflow/registered-models/alias`
  and `GET /api/2.0/mlflow/model-versions/get`, with the basic or bearer credentials MLflow
  reads from `MLFLOW_TRACKING_USERNAME`/`_PASSWORD` or `MLFLOW_TRACKING_TOKEN`.

Anything else (another scheme, MLflow settings this module does not implement such as
workspaces, a registry URI of its own, client certificates or auth plugins, the reserved
alias `latest`, and every error, "not found" included) raises `LookupUnavailable`: the caller
then asks the MLflow client, which answers (or words the error) exactly as before.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
HTTP_TIMEOUT_S = 10.0
"""A tracking server that does not answer in time is left to the MLflow client (and its retries)."""
DEFAULT_WORKSPACE = "default"
"""The workspace MLflow's single-tenant SQL store reads (`mlflow.utils.workspace_utils`)."""
DELETED_STAGE = "Deleted_Internal"
"""The stage MLflow's SQL store gives a deleted version it keeps (hidden from every read)."""

_UNSUPPORTED_SETTINGS = (
    "MLFLOW_REGISTRY_URI",
    "MLFLOW_ENABLE_WORKSPACES",
    "MLFLOW_WORKSPACE",
    "MLFLOW_TRACKING_AUTH",
    "MLFLOW_TRACKING_AWS_SIGV4",
    "MLFLOW_TRACKING_CLIENT_CERT_PATH",
    "MLFLOW_TRACKING_SERVER_CERT_PATH",
)
"""MLflow settings that change where or how the registry is read: with any set, MLflow reads it."""


class LookupUnavailable(Exception):
    """This store (or this answer) is left to the MLflow client; the message says why, for debugging."""


@dataclass(frozen=True)
class VersionRecord:
    """What the registry says about one model version: all a cached start needs."""

    name: str
    version: str
    run_id: str | None
    tags: dict[str, str] = field(default_factory=dict)


def tracking_uri(explicit: str | None = None) -> str | None:
    """The tracking URI MLflow would use, as the same string (the model cache's key); None when only MLflow knows.

    `explicit` (what a caller passes to `mlflow.set_tracking_uri`), else, when MLflow is
    already imported, its own `get_tracking_uri()` (it may have been set in this process),
    else `$MLFLOW_TRACKING_URI`. With none of these MLflow picks a default store (which
    depends on what lies in the working folder): None, so the caller asks MLflow.
    """
    if explicit:
        return explicit
    mlflow = sys.modules.get("mlflow")
    if mlflow is not None:
        return str(mlflow.get_tracking_uri())
    return os.environ.get(TRACKING_URI_ENV) or None


def lookup(uri: str, name: str, *, alias: str | None = None, version: str | None = None) -> VersionRecord:
    """The version of registered model `name` that `alias` names, or version `version`; `LookupUnavailable` otherwise."""
    if (alias is None) == (version is None):
        raise ValueError("give exactly one of alias and version")
    configured = [key for key in _UNSUPPORTED_SETTINGS if os.environ.get(key, "").strip()]
    if configured:
        raise LookupUnavailable(f"{', '.join(configured)} set")
    if os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").strip().lower() in ("true", "1"):
        raise LookupUnavailable("MLFLOW_TRACKING_INSECURE_TLS set")
    if alias is not None and alias.lower() == "latest":  # MLflow's reserved alias: the highest version
        raise LookupUnavailable("the reserved alias 'latest'")
    scheme = uri.split(":", 1)[0].lower()
    if scheme == "sqlite":
        return _sqlite_lookup(uri, name, alias, version)
    if scheme in ("http", "https"):
        return _rest_lookup(uri, name, alias, version)
    raise LookupUnavailable(f"no light lookup for {scheme!r} stores")


# ------------------------------------------------------------------------- sqlite


def sqlite_path(uri: str) -> Path:
    """The file a `sqlite:///PATH` URI names (relative to the working folder unless PATH starts with /)."""
    if not uri.startswith("sqlite:///"):
        raise LookupUnavailable(f"not a sqlite file URI: {uri}")
    path = uri.removeprefix("sqlite:///")
    if not path or path == ":memory:" or "?" in path or "%" in path:  # options or escapes: SQLAlchemy's business
        raise LookupUnavailable(f"a sqlite URI this lookup does not parse: {uri}")
    return Path(path)


def _sqlite_lookup(uri: str, name: str, alias: str | None, version: str | None) -> VersionRecord:
    path = sqlite_path(uri)
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error as exc:  # no such file (mode=ro never creates one), no permission
        raise LookupUnavailable(f"cannot open {path} read-only: {exc}") from None
    try:
        columns = {row[1] for row in db.execute("PRAGMA table_info(model_versions)")}
        if not {"name", "version", "run_id", "current_stage"} <= columns:
            raise LookupUnavailable(f"{path} has no MLflow model registry tables")
        scoped = "workspace" in columns  # MLflow 3.x stores with workspaces: only the default one
        params: tuple[str, ...] = (DEFAULT_WORKSPACE,) if scoped else ()
        if alias is not None:
            row = db.execute(
                "SELECT version FROM registered_model_aliases WHERE name = ? AND alias = ? AND workspace = ?"
                if scoped
                else "SELECT version FROM registered_model_aliases WHERE name = ? AND alias = ?",
                (name, alias, *params),
            ).fetchone()
            if row is None:
                raise LookupUnavailable(f"no alias {alias!r} of {name!r}")
            number = int(row[0])
        else:
            try:
                number = int(str(version))
            except ValueError:
                raise LookupUnavailable(f"version {version!r} is not a number") from None
        found = db.execute(
            "SELECT run_id FROM model_versions WHERE name = ? AND version = ? AND current_stage != ? AND workspace = ?"
            if scoped
            else "SELECT run_id FROM model_versions WHERE name = ? AND version = ? AND current_stage != ?",
            (name, number, DELETED_STAGE, *params),
        ).fetchall()
        if len(found) != 1:
            raise LookupUnavailable(f"{len(found)} rows for version {number} of {name!r}")
        tags = db.execute(
            "SELECT key, value FROM model_version_tags WHERE name = ? AND version = ? AND workspace = ?"
            if scoped
            else "SELECT key, value FROM model_version_tags WHERE name = ? AND version = ?",
            (name, number, *params),
        ).fetchall()
    except sqlite3.Error as exc:  # locked, damaged, another schema
        raise LookupUnavailable(f"cannot read {path}: {exc}") from None
    finally:
        db.close()
    run_id = found[0][0]
    return VersionRecord(
        name=name,
        version=str(number),
        run_id=str(run_id) if run_id else None,
        tags={str(k): str(v) for k, v in tags if v is not None},
    )


# --------------------------------------------------------------------------- REST


def _rest_lookup(uri: str, name: str, alias: str | None, version: str | None) -> VersionRecord:
    parts = urllib.parse.urlsplit(uri)
    if "@" in parts.netloc or parts.query or parts.fragment:
        raise LookupUnavailable("credentials or options in the tracking URI")
    if alias is not None:
        endpoint, query = "registered-models/alias", {"name": name, "alias": alias}
    else:
        endpoint, query = "model-versions/get", {"name": name, "version": str(version)}
    url = f"{uri.rstrip('/')}/api/2.0/mlflow/{endpoint}?{urllib.parse.urlencode(query)}"
    request = urllib.request.Request(url, headers={"Accept": "application/json", **_auth_headers()})
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:  # 404 RESOURCE_DOES_NOT_EXIST and friends: MLflow words them
        raise LookupUnavailable(f"{endpoint}: HTTP {exc.code}") from None
    except (OSError, ValueError) as exc:  # refused, timed out, TLS, not JSON
        raise LookupUnavailable(f"{endpoint}: {exc}") from None
    return parse_model_version(body, name)


def parse_model_version(body: Any, name: str) -> VersionRecord:
    """The record in a `{"model_version": {...}}` answer (MLflow's `ModelVersion` message as JSON)."""
    mv = body.get("model_version") if isinstance(body, dict) else None
    if not isinstance(mv, dict) or mv.get("name") != name or not str(mv.get("version") or "").isdigit():
        raise LookupUnavailable(f"an answer that is not a version of {name!r}")
    tags = mv.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, dict) and "key" in t for t in tags):
        raise LookupUnavailable("tags that are not a list of {key, value}")
    return VersionRecord(
        name=name,
        version=str(mv["version"]),
        run_id=str(mv["run_id"]) if mv.get("run_id") else None,
        tags={str(t["key"]): str(t.get("value", "")) for t in tags},
    )


def _auth_headers() -> dict[str, str]:
    """MLflow's own rule: basic auth when a user and password are set, else a bearer token when one is."""
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}
