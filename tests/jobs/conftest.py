"""Databases for the job kernel's tests: a migrated one per module and backend (SQLite and the real
PostgreSQL), shared by the module's tests, each of which works in a tenant of its own; and one per
test for the tests that read the queue across tenants."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aima.storage.relational import Database

BACKENDS = ["sqlite", "postgresql"]
POOL = 12  # more connections than the races' threads, so they really run at once


@pytest.fixture(scope="module", params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """A migrated database for this module (SQLite file, or the session's PostgreSQL database)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('jobs') / 'aima.db'}"
    else:
        url = request.getfixturevalue("pg_database")
    database = Database(url, pool_size=POOL)
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture(params=BACKENDS)
def fresh_db(request: pytest.FixtureRequest) -> Iterator[Database]:
    """A migrated database of this test's own: nothing but its jobs is queued."""
    if request.param == "sqlite":
        yield request.getfixturevalue("sqlite_db")
        return
    database = Database(request.getfixturevalue("private_pg_database"), pool_size=POOL)
    database.migrate()
    yield database
    database.dispose()
