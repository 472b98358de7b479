"""A case's language: an ISO 639-1/639-3 code that forces the language of its speech (issue #14).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-09 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ALTER TABLE on both backends (SQLite adds and drops a column natively since 3.35): a batch
# recreate of `cases` on SQLite would drop the table, and with foreign keys on that cascade-deletes
# every case's media, jobs and members.


def upgrade() -> None:
    with op.batch_alter_table("cases", schema=None, recreate="never") as batch_op:
        batch_op.add_column(sa.Column("language", sa.String(length=3), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cases", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("language")
