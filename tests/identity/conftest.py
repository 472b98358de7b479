"""Fixtures of the identity tests: a migrated database of each kind, and a user directory on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from aima.identity.users import UserDirectory
from aima.storage.relational import Database


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated, empty database of its own (SQLite file or a private PostgreSQL database)."""
    url = (
        f"sqlite:///{tmp_path / 'aima.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("private_pg_database")
    )
    database = Database(url, pool_size=4)
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture
def directory(db: Database) -> UserDirectory:
    return UserDirectory(db)
