"""Airflow 3 plugin: the InstroPitch prediction page and API in Airflow's API server, and a link to MLflow.

Airflow mounts `fastapi_apps` in its API server, so the page is at `<airflow>/instropitch/`
(`POST /instropitch/predict`, `GET /instropitch/models`, `GET /instropitch/health`), and
`external_views` adds two entries to the UI's navigation: the page (embedded) and the
MLflow UI (a link; its URL is `$INSTROPITCH_MLFLOW_UI_URL`, default http://localhost:5000).

Importing this file is cheap on purpose (Airflow imports plugins in every component):
The models load on the first request that needs them, as portable ONNX models (no
TensorFlow in the API server), from `$INSTROPITCH_EXPORT_DIR` if set, else the registry
champions at `$MLFLOW_TRACKING_URI` (cached on disk after the first download).
Airflow does not put its authentication in front of plugin apps, so this plugin does:
`/predict` and `/models` answer only requests that carry an Airflow login (the UI's
session cookie or an API token, `Authorization: Bearer <JWT from /auth/token>`), checked
by the auth manager as for Airflow's own API; without one they answer 401.
"""

from __future__ import annotations

import os
from typing import Annotated

from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from instropitch.serving.app import create_app

MLFLOW_UI_URL_ENV = "INSTROPITCH_MLFLOW_UI_URL"
DEFAULT_MLFLOW_UI_URL = "http://localhost:5000"
URL_PREFIX = "/instropitch"


def mlflow_ui_url() -> str:
    return os.environ.get(MLFLOW_UI_URL_ENV, "").strip() or DEFAULT_MLFLOW_UI_URL


BEARER = HTTPBearer(auto_error=False)


async def airflow_user(
    request: Request, bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]
) -> object:
    """The logged-in Airflow user, as Airflow's own API resolves it (token or UI cookie); else 401/403.

    Imported on the first request: plugins are imported by every Airflow component, and
    only the API server serves this app.
    """
    from airflow.api_fastapi.core_api.security import get_user

    return await get_user(request, None, bearer)


class InstroPitchPlugin(AirflowPlugin):
    name = "instropitch"
    fastapi_apps = [
        {"app": create_app(auth=[Depends(airflow_user)]), "url_prefix": URL_PREFIX, "name": "InstroPitch predict"}
    ]
    external_views = [
        {
            # Embedded in the Airflow UI at /plugin/instropitch (href relative to the API server's base URL).
            "name": "InstroPitch predict",
            "href": f"{URL_PREFIX.lstrip('/')}/",
            "url_route": "instropitch",
            "destination": "nav",
        },
        {
            # A plain link (no url_route): the MLflow UI refuses to be framed by another origin.
            "name": "MLflow",
            "href": mlflow_ui_url(),
            "destination": "nav",
        },
    ]
