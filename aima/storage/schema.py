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
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
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
    Column("language", String(3), nullable=True),  # ISO 639-1/-3: forces the language of its speech
    Column("context", Text, nullable=True),  # the analyst's context, sent with the analysis
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
    Column("state", String(20), nullable=False),  # a JobPhase
    Column("steps", Json, nullable=False, default=lambda: []),
    Column("priority", Integer, nullable=False, server_default=text("0")),  # Priority.rank; 0 is normal
    _created(),
    _updated(),
    # the lifecycle (migration 0006)
    Column("hold_until", UTCDateTime(), nullable=True),
    Column("require_approval", Boolean(), nullable=False, server_default=false()),
    Column("approved_by", String(200), nullable=True),
    Column("approved_at", UTCDateTime(), nullable=True),
    Column("context", Text(), nullable=True),
    Column("language", String(3), nullable=True),
    Column("reference", String(300), nullable=True),
    Column("estimate", Json, nullable=True),
    Column("actual", Json, nullable=True),
    Column("reason", Text(), nullable=True),
    Column("submitted_by", String(200), nullable=True),
    Column("started_at", UTCDateTime(), nullable=True),
    Column("finished_at", UTCDateTime(), nullable=True),
    Index(None, "parent_job_id"),
    Index(None, "media_id"),
    Index(None, "state", "priority"),
    Index("uq_jobs_reference", "tenant_id", "reference", unique=True),
)

job_steps = Table(
    "job_steps",
    metadata,
    Column("job_id", String(36), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("step", String(40), primary_key=True),
    _tenant(),
    Column("case_id", String(36), ForeignKey("cases.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("parent_job_id", String(36), nullable=False, index=True),
    Column("state", String(20), nullable=False),  # a StepState
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("worker", String(200), nullable=True),
    Column("lease_until", UTCDateTime(), nullable=True),
    Column("started_at", UTCDateTime(), nullable=True),
    Column("finished_at", UTCDateTime(), nullable=True),
    Column("seconds", Float(), nullable=True),  # time the last attempt ran
    Column("units", Float(), nullable=True),  # what it worked on: audio seconds, frames or files
    Column("reason", Text(), nullable=True),
    _updated(),
)

processed_events = Table(
    "processed_events",
    metadata,
    Column("consumer", String(100), primary_key=True),
    Column("event_id", String(64), primary_key=True),
    Column("processed_at", UTCDateTime(), nullable=False, default=utcnow),
)


# --- the transactional outbox (migration 0003) ----------------------------------------------

outbox = Table(
    "outbox",
    metadata,
    Column("seq", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("type", String(200), nullable=False),
    Column("body", Text(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False, default=utcnow),
    Column("published_at", UTCDateTime(), nullable=True),
    # the job the event is about (its data's job_id), so a resume finds what a job's steps emitted
    Column("job_id", String(36), nullable=True),
    Index(None, "published_at", "seq"),
    Index(None, "job_id"),
)


# --- identity, access, audit, runtime configuration (migration 0002) -------------------------

tenants = Table(
    "tenants",
    metadata,
    _id(),
    Column("name", String(200), nullable=False, unique=True),
    _created(),
)

users = Table(
    "users",
    metadata,
    _id(),
    Column("tenant_id", String(36), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("username", String(200), nullable=False, unique=True),
    Column("email", String(320), nullable=True),
    Column("password_hash", String(200), nullable=True),  # Argon2id; None for OIDC-only users
    Column("role", String(10), nullable=False),  # global role: admin | user | guest
    Column("kind", String(10), nullable=False, server_default="human"),  # human | service
    Column("disabled", Boolean, nullable=False, server_default=false()),
    Column("issuer", String(500), nullable=True),  # external OIDC issuer, with subject
    Column("subject", String(500), nullable=True),
    _created(),
    UniqueConstraint("issuer", "subject"),
)

case_members = Table(
    "case_members",
    metadata,
    Column("case_id", String(36), ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    _tenant(),
    Column("role", String(10), nullable=False),  # owner | analyst | viewer
    _created(),
    Index(None, "user_id"),
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    _id(),
    Column("family_id", String(36), nullable=False, index=True),
    Column("user_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("token_hash", String(64), nullable=False, unique=True),  # SHA-256 of the opaque token
    Column("issued_at", UTCDateTime(), nullable=False, default=utcnow),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("used_at", UTCDateTime(), nullable=True),
    Column("revoked_at", UTCDateTime(), nullable=True),
)

signing_keys = Table(
    "signing_keys",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("algorithm", String(10), nullable=False),
    Column("private_pem", Text, nullable=False),  # encrypted with AIMA_KEY_ENCRYPTION_SECRET
    Column("public_jwk", Json, nullable=False),
    _created(),
    Column("retired_at", UTCDateTime(), nullable=True),  # no longer signs; still verifies until expiry
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("tenant_id", String(36), nullable=False),
    Column("time", UTCDateTime(), nullable=False, default=utcnow),
    Column("actor", String(200), nullable=False),
    Column("action", String(100), nullable=False),
    Column("case_id", String(36), nullable=True),  # no foreign key: records outlive their case
    Column("object", String(500), nullable=True),
    Column("outcome", String(10), nullable=False),  # allowed | denied | failed
    Column("request_id", String(100), nullable=True),
    Column("client", String(100), nullable=True),
    Column("trace_id", String(32), nullable=True),
    Column("detail", Json, nullable=True),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index(None, "tenant_id", "seq"),
    Index(None, "tenant_id", "case_id"),
    Index(None, "tenant_id", "time"),
)

audit_heads = Table(
    "audit_heads",
    metadata,
    Column("tenant_id", String(36), primary_key=True),
    Column("seq", BigInteger, nullable=False),  # the tenant's newest record, so deleting it shows
    Column("hash", String(64), nullable=False),
)

config_entries = Table(
    "config_entries",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("tenant_id", String(36), nullable=True),  # None = global default
    Column("key", String(100), nullable=False),
    Column("version", Integer, nullable=False),
    Column("value", Json, nullable=False),
    Column("changed_by", String(200), nullable=False),
    Column("changed_at", UTCDateTime(), nullable=False, default=utcnow),
    UniqueConstraint("tenant_id", "key", "version"),
    Index(None, "tenant_id", "key"),
)
