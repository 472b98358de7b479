"""PostgreSQL databases of their own: create one if missing, drop one (`aima dev up`, its tests).

Both connect to the server's maintenance database (``postgres``) with the credentials of the URL
they are given, in autocommit mode, since PostgreSQL creates and drops databases outside a
transaction.
"""

from __future__ import annotations

from sqlalchemy import URL, create_engine, make_url, text
from sqlalchemy.exc import ProgrammingError

from aima.storage.relational import PG_CONNECT_TIMEOUT

MAINTENANCE = "postgres"


def _split(url: str) -> tuple[URL, str]:
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql" or not parsed.database:
        raise ValueError(f"not a PostgreSQL URL naming a database: {parsed.render_as_string()}")
    return parsed.set(database=MAINTENANCE), parsed.database


def ensure_database(url: str) -> bool:
    """Create the database ``url`` names unless it exists; True if this call created it."""
    admin, name = _split(url)
    engine = create_engine(
        admin, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": PG_CONNECT_TIMEOUT}
    )
    try:
        with engine.connect() as connection:
            found = connection.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            ).first()
            if found is not None:
                return False
            quoted = engine.dialect.identifier_preparer.quote_identifier(name)
            try:
                connection.exec_driver_sql(f"CREATE DATABASE {quoted}")
            except ProgrammingError as exc:  # created meanwhile by another caller
                if "already exists" not in str(exc):
                    raise
                return False
            return True
    finally:
        engine.dispose()


def drop_database(url: str) -> None:
    """Drop the database ``url`` names (closing its connections); nothing if it does not exist."""
    admin, name = _split(url)
    engine = create_engine(
        admin, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": PG_CONNECT_TIMEOUT}
    )
    try:
        with engine.connect() as connection:
            quoted = engine.dialect.identifier_preparer.quote_identifier(name)
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
    finally:
        engine.dispose()
