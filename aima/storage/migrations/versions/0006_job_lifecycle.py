"""The job lifecycle (issue #17): phases, priorities, approval, estimates, step states per file.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 13:30:00.000000

Job states become the phases Kubernetes shows (``pending`` → ``Queued``, ``completed`` →
``Succeeded``, ...); priorities become class ranks (-1 low, 0 normal, the old default, 1 high, 2
urgent).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from aima.storage.schema import UTCDateTime

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PHASES = {
    "pending": "Queued",
    "awaiting_approval": "AwaitingApproval",
    "running": "Running",
    "completed": "Succeeded",
    "failed": "Failed",
    "cancelled": "Cancelled",
}
_JSON = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    # plain ALTER TABLE on both backends, as in 0004 (a batch recreate on SQLite would cascade-delete)
    with op.batch_alter_table("jobs", schema=None, recreate="never") as batch_op:
        batch_op.add_column(sa.Column("hold_until", UTCDateTime(), nullable=True))
        batch_op.add_column(
            sa.Column("require_approval", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("approved_by", sa.String(200), nullable=True))
        batch_op.add_column(sa.Column("approved_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("context", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("language", sa.String(3), nullable=True))
        batch_op.add_column(sa.Column("reference", sa.String(300), nullable=True))
        batch_op.add_column(sa.Column("estimate", _JSON, nullable=True))
        batch_op.add_column(sa.Column("actual", _JSON, nullable=True))
        batch_op.add_column(sa.Column("reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("submitted_by", sa.String(200), nullable=True))
        batch_op.add_column(sa.Column("started_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("finished_at", UTCDateTime(), nullable=True))
    op.create_index("uq_jobs_reference", "jobs", ["tenant_id", "reference"], unique=True)
    for old, new in _PHASES.items():
        op.execute(sa.text("UPDATE jobs SET state = :new WHERE state = :old").bindparams(old=old, new=new))
    # old priorities were free integers with 0 the default: keep 0 (normal), clamp the rest to a class
    op.execute(
        "UPDATE jobs SET priority = CASE WHEN priority < 0 THEN -1 WHEN priority > 2 THEN 2 ELSE priority END"
    )

    op.create_table(
        "job_steps",
        sa.Column("job_id", sa.String(36), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("step", sa.String(40), primary_key=True),
        sa.Column("tenant_id", sa.String(36), nullable=False, index=True),
        sa.Column(
            "case_id",
            sa.String(36),
            sa.ForeignKey("cases.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("parent_job_id", sa.String(36), nullable=False, index=True),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("worker", sa.String(200), nullable=True),
        sa.Column("lease_until", UTCDateTime(), nullable=True),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.Column("units", sa.Float(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    with op.batch_alter_table("outbox", schema=None, recreate="never") as batch_op:
        batch_op.add_column(sa.Column("job_id", sa.String(36), nullable=True))
    op.create_index("ix_outbox_job_id", "outbox", ["job_id"])


def downgrade() -> None:
    op.drop_index("ix_outbox_job_id", table_name="outbox")
    with op.batch_alter_table("outbox", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("job_id")
    op.drop_table("job_steps")
    for old, new in _PHASES.items():
        op.execute(sa.text("UPDATE jobs SET state = :old WHERE state = :new").bindparams(old=old, new=new))
    op.drop_index("uq_jobs_reference", table_name="jobs")
    with op.batch_alter_table("jobs", schema=None, recreate="never") as batch_op:
        for column in (
            "finished_at",
            "started_at",
            "submitted_by",
            "reason",
            "actual",
            "estimate",
            "reference",
            "language",
            "context",
            "approved_at",
            "approved_by",
            "require_approval",
            "hold_until",
        ):
            batch_op.drop_column(column)
