"""Airflow 3 plugin: the InstroPitch prediction page and API in Airflow's API server, and a link to MLflow.

Airflow mounts `fastapi_apps` in its API server, so the page is at `<airflow>/instropitch/`
(`POST /instropitch/predict`, `GET /instropitch/models`, `GET /instropitch/health`), and
`external_views` adds two entries to the UI's navigation: the page (embedded) and the
MLflow UI (a link; its URL is `$INSTROPITCH_MLFLOW_UI_URL`, default http://localhost:5000).

Importing this file is cheap on purpose (Airflow imports plugins in every component):
TensorFlow and the models load on the first request that needs them, from
`$INSTROPITCH_EXPORT_DIR` if set, else the registry champions at `$MLFLOW_TRACKING_URI`.
Airflow does not put its authentication in front of plugin apps: anyone who can reach
the API server can use these endpoints (they only read uploads and predict).
"""

from __future__ import annotations

import os

from airflow.plugins_manager import AirflowPlugin

from instropitch.serving.app import create_app

MLFLOW_UI_URL_ENV = "INSTROPITCH_MLFLOW_UI_URL"
DEFAULT_MLFLOW_UI_URL = "http://localhost:5000"
URL_PREFIX = "/instropitch"


def mlflow_ui_url() -> str:
    return os.environ.get(MLFLOW_UI_URL_ENV, "").strip() or DEFAULT_MLFLOW_UI_URL


class InstroPitchPlugin(AirflowPlugin):
    name = "instropitch"
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "InstroPitch predict"}]
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
