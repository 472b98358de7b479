"""Shared fixtures: real services on loopback (PostgreSQL, Redis, NATS JetStream) and settings.

`make test` starts the services first (scripts/ensure-services.sh); a fixture that cannot reach
its service fails the test rather than skipping it, so a green run means the service was used.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
import redis

from aima.settings import Settings, load_settings
from aima.storage.relational import Database
from tests.heaviest import heaviest_first
from tests.support import RedisServer

PG_ADMIN_DSN = os.environ.get("AIMA_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
REDIS_URL = os.environ.get("AIMA_TEST_REDIS", f"redis://127.0.0.1:6379/{15 - _WORKER}")
"""Redis database 15 for the first pytest-xdist worker, 14 for the second, ...: a test that empties
its database never empties another worker's (`tests/dev` takes 8 and stays on one worker)."""
NATS_URL = os.environ.get("AIMA_TEST_NATS", "nats://127.0.0.1:4222")


@pytest.fixture(autouse=True)
def _clean_aima_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests choose their settings explicitly; nothing leaks in from the shell."""
    for name in list(os.environ):
        if name.startswith("AIMA_") and not name.startswith("AIMA_TEST_"):
            monkeypatch.delenv(name)


@contextmanager
def _temporary_pg_database() -> Iterator[str]:
    name = f"aima_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_DSN.rsplit("/", 1)[0]
    try:
        yield f"postgresql+psycopg://{base.removeprefix('postgresql://')}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database shared by this test session; dropped afterwards. Yields its URL.

    Tests sharing it must use unique ids; a test that needs the whole database to itself (schema
    comparisons, downgrades) takes `private_pg_database` instead.
    """
    with _temporary_pg_database() as url:
        yield url


@pytest.fixture
def private_pg_database() -> Iterator[str]:
    """A PostgreSQL database for this one test only."""
    with _temporary_pg_database() as url:
        yield url


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The worker's Redis database (`REDIS_URL`), emptied before and after the test."""
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield REDIS_URL
    client.flushdb()
    client.close()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own (free port) that the test may stop and restart."""
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def nats_url() -> str:
    return NATS_URL


@pytest.fixture
def embedded_settings(tmp_path: Path) -> Settings:
    """Embedded-profile settings with every store under a fresh temporary folder."""
    return load_settings(profile="embedded", data_dir=tmp_path / "aima")


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    """A migrated SQLite database of its own, in a file under the test's temporary folder."""
    database = Database(f"sqlite:///{tmp_path / 'aima.db'}")
    database.migrate()
    yield database
    database.dispose()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The heaviest test files first (`tests.heaviest`), for an even end on the xdist workers."""
    heaviest_first(items)
