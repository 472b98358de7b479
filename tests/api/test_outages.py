"""Which errors are outages (`aima.storage.outages`): each adapter's real connection failure is one,
found through the exceptions that wrap or follow it; a mistake is not one, and still answers 500."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from aima.storage import outages
from aima.storage.cache import CacheError
from aima.storage.cache_redis import RedisCache
from aima.storage.documents import DocumentStore
from aima.storage.objects_s3 import S3ObjectStore
from aima.storage.relational import Database
from events.bus import BusError
from functions.runtime.problems import outage_problem
from tests.support import free_port


def test_every_store_and_the_bus_registered_their_connection_failures() -> None:
    assert set(outages.registered().values()) >= {
        "database",
        "object store",
        "document store",
        "cache",
        "event bus",
    }


def test_a_database_that_cannot_be_reached_is_an_outage_a_missing_table_is_not(tmp_path: Path) -> None:
    gone = Database(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/postgres")
    with pytest.raises(Exception) as refused:  # noqa: PT011 - whatever SQLAlchemy raises
        gone.health()
    assert outages.outage_of(refused.value) == "database"
    gone.dispose()

    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(Exception) as mistake, db.engine.connect() as c:  # noqa: PT011
        c.execute(text("SELECT * FROM no_such_table"))
    assert not outages.is_outage(mistake.value)
    holder = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    waiter = sqlite3.connect(tmp_path / "x.db", timeout=0.01, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError, match="locked") as waited:
        waiter.execute("BEGIN IMMEDIATE")
    # as SQLAlchemy raises it once the busy timeout has passed
    assert outages.outage_of(OperationalError("BEGIN IMMEDIATE", {}, waited.value)) == "database"
    holder.close()
    waiter.close()
    db.dispose()


def test_the_cache_object_store_and_document_store_unreachable_are_outages() -> None:
    with pytest.raises(CacheError) as cache:
        RedisCache(f"redis://127.0.0.1:{free_port()}/0", socket_timeout=0.2).get("k")
    assert outages.outage_of(cache.value) == "cache"  # found through the adapter's wrapping

    s3 = S3ObjectStore(
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        bucket="b",
        region="us-east-1",
        access_key_id="x",
        secret_access_key="y",
        connect_timeout=0.5,
        max_attempts=1,
    )
    with pytest.raises(Exception) as objects:  # noqa: PT011 - botocore's own error
        s3.stat("cases/c/media/m/original")
    assert outages.outage_of(objects.value) == "object store"

    documents = DocumentStore.from_uri(f"mongodb://127.0.0.1:{free_port()}", "aima", timeout=0.3)
    with pytest.raises(Exception) as mongo:  # noqa: PT011 - pymongo's own error
        documents.find_one("uploads", {"_id": "x"})
    assert outages.outage_of(mongo.value) == "document store"
    documents.close()


def test_an_outage_is_found_behind_the_errors_it_caused() -> None:
    def audit_after(outage: BaseException) -> BaseException:
        try:
            try:
                raise outage
            except BaseException:
                raise RuntimeError("the failure's audit record could not be written") from None
        except RuntimeError as failed:
            return failed

    followed = audit_after(BusError("publish failed"))  # __context__ only (``from None`` hides the cause)
    assert followed.__cause__ is None
    assert outages.outage_of(followed) == "event bus"
    wrapped = ValueError("wrapped")
    wrapped.__cause__ = BusError("x")
    assert outages.is_outage(ExceptionGroup("tasks", [KeyError("k"), wrapped]))
    looped = ValueError("a")
    other = ValueError("b")
    looped.__context__, other.__context__ = other, looped
    assert not outages.is_outage(looped)  # a cycle ends
    assert outage_problem(KeyError("a bug")) is None


def test_the_problem_names_the_component_and_how_long_to_wait() -> None:
    problem = outage_problem(CacheError("redis: ConnectionError"))
    assert problem is None  # a CacheError of its own is not a connection failure
    cause = CacheError("redis: ConnectionError")
    cause.__cause__ = BusError("down")
    found = outage_problem(cause)
    assert found is not None
    assert (found.status, found.kind, found.headers) == (503, "service-unavailable", {"Retry-After": "5"})
    assert found.extensions == {"component": "event bus"}
    assert found.detail == "The event bus is unavailable right now; send the request again in 5 s."


def test_registering_checks_its_arguments() -> None:
    with pytest.raises(TypeError):
        outages.register("thing", int)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="component"):
        outages.register("", OSError)
