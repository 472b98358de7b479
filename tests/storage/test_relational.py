"""The relational store on both backends: SQLite (file) and the real PostgreSQL."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import delete, func, insert, inspect, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError, StatementError

from aima.settings import Settings
from aima.storage.relational import MIGRATIONS, SCHEMA_HEAD, Database, alembic_config
from aima.storage.schema import cases, jobs, media, metadata, processed_events

TABLES = {
    "cases",
    "media",
    "jobs",
    "processed_events",
    "tenants",
    "users",
    "case_members",
    "refresh_tokens",
    "signing_keys",
    "audit_log",
    "audit_heads",
    "config_entries",
    "outbox",
}
HEAD = ScriptDirectory(str(MIGRATIONS)).get_current_head()


def test_the_schema_head_the_kernel_checks_is_alembics_head() -> None:
    assert HEAD == SCHEMA_HEAD


def test_a_current_schema_is_recognised_without_alembic(db: Database) -> None:
    assert db.revision() is None
    db.migrate()
    assert db.revision() == SCHEMA_HEAD
    db.migrate()  # a no-op now
    assert db.revision() == SCHEMA_HEAD


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """An unmigrated database of its own; downgraded to empty afterwards, which tests downgrade()."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'nested' / 'aima.db'}"
    else:
        url = request.getfixturevalue("private_pg_database")
    database = Database(url, pool_size=2)
    yield database
    with database.engine.begin() as connection:
        command.downgrade(alembic_config(connection), "base")
    database.dispose()


def new_id() -> str:
    return str(uuid.uuid4())


def add_case(db: Database, tenant: str = "t1") -> str:
    case_id = new_id()
    with db.session() as s:
        s.execute(insert(cases).values(id=case_id, tenant_id=tenant, name="case"))
    return case_id


def add_media(db: Database, case_id: str, sha: str = "a" * 64) -> str:
    media_id = new_id()
    with db.session() as s:
        s.execute(
            insert(media).values(
                id=media_id,
                tenant_id="t1",
                case_id=case_id,
                sha256=sha,
                size=10,
                content_type="video/mp4",
                object_key=f"{case_id}/{media_id}",
                metadata={"duration": 1.5},
            )
        )
    return media_id


def revision(db: Database) -> str | None:
    with db.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def test_migrate_creates_tables_and_running_it_again_is_a_no_op(db: Database) -> None:
    assert not TABLES & set(inspect(db.engine).get_table_names())
    db.migrate()
    assert set(inspect(db.engine).get_table_names()) >= TABLES
    assert revision(db) == HEAD
    case_id = add_case(db)

    db.migrate()

    assert revision(db) == HEAD
    with db.session() as s:
        assert s.execute(select(cases.c.name, cases.c.status).where(cases.c.id == case_id)).one() == (
            "case",
            "open",
        )


def test_migrations_create_exactly_the_declared_schema(db: Database) -> None:
    db.migrate()
    with db.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), metadata) == []


def test_downgrade_to_base_removes_the_tables(db: Database) -> None:
    db.migrate()
    with db.engine.begin() as connection:
        command.downgrade(alembic_config(connection), "base")
    assert not TABLES & set(inspect(db.engine).get_table_names())
    db.migrate()
    assert set(inspect(db.engine).get_table_names()) >= TABLES


def case_columns(db: Database) -> set[str]:
    return {column["name"] for column in inspect(db.engine).get_columns("cases")}


def test_the_case_language_migration_keeps_every_case_and_its_media(db: Database) -> None:
    """0004 adds ``cases.language`` (0005 ``cases.context``); their downgrades drop them in place (no
    table recreate, which on SQLite with foreign keys on would cascade-delete the cases' media): both
    ways keep the rows."""
    with db.engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0003")
    assert "language" not in case_columns(db)
    case_id = add_case(db)
    media_id = add_media(db, case_id)

    db.migrate()

    assert revision(db) == HEAD == SCHEMA_HEAD
    assert {"language", "context"} <= case_columns(db)
    with db.session() as s:
        assert s.scalar(select(cases.c.language).where(cases.c.id == case_id)) is None
        s.execute(update(cases).where(cases.c.id == case_id).values(language="gsw"))
    with db.session() as s:
        assert s.scalar(select(cases.c.language).where(cases.c.id == case_id)) == "gsw"

    with db.engine.begin() as connection:
        command.downgrade(alembic_config(connection), "0003")

    assert revision(db) == "0003"
    assert not {"language", "context"} & case_columns(db)
    with db.engine.connect() as c:
        assert c.execute(text("SELECT id, name FROM cases")).all() == [(case_id, "case")]
        assert c.execute(text("SELECT id FROM media")).scalars().all() == [media_id]

    db.migrate()
    with db.session() as s:
        assert s.execute(select(cases.c.id, cases.c.language)).all() == [(case_id, None)]


def test_same_content_twice_in_a_case_is_refused(db: Database) -> None:
    db.migrate()
    case_id, other_case = add_case(db), add_case(db)
    add_media(db, case_id)

    with pytest.raises(IntegrityError):
        add_media(db, case_id)
    add_media(db, other_case)  # the same bytes may appear in another case

    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(media).where(media.c.case_id == case_id)) == 1
        row = s.execute(select(media.c.status, media.c["metadata"])).first()
    assert row == ("stored", {"duration": 1.5})


