"""The relational schema (SQLAlchemy Core): cases, their media, analysis jobs, and the idempotency ledger.

Every row carries ``tenant_id`` so queries can be scoped; deleting a case cascades to its media and
jobs in the database itself. Constraint names follow `NAMING_CONVENTION`, so migrations can refer to
them on SQLite and PostgreSQL alike. The migrations in ``migrations/versions`` create exactly this.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# JSON documents: JSONB on PostgreSQL (indexable), JSON text on SQLite
Json: TypeEngine[Any] = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite keeps no offset, so UTC is implied)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime; use an aware one such as datetime.now(UTC)")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def _id() -> Column[str]:
    return Column("id", String(36), primary_key=True)


def _tenant() -> Column[str]:
    return Column("tenant_id", String(36), nullable=False, index=True)


def _created() -> Column[datetime]:
    return Column("created_at", UTCDateTime(), nullable=False, default=utcnow)


def _updated() -> Column[datetime]:
    return Column("updated_at", UTCDateTime(), nullable=False, default=utcnow, onupdate=utcnow)


cases = Table(
    "cases",
    metadata,
    _id(),
    _tenant(),
    Column("name", String(200), nullable=False),
    Column("status", String(20), nullable=False, server_default="open"),
    Column("retention_days", Integer, nullable=True),
    _created(),
    _updated(),
)

media = Table(
    "media",
    metadata,
    _id(),
    _tenant(),
    Column("case_id", String(36), ForeignKey("cases.id", ondelete="CASCADE"), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("content_type", String(100), nullable=False),
    Column("kind", String(10), nullable=True),
    Column("filename", String(500), nullable=True),  # as uploaded; metadata only, never a path
    Column("object_key", String(500), nullable=False),
    Column("status", String(20), nullable=False, server_default="stored"),
    Column("failure_reason", Text, nullable=True),
    Column("metadata", Json, nullable=True),
    _created(),
    UniqueConstraint("case_id", "sha256"),
)

jobs = Table(
    "jobs",
    metadata,
    _id(),
    _tenant(),
    Column("case_id", String(36), ForeignKey("cases.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("parent_job_id", String(36), ForeignKey("jobs.id", ondelete="CASCADE"), nullable=True),
    Column("media_id", String(36), ForeignKey("media.id", ondelete="CASCADE"), nullable=True),
    Column("state", String(20), nullable=False),
    Column("steps", Json, nullable=False, default=lambda: []),
    Column("priority", Integer, nullable=False, server_default=text("0")),
    _created(),
    _updated(),
    Index(None, "parent_job_id"),
    Index(None, "media_id"),
    Index(None, "state", "priority"),
)

processed_events = Table(
    "processed_events",
    metadata,
    Column("consumer", String(100), primary_key=True),
    Column("event_id", String(64), primary_key=True),
    Column("processed_at", UTCDateTime(), nullable=False, default=utcnow),
)
