"""The relational store: SQLite (embedded profile) or PostgreSQL through psycopg 3 (cluster profile).

One code path for both. On SQLite every connection runs with WAL and foreign keys on, and
transactions start with ``BEGIN IMMEDIATE``: writers queue on the busy timeout instead of failing
when a read transaction later wants to write. Migrations are Alembic's, run in code by `migrate`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Table,
    create_engine,
    event,
    func,
    inspect,
    make_url,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import Insert as PgInsert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import Insert as SqliteInsert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from aima.storage import outages
from aima.storage.schema import processed_events, utcnow

if TYPE_CHECKING:
    from alembic.config import Config

    from aima.settings import Settings

MIGRATIONS = Path(__file__).with_name("migrations")
SQLITE_BUSY_TIMEOUT = 15.0
PG_CONNECT_TIMEOUT = 10
SQLITE_MIN_POOL = 40
"""SQLite connections kept open at least: as many as threads may use the database at once (anyio's
default threadpool has 40). An overflow connection is closed when returned, and reopening one (file,
WAL and foreign-key pragmas) costs more than the query it serves; an open one costs a file handle."""
SCHEMA_HEAD = "0006"
"""The newest migration's revision (a test checks it against Alembic's head)."""
READ_ONLY = "aima_read_only"  # execution option: the transaction only reads
_SQLITE_UNAVAILABLE = ("database is locked", "database is busy", "unable to open", "disk i/o error")


def _unreachable(exc: BaseException) -> bool:
    """Whether a database error means the database cannot be reached (an outage), not a mistake:
    every connection-level error of PostgreSQL, but of SQLite's catch-all OperationalError only a
    lock held past the busy timeout and a file it cannot open or read ("no such table" is a bug)."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    original = getattr(exc, "orig", None)
    if type(original).__module__.startswith("sqlite3"):
        return any(text in str(original).lower() for text in _SQLITE_UNAVAILABLE)
    return True


outages.register("database", OperationalError, InterfaceError, DisconnectionError, when=_unreachable)


def alembic_config(connection: Connection) -> Config:
    """An Alembic config for our migrations that runs them on ``connection`` (no alembic.ini)."""
    from alembic.config import Config  # Alembic is only needed to migrate: kept out of cold starts

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    return config


class Database:
    """An engine plus transactional sessions, migrations, a health probe and the idempotency ledger."""

    def __init__(self, url: str, *, pool_size: int = 5) -> None:
        parsed = make_url(url)
        backend = parsed.get_backend_name()
        if backend == "sqlite":
            database = parsed.database or ""
            if database and database != ":memory:" and not database.startswith("file:"):
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = create_engine(
                parsed,
                pool_size=max(pool_size, SQLITE_MIN_POOL),
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT},
            )
            event.listen(self.engine, "connect", _sqlite_connect)
            event.listen(self.engine, "begin", _sqlite_begin)
        elif backend == "postgresql":
            self.engine = create_engine(
                parsed,
                pool_size=pool_size,
                pool_pre_ping=True,
                connect_args={"connect_timeout": PG_CONNECT_TIMEOUT},
            )
        else:
            raise ValueError(f"unsupported database URL scheme: {parsed.drivername}")
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        """The database named by ``AIMA_DATABASE_URL`` with ``AIMA_DATABASE_POOL_SIZE``."""
        if settings.database_url is None:
            raise ValueError("AIMA_DATABASE_URL is not set")
        return cls(settings.database_url, pool_size=settings.database_pool_size)

    @contextmanager
    def session(self, *, readonly: bool = False) -> Iterator[Session]:
        """A session in one transaction: committed when the block ends, rolled back if it raises.

        ``readonly`` sessions must not write; on SQLite they start with a plain (deferred) BEGIN,
        so in WAL mode they read a snapshot without queueing for the write lock.
        """
        with self._sessions.begin() as session:
            if readonly:
                session.connection(execution_options={READ_ONLY: True})
            yield session

    def revision(self) -> str | None:
        """The schema's current Alembic revision, or None before the first migration."""
        with self.engine.connect() as connection:
            if not inspect(connection).has_table("alembic_version"):
                return None
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()

    def migrate(self) -> None:
        """Bring the schema to the newest revision (``alembic upgrade head``); a no-op when current.

        A schema already at `SCHEMA_HEAD` costs one query: Alembic is not even imported.
        """
        if self.revision() == SCHEMA_HEAD:
            return
        with self.engine.connect() as connection:
            sqlite = connection.dialect.name == "sqlite"
            if sqlite:
                # batch migrations recreate tables; with foreign keys on, dropping a parent table
                # would cascade-delete its children. SQLite ignores this pragma inside a transaction.
                _pragma(connection, "foreign_keys=OFF")
            try:
                with connection.begin():
                    from alembic import command

                    command.upgrade(alembic_config(connection), "head")
                    if sqlite and connection.exec_driver_sql("PRAGMA foreign_key_check").first():
                        raise RuntimeError("migration left rows that violate foreign keys")
            finally:
                if sqlite:
                    _pragma(connection, "foreign_keys=ON")

    def health(self) -> None:
        """Raise if the database cannot answer ``SELECT 1``."""
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def claim_event(self, session: Session, consumer: str, event_id: str) -> bool:
        """Record that ``consumer`` handles ``event_id``, in the caller's transaction.

        Returns False if it was already recorded (a redelivery to skip). The claim lives and dies
        with the transaction, so a handler that fails and rolls back can be retried.
        """
        values = {"consumer": consumer, "event_id": event_id, "processed_at": utcnow()}
        keys = [processed_events.c.consumer, processed_events.c.event_id]
        statement = insert_new(session, processed_events, keys).values(values)
        # RETURNING rather than rowcount, which some drivers leave at -1 for this statement
        return session.execute(statement.returning(processed_events.c.event_id)).first() is not None

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def _sqlite_connect(dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry) -> None:
    # take BEGIN away from the sqlite3 module (which skips it for SELECT and DDL); see _sqlite_begin
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    readonly = connection.get_execution_options().get(READ_ONLY, False)
    connection.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


def _pragma(connection: Connection, pragma: str) -> None:
    """Run a pragma on the driver connection, outside any SQLAlchemy transaction."""
    cursor = connection.connection.cursor()
    cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def after_commit(session: Session, callback: Callable[[], object]) -> None:
    """Call ``callback`` once the session's current transaction has committed (never on rollback)."""
    event.listen(session, "after_commit", lambda _session: callback(), once=True)


def insert_new(session: Session, table: Table, keys: Sequence[str | Column[Any]]) -> SqliteInsert | PgInsert:
    """An INSERT into ``table`` for the session's database that skips rows whose ``keys`` exist
    (``ON CONFLICT DO NOTHING``, spelt the same on PostgreSQL and SQLite)."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    return insert(table).on_conflict_do_nothing(index_elements=list(keys))


def transaction_lock(session: Session, name: str) -> None:
    """Serialise the transactions that take lock ``name`` until they end.

    A transaction-level advisory lock on PostgreSQL; nothing on SQLite, whose writers are serial.
    """
    if session.get_bind().dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        session.execute(select(func.pg_advisory_xact_lock(key)))
