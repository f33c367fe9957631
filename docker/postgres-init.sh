#!/usr/bin/env bash
# First start of the `postgres` service (empty data volume): next to Airflow's metadata database
# (POSTGRES_DB, owned by POSTGRES_USER), create the project's warehouse and MLflow's backend
# store, each owned by its own login role.
#
#   instropitch  - tables the DAGs load and read (connection postgres_default)
#   mlflow       - experiments, runs and the model registry
#
# The official postgres image runs this once, from /docker-entrypoint-initdb.d/, with the
# server listening on its Unix socket only. Passwords come from the environment (see
# .env.example); changing them later needs `docker compose down -v` (a fresh volume) or an
# ALTER ROLE by hand, since this script does not run again.
set -eo pipefail  # the same options as the image entrypoint, which sources non-executable scripts

: "${INSTROPITCH_DB_PASSWORD:?INSTROPITCH_DB_PASSWORD is not set}"
: "${MLFLOW_DB_PASSWORD:?MLFLOW_DB_PASSWORD is not set}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v instropitch_password="$INSTROPITCH_DB_PASSWORD" \
    -v mlflow_password="$MLFLOW_DB_PASSWORD" <<'EOSQL'
CREATE ROLE instropitch LOGIN PASSWORD :'instropitch_password';
CREATE DATABASE instropitch OWNER instropitch;
CREATE ROLE mlflow LOGIN PASSWORD :'mlflow_password';
CREATE DATABASE mlflow OWNER mlflow;
EOSQL

echo "postgres-init: created databases instropitch and mlflow next to ${POSTGRES_DB}"
