"""Clients built from Airflow connections: the one place the library meets Airflow.

The DAGs call these inside task bodies. Connections come from the environment
(`AIRFLOW_CONN_AWS_DEFAULT` with `endpoint_url` in its extra, `AIRFLOW_CONN_POSTGRES_DEFAULT`),
so the embedded stack and docker-compose run the same code. Airflow is imported lazily.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

AWS_CONN_ID = "aws_default"
POSTGRES_CONN_ID = "postgres_default"


def s3_client(conn_id: str = AWS_CONN_ID) -> Any:
    """A boto3 S3 client from the Amazon provider's S3Hook (endpoint_url from the connection extra)."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id=conn_id).get_conn()


def warehouse_engine(conn_id: str = POSTGRES_CONN_ID) -> Engine:
    """An SQLAlchemy engine (psycopg 3) on the Postgres connection; its host may be a socket folder."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    from instropitch.data.warehouse import engine_for

    conn = PostgresHook.get_connection(conn_id)
    return engine_for(conn.host, conn.port, conn.login, conn.password, conn.schema)
