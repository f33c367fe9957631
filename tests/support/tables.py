"""The warehouse tables of a test database, as `warehouse.table_digests` sees them (rows, keys, content md5)."""

from __future__ import annotations

from instropitch.data import warehouse
from instropitch.devstack import stack


def digests(services: stack.Services, database: str) -> dict[str, warehouse.TableDigest]:
    """Every warehouse table's digest in `database` on the embedded PostgreSQL."""
    engine = warehouse.engine_for(services.pg_socket_dir, 5432, services.pg_user, None, database)
    try:
        with engine.connect() as conn:
            return warehouse.table_digests(conn)
    finally:
        engine.dispose()


def assert_equal_without_duplicates(found: dict[str, warehouse.TableDigest], reference: dict) -> None:
    """The same rows and content as the reference, and one row per key in every table."""
    assert found == reference
    assert all(d.rows == d.keys for d in found.values())  # no duplicate rows