def test_deleting_a_case_cascades_to_its_media_and_jobs(db: Database) -> None:
    db.migrate()
    case_id, kept_case = add_case(db), add_case(db)
    media_id = add_media(db, case_id)
    kept_media = add_media(db, kept_case)
    parent, child, kept_job = new_id(), new_id(), new_id()
    with db.session() as s:
        s.execute(insert(jobs).values(id=parent, tenant_id="t1", case_id=case_id, state="running"))
        s.execute(
            insert(jobs).values(
                id=child,
                tenant_id="t1",
                case_id=case_id,
                parent_job_id=parent,
                media_id=media_id,
                state="Queued",
            )
        )
        s.execute(
            insert(jobs).values(
                id=kept_job, tenant_id="t1", case_id=kept_case, media_id=kept_media, state="Succeeded"
            )
        )

    with db.session() as s:
        s.execute(delete(cases).where(cases.c.id == case_id))

    with db.session() as s:
        assert s.scalars(select(media.c.id)).all() == [kept_media]
        assert s.scalars(select(jobs.c.id)).all() == [kept_job]
        assert s.scalar(select(jobs.c.steps).where(jobs.c.id == kept_job)) == []
        assert s.scalar(select(jobs.c.priority).where(jobs.c.id == kept_job)) == 0


def test_claim_event_is_true_once_and_a_rolled_back_claim_is_not_kept(db: Database) -> None:
    db.migrate()
    with db.session() as s:
        assert db.claim_event(s, "transcribe", "evt-1") is True
    with db.session() as s:
        assert db.claim_event(s, "transcribe", "evt-1") is False
        assert db.claim_event(s, "faces", "evt-1") is True  # another consumer has its own claim

    def claim_then_fail() -> None:
        with db.session() as s:
            assert db.claim_event(s, "transcribe", "evt-2") is True
            raise RuntimeError("handler failed")

    with pytest.raises(RuntimeError, match="handler failed"):
        claim_then_fail()

    with db.session() as s:
        assert db.claim_event(s, "transcribe", "evt-2") is True
        rows = s.execute(select(processed_events.c.consumer, processed_events.c.event_id)).all()
    assert sorted(rows) == [("faces", "evt-1"), ("transcribe", "evt-1"), ("transcribe", "evt-2")]


def test_concurrent_claims_of_one_event_let_exactly_one_win(db: Database) -> None:
    db.migrate()
    claimed = threading.Event()
    results: dict[str, bool] = {}

    def first() -> None:
        with db.session() as s:
            results["first"] = db.claim_event(s, "fuse", "evt-9")
            claimed.set()
            time.sleep(0.3)  # commit late: the second claim has to wait for this transaction

    def second() -> None:
        claimed.wait(5)
        with db.session() as s:
            results["second"] = db.claim_event(s, "fuse", "evt-9")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == {"first": True, "second": False}


def test_timestamps_come_back_timezone_aware_in_utc(db: Database) -> None:
    db.migrate()
    before = datetime.now(UTC)
    case_id = add_case(db)
    with db.session() as s:
        created = s.scalar(select(cases.c.created_at).where(cases.c.id == case_id))
    assert created is not None
    assert created.utcoffset() == timedelta(0)
    assert before <= created <= datetime.now(UTC)

    with pytest.raises(StatementError, match="naive datetime"), db.session() as s:
        s.execute(
            insert(cases).values(id=new_id(), tenant_id="t1", name="x", created_at=datetime(2024, 1, 1))
        )


def test_health_answers(db: Database) -> None:
    db.health()


def test_health_raises_when_postgresql_is_unreachable() -> None:
    database = Database("postgresql+psycopg://postgres@127.0.0.1:1/aima")
    with pytest.raises(OperationalError):
        database.health()
    database.dispose()


def test_embedded_settings_give_a_sqlite_file_with_wal_and_foreign_keys(embedded_settings: Settings) -> None:
    database = Database.from_settings(embedded_settings)
    database.migrate()
    with database.session() as s:
        assert s.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert s.execute(text("PRAGMA foreign_keys")).scalar() == 1
    database.dispose()
    assert (embedded_settings.data_dir / "aima.db").is_file()


def test_unknown_database_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        Database("mysql://localhost/aima")


def test_sqlite_readonly_sessions_do_not_queue_behind_a_writer(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'ro.db'}", pool_size=3)
    database.migrate()
    with database.session() as writer:  # holds SQLite's write lock (BEGIN IMMEDIATE) until the block ends
        writer.execute(
            insert(processed_events).values(consumer="c", event_id="e1", processed_at=datetime.now(UTC))
        )
        began = time.monotonic()
        result: list[int] = []

        def read() -> None:
            with database.session(readonly=True) as reader:
                result.append(reader.execute(select(func.count()).select_from(processed_events)).scalar_one())

        thread = threading.Thread(target=read)
        thread.start()
        thread.join(timeout=5)
        assert result == [0]  # the committed snapshot, at once
        assert time.monotonic() - began < 2
    database.dispose()
