"""Helpers shared by the test modules (the fixtures built on them are in tests/conftest.py).

Test modules import from here (`from support.tones import tone`), never from each other:
`tests/` is on pytest's `pythonpath` (pyproject.toml), so `support` imports from every
test folder. One module per concern: `tones` (synthetic notes as arrays and WAV bytes),
`pitch` (an f0 estimator), `hostile_wavs` (malformed WAV files), `models` (tiny learnable
data, recipes and the trained registry store), `mlflow_store` (a throw-away MLflow store),
`cli` (the `instropitch` command in a child process), `airflow_api` (the REST API v2 of
running Airflow services), `tables` (the warehouse tables' digests).
"""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
"""The tests/ folder (on `sys.path` of a child process that imports `support`)."""

ROOT = TESTS.parent
"""The repository: models/, dags/, plugins/, docker-compose.yaml, include/."""
